"""`genlab study` and `genlab compare`: a sequence of runs with its tables, and runs side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

STUDY_HELP = """A study file names a base preset, variants (name, preset, overrides, because, phase), optional
phases and what to compare at the end; see studies/*.yaml for the shipped ones (seed 003 phases 1-5
and fashion_mnist_phase5_mini, a CPU miniature of phase 5)."""


def register(app: typer.Typer) -> None:
    """Add `study` and `compare` to the main app."""

    @app.command("study", epilog=STUDY_HELP)
    def study(
        source: str = typer.Argument(..., help="Study YAML file or the name of a shipped study."),
        overrides: Optional[list[str]] = typer.Argument(None, help="Overrides applied to every variant."),
        only: Optional[list[str]] = typer.Option(None, "--only", help="Run only this variant (repeatable)."),
        seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Runs per variant (data.seed, +1, ...): "
                                            "tables show mean ± std. Default: the study's seeds."),
        out: Optional[Path] = typer.Option(None, "--out", help="Parent folder (default: the study's output_dir, "
                                           "study); runs go to <out>/<study name>/<variant>."),
        plan_only: bool = typer.Option(False, "--plan", help="Check every variant and print the plan; train nothing."),
        compare: bool = typer.Option(True, "--compare/--no-compare", help="Run the study's comparison at the end."),
    ) -> None:
        """Run a study: every variant's config is checked first; finished runs are skipped, interrupted ones resumed."""
        from genlab.runs.records import run_status
        from genlab.study import load_study, plan_study, run_study, study_root

        spec, path = load_study(source)
        plan = plan_study(spec, only=only or (), seeds=seeds, overrides=overrides or [], output_dir=out)
        typer.echo(f"Study {spec.name} ({path}): {len(plan)} run{'s' if len(plan) != 1 else ''} in "
                   f"{study_root(spec, out)}")
        if plan_only:
            for run in plan:
                state = run_status(run.root) if (run.root / "config.yaml").is_file() else "to train"
                typer.echo(f"  {run.root.name:<28} {run.preset:<34} {state}  {' '.join(run.variant.overrides)}")
            return
        outcome = run_study(spec, plan, output_dir=out, echo=typer.echo, compare=compare and not only)
        if outcome.interrupted:
            raise typer.Exit(130)
        typer.echo(f"Trained {len(outcome.trained)}, resumed {len(outcome.resumed)}, skipped {len(outcome.skipped)}.")
        typer.echo(f"Tables: {outcome.root / 'tables.md'}   Report: {outcome.report}")

    @app.command("compare")
    def compare(
        runs: list[Path] = typer.Argument(..., help="Run directories to compare (two or more, or one)."),
        out: Path = typer.Option(Path("compare"), "--out", help="Folder for compare.json, table.md, figures and "
                                 "report.html."),
        metrics: str = typer.Option("fid,kid,is,prdc,lpips", "--metrics",
                                    help="Comma list: fid, kid, is (needs logit weights), prdc, lpips."),
        n: int = typer.Option(1000, "--n", min=2, help="Samples per run, all from the same noise seed."),
        seed: int = typer.Option(0, "--seed", help="Noise and metric seed."),
        checkpoint: str = typer.Option("best", "--checkpoint", help="best (falls back to last), last, step_XXXXXXXX."),
        real_samples: Optional[int] = typer.Option(None, "--real-samples", min=2,
                                                   help="Real images (default: the first run's eval.real_samples)."),
        lpips_weights: Optional[str] = typer.Option(
            None, "--lpips-weights", help="LPIPS backbone weights (torchvision AlexNet .pth); default: torchvision's "
            "cache. `random`: a seeded random backbone, for tests only (not LPIPS)."),
        lpips_samples: int = typer.Option(100, "--lpips-samples", min=2, help="Samples for LPIPS diversity."),
        sampler: Optional[str] = typer.Option(None, "--sampler", help="Diffusion sampler for diffusion runs."),
        steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Diffusion sampling steps."),
        fast: bool = typer.Option(False, "--fast", help="Reduced-precision Inception features (int8 on CPU)."),
        download: bool = typer.Option(False, "--download", help="Allow downloading missing weights."),
        force: bool = typer.Option(False, "--force", help="Compare runs of different data sets or image sizes."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps."),
    ) -> None:
        """Compare runs under identical conditions: one table (FID, KID, IS, PR/DC, LPIPS diversity, parameters,
        training and sampling time) and figures (grids, progression, interpolation, worst samples)."""
        from genlab.compare import CompareOptions, compare_runs, markdown_table, write_comparison
        from genlab.report.html import write_report

        names = tuple(m.strip() for m in metrics.split(",") if m.strip())
        options = CompareOptions(metrics=names, num_samples=n, seed=seed, checkpoint=checkpoint,
                                 real_samples=real_samples, lpips_weights=lpips_weights, lpips_samples=lpips_samples,
                                 sampler=sampler, steps=steps, fast=fast, download=download, force=force, device=device)
        comparison = compare_runs(runs, options)
        path = write_comparison(comparison, out)
        report = write_report(runs, out / "report.html", title="genlab compare", study=out)
        typer.echo(f"Real set: {comparison.conditions['real']}; {n} samples per run, seed {seed}.")
        typer.echo(markdown_table(comparison.rows()))
        for note in comparison.notes:
            typer.echo(f"Note: {note}")
        typer.echo(f"Wrote {path}, {out / 'table.md'}, figures and {report}.")
