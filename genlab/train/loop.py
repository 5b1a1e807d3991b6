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
from genlab.evaluation import best_key
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


@dataclass
class TrainResult:
    """What a finished (or stopped) run leaves behind."""

    run_dir: Path
    step: int
    total_steps: int
    interrupted: bool


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
                "data_shape": asdict(shape), "best": best}

    evaluator: dict = {}

    def evaluate_now() -> dict[str, float]:
        """Score eval.num_samples fresh samples with eval.metrics (extractor built on first use)."""
        from genlab.evaluation import extractor_for, score_samples  # imports the metrics stack
        from genlab.generate import generate

        if "extractor" not in evaluator:
            evaluator["extractor"] = extractor_for(cfg, cfg.eval.extractor, device, cfg.eval.fast)
        fake = generate(method, cfg.eval.num_samples, seed=cfg.data.seed + 4, batch_size=t.batch_size)
        return score_samples(cfg, fake, cfg.eval.metrics, extractor=evaluator["extractor"],
                             real_limit=cfg.eval.real_samples, seed=cfg.data.seed)

    logger = RunLogger(run.root, cfg.logging.tensorboard, purge_step=step + 1 if checkpoint is not None else None)
    diagnostics = Diagnostics()
    meter = Meter()
    bar = _progress(total_steps, step, cfg.logging.progress)
    interrupted = False
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
                    if cfg.eval.metrics and cfg.eval.every_epochs and within == 0 and (
                        epochs_done % cfg.eval.every_epochs == 0 or step == total_steps
                    ):
                        results = evaluate_now()
                        logger.log(step, results, epoch=epochs_done, evaluation=True)
                        score = results.get(best_key(cfg.eval.best_metric, evaluator["extractor"]))
                        if score is not None and (best is None or score < best):
                            best = score
                            manager.save_as(state(), "best.pt")
                        log.info("Epoch %d: %s", epochs_done, ", ".join(f"{k}={v:.4g}" for k, v in results.items()))
                    if step % cfg.checkpoint.every_steps == 0 and step < total_steps:
                        manager.save(state(), step)
                    if step >= total_steps or stop.requested:
                        break
            interrupted = stop.requested and step < total_steps
            manager.save(state(), step)
    finally:
        bar.close()
        logger.close()
    return TrainResult(run.root, step, total_steps, interrupted)
