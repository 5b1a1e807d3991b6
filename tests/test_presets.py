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


#: Self-attention costs (H·W)² per image: above this side a CPU smoke test moves it down to this side
#: (test_seed_note_presets checks the presets' own sides on the built networks).
CPU_ATTENTION_SIDE = 64


def cpu_attention(cfg) -> list[str]:
    """Overrides moving GAN self-attention above CPU_ATTENTION_SIDE px down to it (seconds instead of minutes)."""
    if cfg.model.family != "gan":
        return []
    overrides = []
    for key in ("attention_resolutions", "attention_resolutions_d"):
        sides = getattr(cfg.model, key)
        if sides and max(sides) > CPU_ATTENTION_SIDE:
            capped = sorted({min(side, CPU_ATTENTION_SIDE) for side in sides})
            overrides.append(f"model.{key}=[{','.join(map(str, capped))}]")
    return overrides


@pytest.mark.parametrize("preset", list_presets())
def test_preset_trains_two_steps(preset, tmp_path):
    cfg = load_experiment(preset)
    big = cfg.data.image_size >= 128
    overrides = [
        "data.name=synthetic", "data.root=null", "data.split=train", "data.num_classes=null", "data.num_samples=16",
        f"data.channels={cfg.data.channels or 1}", "training.batch_size=4" if not big else "training.batch_size=2",
        "training.max_steps=2", *SHRINK[cfg.model.family], "logging.num_sample_images=4", "logging.progress=false",
        "logging.tensorboard=false", "logging.report=false", "eval.every_epochs=0",
        f"output_dir={tmp_path}", "device=cpu", *cpu_attention(cfg),
        *(["data.classes=[1,0]"] if cfg.data.classes else []),  # a class pair the 4 synthetic shapes have
    ]
    result = train(load_experiment(preset, overrides), preset_name=preset)
    assert result.step == 2
    assert (result.run_dir / "samples" / "latest.png").is_file()
