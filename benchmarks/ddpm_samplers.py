"""FID and sampling seconds per image of one trained DDPM run under several samplers.

Goal (docs/families.md, "Diffusion (DDPM)"): DPM-Solver++ at 20 steps within 10 % of DDIM-100's FID at
>= 4x its speed, measured on a CPU, on the same trained model.

Every setting (default: DDPM 1000, DDIM 100, DDIM 50, DPM-Solver++ 20; DDIM with η = 0) denoises the same
seeded x_T (N×1×28×28 drawn once) with the run's EMA U-Net; the ancestral DDPM sampler's per-step noise comes
from a second generator, seeded alike for every setting. After an untimed 2-step warm-up of each sampler,
sampling is timed alone: wall seconds and process CPU seconds per image (on a shared machine CPU seconds are
the less load-sensitive of the two; with more than one thread they also count spin-waiting). FID is then
computed for each setting with the exact Inception (no --fast) against the data set's test split (real
statistics cached). With few images FID is biased upwards (rank-deficient covariance): the values compare
settings at equal N, they are not publishable absolute FIDs.

`dpm++noclip:20` is a diagnostic setting: DPM-Solver++ without the x₀ clipping genlab gives it by default
(diffusers' own default, thresholding=False), to show what the clip is worth on the same model. `--append` adds settings measured later (e.g. the slow DDPM 1000) to an earlier table of
the same run, N and seed. `--part I/K` splits the slow settings over K processes (one per core is the
fastest use of a small, busy CPU): their images are bit-identical to a single draw, and their wall and CPU
seconds are summed.

    python benchmarks/ddpm_samplers.py RUN_DIR [--n 500] [--seed 0] [--batch-size 250] \
        [--settings ddpm:1000,ddim:100,ddim:50,dpm++:20] [--grids docs/img] [--json results.json] \
        [--threads 1] [--append results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from genlab.evaluation import extractor_for, score_samples
from genlab.generate import load_run
from genlab.images import save_grid
from genlab.methods import SampleOptions

DEFAULT_SETTINGS = "ddpm:1000,ddim:100,ddim:50,dpm++:20"
REFERENCE = ("ddim", 100)
GOAL_FID_RATIO, GOAL_SPEEDUP = 1.10, 4.0


def parse_settings(text: str) -> list[tuple[str, int]]:
    """'ddpm:1000,ddim:100' -> [('ddpm', 1000), ('ddim', 100)]."""
    out = []
    for item in text.split(","):
        sampler, _, steps = item.strip().partition(":")
        out.append((sampler, int(steps)))
    return out


def slug(sampler: str, steps: int) -> str:
    return f"{sampler.replace('++', 'pp')}{steps}"


#: Diagnostic settings that genlab's SampleOptions cannot express: scheduler overrides on the same EMA U-Net.
#: "dpm++noclip": DPM-Solver++ as diffusers configures it by default, x₀ not clipped to [-1, 1] (genlab clips it,
#: as DDPM and DDIM do with clip_sample=True).
#: "ddimnoclip": DDIM without diffusers' clip_sample (whose clipped x₀ is not matched by a recomputed ε).
VARIANTS = {"dpm++noclip": ("dpm++", {"thresholding": False}), "ddimnoclip": ("ddim", {"clip_sample": False})}


def draw(method, noise: torch.Tensor, sampler: str, steps: int, seed: int, batch_size: int,
         part: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, float, float]:
    """Samples from `noise` with one sampler setting; (images, wall seconds, process CPU seconds).

    Chunk i of `batch_size` images gets its own sampler-noise generator (seed + 1 + i), so a setting drawn in
    parts (`part` = (index, count): chunks i with i % count == index) gives the same images as one draw.
    """
    options = SampleOptions(sampler=sampler, steps=steps, eta=0.0)
    index, count = part
    chunks = []
    wall, cpu = time.perf_counter(), time.process_time()
    for i, z in enumerate(noise.split(batch_size)):
        if i % count != index:
            continue
        gen = torch.Generator().manual_seed(seed + 1 + i)
        if sampler in VARIANTS:
            base, overrides = VARIANTS[sampler]
            unet = method.ema.model if method.ema is not None else None
            images = method.diffusion.sample(z, sampler=base, steps=steps, eta=0.0, generator=gen, unet=unet,
                                             **overrides)
        else:
            images = method.sample(z, options=options, generator=gen)
        chunks.append(images.cpu())
    return torch.cat(chunks), time.perf_counter() - wall, time.process_time() - cpu


def load_parts(folder: Path, name: str, n: int, batch_size: int) -> tuple[torch.Tensor, float, float, dict] | None:
    """A setting drawn in parts by `--part I/K` runs: (images in chunk order, summed wall and CPU seconds, info)."""
    files = sorted(folder.glob(f"{name}-part*.pt"))
    if not files:
        return None
    parts = [torch.load(f, weights_only=True) for f in files]
    count = parts[0]["count"]
    if sorted(p["index"] for p in parts) != list(range(count)) or any(p["n"] != n for p in parts):
        raise SystemExit(f"{folder}: the parts of {name} are incomplete or for another N ({[f.name for f in files]}).")
    by_chunk: dict[int, torch.Tensor] = {}
    for p in parts:
        ids = [i for i in range(-(-n // batch_size)) if i % count == p["index"]]
        for i, images in zip(ids, p["images"].split(batch_size), strict=True):
            by_chunk[i] = images
    images = torch.cat([by_chunk[i] for i in sorted(by_chunk)])
    info = {"parts": count, "load_before": min(p["load_before"] for p in parts),
            "load_after": max(p["load_after"] for p in parts)}
    return images, sum(p["wall"] for p in parts), sum(p["cpu"] for p in parts), info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--n", type=int, default=500, help="images per sampler setting (the same N for all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of x_T (and, +1, of the samplers' own noise)")
    parser.add_argument("--batch-size", type=int, default=250, help="images denoised at once")
    parser.add_argument("--checkpoint", default="last")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma-separated sampler:steps")
    parser.add_argument("--real-split", default="test", help="split of the run's data set FID compares against")
    parser.add_argument("--real-limit", type=int, default=None, help="first N real images only (default: all)")
    parser.add_argument("--grids", default=None, help="folder for an 8x8 grid per setting (ddpm_<sampler><steps>.png)")
    parser.add_argument("--save", default=None, help="folder for each setting's samples as .pt (to re-score)")
    parser.add_argument("--json", default=None, help="write the table as JSON here")
    parser.add_argument("--no-fid", action="store_true", help="time only")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--part", default=None,
                        help="I/K: draw only chunks i with i %% K == I of each setting and save them in --save (no FID, "
                        "no table); run K such processes in parallel, then once more without --part to assemble them "
                        "(wall and CPU seconds are summed over the parts)")
    parser.add_argument("--append", default=None,
                        help="a JSON this script wrote for the same run, N and seed: keep its rows, measure only the "
                        "settings it lacks, and print the table of both (e.g. DDPM-1000 measured separately)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device("cpu")
    run = load_run(args.run_dir, args.checkpoint, device="cpu")
    cfg, method = run.cfg, run.method
    settings = parse_settings(args.settings)
    previous: list[dict] = []
    if args.append and Path(args.append).is_file():
        old = json.loads(Path(args.append).read_text())
        if (old["run"], old["step"], old["n"], old["seed"]) != (str(args.run_dir), run.step, args.n, args.seed):
            raise SystemExit(f"{args.append} is for another run, step, N or seed; not appending.")
        previous = old["rows"]
        done = {(r["sampler"], r["steps"]) for r in previous}
        settings = [s for s in settings if s not in done]
    noise = method.make_noise(args.n, torch.Generator().manual_seed(args.seed))
    print(f"run {args.run_dir} (step {run.step}, {cfg.model.beta_schedule} β, {cfg.model.prediction_type}), "
          f"N={args.n}, seed {args.seed}, batch {args.batch_size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)

    rows: list[dict] = []
    samples: dict[tuple[str, int], torch.Tensor] = {}
    save = Path(args.save) if args.save else None
    if args.part:
        if save is None:
            raise SystemExit("--part needs --save (the folder the parts are assembled from)")
        index, count = (int(v) for v in args.part.split("/"))
        save.mkdir(parents=True, exist_ok=True)
    parted = {}
    if save is not None and not args.part:
        parted = {setting: got for setting in settings
                  if (got := load_parts(save, slug(*setting), args.n, args.batch_size)) is not None}
    for sampler in dict.fromkeys(s for s, st in settings if (s, st) not in parted):  # untimed warm-up
        draw(method, noise[: args.batch_size], sampler, 2, args.seed, args.batch_size)
    for sampler, steps in settings:
        load_before = os.getloadavg()[0]
        info: dict = {}
        if args.part:
            images, wall, cpu = draw(method, noise, sampler, steps, args.seed, args.batch_size, (index, count))
            torch.save({"images": images, "wall": wall, "cpu": cpu, "index": index, "count": count, "n": args.n,
                        "load_before": load_before, "load_after": os.getloadavg()[0]},
                       save / f"{slug(sampler, steps)}-part{index}of{count}.pt")
            print(f"  {sampler} {steps} part {index}/{count}: {len(images)} images, {wall:.0f} s wall, "
                  f"{cpu:.0f} CPU-s", flush=True)
            continue
        if (sampler, steps) in parted:
            images, wall, cpu, info = parted[(sampler, steps)]
        else:
            images, wall, cpu = draw(method, noise, sampler, steps, args.seed, args.batch_size)
            info = {"load_before": load_before, "load_after": os.getloadavg()[0]}
        samples[(sampler, steps)] = images
        rows.append({"sampler": sampler, "steps": steps, "s_per_image": wall / args.n,
                     "cpu_s_per_image": cpu / args.n, "threads": torch.get_num_threads(), **info})
        summed = f", summed over {info['parts']} parts" if "parts" in info else ""
        print(f"  {sampler:5s} {steps:5d} steps: {wall / args.n:.4f} s/image wall, {cpu / args.n:.4f} CPU-s/image "
              f"(load {info['load_before']:.2f} -> {info['load_after']:.2f}{summed})", flush=True)
        if args.grids:
            save_grid(images[:64], Path(args.grids) / f"ddpm_{slug(sampler, steps)}.png", nrow=8)
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            torch.save(images, save / f"{slug(sampler, steps)}.pt")
    if args.part:
        return

    if not args.no_fid:
        extractor = extractor_for(cfg, "inception", device)
        for row in rows:
            if "fid" in row:
                continue
            start = time.perf_counter()
            results = score_samples(cfg, samples[(row["sampler"], row["steps"])], ["fid"], extractor=extractor,
                                    split=args.real_split, real_limit=args.real_limit, seed=args.seed)
            row["fid"] = results["fid"]
            print(f"  FID {row['sampler']} {row['steps']}: {row['fid']:.2f} ({time.perf_counter() - start:.0f} s)",
                  flush=True)

    rows = previous + rows
    ref = next((r for r in rows if (r["sampler"], r["steps"]) == REFERENCE), None)
    print()
    print("| sampler | steps | s/image | CPU-s/image | FID | FID / DDIM-100 | speed-up vs DDIM-100 (wall, CPU) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        if ref is not None:
            row["speedup"] = ref["s_per_image"] / row["s_per_image"]
            row["cpu_speedup"] = ref["cpu_s_per_image"] / row["cpu_s_per_image"]
            if "fid" in row:
                row["fid_ratio"] = row["fid"] / ref["fid"]
        fid = f"{row['fid']:.2f}" if "fid" in row else "-"
        ratio = f"{row['fid_ratio']:.3f}" if "fid_ratio" in row else "-"
        speed = f"{row['speedup']:.2f}x, {row['cpu_speedup']:.2f}x" if "speedup" in row else "-"
        print(f"| {row['sampler']} | {row['steps']} | {row['s_per_image']:.4f} | {row['cpu_s_per_image']:.4f} | "
              f"{fid} | {ratio} | {speed} |")
    dpm = next((r for r in rows if (r["sampler"], r["steps"]) == ("dpm++", 20)), None)
    if ref is not None and dpm is not None and "fid_ratio" in dpm:
        fid_ok = dpm["fid_ratio"] <= GOAL_FID_RATIO
        speed_ok = min(dpm["speedup"], dpm["cpu_speedup"]) >= GOAL_SPEEDUP
        print(f"\ngoal: DPM-Solver++ 20 FID <= {GOAL_FID_RATIO:.2f} x DDIM-100's ({dpm['fid_ratio']:.3f}: "
              f"{'yes' if fid_ok else 'no'}) at >= {GOAL_SPEEDUP:.0f}x its speed (wall {dpm['speedup']:.2f}x, "
              f"CPU {dpm['cpu_speedup']:.2f}x: {'yes' if speed_ok else 'no'}) -> "
              f"{'met' if fid_ok and speed_ok else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"run": str(args.run_dir), "step": run.step, "n": args.n,
                                               "seed": args.seed, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
