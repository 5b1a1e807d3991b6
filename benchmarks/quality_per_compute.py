"""Quality per compute: the FID a plain DCGAN and genlab's 28-px GAN presets reach in the same wall-clock budget.

(a) The plain DCGAN is the PyTorch examples' `dcgan/main.py` with its published hyper-parameters: nz 100,
    ngf = ndf = 64, Adam lr 2e-4, betas (0.5, 0.999), batch 64, BCELoss on a sigmoid D, N(0, 0.02) conv and
    N(1, 0.02) BatchNorm init, one D step (real, then detached fake) and one G step on the same fake per
    batch. Its networks are written for 64 px; this adaptation drops one up/down-sampling block of each
    (G: z → 4 → 8 → 16 → 32 px with 256, 128, 64 filters; D: 32 → 16 → 8 → 4 px with 64, 128, 256, the
    first without BatchNorm, as in the original). Fashion-MNIST's 28-px images are padded to 32 px with two
    pixels of background (-1, black) per side, so nothing is resampled, and its samples are cropped back to
    the central 28 px before scoring. Written here from the example's description, not copied.
(b) genlab's default preset (`fashion_mnist_dcgan`) and variants of it that fit a 28-px budget: the speed
    switches (bf16 autocast, the fastest set measured here), hinge loss (EMA is on in all), DiffAugment,
    TTUR; `--variants` picks some, `--extra` adds one.

Each trains for `--budget` seconds of wall clock, everything counted (data loading, logging, grids,
checkpoints, compilation), on the same machine one after the other, then draws `--samples` images from
fixed noise (genlab: its EMA generator, as `genlab sample` does; the plain DCGAN has no EMA) and scores them
with FID against the same first 5,000 Fashion-MNIST test images (`--fast int8` for the int8 Inception,
see docs/metrics.md). It prints a table: steps done, images/s, FID, FID ratio vs the plain DCGAN.

    python benchmarks/quality_per_compute.py [--budget 600] [--samples 5000] [--fast int8] [--variants ...]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.config import load_config
from genlab.data import build_dataset, to_float
from genlab.evaluation import dataset_batches, dataset_key
from genlab.generate import generate, load_run
from genlab.metrics import evaluate
from genlab.train.hooks import Hook
from genlab.train.loop import train

NZ, NGF, NDF, BATCH = 100, 64, 64, 64
REAL_TEST_IMAGES = 5000

#: genlab variants: name -> overrides of the default preset (fashion_mnist_dcgan).
#: The fastest switch set measured on the 2-core EPYC (benchmarks/train_throughput.py --switches): bf16 autocast
#: alone (1.51x the plain loop); adding channels-last, fused Adam and compile to it measured no faster (1.43x).
SPEED = ["training.amp=bf16"]
VARIANTS = {
    "default": [],
    "default + speed switches": SPEED,
    "hinge + EMA": ["training.loss_type=hinge"],
    "hinge + EMA + DiffAugment": ["training.loss_type=hinge", "training.diffaugment=translation,cutout"],
    "hinge + EMA + TTUR": ["training.loss_type=hinge", "training.lr_g=1e-4", "training.lr_d=4e-4"],
    "hinge + EMA + TTUR + speed switches": ["training.loss_type=hinge", "training.lr_g=1e-4", "training.lr_d=4e-4",
                                            *SPEED],
}


def dcgan_generator() -> nn.Sequential:
    """The example's G with one block fewer: z (100) → 4×4×256 → 8×8×128 → 16×16×64 → 32×32×1, tanh."""
    def up(c_in: int, c_out: int, stride: int, padding: int) -> list[nn.Module]:
        return [nn.ConvTranspose2d(c_in, c_out, 4, stride, padding, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
    return nn.Sequential(*up(NZ, NGF * 4, 1, 0), *up(NGF * 4, NGF * 2, 2, 1), *up(NGF * 2, NGF, 2, 1),
                         nn.ConvTranspose2d(NGF, 1, 4, 2, 1, bias=False), nn.Tanh())


def dcgan_discriminator() -> nn.Sequential:
    """The example's D with one block fewer: 32×32×1 → 16×16×64 → 8×8×128 → 4×4×256 → 1, sigmoid."""
    def down(c_in: int, c_out: int, norm: bool) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), *([nn.BatchNorm2d(c_out)] if norm else []),
                nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*down(1, NDF, False), *down(NDF, NDF * 2, True), *down(NDF * 2, NDF * 4, True),
                         nn.Conv2d(NDF * 4, 1, 4, 1, 0, bias=False), nn.Sigmoid())


def weights_init(module: nn.Module) -> None:
    """The example's init: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02) and biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def plain_dcgan(budget: float, samples: int, seed: int = 0, max_steps: int | None = None) -> tuple[int, float, torch.Tensor]:
    """Train the plain DCGAN for `budget` seconds (or `max_steps`); (steps, seconds, `samples` 28-px images)."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    cfg = load_config("fashion_mnist_dcgan")
    images = F.pad(to_float(build_dataset(cfg.data).images), (2, 2, 2, 2), value=-1.0)  # 28 → 32 px, black border
    G, D = dcgan_generator(), dcgan_discriminator()
    G.apply(weights_init)
    D.apply(weights_init)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    criterion = nn.BCELoss()
    real_label, fake_label = torch.ones(BATCH), torch.zeros(BATCH)
    steps = 0
    def done() -> bool:
        return steps >= max_steps if max_steps else time.perf_counter() - start >= budget

    while not done():
        for idx in torch.randperm(len(images)).split(BATCH):  # one shuffled epoch, as DataLoader(shuffle=True)
            if len(idx) < BATCH or done():
                break
            real = images[idx]
            D.zero_grad()
            loss_real = criterion(D(real).view(-1), real_label)
            loss_real.backward()
            fake = G(torch.randn(BATCH, NZ, 1, 1))
            loss_fake = criterion(D(fake.detach()).view(-1), fake_label)
            loss_fake.backward()
            opt_d.step()
            G.zero_grad()
            loss_g = criterion(D(fake).view(-1), real_label)
            loss_g.backward()
            opt_g.step()
            steps += 1
    seconds = time.perf_counter() - start
    G.eval()
    noise = torch.randn(samples, NZ, 1, 1, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        fake = torch.cat([G(z) for z in noise.split(256)])[:, :, 2:30, 2:30]  # crop back to 28 px
    return steps, seconds, fake


class WallClockBudget(Hook):
    """Stops training once `deadline` (a time.perf_counter() value) has passed."""

    name = "wall_clock_budget"

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def after_step(self, state, stats) -> None:
        if time.perf_counter() >= self.deadline:
            state.request_stop("wall-clock budget spent")


def genlab_variant(overrides: list[str], budget: float, samples: int, out: str, name: str,
                   max_steps: int | None = None) -> tuple[int, float, torch.Tensor]:
    """Train the default preset + `overrides` for `budget` seconds (or `max_steps`); (steps, seconds, EMA images)."""
    start = time.perf_counter()
    limit = [f"training.max_steps={max_steps}"] if max_steps else []
    cfg = load_config("fashion_mnist_dcgan", [*overrides, f"output_dir={out}", f"name={name}", "training.num_epochs=1000",
                                              "logging.progress=false", "logging.report=false", "device=cpu", *limit])
    result = train(cfg, hooks=() if max_steps else (WallClockBudget(start + budget),))
    seconds = time.perf_counter() - start
    loaded = load_run(result.run_dir, device="cpu")
    return result.step, seconds, generate(loaded.method, samples, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=600.0, help="wall-clock seconds of training per model")
    parser.add_argument("--steps", type=int, default=None, help="train this many steps instead of --budget seconds "
                        "(FID per step, to tell speed from sample efficiency)")
    parser.add_argument("--samples", type=int, default=5000, help="generated images scored per model")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain DCGAN (ratios are then vs the first row)")
    parser.add_argument("--fast", default=None, help="reduced-precision FID features: int8, bf16 or fp16 (default exact)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated genlab variants to run")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=OVERRIDE;OVERRIDE",
                        help="an extra genlab variant, e.g. 'wide D=model.discriminator_base_channels=128'")
    args = parser.parse_args()
    variants = {name: VARIANTS[name] for name in args.variants.split(",") if name}
    for extra in args.extra:
        name, _, overrides = extra.partition("=")
        variants[name] = [o for o in overrides.split(";") if o]

    cfg = load_config("fashion_mnist_dcgan")
    test = cfg.data.model_copy(update={"split": "test", "max_samples": None})
    precision = f"{args.fast} Inception" if args.fast else "exact Inception"

    def fid(images: torch.Tensor) -> float:
        return evaluate(images, dataset_batches(test, REAL_TEST_IMAGES), ["fid"], fast=args.fast or False,
                        real_cache_key=dataset_key(test, "test", REAL_TEST_IMAGES))["fid"]

    limit = f"{args.steps} steps" if args.steps else f"budget {args.budget:.0f} s"
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{limit} per model, FID of {args.samples} samples vs the first {REAL_TEST_IMAGES} "
          f"Fashion-MNIST test images ({precision})", flush=True)
    rows = []
    if not args.no_plain:
        steps, seconds, images = plain_dcgan(args.budget, args.samples, max_steps=args.steps)
        rows.append(("plain DCGAN (PyTorch examples, 32 px)", steps, seconds, fid(images)))
        print(f"  {rows[-1]}", flush=True)
    with tempfile.TemporaryDirectory() as out:
        for i, (name, overrides) in enumerate(variants.items()):
            steps, seconds, images = genlab_variant(overrides, args.budget, args.samples, out, f"v{i}", args.steps)
            rows.append((f"genlab {name}", steps, seconds, fid(images)))
            print(f"  {rows[-1]}", flush=True)
    base = rows[0][3]
    print("\n| model | steps | images/s | FID | FID / plain DCGAN |\n|---|---|---|---|---|")
    for name, steps, seconds, value in rows:
        print(f"| {name} | {steps} | {steps * BATCH / seconds:.0f} | {value:.1f} | {value / base:.2f} |")


if __name__ == "__main__":
    main()
