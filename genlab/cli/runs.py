"""`genlab runs` and `genlab report`: what is in a folder of runs, and the HTML report of some of them.

Both read run directories only (config.yaml, summary.json, metrics.jsonl, run.lock, samples/); neither
imports torch-heavy modules at start-up beyond what the report's plots need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genlab.errors import GenlabError

#: Files that make a folder a study (genlab study), a search (genlab gasten tune-*) or a comparison (genlab compare).
STUDY_FILES = ("study.json", "trials.csv", "compare.json")


def find_runs(folder: Path) -> list[Path]:
    """Run directories (folders holding config.yaml) under `folder`, itself included, sorted by name."""
    if (folder / "config.yaml").is_file():
        return [folder]
    return sorted(p.parent for p in folder.glob("*/config.yaml")) + sorted(
        p.parent for p in folder.glob("*/*/config.yaml"))


def runs_table(folder: Path) -> list[dict[str, object]]:
    """One row per run: name, status, step, best FID, family, started."""
    from genlab.runs.records import read_json, read_jsonl, run_status

    rows = []
    for root in find_runs(folder):
        summary = read_json(root / "summary.json") or {}
        env = read_json(root / "env.json") or {}
        records = read_jsonl(root / "metrics.jsonl")
        fids = [v for r in records if r.get("evaluation") for k, v in r.items()
                if k.startswith("fid") and isinstance(v, (int, float))]
        step = summary.get("steps") or max((r.get("step", 0) for r in records), default=0)
        family = summary.get("family") or _family(root)
        rows.append({"run": str(root.relative_to(folder)) if root != folder else root.name, "status": run_status(root),
                     "step": step, "best FID": min(fids) if fids else None, "family": family,
                     "started": env.get("started")})
    return rows


def _family(root: Path) -> str | None:
    from genlab.runs.records import read_run_config

    try:
        return (read_run_config(root).get("model") or {}).get("family")
    except (GenlabError, AttributeError):
        return None


def register(app: typer.Typer) -> None:
    """Add `runs` and `report` to the main app."""

    @app.command("runs")
    def runs(folder: Path = typer.Argument(Path("runs"), help="A folder of run directories (default: runs).")) -> None:
        """List runs: status (running, finished, stopped early, interrupted, crashed), step, best FID, family."""
        if not folder.is_dir():
            raise GenlabError(f"{folder} is not a folder. Give the folder your runs are in (output_dir, e.g. runs).")
        rows = runs_table(folder)
        if not rows:
            typer.echo(f"No runs in {folder} (a run directory holds config.yaml).")
            return
        header = list(rows[0])
        cells = [[("—" if r[h] is None else f"{r[h]:.4g}" if isinstance(r[h], float) else str(r[h])) for h in header]
                 for r in rows]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
        typer.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for row in cells:
            typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))

    @app.command("report")
    def report(
        runs: list[Path] = typer.Argument(..., help="Run directories, or folders of them (a study folder adds its tables)."),
        out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write."),
        title: Optional[str] = typer.Option(None, "--title", help="Page title (default: genlab report)."),
    ) -> None:
        """Write one self-contained HTML report (images and plots inlined, no network) for runs."""
        from genlab.report.html import write_report

        roots = [root for path in runs for root in find_runs(path)] if all(p.is_dir() for p in runs) else []
        if not roots:
            missing = [str(p) for p in runs if not p.is_dir()]
            raise GenlabError(f"No run directories in {', '.join(missing or map(str, runs))}: give folders written "
                              "by `genlab train` (they hold config.yaml), e.g. runs/<name>.")
        studies = [p for p in runs if p.is_dir() and any((p / f).is_file() for f in STUDY_FILES)]
        path = write_report(roots, out, title or "genlab report", study=studies[0] if studies else None)
        typer.echo(f"Wrote {path} ({len(roots)} run{'s' if len(roots) != 1 else ''}).")
