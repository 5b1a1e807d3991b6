"""Reading what a run wrote: config.yaml, metrics.jsonl records, summary.json, and its state from its files alone."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import yaml

from genlab.errors import GenlabError

LOCK_NAME = "run.lock"


def read_run_config(root: Path) -> dict[str, Any]:
    """The mapping a run stored in its config.yaml (as written, not validated); a GenlabError saying what to do
    when `root` has none (no run directory) or it cannot be read (a damaged one)."""
    path = Path(root) / "config.yaml"
    if not path.is_file():
        raise GenlabError(f"{root} is not a genlab run directory (it has no config.yaml). Give a folder written by "
                          "`genlab train`, e.g. runs/<name>.")
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        mark = getattr(err, "problem_mark", None)
        why = (f"{err.problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None
               else (str(err).strip().splitlines() or [""])[0])
        raise GenlabError(f"Could not read {path} ({type(err).__name__}: {why}); the run directory is damaged. "
                          "Its checkpoints still hold the config: `genlab train --resume` reads it from there.") from None
    if config is not None and not isinstance(config, dict):
        raise GenlabError(f"{path} holds a {type(config).__name__}, not a config mapping; the run directory is "
                          "damaged. Its checkpoints still hold the config: `genlab train --resume` reads it from there.")
    return config or {}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete records of a metrics.jsonl file (a torn last line, from a kill mid-write, is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's mapping, or None when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_lock(root: Path) -> None:
    """Mark a run as running: run.lock holds this process's host and pid (removed when training stops)."""
    (Path(root) / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))


def mark_crashed(root: Path, error: BaseException) -> None:
    """Training raised: keep the lock, noting the error, so the run reads as crashed even while this process lives."""
    path = Path(root) / LOCK_NAME
    lock = read_json(path) or {}
    path.write_text(json.dumps({**lock, "crashed": f"{type(error).__name__}: {error}"[:500]}))


def remove_lock(root: Path) -> None:
    """The run stopped normally (finished, stopped early or interrupted): it is no longer running."""
    (Path(root) / LOCK_NAME).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_status(root: Path) -> str:
    """running, finished, stopped early, interrupted or crashed, from the run directory's files alone.

    A run.lock whose process is alive (on this host) means running; a lock left behind means the
    process died without stopping (crashed or killed); otherwise summary.json says how it ended.
    """
    root = Path(root)
    lock = read_json(root / LOCK_NAME)
    if lock is not None:
        if lock.get("crashed"):
            return "crashed"
        same_host = lock.get("host") == socket.gethostname()
        if not same_host or _alive(int(lock.get("pid", -1))):
            return "running"
        return "crashed"
    summary = read_json(root / "summary.json")
    if summary is None:
        return "crashed" if (root / "checkpoints" / "last.pt").exists() or (root / "metrics.jsonl").exists() else "new"
    return str(summary.get("status", "finished"))
