"""Exponential moving average of a network's weights (the generator used for sampling)."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class EMA:
    """Keeps `model`'s parameter average θ̄ ← d·θ̄ + (1 − d)·θ; buffers (BN statistics) are copied."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """Decay for the next update: with warm-up, min(decay, (1 + t) / (10 + t)) after t updates."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of `model` into the average."""
        weight = 1.0 - self.current_decay()
        ema_params = [p for p in self.model.parameters() if p.is_floating_point()]
        params = [p.detach() for p in model.parameters() if p.is_floating_point()]
        torch._foreach_lerp_(ema_params, params, weight)
        ema_buffers = list(self.model.buffers())
        if ema_buffers:
            torch._foreach_copy_(ema_buffers, list(model.buffers()))
        self.num_updates += 1

    def state_dict(self) -> dict:
        """Averaged weights and update count."""
        return {"model": self.model.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        """Restore from `state_dict()`."""
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state["num_updates"])
