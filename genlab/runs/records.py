"""Reading what a run wrote: metrics.jsonl records, summary.json, and the run's state from its files alone."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

LOCK_NAME = "run.lock"


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
