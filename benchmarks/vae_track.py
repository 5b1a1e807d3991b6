"""Seed 003's VAE track measured: prior-sample FID, test reconstruction error and active units of trained VAE runs.

For each run directory (e.g. fashion_mnist_vae, _perceptual and _patchgan trained for the same number of epochs)
this scores, on the same footing:

- FID (exact Inception, no --fast) of N prior samples z ~ N(0, I) decoded with the run's weights (EMA if kept),
  against the whole test split of the run's data set (real statistics cached); the same seeded z for every run;
- reconstruction error on the test split: mean squared error per pixel of the posterior-mean reconstructions,
  on the [-1, 1] scale the models train on (divide by 4 for [0, 1]);
- active units over the test split (latent dimensions whose posterior-mean variance is at least the run's
  training.active_units_threshold, 0.01 by default): 0 is a collapsed posterior;

and writes, with --grids DIR, a 64-image prior-sample grid and a reconstruction grid (16 test images above their
reconstructions) per run, named after the run directory. FID from a few thousand samples is biased upwards (the
customary 10,000+ lower it); the values compare runs at equal N.

    python benchmarks/vae_track.py RUN_DIR... [--n 5000] [--seed 0] [--grids docs/img] [--json vae.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genlab.data import build_dataset, to_float
from genlab.evaluation import extractor_for, score_samples
from genlab.generate import load_run
from genlab.images import save_grid
from genlab.losses.vae import active_units
from genlab.methods import SampleOptions


def reconstruction_stats(method, images: torch.Tensor, threshold: float, batch_size: int = 500) -> tuple[float, int]:
    """(MSE per pixel of posterior-mean reconstructions, active units) over `images` in [-1, 1]."""
    squared, means = 0.0, []
    for chunk in images.split(batch_size):
        squared += float((method.reconstruct(chunk) - chunk).double().pow(2).sum())
        means.append(method.encode(chunk))
    return squared / images.numel(), active_units(means, threshold)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--n", type=int, default=5000, help="prior samples per run for FID")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default="last")
    parser.add_argument("--grids", default=None, help="folder for <run>_prior.png and <run>_recon.png")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    rows = []
    extractor = None
    for run_dir in args.runs:
        run = load_run(run_dir, args.checkpoint, device="cpu")
        cfg, method = run.cfg, run.method
        if cfg.model.family != "vae":
            raise SystemExit(f"{run_dir} is a {cfg.model.family} run; this script scores VAE runs.")
        test = to_float(build_dataset(cfg.data.model_copy(update={"split": "test", "max_samples": None})).images)
        mse, active = reconstruction_stats(method, test, cfg.training.active_units_threshold)
        noise = method.make_noise(args.n, torch.Generator().manual_seed(args.seed))
        start = time.perf_counter()
        samples = torch.cat([method.sample(z, options=SampleOptions()) for z in noise.split(500)])
        sample_s = (time.perf_counter() - start) / args.n
        extractor = extractor or extractor_for(cfg, "inception", torch.device("cpu"))
        fid = score_samples(cfg, samples, ["fid"], extractor=extractor, split="test", seed=args.seed)["fid"]
        name = Path(run_dir).name
        if args.grids:
            save_grid(samples[:64], Path(args.grids) / f"{name}_prior.png", nrow=8)
            pairs = torch.cat([test[:16], method.reconstruct(test[:16])])
            save_grid(pairs, Path(args.grids) / f"{name}_recon.png", nrow=16)
        summary_file = Path(run_dir) / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        rows.append({"run": name, "step": run.step, "fid": fid, "recon_mse": mse, "active_units": active, "latent_dim": cfg.model.latent_dim,
                     "train_seconds": summary.get("train_seconds"), "sample_s_per_image": sample_s})
        print(f"{name}: step {run.step}, FID {fid:.2f}, test recon MSE {mse:.4f}, active units {active}/"
              f"{cfg.model.latent_dim}", flush=True)

    print(f"\nN = {args.n} prior samples vs the test split, exact Inception, seed {args.seed}\n")
    print("| run | steps | FID ↓ | test recon MSE ↓ | active units | train s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        seconds = f"{r['train_seconds']:.0f}" if r["train_seconds"] is not None else "-"
        print(f"| {r['run']} | {r['step']} | {r['fid']:.2f} | {r['recon_mse']:.4f} | {r['active_units']}/"
              f"{r['latent_dim']} | {seconds} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"n": args.n, "seed": args.seed, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
