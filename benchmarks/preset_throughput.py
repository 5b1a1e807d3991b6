"""Per-preset training speed and memory on this machine: a baseline table for later speed work.

For every preset (or those named), one child process builds the preset's networks at full width,
runs `--warmup` then `--steps` training steps (discriminator + generator phases, forward and backward)
at batch 8 on synthetic data of the preset's resolution and channel count, and reports images/s
and the process's peak resident memory growth over the steps. Children keep presets from
sharing allocator state; they run one after another.

    python benchmarks/preset_throughput.py [--batch 8] [--steps 3] [preset ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(preset: str, batch: int, steps: int, warmup: int) -> dict:
    """Images/s and peak-RSS growth of `steps` GAN steps for one preset (runs in the child)."""
    import torch

    from genlab.config import load_config
    from genlab.data import build_dataset
    from genlab.data.loader import EpochLoader
    from genlab.methods import METHODS, StepContext
    from genlab.models import DataShape

    base = load_config(preset)
    cfg = load_config(preset, [
        "data.name=synthetic", "data.root=null", "data.split=train", "data.num_classes=null",
        f"data.num_samples={batch * (steps + warmup)}", f"data.channels={base.data.channels or 1}",
        f"training.batch_size={batch}", "training.vgg_weights=null", "device=cpu",
    ])
    dataset = build_dataset(cfg.data)
    shape = DataShape(dataset.image_size, dataset.channels, dataset.num_classes)
    method = METHODS.get(cfg.model.family)(cfg, shape, torch.device("cpu"))
    batches = list(EpochLoader(dataset, batch, 0, torch.device("cpu")).epoch(0))
    total = len(batches)
    for i in range(warmup):
        method.train_step(batches[i], StepContext(i, total, total))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        method.train_step(batches[i], StepContext(i, total, total))
    elapsed = time.perf_counter() - start
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    params = sum(p.numel() for p in method.generator.parameters()) + sum(p.numel() for p in method.discriminator.parameters())
    return {"preset": preset, "size": shape.image_size, "params_m": params / 1e6,
            "images_per_sec": steps * batch / elapsed, "peak_rss_mb": rss_after / 1024,
            "step_rss_growth_mb": (rss_after - rss_before) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", help="presets to measure (default: all)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.presets[0], args.batch, args.steps, args.warmup)))
        return
    from genlab.config import list_presets

    presets = args.presets or list_presets()
    print(f"{'preset':<24}{'px':>5}{'params (M)':>12}{'img/s':>10}{'peak RSS (MB)':>15}{'growth (MB)':>13}")
    for preset in presets:
        out = subprocess.run([sys.executable, __file__, "--child", preset, "--batch", str(args.batch),
                              "--steps", str(args.steps), "--warmup", str(args.warmup)], capture_output=True, text=True)
        if out.returncode != 0:
            why = "killed: out of memory" if out.returncode == -9 else (out.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{preset:<24} failed ({why})")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['preset']:<24}{r['size']:>5}{r['params_m']:>12.2f}{r['images_per_sec']:>10.1f}"
              f"{r['peak_rss_mb']:>15.0f}{r['step_rss_growth_mb']:>13.0f}")


if __name__ == "__main__":
    main()
