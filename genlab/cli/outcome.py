"""How a training run ended, in the words every command prints."""

from __future__ import annotations

from typing import Any


def ended(result: Any) -> str:
    """finished, stopped early (and why), or interrupted, for a `TrainResult`."""
    if getattr(result, "early_stopped", False):
        return f"stopped early ({result.stop_reason})"
    return "interrupted" if result.interrupted else "finished"


def refuse_with_resume(command: str, given: dict[str, object]) -> None:
    """A GenlabError naming the options that --resume would ignore (the run keeps its own settings)."""
    from genlab.errors import GenlabError

    used = [flag for flag, value in given.items() if value is not None]
    if used:
        raise GenlabError(f"--resume continues a run with its own saved config; leave out {', '.join(used)} "
                          f"(overrides such as training.num_epochs=20 are still allowed): genlab {command} "
                          "--resume <run directory> [overrides].")
