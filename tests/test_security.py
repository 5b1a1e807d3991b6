"""Security: a checkpoint whose unpickling would run code is refused everywhere genlab loads one; no config
string is ever evaluated (YAML Python tags are refused); no unsafe loader appears in genlab's source."""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import pytest
import torch

from genlab.config import default_config, parse_value, save_config
from genlab.errors import CheckpointError, ConfigError
from genlab.models.classifiers import load_classifier
from genlab.runs.checkpoint import load_checkpoint

GENLAB = Path(__file__).resolve().parent.parent / "genlab"


class _WritesMarker:
    """Unpickling this calls open(marker, "w"): the file appears if anything unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _evil_files(folder: Path) -> tuple[Path, list[Path]]:
    """(marker, files): a torch-format and a raw-pickle checkpoint that would create `marker` when unpickled."""
    marker = folder / "MARKER"
    payload = {"format": 1, "step": 1, "config": {}, "method": {"x": _WritesMarker(marker)}}
    torch.save(payload, folder / "evil_torch.pt")
    (folder / "evil_raw.pt").write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    return marker, [folder / "evil_torch.pt", folder / "evil_raw.pt"]



def _fake_run(root: Path, checkpoint: Path) -> Path:
    """A run directory (config.yaml, checkpoints/last.pt) whose last.pt is `checkpoint`."""
    (root / "checkpoints").mkdir(parents=True)
    save_config(default_config(), root / "config.yaml")
    (root / "checkpoints" / "last.pt").write_bytes(checkpoint.read_bytes())
    return root


def test_load_checkpoint_refuses_code_in_a_pickle(tmp_path):
    """Both file formats: a CheckpointError that says why, torch's weights_only=False advice not passed on."""
    marker, files = _evil_files(tmp_path)
    for path in files:
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        message = str(err.value)
        assert str(path) in message and "arbitrary code" in message and "refuses" in message, message
        assert "\n" not in message and "Re-running `torch.load`" not in message, message
    assert not marker.exists()


def test_sample_and_resume_refuse_a_malicious_checkpoint(tmp_path, run_cli):
    """`genlab sample RUN` and `genlab train --resume RUN`: exit 2, one paragraph, nothing unpickled."""
    marker, files = _evil_files(tmp_path)
    run = _fake_run(tmp_path / "run", files[0])
    for args in (["sample", str(run), "--n", "1", "--out", str(tmp_path / "s.png")], ["train", "--resume", str(run)]):
        code, printed = run_cli(args)
        assert code == 2 and printed.startswith("error: Checkpoint") and "arbitrary code" in printed, printed
        assert "Traceback" not in printed and "\n\n" not in printed.strip(), printed
    assert not marker.exists() and not (tmp_path / "s.png").exists()


def test_init_from_and_classifier_loading_refuse_a_malicious_file(tmp_path):
    """training.init_from's loader and the GASTeN classifier loader never unpickle code either."""
    from genlab.train.loop import init_weights

    marker, files = _evil_files(tmp_path)
    for path in files:
        with pytest.raises(CheckpointError, match="arbitrary code"):
            init_weights(None, path, None)
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            load_classifier(path)
    assert not marker.exists()


def test_config_strings_are_never_evaluated(tmp_path, monkeypatch, run_cli):
    """Python expressions stay text, Python YAML tags are refused: in overrides and in files."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    expression = f"__import__('os').system('touch {marker}')"
    assert parse_value(expression) == expression
    for tag in ("!!python/object/apply:os.system", "!!python/object/new:os.system", "!!python/name:os.system",
                "!!python/module:os"):
        with pytest.raises(ConfigError, match="tags are refused"):
            parse_value(f"{tag} ['touch {marker}']")
    (tmp_path / "evil.yaml").write_text(f"training:\n  lr_g: !!python/object/apply:os.system ['touch {marker}']\n")
    code, printed = run_cli(["config", "show", str(tmp_path / "evil.yaml")])
    assert code == 2 and "tags are refused" in printed, printed
    code, printed = run_cli(["config", "show", "fashion_mnist_dcgan", f"name={expression}", f"data.root={expression}"])
    assert code == 0 and expression in printed, printed
    code, printed = run_cli(["config", "show", "fashion_mnist_dcgan", f"training.lr_g={expression}"])
    assert code == 2 and "expected a valid number" in printed, printed
    assert not marker.exists()


def _unsafe_calls(tree: ast.AST) -> list[str]:
    """Calls in a module that could run code from data: eval/exec, unsafe YAML, pickle, torch.load without weights_only."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        keywords = {k.arg: k.value for k in node.keywords}
        constant = {k: v.value for k, v in keywords.items() if isinstance(v, ast.Constant)}
        loader = keywords.get("Loader")
        loader_name = getattr(loader, "id", getattr(loader, "attr", ""))
        if isinstance(func, ast.Name) and name in ("eval", "exec"):
            found.append(f"{name}() at line {node.lineno}")
        elif owner == "pickle" and name in ("load", "loads"):
            found.append(f"pickle.{name}() at line {node.lineno}")
        elif owner == "yaml" and name in ("load", "unsafe_load", "full_load", "load_all", "unsafe_load_all"):
            if name != "load" or loader_name not in ("SafeLoader", "CSafeLoader", "StrictLoader"):
                found.append(f"yaml.{name}() without a safe Loader at line {node.lineno}")
        elif owner == "torch" and name == "load" and constant.get("weights_only") is not True:
            found.append(f"torch.load() without weights_only=True at line {node.lineno}")
        elif owner in ("np", "numpy") and name == "load" and constant.get("allow_pickle") is True:
            found.append(f"np.load(allow_pickle=True) at line {node.lineno}")
    return found


def test_no_unsafe_loader_in_genlab_source():
    """Every torch.load has weights_only=True, YAML uses a safe loader, and nothing calls eval, exec or pickle.load."""
    problems = {str(p.relative_to(GENLAB)): found for p in sorted(GENLAB.rglob("*.py"))
                if (found := _unsafe_calls(ast.parse(p.read_text(), str(p))))}
    assert problems == {}
    probe = ast.parse("import torch, yaml, pickle\ntorch.load(p)\nyaml.load(t)\npickle.loads(b)\neval(s)\n")
    assert len(_unsafe_calls(probe)) == 4  # the check itself can fail
