"""What the throughput benchmarks share: genlab's `train()` on a preset, timed over its steady-state steps."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from genlab.config import load_config
from genlab.train.loop import train


def timed_train(preset: str, overrides: list[str], steps: int, warmup: int, out: str,
                timer: Callable[[], float] = time.perf_counter) -> float:
    """Images/s of `train()` on `preset` + `overrides` over steps warmup+1 .. warmup+steps, in output_dir `out`.

    `timer`: wall time by default; time.process_time counts this process's CPU time only (on a shared CPU).
    """
    marks: dict[int, float] = {}

    def clock(step: int, stats: dict) -> None:
        if step in (warmup, warmup + steps):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            marks[step] = timer()

    cfg = load_config(preset, [*overrides, f"output_dir={out}", f"training.max_steps={steps + warmup}"])
    train(cfg, callbacks=(clock,))
    return steps * cfg.training.batch_size / (marks[warmup + steps] - marks[warmup])
