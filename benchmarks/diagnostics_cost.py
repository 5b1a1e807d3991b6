"""What genlab's live diagnostics cost: images/s of the default DCGAN run with them on and off (goal: <= 3 %).

This is issue #15's check, `benchmarks/train_throughput.py`'s genlab side with the diagnostics on vs off: the
same `timed_train` (benchmarks/timing.py) on the same preset, fashion_mnist_dcgan at batch 64, only steady-state
steps timed. On: the defaults (D accuracy, G/D gradient norms, EMA distance, sample saturation and diversity
against real images, the NaN guard, whose finiteness check shares the optimiser step's one device sync). Off:
logging.diagnostics=false training.nan_guard=off.

The effect is small beside a shared machine's noise, so the estimate is built to resist it: many short rounds,
each timing off and on back to back (the order alternating, ABBA, so a drift hits both alike), and the cost is
the median of the per-round paired ratios 1 - on/off, printed with their quartiles and range. On a CPU that
other processes share, `--clock cpu` (the default there) times this process's CPU time instead of the wall
clock, which the neighbours' load moves by tens of per cent; `--threads 1` keeps OpenMP's spinning out of it.

    python benchmarks/diagnostics_cost.py [--steps 40] [--rounds 12] [--device cpu] [--clock cpu|wall] [--threads 1]

`--components` times instead what the diagnostics add to each step, one piece at a time, beside one forward
and backward pass of G and D (CPU time, many repetitions): a bound on the cost that neighbours cannot move.

    python benchmarks/diagnostics_cost.py --components [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from timing import timed_train  # benchmarks/timing.py, beside this script

from genlab.config import load_config
from genlab.data.sources import DEBIAN_FASHION_MNIST
from genlab.losses import build_adversarial_loss
from genlab.methods.optim import grad_norm
from genlab.models import DataShape, build_models

OFF = ["logging.diagnostics=false", "training.nan_guard=off"]


def components() -> None:
    """CPU milliseconds of each per-step piece of the diagnostics beside a forward+backward pass of the preset."""
    cfg = load_config("fashion_mnist_dcgan", [])
    G, D = build_models(cfg.model, DataShape(28, 1, 10))
    z, real = torch.randn(64, cfg.model.latent_dim), torch.randn(64, 1, 28, 28)
    loss = build_adversarial_loss(cfg.training.loss_type)
    logits = torch.randn(64)
    stats = {"loss_d": torch.tensor(1.0), "loss_g": torch.tensor(1.0), "d_real": torch.tensor(0.5)}

    def passes() -> None:
        G.zero_grad()
        D.zero_grad()
        (D(G(z)).mean() + D(real).mean()).backward()

    passes()
    norm = grad_norm(D)

    def check() -> None:  # MixedPrecision.step's one finiteness check of the norm and the losses (its device sync)
        torch.isfinite(torch.stack([norm, *(v.reshape(()) for v in stats.values())])).tolist()

    def timed(fn, repeat: int) -> float:
        fn()
        start = time.process_time()
        for _ in range(repeat):
            fn()
        return (time.process_time() - start) / repeat * 1e3

    step = timed(passes, 10)
    pieces = {"G and D gradient norms": timed(lambda: (grad_norm(G), grad_norm(D)), 50),
              "finiteness check (x2 per step)": 2 * timed(check, 50),
              "D accuracies": timed(lambda: loss.accuracy(logits, logits), 500)}
    print(f"forward+backward of G and D: {step:.1f} ms CPU (a training step does more: this understates it)")
    for name, ms in pieces.items():
        print(f"  {name}: {ms:.3f} ms = {ms / step:.2%}")
    print(f"per-step diagnostics: {sum(pieces.values()) / step:.2%} of a forward+backward pass (goal <= 3 %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps at the start of each run")
    parser.add_argument("--rounds", type=int, default=12, help="paired (off, on) rounds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clock", choices=("cpu", "wall"), default=None,
                        help="cpu: this process's CPU time (default on the CPU); wall: elapsed time (default on GPUs)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--components", action="store_true", help="time the per-step pieces instead")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.components:
        components()
        return
    clock = args.clock or ("cpu" if args.device == "cpu" else "wall")
    timer = time.process_time if clock == "cpu" else time.perf_counter

    data = "fashion-mnist" if (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file() else "synthetic"
    # sample_every 50 instead of 500: ten times the default's share of sample-health checks, an upper bound.
    base = [f"data.name={data}", "data.image_size=28", "data.num_samples=20000", f"device={args.device}",
            "logging.progress=false", "logging.sample_every=50", "logging.report=false"]
    print(f"data: {data}, {args.steps} timed steps x {args.rounds} paired rounds, device {args.device}, "
          f"{clock} clock, torch {torch.__version__}, {torch.get_num_threads()} threads")
    costs, on, off = [], [], []
    with tempfile.TemporaryDirectory() as out:
        for round_ in range(args.rounds):
            speeds = {}
            for name in (("off", "on") if round_ % 2 == 0 else ("on", "off")):
                speeds[name] = timed_train("fashion_mnist_dcgan", [*base, *(OFF if name == "off" else [])],
                                           args.steps, args.warmup, out, timer)
            off.append(speeds["off"])
            on.append(speeds["on"])
            costs.append(1 - speeds["on"] / speeds["off"])
            print(f"round {round_ + 1:2d}: off {off[-1]:8.1f} img/s   on {on[-1]:8.1f} img/s   cost {costs[-1]:+.1%}",
                  flush=True)
    quartiles = statistics.quantiles(costs, n=4) if len(costs) > 1 else [costs[0]] * 3
    print(f"median img/s: off {statistics.median(off):.1f}, on {statistics.median(on):.1f}")
    print(f"cost (median of {len(costs)} paired ratios): {statistics.median(costs):+.1%}; quartiles "
          f"{quartiles[0]:+.1%} .. {quartiles[2]:+.1%}, range {min(costs):+.1%} .. {max(costs):+.1%} (goal <= 3 %)")


if __name__ == "__main__":
    main()
