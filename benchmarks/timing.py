"""What the throughput benchmarks share: genlab's `train()` on a preset, timed over its steady-state steps, and the
batches and clock of the hand-written baseline loops it is held against."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

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


class SteadyBatches:
    """Batches of a hand-written baseline loop: `warmup + steps` batches cycled through one random order of the
    in-memory `images`, with a clock that starts at the first timed batch (`images_per_second` after the loop).

    The order is drawn from torch's global generator when this is made, as the loops used to draw it inline.
    """

    def __init__(self, images: torch.Tensor, batch: int, steps: int, warmup: int) -> None:
        self.images, self.batch, self.steps, self.warmup = images, batch, steps, warmup
        self.order = torch.randperm(len(images))
        self.start = 0.0

    def __iter__(self) -> Iterator[torch.Tensor]:
        for step in range(self.steps + self.warmup):
            if step == self.warmup:
                self.start = time.perf_counter()
            idx = self.order[(step * self.batch) % (len(self.images) - self.batch):][: self.batch]
            yield self.images[idx]

    def images_per_second(self) -> float:
        """Timed images over the seconds since the first timed batch."""
        return self.steps * self.batch / (time.perf_counter() - self.start)
