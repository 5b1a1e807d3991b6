"""Shared fixtures: tiny, fast configurations on offline data."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest

from genlab import cli
from genlab.config import Config
from genlab.train import load_experiment, train

TINY_RUN = [
    "data.name=synthetic", "data.image_size=16", "data.num_samples=64", "training.batch_size=8",
    "logging.log_every=1", "logging.sample_every=4", "logging.num_sample_images=16", "logging.progress=false",
    "checkpoint.every_steps=5", "device=cpu", "logging.report=false",
]
TINY = [*TINY_RUN, "model.generator_base_channels=8", "model.discriminator_base_channels=8", "model.latent_dim=8"]
#: A tiny VAE (and PatchGAN, when switched on); VGG with seeded random weights, ImageNet's are not offline.
TINY_VAE = [*TINY_RUN, "model.family=vae", "model.latent_dim=8", "model.base_channels=8",
            "model.discriminator_base_channels=8", "model.patch_layers=2", "training.vgg_weights=null"]
#: A tiny DDPM: two U-Net levels (16 → 8 px) with attention at 8 px, T = 50, few sampling steps.
TINY_DDPM = [*TINY_RUN, "model.family=ddpm", "model.base_channels=8", "model.channel_mults=[1,2]",
             "model.layers_per_block=1", "model.attention_resolutions=[8]", "model.timesteps=50",
             "training.sampling_steps=5", "training.grid_steps=4", "training.ema_decay=0.9"]


@pytest.fixture
def tiny_config(tmp_path: Path):
    """Factory: a tiny synthetic-data config writing runs under tmp_path, with extra overrides."""

    def make(*overrides: str) -> Config:
        return load_experiment(None, [*TINY, f"output_dir={tmp_path / 'runs'}", *overrides])

    return make


@pytest.fixture
def tiny_ddpm_config(tmp_path: Path):
    """Factory: a tiny synthetic-data DDPM config writing runs under tmp_path, with extra overrides."""

    def make(*overrides: str) -> Config:
        return load_experiment(None, [*TINY_DDPM, f"output_dir={tmp_path / 'runs'}", *overrides])

    return make


@pytest.fixture
def tiny_vae_config(tmp_path: Path):
    """Factory: a tiny synthetic-data VAE config writing runs under tmp_path, with extra overrides."""

    def make(*overrides: str) -> Config:
        return load_experiment(None, [*TINY_VAE, f"output_dir={tmp_path / 'runs'}", *overrides])

    return make


@pytest.fixture
def crash_and_resume():
    """Train a reference run and a twin that crashes after `crash_step`, resume the twin; their run directories."""

    def run(make, knobs: tuple[str, ...], crash_step: int) -> tuple[Path, Path]:
        reference = train(make("name=reference", *knobs))

        def crash(step, stats):
            if step == crash_step:
                raise RuntimeError("simulated crash")

        with pytest.raises(RuntimeError, match="simulated crash"):
            train(make("name=crashed", *knobs), callbacks=(crash,))
        crashed = reference.run_dir.parent / "crashed"
        train(resume=crashed)
        return reference.run_dir, crashed

    return run


@pytest.fixture(scope="session")
def run_cli():
    """`run_cli(ARGS)` runs `genlab ARGS` in this process and returns (exit code, everything printed)."""

    def run(args: list[str]) -> tuple[int, str]:
        out, argv = io.StringIO(), sys.argv
        sys.argv = ["genlab", *args]
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                try:
                    cli.main()
                    code = 0
                except SystemExit as exit_:
                    code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            sys.argv = argv
        return code, out.getvalue()

    return run
