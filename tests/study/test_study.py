"""`genlab study`: plans before it trains, skips finished runs, resumes interrupted ones to the same tables."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import yaml

from genlab.errors import GenlabError
from genlab.study import load_study, plan_study, run_study
from genlab.train.hooks import Hook
from tests.conftest import TINY, TINY_VAE


def _mapping(overrides: list[str]) -> dict[str, object]:
    return {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in overrides)}


def write_study(folder: Path, **changes) -> Path:
    """A two-variant study of tiny runs (a GAN baseline, then a VAE 'because' it), evaluated every epoch."""
    common = [o for o in TINY if not o.startswith("model.")] + [
        "training.num_epochs=2", "eval.metrics=[fid]", "eval.every_epochs=1", "eval.num_samples=16",
        "eval.real_samples=32"]
    study = {
        "name": "tiny", "description": "A GAN then a VAE.", "base": "fashion_mnist_dcgan",
        "overrides": _mapping(common), "phases": {"1": "families"},
        "variants": [
            {"name": "gan", "phase": 1, "because": "Baseline.",
             "overrides": [o for o in TINY if o.startswith("model.")]},
            {"name": "vae", "phase": 1, "preset": "fashion_mnist_vae", "because": "GAN <b>noise</b>.",
             "overrides": [o for o in TINY_VAE if o.startswith(("model.", "training.vgg"))]},
        ],
    }
    study.update(changes)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def tables_without_times(root: Path) -> list[dict[str, object]]:
    rows = json.loads((root / "study.json").read_text())["rows"]
    return [{k: v for k, v in row.items() if k != "train_seconds"} for row in rows]


def logged(run: Path) -> list[dict[str, object]]:
    """metrics.jsonl without wall-clock rates."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "images_per_sec"} for line in lines]


class Interrupt(Hook):
    """Stops one run at a given step: a crash (exception) or Ctrl-C (SIGINT to this process)."""

    name = "interrupt"

    def __init__(self, run: str, step: int, how: str) -> None:
        self.run, self.step, self.how = run, step, how

    def after_step(self, state, stats) -> None:
        if state.run.root.name == self.run and state.step == self.step:
            if self.how == "crash":
                raise RuntimeError("simulated crash")
            os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupted_study_ends_with_the_same_tables_as_an_uninterrupted_one(tmp_path):
    study, _ = load_study(write_study(tmp_path))
    straight = run_study(study, plan_study(study, output_dir=tmp_path / "a"), output_dir=tmp_path / "a",
                         compare=False)
    assert straight.trained == ["gan", "vae"] and not straight.interrupted

    out = tmp_path / "b"
    with pytest.raises(RuntimeError, match="simulated crash"):  # killed mid-variant (after a checkpoint at 5)
        run_study(study, plan_study(study, output_dir=out), output_dir=out, hooks=[Interrupt("gan", 7, "crash")])
    stopped = run_study(study, plan_study(study, output_dir=out), output_dir=out, hooks=[Interrupt("vae", 3, "sigint")])
    assert stopped.resumed == ["gan"] and stopped.trained == ["vae"] and stopped.interrupted
    last = run_study(study, plan_study(study, output_dir=out), output_dir=out, compare=False)
    assert last.skipped == ["gan"] and last.resumed == ["vae"] and not last.interrupted

    assert tables_without_times(out / "tiny") == tables_without_times(tmp_path / "a" / "tiny")
    rows = tables_without_times(out / "tiny")
    assert [r["variant"] for r in rows] == ["gan", "vae"] and rows[0]["motivates"] == "vae"
    assert all(r["final"]["mean"] is not None and r["finished"] == 1 for r in rows)
    for name in ("gan", "vae"):  # and every logged number but the clock's, not only the tables
        assert logged(out / "tiny" / name) == logged(tmp_path / "a" / "tiny" / name)
    report = (out / "tiny" / "report.html").read_text()
    assert "Phase 1 — families" in report and "GAN &lt;b&gt;noise&lt;/b&gt;." in report


def test_a_bad_variant_fails_before_anything_trains_and_names_the_variant(tmp_path):
    base = yaml.safe_load(write_study(tmp_path).read_text())
    bad_key = [*base["variants"], {"name": "typo", "overrides": ["training.lr_gg=1e-3"]}]
    study, _ = load_study(write_study(tmp_path, variants=bad_key))
    with pytest.raises(GenlabError, match=r"(?s)variant 'typo'.*nothing was started.*lr_gg.*did you mean 'training.lr_g'"):
        plan_study(study, output_dir=tmp_path / "out")
    bad_preset = [*base["variants"], {"name": "nopreset", "preset": "fashion_mnist_dcgam"}]
    study, _ = load_study(write_study(tmp_path, variants=bad_preset))
    with pytest.raises(GenlabError, match=r"(?s)variant 'nopreset'.*did you mean 'fashion_mnist_dcgan'"):
        plan_study(study, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_study_file_mistakes_name_the_key_and_the_variant(tmp_path):
    with pytest.raises(GenlabError, match=r"unknown key 'varaints' — did you mean 'variants'"):
        load_study(write_study(tmp_path, varaints=[]))
    base = yaml.safe_load(write_study(tmp_path).read_text())
    variants = [base["variants"][0], {**base["variants"][1], "becuase": "x"}]
    with pytest.raises(GenlabError, match=r"(?s)variant 'vae' \(variants\[1\]\).*'becuase' — did you mean 'because'"):
        load_study(write_study(tmp_path, variants=variants))
    with pytest.raises(GenlabError, match="unique"):
        load_study(write_study(tmp_path, variants=[base["variants"][0]] * 2))
    with pytest.raises(GenlabError, match=r"no variant 'gna' — did you mean 'gan'"):
        study, _ = load_study(write_study(tmp_path))
        plan_study(study, only=["gna"])


def test_motivates_follows_after_and_leaves_side_by_side_variants_out(tmp_path):
    from genlab.study.runner import variant_rows

    base = yaml.safe_load(write_study(tmp_path).read_text())
    gan, vae = base["variants"]
    variants = [gan, {**vae, "after": "none"}, {**gan, "name": "gan_sn"}, {**gan, "name": "gan_wide", "after": "gan"}]
    study, _ = load_study(write_study(tmp_path, variants=variants))
    motivates = {r["variant"]: r["motivates"] for r in variant_rows(study, tmp_path / "no-runs")}
    # gan_sn follows the variant before it (vae); gan_wide answers gan; vae is an alternative to gan.
    assert motivates == {"gan": "gan_wide", "vae": "gan_sn", "gan_sn": None, "gan_wide": None}
    with pytest.raises(GenlabError, match=r"comes after 'gn', which is no earlier variant — did you mean 'gan'"):
        load_study(write_study(tmp_path, variants=[gan, {**vae, "after": "gn"}]))
    with pytest.raises(GenlabError, match="no earlier variant"):
        load_study(write_study(tmp_path, variants=[{**gan, "after": "vae"}, vae]))
    # The shipped phase-5 studies compare finalists side by side: none of them motivates another.
    for name in ("faces_phase5_finalists", "fashion_mnist_phase5_mini"):
        finalists, _ = load_study(name)
        assert [r["motivates"] for r in variant_rows(finalists, tmp_path / "no-runs")] == [None] * 3


def test_only_and_seeds_run_one_variant_three_times_with_mean_and_std(tmp_path):
    study, _ = load_study(write_study(tmp_path))
    out = tmp_path / "out"
    plan = plan_study(study, only=["gan"], seeds=3, output_dir=out, overrides=["training.num_epochs=1"])
    assert [(p.root.name, p.cfg.data.seed) for p in plan] == [("gan", 42), ("gan-seed1", 43), ("gan-seed2", 44)]
    run_study(study, plan, output_dir=out, compare=False)
    rows = {r["variant"]: r for r in json.loads((out / "tiny" / "study.json").read_text())["rows"]}
    assert rows["gan"]["final"]["n"] == 3 and rows["gan"]["final"]["std"] > 0  # three seeds differ
    assert rows["vae"]["runs"] == 0
    assert " ± " in (out / "tiny" / "tables.md").read_text()


def test_a_run_made_from_an_older_study_file_is_refused(tmp_path):
    study, _ = load_study(write_study(tmp_path))
    out = tmp_path / "out"
    run_study(study, plan_study(study, only=["gan"], output_dir=out, overrides=["training.max_steps=3"]),
              output_dir=out, compare=False)
    changed = plan_study(study, only=["gan"], output_dir=out, overrides=["training.max_steps=4"])
    with pytest.raises(GenlabError, match=r"training.max_steps: 3 -> 4.*Delete that run directory"):
        run_study(study, changed, output_dir=out, compare=False)
    # How memory is allocated changes no number: the finished run stands (skipped, not refused).
    same = plan_study(study, only=["gan"], output_dir=out,
                      overrides=["training.max_steps=3", "training.reuse_cpu_memory=false"])
    run_study(study, same, output_dir=out, compare=False)


def test_study_command_plans_and_lists_shipped_studies(tmp_path, run_cli):
    path = write_study(tmp_path)
    code, output = run_cli(["study", str(path), "--plan", "--out", str(tmp_path / "out")])
    assert code == 0, output
    assert "2 runs" in output and "gan" in output and "to train" in output
    assert not (tmp_path / "out" / "tiny" / "gan").exists()
    code, output = run_cli(["study", "fashion_mnist_phase5_mimi"])
    assert code == 2 and "did you mean 'fashion_mnist_phase5_mini'" in output


def test_every_shipped_study_plans():
    from genlab.study import list_studies

    names = list_studies()
    assert {"faces_phase1_pipeline", "faces_phase2_gan", "faces_phase3_vae", "faces_phase4_ddpm",
            "faces_phase5_finalists", "fashion_mnist_phase5_mini"} <= set(names)
    for name in names:
        study, _ = load_study(name)
        plan = plan_study(study, output_dir="unused")
        assert len(plan) == len(study.variants) and all(p.variant.because for p in plan), name


def test_a_study_compares_its_variants_and_puts_their_fid_in_the_table(tmp_path):
    study, _ = load_study(write_study(tmp_path, compare={"metrics": ["fid", "prdc"], "num_samples": 16,
                                                         "real_samples": 32}))
    out = tmp_path / "out"
    run_study(study, plan_study(study, output_dir=out, overrides=["training.num_epochs=1"]), output_dir=out)
    compared = {r["run"]: r for r in json.loads((out / "tiny" / "compare" / "compare.json").read_text())["rows"]}
    rows = {r["variant"]: r for r in json.loads((out / "tiny" / "study.json").read_text())["rows"]}
    assert set(compared) == {"gan", "vae"}
    assert all(rows[name]["compared_fid"] == compared[name]["fid"] for name in compared)
    page = (out / "tiny" / "report.html").read_text()
    assert "Comparison under identical conditions" in page and "Worst samples" in page
