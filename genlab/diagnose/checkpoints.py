"""What `genlab doctor` reads from a run's checkpoints when metrics.jsonl does not say it.

Checkpoints load with `weights_only=True` (`genlab.runs.checkpoint`), on the CPU, and only when a rule needs
them: the sample health (saturation, diversity against real images) of last.pt's generator for runs whose
metrics.jsonl has none (older runs, logging.diagnostics=false); the G/D parameter counts of the networks it
holds for runs that logged neither them nor summary.json; and the steps and scores of best.pt and last.pt for
a FID regression that metrics.jsonl's evaluation records do not show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genlab.data import build_dataset, to_float
from genlab.data.base import Uint8View
from genlab.diagnose.signals import sample_health
from genlab.errors import GenlabError
from genlab.generate import generate, method_from_checkpoint
from genlab.runs.checkpoint import load_checkpoint

#: Generated and real images compared when the health comes from last.pt (the live check uses the grid's count).
HEALTH_SAMPLES = 64


@dataclass
class CheckpointFacts:
    """What last.pt (and best.pt) say about a run; None where they could not tell, with the reason in `notes`."""

    step: int | None = None
    #: sample_health() of last.pt's generator (EMA weights when kept) against the run's first real images.
    health: dict[str, float] | None = None
    parameters: tuple[float, float] | None = None
    #: eval.best_metric, its best score (kept by last.pt) at best.pt's step, and its score at the last evaluation.
    metric: str | None = None
    best: tuple[int, float] | None = None
    last_score: float | None = None
    notes: list[str] = field(default_factory=list)


def _real_images(cfg: Any, n: int) -> torch.Tensor:
    """The run's first `n` real images (the training split, no augmentation), as floats in [-1, 1]."""
    dataset = Uint8View(build_dataset(cfg.data))
    return to_float(torch.stack([dataset[i][0] for i in range(min(n, len(dataset)))]))


def _score(results: Any, metric: str) -> float | None:
    """`metric`'s value in an evaluation's results (its key may carry the extractor's suffix: fid_clip)."""
    if not isinstance(results, dict):
        return None
    values = [v for k, v in results.items() if (k == metric or k.startswith(f"{metric}_"))
              and isinstance(v, (int, float)) and math.isfinite(v)]
    return float(values[0]) if values else None


def read_checkpoints(root: Path, want_health: bool, samples: int = HEALTH_SAMPLES) -> CheckpointFacts:
    """Load root/checkpoints/last.pt (and best.pt when present) and gather what the doctor's rules may need."""
    facts = CheckpointFacts()
    last = root / "checkpoints" / "last.pt"
    if not last.is_file():
        facts.notes.append("no checkpoints/last.pt to read what metrics.jsonl lacks.")
        return facts
    try:
        state = load_checkpoint(last)
        loaded = method_from_checkpoint(state, str(root), torch.device("cpu"))
    except (GenlabError, KeyError, RuntimeError) as err:
        facts.notes.append(f"could not rebuild the networks from checkpoints/last.pt ({type(err).__name__}: {err}).")
        return facts
    facts.step = loaded.step
    counts = loaded.method.parameter_counts()
    if counts.get("generator") and counts.get("discriminator"):
        facts.parameters = (float(counts["generator"]), float(counts["discriminator"]))
    evaluation = (state.get("hooks") or {}).get("evaluation") or {}
    best_path = root / "checkpoints" / "best.pt"
    if isinstance(evaluation.get("best"), (int, float)) and best_path.is_file():
        try:
            best_step = int(load_checkpoint(best_path)["step"])
        except (GenlabError, KeyError) as err:
            facts.notes.append(f"could not read checkpoints/best.pt ({type(err).__name__}: {err}).")
        else:
            facts.metric = loaded.cfg.eval.best_metric
            facts.best = (best_step, float(evaluation["best"]))
            facts.last_score = _score(evaluation.get("last"), facts.metric)
    if want_health:
        try:
            real = _real_images(loaded.cfg, samples)
        except (GenlabError, OSError) as err:
            facts.notes.append(f"no real images to hold last.pt's samples to ({err}).")
            return facts
        try:
            with torch.no_grad():
                images = generate(loaded.method, samples, seed=0)
        except (GenlabError, RuntimeError) as err:  # e.g. out of memory: the doctor (and the report) go on
            facts.notes.append(f"could not sample last.pt's generator ({type(err).__name__}: {err}).")
            return facts
        facts.health = sample_health(images, real)
    return facts
