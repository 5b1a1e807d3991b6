"""Networks: architectures are registered as builders returning (generator, discriminator)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from genlab.models.dcgan import DCGANDiscriminator, DCGANGenerator
from genlab.registry import Registry


@dataclass(frozen=True)
class DataShape:
    """What an architecture needs to know about the data."""

    image_size: int
    channels: int
    num_classes: int


ARCHITECTURES: Registry[Callable[..., tuple[nn.Module, nn.Module]]] = Registry("architecture")


def discriminator_norm(model_cfg, loss_type: str) -> str:
    """Resolve d_norm=auto: instance (affine) for gradient-penalty critics, batch otherwise."""
    if model_cfg.d_norm != "auto":
        return model_cfg.d_norm
    return "instance" if loss_type == "wgan-gp" else "batch"


@ARCHITECTURES.register("dcgan")
def build_dcgan(model_cfg, data: DataShape, loss_type: str = "ns") -> tuple[nn.Module, nn.Module]:
    """DCGAN pair sized by the config (seed 000 at 28-32 px, seed 001 at 64 px)."""
    generator = DCGANGenerator(
        latent_dim=model_cfg.latent_dim,
        image_size=data.image_size,
        channels=data.channels,
        base_channels=model_cfg.generator_base_channels,
        num_blocks=model_cfg.num_blocks,
        max_channels=model_cfg.max_channels,
        projection=model_cfg.projection,
        norm=model_cfg.g_norm,
    )
    discriminator = DCGANDiscriminator(
        image_size=data.image_size,
        channels=data.channels,
        base_channels=model_cfg.discriminator_base_channels,
        num_blocks=model_cfg.num_blocks,
        max_channels=model_cfg.max_channels,
        norm=discriminator_norm(model_cfg, loss_type),
        leaky_slope=model_cfg.leaky_slope,
        spectral_norm=model_cfg.spectral_norm_d,
    )
    return generator, discriminator


def build_models(model_cfg, data: DataShape, loss_type: str = "ns") -> tuple[nn.Module, nn.Module]:
    """Build the configured architecture's generator and discriminator."""
    return ARCHITECTURES.get(model_cfg.architecture)(model_cfg, data, loss_type)


__all__ = ["ARCHITECTURES", "DCGANDiscriminator", "DCGANGenerator", "DataShape", "build_models"]
