"""Where the metrics keep things between runs: converted weights, real-image statistics, domain classifiers."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch

from genlab.runs.checkpoint import atomic_save

CACHE_ENV = "GENLAB_CACHE"

__all__ = ["CACHE_ENV", "atomic_save", "cache_dir", "cache_file", "tensors_sha256"]


def cache_dir() -> Path:
    """`$GENLAB_CACHE`, or `~/.cache/genlab` when unset."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "genlab"


def cache_file(folder: str, key: str, identity: str = "") -> Path:
    """A readable, collision-free file name in `cache_dir()/folder` for a caller key (and extractor identity)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")[:60] or "key"
    digest = hashlib.sha256(f"{key}\0{identity}".encode()).hexdigest()[:16]
    return cache_dir() / folder / f"{readable}-{digest}.pt"


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of `tensors`, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
