"""Data-parallel training under `torchrun`: the process group and every collective genlab uses, in one place.

`torchrun --nproc_per_node N -m genlab train ...` starts N copies of the same run. Each copy (a *rank*)
builds the same networks from the same seed, reads its contiguous slice of every global batch
(`training.batch_size` stays the global batch), and before each optimiser step the gradients are
averaged over the ranks (`average_gradients`). Rank 0 alone writes the run directory.

Why an explicit gradient all-reduce rather than wrapping the networks in DistributedDataParallel: a GAN
step runs D several times before one backward (real, fake, the gradient penalty, then G's phase through a
frozen D), R1 and the gradient penalty differentiate through D with `create_graph`, and `grad_accum` needs
`no_sync` — all of which DDP's reducer handles badly or not at all. Averaging each optimiser's gradients
once, right before its step (`MixedPrecision.step`, shared by every family), is what stylegan3's training
loop does and is exactly DDP's arithmetic: with the global batch B split into N slices of B/N, each rank's
loss is a mean over B/N, so the average of the N gradients is the single-process mean gradient (up to the
order of float additions). Per-batch statistics (BatchNorm in training mode) are the exception: each rank
normalises with its own slice's statistics unless `training.sync_batchnorm` converts the layers to
SyncBatchNorm (CUDA only); running statistics are averaged over the ranks after every step (`sync_buffers`).

Random draws that depend on the batch (z, labels, diffusion t and noise, the VAE's ε, instance noise,
augmentations) are made for the whole global batch from the shared seeded generator and each rank keeps
its rows (`draw_global`, `on_global_batch`). So every generator advances identically on every rank and
independently of the number of ranks: a run resumed with another number of processes continues the same
random streams, and N ranks see exactly the numbers one process would.

Without torchrun (WORLD_SIZE unset or 1) every function here is a no-op and training is unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn

from genlab.errors import ConfigError, GenlabError

log = logging.getLogger("genlab")

T = TypeVar("T")

#: True between `sharing()`'s enter and exit: every rank runs the enclosed work together.
_sharing = False
#: Whether this module started the process group (and so ends it).
_owned = False


def launched() -> bool:
    """True when torchrun started this process as one of several (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_active() -> bool:
    """True while a process group of more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_active() else 1


def is_main() -> bool:
    """True on rank 0, the rank that writes (and in a single process)."""
    return rank() == 0


def is_main_process() -> bool:
    """True on torchrun's rank 0 even once the process group has ended (it reads RANK then), and in one process:
    for what is said once per launch after training, such as the CLI's closing lines."""
    return is_main() if is_active() else int(os.environ.get("RANK", "0")) == 0


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group (NCCL on CUDA, gloo otherwise) and return this rank's device.

    On CUDA each rank uses the GPU of its LOCAL_RANK. Without torchrun, returns `device` unchanged.
    """
    global _owned
    if not launched():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"torchrun started local rank {local_rank} but only {torch.cuda.device_count()} CUDA "
                              "device(s) exist here; use --nproc_per_node at most the number of GPUs.")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type == "mps":
        raise ConfigError("Distributed training (torchrun) runs on CUDA GPUs (NCCL) or CPUs (gloo), not on MPS. "
                          "Use device=cpu or a single process.")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=30))
        _owned = True
        log.info("Distributed: rank %d of %d (%s, %s)", rank(), world_size(), backend, device)
    if not is_main():
        log.setLevel(logging.WARNING)  # rank 0 tells the story once; the others only warn
    return device


def shutdown() -> None:
    """End the process group if `setup` started it (so a later run in this process starts afresh)."""
    global _owned
    if _owned and dist.is_initialized():
        dist.destroy_process_group()
    _owned = False


def _comm_device() -> torch.device:
    """Where collectives' tensors live: the current GPU for NCCL, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def check_batch(batch_size: int) -> None:
    """The global batch must split evenly over the ranks (each rank takes batch_size / N images)."""
    if batch_size % world_size():
        raise ConfigError(f"training.batch_size={batch_size} is the global batch and must split evenly over the "
                          f"{world_size()} processes; use a multiple of {world_size()}.")


def shard_rows(rows: T, rank_: int | None = None, world: int | None = None) -> T:
    """This rank's contiguous slice of a global batch (dim 0, equal parts); None stays None."""
    world = world_size() if world is None else world
    if rows is None or world == 1:
        return rows
    rank_ = rank() if rank_ is None else rank_
    size = len(rows) // world  # type: ignore[arg-type]
    return rows[rank_ * size:(rank_ + 1) * size]  # type: ignore[index]


def draw_global(draw: Callable[[int], T], local_n: int) -> T:
    """`draw(n)` for the global batch (local_n × ranks) from a shared generator, keeping this rank's rows.

    Every rank's generator advances as one process's would, and the rows each rank keeps are those
    one process would have drawn for the same images.
    """
    if not is_active():
        return draw(local_n)
    return shard_rows(draw(local_n * world_size()))


def on_global_batch(fn: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor, rank_: int | None = None,
                    world: int | None = None) -> torch.Tensor:
    """Apply a per-sample random op (augmentation, DiffAugment) to this rank's rows as if to the global batch.

    The rows are placed at the rank's offset in a zero-filled global batch, `fn` runs on it (drawing the
    global batch's random parameters) and the rank's rows come back; gradients flow to `rows`. The cost
    is the op on N× the rows, which for these elementwise/gather ops is small next to the networks.
    """
    world = world_size() if world is None else world
    if world == 1:
        return fn(rows)
    rank_ = rank() if rank_ is None else rank_
    n = rows.shape[0]
    before = rows.new_zeros((rank_ * n, *rows.shape[1:]))
    after = rows.new_zeros(((world - rank_ - 1) * n, *rows.shape[1:]))
    return fn(torch.cat([before, rows, after]))[rank_ * n:(rank_ + 1) * n]


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks (one all-reduce per dtype), before an optimiser step.

    Every rank runs the same code, so the same parameters have gradients everywhere; those without
    one (None) are skipped on all ranks alike, as the optimiser skips them.
    """
    if not is_active():
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for param in parameters:
        if param.grad is not None:
            by_dtype.setdefault(param.grad.dtype, []).append(param.grad)
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world_size()
        for grad, value in zip(grads, torch.split(flat, [g.numel() for g in grads]), strict=True):
            grad.copy_(value.view_as(grad))


def average_stats(stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A step's scalar stats averaged over the ranks (means over the global batch), so logs and the NaN guard agree."""
    if not is_active() or not stats:
        return stats
    keys = list(stats)  # the same order on every rank: the same code made them
    device = _comm_device()
    values = torch.stack([stats[k].detach().reshape(()).to(device, torch.float64) for k in keys])
    dist.all_reduce(values)
    values /= world_size()
    return {k: v.to(stats[k].device, stats[k].dtype if stats[k].is_floating_point() else torch.float32)
            for k, v in zip(keys, values.unbind(), strict=True)}


def _batchnorm_buffers(modules: Iterable[nn.Module]) -> list[torch.Tensor]:
    """Running statistics of the (non-synchronised) BatchNorm layers in `modules`."""
    buffers = []
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm) and not isinstance(layer, nn.SyncBatchNorm):
                buffers += [b for b in (layer.running_mean, layer.running_var) if b is not None]
    return buffers


def sync_buffers(modules: Sequence[nn.Module]) -> None:
    """Average BatchNorm running statistics over the ranks, so every rank (and its EMA copy) holds the same ones.

    The running mean then equals the single-process one (it is linear in the batch means); the running
    variance is the mean of the ranks' variances. SyncBatchNorm layers already agree and are left alone.
    """
    if not is_active():
        return
    buffers = _batchnorm_buffers(modules)
    if not buffers:
        return
    device = _comm_device()
    flat = torch.cat([b.detach().reshape(-1).to(device, torch.float64) for b in buffers])
    dist.all_reduce(flat)
    flat /= world_size()
    for buffer, value in zip(buffers, torch.split(flat, [b.numel() for b in buffers]), strict=True):
        buffer.copy_(value.view_as(buffer))


def broadcast_modules(modules: Sequence[nn.Module]) -> None:
    """Make every rank's parameters and buffers rank 0's (once at start, as DDP does)."""
    if not is_active():
        return
    device = _comm_device()
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            data = tensor.detach()
            moved = data.to(device)
            dist.broadcast(moved, 0)
            if moved is not data:
                data.copy_(moved)


def convert_sync_batchnorm(modules: Iterable[nn.Module], device: torch.device) -> None:
    """training.sync_batchnorm: BatchNorm layers normalise with the global batch's statistics (in place)."""
    if not is_active():
        return
    if device.type != "cuda":
        raise ConfigError("training.sync_batchnorm=true needs CUDA GPUs: PyTorch's SyncBatchNorm does not run on "
                          "CPUs. Set it to false (BatchNorm then uses each process's slice of the batch).")
    for module in modules:
        nn.SyncBatchNorm.convert_sync_batchnorm(module)


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank."""
    if not is_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and hand its result to every rank; its GenlabError is raised on every rank."""
    if not is_active():
        return fn()
    outcome: tuple[Any, BaseException | None] = (None, None)
    if is_main():
        try:
            outcome = (fn(), None)
        except GenlabError as err:
            outcome = (None, err)
    result, error = broadcast_object(outcome)
    if error is not None:
        raise error
    return result


def any_rank(*flags: bool) -> list[bool]:
    """For each flag, whether it is set on any rank (stop requests must stop every rank at the same step)."""
    if not is_active():
        return list(flags)
    values = torch.tensor([float(f) for f in flags], device=_comm_device())
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]


@contextmanager
def sharing() -> Iterator[None]:
    """Mark work every rank runs together (evaluation): feature extraction inside splits batches over the ranks."""
    global _sharing
    previous, _sharing = _sharing, is_active()
    try:
        yield
    finally:
        _sharing = previous


def is_sharing() -> bool:
    """True inside `sharing()` with more than one rank."""
    return _sharing and is_active()


def owns(index: int) -> bool:
    """Whether this rank handles item `index` of shared work (round robin; always inside one process)."""
    return not is_sharing() or index % world_size() == rank()


def gather_indexed(items: list[tuple[Any, T]]) -> list[T]:
    """Every rank's (index, value) items, merged in index order on every rank (shared work's results)."""
    if not is_sharing():
        return [value for _, value in sorted(items, key=lambda item: item[0])]
    everything: list[list[tuple[Any, T]] | None] = [None] * world_size()
    dist.all_gather_object(everything, items)
    merged = [item for part in everything for item in (part or [])]
    return [value for _, value in sorted(merged, key=lambda item: item[0])]


def agree(flag: bool) -> bool:
    """Inside `sharing()`: True only if `flag` holds on every rank (e.g. a cache hit), so all take the same path."""
    if not is_sharing():
        return flag
    values = torch.tensor([float(flag)], device=_comm_device())
    dist.all_reduce(values, op=dist.ReduceOp.MIN)
    return bool(values.item())
