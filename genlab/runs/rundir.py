"""Run directories: runs/<name>/ with the resolved config, environment record, logs and checkpoints."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import genlab
from genlab import distributed
from genlab.config import Config, save_config
from genlab.errors import CheckpointError
from genlab.runs.checkpoint import disk_problem


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @classmethod
    def create(cls, cfg: Config, preset_name: str | None = None) -> RunDir:
        """Make a fresh run directory; an existing run is never overwritten."""
        name = cfg.name or f"{preset_name or cfg.data.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        root = Path(cfg.output_dir) / name
        if root.exists() and any(root.iterdir()):
            if cfg.name is not None:
                raise CheckpointError(
                    f"Run directory {root} already exists. Continue it with `genlab train --resume {root}`, "
                    f"or choose another name (name=...) so nothing in it is overwritten."
                )
            suffix = 1
            while (Path(cfg.output_dir) / f"{name}-{suffix}").exists():
                suffix += 1
            root = Path(cfg.output_dir) / f"{name}-{suffix}"
        run = cls(root)
        try:
            run.samples.mkdir(parents=True, exist_ok=True)
            run.checkpoints.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run.config)
        except OSError as err:
            why, todo = disk_problem(Path(err.filename or root), err)
            raise CheckpointError(f"Could not create the run directory {root}: {why}. {todo}.") from None
        return run

    @classmethod
    def open(cls, root: str | Path) -> RunDir:
        """An existing run directory (for --resume, sample, evaluate)."""
        run = cls(Path(root))
        if not run.config.is_file():
            raise CheckpointError(f"{root} is not a genlab run directory (no config.yaml). Give the folder "
                                  "that `genlab train` printed, e.g. runs/<name>.")
        return run


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_info() -> dict[str, Any]:
    """Commit and dirty flag of the genlab source tree (or the working directory's repository)."""
    for where in (Path(genlab.__file__).resolve().parent, Path.cwd()):
        commit = _git(["rev-parse", "HEAD"], where)
        if commit:
            status = _git(["status", "--porcelain", "--untracked-files=no"], where)
            return {"commit": commit, "dirty": bool(status), "repo": _git(["rev-parse", "--show-toplevel"], where)}
    return {"commit": None, "dirty": None, "repo": None}


def environment(device: torch.device, seed: int) -> dict[str, Any]:
    """Everything about the software and machine a run used."""
    import numpy
    import torchvision

    env: dict[str, Any] = {
        "genlab": genlab.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "processes": distributed.world_size(),  # torchrun's data-parallel processes (1: a single process)
        "seed": seed,
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_info(),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def write_env(run: RunDir, device: torch.device, seed: int, resumed_from_step: int | None = None,
              overrides: Sequence[str] | None = None) -> None:
    """Write env.json; a resumed run appends its own record (with the overrides it was given) under `resumes`."""
    record = environment(device, seed)
    if resumed_from_step is not None and run.env.is_file():
        data = json.loads(run.env.read_text())
        data.setdefault("resumes", []).append({**record, "from_step": resumed_from_step,
                                               "overrides": list(overrides or [])})
    else:
        data = record
    try:
        run.env.write_text(json.dumps(data, indent=2))
    except OSError as err:
        why, todo = disk_problem(run.env, err)
        raise CheckpointError(f"Could not write {run.env}: {why}. {todo}.") from None
