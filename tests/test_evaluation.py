"""Scoring runs: evaluation during training (best.pt), `genlab evaluate` on a run and on two sources."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from genlab.cli import app
from genlab.runs.checkpoint import load_checkpoint
from genlab.train.logging import read_jsonl
from genlab.train.loop import train


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))


def test_training_evaluates_each_epoch_and_keeps_best(tiny_config):
    cfg = tiny_config("name=scored", "training.num_epochs=2", "data.num_samples=128", "eval.every_epochs=1",
                      "eval.metrics=[fid, kid, prdc]", "eval.extractor=domain", "eval.num_samples=64")
    result = train(cfg)
    records = [r for r in read_jsonl(result.run_dir / "metrics.jsonl") if r.get("evaluation")]
    assert [r["step"] for r in records] == [16, 32]
    for key in ("fid_domain", "kid_domain_mean", "precision_domain", "coverage_domain"):
        assert all(np.isfinite(r[key]) for r in records), key
    best = load_checkpoint(result.run_dir / "checkpoints" / "best.pt")
    assert best["hooks"]["evaluation"]["best"] == min(r["fid_domain"] for r in records)
    assert best["step"] == min(records, key=lambda r: r["fid_domain"])["step"]


def test_evaluate_command_on_a_run_appends_results(tiny_config):
    result = train(tiny_config("name=cli-eval", "training.max_steps=8", "data.num_samples=128"))
    out = CliRunner().invoke(app, ["evaluate", str(result.run_dir), "--metrics", "fid,kid", "--n", "64",
                                   "--extractor", "domain", "--fast"])
    assert out.exit_code == 0, out.output
    assert "fid_domain" in out.output and "kid_domain_mean" in out.output
    record = read_jsonl(result.run_dir / "metrics.jsonl")[-1]
    assert record["evaluation"] and record["samples"] == 64 and record["step"] == 8
    assert record["precision"] == "bf16"  # the domain classifier has no int8 path: fast means bf16 on a CPU


def test_unknown_eval_metric_is_a_config_error():
    from genlab.errors import ConfigError
    from genlab.train import load_experiment

    with pytest.raises(ConfigError, match="did you mean 'fid'"):
        load_experiment(None, ["eval.metrics=[fdi]"])


def test_evaluate_two_sources_needs_both(tmp_path):
    out = CliRunner().invoke(app, ["evaluate", "--fake", str(tmp_path)])
    assert out.exit_code != 0 and "both --fake and --real" in str(out.exception)
