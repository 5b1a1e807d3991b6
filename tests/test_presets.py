"""Every preset builds and trains two steps on synthetic data of its resolution and channel count."""

from __future__ import annotations

import pytest

from genlab.config import list_presets
from genlab.train import load_experiment
from genlab.train.loop import train

#: Per family, the overrides that shrink its networks to a few channels (VGG with seeded random weights:
#: ImageNet weights are not offline here).
SHRINK = {
    "gan": ["model.generator_base_channels=4", "model.discriminator_base_channels=4", "model.max_channels=16",
            "model.embed_dim=8"],
    "vae": ["model.base_channels=4", "model.discriminator_base_channels=4", "model.max_channels=16",
            "model.latent_dim=8", "training.vgg_weights=null"],
    "ddpm": ["model.base_channels=8", "model.layers_per_block=1", "model.timesteps=20", "training.sampling_steps=3",
             "training.grid_steps=3"],
}


@pytest.mark.parametrize("preset", list_presets())
def test_preset_trains_two_steps(preset, tmp_path):
    cfg = load_experiment(preset)
    big = cfg.data.image_size >= 128
    overrides = [
        "data.name=synthetic", "data.root=null", "data.split=train", "data.num_classes=null", "data.num_samples=16",
        f"data.channels={cfg.data.channels or 1}", "training.batch_size=4" if not big else "training.batch_size=2",
        "training.max_steps=2", *SHRINK[cfg.model.family], "logging.num_sample_images=4", "logging.progress=false",
        "logging.tensorboard=false", "eval.every_epochs=0",
        f"output_dir={tmp_path}", "device=cpu",
    ]
    result = train(load_experiment(preset, overrides), preset_name=preset)
    assert result.step == 2
    assert (result.run_dir / "samples" / "latest.png").is_file()
