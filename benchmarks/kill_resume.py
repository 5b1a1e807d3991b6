"""SIGKILL a tiny `genlab train` at random moments, resume it each time, and compare it with an uninterrupted run.

Each round starts `python -m genlab train` (the first time) or `genlab train --resume` (afterwards) as a
subprocess, waits until metrics.jsonl shows a seeded random target step (plus a random few milliseconds, so
kills also land inside checkpoint and log writes), and sends SIGKILL. After every kill every checkpoint in
the run must still load. The last resume runs to the end; then its final weights (the whole method state:
networks, EMA, optimisers) and every metrics.jsonl line (all keys but images_per_sec) must equal those of the
same config trained without interruption. checkpoint.every_steps (5) is not a multiple of logging.log_every
(3), so most kills fall inside a log interval whose accumulator has to come back from the checkpoint.

    python benchmarks/kill_resume.py [--kills 100] [--seed 0] [--workdir DIR]

Prints kills, resumes, corrupt checkpoints (must be 0) and the comparison; exits 1 if anything differs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genlab.errors import CheckpointError
from genlab.runs.checkpoint import load_checkpoint
from genlab.train import load_experiment
from genlab.train.loop import train

STEPS_PER_EPOCH = 8  # 64 synthetic images, batch 8
EVERY_STEPS = 5
TINY = [
    "data.name=synthetic", "data.image_size=16", "data.num_samples=64", "training.batch_size=8",
    "model.latent_dim=8", "model.generator_base_channels=8", "model.discriminator_base_channels=8",
    "logging.progress=false", "logging.tensorboard=false", "device=cpu", "logging.log_every=3",
    f"checkpoint.every_steps={EVERY_STEPS}", "checkpoint.keep=2", "logging.sample_every=7", "logging.num_sample_images=4",
    "data.hflip=true", "training.d_noise_std=0.1", "training.lr_schedule=cosine", "training.r1_gamma=1",
    "training.r1_every=4",
]
#: One intra-op thread everywhere, so the subprocesses and the in-process reference compute bit for bit alike.
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Report:
    """What a kill-and-resume session saw."""

    kills: int = 0
    resumes: int = 0
    corrupt_checkpoints: list[str] = field(default_factory=list)
    kill_steps: list[int] = field(default_factory=list)
    resume_steps: list[int] = field(default_factory=list)
    metrics_lines: int = 0
    metrics_differences: list[str] = field(default_factory=list)
    weight_differences: list[str] = field(default_factory=list)
    finished_step: int = 0
    total_steps: int = 0

    @property
    def ok(self) -> bool:
        """No corrupt checkpoint, and the killed run equals the uninterrupted one."""
        return (not self.corrupt_checkpoints and not self.metrics_differences and not self.weight_differences
                and self.finished_step == self.total_steps and self.metrics_lines > 0)

    def summary(self) -> str:
        """The lines the benchmark prints."""
        return "\n".join([
            f"kills: {self.kills} (once metrics.jsonl reached steps {self.kill_steps})",
            f"resumes: {self.resumes} (from steps {self.resume_steps})",
            f"corrupt checkpoints: {len(self.corrupt_checkpoints)} {self.corrupt_checkpoints or ''}".rstrip(),
            f"finished at step {self.finished_step}/{self.total_steps}",
            f"metrics.jsonl lines compared: {self.metrics_lines}, differing: {len(self.metrics_differences)}",
            f"method tensors differing from the uninterrupted run: {len(self.weight_differences)}",
            *[f"  {d}" for d in (self.metrics_differences + self.weight_differences)[:10]],
            "OK: identical to the uninterrupted run" if self.ok else "FAILED",
        ])


def _records(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's complete lines (a line being written is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _logged_step(path: Path) -> int:
    """The highest step in metrics.jsonl so far."""
    return max((int(r.get("step", 0)) for r in _records(path)), default=0)


def _corrupt(checkpoints: Path) -> list[str]:
    """Names of checkpoints in `checkpoints` that do not load."""
    bad = []
    for path in sorted(checkpoints.glob("*.pt")):
        try:
            load_checkpoint(path)
        except CheckpointError as err:
            bad.append(f"{path.name}: {err}")
    return bad


def _differences(a: Any, b: Any, where: str = "method") -> list[str]:
    """Where two nested checkpoint states differ (tensors compared bit for bit)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where}: keys {sorted(map(str, set(a) ^ set(b)))}"]
        return [d for k in a for d in _differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [where]


def _run_until_killed(args: list[str], metrics: Path, target: int, jitter: float, log: Path,
                      timeout: float) -> int | None:
    """Start `genlab train ARGS`; SIGKILL it once metrics.jsonl reaches `target` (+ `jitter` s). The step seen, or None if it finished."""
    env = {**os.environ, **THREADS}
    with log.open("a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "genlab", "train", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        start = time.monotonic()
        try:
            while proc.poll() is None:
                seen = _logged_step(metrics)
                if seen >= target:
                    time.sleep(jitter)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    return seen
                if time.monotonic() - start > timeout:
                    raise TimeoutError(f"genlab train {' '.join(args)} did not reach step {target} in {timeout:.0f} s; "
                                       f"see {log}")
                time.sleep(0.005)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"genlab train {' '.join(args)} failed with exit code {proc.returncode}; see {log}")
    return None


def kill_and_resume(workdir: Path, kills: int, seed: int = 0, timeout: float = 600.0) -> Report:
    """Train the tiny config uninterrupted and again with `kills` SIGKILLs and resumes; compare the two."""
    workdir = Path(workdir)
    rng = random.Random(seed)
    epochs = max(4, math.ceil((2 * EVERY_STEPS + 2) * (kills + 1) / STEPS_PER_EPOCH))
    overrides = [*TINY, f"training.num_epochs={epochs}", f"output_dir={workdir}"]
    report = Report(total_steps=epochs * STEPS_PER_EPOCH)
    run, log = workdir / "killed", workdir / "killed.log"
    args = [*overrides, "name=killed"]
    for _ in range(kills):
        last = run / "checkpoints" / "last.pt"
        floor = max(_logged_step(run / "metrics.jsonl"), load_checkpoint(last)["step"] if last.is_file() else 0,
                    EVERY_STEPS)
        target = floor + rng.randint(1, 2 * EVERY_STEPS)
        if target >= report.total_steps - 1:
            break
        seen = _run_until_killed(args, run / "metrics.jsonl", target, rng.uniform(0, 0.05), log, timeout)
        if seen is None:  # it finished before the kill landed
            break
        report.kills += 1
        report.kill_steps.append(seen)
        report.corrupt_checkpoints += [f"after kill {report.kills}: {c}" for c in _corrupt(run / "checkpoints")]
        try:
            report.resume_steps.append(int(load_checkpoint(last)["step"]))
        except CheckpointError:  # counted as corrupt above; the resume will say what it makes of it
            report.resume_steps.append(-1)
        args = ["--resume", str(run)]
        report.resumes += 1
    if _run_until_killed(args, run / "metrics.jsonl", 10**9, 0.0, log, timeout) is not None:
        raise RuntimeError("the last resume was killed")
    report.corrupt_checkpoints += [f"at the end: {c}" for c in _corrupt(run / "checkpoints")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = train(load_experiment(None, [*overrides, "name=reference"])).run_dir
    finally:
        torch.set_num_threads(threads)
    killed_state, reference_state = load_checkpoint(run / "checkpoints" / "last.pt"), load_checkpoint(
        reference / "checkpoints" / "last.pt")
    report.finished_step = int(killed_state["step"])
    report.weight_differences = _differences(reference_state["method"], killed_state["method"])

    def strip(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "images_per_sec"} for r in records]

    ref, got = strip(_records(reference / "metrics.jsonl")), strip(_records(run / "metrics.jsonl"))
    report.metrics_lines = len(ref)
    report.metrics_differences = [f"line {i + 1}: {a} != {b}" for i, (a, b) in enumerate(zip(ref, got, strict=False)) if a != b]
    if len(ref) != len(got):
        report.metrics_differences.append(f"{len(got)} lines after the kills, {len(ref)} without")
    return report


def main() -> None:
    """Command line: --kills, --seed, --workdir."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the runs here (default: a temp folder).")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = opts.workdir or Path(tmp)
        start = time.monotonic()
        report = kill_and_resume(workdir, opts.kills, opts.seed, timeout=900.0)
        print(report.summary())
        print(f"({time.monotonic() - start:.0f} s; runs in {workdir})")
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
