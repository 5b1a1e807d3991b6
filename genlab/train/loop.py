"""The one training loop, for every model family.

Read top to bottom: resolve the run directory, build data, method and fixed noise, restore a
checkpoint if resuming, then step through (epoch, batch) pairs in a seeded order, logging,
drawing sample grids and checkpointing on their schedules. Ctrl-C or SIGTERM stops at the next
step boundary and writes `last.pt`; a crash leaves the previous checkpoint untouched.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from genlab.config import Config, validate
from genlab.data import EpochLoader, build_dataset
from genlab.data.augment import resolve_policy
from genlab.errors import CheckpointError, GenlabError
from genlab.evaluation import RunEvaluator, best_key
from genlab.methods import METHODS, Method, StepContext
from genlab.models import DataShape
from genlab.train.checkpoint import CheckpointManager, load_checkpoint
from genlab.train.diagnostics import Diagnostics
from genlab.train.logging import Meter, RunLogger, truncate_jsonl
from genlab.train.rundir import RunDir, write_env
from genlab.utils import rng_state, seed_everything, select_device, set_rng_state

log = logging.getLogger("genlab")

#: Called after every step with (step, stats); raising stops training without a final checkpoint.
StepCallback = Callable[[int, dict[str, torch.Tensor]], None]
#: Called after every evaluation with (epoch, results), e.g. to report to an Optuna trial; may raise to stop.
EvalCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """What a finished (or stopped) run leaves behind."""

    run_dir: Path
    step: int
    total_steps: int
    interrupted: bool
    early_stopped: bool = False


class EarlyStopping:
    """Counts evaluations since `metric` last improved; asks to stop after `patience` of them (0 = never)."""

    def __init__(self, metric: str, patience: int) -> None:
        self.metric, self.patience = metric, patience
        self.best: float | None = None
        self.stale = 0

    def update(self, value: float | None) -> bool:
        """Record one evaluation's value; True when training should stop."""
        if value is None or not math.isfinite(value):
            self.stale += 1
        elif self.best is None or value < self.best:
            self.best, self.stale = value, 0
        else:
            self.stale += 1
        return self.patience > 0 and self.stale >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "stale": self.stale}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.stale = state["best"], state["stale"]


class _StopFlag:
    requested = False


@contextmanager
def graceful_interrupts() -> Iterator[_StopFlag]:
    """First Ctrl-C/SIGTERM asks the loop to stop after the current step; a second Ctrl-C aborts."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.requested = True
        print("\nStopping after this step and saving a checkpoint (Ctrl-C again to abort).", file=sys.stderr)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> torch.Tensor:
    """Save images in [-1, 1] as one PNG grid; returns the grid (C×H×W in [0, 1])."""
    nrow = nrow or max(1, int(math.ceil(math.sqrt(len(images)))))
    grid = make_grid(images.detach().float().cpu(), nrow=nrow, normalize=True, value_range=(-1, 1), padding=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    return grid


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True,
                mininterval=0.5, file=sys.stderr)


def train(
    cfg: Config | None = None,
    *,
    resume: str | Path | None = None,
    overrides: list[str] | None = None,
    preset_name: str | None = None,
    callbacks: tuple[StepCallback, ...] = (),
    eval_callbacks: tuple[EvalCallback, ...] = (),
) -> TrainResult:
    """Train `cfg` in a new run directory, or continue the run at `resume` exactly where it stopped."""
    checkpoint = None
    if resume is not None:
        run = RunDir.open(resume)
        manager = CheckpointManager(run.checkpoints)
        checkpoint = load_checkpoint(manager.last)
        from genlab.config import apply_overrides

        cfg = validate(apply_overrides(checkpoint["config"], overrides or []), f"{run.config} + overrides")
    elif cfg is None:
        raise ValueError("train() needs a config or a run directory to resume")
    else:
        run = RunDir.create(cfg, preset_name)
    manager = CheckpointManager(run.checkpoints, cfg.checkpoint.keep)
    t = cfg.training

    seed_everything(cfg.data.seed)
    device = select_device(cfg.device)
    dataset = build_dataset(cfg.data)
    if len(dataset) < t.batch_size:
        raise GenlabError(f"{dataset.name} has {len(dataset)} images, fewer than training.batch_size={t.batch_size}. "
                          "Lower the batch size or use more data.")
    augment = resolve_policy(cfg.data.augment, cfg.data.hflip)
    loader = EpochLoader(dataset, t.batch_size, cfg.data.seed, device, augment, cfg.data.num_workers, cfg.data.balanced)
    shape = DataShape(dataset.image_size, dataset.channels, dataset.num_classes)
    method: Method = METHODS.get(cfg.model.family)(cfg, shape, device)
    fixed_noise = method.make_noise(cfg.logging.num_sample_images, torch.Generator(device=device).manual_seed(cfg.data.seed + 2))
    aug_rng = torch.Generator().manual_seed(cfg.data.seed + 3)
    steps_per_epoch = loader.steps_per_epoch
    total_steps = t.num_epochs * steps_per_epoch
    if t.max_steps is not None:
        total_steps = min(total_steps, t.max_steps)

    step = 0
    best: float | None = None
    if checkpoint is None and t.init_from:
        init_weights(method, t.init_from, shape)
    if checkpoint is not None:
        if checkpoint["steps_per_epoch"] != steps_per_epoch:
            raise CheckpointError(f"{run.root} was trained with {checkpoint['steps_per_epoch']} steps per epoch but the "
                                  f"data now gives {steps_per_epoch}; data or batch-size settings changed since.")
        method.load_state_dict(checkpoint["method"])
        set_rng_state(checkpoint["rng"])
        aug_rng.set_state(checkpoint["aug_rng"])
        fixed_noise = checkpoint["fixed_noise"].to(device)
        step = int(checkpoint["step"])
        best = checkpoint.get("best")
        truncate_jsonl(run.metrics, step)
        log.info("Resuming %s from step %d of %d", run.root, step, total_steps)
    write_env(run, device, cfg.data.seed, resumed_from_step=step if checkpoint is not None else None)

    def state() -> dict:
        return {"step": step, "steps_per_epoch": steps_per_epoch, "config": cfg.to_dict(), "method": method.state_dict(),
                "rng": rng_state(), "aug_rng": aug_rng.get_state(), "fixed_noise": fixed_noise.cpu(),
                "data_shape": asdict(shape), "best": best,
                "early_stop": watch.state_dict()}

    evaluator = RunEvaluator(cfg, device) if cfg.eval.metrics and cfg.eval.every_epochs else None
    watch = EarlyStopping(cfg.eval.early_stop_metric or cfg.eval.best_metric, cfg.eval.early_stop_patience)
    if checkpoint is not None and checkpoint.get("early_stop"):
        watch.load_state_dict(checkpoint["early_stop"])

    logger = RunLogger(run.root, cfg.logging.tensorboard, purge_step=step + 1 if checkpoint is not None else None)
    diagnostics = Diagnostics()
    meter = Meter()
    bar = _progress(total_steps, step, cfg.logging.progress)
    interrupted = early_stopped = False
    window_start, window_step = time.perf_counter(), step
    try:
        with graceful_interrupts() as stop:
            while step < total_steps and not stop.requested:
                epoch, start_batch = divmod(step, steps_per_epoch)
                for batch in loader.epoch(epoch, start_batch, aug_rng):
                    stats = method.train_step(batch, StepContext(step, steps_per_epoch, total_steps))
                    step += 1
                    for callback in callbacks:
                        callback(step, stats)
                    meter.add(stats)
                    bar.update(1)
                    if step % cfg.logging.log_every == 0 or step == total_steps:
                        values = meter.means()
                        now = time.perf_counter()
                        values["images_per_sec"] = (step - window_step) * t.batch_size / max(now - window_start, 1e-9)
                        window_start, window_step = now, step
                        diagnostics.check_losses(step, values)
                        logger.log(step, values, epoch=round(step / steps_per_epoch, 4))
                        bar.set_postfix(diagnostics.summary(values), refresh=False)
                    if step % cfg.logging.sample_every == 0 or step == total_steps:
                        images = torch.cat([method.sample(z) for z in fixed_noise.split(t.batch_size)])
                        grid = save_grid(images, run.samples / f"step_{step:08d}.png")
                        save_grid(images, run.samples / "latest.png")
                        logger.image("samples", grid, step)
                        logger.log(step, {"sample_saturation": diagnostics.check_saturation(step, images)})
                    epochs_done, within = divmod(step, steps_per_epoch)
                    if evaluator is not None and within == 0 and (
                        epochs_done % cfg.eval.every_epochs == 0 or step == total_steps
                    ):
                        evaluation = evaluator(method)
                        results = evaluation.results
                        extra = {} if evaluation.histogram is None else {"classifier_histogram": evaluation.histogram}
                        logger.log(step, results, epoch=epochs_done, evaluation=True, **extra)
                        if evaluation.probs is not None:
                            logger.histogram("classifier_output", evaluation.probs, step)
                        score = results.get(best_key(cfg.eval.best_metric, evaluator.extractor))
                        if score is not None and (best is None or score < best):
                            best = score
                            manager.save_as(state(), "best.pt")
                        log.info("Epoch %d: %s", epochs_done, ", ".join(f"{k}={v:.4g}" for k, v in results.items()))
                        for eval_callback in eval_callbacks:
                            eval_callback(epochs_done, results)
                        if watch.update(results.get(best_key(watch.metric, evaluator.extractor))):
                            early_stopped = True
                            log.info("Early stopping: %s has not improved for %d evaluations (best %.4g).",
                                     watch.metric, watch.stale, watch.best)
                    if cfg.checkpoint.every_epochs and within == 0 and epochs_done % cfg.checkpoint.every_epochs == 0:
                        manager.save_as(state(), f"epoch_{epochs_done:04d}.pt")
                    if step % cfg.checkpoint.every_steps == 0 and step < total_steps:
                        manager.save(state(), step)
                    if step >= total_steps or stop.requested or early_stopped:
                        break
                if early_stopped:
                    break
            interrupted = stop.requested and step < total_steps and not early_stopped
            manager.save(state(), step)
    finally:
        bar.close()
        logger.close()
    return TrainResult(run.root, step, total_steps, interrupted, early_stopped)


def resolve_init_checkpoint(source: str | Path) -> Path:
    """training.init_from as a checkpoint file: a .pt path, or a run directory (its checkpoints/last.pt)."""
    path = Path(source)
    if path.is_dir():
        return RunDir.open(path).checkpoints / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"training.init_from={str(source)!r} is neither a checkpoint file nor a run directory. "
                              "Give a .pt file (e.g. runs/<name>/checkpoints/epoch_0005.pt) or a run directory.")
    return path


def init_weights(method: Method, source: str | Path, shape: DataShape) -> None:
    """Load another run's method state (networks, EMA, optimisers) as the starting point of this one."""
    path = resolve_init_checkpoint(source)
    state = load_checkpoint(path)
    if DataShape(**state["data_shape"]) != shape:
        raise CheckpointError(f"training.init_from={path} was trained on {state['data_shape']} images but this run's "
                              f"data gives {asdict(shape)}; the data settings must match.")
    try:
        method.load_state_dict(state["method"])
    except (RuntimeError, KeyError, ValueError) as err:
        raise CheckpointError(f"training.init_from={path} does not fit this run's networks ({err}). Use the same "
                              "model settings as the run it comes from.") from None
    log.info("Initialised from %s (step %s of its run)", path, state.get("step"))
