"""Each training hook alone, on a stand-in method and run directory (no loop, no data set)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn

from genlab.config import default_config, load_config
from genlab.evaluation import Evaluation
from genlab.methods import Method, SampleOptions
from genlab.runs.checkpoint import CheckpointManager, load_checkpoint
from genlab.runs.rundir import RunDir
from genlab.train.diagnostics import TrainingDiverged
from genlab.train.hooks import (
    CheckpointHook,
    DiagnosticsHook,
    EarlyStopping,
    EvaluationHook,
    LogHook,
    SampleGridHook,
    StepCallbacks,
    SummaryHook,
    TrainState,
    default_hooks,
)
from genlab.train.logging import RunLogger, read_jsonl


class StandIn(Method):
    """A linear 'generator' whose samples are a fixed function of z, recording the options it was asked for."""

    family = "gan"

    def __init__(self) -> None:
        self.net = nn.Linear(4, 3 * 8 * 8)
        self.options: list[SampleOptions] = []

    def make_noise(self, n, generator=None):
        return torch.randn(n, 4, generator=generator)

    def sample(self, noise, labels=None, options=None, generator=None):
        self.options.append(options or SampleOptions())
        return torch.tanh(self.net(noise)).view(-1, 3, 8, 8)

    def grid_options(self):
        return SampleOptions(steps=7)

    def networks(self):
        return {"net": self.net}

    def state_dict(self):
        return {"net": self.net.state_dict()}


@pytest.fixture
def state(tmp_path):
    cfg = default_config()
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    logger = RunLogger(run.root, tensorboard=False)
    st = TrainState(cfg, run, StandIn(), torch.device("cpu"), logger, CheckpointManager(run.checkpoints, keep=0),
                    steps_per_epoch=4, total_steps=12)
    st.checkpoint_state = lambda: {"step": st.step}
    yield st
    logger.close()


def walk(state, hooks, steps, stats=lambda step: {"loss": torch.tensor(float(step))}):
    """Drive hooks like the loop does for `steps` steps."""
    for hook in hooks:
        hook.on_start(state)
    for _ in range(steps):
        state.step += 1
        state.logged = state.samples = state.evaluation = None
        for hook in hooks:
            hook.after_step(state, stats(state.step))


def test_step_callbacks_see_every_step(state):
    seen = []
    walk(state, [StepCallbacks((lambda step, stats: seen.append((step, float(stats["loss"]))),))], 3)
    assert seen == [(1, 1.0), (2, 2.0), (3, 3.0)]


def test_log_hook_averages_each_interval_and_resumes_its_sums(state):
    hook = LogHook(every=3, batch_size=2)
    walk(state, [hook], 4)
    saved = hook.state_dict()
    assert saved["counts"] == {"loss": 1}
    resumed = LogHook(every=3, batch_size=2)
    resumed.load_state_dict(saved)
    walk(state, [resumed], 2)
    records = read_jsonl(state.run.metrics)
    assert [(r["step"], r["loss"]) for r in records] == [(3, 2.0), (6, 5.0)]
    assert all(r["images_per_sec"] > 0 for r in records)


def test_sample_grid_hook_uses_the_methods_grid_options(state):
    hook = SampleGridHook(every=5, fixed_noise=torch.randn(6, 4), batch_size=4)
    walk(state, [hook], 5)
    assert (state.run.samples / "step_00000005.png").is_file() and (state.run.samples / "latest.png").is_file()
    assert not (state.run.samples / "step_00000004.png").exists()
    assert len(state.method.options) == 2 and all(o.steps == 7 for o in state.method.options)
    assert state.samples.shape == (6, 3, 8, 8)


def test_diagnostics_hook_stops_on_a_non_finite_loss(state):
    hook = DiagnosticsHook()
    state.step, state.logged = 3, {"loss_d": math.nan}
    with pytest.raises(TrainingDiverged, match="step 3"):
        hook.after_step(state, {})


def test_diagnostics_hook_logs_sample_saturation(state):
    state.step, state.samples = 2, torch.cat([torch.ones(1, 3, 8, 8), torch.zeros(3, 3, 8, 8)])
    DiagnosticsHook().after_step(state, {})
    assert read_jsonl(state.run.metrics)[-1] == {"step": 2, "sample_saturation": 0.25}


class ScriptedEvaluator:
    """Returns FIDs from a list, one per call, like a RunEvaluator would."""

    extractor = None

    def __init__(self, fids):
        self.fids = list(fids)

    def __call__(self, method):
        return Evaluation({"fid": self.fids.pop(0)}, torch.zeros(1))


def test_evaluation_hook_keeps_best_and_stops_after_patience(state):
    calls = []
    hook = EvaluationHook(ScriptedEvaluator([5.0, 3.0, 4.0, 4.5]), every_epochs=1, best_metric="fid",
                          early_stopping=EarlyStopping("fid", patience=2),
                          callbacks=(lambda epoch, results: calls.append((epoch, results["fid"])),))
    state.total_steps = 100
    for _ in range(16):
        state.step += 1
        hook.after_step(state, {})
        if state.step == 8:  # best.pt was written at the epoch-2 evaluation
            assert load_checkpoint(state.run.checkpoints / "best.pt")["step"] == 8
    assert calls == [(1, 5.0), (2, 3.0), (3, 4.0), (4, 4.5)]
    assert hook.best == 3.0 and load_checkpoint(state.run.checkpoints / "best.pt")["step"] == 8
    assert state.stop_reason is not None and "fid" in state.stop_reason
    assert [r["fid"] for r in read_jsonl(state.run.metrics) if r.get("evaluation")] == [5.0, 3.0, 4.0, 4.5]


class Scripted:
    """Returns {key: value} from a list, one value per call."""

    extractor = None

    def __init__(self, key: str, values: list[float]) -> None:
        self.key, self.values = key, list(values)

    def __call__(self, method: Method) -> Evaluation:
        return Evaluation({self.key: self.values.pop(0)}, torch.zeros(1))


def test_evaluation_hook_evaluates_a_run_that_ends_mid_epoch_at_its_last_step(state):
    calls = []
    hook = EvaluationHook(Scripted("fid", [5.0, 4.0]), every_epochs=1, best_metric="fid",
                          early_stopping=EarlyStopping("fid", patience=0),
                          callbacks=(lambda epoch, results: calls.append((epoch, results["fid"])),))
    state.total_steps = 6  # training.max_steps=6 with 4 steps per epoch
    walk(state, [hook], 6)
    assert calls == [(1, 5.0), (2, 4.0)]  # the epoch in progress at the last step
    assert [(r["step"], r["epoch"]) for r in read_jsonl(state.run.metrics) if r.get("evaluation")] == [(4, 1), (6, 1.5)]
    assert hook.best == 4.0 and load_checkpoint(state.run.checkpoints / "best.pt")["step"] == 6


def test_evaluation_hook_evaluates_a_last_step_on_an_epoch_end_once(state):
    steps = []
    hook = EvaluationHook(Scripted("fid", [3.0, 2.0, 1.0]), every_epochs=2, best_metric="fid",
                          early_stopping=EarlyStopping("fid", patience=0),
                          callbacks=(lambda epoch, results: steps.append(state.step),))
    state.total_steps = 12  # 3 epochs; evaluations every 2, and the last step
    walk(state, [hook], 12)
    assert steps == [8, 12]


def test_higher_is_better_metrics_keep_the_highest_and_stop_when_it_falls(state):
    hook = EvaluationHook(Scripted("is_mean", [2.0, 3.0, 2.5, 2.9]), every_epochs=1, best_metric="is_mean",
                          early_stopping=EarlyStopping("is_mean", patience=2, higher_is_better=True),
                          higher_is_better=True)
    state.total_steps = 100
    walk(state, [hook], 16)
    assert hook.best == 3.0 and load_checkpoint(state.run.checkpoints / "best.pt")["step"] == 8
    assert hook.early_stopping.best == 3.0 and "is_mean" in state.stop_reason


def test_default_hooks_watch_each_metrics_main_key_in_its_direction():
    def evaluation_hook(*overrides):
        cfg = load_config(None, ["eval.every_epochs=1", *overrides])
        (hook,) = [h for h in default_hooks(cfg, torch.device("cpu"), torch.zeros(1, 4)) if isinstance(h, EvaluationHook)]
        return hook

    hook = evaluation_hook("eval.metrics=[fid,kid]", "eval.best_metric=kid")
    assert (hook.best_metric, hook.higher_is_better) == ("kid_mean", False)
    hook = evaluation_hook("eval.metrics=[is,prdc]", "eval.best_metric=is", "eval.early_stop_metric=recall")
    assert (hook.best_metric, hook.higher_is_better) == ("is_mean", True)
    assert (hook.early_stopping.metric, hook.early_stopping.higher_is_better) == ("recall", True)
    hook = evaluation_hook("eval.metrics=[fid]")
    assert (hook.best_metric, hook.higher_is_better, hook.early_stopping.metric) == ("fid", False, "fid")


def test_checkpoint_hook_schedules(state):
    hook = CheckpointHook(every_steps=5, every_epochs=2)
    walk(state, [hook], 12)
    manager = state.checkpoints
    assert sorted(p.name for p in manager.folder.glob("epoch_*.pt")) == ["epoch_0002.pt"]
    assert load_checkpoint(manager.last)["step"] == 10  # step 12 is the last: on_end writes it, not after_step
    hook.on_end(state)
    assert load_checkpoint(manager.last)["step"] == 12


def test_summary_hook_writes_what_the_comparison_reads(state):
    hook = SummaryHook(batch_size=2, sample_images=4)
    hook.load_state_dict({"train_seconds": 100.0})
    walk(state, [hook], 3)
    hook.on_end(state)
    summary = json.loads((state.run.root / "summary.json").read_text())
    assert summary["parameters"] == {"net": 4 * 192 + 192}
    assert summary["train_seconds"] >= 100.0 and summary["images_seen"] == 6 and summary["steps"] == 3
    assert summary["sample_seconds_per_image"] > 0 and summary["final_metrics"] is None
