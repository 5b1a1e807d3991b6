"""`genlab doctor [RUN]`: ranked findings about a run with the overrides to try, or the environment's state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add `doctor` to the main app."""

    @app.command("doctor")
    def doctor(
        run: Optional[Path] = typer.Argument(None, help="A run directory, e.g. runs/<name> (none: check the environment)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON for machines instead of text."),
        output_dir: Path = typer.Option(Path("runs"), "--output-dir", help="Without RUN: where runs would be written."),
        checkpoints: bool = typer.Option(True, "--checkpoints/--no-checkpoints",
                                         help="Read checkpoints/last.pt and best.pt for what metrics.jsonl lacks "
                                              "(sample health, parameter counts, FID behind best.pt)."),
    ) -> None:
        """Diagnose a run: saturation, D dominance, collapse, divergence... each with its numbers, cause and fix.

        Without a run, check the environment: device, data sets found offline, FID weights, disk space
        and write permission where runs go.
        """
        if run is None:
            from genlab.diagnose.environment import check_environment, checks_to_dicts, render_checks

            checks = check_environment(output_dir)
            typer.echo(json.dumps(checks_to_dicts(checks), indent=2) if as_json else render_checks(checks))
            return
        from genlab.diagnose.doctor import diagnose_run, to_json

        diagnosis = diagnose_run(run, checkpoints=checkpoints)
        typer.echo(to_json(diagnosis) if as_json else diagnosis.render())
