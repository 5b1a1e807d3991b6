"""Comparing runs on equal footing: one table and the figures of seed 003's phase 5.

`compare_runs(roots)` loads each run's generator (best.pt when it has one, else last.pt), draws the
same number of samples from the same noise seed, scores every run against ONE real set (the first
run's evaluation data) with the same feature extractor and metric seeds, and measures what a
reader of the table needs beside the metrics: parameters, training time (summary.json), sampling
time per image (timed here, same device and batch for all). Figures: a 16-image grid per run, the
progression of its fixed-noise grids across training, a latent interpolation (GAN and VAE: slerp
between two noise vectors), and its worst samples, those farthest from every real image in feature
space (nearest-neighbour distance), each with its distance.

Runs trained on different data sets or image sizes are refused unless `force`, because their
scores against one real set would not mean the same thing.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from genlab.config import Config
from genlab.data import to_uint8
from genlab.errors import GenlabError
from genlab.evaluation import dataset_batches, dataset_key, extractor_for
from genlab.generate import generate, load_run
from genlab.methods import SampleOptions
from genlab.metrics import METRICS, cached_stats, extract_features, score_features
from genlab.metrics.features import DEFAULT_BATCH_SIZE
from genlab.metrics.lpips import build_lpips, lpips_diversity
from genlab.metrics.prdc import squared_distance_chunks
from genlab.registry import closest
from genlab.report.html import compare_columns
from genlab.report.plots import new_figure, save_figure
from genlab.runs.records import read_json, read_run_config

log = logging.getLogger("genlab")

#: What `genlab compare` computes by default: every image metric that needs no download, and LPIPS.
DEFAULT_METRICS = ("fid", "kid", "is", "prdc", "lpips")
#: The data settings that must agree for scores against one real set to be comparable.
DATA_IDENTITY = ("name", "root", "image_size", "channels", "classes", "center_crop")
#: Fractions of a run at which seed 003 shows its progression (epochs 10, 50, 100, 200 of 200).
PROGRESSION = (0.05, 0.25, 0.5, 1.0)
INTERPOLATION_STEPS = 8
LATENT_FAMILIES = ("gan", "vae")


@dataclass
class CompareOptions:
    """The identical conditions every run is held to."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    num_samples: int = 1000
    seed: int = 0
    checkpoint: str = "best"
    real_samples: int | None = None
    extractor: str = "inception"
    fast: bool | str = False
    download: bool = False
    lpips_samples: int = 100
    lpips_net: str = "alex"
    lpips_weights: str | None = None
    sampler: str | None = None
    steps: int | None = None
    grid_images: int = 16
    worst: int = 8
    batch_size: int = 256
    device: str = "auto"
    force: bool = False


@dataclass
class RunComparison:
    """One run's row and figures' data."""

    root: Path
    label: str
    family: str
    step: int
    checkpoint: str
    metrics: dict[str, float]
    parameters: dict[str, int]
    train_seconds: float | None
    sample_seconds_per_image: float
    grid: torch.Tensor
    worst: torch.Tensor
    worst_distance: list[float]
    interpolation: torch.Tensor | None = None
    progression: list[tuple[str, Path]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """The table row (JSON-ready)."""
        return {"run": self.label, "path": str(self.root), "family": self.family, "step": self.step,
                "checkpoint": self.checkpoint, **self.metrics, "parameters": sum(self.parameters.values()),
                "parameters_by_network": self.parameters, "train_seconds": self.train_seconds,
                "sample_seconds_per_image": self.sample_seconds_per_image}


def comparability_problems(roots: Sequence[Path]) -> list[str]:
    """Why the runs' scores against one real set would not be comparable (empty when they would)."""
    configs = [read_run_config(r) for r in roots]
    first = configs[0].get("data", {})
    problems = []
    for root, config in zip(roots[1:], configs[1:], strict=True):
        data = config.get("data", {})
        for key in DATA_IDENTITY:
            if data.get(key) != first.get(key):
                problems.append(f"{root} has data.{key}={data.get(key)!r} but {roots[0]} has {first.get(key)!r}")
    return problems


def check_metrics(names: Sequence[str]) -> None:
    """Refuse unknown metric names, with the nearest known one."""
    known = [*METRICS.names(), "lpips"]
    for name in names:
        if name not in known:
            hint = closest(name, known)
            raise GenlabError(f"compare: {name!r} is not a metric" + (f" — did you mean {hint!r}?" if hint else ".")
                              + f" Available: {', '.join(known)}.")


def _checkpoint_name(root: Path, wanted: str) -> str:
    """`best` falls back to `last` for runs that never evaluated (no best.pt)."""
    if wanted == "best" and not (Path(root) / "checkpoints" / "best.pt").is_file():
        return "last"
    return wanted


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between two batches of latent vectors (lerp where they are parallel)."""
    a_flat, b_flat = a.flatten(1), b.flatten(1)
    cos = (a_flat * b_flat).sum(1) / (a_flat.norm(dim=1) * b_flat.norm(dim=1)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1, 1))
    sin = torch.sin(omega)
    wa = torch.where(sin > 1e-6, torch.sin((1 - t) * omega) / sin.clamp_min(1e-12), torch.full_like(sin, 1 - t))
    wb = torch.where(sin > 1e-6, torch.sin(t * omega) / sin.clamp_min(1e-12), torch.full_like(sin, t))
    shape = (-1,) + (1,) * (a.dim() - 1)
    return wa.view(shape) * a + wb.view(shape) * b


def interpolation(method: Any, seed: int, steps: int = INTERPOLATION_STEPS) -> torch.Tensor:
    """Images along the slerp path between two seeded noise vectors (one class for conditional models)."""
    gen = torch.Generator().manual_seed(seed + 1)
    ends = method.make_noise(2, gen)
    path = torch.cat([slerp(ends[:1], ends[1:], i / (steps - 1)) for i in range(steps)])
    labels = None
    grid_labels = getattr(method, "grid_labels", None)
    if grid_labels is not None and grid_labels(1) is not None:
        labels = grid_labels(1).expand(steps)
    return method.sample(path, labels=labels, options=SampleOptions(ema=True), generator=gen).cpu()


def progression(root: Path, fractions: Sequence[float] = PROGRESSION) -> list[tuple[str, Path]]:
    """The fixed-noise grids nearest to the given fractions of the run (seed 003: epochs 10/50/100/200)."""
    grids = {int(m.group(1)): p for p in (Path(root) / "samples").glob("step_*.png")
             if (m := re.fullmatch(r"step_(\d+)", p.stem))}
    if not grids:
        return []
    summary = read_json(Path(root) / "summary.json") or {}
    total = summary.get("total_steps") or max(grids)
    steps_per_epoch = _steps_per_epoch(root)
    picks: list[tuple[str, Path]] = []
    for fraction in fractions:
        step = min(grids, key=lambda s: abs(s - fraction * total))
        label = f"epoch {step / steps_per_epoch:.3g}" if steps_per_epoch else f"step {step}"
        if all(p != grids[step] for _, p in picks):
            picks.append((label, grids[step]))
    return picks


def _steps_per_epoch(root: Path) -> int | None:
    """Steps per epoch of a run that trained whole epochs (from summary.json and config.yaml), else None."""
    total = (read_json(Path(root) / "summary.json") or {}).get("total_steps")
    training = read_run_config(root).get("training") or {}
    if total and training.get("num_epochs") and not training.get("max_steps"):
        return total // training["num_epochs"]
    return None


def nearest_real_distance(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Euclidean distance from each fake feature vector to its nearest real one."""
    out = torch.empty(len(fake))
    for start, squared in squared_distance_chunks(fake.double(), real.double()):
        out[start : start + len(squared)] = squared.min(dim=1).values.sqrt().float()
    return out


class RealSet:
    """The one real image set every run is scored against, with its features cached per extractor."""

    def __init__(self, cfg: Config, limit: int | None) -> None:
        self.data = cfg.data.model_copy(update={"split": cfg.eval.real_split, "max_samples": None})
        self.limit = limit
        self.key = dataset_key(self.data, self.data.split, limit)

    def describe(self) -> str:
        return (f"{self.data.name} at {self.data.image_size} px, split {self.data.split}, "
                f"{f'first {self.limit}' if self.limit else 'all'} images")

    def stats(self, extractor: Any, batch_size: int) -> Any:
        return cached_stats(self.key, lambda: extract_features(dataset_batches(self.data, self.limit, batch_size),
                                                               extractor, batch_size=batch_size),
                            extractor=extractor, keep_features=True)


@dataclass
class Comparison:
    """Every run's comparison, and the conditions they were held to."""

    runs: list[RunComparison]
    conditions: dict[str, Any]
    notes: list[str]

    def rows(self) -> list[dict[str, Any]]:
        return [r.row() for r in self.runs]


def compare_runs(roots: Sequence[str | Path], options: CompareOptions | None = None,
                 labels: Sequence[str] | None = None) -> Comparison:
    """Score and measure `roots` under identical conditions (see the module doc)."""
    from genlab.utils import select_device

    options = options or CompareOptions()
    roots = [Path(r) for r in roots]
    if not roots:
        raise GenlabError("compare needs at least one run directory.")
    check_metrics(options.metrics)
    problems = comparability_problems(roots)
    if problems and not options.force:
        raise GenlabError("compare refuses: the runs were not trained on the same data at the same size, so scores "
                          "against one real set would not be comparable (" + "; ".join(problems) + "). Compare runs "
                          "of one data set and image size, or pass --force to score all against the first run's "
                          "real images anyway.")
    device = select_device(options.device)
    labels = list(labels) if labels else [r.name for r in roots]
    first = load_run(roots[0], _checkpoint_name(roots[0], options.checkpoint), options.device)
    image_metrics = [m for m in options.metrics if m != "lpips"]
    real = RealSet(first.cfg, options.real_samples if options.real_samples is not None else first.cfg.eval.real_samples)
    extractor = extractor_for(first.cfg, options.extractor, device, options.fast, options.download)
    lpips_model = None
    notes = [f"problems ignored with --force: {p}" for p in problems]
    if "lpips" in options.metrics:
        lpips_model = build_lpips(options.lpips_net, options.lpips_weights, download=options.download, device=device,
                                  seed=options.seed)
        notes.append(f"LPIPS diversity: mean distance over all pairs of the first {options.lpips_samples} samples, "
                     f"backbone {lpips_model.backbone}; images under 64 px resized to 64 px, grayscale repeated.")
    want_logits = extractor.has_logits and "is" in image_metrics
    stats = real.stats(extractor, DEFAULT_BATCH_SIZE)
    results = []
    for root, label in zip(roots, labels, strict=True):
        name = _checkpoint_name(root, options.checkpoint)
        loaded = first if root == roots[0] else load_run(root, name, options.device)
        sample_options = SampleOptions(ema=True, sampler=options.sampler, steps=options.steps, progress=False)
        start = time.perf_counter()
        images = generate(loaded.method, options.num_samples, seed=options.seed, batch_size=options.batch_size,
                          options=sample_options)
        sample_seconds = (time.perf_counter() - start) / options.num_samples
        fake = extract_features(images, extractor, want_logits=want_logits)
        with _warnings_as_notes(notes):
            metrics = score_features(fake, stats, image_metrics, seed=options.seed, suffix=extractor.metric_suffix)
        if lpips_model is not None:
            metrics["lpips_diversity"] = lpips_diversity(images[: options.lpips_samples], lpips_model)
        distance = nearest_real_distance(fake.features, stats.features)
        worst = distance.topk(min(options.worst, len(distance))).indices
        summary = read_json(root / "summary.json") or {}
        family = loaded.cfg.model.family
        results.append(RunComparison(
            root=root, label=label, family=family, step=loaded.step, checkpoint=name, metrics=metrics,
            parameters=loaded.method.parameter_counts(), train_seconds=summary.get("train_seconds"),
            sample_seconds_per_image=sample_seconds, grid=images[: options.grid_images], worst=images[worst],
            worst_distance=[float(d) for d in distance[worst]],
            interpolation=interpolation(loaded.method, options.seed) if family in LATENT_FAMILIES else None,
            progression=progression(root)))
        log.info("compared %s: %s", label, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    conditions = {"real": real.describe(), "real_cache_key": real.key, "num_samples": options.num_samples,
                  "noise_seed": options.seed, "metric_seed": options.seed, "extractor": options.extractor,
                  "precision": getattr(extractor, "precision", None), "checkpoint": options.checkpoint,
                  "sampler": options.sampler, "sampling_steps": options.steps, "device": str(device),
                  "batch_size": options.batch_size}
    return Comparison(results, conditions, notes)


@contextmanager
def _warnings_as_notes(notes: list[str]) -> Iterator[None]:
    """Keep warnings raised while scoring (IS without a logit head) as notes of the comparison."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if str(w.message) not in notes:
            notes.append(str(w.message))


# ----------------------------------------------------------------------------------------------- output

def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], first: tuple[str, str] = ("run", "run")) -> str:
    """A Markdown table of comparison rows."""
    columns = [first, ("family", "family"), *compare_columns(rows)]
    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines)


def _show(ax: Any, images: torch.Tensor, nrow: int) -> None:
    from torchvision.utils import make_grid

    grid = make_grid(to_uint8(images).float() / 255, nrow=nrow, padding=1, pad_value=1.0)
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()


def _one_image(ax: Any, image: torch.Tensor, title: str) -> None:
    array = to_uint8(image[None])[0].permute(1, 2, 0).numpy()
    ax.imshow(array[..., 0] if array.shape[-1] == 1 else array, cmap="gray", vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()


def write_figures(comparison: Comparison, out: Path) -> dict[str, Path]:
    """grids.png, progression.png, interpolation.png and worst.png under `out` (those that have content)."""
    runs = comparison.runs
    figures: dict[str, Path] = {}
    fig = new_figure((3.2 * len(runs), 3.6))
    for i, run in enumerate(runs):
        ax = fig.add_subplot(1, len(runs), i + 1)
        _show(ax, run.grid, int(math.ceil(math.sqrt(len(run.grid)))))
        fid = run.metrics.get("fid")
        ax.set_title(f"{run.label}" + (f"\nFID {fid:.1f}" if fid is not None else ""), fontsize=9)
    figures["grids"] = save_figure(fig, out / "grids.png")
    columns = max((len(r.progression) for r in runs), default=0)
    if columns:
        fig = new_figure((2.4 * columns, 2.6 * len(runs)))
        for i, run in enumerate(runs):
            for j, (label, path) in enumerate(run.progression):
                ax = fig.add_subplot(len(runs), columns, i * columns + j + 1)
                ax.imshow(Image.open(path).convert("RGB"), interpolation="nearest")
                ax.set_title(f"{run.label}: {label}", fontsize=7)
                ax.set_axis_off()
        figures["progression"] = save_figure(fig, out / "progression.png")
    latent = [r for r in runs if r.interpolation is not None]
    if latent:
        fig = new_figure((1.2 * INTERPOLATION_STEPS, 1.4 * len(latent)))
        for i, run in enumerate(latent):
            ax = fig.add_subplot(len(latent), 1, i + 1)
            _show(ax, run.interpolation, INTERPOLATION_STEPS)
            ax.set_title(f"{run.label}: slerp between two latent codes", fontsize=8)
        figures["interpolation"] = save_figure(fig, out / "interpolation.png")
    k = max(len(r.worst) for r in runs)
    if k:
        fig = new_figure((1.2 * k, 1.5 * len(runs)))
        for i, run in enumerate(runs):
            for j, (image, dist) in enumerate(zip(run.worst, run.worst_distance, strict=True)):
                _one_image(fig.add_subplot(len(runs), k, i * k + j + 1), image,
                           f"{run.label}\nNN {dist:.1f}" if j == 0 else f"NN {dist:.1f}")
        figures["worst"] = save_figure(fig, out / "worst.png")
    return figures


def write_comparison(comparison: Comparison, out: str | Path) -> Path:
    """compare.json, table.md and the figures under `out`; returns compare.json's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = write_figures(comparison, out)
    record = {"rows": comparison.rows(), "conditions": comparison.conditions, "notes": comparison.notes,
              "figures": {k: p.name for k, p in figures.items()},
              "worst_nn_distance": {r.label: r.worst_distance for r in comparison.runs}}
    (out / "table.md").write_text(markdown_table(comparison.rows()) + "\n", encoding="utf-8")
    path = out / "compare.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
