"""Checkpoints that survive crashes: atomic writes, numbered snapshots, `weights_only` loading."""

from __future__ import annotations

import errno
import logging
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from genlab.errors import CheckpointError

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
_SNAPSHOT = re.compile(r"step_(\d+)\.pt$")


class _RecordingWriter:
    """A binary file that remembers its write error: torch.save turns ENOSPC into a bare RuntimeError."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        """Write `data`, remembering an OSError before re-raising it."""
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        """Flush the underlying file."""
        self.file.flush()


def disk_problem(path: Path, err: OSError) -> tuple[str, str]:
    """(why writing `path` failed, what to do) for a full, read-only or unwritable disk, or another OSError."""
    code = err.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return ("the disk is full (or over quota)",
                "Free space on that disk (old runs, or fewer numbered snapshots with checkpoint.keep) or move the "
                "run directory to a larger disk; a run with a checkpoint continues with `genlab train --resume <run "
                "directory>`")
    if code == errno.EROFS:
        return ("the file system is read-only",
                "Remount it read-write, or use a writable output_dir (copy a run there to resume it)")
    if code in (errno.EACCES, errno.EPERM):
        return ("permission denied",
                f"Make {path.parent} writable for this user (chmod/chown), or use a writable output_dir (copy a run "
                "there to resume it)")
    return (" ".join(f"{type(err).__name__}: {err.strerror or err}".split()),
            "Check the disk and the folder's permissions, then try again")


def write_failure(path: Path, err: OSError, what: str = "checkpoint") -> CheckpointError:
    """A CheckpointError naming `path`, why it could not be written (disk full, read-only, ...) and what to do."""
    why, todo = disk_problem(path, err)
    return CheckpointError(f"Could not write {what} {path}: {why}. Any earlier {path.name} is left as it was and "
                           f"still loads. {todo}.")


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename over `path`.

    A crash or kill at any moment leaves either the old file or the new one, never a torn file. A disk
    that is full, read-only or not writable raises CheckpointError (see `write_failure`), `path` untouched.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            out = _RecordingWriter(f)
            try:
                torch.save(obj, out)
            except RuntimeError:
                if out.error is None:
                    raise
                raise out.error from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            try:
                Path(tmp).unlink(missing_ok=True)
            except OSError:
                pass
        if isinstance(err, OSError):
            raise write_failure(path, err) from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


_FORBIDDEN = re.compile(r"GLOBAL (\S+) was not an allowed global|Unsupported operand (\d+)|Unsupported class (\S+)")


def safe_torch_load(path: Path, map_location: str | torch.device = "cpu", what: str = "File") -> Any:
    """`torch.load(weights_only=True)`: tensors and plain data only, never code; CheckpointError if it can't.

    A file whose unpickling would import or call anything (a pickle with `__reduce__`, a foreign class) is
    refused with a message saying so, instead of torch's advice to retry with `weights_only=False`.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" not in str(err).lower():
            raise CheckpointError(f"{what} {path} cannot be read (UnpicklingError: {_one_line(err)}). It may be "
                                  "truncated; use a numbered snapshot in the same folder.") from None
        found = _FORBIDDEN.search(str(err))
        named = next((g for g in found.groups() if g), "") if found else ""
        detail = (f" (pickle opcode {named})" if named.isdigit() else f" (it names {named})") if named else ""
        raise CheckpointError(
            f"{what} {path} cannot be read safely: it holds pickled Python objects beyond tensors and plain data"
            f"{detail}, and unpickling them could run arbitrary code, so genlab refuses to load it. Use a file "
            "written by genlab that comes from a source you trust; genlab never loads checkpoints with "
            "weights_only=False.") from None
    except Exception as err:  # torch raises several types for torn or foreign files
        raise CheckpointError(f"{what} {path} cannot be read ({type(err).__name__}: {_one_line(err)}). If it was "
                              "being written when the machine died, use a numbered snapshot in the same "
                              "folder.") from None


def _one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, at most `limit` characters."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a genlab checkpoint safely (`weights_only=True`), explaining what went wrong if it can't."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Check the run directory; `checkpoints/last.pt` "
                              "is written every checkpoint.every_steps steps and when training stops.")
    state = safe_torch_load(path, map_location, "Checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a genlab checkpoint (format {CHECKPOINT_FORMAT}).")
    return state


class CheckpointManager:
    """Writes `last.pt` atomically and keeps the newest `keep` numbered snapshots (-1 = all)."""

    def __init__(self, folder: Path, keep: int = 2) -> None:
        self.folder = Path(folder)
        self.keep = keep
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise write_failure(self.folder, err, "the checkpoint folder") from None

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
            try:
                snapshot.unlink(missing_ok=True)
                os.link(self.last, snapshot)
            except OSError:
                atomic_save({"format": CHECKPOINT_FORMAT, **state}, snapshot)
            if self.keep > 0:
                for old in self.snapshots()[: -self.keep]:
                    try:
                        old.unlink(missing_ok=True)
                    except OSError as err:  # last.pt is safe; an extra old snapshot only costs space
                        log.warning("Could not remove the old snapshot %s (%s); delete it by hand.", old, err.strerror)
        return self.last

    def save_as(self, state: dict[str, Any], name: str) -> Path:
        """Write a named checkpoint such as best.pt atomically."""
        path = self.folder / name
        atomic_save({"format": CHECKPOINT_FORMAT, **state}, path)
        return path
