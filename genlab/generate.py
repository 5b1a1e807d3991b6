"""Drawing samples from a trained run: load its checkpoint, generate, write grid / PNGs / npz."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genlab import distributed
from genlab.config import Config, validate
from genlab.data import to_uint8
from genlab.errors import CheckpointError, GenlabError
from genlab.images import save_grid
from genlab.methods import Method, SampleOptions, build_method
from genlab.models import DataShape
from genlab.runs.checkpoint import load_checkpoint
from genlab.runs.rundir import RunDir
from genlab.utils import select_device


@dataclass
class LoadedRun:
    """A run's config and method with trained weights, ready to sample."""

    cfg: Config
    method: Method
    step: int


def checkpoint_path(run_dir: str | Path, checkpoint: str = "last") -> Path:
    """`last`, `best`, a snapshot name, or a path to a .pt file."""
    candidate = Path(checkpoint)
    if candidate.suffix == ".pt" and candidate.is_file():
        return candidate
    run = RunDir.open(run_dir)
    name = checkpoint if checkpoint.endswith(".pt") else f"{checkpoint}.pt"
    path = run.checkpoints / name
    if not path.is_file():
        have = sorted(p.name for p in run.checkpoints.glob("*.pt"))
        raise CheckpointError(f"No checkpoint {name} in {run.checkpoints}. Available: {', '.join(have) or 'none'}.")
    return path


def load_run(run_dir: str | Path, checkpoint: str = "last", device: str = "auto") -> LoadedRun:
    """Rebuild a run's method from its checkpoint (architecture sizes come from the saved config)."""
    return method_from_checkpoint(load_checkpoint(checkpoint_path(run_dir, checkpoint)), str(run_dir),
                                  select_device(device))


def method_from_checkpoint(state: dict, where: str, device: torch.device) -> LoadedRun:
    """The method a loaded checkpoint `state` holds, on `device` (`where` names it in config errors)."""
    cfg = validate(state["config"], f"config stored in {where}")
    # Sampling from a loaded run compiles nothing: training.compile is for training steps, not a one-off draw.
    built = cfg.model_copy(update={"training": cfg.training.model_copy(update={"compile": False})})
    method = build_method(built, DataShape(**state["data_shape"]), device)
    method.load_state_dict(state["method"])
    return LoadedRun(cfg, method, int(state["step"]))


def chunk_seed(seed: int, index: int) -> int:
    """The noise seed of batch `index` of a `generate(seed=seed)` call: independent streams, one per batch."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


def generate(method: Method, n: int, seed: int = 0, batch_size: int = 256,
             options: SampleOptions | None = None) -> torch.Tensor:
    """`n` images in [-1, 1] (on CPU) from seeded noise, drawn with the sampler `options` (EMA weights by default).

    Each batch of `batch_size` draws its noise (and a diffusion sampler's noise at every step) from its own
    seeded stream, so the batches do not depend on each other: inside `distributed.sharing()` (evaluation under
    torchrun) each rank draws every N-th batch and the batches are gathered in order, the same images as one
    process draws, N times sooner.
    """
    options = options or SampleOptions()
    drawn = []
    for index, start in enumerate(range(0, n, batch_size)):
        if distributed.owns(index):
            gen = torch.Generator().manual_seed(chunk_seed(seed, index))
            noise = method.make_noise(min(batch_size, n - start), gen)
            drawn.append((index, method.sample(noise, options=options, generator=gen).cpu()))
    return torch.cat(distributed.gather_indexed(drawn))


def write_samples(images: torch.Tensor, out: str | Path) -> Path:
    """Write to `out`: a .png/.jpg grid, a .npz (uint8 N×H×W×C under `images`), or a folder of PNGs."""
    out = Path(out)
    if out.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
        save_grid(images, out)
    elif out.suffix.lower() == ".npz":
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, images=to_uint8(images).permute(0, 2, 3, 1).numpy())
    elif out.suffix == "" or str(out).endswith("/") or out.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        array = to_uint8(images).permute(0, 2, 3, 1).numpy()
        width = max(6, len(str(len(array))))
        for i, img in enumerate(array):
            Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(out / f"{i:0{width}d}.png")
    else:
        raise GenlabError(f"Don't know how to write samples to {out}: use a .png grid, a .npz file, or a folder (dir/).")
    return out
