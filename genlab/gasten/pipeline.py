"""The two GASTeN steps on top of the one training loop, and the before/after report."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genlab.config import Config, apply_overrides, validate
from genlab.errors import CheckpointError, GenlabError
from genlab.evaluation import RunEvaluator
from genlab.generate import load_run
from genlab.metrics.classifier import CLASSIFIER_METRICS, output_histogram
from genlab.report import ambiguous_grid, plot_output_histograms
from genlab.runs.checkpoint import load_checkpoint
from genlab.runs.rundir import RunDir
from genlab.train.checks import check_config
from genlab.train.loop import EvalCallback, TrainResult, train
from genlab.utils import select_device

log = logging.getLogger("genlab")

#: Groups that step 2 takes from its own config; the rest (model, training, data) come from the step-1 run.
STEP2_GROUPS = ("gasten", "eval", "logging", "checkpoint", "tune")


def step1_config(cfg: Config) -> Config:
    """Step-1 settings: a checkpoint and an evaluation every epoch (unless the config says otherwise)."""
    raw = cfg.to_dict()
    if not raw["checkpoint"]["every_epochs"]:
        raw["checkpoint"]["every_epochs"] = 1
    if raw["eval"]["metrics"] and not raw["eval"]["every_epochs"]:
        raw["eval"]["every_epochs"] = 1
    raw["gasten"]["ambiguity"] = False
    return validate(raw, "step-1 config")


def run_step1(cfg: Config | None, *, preset_name: str | None = None, resume: str | Path | None = None,
              overrides: list[str] | None = None, eval_callbacks: tuple[EvalCallback, ...] = ()) -> TrainResult:
    """Train the step-1 GAN on the class pair, or resume a step-1 run (with `overrides` such as more epochs)."""
    if resume is not None:
        return train(resume=resume, overrides=overrides, eval_callbacks=eval_callbacks)
    return train(step1_config(cfg), preset_name=preset_name, eval_callbacks=eval_callbacks)


def step1_checkpoint(step1_run: str | Path, epoch: int | str = "best") -> Path:
    """The step-1 checkpoint to start from: best (by eval.best_metric; else last), last, or an epoch number."""
    run = RunDir.open(step1_run)
    folder = run.checkpoints
    if epoch == "best":
        return folder / "best.pt" if (folder / "best.pt").is_file() else folder / "last.pt"
    if epoch == "last":
        return folder / "last.pt"
    path = folder / f"epoch_{int(epoch):04d}.pt"
    if not path.is_file():
        have = saved_epochs(step1_run)
        raise CheckpointError(f"{step1_run} has no checkpoint for epoch {epoch}. Saved epochs: "
                              f"{', '.join(map(str, have)) or 'none'} (step 1 keeps one per epoch with "
                              "checkpoint.every_epochs=1); or use best / last.")
    return path


def saved_epochs(step1_run: str | Path) -> list[int]:
    """Epoch numbers with a saved step-1 checkpoint (epoch 0 is the untrained generator, left out)."""
    folder = RunDir.open(step1_run).checkpoints
    found = (re.search(r"epoch_(\d+)\.pt$", p.name) for p in folder.glob("epoch_*.pt"))
    return sorted(int(m.group(1)) for m in found if m and int(m.group(1)) > 0)


def step2_config(cfg: Config, step1_run: str | Path, *, classifier: str | None = None, weight: float | None = None,
                 epoch: int | str | None = None, loss: str | None = None, name: str | None = None,
                 overrides: list[str] | None = None) -> Config:
    """Step-2 config: model/training/data of the step-1 run, GASTeN/eval/logging groups of `cfg`, options on top.

    `overrides` apply to that merge; the options (classifier, weight, ...) win over them. Step 2 runs
    gasten.step2_epochs epochs from the chosen step-1 checkpoint and always scores acd, focd and hubris.
    """
    run = RunDir.open(step1_run)
    stored = load_checkpoint(run.checkpoints / "last.pt")["config"]
    merged = {**stored, **{group: cfg.to_dict()[group] for group in STEP2_GROUPS}, "output_dir": cfg.output_dir,
              "name": None}
    raw = apply_overrides(merged, overrides or [])
    g = raw["gasten"]
    g.update({k: v for k, v in {"classifier": classifier, "weight": weight, "loss": loss,
                                "step1_epoch": epoch}.items() if v is not None})
    if not g["classifier"]:
        raise GenlabError("Step 2 needs a binary classifier: pass --classifier runs/classifiers/<name> (from "
                          "`genlab classifier train`) or set gasten.classifier in the config.")
    g["ambiguity"] = True
    start = step1_checkpoint(step1_run, g["step1_epoch"])
    training = raw["training"]
    training["init_from"] = str(start)
    training["num_epochs"] = g["step2_epochs"]
    training["max_steps"] = None
    ev = raw["eval"]
    ev["metrics"] = list(dict.fromkeys([*ev["metrics"], *CLASSIFIER_METRICS]))
    ev["every_epochs"] = ev["every_epochs"] or 1
    raw["checkpoint"]["every_epochs"] = raw["checkpoint"]["every_epochs"] or 1
    tag = f"{g['loss']}-a{g['weight']:g}-e{g['step1_epoch']}"
    raw["name"] = name or raw["name"] or f"{cfg.name or run.root.name}-step2-{tag}"
    source = f"step-2 config from {step1_run} + {cfg.name or 'config'}"
    step2 = validate(raw, source)
    check_config(step2, source)  # registry names (loss, classifier metrics) are checked here, not by the schema
    return step2


@dataclass
class Comparison:
    """The same noise through two generators: metrics, classifier outputs and images for each."""

    labels: tuple[str, str]
    results: dict[str, dict[str, float]]
    probs: dict[str, torch.Tensor] = field(repr=False)
    images: dict[str, torch.Tensor] = field(repr=False)
    class_names: list[str] | None = None


def compare_generators(cfg: Config, checkpoints: dict[str, Path], device: str = "auto",
                       num_samples: int | None = None) -> Comparison:
    """Evaluate several checkpoints of the same architecture on the same fixed noise with eval.metrics + classifier."""
    torch_device = select_device(device)
    metrics = list(dict.fromkeys([*cfg.eval.metrics, *CLASSIFIER_METRICS]))
    evaluator = RunEvaluator(cfg, torch_device, metrics)
    results, probs, images = {}, {}, {}
    for label, path in checkpoints.items():
        loaded = load_run(Path(path).parent.parent, str(path), device)
        evaluation = evaluator(loaded.method, num_samples=num_samples)
        results[label], probs[label], images[label] = evaluation.results, evaluation.probs, evaluation.images
    labels = tuple(checkpoints)
    names = getattr(evaluator.classifier, "metadata", {}).get("class_names")
    return Comparison((labels[0], labels[-1]), results, probs, images, names)


@dataclass
class Step2Result:
    """A finished step 2: its run, the comparison with its starting point and the files written."""

    train: TrainResult
    comparison: Comparison
    files: dict[str, Path]


def table(comparison: Comparison) -> str:
    """The final before/after table, one metric per row."""
    keys = list(dict.fromkeys(k for values in comparison.results.values() for k in values))
    labels = list(comparison.results)
    width = max(len(k) for k in keys) if keys else 6
    lines = [f"{'metric':<{width}}  " + "  ".join(f"{label:>14}" for label in labels)]
    for key in keys:
        cells = [comparison.results[label].get(key) for label in labels]
        lines.append(f"{key:<{width}}  " + "  ".join(f"{v:>14.5g}" if v is not None else f"{'-':>14}" for v in cells))
    return "\n".join(lines)


def write_report(run_root: Path, cfg: Config, comparison: Comparison) -> dict[str, Path]:
    """gasten_report.json, the before/after output histogram and the most-ambiguous grid in the step-2 run."""
    before, after = comparison.labels
    files = {
        "report": run_root / "gasten_report.json",
        "histogram": run_root / "classifier_histogram.png",
        "ambiguous": run_root / "ambiguous.png",
    }
    plot_output_histograms({label: comparison.probs[label] for label in comparison.results}, files["histogram"],
                           bins=cfg.eval.histogram_bins)
    names = comparison.class_names
    pair = (names[1], names[0]) if names and len(names) == 2 else None  # C gives P(label 1), the first class
    ambiguous_grid(comparison.images[after], comparison.probs[after], files["ambiguous"], n=cfg.gasten.grid_images,
                   class_names=pair)
    payload = {
        "results": comparison.results,
        "histograms": {label: output_histogram(p, cfg.eval.histogram_bins) for label, p in comparison.probs.items()},
        "classifier": cfg.gasten.classifier, "weight": cfg.gasten.weight, "loss": cfg.gasten.loss,
        "start": cfg.training.init_from, "samples": len(comparison.images[after]),
    }
    files["report"].write_text(json.dumps(payload, indent=2))
    return files


def run_step2(cfg: Config | None, *, resume: str | Path | None = None, overrides: list[str] | None = None,
              report: bool = True, eval_callbacks: tuple[EvalCallback, ...] = ()) -> Step2Result | TrainResult:
    """Train step 2 from its config (see `step2_config`), or resume it; then compare with the step-1 start and report."""
    if resume is not None:
        result = train(resume=resume, overrides=overrides, eval_callbacks=eval_callbacks)
    else:
        result = train(cfg, eval_callbacks=eval_callbacks)
    if not report or result.interrupted:
        return result
    run_cfg = validate(load_checkpoint(RunDir.open(result.run_dir).checkpoints / "last.pt")["config"], "step-2 run")
    start = Path(run_cfg.training.init_from)
    comparison = compare_generators(run_cfg, {"step 1": start, "step 2": result.run_dir / "checkpoints" / "last.pt"},
                                    device=run_cfg.device)
    files = write_report(result.run_dir, run_cfg, comparison)
    return Step2Result(result, comparison, files)
