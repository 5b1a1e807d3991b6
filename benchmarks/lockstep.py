"""Two override sets of one preset, trained in lockstep: how much slower B is than A, step for step (CPU or GPU).

A speed difference of a few per cent is smaller than a shared machine's drift between two runs made one after the
other (tens of per cent on these 2-core virtual machines). Here A and B train at the same time, each in a process
of its own pinned to the same core, passing a baton after every step (`timing.lockstep_train`): step k of A and
step k of B run back to back, so whatever slows the machine for longer than a step slows both. Half the steps are
timed with A stepping first, half with B first. The clock is each process's CPU time (a neighbour taking the core
does not count; `--clock wall` on GPUs). Printed: images/s of each, B's cost 1 - A's seconds / B's seconds, and a
90 % bootstrap interval over blocks of 50 steps (shorter blocks for runs under 500 steps).

    python benchmarks/lockstep.py fashion_mnist_dcgan --a "training.reuse_cpu_memory=false" --b "" [--steps 1000]
        [--warmup 20] [--cpu N] [--clock cpu|wall] [--control]

`--control` first times A against itself the same way: the harness's own noise, the size of difference it can see.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shlex
import tempfile
from pathlib import Path

import torch
from timing import lockstep_train  # benchmarks/timing.py, beside this script

BLOCK = 50  # steps per bootstrap block: one default log interval


def cpu_description() -> str:
    """The CPU's model and the flags that decide bf16/int8 speed (amx, avx512_bf16, avx512_vnni)."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return platform.processor() or platform.machine()
    text = info.read_text()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = [f for f in ("amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2") if f in flags]
    return f"{model} ({os.cpu_count()} CPUs; {' '.join(wanted) or 'no avx2'})"


def bootstrap_cost(a: list[float], b: list[float], draws: int = 2000) -> tuple[float, float]:
    """90 % interval of 1 - sum(a) / sum(b), resampling whole blocks of paired steps: BLOCK steps, fewer for short
    runs so that there are at least 10 blocks, and every step in one (the last block may be short)."""
    size = max(1, min(BLOCK, len(a) // 10))
    pairs = [(sum(a[i:i + size]), sum(b[i:i + size])) for i in range(0, len(a), size)]
    if not pairs:
        cost = 1 - sum(a) / sum(b)
        return cost, cost
    rng = random.Random(0)
    costs = sorted(1 - sum(x for x, _ in sample) / sum(y for _, y in sample)
                   for sample in ([rng.choice(pairs) for _ in pairs] for _ in range(draws)))
    return costs[int(0.05 * draws)], costs[int(0.95 * draws)]


def paired_cost(preset: str, a: list[str], b: list[str], steps: int, warmup: int, clock: str, cpu: int | None,
                batch: int, names: tuple[str, str] = ("A", "B")) -> tuple[float, float, float]:
    """Time `a` and `b` in lockstep, half the steps with each first; print and return (cost, low, high) of b vs a."""
    times_a: list[float] = []
    times_b: list[float] = []
    for first in (0, 1):
        order = [(names[0], a), (names[1], b)][::1 if first == 0 else -1]
        with tempfile.TemporaryDirectory() as out:
            times = lockstep_train({name: (preset, overrides) for name, overrides in order}, steps // 2, warmup, out,
                                   clock, cpu)
        ta, tb = times[names[0]], times[names[1]]
        print(f"  {names[first]} stepping first: {names[0]} {batch * len(ta) / sum(ta):7.1f} img/s   {names[1]} "
              f"{batch * len(tb) / sum(tb):7.1f} img/s   {names[1]} costs {1 - sum(ta) / sum(tb):+.2%}", flush=True)
        times_a += ta
        times_b += tb
    cost = 1 - sum(times_a) / sum(times_b)
    low, high = bootstrap_cost(times_a, times_b)
    print(f"  {names[1]} vs {names[0]}: {names[0]} {batch * len(times_a) / sum(times_a):.1f} img/s, {names[1]} "
          f"{batch * len(times_b) / sum(times_b):.1f} img/s; {names[1]} costs {cost:+.2%} "
          f"(90 % interval {low:+.2%} .. {high:+.2%})", flush=True)
    return cost, low, high


def default_cpu() -> int | None:
    """The first core this process may use (None where affinity cannot be set)."""
    return min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("--a", default="", help="overrides of A, space-separated (the baseline)")
    parser.add_argument("--b", default="", help="overrides of B, space-separated")
    parser.add_argument("--common", default="logging.progress=false logging.report=false",
                        help="overrides of both")
    parser.add_argument("--steps", type=int, default=1000, help="timed steps of each (half with each first)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps at the start of each run")
    parser.add_argument("--cpu", type=int, default=default_cpu(), help="core to pin both to (default: first allowed)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--control", action="store_true", help="first time A against itself (the harness's noise)")
    args = parser.parse_args()
    common, a, b = shlex.split(args.common), shlex.split(args.a), shlex.split(args.b)
    from genlab.config import load_config

    batch = load_config(args.preset, [*common, *a]).training.batch_size
    print(f"{args.preset}, batch {batch}: {args.steps} timed steps of each after {args.warmup}, in lockstep on core "
          f"{args.cpu}, {args.clock} clock; torch {torch.__version__}; {cpu_description()}")
    print(f"A: {' '.join(a) or '(preset)'}\nB: {' '.join(b) or '(preset)'}")
    if args.control:
        print("control, A against A:")
        paired_cost(args.preset, [*common, *a], [*common, *a], args.steps, args.warmup, args.clock, args.cpu, batch,
                    ("A", "A'"))
    print("B against A:")
    paired_cost(args.preset, [*common, *a], [*common, *b], args.steps, args.warmup, args.clock, args.cpu, batch)


if __name__ == "__main__":
    main()
