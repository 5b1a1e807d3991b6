"""What genlab's live diagnostics cost: images/s of the default DCGAN run with them on and off (goal: <= 3 %).

On: the defaults (D accuracy, G/D gradient norms, EMA distance, sample saturation and diversity against real
images, the NaN guard's per-step finiteness check). Off: logging.diagnostics=false training.nan_guard=off.
Rounds alternate so machine noise hits both alike; only steady-state steps are timed.

    python benchmarks/diagnostics_cost.py [--steps 200] [--rounds 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch
from timing import timed_train  # benchmarks/timing.py, beside this script

from genlab.data.sources import DEBIAN_FASHION_MNIST

OFF = ["logging.diagnostics=false", "training.nan_guard=off"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps at the start of each round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    data = "fashion-mnist" if (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file() else "synthetic"
    # sample_every 50 instead of 500: ten times the default's share of sample-health checks, an upper bound.
    base = [f"data.name={data}", "data.image_size=28", "data.num_samples=20000", f"device={args.device}",
            "logging.progress=false", "logging.sample_every=50", "logging.report=false"]
    print(f"data: {data}, {args.steps} timed steps x {args.rounds} rounds, device {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    on, off = [], []
    with tempfile.TemporaryDirectory() as out:
        for round_ in range(args.rounds):
            off.append(timed_train("fashion_mnist_dcgan", [*base, *OFF], args.steps, args.warmup, out))
            on.append(timed_train("fashion_mnist_dcgan", base, args.steps, args.warmup, out))
            print(f"round {round_ + 1}: off {off[-1]:8.1f} img/s   on {on[-1]:8.1f} img/s")
    a, b = statistics.median(off), statistics.median(on)
    print(f"median: off {a:.1f} img/s, on {b:.1f} img/s, cost {1 - b / a:+.1%} (goal <= 3 %)")


if __name__ == "__main__":
    main()
