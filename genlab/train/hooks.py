"""What happens around the training steps, one small hook each: logs, grids, evaluation, checkpoints.

The loop (`genlab.train.loop`) walks steps and calls, for every hook in order, `on_start` once,
`after_step` after each step and `on_end` once (also after Ctrl-C). A hook that keeps state across
a resume returns it from `state_dict`; the checkpoint stores it under the hook's `name`. Hooks
talk to each other only through the `TrainState` they share: the logging hook publishes the
interval's means in `state.logged`, the grid hook its images in `state.samples`, the evaluation
hook its results in `state.evaluation`, for the hooks after them in the same step.

The default order (`default_hooks`): step callbacks → NaN guard → log → sample grid → diagnostics →
evaluation (best.pt, early stopping, evaluation callbacks) → checkpoint → summary → report.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from genlab import distributed
from genlab.config import Config
from genlab.evaluation import RunEvaluator, best_key
from genlab.images import save_grid
from genlab.methods import Method
from genlab.methods.optim import LR_SCALE_KEY, lr_scale
from genlab.metrics import watched_result
from genlab.report.html import write_report
from genlab.runs.checkpoint import CheckpointManager, load_checkpoint
from genlab.runs.rundir import RunDir
from genlab.train.diagnostics import Diagnostics, TrainingDiverged
from genlab.train.logging import Meter, RunLogger

log = logging.getLogger("genlab")

#: Called after every step with (step, stats); raising stops training without a final checkpoint.
StepCallback = Callable[[int, dict[str, torch.Tensor]], None]
#: Called after every evaluation with (epoch, results), e.g. to report to an Optuna trial; may raise to stop.
EvalCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainState:
    """What the loop shares with its hooks: the run, where training is, and what this step produced."""

    cfg: Config
    run: RunDir
    method: Method
    device: torch.device
    logger: RunLogger
    checkpoints: CheckpointManager
    steps_per_epoch: int
    total_steps: int
    step: int = 0
    stop_reason: str | None = None
    #: Filled by the loop: builds the whole checkpoint (core state plus every hook's state).
    checkpoint_state: Callable[[], dict[str, Any]] = field(default=dict, repr=False)
    #: Published during one step, cleared before the next.
    logged: dict[str, float] | None = None
    samples: torch.Tensor | None = None
    evaluation: dict[str, float] | None = None
    #: Consecutive steps with a NaN/Inf loss so far (the NaN guard counts; checkpoints wait while it is above 0).
    bad_streak: int = 0

    @property
    def epoch(self) -> float:
        """Fractional epoch reached."""
        return self.step / self.steps_per_epoch

    @property
    def at_epoch_end(self) -> bool:
        """True when the step just done finished an epoch."""
        return self.step % self.steps_per_epoch == 0

    @property
    def finished(self) -> bool:
        """True once the step budget is spent."""
        return self.step >= self.total_steps

    def due(self, every: int) -> bool:
        """True every `every` steps and at the last step (0 = never)."""
        return every > 0 and (self.step % every == 0 or self.finished)

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after this step (the first reason given is kept)."""
        self.stop_reason = self.stop_reason or reason


class Hook:
    """Base of every hook: override what you need; `name` keys its state in checkpoints."""

    name = "hook"
    #: Under torchrun, whether only rank 0 runs this hook (it writes files); the others run it too otherwise.
    main_rank_only = False

    def on_start(self, state: TrainState) -> None:
        """Once, before the first step (also on resume)."""

    def after_step(self, state: TrainState, stats: dict[str, torch.Tensor]) -> None:
        """After every step, with the step's detached scalar stats."""

    def on_end(self, state: TrainState) -> None:
        """Once, when the loop stops for any reason but an exception."""

    def state_dict(self) -> dict[str, Any] | None:
        """State to carry across a resume (None: nothing)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


class StepCallbacks(Hook):
    """User functions called with (step, stats) after every step (GASTeN and tests use them)."""

    name = "callbacks"

    def __init__(self, callbacks: tuple[StepCallback, ...]) -> None:
        self.callbacks = callbacks

    def after_step(self, state: TrainState, stats: dict[str, torch.Tensor]) -> None:
        for callback in self.callbacks:
            callback(state.step, stats)


class LogHook(Hook):
    """Averages each step's stats and appends them every `every` steps (JSONL, TensorBoard, progress bar).

    The running sums go into the checkpoint, so the line that straddles a resume averages the same
    steps as an uninterrupted run's.
    """

    name = "log"
    PROGRESS_FIELDS = {"loss_d": "D", "loss_g": "G", "loss": "loss", "d_real": "D(x)", "d_fake": "D(G(z))",
                       "d_acc_real": "acc(x)", "d_acc_fake": "acc(G(z))", "images_per_sec": "img/s"}

    def __init__(self, every: int, batch_size: int, progress: Any = None, device: torch.device | str = "cpu") -> None:
        self.every, self.batch_size, self.progress, self.device = every, batch_size, progress, device
        self.meter = Meter()
        self.window_start, self.window_step = time.perf_counter(), 0

    def on_start(self, state: TrainState) -> None:
        self.window_start, self.window_step = time.perf_counter(), state.step

    def after_step(self, state: TrainState, stats: dict[str, torch.Tensor]) -> None:
        self.meter.add(stats)
        if self.progress is not None:
            self.progress.update(1)
        if not state.due(self.every):
            return
        values = {**state.method.interval_values(self.meter.means()), **state.method.health()}
        now = time.perf_counter()
        values["images_per_sec"] = (state.step - self.window_step) * self.batch_size / max(now - self.window_start, 1e-9)
        self.window_start, self.window_step = now, state.step
        state.logger.log(state.step, values, epoch=round(state.epoch, 4))
        state.logged = values
        if self.progress is not None:
            self.progress.set_postfix(self.progress_fields(values), refresh=False)

    @classmethod
    def progress_fields(cls, values: dict[str, float]) -> dict[str, str]:
        """Short progress-bar fields: losses, D(x), D(G(z)), images/s."""
        return {short: (f"{values[k]:.0f}" if k == "images_per_sec" else f"{values[k]:.3f}")
                for k, short in cls.PROGRESS_FIELDS.items() if k in values}

    def on_end(self, state: TrainState) -> None:
        if self.progress is not None:
            self.progress.close()

    def state_dict(self) -> dict[str, Any]:
        return self.meter.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.meter.load_state_dict(state, self.device)


class SampleGridHook(Hook):
    """Every `every` steps, draws the fixed-noise grid with the method's grid options and saves it.

    The method's own figures from a fixed real batch (a VAE's reconstructions and interpolation) are
    saved beside it as `<figure>_step_XXXXXXXX.png` and `<figure>_latest.png`.
    """

    name = "samples"
    main_rank_only = True

    def __init__(self, every: int, fixed_noise: torch.Tensor, batch_size: int,
                 fixed_real: torch.Tensor | None = None) -> None:
        self.every, self.fixed_noise, self.batch_size, self.fixed_real = every, fixed_noise, batch_size, fixed_real

    def after_step(self, state: TrainState, stats: dict[str, torch.Tensor]) -> None:
        if not state.due(self.every):
            return
        options = state.method.grid_options()
        images = torch.cat([state.method.sample(z, options=options) for z in self.fixed_noise.split(self.batch_size)])
        grid = save_grid(images, state.run.samples / f"step_{state.step:08d}.png")
        save_grid(images, state.run.samples / "latest.png")
        state.logger.image("samples", grid, state.step)
        state.samples = images
        if self.fixed_real is not None:
            for name, (figure, per_row) in state.method.figures(self.fixed_real).items():
                grid = save_grid(figure, state.run.samples / f"{name}_step_{state.step:08d}.png", nrow=per_row)
                save_grid(figure, state.run.samples / f"{name}_latest.png", nrow=per_row)
                state.logger.image(name, grid, state.step)


def _cpu_copy(obj: Any) -> Any:
    """A deep copy of a state dict with every tensor on the CPU (a spare copy costs no device memory)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {key: _cpu_copy(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(value) for value in obj)
    return copy.deepcopy(obj)


class NanGuardHook(Hook):
    """Counts steps whose losses or gradients are NaN/Inf and, after `patience` in a row, recovers
    (training.nan_guard=recover).

    The optimisers already skipped those steps' updates (`MixedPrecision.step`, whose one device sync per optimiser
    step also checked the losses, so the guard reads its verdict without another); the guard keeps their stats out
    of the log and, when the run does not heal, reloads the last good checkpoint's method state (else the state
    at the start), multiplies every optimiser's learning rate by `lr_factor`, logs it and goes on. After
    `max_recoveries` it stops with TrainingDiverged. With nan_guard=off it does nothing (the diagnostics hook stops
    the run at the next log, as before).
    """

    name = "nan_guard"

    def __init__(self, mode: str, patience: int, lr_factor: float, max_recoveries: int) -> None:
        self.mode, self.patience, self.lr_factor, self.max_recoveries = mode, patience, lr_factor, max_recoveries
        self.bad_steps = 0
        #: Of bad_steps, those with finite losses whose gradients were NaN/Inf (the optimiser skipped them).
        self.bad_gradient_steps = 0
        self.recoveries = 0
        self.initial: dict[str, Any] | None = None

    def on_start(self, state: TrainState) -> None:
        if self.mode != "off" and not state.checkpoints.last.is_file():
            self.initial = _cpu_copy(state.method.state_dict())  # what to go back to before the first last.pt

    def after_step(self, state: TrainState, stats: dict[str, torch.Tensor]) -> None:
        if self.mode == "off":
            return
        precision = getattr(state.method, "precision", None)
        skipped, losses_finite = precision.take_verdict() if hasattr(precision, "take_verdict") else (0, None)
        if losses_finite is None:  # no optimiser step checked the losses (fp16's GradScaler steps)
            losses = [v.detach().float().reshape(()) for k, v in stats.items() if k.startswith("loss")]
            losses_finite = not losses or bool(torch.isfinite(torch.stack(losses)).all())  # a device sync
        if losses_finite and not skipped:
            state.bad_streak = 0
            return
        self.bad_steps += 1
        self.bad_gradient_steps += int(losses_finite)
        state.bad_streak += 1
        stats.clear()  # a skipped step: its NaN stats stay out of the interval means
        record = {"nonfinite_steps": float(self.bad_steps)}
        if self.bad_gradient_steps:
            record["nonfinite_gradient_steps"] = float(self.bad_gradient_steps)
        state.logger.log(state.step, record)
        if state.bad_streak >= self.patience:
            self.recover(state)

    def recover(self, state: TrainState) -> None:
        """Reload the last good state, scale the learning rates down, log it (or stop once out of recoveries)."""
        if self.recoveries >= self.max_recoveries:
            raise TrainingDiverged(
                f"Training diverged at step {state.step}: {state.bad_streak} steps in a row gave NaN/Inf losses even "
                f"after {self.recoveries} recoveries (each reloaded the last good checkpoint and multiplied the "
                f"learning rates by {self.lr_factor}). checkpoints/last.pt is intact. Try much lower learning rates "
                "(training.lr_g / training.lr_d), gradient clipping (training.grad_clip=1.0) or a more stable loss "
                "(training.loss_type=hinge), and `genlab doctor <run>`.")
        path = state.checkpoints.last
        source = load_checkpoint(path)["method"] if path.is_file() else self.initial
        where = str(path) if path.is_file() else "the start of this session"
        if source is None:
            raise TrainingDiverged(f"Training diverged at step {state.step} and there is no good state to reload.")
        scales = [lr_scale(opt) * self.lr_factor for opt in state.method.optimizers()]
        state.method.load_state_dict(source)
        for optimizer, scale in zip(state.method.optimizers(), scales, strict=True):
            for group in optimizer.param_groups:
                group[LR_SCALE_KEY] = scale
        self.recoveries += 1
        lr = scales[0] if scales else 1.0
        log.warning("Step %d: %d steps in a row gave NaN/Inf losses; reloaded %s and multiplied the learning rates by "
                    "%s (now %.3g× the configured ones), recovery %d of %d.", state.step, state.bad_streak, where,
                    self.lr_factor, lr, self.recoveries, self.max_recoveries)
        state.logger.log(state.step, {"nan_recoveries": float(self.recoveries), "lr_scale": lr})
        state.bad_streak = 0

    def state_dict(self) -> dict[str, Any]:
        return {"bad_steps": self.bad_steps, "bad_gradient_steps": self.bad_gradient_steps,
                "recoveries": self.recoveries}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bad_steps, self.recoveries = int(state["bad_steps"]), int(state["recoveries"])
        self.bad_gradient_steps = int(state.get("bad_gradient_steps", 0))  # absent in checkpoints before it


class DiagnosticsHook(Hook):
    """Checks what the log and grid hooks published this step: divergence, dominance, saturation and collapse.

    Samples are compared with `reference` real images (the same count as the grid), so the alarms fire
    on what the generator adds, not on what the data already has. The G/D parameter ratio is logged once.
    """

    name = "diagnostics"

    def __init__(self, reference: torch.Tensor | None = None, loss_type: str | None = None) -> None:
        self.diagnostics = Diagnostics(loss_type)
        self.reference = reference

    def on_start(self, state: TrainState) -> None:
        if state.step == 0:
            capacity = self.diagnostics.check_capacity(state.method.parameter_counts())
            if capacity:
                state.logger.log(0, capacity)

    def after_step(self, state: TrainState, stats: dict[str, torch.Tensor]) -> None:
        if state.logged is not None:
            self.diagnostics.check_losses(state.step, state.logged)
        if state.samples is not None:
            values = self.diagnostics.check_samples(state.step, state.samples, self.reference,
                                                    alarm=state.method.saturation_alarm)
            state.logger.log(state.step, values)

    def state_dict(self) -> dict[str, Any]:
        return self.diagnostics.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.diagnostics.load_state_dict(state)


def improves(value: float | None, best: float | None, higher_is_better: bool) -> bool:
    """True when `value` is finite and beats `best` (None: nothing yet) in the metric's direction."""
    if value is None or not math.isfinite(value):
        return False
    return best is None or (value > best if higher_is_better else value < best)


class EarlyStopping:
    """Counts evaluations since `metric` last improved; asks to stop after `patience` of them (0 = never)."""

    def __init__(self, metric: str, patience: int, higher_is_better: bool = False) -> None:
        self.metric, self.patience, self.higher_is_better = metric, patience, higher_is_better
        self.best: float | None = None
        self.stale = 0

    def update(self, value: float | None) -> bool:
        """Record one evaluation's value; True when training should stop."""
        if improves(value, self.best, self.higher_is_better):
            self.best, self.stale = value, 0
        else:
            self.stale += 1
        return self.patience > 0 and self.stale >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "stale": self.stale}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.stale = state["best"], state["stale"]


class EvaluationHook(Hook):
    """Every `eval.every_epochs` epochs and at the last step: score G, keep best.pt, early-stop, call eval callbacks.

    `best_metric` is a result key before the extractor's suffix (kid_mean, not kid); `higher_is_better`
    its direction. A run that ends mid-epoch (training.max_steps) is evaluated at its last step, once;
    callbacks then get the epoch in progress (ceil), the log its fractional epoch.
    """

    name = "evaluation"

    def __init__(self, evaluator: RunEvaluator, every_epochs: int, best_metric: str, early_stopping: EarlyStopping,
                 callbacks: tuple[EvalCallback, ...] = (), higher_is_better: bool = False) -> None:
        self.evaluator, self.every_epochs, self.best_metric = evaluator, every_epochs, best_metric
        self.early_stopping, self.callbacks, self.higher_is_better = early_stopping, callbacks, higher_is_better
        self.best: float | None = None
        self.last: dict[str, float] | None = None

    def after_step(self, state: TrainState, stats: dict[str, torch.Tensor]) -> None:
        epochs = math.ceil(state.epoch)
        if not (state.finished or (state.at_epoch_end and epochs % self.every_epochs == 0)):
            return
        with distributed.sharing():  # torchrun: every rank extracts its share of the features, gathered once
            evaluation = self.evaluator(state.method)
        results = evaluation.results
        extra = {} if evaluation.histogram is None else {"classifier_histogram": evaluation.histogram}
        logged_epoch = epochs if state.at_epoch_end else round(state.epoch, 4)
        state.logger.log(state.step, results, epoch=logged_epoch, evaluation=True, **extra)
        if evaluation.probs is not None:
            state.logger.histogram("classifier_output", evaluation.probs, state.step)
        state.evaluation = self.last = results
        score = results.get(best_key(self.best_metric, self.evaluator.extractor))
        if improves(score, self.best, self.higher_is_better):
            self.best = score
            state.checkpoints.save_as(state.checkpoint_state(), "best.pt")
        log.info("Epoch %d: %s", epochs, ", ".join(f"{k}={v:.4g}" for k, v in results.items()))
        for callback in self.callbacks:
            callback(epochs, results)
        watch = self.early_stopping
        if watch.update(results.get(best_key(watch.metric, self.evaluator.extractor))):
            best = "none finite" if watch.best is None else f"{watch.best:.4g}"
            state.request_stop(f"early stopping: {watch.metric} has not improved for {watch.stale} evaluations "
                               f"(best {best})")
            log.info("Early stopping: %s has not improved for %d evaluations (best %s).", watch.metric, watch.stale, best)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "last": self.last, "early_stop": self.early_stopping.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.last = state.get("best"), state.get("last")
        if state.get("early_stop"):
            self.early_stopping.load_state_dict(state["early_stop"])


class CheckpointHook(Hook):
    """last.pt (+ numbered snapshots) every `every_steps`, epoch_XXXX.pt every `every_epochs`, and at the end."""

    name = "checkpoint"
    main_rank_only = True

    def __init__(self, every_steps: int, every_epochs: int) -> None:
        self.every_steps, self.every_epochs = every_steps, every_epochs

    def after_step(self, state: TrainState, stats: dict[str, torch.Tensor]) -> None:
        epochs = state.step // state.steps_per_epoch
        if self.every_epochs and state.at_epoch_end and epochs % self.every_epochs == 0:
            state.checkpoints.save_as(state.checkpoint_state(), f"epoch_{epochs:04d}.pt")
        if state.step % self.every_steps == 0 and not state.finished and state.bad_streak == 0:
            state.checkpoints.save(state.checkpoint_state(), state.step)

    def on_end(self, state: TrainState) -> None:
        state.checkpoints.save(state.checkpoint_state(), state.step)


class SummaryHook(Hook):
    """Writes summary.json at the end: parameters per network, training time and images, sampling cost, metrics.

    Training seconds add up over resumes (they travel in the checkpoint). Sampling time per image
    is measured on one batch of `sample_images` (default: the training batch size, which is known to
    fit in memory) with the method's default sampler.
    """

    name = "summary"
    main_rank_only = True

    def __init__(self, batch_size: int, sample_images: int | None = None) -> None:
        self.batch_size, self.sample_images = batch_size, sample_images or batch_size
        self.previous_seconds = 0.0
        self.started = time.perf_counter()
        self.evaluation: EvaluationHook | None = None

    def on_start(self, state: TrainState) -> None:
        self.started = time.perf_counter()

    def train_seconds(self) -> float:
        """Wall time spent training so far, over every session of this run."""
        return self.previous_seconds + time.perf_counter() - self.started

    def on_end(self, state: TrainState) -> None:
        seconds = self.train_seconds()
        method = state.method
        noise = method.make_noise(self.sample_images, torch.Generator(state.device).manual_seed(0))
        start = time.perf_counter()
        method.sample(noise)
        sample_seconds = (time.perf_counter() - start) / self.sample_images
        summary = {
            "family": state.cfg.model.family,
            "architecture": state.cfg.model.architecture,
            "parameters": method.parameter_counts(),
            "train_seconds": round(seconds, 3),
            "steps": state.step,
            "total_steps": state.total_steps,
            "images_seen": state.step * self.batch_size,
            "sample_seconds_per_image": sample_seconds,
            "status": self.status(state),
            "stop_reason": state.stop_reason,
            "final_metrics": self.evaluation.last if self.evaluation else None,
            "best_metric": state.cfg.eval.best_metric if self.evaluation else None,
            "best": self.evaluation.best if self.evaluation else None,
        }
        path = state.run.root / "summary.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(path)

    @staticmethod
    def status(state: TrainState) -> str:
        """finished, stopped early (a hook asked to stop) or interrupted (Ctrl-C / SIGTERM)."""
        if state.finished or state.stop_reason is None:
            return "finished"
        return "interrupted" if state.stop_reason.startswith("interrupted") else "stopped early"

    def state_dict(self) -> dict[str, Any]:
        return {"train_seconds": self.train_seconds()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.previous_seconds = float(state["train_seconds"])


def watched(name: str, metrics: list[str]) -> tuple[str, bool]:
    """(result key, higher_is_better) of eval.best_metric / early_stop_metric (kid -> kid_mean, is: higher)."""
    return watched_result(name, metrics) or (name, False)


class ReportHook(Hook):
    """Writes the run's self-contained report.html when training stops (after summary.json, which it shows)."""

    name = "report"
    main_rank_only = True

    def on_end(self, state: TrainState) -> None:
        write_report([state.run.root], state.run.root / "report.html", title=f"genlab run {state.run.root.name}")


def default_hooks(cfg: Config, device: torch.device, fixed_noise: torch.Tensor, fixed_real: torch.Tensor | None = None,
                  progress: Any = None,
                  callbacks: tuple[StepCallback, ...] = (),
                  eval_callbacks: tuple[EvalCallback, ...] = (),
                  reference_real: torch.Tensor | None = None) -> list[Hook]:
    """The hooks every run gets, in order, from its config (`reference_real`: real images the samples are held to)."""
    t = cfg.training
    hooks: list[Hook] = [StepCallbacks(callbacks),
                         NanGuardHook(t.nan_guard, t.nan_patience, t.nan_lr_factor, t.nan_max_recoveries),
                         LogHook(cfg.logging.log_every, t.batch_size, progress, device),
                         SampleGridHook(cfg.logging.sample_every, fixed_noise, t.batch_size, fixed_real),
                         DiagnosticsHook(reference_real if cfg.logging.diagnostics else None,
                                         getattr(t, "loss_type", None))]
    evaluation = None
    if cfg.eval.metrics and cfg.eval.every_epochs:
        best, higher = watched(cfg.eval.best_metric, cfg.eval.metrics)
        early, early_higher = watched(cfg.eval.early_stop_metric or cfg.eval.best_metric, cfg.eval.metrics)
        watch = EarlyStopping(early, cfg.eval.early_stop_patience, early_higher)
        evaluation = EvaluationHook(RunEvaluator(cfg, device), cfg.eval.every_epochs, best, watch, eval_callbacks,
                                    higher_is_better=higher)
        hooks.append(evaluation)
    summary = SummaryHook(t.batch_size)
    summary.evaluation = evaluation
    hooks += [CheckpointHook(cfg.checkpoint.every_steps, cfg.checkpoint.every_epochs), summary]
    if cfg.logging.report:
        hooks.append(ReportHook())
    return hooks
