"""genlab's training loop against a plain PyTorch DCGAN loop: images/s of each and their ratio.

Both train the same DCGAN (same sizes, batch 64) on the same images held in memory, in one
process, alternating rounds so machine noise hits both alike. genlab runs with its defaults:
metrics.jsonl + TensorBoard logging, EMA, progress bar, sample grids and checkpoints.
Only steady-state steps are timed (the first `--warmup` steps of each round are excluded; with
training.compile they hold the compilation, which is thus left out of images/s).

    python benchmarks/train_throughput.py [--steps 200] [--rounds 3]

`--switches` measures genlab's speed switches, each alone and all together, against the plain loop on
the default preset (28 px, Fashion-MNIST in memory) and on `faces_dcgan_64` (64 px, RGB) reading a
file-backed image folder written from Fashion-MNIST into a temporary directory (the data switches,
workers with prefetch and persistence, only act on such sets; pinning only pays on CUDA). The plain loop
reads the same images decoded in memory. `--fid-steps N` also trains N steps of the default preset
with and without the best switches (same seeds) and scores both with FID, to show they cost no quality.

    python benchmarks/train_throughput.py --switches [--presets default,64px] [--steps 60] [--rounds 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from timing import SteadyBatches, timed_train  # benchmarks/timing.py, beside this script

from genlab.config import load_config
from genlab.data import build_dataset, to_float
from genlab.data.sources import DEBIAN_FASHION_MNIST
from genlab.evaluation import real_batches
from genlab.methods.speed import compile_problem
from genlab.models import DataShape, build_models
from genlab.train.loop import train

BATCH = 64


def plain_loop(cfg, images: torch.Tensor, steps: int, warmup: int) -> float:
    """A textbook DCGAN loop (BCE, Adam, D then G step per batch); returns timed images/s."""
    torch.manual_seed(0)
    G, D = build_models(cfg.model, DataShape(images.shape[-1], images.shape[1], 10))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    batches = SteadyBatches(images, BATCH, steps, warmup)
    ones, zeros = torch.ones(BATCH), torch.zeros(BATCH)
    for real in batches:
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
    return batches.images_per_second()


#: Each speed switch alone, then together: "best" keeps float32 (results equal within rounding), "best + bf16"
#: adds bf16 autocast, which changes the numerics and pays only where the CPU has bf16 instructions.
SWITCHES = {
    "genlab": [],
    "channels_last": ["training.channels_last=true"],
    "fused_adam": ["training.fused_adam=true"],
    "bf16": ["training.amp=bf16"],
    "compile": ["training.compile=true"],
    "best": ["training.channels_last=true", "training.fused_adam=true", "training.compile=true"],
    "best + bf16": ["training.channels_last=true", "training.fused_adam=true", "training.compile=true",
                    "training.amp=bf16"],
}
#: Only for file-backed sets (the 64-px preset here): one decoding worker, 4 batches ahead, kept between epochs.
DATA_SWITCHES = ["data.num_workers=1", "data.prefetch_factor=4", "data.persistent_workers=true"]


def write_image_folder(root: Path, count: int, size: int) -> None:
    """`count` Fashion-MNIST training images as RGB PNGs of side `size` in root/all/ (a file-backed set)."""
    cfg = load_config("fashion_mnist_dcgan", [f"data.max_samples={count}"])
    (root / "all").mkdir(parents=True)
    for i, image in enumerate(build_dataset(cfg.data).images[:count]):
        Image.fromarray(image[0].numpy()).convert("RGB").resize((size, size), Image.BILINEAR).save(root / "all" / f"{i:05d}.png")


def preset_setups(names: list[str], folder: Path) -> dict[str, tuple[str, list[str], torch.Tensor, dict]]:
    """name -> (preset, overrides, the same images in memory for the plain loop, extra switches)."""
    setups = {}
    if "default" in names:
        overrides = ["data.name=fashion-mnist", "data.image_size=28", "data.num_samples=20000", "device=cpu"]
        cfg = load_config("fashion_mnist_dcgan", overrides)
        setups["default (28 px)"] = ("fashion_mnist_dcgan", overrides, to_float(build_dataset(cfg.data).images), {})
    if "64px" in names:
        write_image_folder(folder, 2048, 64)
        overrides = [f"data.root={folder}", "training.amp=none", "eval.every_epochs=0", "eval.metrics=[]", "device=cpu"]
        cfg = load_config("faces_dcgan_64", overrides)
        images = to_float(torch.cat([b for b in real_batches(build_dataset(cfg.data))]))
        extra = {"data workers": DATA_SWITCHES, "best + data": [*SWITCHES["best"], *DATA_SWITCHES]}
        setups["faces_dcgan_64 (64 px, files)"] = ("faces_dcgan_64", overrides, images, extra)
    return setups


def measure_switches(args: argparse.Namespace) -> None:
    """Images/s of the plain loop, genlab and genlab with each switch, alternating within each round."""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
          f"compile: {compile_problem(torch.device('cpu')) or 'works'}; {args.steps} timed steps after "
          f"{args.warmup} warm-up steps, {args.rounds} rounds, median")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (preset, overrides, images, extra) in preset_setups(args.presets.split(","), Path(tmp) / "images").items():
            variants = {k: v for k, v in {**SWITCHES, **extra}.items() if k in args.variants.split(",") or
                        args.variants == "all" or k == "genlab"}
            rates: dict[str, list[float]] = {"plain": [], **{v: [] for v in variants}}
            for round_ in range(args.rounds):
                order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
                rates["plain"].append(plain_loop(load_config(preset, overrides), images, args.steps, args.warmup))
                for variant in order:
                    rates[variant].append(timed_train(preset, [*overrides, *variants[variant]], args.steps,
                                                      args.warmup, str(Path(tmp) / "runs")))
                print(f"  {name} round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()),
                      flush=True)
            plain = statistics.median(rates["plain"])
            print(f"\n{name}, batch 64\n| variant | images/s | × plain loop | × genlab |\n|---|---|---|---|")
            base = statistics.median(rates["genlab"])
            for variant, values in rates.items():
                rate = statistics.median(values)
                print(f"| {variant} | {rate:.0f} | {rate / plain:.2f} | {rate / base:.2f} |")
            print(flush=True)
    if args.fid_steps:
        equal_fid(args.fid_steps, args.fid_samples, args.fid_variants.split(","))


def equal_fid(steps: int, samples: int, variants: list[str]) -> None:
    """Train `steps` of the default preset plain and with each of `variants` (same seeds); FID of each (int8)."""
    from genlab.evaluation import dataset_batches, dataset_key
    from genlab.generate import generate, load_run
    from genlab.metrics import evaluate

    with tempfile.TemporaryDirectory() as out:
        results = {}
        for variant in ("genlab", *variants):
            overrides = [*SWITCHES[variant], f"output_dir={out}", f"name={variant}", f"training.max_steps={steps}",
                         "logging.progress=false", "logging.report=false", "device=cpu"]
            run = train(load_config("fashion_mnist_dcgan", overrides)).run_dir
            loaded = load_run(run, device="cpu")
            fake = generate(loaded.method, samples, seed=0)
            test = loaded.cfg.data.model_copy(update={"split": "test", "max_samples": None})
            results[variant] = evaluate(fake, dataset_batches(test, 5000), ["fid"], fast="int8",
                                        real_cache_key=dataset_key(test, "test", 5000))["fid"]
            print(f"  FID after {steps} steps, {variant}: {results[variant]:.2f}", flush=True)
        print(f"FID after {steps} steps (default preset, same seeds, EMA, {samples} samples vs the first 5,000 test "
              "images, int8 Inception): " + ", ".join(f"{k} {v:.2f}" for k, v in results.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps at the start of each round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--switches", action="store_true", help="measure each speed switch (see the docstring)")
    parser.add_argument("--presets", default="default,64px", help="with --switches: default and/or 64px")
    parser.add_argument("--fid-steps", type=int, default=0, help="with --switches: also compare FID after N steps")
    parser.add_argument("--fid-samples", type=int, default=2000, help="samples scored by --fid-steps")
    parser.add_argument("--fid-variants", default="best,best + bf16", help="switch sets --fid-steps compares with genlab")
    parser.add_argument("--variants", default="all", help="with --switches: comma-separated switch sets (genlab always)")
    args = parser.parse_args()
    if args.switches:
        measure_switches(args)
        return

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
