"""Optimisation pieces every family uses: Adam, micro-batches, mixed precision, scheduled learning rates."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from genlab.config import TrainingConfig
from genlab.distributed import average_gradients
from genlab.methods.base import StepContext
from genlab.methods.schedules import lr_factor

log = logging.getLogger("genlab")

#: Param-group key of the NaN guard's learning-rate factor (see `genlab.train.hooks.NanGuardHook`).
LR_SCALE_KEY = "lr_scale"


def adam(params: Any, lr: float, betas: tuple[float, float], weight_decay: float,
         fused: bool = False) -> torch.optim.Adam:
    """Adam with the multi-tensor (foreach) kernel, or the fused one (training.fused_adam: one kernel per step)."""
    kernel = {"fused": True} if fused else {"foreach": True}
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, **kernel)


def split(tensor: torch.Tensor | None, parts: int) -> list[torch.Tensor | None]:
    """`parts` near-equal micro-batches of a batch (or `parts` Nones)."""
    return [None] * parts if tensor is None else list(torch.tensor_split(tensor, parts))


def accumulate(totals: dict[str, torch.Tensor], values: dict[str, torch.Tensor]) -> None:
    """Add one micro-batch's stats into running totals."""
    for key, value in values.items():
        totals[key] = totals[key] + value if key in totals else value


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX tiles, or AVX-512 BF16 as on Zen 4/5 and Cooper Lake):
    there bf16 autocast beats float32 (1.5-1.7x measured on a Zen 5 without AMX), elsewhere it is emulated."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(probe is not None and probe() for probe in probes)


def resolve_amp(amp: str, device: torch.device) -> str:
    """training.amp=auto as none, bf16 or fp16 for `device`: fp16 on CUDA, bf16 on CPUs with bf16 hardware, else none."""
    if amp != "auto":
        return amp
    if device.type == "cuda":
        return "fp16"
    return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "none"


class MixedPrecision:
    """training.amp: bf16 or fp16 autocast for forward passes, a GradScaler for fp16, and clipped steps."""

    def __init__(self, amp: str, device: torch.device, grad_clip: float = 0.0) -> None:
        if amp == "auto":
            amp = resolve_amp(amp, device)
            how = {"fp16": "fp16 autocast with a GradScaler", "bf16": "bf16 autocast (a CPU with bf16 hardware)",
                   "none": "float32 (no fp16 GradScaler off CUDA, no fast bf16 on this CPU)"}[amp]
            log.info("training.amp=auto on %s: %s.", device, how)
        self.amp = amp
        if amp == "fp16" and device.type != "cuda":
            log.warning("training.amp=fp16 on %s runs, but fp16 is meant for CUDA GPUs; bf16 is faster here.", device)
        self.device, self.grad_clip = device, grad_clip
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        #: Measure each step's gradient norm (to log it, and to skip non-finite steps); off, steps are as before.
        self.track_norm = True
        #: Since the last `take_verdict`: steps skipped for non-finite gradients, and whether the losses passed to
        #: the last step were finite (None: no step checked them). The NaN guard reads these instead of syncing again.
        self.skipped_steps = 0
        self.losses_finite: bool | None = None

    def autocast(self) -> torch.autocast:
        """Mixed-precision context for forward passes (disabled unless training.amp is set)."""
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward through the grad scaler (a plain backward when fp16 is off)."""
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, module: nn.Module,
             losses: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Unscale (fp16), clip to grad_clip, and step through the grad scaler; returns the gradient norm.

        A non-finite gradient skips the step (weights and Adam moments stay as they were), as the fp16
        GradScaler already does, and is counted in `skipped_steps`. `losses` (the step's stats so far; the
        `loss*` keys count) are checked for NaN/Inf in the same device sync as the gradient norm, so the
        loop's NaN guard needs no sync of its own (`take_verdict`); the gradients alone decide the skip. With
        fp16 the GradScaler checks and skips instead (its overflow skips are routine, so not counted).
        Under torchrun the gradients are first averaged over the processes (`genlab.distributed`), so
        every rank clips, skips and steps alike.
        """
        average_gradients(module.parameters())
        if not self.track_norm:
            if self.grad_clip > 0:
                self.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(module.parameters(), self.grad_clip)
            self.scaler.step(optimizer)
            return torch.zeros(())
        self.scaler.unscale_(optimizer)
        norm = grad_norm(module)
        if self.grad_clip > 0:  # clip by the norm just measured instead of clip_grad_norm_ measuring it again
            torch.nn.utils.clip_grads_with_norm_(module.parameters(), self.grad_clip, norm)
        if self.scaler.is_enabled():
            self.scaler.step(optimizer)  # the GradScaler skips overflowing steps itself (and syncs for it)
            return norm.detach()
        watched = [v.detach().float().reshape(()) for k, v in (losses or {}).items() if k.startswith("loss")]
        checked = [norm.detach().float().reshape(()), *watched]
        device = checked[-1].device  # a module without gradients has a CPU norm
        finite = torch.isfinite(torch.stack([c.to(device) for c in checked])).tolist()  # the one device sync
        if losses is not None:
            self.losses_finite = all(finite[1:])
        if finite[0]:
            self.scaler.step(optimizer)
        else:
            optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
        return norm.detach()

    def take_verdict(self) -> tuple[int, bool | None]:
        """(steps skipped for non-finite gradients, whether the checked losses were finite; None when unchecked) since
        the last call, then count afresh: the NaN guard's view of one training step without a device sync of its own."""
        verdict = (self.skipped_steps, self.losses_finite)
        self.skipped_steps, self.losses_finite = 0, None
        return verdict

    def update(self) -> None:
        """End of a training step: let the grad scaler adapt its scale."""
        self.scaler.update()


def grad_norm(module: nn.Module) -> torch.Tensor:
    """L2 norm of all of `module`'s gradients (0 when none), without a device sync."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())


def lr_scale(optimizer: torch.optim.Optimizer) -> float:
    """The NaN guard's factor on an optimiser's scheduled rate (kept in its param groups, so checkpoints carry it)."""
    return float(optimizer.param_groups[0].get(LR_SCALE_KEY, 1.0))


def schedule_learning_rates(t: TrainingConfig, ctx: StepContext,
                            optimizers: Sequence[tuple[str, torch.optim.Optimizer, float]]) -> dict[str, torch.Tensor]:
    """Set each (name, optimizer, base lr) to base · training.lr_schedule(epoch) · the NaN guard's scale.

    Returns the rates in effect, to log.
    """
    factor = lr_factor(t.lr_schedule, ctx.epoch, ctx.total_epochs, warmup_epochs=t.warmup_epochs,
                       min_ratio=t.lr_min_ratio, step_epochs=t.lr_step_epochs, gamma=t.lr_gamma)
    rates = {}
    for name, optimizer, base in optimizers:
        rate = base * factor * lr_scale(optimizer)
        for group in optimizer.param_groups:
            group["lr"] = rate
        rates[name] = torch.tensor(rate)
    return rates
