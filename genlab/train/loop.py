"""The one training loop, for every model family.

`train()` reads top to bottom: set the run up (`start_session`: run directory, data, method, fixed
noise, and on resume the checkpoint), build the hooks, then walk (epoch, batch) pairs in a seeded
order, calling the method's `train_step` and, after each step, every hook in order (see
`genlab.train.hooks`). Ctrl-C or SIGTERM stops at the next step boundary and the hooks' `on_end`
writes `last.pt`; a crash leaves the previous checkpoint untouched.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from genlab import distributed
from genlab.config import Config, apply_overrides, save_config, validate
from genlab.data import EpochLoader, build_dataset, to_float
from genlab.data.augment import resolve_policy
from genlab.errors import CheckpointError, GenlabError
from genlab.evaluation import real_batches
from genlab.methods import Method, StepContext, build_method
from genlab.models import DataShape
from genlab.runs.checkpoint import CheckpointManager, load_checkpoint
from genlab.runs.records import mark_crashed, remove_lock, write_lock
from genlab.runs.rundir import RunDir, write_env
from genlab.train.checks import check_config
from genlab.train.hooks import EvalCallback, Hook, StepCallback, TrainState, default_hooks
from genlab.train.logging import NullLogger, RunLogger, truncate_jsonl
from genlab.utils import rng_state, seed_everything, select_device, set_rng_state

log = logging.getLogger("genlab")

#: Real images (the data set's first) that family figures such as a VAE's reconstructions are drawn from.
FIXED_REAL_IMAGES = 8

__all__ = ["EvalCallback", "StepCallback", "TrainResult", "train"]


@dataclass
class TrainResult:
    """What a finished (or stopped) run leaves behind."""

    run_dir: Path
    step: int
    total_steps: int
    interrupted: bool
    early_stopped: bool = False
    stop_reason: str | None = None


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


@dataclass
class Session:
    """A run set up to train: everything the loop and its hooks need, restored if resuming."""

    state: TrainState
    loader: EpochLoader
    fixed_noise: torch.Tensor
    fixed_real: torch.Tensor
    reference_real: torch.Tensor
    aug_rng: torch.Generator
    shape: DataShape
    checkpoint: dict[str, Any] | None


def start_session(cfg: Config | None, resume: str | Path | None, overrides: Sequence[str] | None,
                  preset_name: str | None) -> Session:
    """Create (or reopen, for `resume`) the run directory and build data, method and fixed noise."""
    checkpoint = None
    if resume is not None:
        run = RunDir.open(resume)
        checkpoint = load_checkpoint(CheckpointManager(run.checkpoints).last)
        source = f"{run.config} + overrides"
        cfg = validate(apply_overrides(checkpoint["config"], list(overrides or [])), source)
        check_config(cfg, source)
    elif cfg is None:
        raise ValueError("train() needs a config or a run directory to resume")
    else:
        check_config(cfg, cfg.name or "config")
    # Under torchrun: join the process group; rank 0 alone writes, the others learn the run directory from it.
    device = distributed.setup(select_device(cfg.device))
    main = distributed.is_main()
    if checkpoint is None:
        run = distributed.on_main(lambda: RunDir.create(cfg, preset_name))
    elif overrides and main:
        save_config(cfg, run.config)  # config.yaml is what the run uses from here on (e.g. more epochs)
    t = cfg.training
    distributed.check_batch(t.batch_size)
    seed_everything(cfg.data.seed)
    dataset = build_dataset(cfg.data)
    if len(dataset) < t.batch_size:
        raise GenlabError(f"{dataset.name} has {len(dataset)} images, fewer than training.batch_size={t.batch_size}. "
                          "Lower the batch size or use more data.")
    augment = resolve_policy(cfg.data.augment, cfg.data.hflip)
    loader = EpochLoader(dataset, t.batch_size, cfg.data.seed, device, augment, cfg.data.num_workers, cfg.data.balanced,
                         cfg.data.pin_memory, cfg.data.prefetch_factor, cfg.data.persistent_workers,
                         shard=(distributed.rank(), distributed.world_size()))
    shape = DataShape(dataset.image_size, dataset.channels, dataset.num_classes)
    method = build_method(cfg, shape, device)
    if t.sync_batchnorm:
        distributed.convert_sync_batchnorm(method.networks().values(), device)
    fixed_noise = method.make_noise(cfg.logging.num_sample_images,
                                    torch.Generator(device=device).manual_seed(cfg.data.seed + 2))
    fixed_real = to_float(next(real_batches(dataset, FIXED_REAL_IMAGES)))
    # Real images the diagnostics hold each sample grid to: as many as the grid has (saturation, diversity).
    reference_real = to_float(torch.cat(list(real_batches(dataset, max(cfg.logging.num_sample_images, 2)))))
    aug_rng = torch.Generator().manual_seed(cfg.data.seed + 3)
    total_steps = t.num_epochs * loader.steps_per_epoch
    if t.max_steps is not None:
        total_steps = min(total_steps, t.max_steps)
    step = 0
    if checkpoint is None and t.init_from:
        init_weights(method, t.init_from, shape)
    if checkpoint is not None:
        if checkpoint["steps_per_epoch"] != loader.steps_per_epoch:
            raise CheckpointError(f"{run.root} was trained with {checkpoint['steps_per_epoch']} steps per epoch but "
                                  f"the data now gives {loader.steps_per_epoch}; data or batch-size settings changed.")
        method.load_state_dict(checkpoint["method"])
        set_rng_state(checkpoint["rng"])
        aug_rng.set_state(checkpoint["aug_rng"])
        fixed_noise = checkpoint["fixed_noise"].to(device)
        step = int(checkpoint["step"])
        if main:
            truncate_jsonl(run.metrics, step)
        log.info("Resuming %s from step %d of %d", run.root, step, total_steps)
    distributed.broadcast_modules(replicated_modules(method))  # every rank starts from rank 0's weights, as DDP does
    if main:
        write_env(run, device, cfg.data.seed, resumed_from_step=step if checkpoint is not None else None,
                  overrides=overrides)
        write_lock(run.root)
        logger = RunLogger(run.root, cfg.logging.tensorboard, purge_step=step + 1 if checkpoint is not None else None)
        checkpoints = CheckpointManager(run.checkpoints, cfg.checkpoint.keep)
    else:
        logger, checkpoints = NullLogger(), ReadOnlyCheckpoints(run.checkpoints, cfg.checkpoint.keep)
    state = TrainState(cfg, run, method, device, logger, checkpoints, loader.steps_per_epoch, total_steps, step)
    return Session(state, loader, fixed_noise, fixed_real, reference_real, aug_rng, shape, checkpoint)


def train(
    cfg: Config | None = None,
    *,
    resume: str | Path | None = None,
    overrides: Sequence[str] | None = None,
    preset_name: str | None = None,
    callbacks: tuple[StepCallback, ...] = (),
    eval_callbacks: tuple[EvalCallback, ...] = (),
    hooks: Sequence[Hook] = (),
) -> TrainResult:
    """Train `cfg` in a new run directory, or continue the run at `resume` exactly where it stopped.

    `hooks` run after the default ones (logging, grids, diagnostics, evaluation, checkpoints, summary).
    """
    try:
        session = start_session(cfg, resume, overrides, preset_name)
    except BaseException:
        distributed.shutdown()
        raise
    state, cfg = session.state, session.state.cfg
    main = distributed.is_main()  # under torchrun only rank 0 shows progress and runs the hooks that write
    bar = tqdm(total=state.total_steps, initial=state.step, disable=not (cfg.logging.progress and main), unit="step",
               dynamic_ncols=True, mininterval=0.5, file=sys.stderr)
    all_hooks = [*default_hooks(cfg, state.device, session.fixed_noise, session.fixed_real, bar, callbacks,
                                   eval_callbacks, session.reference_real), *hooks]
    state.checkpoint_state = lambda: _checkpoint_state(session, all_hooks)
    run_hooks = [hook for hook in all_hooks if main or not hook.main_rank_only]
    replicated = replicated_modules(state.method)
    hook_states = _hook_states(session.checkpoint)
    for hook in run_hooks:
        if hook_states.get(hook.name) is not None:
            hook.load_state_dict(hook_states[hook.name])
        hook.on_start(state)
    try:
        with graceful_interrupts() as stop:
            stopping = state.stop_reason is not None
            while not state.finished and not stopping:
                epoch, start_batch = divmod(state.step, state.steps_per_epoch)
                for batch in session.loader.epoch(epoch, start_batch, session.aug_rng):
                    stats = state.method.train_step(batch, StepContext(state.step, state.steps_per_epoch,
                                                                       state.total_steps))
                    stats = distributed.average_stats(stats)  # torchrun: global-batch means, alike on every rank
                    distributed.sync_buffers(replicated)
                    state.step += 1
                    state.logged = state.samples = state.evaluation = None
                    for hook in run_hooks:
                        hook.after_step(state, stats)
                    # Every rank stops at the same step: a signal or a hook's request on any rank stops them all.
                    signalled, asked = distributed.any_rank(stop.requested, state.stop_reason is not None)
                    stop.requested = stop.requested or signalled
                    if asked:
                        state.request_stop("stopped by another process")
                    stopping = signalled or asked
                    if state.finished or stopping:
                        break
            early_stopped = state.stop_reason is not None
            if stop.requested and not state.finished and not early_stopped:
                state.request_stop("interrupted (Ctrl-C or SIGTERM)")
            if main:
                remove_lock(state.run.root)  # stopping normally from here on; a failure below leaves summary.json absent
            for hook in run_hooks:
                hook.on_end(state)
    except BaseException as error:
        if main:
            mark_crashed(state.run.root, error)
        raise
    finally:
        bar.close()
        state.logger.close()
        distributed.shutdown()
    interrupted = stop.requested and not state.finished and not early_stopped
    return TrainResult(state.run.root, state.step, state.total_steps, interrupted, early_stopped, state.stop_reason)


def replicated_modules(method: Method) -> list[nn.Module]:
    """What every rank holds identically under torchrun: the trained networks and their EMA copy."""
    modules = list(method.networks().values())
    ema = getattr(method, "ema", None)
    if ema is not None:
        modules.append(ema.model)
    return modules


class ReadOnlyCheckpoints(CheckpointManager):
    """The checkpoints of ranks other than 0 under torchrun: read (NaN-guard recovery), never written."""

    def save(self, state: dict[str, Any], step: int) -> Path:
        return self.last

    def save_as(self, state: dict[str, Any], name: str) -> Path:
        return self.folder / name


def _hook_states(checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    """Hook states of a checkpoint; those written before hooks existed kept best and early_stop at the top."""
    if checkpoint is None:
        return {}
    if "hooks" in checkpoint:
        return checkpoint["hooks"]
    return {"evaluation": {"best": checkpoint.get("best"), "early_stop": checkpoint.get("early_stop")}}


def _checkpoint_state(session: Session, hooks: Sequence[Hook]) -> dict[str, Any]:
    """Everything a resume needs: step, config, method, random states, fixed noise and each hook's state."""
    state = session.state
    return {"step": state.step, "steps_per_epoch": state.steps_per_epoch, "config": state.cfg.to_dict(),
            "method": state.method.state_dict(), "rng": rng_state(), "aug_rng": session.aug_rng.get_state(),
            "fixed_noise": session.fixed_noise.cpu(), "data_shape": asdict(session.shape),
            "hooks": {name: value for name, value in ((h.name, h.state_dict()) for h in hooks) if value is not None}}


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
