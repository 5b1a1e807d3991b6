"""Learning-rate schedules as pure functions of training progress (no optimizer state to save)."""

from __future__ import annotations

import math


def cosine_factor(progress: float, min_ratio: float = 0.0) -> float:
    """Cosine decay from 1 at progress 0 to min_ratio at progress 1."""
    progress = min(max(progress, 0.0), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_factor(schedule: str, epoch: float, total_epochs: float, *, warmup_epochs: float = 0.0,
              min_ratio: float = 0.0, step_epochs: float = 30.0, gamma: float = 0.1) -> float:
    """Multiplier of the base learning rate at fractional `epoch` of a `total_epochs` run."""
    if schedule == "none":
        return 1.0
    if schedule == "cosine":
        return cosine_factor(epoch / max(total_epochs, 1e-12), min_ratio)
    if schedule == "warmup_cosine":
        if epoch < warmup_epochs:
            return (epoch + 1e-12) / warmup_epochs
        span = max(total_epochs - warmup_epochs, 1e-12)
        return cosine_factor((epoch - warmup_epochs) / span, min_ratio)
    if schedule == "step":
        return gamma ** math.floor(epoch / step_epochs)
    raise ValueError(f"unknown lr_schedule {schedule!r}")


def progressive_stage(epoch: float, num_levels: int, start_level: int, epochs_per_stage: float,
                      fade: float) -> tuple[int, float]:
    """(level, alpha) of progressive growing at fractional `epoch`.

    Stage k (k = 0, 1, ...) trains level start_level + k for epochs_per_stage epochs; every stage but
    the first spends its first `fade` fraction blending the new level in (alpha 0 -> 1). After the
    last level (num_levels - 1, the full resolution) is reached it stays there with alpha 1.
    """
    stage = int(epoch // epochs_per_stage)
    level = min(start_level + stage, num_levels - 1)
    if stage == 0 or level != start_level + stage or fade <= 0:
        return level, 1.0
    within = (epoch - stage * epochs_per_stage) / epochs_per_stage
    return level, min(1.0, within / fade)
