"""Faults: SIGKILL at random moments, a full disk, a read-only run directory.

The disk tests use a real small tmpfs (mounted when running as root, as CI does) and, where mounting is
not possible, simulate the failing write by monkeypatching; as root, chmod does not stop writes, so a
read-only file system (a tmpfs remounted `ro`) stands for the read-only directory there.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from genlab.errors import CheckpointError
from genlab.runs import checkpoint as checkpoint_module
from genlab.runs.checkpoint import CheckpointManager, load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.name=synthetic", "data.image_size=16", "data.num_samples=32", "training.batch_size=8",
        "model.latent_dim=8", "model.generator_base_channels=8", "model.discriminator_base_channels=8",
        "logging.progress=false", "logging.tensorboard=false", "device=cpu", "logging.sample_every=100",
        "logging.num_sample_images=4", "checkpoint.every_steps=3", "training.max_steps=6"]


def _load_benchmark():
    """benchmarks/kill_resume.py as a module (the test runs its short version)."""
    spec = importlib.util.spec_from_file_location("kill_resume", ROOT / "benchmarks" / "kill_resume.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kill_resume", module)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules["kill_resume"])
    return sys.modules["kill_resume"]


@pytest.mark.slow
def test_sigkill_three_times_then_resume_matches_an_uninterrupted_run(tmp_path):
    """3 seeded SIGKILLs of `genlab train`, each followed by --resume: same weights, same metrics.jsonl lines."""
    report = _load_benchmark().kill_and_resume(tmp_path, kills=3, seed=3, timeout=600)
    assert report.kills == 3 and report.resumes == 3, report.summary()
    assert report.corrupt_checkpoints == [], report.summary()
    assert report.finished_step == report.total_steps and report.metrics_lines >= 10, report.summary()
    assert report.metrics_differences == [] and report.weight_differences == [], report.summary()
    assert any(step % 3 for step in report.resume_steps), "no resume started inside a log interval"


def _mount_tmpfs(where: Path, size: str) -> bool:
    """Mount a tmpfs of `size` at `where` (root only); False when this machine does not allow it."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, bool]]:
    """(folder, real): a 256 KiB tmpfs when it can be mounted (real=True), else a plain folder."""
    where = tmp_path / "disk"
    real = _mount_tmpfs(where, "256k")
    try:
        yield where, real
    finally:
        if real:
            subprocess.run(["umount", "-l", str(where)], check=False)


class _FullDisk:
    """A file that takes `room` bytes, then fails like a full disk (ENOSPC)."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def write(self, data) -> int:
        """Write while there is room, then raise ENOSPC."""
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def flush(self) -> None:
        """Flush the real file."""
        self.file.flush()

    def fileno(self) -> int:
        """The real file's descriptor."""
        return self.file.fileno()



class _OsOnAFullDisk:
    """`os` as genlab.runs.checkpoint sees it, except that files it opens fill up after `room` bytes."""

    def __init__(self, room: int) -> None:
        self.room = room

    def fdopen(self, fd: int, mode: str) -> _FullDisk:
        """The real file, wrapped to run out of space."""
        return _FullDisk(os.fdopen(fd, mode), self.room)

    def __getattr__(self, name: str):
        return getattr(os, name)


def _simulate_full_disk(monkeypatch: pytest.MonkeyPatch, room: int = 4096) -> None:
    """Make checkpoint writes fail with ENOSPC after `room` bytes (for machines where no tmpfs can be mounted)."""
    monkeypatch.setattr(checkpoint_module, "os", _OsOnAFullDisk(room))


def test_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint(small_disk, monkeypatch):
    """ENOSPC while writing last.pt: CheckpointError naming the file and what to do; last.pt still loads."""
    folder, real = small_disk
    manager = CheckpointManager(folder / "checkpoints", keep=2)
    manager.save({"step": 1, "weights": torch.ones(100)}, 1)
    if not real:
        _simulate_full_disk(monkeypatch)
    with pytest.raises(CheckpointError) as err:
        manager.save({"step": 2, "weights": torch.zeros(200_000)}, 2)  # 800 KB: more than the disk holds
    message = str(err.value)
    assert str(manager.last) in message and "disk is full" in message and "--resume" in message, message
    monkeypatch.undo()
    state = load_checkpoint(manager.last)
    assert state["step"] == 1 and torch.equal(state["weights"], torch.ones(100))
    assert sorted(p.name for p in manager.folder.iterdir()) == ["last.pt", "step_00000001.pt"]  # no temp file left


def test_read_only_checkpoint_folder_is_a_clear_error(small_disk, monkeypatch):
    """A read-only folder (EROFS on a ro tmpfs as root, EACCES by chmod otherwise): clear error, last.pt loads."""
    folder, real = small_disk
    manager = CheckpointManager(folder / "checkpoints", keep=0)
    manager.save({"step": 1}, 1)
    if real:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    elif os.geteuid() != 0:
        manager.folder.chmod(0o555)  # restored below
    else:  # root without mount: simulate the refusal the kernel would give
        def refuse(*args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(manager.folder / ".last.pt.tmp"))

        monkeypatch.setattr(checkpoint_module, "tempfile", types.SimpleNamespace(mkstemp=refuse))
    try:
        with pytest.raises(CheckpointError, match="read-only|permission denied") as err:
            manager.save({"step": 2}, 2)
        assert str(manager.last) in str(err.value) and "still loads" in str(err.value)
        assert load_checkpoint(manager.last)["step"] == 1
    finally:
        if not real and os.geteuid() != 0:
            manager.folder.chmod(0o755)



def test_disk_full_during_training_stops_with_one_paragraph_and_resumes(tmp_path, monkeypatch, run_cli):
    """`genlab train` whose second checkpoint hits a full disk: exit 2, no traceback; --resume from step 3 finishes."""
    real_save = checkpoint_module.atomic_save
    calls = []

    def fill_up(obj, path):
        calls.append(path)
        if len(calls) > 1:  # step 3's last.pt fits (its snapshot is a hard link); step 6's does not
            _simulate_full_disk(monkeypatch, room=0)
        real_save(obj, path)

    monkeypatch.setattr(checkpoint_module, "atomic_save", fill_up)
    run = tmp_path / "runs" / "full"
    code, printed = run_cli(["train", *TINY, f"output_dir={tmp_path / 'runs'}", "name=full"])
    assert code == 2 and "Traceback" not in printed, printed
    assert f"error: Could not write checkpoint {run / 'checkpoints' / 'last.pt'}: the disk is full" in printed, printed
    monkeypatch.undo()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3
    code, printed = run_cli(["train", "--resume", str(run)])
    assert code == 0 and "at step 6/6" in printed, printed


def test_read_only_output_dir_is_a_clear_error(tmp_path, monkeypatch, run_cli):
    """Creating a run under a folder that cannot be written: exit 2, the folder named, nothing half-made."""
    out = tmp_path / "runs"
    out.mkdir()
    real = _mount_tmpfs(out, "64k")
    try:
        if real:
            subprocess.run(["mount", "-o", "remount,ro", str(out)], check=True)
        elif os.geteuid() != 0:
            out.chmod(0o555)
        else:  # root without mount: simulate the refusal
            real_mkdir = Path.mkdir

            def refuse(self, *args, **kwargs):
                if out in self.parents:
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
                return real_mkdir(self, *args, **kwargs)

            monkeypatch.setattr(Path, "mkdir", refuse)
        code, printed = run_cli(["train", *TINY, f"output_dir={out}", "name=ro"])
        monkeypatch.undo()
        assert code == 2 and "Traceback" not in printed, printed
        assert f"Could not create the run directory {out / 'ro'}" in printed, printed
        assert "read-only" in printed or "permission denied" in printed, printed
        assert not (out / "ro").exists()
    finally:
        if real:
            subprocess.run(["umount", "-l", str(out)], check=False)
        elif os.geteuid() != 0:
            out.chmod(0o755)
