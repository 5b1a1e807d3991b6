"""`genlab gasten tune`: real (tiny) GASTeN trials on SQLite, interrupted and resumed, and on PostgreSQL workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

import genlab.tune.gasten as tune_gasten
from genlab.cli import app
from genlab.train import load_experiment
from genlab.train.logging import read_jsonl
from genlab.tune.gasten import tune_step1, tune_step2

TINY = [
    "data.name=synthetic", "data.image_size=16", "data.num_samples=64", "data.classes=[0,3]",
    "training.batch_size=16", "training.num_epochs=2", "model.latent_dim=8",
    "eval.extractor=domain", "eval.num_samples=64", "eval.metrics=[fid]",
    "tune.base_channels=[4,8]", "tune.num_blocks=[2,3]", "tune.startup_trials=1",
    "logging.tensorboard=false", "logging.log_every=2", "checkpoint.every_steps=1000", "device=cpu",
]


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """The GASTeN preset shrunk to 16 px synthetic shapes, with its own metric cache."""
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))

    def make(*extra: str):
        return load_experiment("gasten/fmnist_3v0", [*TINY, f"output_dir={tmp_path / 'runs'}", *extra])

    return make


def test_step1_study_interrupted_then_resumed(tiny, tmp_path, monkeypatch):
    cfg = tiny()
    study_dir = tmp_path / "study1"
    real_run = tune_gasten.run_step1
    calls = {"n": 0}

    def interrupting(cfg, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second trial
        return real_run(cfg, **kwargs)

    monkeypatch.setattr(tune_gasten, "run_step1", interrupting)
    with pytest.raises(KeyboardInterrupt):
        tune_step1(cfg, study_dir=study_dir, n_trials=3)
    monkeypatch.setattr(tune_gasten, "run_step1", real_run)
    with pytest.raises(Exception, match="--resume"):
        tune_step1(cfg, study_dir=study_dir, n_trials=1)  # the study exists: refuses to silently start over
    outcome = tune_step1(cfg, study_dir=study_dir, resume=True, total_trials=3)

    trials = outcome.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    for trial in (t for t in trials if t.state == TrialState.COMPLETE):
        assert sorted(trial.intermediate_values) == [1, 2]  # FID reported every epoch, for the pruner
        assert trial.value == pytest.approx(min(trial.intermediate_values.values()))
        assert {"lr_g", "lr_d", "beta1", "beta2", "num_blocks", "generator_base_channels"} <= set(trial.params)
        run = Path(trial.user_attrs["run_dir"])
        assert run.parent == study_dir / "trials" and (run / "checkpoints" / "epoch_0002.pt").is_file()
        stored = load_experiment(str(run / "config.yaml"))
        assert stored.training.lr_g == pytest.approx(trial.params["lr_g"])
        assert stored.model.num_blocks == trial.params["num_blocks"]
    summary = json.loads((study_dir / "summary.json").read_text())
    assert summary["best"]["number"] == outcome.study.best_trial.number
    assert (study_dir / "history.png").is_file() and (study_dir / "trials.csv").is_file()


def test_step2_study_reports_pareto_front_and_knee(tiny, tmp_path):
    from genlab.gasten import run_step1
    from genlab.train.classifier import ClassifierTrainConfig, train_classifier

    cfg = tiny()
    classifier = train_classifier(ClassifierTrainConfig(
        data="synthetic", classes=[0, 3], image_size=16, max_samples=400, epochs=1, nf=[4, 8],
        output_dir=str(tmp_path / "classifiers"), name="shapes", progress=False, device="cpu"))
    step1 = run_step1(cfg).run_dir
    study_dir = tmp_path / "study2"
    outcome = tune_step2(cfg, step1, classifiers=[str(classifier.run_dir)], study_dir=study_dir, n_trials=3)
    complete = [t for t in outcome.study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    for trial in complete:
        assert 1 <= trial.params["weight"] <= 30 and trial.params["step1_epoch"] in (1, 2)
        # (FID, ACD): the scores of the trial run's last evaluation, as its metrics.jsonl logged them
        last = [r for r in read_jsonl(Path(trial.user_attrs["run_dir"]) / "metrics.jsonl") if r.get("evaluation")][-1]
        assert trial.values == pytest.approx([last["fid_domain"], last["acd"]])
    summary = json.loads((study_dir / "summary.json").read_text())
    front = {t["number"] for t in summary["pareto_front"]}
    assert front and summary["knee"]["number"] in front
    assert (study_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    from genlab.report.html import render_report

    page = render_report([], "search", study=study_dir)  # `genlab report STUDY_DIR` shows the front and its plot
    assert "Hyper-parameter search" in page and "data:image/png" in page
    assert f"<tr><td>{summary['knee']['number']}</td><td>knee</td>" in page


def test_cli_needs_a_budget(tiny):
    result = CliRunner().invoke(app, ["gasten", "tune", "step1", "--config", "gasten/fmnist_3v0", *TINY])
    assert result.exit_code != 0
    assert "--n-trials" in str(result.exception)


def test_two_workers_share_one_study_on_postgresql(postgres_url, tmp_path):
    """Two `genlab gasten tune step1` processes join one PostgreSQL study; all their trials land in it."""
    env = {**os.environ, "GENLAB_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "genlab", "gasten", "tune", "step1", "--config", "gasten/fmnist_3v0",
               "--storage", postgres_url, "--study-name", "gasten-step1-shared", "--join", "--n-trials", "2"]
    workers = [
        subprocess.Popen([*command, "--worker-index", str(i), "--study-dir", str(tmp_path / f"worker{i}"),
                          *TINY, "tune.pruner=none", "logging.progress=false", f"output_dir={tmp_path / 'runs'}"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(outputs)
    from genlab.tune import open_storage

    study = optuna.load_study(study_name="gasten-step1-shared", storage=open_storage(postgres_url))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert {t.user_attrs["worker"]["worker_index"] for t in trials} == {0, 1}
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) == 2
