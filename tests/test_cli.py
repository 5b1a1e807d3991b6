"""The command line: train, sample (grid / folder / npz, EMA, seed), resume, `python -m genlab`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from genlab.cli import app

TINY = [
    "data.name=synthetic", "data.image_size=16", "data.num_samples=64", "training.batch_size=8",
    "model.generator_base_channels=8", "model.discriminator_base_channels=8", "model.latent_dim=8",
    "logging.progress=false", "device=cpu", "training.num_epochs=1",
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(app, ["train", *TINY, f"output_dir={out}", "name=cli"])
    assert result.exit_code == 0, result.output
    assert "Results:" in result.output
    return out / "cli"


def test_sample_grid_folder_and_npz(trained_run, tmp_path):
    runner = CliRunner()
    grid = tmp_path / "grid.png"
    assert runner.invoke(app, ["sample", str(trained_run), "--n", "9", "--out", str(grid)]).exit_code == 0
    assert Image.open(grid).size == (3 * 16 + 4 * 2, 3 * 16 + 4 * 2)
    folder = tmp_path / "pngs"
    assert runner.invoke(app, ["sample", str(trained_run), "--n", "5", "--out", f"{folder}/"]).exit_code == 0
    files = sorted(folder.glob("*.png"))
    assert len(files) == 5 and Image.open(files[0]).size == (16, 16)
    npz = tmp_path / "s.npz"
    assert runner.invoke(app, ["sample", str(trained_run), "--n", "7", "--out", str(npz)]).exit_code == 0
    images = np.load(npz)["images"]
    assert images.shape == (7, 16, 16, 1) and images.dtype == np.uint8


def test_sample_seed_and_ema_switch(trained_run, tmp_path):
    runner = CliRunner()

    def draw(name, *flags):
        path = tmp_path / f"{name}.npz"
        result = runner.invoke(app, ["sample", str(trained_run), "--n", "4", "--out", str(path), *flags])
        assert result.exit_code == 0, result.output
        return np.load(path)["images"]

    a, b = draw("a", "--seed", "1"), draw("b", "--seed", "1")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, draw("c", "--seed", "2"))
    assert not np.array_equal(a, draw("d", "--seed", "1", "--no-ema"))


def test_sample_reports_missing_checkpoint(trained_run, tmp_path):
    result = CliRunner().invoke(app, ["sample", str(trained_run), "--checkpoint", "best", "--out", str(tmp_path / "x.png")])
    assert result.exit_code != 0 and "Available: last.pt" in str(result.exception)


def test_python_dash_m_runs_the_same_app(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "genlab", "config", "list"], capture_output=True, text=True)
    assert ok.returncode == 0 and "fashion_mnist_dcgan" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "genlab", "train", "training.lr_gen=1"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "did you mean 'training.lr_g'" in bad.stderr and "Traceback" not in bad.stderr


def test_truncation_trick_bounds_noise_and_changes_samples(trained_run, tmp_path):
    import torch

    from genlab.methods import truncate

    z = truncate(torch.randn(1000, 8) * 3, 0.5, torch.Generator().manual_seed(0))
    assert z.abs().max() <= 0.5 and z.std() > 0.2
    runner = CliRunner()
    plain, cut = tmp_path / "p.npz", tmp_path / "t.npz"
    assert runner.invoke(app, ["sample", str(trained_run), "--n", "4", "--out", str(plain)]).exit_code == 0
    result = runner.invoke(app, ["sample", str(trained_run), "--n", "4", "--out", str(cut), "--truncation", "0.5"])
    assert result.exit_code == 0
    assert not np.array_equal(np.load(plain)["images"], np.load(cut)["images"])


def _options(*path: str) -> dict[str, object]:
    """The click options of `genlab <path...>` by their longest name."""
    import typer

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {max(p.opts, key=len): p for p in command.params if p.opts and p.opts[0].startswith("-")}


def test_resume_takes_a_directory_on_every_command():
    for path in (("train",), ("gasten", "step1"), ("gasten", "step2"), ("gasten", "tune", "step1"),
                 ("gasten", "tune", "step2")):
        option = _options(*path)["--resume"]
        assert not option.is_flag, path  # a value (the directory), not an on/off switch


def test_gasten_option_names_say_what_they_hold():
    step2, tune2 = _options("gasten", "step2"), _options("gasten", "tune", "step2")
    assert {"--classifier", "--step1-epoch"} <= set(step2) and "--epoch" not in step2
    assert {"--classifier-choice", "--step1-epochs"} <= set(tune2)
    assert not {"--classifier", "--epochs", "--epoch"} & set(tune2)
    assert tune2["--classifier-choice"].multiple and not step2["--classifier"].multiple


@pytest.mark.parametrize("command,flags", [
    ("step1", ["--config", "gasten/fmnist_3v0"]),
    ("step2", ["--weight", "3"]),
    ("step2", ["--config", "gasten/fmnist_3v0", "--step1", "runs/x", "--classifier", "c"]),
])
def test_gasten_resume_refuses_options_it_would_ignore(command, flags, tmp_path):
    result = CliRunner().invoke(app, ["gasten", command, "--resume", str(tmp_path), *flags])
    assert result.exit_code != 0
    message = str(result.exception)
    assert "--resume continues a run with its own saved config" in message
    assert all(flag in message for flag in flags if flag.startswith("--"))


def test_train_and_gasten_steps_say_when_they_stopped_early(monkeypatch, tmp_path):
    import genlab.gasten
    import genlab.train
    from genlab.train.loop import TrainResult

    stopped = TrainResult(tmp_path, 48, 160, interrupted=False, early_stopped=True,
                          stop_reason="early stopping: fid has not improved for 2 evaluations (best 3.1)")
    monkeypatch.setattr(genlab.gasten, "run_step1", lambda *a, **k: stopped)
    monkeypatch.setattr(genlab.gasten, "run_step2", lambda *a, **k: stopped)
    monkeypatch.setattr(genlab.train, "train", lambda *a, **k: stopped)
    for command in (["train"], ["gasten", "step1"], ["gasten", "step2"]):
        result = CliRunner().invoke(app, [*command, "--resume", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert "stopped early (early stopping: fid has not improved for 2 evaluations (best 3.1))" in result.output
        assert "finished" not in result.output


def test_device_defaults_to_auto_on_every_command():
    """Every --device option starts from auto (CUDA, else MPS, else the CPU); `prepare faces` said cpu."""
    import typer

    def device_options(command, path=()):
        for name, sub in getattr(command, "commands", {}).items():
            yield from device_options(sub, (*path, name))
        yield from ((" ".join(path), p) for p in command.params if "--device" in p.opts)

    found = dict(device_options(typer.main.get_command(app)))
    assert {"sample", "evaluate", "prepare faces", "classifier train", "classifier evaluate"} <= set(found)
    for path, option in found.items():  # None: the command's config holds the default, and the help says so
        assert option.default == "auto" or (option.default is None and "auto (default)" in option.help), path


def test_config_show_takes_the_preset_either_way():
    runner = CliRunner()
    positional = runner.invoke(app, ["config", "show", "gasten/fmnist_3v0", "training.lr_g=1e-3"])
    option = runner.invoke(app, ["config", "show", "--config", "gasten/fmnist_3v0", "training.lr_g=1e-3"])
    assert positional.exit_code == 0 and option.exit_code == 0, option.output
    assert positional.output == option.output and "classes: [3, 0]" in option.output and "lr_g: 0.001" in option.output
    both = runner.invoke(app, ["config", "show", "mnist_dcgan", "--config", "gasten/fmnist_3v0"])
    assert both.exit_code != 0 and "either" in str(both.exception)


def test_prepare_data_downloads_only_what_is_missing(monkeypatch):
    import genlab.data
    from genlab.errors import DataError, DataNotFoundError

    calls = []

    def build(cfg, split=None):
        calls.append((cfg.split, cfg.download))
        if cfg.name == "broken":
            raise DataError("the IDX file is truncated")
        if not cfg.download and cfg.split == "test":
            raise DataNotFoundError("not found")
        return [0] * 3

    monkeypatch.setattr(genlab.data, "build_dataset", build)
    result = CliRunner().invoke(app, ["prepare", "data", "mnist"])
    assert result.exit_code == 0, result.output
    assert calls == [("train", False), ("test", False), ("test", True)]  # train and test by default
    assert "already available: 3 images (train)" in result.output and "Downloaded mnist: 3 images (test)" in result.output
    calls.clear()
    result = CliRunner().invoke(app, ["prepare", "data", "broken", "--split", "train"])
    assert result.exit_code != 0 and "truncated" in str(result.exception)
    assert calls == [("train", False)]  # no download retry for an error that is not "not found"


def test_tune_resume_names_the_study_directory(monkeypatch, tmp_path):
    import genlab.tune.gasten

    seen = {}

    def fake_tune(cfg, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(genlab.tune.gasten, "tune_step1", fake_tune)
    result = CliRunner().invoke(app, ["gasten", "tune", "step1", "--resume", str(tmp_path / "study")])
    assert result.exit_code == 0, result.output
    assert seen["resume"] is True and seen["study_dir"] == tmp_path / "study"
    clash = CliRunner().invoke(app, ["gasten", "tune", "step1", "--resume", str(tmp_path / "a"),
                                     "--study-dir", str(tmp_path / "b")])
    assert clash.exit_code != 0 and "name different studies" in str(clash.exception)
