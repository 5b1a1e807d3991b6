"""What the throughput benchmarks share: genlab's `train()` on a preset, timed over its steady-state steps, and the
batches and clock of the hand-written baseline loops it is held against."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from genlab.config import load_config
from genlab.methods.speed import reuse_freed_cpu_memory
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
    The C library's allocator is tuned as genlab's CPU runs tune it (training.reuse_cpu_memory, which acts on the
    whole process for good): otherwise a plain loop timed before genlab's first run would fault its memory in every
    step and those after it would not. The ratios measure genlab's code; the allocator's gain, `lockstep.py`.
    """

    def __init__(self, images: torch.Tensor, batch: int, steps: int, warmup: int) -> None:
        reuse_freed_cpu_memory()
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


def _lockstep_variant(index: int, preset: str, overrides: list[str], steps: int, warmup: int, out: str, clock: str,
                      cpu: int | None, batons: list, done: Any, results: Any) -> None:
    """One variant of `lockstep_train`, in a process of its own: train, timing each step while it holds the baton."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
        torch.set_num_threads(1)
    timer = time.process_time if clock == "cpu" else time.perf_counter
    count = len(batons)
    times: list[float] = []
    last = [0.0]

    def hand_on() -> bool:  # the baton to the next variant still training (while holding it: no races)
        following = [i for i in ((index + k) % count for k in range(1, count)) if not done[i]]
        if following:
            batons[following[0]].release()
        return bool(following)

    def pass_baton() -> None:  # ... and wait for it to come back
        if hand_on():
            batons[index].acquire()

    def on_step(step: int, stats: dict) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if warmup < step <= warmup + steps:
            times.append(timer() - last[0])
        if step == 1:  # the first step ran beside the others' start-up: from here on, one at a time
            batons[index].acquire()
        pass_baton()
        last[0] = timer()

    try:
        train(load_config(preset, [*overrides, f"output_dir={out}/{index}", f"training.max_steps={steps + warmup}"]),
              callbacks=(on_step,))
        results.put((index, times, None))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises
        results.put((index, times, f"{type(error).__name__}: {error}"))
    finally:
        done[index] = 1
        hand_on()


def lockstep_train(variants: dict[str, tuple[str, list[str]]], steps: int, warmup: int, out: str,
                   clock: str = "cpu", cpu: int | None = None) -> dict[str, list[float]]:
    """Seconds of each of steps warmup+1 .. warmup+steps of several `train()` runs taken in turns, one step each.

    `variants` maps a name to (preset, overrides), in the order they take turns. Each trains in a process of its
    own (its own allocator state and memory layout, so process-wide settings such as training.reuse_cpu_memory
    can differ); a baton passes from run to run after every step, so step k of every variant runs back to back and
    whatever slows the machine for longer than a step (neighbours, frequency, thermals) slows them alike. Only the
    process holding the baton computes; the others wait on a semaphore, using no CPU. `clock`: "cpu", the process's
    CPU time (a neighbour taking the core does not count), or "wall" (GPUs: each step is synchronised first). A
    step's time is everything between its callback and the previous one: the step and the hooks (logging, sample
    grids, diagnostics, checkpoints) that ran after the previous step.

    `cpu`: pin every process to that one core (Linux) and to one thread. Left to the scheduler they land on
    different cores, and two cores of a shared virtual machine differ by several per cent: measured here, two
    identical runs differed by 3-7 % on different cores and by 0.2 % on one (1.7 % with glibc's own malloc
    thresholds, training.reuse_cpu_memory=false, whose page faults vary from process to process).
    """
    context = multiprocessing.get_context("spawn")
    names = list(variants)
    batons = [context.Semaphore(0) for _ in names]
    done = context.Array("b", len(names))
    results = context.Queue()
    processes = [context.Process(target=_lockstep_variant, args=(i, *variants[name], steps, warmup, out, clock, cpu,
                                                                  batons, done, results), name=f"lockstep-{name}")
                 for i, name in enumerate(names)]
    batons[0].release()  # the first variant steps first
    for process in processes:
        process.start()
    collected = dict((index, (times, error)) for index, times, error in (results.get() for _ in processes))
    for process in processes:
        process.join()
    errors = [f"{names[i]}: {error}" for i, (_, error) in sorted(collected.items()) if error]
    if errors:
        raise RuntimeError("lockstep_train: a variant failed: " + "; ".join(errors))
    return {name: collected[i][0] for i, name in enumerate(names)}
