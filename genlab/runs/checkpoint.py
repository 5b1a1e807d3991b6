"""Checkpoints that survive crashes: atomic writes, numbered snapshots, `weights_only` loading."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from genlab.errors import CheckpointError

CHECKPOINT_FORMAT = 1
_SNAPSHOT = re.compile(r"step_(\d+)\.pt$")


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename over `path`.

    A crash or kill at any moment leaves either the old file or the new one, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a genlab checkpoint safely (`weights_only=True`), explaining what went wrong if it can't."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Check the run directory; `checkpoints/last.pt` "
                              "is written every checkpoint.every_steps steps and when training stops.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for torn or foreign files
        raise CheckpointError(f"Checkpoint {path} cannot be read ({type(err).__name__}: {err}). If it was being "
                              "written when the machine died, use a numbered snapshot in the same folder.") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a genlab checkpoint (format {CHECKPOINT_FORMAT}).")
    return state


class CheckpointManager:
    """Writes `last.pt` atomically and keeps the newest `keep` numbered snapshots (-1 = all)."""

    def __init__(self, folder: Path, keep: int = 2) -> None:
        self.folder = Path(folder)
        self.keep = keep
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def last(self) -> Path:
        """Path of the newest checkpoint."""
        return self.folder / "last.pt"

    def snapshots(self) -> list[Path]:
        """Numbered snapshots, oldest first."""
        found = [(int(m.group(1)), p) for p in self.folder.glob("step_*.pt") if (m := _SNAPSHOT.search(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Write last.pt (and a numbered snapshot sharing its bytes), then prune old snapshots."""
        atomic_save({"format": CHECKPOINT_FORMAT, **state}, self.last)
        if self.keep != 0:
            snapshot = self.folder / f"step_{step:08d}.pt"
            snapshot.unlink(missing_ok=True)
            try:
                os.link(self.last, snapshot)
            except OSError:
                atomic_save({"format": CHECKPOINT_FORMAT, **state}, snapshot)
            if self.keep > 0:
                for old in self.snapshots()[: -self.keep]:
                    old.unlink(missing_ok=True)
        return self.last

    def save_as(self, state: dict[str, Any], name: str) -> Path:
        """Write a named checkpoint such as best.pt atomically."""
        path = self.folder / name
        atomic_save({"format": CHECKPOINT_FORMAT, **state}, path)
        return path
