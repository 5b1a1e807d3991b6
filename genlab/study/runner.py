"""Running a study: plan every run first, then train, skip or resume each in order, then tabulate.

`plan_study` resolves and checks every variant's config before anything trains, so a typo in the
last variant fails in seconds, naming the variant. `run_study` walks the plan: a finished (or early
stopped) run is skipped, a run with a checkpoint is resumed exactly (the loop's bit-exact resume), a
fresh one is trained. Tables come from the run directories alone (`study_tables`), so a study
interrupted and re-run ends with the same tables as one that ran straight through.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.compare import CompareOptions, compare_runs, write_comparison
from genlab.config import Config, validate
from genlab.diagnose.doctor import diagnose_run
from genlab.errors import GenlabError
from genlab.report.html import flatten, mean_std, write_report
from genlab.runs.records import read_json, read_jsonl, read_run_config, run_status
from genlab.study.spec import Study, Variant
from genlab.train import load_experiment, train
from genlab.train.hooks import Hook

log = logging.getLogger("genlab")

DONE = ("finished", "stopped early")
#: Keys that may differ between the study file's config and a run's stored one without making it stale (output_dir:
#: the same folder written relative or absolute; reuse_cpu_memory changes how memory is allocated, not a number).
VOLATILE_KEYS = ("device", "logging.progress", "output_dir", "training.reuse_cpu_memory")


@dataclass
class PlannedRun:
    """One run of a study: which variant, which seed, its config and its directory."""

    variant: Variant
    seed_index: int
    cfg: Config
    preset: str

    @property
    def root(self) -> Path:
        return Path(self.cfg.output_dir) / str(self.cfg.name)


def study_root(study: Study, output_dir: str | Path | None = None) -> Path:
    """study/<name>/ (or <output_dir>/<name>/)."""
    return Path(output_dir or study.output_dir) / study.name


def run_name(variant: Variant, seed_index: int) -> str:
    """The variant's folder for its first seed; `<variant>-seed<k>` for the others (so more seeds reuse it)."""
    return variant.name if seed_index == 0 else f"{variant.name}-seed{seed_index}"


def plan_study(study: Study, *, only: Sequence[str] = (), seeds: int | None = None,
               overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> list[PlannedRun]:
    """Every run the study asks for, each config resolved and checked (a ConfigError names the variant)."""
    for name in only:
        study.variant(name)  # unknown --only names fail here, with the nearest variant
    seeds = seeds or study.seeds
    root = study_root(study, output_dir)
    plan = []
    for variant in study.variants:
        preset = variant.preset or str(study.base)
        base = [*study.overrides, *variant.overrides, *overrides]
        try:
            first = load_experiment(preset, [*base, f"name={variant.name}", f"output_dir={root}"])
        except GenlabError as err:
            raise GenlabError(f"Study {study.name}: variant {variant.name!r} (preset {preset}) cannot run, so "
                              f"nothing was started. {err}") from None
        for k in range(seeds):
            cfg = first if k == 0 else load_experiment(preset, [*base, f"name={run_name(variant, k)}",
                                                                f"output_dir={root}",
                                                                f"data.seed={first.data.seed + k}"])
            if not only or variant.name in only:
                plan.append(PlannedRun(variant, k, cfg, preset))
    return plan


def _differences(wanted: Config, stored: Config) -> list[str]:
    a, b = flatten(wanted.to_dict()), flatten(stored.to_dict())
    return [f"{k}: {b.get(k)!r} -> {a.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k not in VOLATILE_KEYS]


def _check_unchanged(run: PlannedRun) -> None:
    """A run made from an older version of the study file would be silently stale: refuse, saying how to proceed."""
    stored = validate(read_run_config(run.root), str(run.root / "config.yaml"))
    changed = _differences(run.cfg, stored)
    if changed:
        raise GenlabError(f"{run.root} was trained with another config than variant {run.variant.name!r} now gives "
                          f"({'; '.join(changed[:6])}{' ...' if len(changed) > 6 else ''}). Delete that run directory "
                          "to train the variant again, or give the changed variant a new name.")


@dataclass
class StudyOutcome:
    """What `run_study` did and where it wrote."""

    root: Path
    trained: list[str]
    resumed: list[str]
    skipped: list[str]
    interrupted: bool = False
    tables: Path | None = None
    report: Path | None = None


def run_study(study: Study, plan: Sequence[PlannedRun], *, output_dir: str | Path | None = None,
              hooks: Sequence[Hook] = (), echo: Callable[[str], None] = print,
              compare: bool = True) -> StudyOutcome:
    """Train, resume or skip each planned run in order, then write tables, the comparison and the report."""
    root = study_root(study, output_dir)
    root.mkdir(parents=True, exist_ok=True)
    outcome = StudyOutcome(root, [], [], [])
    for i, run in enumerate(plan, 1):
        label = f"[{i}/{len(plan)}] {run.root.name}"
        status = run_status(run.root) if (run.root / "config.yaml").is_file() else "absent"
        if status == "running":
            raise GenlabError(f"{run.root} is being trained by another process (its run.lock is live); wait for it "
                              "or stop it before running the study.")
        if status in DONE:
            _check_unchanged(run)
            echo(f"{label}: {status}, skipped.")
            outcome.skipped.append(run.root.name)
            continue
        if (run.root / "checkpoints" / "last.pt").is_file():
            _check_unchanged(run)
            echo(f"{label}: {status}; resuming from its last checkpoint.")
            result = train(resume=run.root, hooks=hooks)
            outcome.resumed.append(run.root.name)
        else:
            if run.root.exists():  # started but never checkpointed: nothing in it can be resumed
                echo(f"{label}: started before but has no checkpoint; training it from the start.")
                shutil.rmtree(run.root)
            echo(f"{label}: training ({run.preset}{' + ' + ' '.join(run.variant.overrides) if run.variant.overrides else ''}).")
            result = train(run.cfg, preset_name=run.preset, hooks=hooks)
            outcome.trained.append(run.root.name)
        if result.interrupted:
            outcome.interrupted = True
            echo(f"Study stopped during {run.root.name}; run the same command again to resume it (finished variants "
                 "are skipped).")
            return outcome
    if compare and study.compare is not None:
        compare_study(study, root, output_dir, echo)
    outcome.tables = write_tables(study, root, output_dir)
    outcome.report = write_report(sorted(p.parent for p in root.glob("*/config.yaml")), root / "report.html",
                                  title=f"genlab study {study.name}", study=root)
    return outcome


# ------------------------------------------------------------------------------------------------- tables

def _final_metric(summary: dict[str, Any]) -> tuple[str | None, float | None]:
    """The run's watched metric (eval.best_metric, e.g. fid) at its last evaluation."""
    final = summary.get("final_metrics") or {}
    key = summary.get("best_metric")
    if key not in final:
        key = next((k for k in final if k.startswith("fid")), None)
    return key, (float(final[key]) if key is not None and isinstance(final.get(key), (int, float)) else None)


def _statistics(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


def _finding(root: Path) -> str:
    """Doctor's first finding, or that it found none."""
    if not read_jsonl(root / "metrics.jsonl"):
        return "—"
    try:
        diagnosis = diagnose_run(root, checkpoints=False)
    except GenlabError:
        return "—"
    if diagnosis.healthy:
        return "none found (doctor: looks healthy)"
    first = diagnosis.findings[0]
    return f"{first.name}: {first.symptom}"


def variant_rows(study: Study, root: Path) -> list[dict[str, Any]]:
    """One row per variant from its run directories (every seed found): final metric mean ± std, time, finding,
    and its FID in the study's comparison (compare/compare.json) when it was compared."""
    compared = {r.get("run"): r for r in (read_json(root / "compare" / "compare.json") or {}).get("rows", [])}
    predecessors = [study.predecessor(index) for index in range(len(study.variants))]
    rows = []
    for variant in study.variants:
        runs = [root / variant.name, *sorted(root.glob(f"{variant.name}-seed*"))]
        runs = [r for r in runs if (r / "config.yaml").is_file()]
        summaries = [(r, read_json(r / "summary.json") or {}) for r in runs]
        done = [(r, s) for r, s in summaries if s.get("status") in DONE]
        metric = next((k for _, s in done if (k := _final_metric(s)[0])), None)
        values = [v for _, s in done if (v := _final_metric(s)[1]) is not None]
        best = [float(s["best"]) for _, s in done if isinstance(s.get("best"), (int, float))]
        answers = [v.name for v, before in zip(study.variants, predecessors, strict=True) if before == variant.name]
        rows.append({
            "variant": variant.name, "phase": variant.phase, "because": variant.because,
            "runs": len(runs), "finished": len(done), "metric": metric, "final": _statistics(values),
            "best": _statistics(best), "steps": done[0][1].get("steps") if done else None,
            "train_seconds": _statistics([float(s["train_seconds"]) for _, s in done if s.get("train_seconds")]),
            "observed": _finding(runs[0]) if runs else "not run yet",
            "motivates": ", ".join(answers) or None,
            "compared_fid": compared.get(variant.name, {}).get("fid"),
        })
    return rows


def markdown_tables(study: Study, rows: Sequence[dict[str, Any]]) -> str:
    """One Markdown table per phase (rows without a phase under "Variants")."""
    phases: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        phases.setdefault(row["phase"], []).append(row)
    out = []
    for phase, phase_rows in phases.items():
        title = f"Phase {phase}" + (f" — {study.phases[phase]}" if phase in study.phases else "") if phase else "Variants"
        metric = next((r["metric"] for r in phase_rows if r["metric"]), "metric")
        out += [f"### {title}", "",
                f"| variant | because | {metric} (final) ↓ | best {metric} | FID (compare) ↓ | runs | train s "
                "| main observed failure | motivates |", "|---|---|---|---|---|---|---|---|---|"]
        for r in phase_rows:
            fid = r.get("compared_fid")
            cells = [r["variant"], r["because"] or "—", mean_std(r["final"]), mean_std(r["best"]),
                     "—" if fid is None else f"{fid:.4g}", f"{r['finished']}/{r['runs']}",
                     mean_std(r["train_seconds"], 3), r["observed"], r["motivates"] or "—"]
            out.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        out.append("")
    return "\n".join(out)


def study_tables(study: Study, root: Path) -> dict[str, Any]:
    """The study's record: its description, phases and one row per variant."""
    return {"study": study.name, "description": study.description, "base": study.base,
            "overrides": study.overrides, "phases": study.phases, "rows": variant_rows(study, root)}


def write_tables(study: Study, root: Path, output_dir: str | Path | None = None) -> Path:
    """study.json and tables.md under the study's folder; returns study.json's path."""
    record = study_tables(study, root)
    (root / "tables.md").write_text(f"## Study {study.name}\n\n{study.description}\n\n"
                                    + markdown_tables(study, record["rows"]), encoding="utf-8")
    path = root / "study.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def compare_study(study: Study, root: Path, output_dir: str | Path | None, echo: Callable[[str], None]) -> Path | None:
    """Compare the study's chosen variants (their first seed) into study/<name>/compare/."""
    spec = study.compare
    assert spec is not None
    names = spec.variants or [v.name for v in study.variants]
    roots = [root / n for n in names if (root / n / "summary.json").is_file()]
    missing = [n for n in names if not (root / n / "summary.json").is_file()]
    if missing:
        echo(f"Comparison skipped: {', '.join(missing)} not finished (run the whole study, without --only).")
        return None
    options = CompareOptions(metrics=tuple(spec.metrics), num_samples=spec.num_samples, seed=spec.seed,
                             checkpoint=spec.checkpoint, real_samples=spec.real_samples,
                             lpips_samples=spec.lpips_samples, lpips_weights=spec.lpips_weights,
                             sampler=spec.sampler, steps=spec.steps, fast=spec.fast)
    echo(f"Comparing {', '.join(names)} under identical conditions ({spec.num_samples} samples each).")
    path = write_comparison(compare_runs(roots, options), root / "compare")
    echo(f"Comparison: {path.parent / 'table.md'}")
    return path
