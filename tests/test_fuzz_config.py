"""Fuzzed wrong configs and command lines: each ends in one clear paragraph and exit 2, runs nothing, writes nothing.

Hypothesis draws one mistake at a time (unknown or misspelt keys, wrong types, booleans for numbers, fractions
for integers, out-of-range values, incompatible combinations, malformed YAML, Python tags, huge nesting, broken
command lines) on top of a tiny valid synthetic-data run, and calls `genlab.cli.main` in-process, as the shell does.
"""

from __future__ import annotations

import string
import types
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from genlab.config import FAMILIES, load_config

BASE = ["data.name=synthetic", "data.image_size=16", "data.num_samples=16", "training.batch_size=8",
        "training.max_steps=1", "model.latent_dim=8", "model.generator_base_channels=8",
        "model.discriminator_base_channels=8", "logging.progress=false", "logging.tensorboard=false", "device=cpu"]
GAN = FAMILIES["gan"]
GROUPS = [name for name, f in GAN.model_fields.items() if isinstance(f.annotation, type)
          and issubclass(f.annotation, BaseModel)]


def _kinds(annotation: Any) -> set[Any]:
    """Types an annotation admits at its top level."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return set().union(*(_kinds(a) for a in get_args(annotation)))
    if origin is Literal:
        return {type(a) for a in get_args(annotation)}
    return {origin or annotation}


def _leaves() -> dict[str, Any]:
    """Every dotted key of the default (GAN) family's config -> its pydantic FieldInfo."""
    out: dict[str, Any] = {}
    for name, field in GAN.model_fields.items():
        if name in GROUPS:
            for key, sub in field.annotation.model_fields.items():
                out[f"{name}.{key}"] = sub
        else:
            out[name] = field
    return out


LEAVES = _leaves()
#: YAML snippets and the Python type each one parses to.
WRONG_VALUES = {list: ["[1, 2]", "[zz]"], dict: ["{a: 1}"], str: ["zzq", "zz words"], bool: ["true", "false"],
                float: ["2.5", "-0.25"], int: ["7", "-3"]}


def _wrong_types(field: Any) -> list[str]:
    """YAML values of a type the field does not admit (int is allowed where float is)."""
    kinds = _kinds(field.annotation)
    if kinds & {dict, Any}:
        return []
    admitted = set(kinds) | ({int} if float in kinds else set())
    wrong = [v for kind, values in WRONG_VALUES.items() if kind not in admitted for v in values]
    if Literal in {get_origin(a) for a in (field.annotation, *get_args(field.annotation))} or str not in kinds:
        return wrong
    return [v for v in wrong if not v.startswith("zz")]  # free text is a valid str


def _out_of_range(field: Any) -> list[str]:
    """Values just outside the field's ge/gt/le/lt bounds, of the field's own number type."""
    kinds = _kinds(field.annotation)
    if bool in kinds or not kinds & {int, float}:
        return []
    step = 1 if float not in kinds else 0.5
    out = []
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Ge):
            out.append(bound.ge - step)
        elif isinstance(bound, annotated_types.Gt):
            out += [bound.gt, bound.gt - step]
        elif isinstance(bound, annotated_types.Le):
            out.append(bound.le + step)
        elif isinstance(bound, annotated_types.Lt):
            out += [bound.lt, bound.lt + step]
    return [repr(v) for v in out]


TYPED = {key: _wrong_types(f) for key, f in LEAVES.items() if _wrong_types(f)}
RANGED = {key: _out_of_range(f) for key, f in LEAVES.items() if _out_of_range(f)}
NUMBERS = [k for k, f in LEAVES.items() if _kinds(f.annotation) & {int, float} and bool not in _kinds(f.annotation)]
INTEGERS = [k for k in NUMBERS if float not in _kinds(LEAVES[k].annotation)]
COMBINATIONS = [
    ["training.batch_size=4", "training.grad_accum=4"], ["data.classes=[1]"], ["data.classes=[1, 1]"],
    ["tune.lr_range=[1e-3, 1e-5]"], ["tune.lr_range=[0, 1e-3]"], ["tune.num_blocks=[]"], ["data.channels=2"],
    ["device=gpu"], ["device=cuda:x"], ["model.family=vae", "training.n_critic=2"],
    ["model.family=ddpm", "training.r1_gamma=1"], ["model.family=nope"], ["data.name=zz-no-such-set"],
    ["model.architecture=zz-no-such-net"], ["eval.metrics=[zz-no-such-metric]"], ["gasten.ambiguity=true"],
    ["gasten.step1_epoch=zz"], ["model.loss={name: hinge, args: {zz: 1}}"], ["model.loss={name: hinge, args: [1]}"],
    ["model.loss=[1]"], ["model.family=[gan]"], ["model.family={a: 1}"], ["training=5"], ["training.lr_g.x=1"],
]
TAGS = ["!!python/object/apply:os.system [{cmd}]", "!!python/object/apply:subprocess.call [[sh, -c, {cmd}]]",
        "!!python/name:os.system", "!!python/module:os", "!!python/object/new:os.system [{cmd}]",
        "!!python/object:pathlib.Path {{}}", "!custom 1", "!!binary aGVsbG8="]
BROKEN_YAML = ["training: [", "a: b: c", "training:\n  lr_g: 1\n lr_d: 2", "\tmodel: {}", "{", "- a\nb: 1",
               "training: {lr_g: 1", "'unterminated", "data:\n  name: synthetic\n  name: mnist", "%YAML 9.9\n---\na: 1",
               "a: *nowhere", "[1, 2, 3]", "42", "just text"]
KEY = st.from_regex(r"\A[a-z][a-z0-9_]{1,14}\Z")
ANY_VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3), max_leaves=8)


def _misspell(key: str, data: st.DataObject) -> str:
    """`key` with one character dropped, doubled, swapped or replaced."""
    i = data.draw(st.integers(0, len(key) - 1))
    how = data.draw(st.sampled_from(["drop", "double", "swap", "replace"]))
    if how == "drop":
        return key[:i] + key[i + 1:]
    if how == "double":
        return key[:i] + key[i] + key[i:]
    if how == "swap" and i + 1 < len(key):
        return key[:i] + key[i + 1] + key[i] + key[i + 2:]
    return key[:i] + data.draw(st.sampled_from(string.ascii_lowercase)) + key[i + 1:]


@st.composite
def mistakes(draw: st.DrawFn) -> dict[str, Any]:
    """One wrong thing: {"overrides": [...], "yaml": text or bytes or None, "args": extra CLI words}."""
    data = draw(st.data())
    kind = draw(st.sampled_from(["unknown", "misspelt", "type", "bool", "fraction", "range", "combination",
                                 "yaml", "random_yaml", "tag", "nesting", "cli"]))
    case: dict[str, Any] = {"kind": kind, "overrides": [], "yaml": None, "args": []}
    if kind == "unknown":
        group = draw(st.sampled_from(["", *GROUPS]))
        valid = GAN.model_fields if not group else GAN.model_fields[group].annotation.model_fields
        name = draw(KEY.filter(lambda k: k not in valid))
        case["overrides"] = [f"{group + '.' if group else ''}{name}=1"]
    elif kind == "misspelt":
        key = draw(st.sampled_from(sorted(LEAVES)))
        group, _, leaf = key.rpartition(".")
        wrong = _misspell(leaf, data)
        valid = GAN.model_fields if not group else GAN.model_fields[group].annotation.model_fields
        if wrong in valid or not wrong:
            wrong = leaf + "x"
        case["overrides"] = [f"{group + '.' if group else ''}{wrong}=1"]
    elif kind == "type":
        key = draw(st.sampled_from(sorted(TYPED)))
        case["overrides"] = [f"{key}={draw(st.sampled_from(TYPED[key]))}"]
    elif kind == "bool":
        case["overrides"] = [f"{draw(st.sampled_from(NUMBERS))}={draw(st.sampled_from(['true', 'false']))}"]
    elif kind == "fraction":
        value = draw(st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 2)).filter(lambda v: v % 1))
        case["overrides"] = [f"{draw(st.sampled_from(INTEGERS))}={value!r}"]
    elif kind == "range":
        key = draw(st.sampled_from(sorted(RANGED)))
        case["overrides"] = [f"{key}={draw(st.sampled_from(RANGED[key]))}"]
    elif kind == "combination":
        case["overrides"] = list(draw(st.sampled_from(COMBINATIONS)))
    elif kind == "yaml":
        case["yaml"] = draw(st.one_of(st.sampled_from(BROKEN_YAML), st.binary(min_size=1, max_size=64).map(
            lambda b: b"\xff\xfe\x00" + b)))
    elif kind == "random_yaml":  # any YAML mapping holding at least one key that is not a setting
        group = draw(st.sampled_from(["", *GROUPS]))
        valid = GAN.model_fields if not group else GAN.model_fields[group].annotation.model_fields
        wrong = draw(st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda k: k not in valid), ANY_VALUE,
                                     min_size=1, max_size=3))
        case["yaml"] = yaml.safe_dump({group: wrong} if group else wrong, allow_unicode=draw(st.booleans()))
    elif kind == "tag":
        tag = draw(st.sampled_from(TAGS)).format(cmd="'touch MARKER'")
        key = draw(st.sampled_from(["name", "training.lr_g", "data.augment", "data.root"]))
        group, _, leaf = key.rpartition(".")
        if draw(st.booleans()):
            case["overrides"] = [f"{key}={tag}"]
        else:
            case["yaml"] = f"{group}:\n  {leaf}: {tag}\n" if group else f"{leaf}: {tag}\n"
    elif kind == "nesting":
        depth = draw(st.sampled_from([33, 60, 500, 5000]))
        value = draw(st.sampled_from(["[" * depth + "]" * depth, "{a: " * depth + "1" + "}" * depth]))
        key = draw(st.sampled_from(["data.augment", "training.lr_g", "name"]))
        if draw(st.booleans()):
            case["overrides"] = [f"{key}={value}"]
        else:
            case["yaml"] = f"{key.split('.')[0]}:\n  x: {value}\n" if "." in key else f"{key}: {value}\n"
    else:
        case["args"], case["overrides"] = draw(st.sampled_from([
            ([], ["training.lr_g"]), ([], ["training..lr_g=1"]), ([], ["=5"]), ([], [".=1"]),
            ([], ["training.lr_g.deeper=1"]), (["--config", "zz_no_such_preset"], []),
            (["--resume", "RUN_THAT_DOES_NOT_EXIST"], []), (["--resume", "RUN_THAT_DOES_NOT_EXIST", "--config", "x"], []),
            (["--bogus-option"], []), (["--config"], []),
        ]))
    return case



def test_base_config_is_valid():
    """The mistakes are drawn on top of a config that is fine by itself."""
    assert load_config(None, BASE).training.max_steps == 1


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=mistakes())
def test_wrong_configs_and_command_lines_end_in_one_clear_paragraph(case, tmp_path, monkeypatch, run_cli):
    """Exit 2, one paragraph, no traceback, nothing run (no MARKER file), nothing under runs/ or output_dir."""
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    args = ["train"]
    if case["yaml"] is not None:
        path = tmp_path / "config.yaml"
        if isinstance(case["yaml"], bytes):
            path.write_bytes(case["yaml"])
        else:
            path.write_text(case["yaml"])
        args += ["--config", str(path)]
    args += [a if a != "RUN_THAT_DOES_NOT_EXIST" else str(tmp_path / "nope") for a in case["args"]]
    args += [*BASE, f"output_dir={out}", *case["overrides"]]
    code, printed = run_cli(args)
    assert code == 2, f"{case}: exit {code}\n{printed}"
    assert "Traceback" not in printed, f"{case}\n{printed}"
    assert not (cwd / "MARKER").exists() and not (tmp_path / "MARKER").exists(), f"{case} ran code"
    assert not out.exists() or not any(out.iterdir()), f"{case} wrote {list(out.iterdir())}"
    assert not (cwd / "runs").exists(), f"{case} wrote runs/"
    if printed.startswith("error: "):  # a GenlabError: one paragraph, of a readable size
        assert printed.count("error: ") == 1 and "\n\n" not in printed.strip(), f"{case}\n{printed}"
        assert len(printed) < 3000, f"{case}: a {len(printed)}-character message"
    else:  # typer's own usage errors
        assert "Error:" in printed and "Usage:" in printed, f"{case}\n{printed}"


@pytest.mark.parametrize("override", ["training.lr_g=true", "model.latent_dim=true", "training.batch_size=8.0",
                                      "data.seed=true", "tune.lr_range=[true, 1]", "data.classes=[1.0, 2.0]",
                                      "training.lr_g='0.5'", "training.lr_g=.inf", "training.grad_clip=.inf"])
def test_numbers_are_strict(override, run_cli):
    """No bool -> number, no text -> number, no decimal -> integer, no infinities (issue #16 item 9)."""
    code, printed = run_cli(["config", "show", "fashion_mnist_dcgan", override])
    assert code == 2 and printed.startswith("error: Invalid configuration") and override.split("=")[0] in printed


def test_integers_still_stand_for_floats():
    """`training.lr_g=1` is a float field given an integer: fine."""
    cfg = load_config(None, ["training.lr_g=1", "tune.lr_range=[1, 2]"])
    assert cfg.training.lr_g == 1.0 and isinstance(cfg.training.lr_g, float) and cfg.tune.lr_range == [1.0, 2.0]


def test_binary_deep_and_duplicate_yaml_are_config_errors(tmp_path, run_cli):
    """A binary --config, a deeply nested YAML and a duplicate key: one paragraph each, naming the problem."""
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "deep.yaml").write_text("data:\n  augment: " + "[" * 5000 + "]" * 5000 + "\n")
    (tmp_path / "dup.yaml").write_text("training:\n  lr_g: 0.1\n  lr_d: 0.1\n  lr_g: 0.2\n")
    expected = {"binary": "not a YAML text file", "deep": "too deeply", "dup": "duplicate key 'lr_g'"}
    for name, words in expected.items():
        code, printed = run_cli(["config", "show", str(tmp_path / f"{name}.yaml")])
        assert code == 2 and words in printed and "Traceback" not in printed, printed
    assert "line 4" in run_cli(["config", "show", str(tmp_path / "dup.yaml")])[1]


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    """`<<: *anchor` followed by an explicit key overrides it, as YAML says; only a key written twice is refused."""
    path = tmp_path / "merge.yaml"
    path.write_text("training: &t {lr_g: 0.1, lr_d: 0.1}\ntune:\n  seed: 3\ncheckpoint: {keep: 3}\n"
                    "logging:\n  <<: {log_every: 5, sample_every: 5}\n  log_every: 7\n")
    cfg = load_config(path)
    assert (cfg.logging.log_every, cfg.logging.sample_every, cfg.training.lr_g) == (7, 5, 0.1)


def test_python_tags_are_refused_and_never_run(tmp_path, monkeypatch, run_cli):
    """`!!python/object/apply` in a file or an override is refused; the command it names never runs."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    payload = f"!!python/object/apply:os.system ['touch {marker}']"
    (tmp_path / "evil.yaml").write_text(f"name: {payload}\n")
    for args in (["config", "show", str(tmp_path / "evil.yaml")], ["config", "show", "fashion_mnist_dcgan",
                                                                   f"name={payload}"]):
        code, printed = run_cli(args)
        assert code == 2 and "tags are refused" in printed and not marker.exists(), printed
    assert yaml.safe_load("a: 1") == {"a": 1}  # the loader is still plain YAML
