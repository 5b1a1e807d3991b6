"""genlab's training loop against a plain PyTorch DCGAN loop: images/s of each and their ratio.

Both train the same DCGAN (same sizes, batch 64) on the same images held in memory, in one
process, alternating rounds so machine noise hits both alike. genlab runs with its defaults:
metrics.jsonl + TensorBoard logging, EMA, progress bar, sample grids and checkpoints.
Only steady-state steps are timed (the first `--warmup` steps of each round are excluded).

    python benchmarks/train_throughput.py [--steps 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from timing import timed_train  # benchmarks/timing.py, beside this script

from genlab.config import load_config
from genlab.data import build_dataset, to_float
from genlab.data.sources import DEBIAN_FASHION_MNIST
from genlab.models import DataShape, build_models

BATCH = 64


def plain_loop(cfg, images: torch.Tensor, steps: int, warmup: int) -> float:
    """A textbook DCGAN loop (BCE, Adam, D then G step per batch); returns timed images/s."""
    torch.manual_seed(0)
    G, D = build_models(cfg.model, DataShape(28, 1, 10))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    order = torch.randperm(len(images))
    ones, zeros = torch.ones(BATCH), torch.zeros(BATCH)
    start = 0.0
    for step in range(steps + warmup):
        if step == warmup:
            start = time.perf_counter()
        idx = order[(step * BATCH) % (len(images) - BATCH):][:BATCH]
        real = images[idx]
        fake = G(torch.randn(BATCH, cfg.model.latent_dim))
        opt_d.zero_grad()
        loss_d = (F.binary_cross_entropy_with_logits(D(real), ones)
                  + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros))
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
        loss_g.backward()
        opt_g.step()
        _ = (loss_d.item(), loss_g.item())
    return steps * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps at the start of each round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    data = "fashion-mnist" if (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file() else "synthetic"
    overrides = [f"data.name={data}", "data.image_size=28", "data.num_samples=20000", "device=cpu"]
    cfg = load_config("fashion_mnist_dcgan", overrides)
    images = to_float(build_dataset(cfg.data).images)
    print(f"data: {data} {tuple(images.shape)}, batch {BATCH}, {args.steps} timed steps x {args.rounds} rounds, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    plain, ours = [], []
    with tempfile.TemporaryDirectory() as out:
        for round_ in range(args.rounds):
            plain.append(plain_loop(cfg, images, args.steps, args.warmup))
            ours.append(timed_train("fashion_mnist_dcgan", overrides, args.steps, args.warmup, out))
            print(f"round {round_ + 1}: plain {plain[-1]:7.1f} img/s   genlab {ours[-1]:7.1f} img/s")
    p, g = statistics.median(plain), statistics.median(ours)
    print(f"median: plain {p:.1f} img/s, genlab {g:.1f} img/s, ratio genlab/plain = {g / p:.3f} (goal >= 0.97)")


if __name__ == "__main__":
    main()
