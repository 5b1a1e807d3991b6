"""Early stopping on an evaluated metric, eval callbacks, per-epoch checkpoints and training.init_from."""

from __future__ import annotations

import pytest
import torch

import genlab.train.hooks as hooks
from genlab.errors import CheckpointError
from genlab.evaluation import Evaluation
from genlab.runs.checkpoint import load_checkpoint
from genlab.train import train
from genlab.train.hooks import EarlyStopping
from genlab.train.logging import read_jsonl


def test_early_stopping_counts_evaluations_without_improvement():
    watch = EarlyStopping("fid", patience=2)
    assert [watch.update(v) for v in (3.0, 2.0, 2.5, 2.0)] == [False, False, False, True]
    assert watch.best == 2.0 and watch.stale == 2
    never = EarlyStopping("fid", patience=0)
    assert not any(never.update(v) for v in (1.0, 2.0, 3.0, 4.0))
    restored = EarlyStopping("fid", 2)
    restored.load_state_dict(watch.state_dict())
    assert (restored.best, restored.stale) == (2.0, 2)
    assert EarlyStopping("acd", 1).update(float("nan")) is True  # a non-finite score never counts as progress
    rising = EarlyStopping("is_mean", patience=2, higher_is_better=True)
    assert [rising.update(v) for v in (1.0, 2.0, 1.5, 3.0, 2.9, 2.8)] == [False, False, False, False, False, True]
    assert rising.best == 3.0


class ScriptedEvaluator:
    """Stands in for RunEvaluator: returns a fixed sequence of scores, one per evaluation."""

    scores = [5.0, 4.0, 4.5, 4.2, 1.0, 1.0]

    def __init__(self, cfg, device, metrics=None) -> None:
        self.calls = 0
        self.extractor = None

    def __call__(self, method, seed=None, num_samples=None) -> Evaluation:
        score = self.scores[self.calls]
        self.calls += 1
        return Evaluation({"acd": score}, torch.zeros(1, 1, 16, 16))


def test_loop_stops_after_patience_evaluations_and_reports_each(tiny_config, monkeypatch):
    monkeypatch.setattr(hooks, "RunEvaluator", ScriptedEvaluator)
    seen: list[tuple[int, float]] = []
    cfg = tiny_config("training.num_epochs=6", "eval.every_epochs=1", "eval.metrics=[acd]", "gasten.classifier=unused",
                      "eval.best_metric=acd", "eval.early_stop_patience=2", "checkpoint.every_epochs=1", "name=stop")
    result = train(cfg, eval_callbacks=(lambda epoch, results: seen.append((epoch, results["acd"])),))
    assert result.early_stopped and not result.interrupted
    assert seen == [(1, 5.0), (2, 4.0), (3, 4.5), (4, 4.2)]  # epochs 3 and 4 did not beat 4.0
    assert result.step == 4 * 8 < result.total_steps
    assert load_checkpoint(result.run_dir / "checkpoints" / "best.pt")["step"] == 16
    assert sorted(p.name for p in (result.run_dir / "checkpoints").glob("epoch_*.pt")) == [
        f"epoch_000{i}.pt" for i in range(1, 5)]
    evaluations = [r for r in read_jsonl(result.run_dir / "metrics.jsonl") if r.get("evaluation")]
    assert [r["acd"] for r in evaluations] == [5.0, 4.0, 4.5, 4.2]


class RisingInceptionScore(ScriptedEvaluator):
    """An IS that improves at every evaluation (higher is better)."""

    scores = [1.0, 2.0, 3.0]

    def __call__(self, method, seed=None, num_samples=None) -> Evaluation:
        return Evaluation({"is_mean": super().__call__(method).results["acd"]}, torch.zeros(1, 1, 16, 16))


def test_a_rising_inception_score_is_progress_and_the_last_step_is_evaluated(tiny_config, monkeypatch):
    """eval.best_metric=is watches is_mean upwards; max_steps ends the run mid-epoch 3, which is evaluated too."""
    monkeypatch.setattr(hooks, "RunEvaluator", RisingInceptionScore)
    seen: list[tuple[int, float]] = []
    cfg = tiny_config("training.num_epochs=3", "training.max_steps=20", "eval.every_epochs=1", "eval.metrics=[is]",
                      "eval.best_metric=is", "eval.early_stop_patience=1", "name=rising")
    result = train(cfg, eval_callbacks=(lambda epoch, results: seen.append((epoch, results["is_mean"])),))
    assert not result.early_stopped and result.step == 20
    assert seen == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert load_checkpoint(result.run_dir / "checkpoints" / "best.pt")["step"] == 20


def test_init_from_loads_the_weights_but_starts_a_fresh_run(tiny_config):
    first = train(tiny_config("name=first", "training.num_epochs=1"))
    second = train(tiny_config("name=second", "training.num_epochs=1", "training.max_steps=1",
                               f"training.init_from={first.run_dir}"))
    assert second.step == 1
    start = load_checkpoint(first.run_dir / "checkpoints" / "last.pt")["method"]["generator"]
    after = load_checkpoint(second.run_dir / "checkpoints" / "last.pt")["method"]["generator"]
    moved = [name for name in start if start[name].is_floating_point() and not torch.equal(start[name], after[name])]
    assert moved  # one step of training from the loaded weights ...
    assert max((start[n] - after[n]).abs().max().item() for n in moved) < 0.05  # ... moves them only a little
    with pytest.raises(CheckpointError, match="neither a checkpoint file nor a run directory"):
        train(tiny_config("name=third", "training.init_from=/nonexistent/run"))
