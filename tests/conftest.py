"""Shared fixtures: tiny, fast configurations on offline data."""

from __future__ import annotations

from pathlib import Path

import pytest

from genlab.config import Config, load_config

TINY = [
    "data.name=synthetic", "data.image_size=16", "data.num_samples=64", "training.batch_size=8",
    "model.generator_base_channels=8", "model.discriminator_base_channels=8", "model.latent_dim=8",
    "logging.log_every=1", "logging.sample_every=4", "logging.num_sample_images=16", "logging.progress=false",
    "checkpoint.every_steps=5", "device=cpu",
]


@pytest.fixture
def tiny_config(tmp_path: Path):
    """Factory: a tiny synthetic-data config writing runs under tmp_path, with extra overrides."""

    def make(*overrides: str) -> Config:
        return load_config(None, [*TINY, f"output_dir={tmp_path / 'runs'}", *overrides])

    return make
