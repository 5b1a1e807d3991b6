"""Where numbers go while training: metrics.jsonl (one JSON object per line) and TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from genlab.runs.records import read_jsonl

__all__ = ["Meter", "NullLogger", "RunLogger", "read_jsonl", "truncate_jsonl"]


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop records logged after `max_step` (a resumed run re-logs them); torn last lines go too."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= max_step:
            kept.append(line)
    path.write_text("".join(f"{line}\n" for line in kept))


class RunLogger:
    """Appends scalars to metrics.jsonl and, optionally, TensorBoard."""

    def __init__(self, run_root: Path, tensorboard: bool = True, purge_step: int | None = None) -> None:
        self.path = Path(run_root) / "metrics.jsonl"
        self.file = self.path.open("a")
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_root), purge_step=purge_step)

    def log(self, step: int, values: dict[str, float], **extra: Any) -> None:
        """One record: {"step", **extra, **values}; non-finite floats are written as null."""
        record = {"step": step, **extra}
        record.update({k: (v if math.isfinite(v) else None) for k, v in values.items()})
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None:
        """Add an image grid (C×H×W in [0, 1]) to TensorBoard."""
        if self.writer is not None:
            self.writer.add_image(tag, grid, step)

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        """Add a histogram of `values` to TensorBoard (JSONL callers log their own bin counts)."""
        if self.writer is not None:
            self.writer.add_histogram(tag, values.detach().float().cpu(), step)

    def close(self) -> None:
        """Flush and close both sinks."""
        self.file.close()
        if self.writer is not None:
            self.writer.close()


class NullLogger(RunLogger):
    """What ranks other than 0 log to under torchrun: nothing (rank 0 alone writes the run directory)."""

    def __init__(self) -> None:
        self.path, self.file, self.writer = None, None, None

    def log(self, step: int, values: dict[str, float], **extra: Any) -> None:
        """Drop the record."""

    def close(self) -> None:
        """Nothing to close."""


class Meter:
    """Running means of per-step scalar tensors, read out (and reset) at log time."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, torch.Tensor]) -> None:
        """Accumulate one step's values (tensors stay on device: no sync per step)."""
        for key, value in values.items():
            value = value.detach()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
            self.counts[key] = self.counts.get(key, 0) + 1

    def state_dict(self) -> dict[str, Any]:
        """The running sums and counts (sums as CPU tensors, so a resumed mean is bit-identical)."""
        return {"sums": {k: v.detach().cpu() for k, v in self.sums.items()}, "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        """Continue from `state_dict()` (sums moved to `device`, where new values arrive)."""
        self.sums = {k: v.to(device) for k, v in state["sums"].items()}
        self.counts = dict(state["counts"])

    def means(self) -> dict[str, float]:
        """Mean of each key since the last reset, then reset."""
        out = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        self.sums.clear()
        self.counts.clear()
        return out
