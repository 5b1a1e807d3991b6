"""What genlab's live diagnostics cost: images/s of the default DCGAN run with them on and off (goal: <= 3 %).

This is issue #15's check, `benchmarks/train_throughput.py`'s genlab side with the diagnostics on vs off: the
default experiment, fashion_mnist_dcgan (batch 64, logging every 50 steps, sample grids every 500, checkpoints
every 500), steady-state steps only. On: the defaults (D accuracy, G/D gradient norms, learning rates, EMA
distance, sample saturation and diversity against real images, the NaN guard, whose finiteness check shares the
optimiser step's one device sync). Off: logging.diagnostics=false training.nan_guard=off.

The effect is a fraction of a per cent, far smaller than a shared machine's drift between two runs made one after
the other (tens of per cent on these 2-core virtual machines). So "off" and "on" train at the same time, in
lockstep (`benchmarks/lockstep.py`): one process each, pinned to the same core, a baton passed after every step,
so step k of both runs back to back; half the steps with each first; each process's CPU time on the CPU, wall
time on GPUs. Printed: images/s of each, the cost 1 - off's seconds / on's seconds, and its 90 % bootstrap
interval over blocks of 50 steps. `--control` first times "off" against itself: the harness's own noise.

    python benchmarks/diagnostics_cost.py [--steps 1000] [--device cpu] [--clock cpu|wall] [--sample-every 500]
        [--cpu N] [--control]

`--sample-every 50` checks samples ten times as often as the default: an upper bound for runs that look often.
`--components` times instead what the diagnostics add to each step, one piece at a time, beside one forward
and backward pass of G and D (CPU time, many repetitions): a bound on the cost that neighbours cannot move.

    python benchmarks/diagnostics_cost.py --components [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
from lockstep import cpu_description, default_cpu, paired_cost  # benchmarks/lockstep.py, beside this script

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
    parser.add_argument("--steps", type=int, default=1000, help="timed steps of each (half with each first)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps at the start of each run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clock", choices=("cpu", "wall"), default=None,
                        help="cpu: each process's CPU time (default on the CPU); wall: elapsed time (default on GPUs)")
    parser.add_argument("--sample-every", type=int, default=500, help="steps between sample checks (preset: 500)")
    parser.add_argument("--cpu", type=int, default=default_cpu(), help="core to pin both to (default: first allowed)")
    parser.add_argument("--control", action="store_true", help="first time off against itself (the harness's noise)")
    parser.add_argument("--threads", type=int, default=None, help="with --components: torch threads")
    parser.add_argument("--components", action="store_true", help="time the per-step pieces instead")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.components:
        components()
        return
    clock = args.clock or ("cpu" if args.device == "cpu" else "wall")
    data = "fashion-mnist" if (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file() else "synthetic"
    base = [f"data.name={data}", "data.image_size=28", f"device={args.device}", "logging.progress=false",
            f"logging.sample_every={args.sample_every}", "logging.report=false"]
    print(f"fashion_mnist_dcgan on {data}, batch 64: {args.steps} timed steps of each after {args.warmup}, off and on "
          f"in lockstep on core {args.cpu}, device {args.device}, {clock} clock; torch {torch.__version__}; "
          f"{cpu_description()}")
    if args.control:
        print("control, off against off:")
        paired_cost("fashion_mnist_dcgan", [*base, *OFF], [*base, *OFF], args.steps, args.warmup, clock, args.cpu, 64,
                    ("off", "off'"))
    print("diagnostics on against off (goal: costs <= 3 %):")
    paired_cost("fashion_mnist_dcgan", [*base, *OFF], base, args.steps, args.warmup, clock, args.cpu, 64, ("off", "on"))


if __name__ == "__main__":
    main()
