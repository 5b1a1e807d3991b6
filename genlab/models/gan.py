"""GAN architectures: the family's registry of builders returning (generator, discriminator)."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from genlab.models.base import DataShape
from genlab.models.dcgan import DCGANDiscriminator, DCGANGenerator
from genlab.models.patch import MultiScaleDiscriminator, PatchDiscriminator
from genlab.models.resnet import ResNetDiscriminator, ResNetGenerator
from genlab.registry import Registry

GAN_ARCHITECTURES: Registry[Callable[..., tuple[nn.Module, nn.Module]]] = Registry("GAN architecture")


def discriminator_norm(model_cfg, loss_type: str) -> str:
    """Resolve d_norm=auto: instance (affine) for gradient-penalty critics, batch otherwise."""
    if model_cfg.d_norm != "auto":
        return model_cfg.d_norm
    return "instance" if loss_type == "wgan-gp" else "batch"


def attention_sides(model_cfg, image_size: int) -> tuple[int, ...]:
    """Where self-attention goes: the configured sides, or one default side when only the flag is set."""
    if model_cfg.attention_resolutions:
        return tuple(model_cfg.attention_resolutions)
    if model_cfg.use_self_attention:
        return (16,) if image_size <= 64 else (image_size // 4,)
    return ()


@GAN_ARCHITECTURES.register("dcgan")
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
        attention_resolutions=attention_sides(model_cfg, data.image_size),
        spectral_norm=model_cfg.spectral_norm_g,
    )
    norm = discriminator_norm(model_cfg, loss_type)

    def build_discriminator(size: int) -> nn.Module:
        if model_cfg.discriminator == "patch":
            return PatchDiscriminator(
                channels=data.channels, base_channels=model_cfg.discriminator_base_channels,
                num_layers=model_cfg.patch_layers, max_channels=model_cfg.max_channels, norm=norm,
                leaky_slope=model_cfg.leaky_slope, spectral_norm=model_cfg.spectral_norm_d,
            )
        return DCGANDiscriminator(
            image_size=size, channels=data.channels, base_channels=model_cfg.discriminator_base_channels,
            num_blocks=model_cfg.num_blocks if size == data.image_size else None, max_channels=model_cfg.max_channels,
            norm=norm, leaky_slope=model_cfg.leaky_slope, spectral_norm=model_cfg.spectral_norm_d,
            attention_resolutions=attention_sides(model_cfg, size),
        )

    if model_cfg.d_scales > 1:
        discriminator: nn.Module = MultiScaleDiscriminator(build_discriminator, data.image_size, model_cfg.d_scales)
    else:
        discriminator = build_discriminator(data.image_size)
    return generator, discriminator


@GAN_ARCHITECTURES.register("resnet")
def build_resnet(model_cfg, data: DataShape, loss_type: str = "ns") -> tuple[nn.Module, nn.Module]:
    """SNGAN-style residual pair with optional attention, spectral norm and class conditioning."""
    conditional = model_cfg.condition != "none"
    if conditional and data.num_classes < 2:
        raise ValueError(f"model.condition={model_cfg.condition} needs labelled data with at least 2 classes")
    sides = attention_sides(model_cfg, data.image_size)
    generator = ResNetGenerator(
        latent_dim=model_cfg.latent_dim, image_size=data.image_size, channels=data.channels,
        base_channels=model_cfg.generator_base_channels, num_blocks=model_cfg.num_blocks,
        max_channels=model_cfg.max_channels, norm=model_cfg.g_norm, attention_resolutions=sides,
        upsample=model_cfg.upsample, num_classes=data.num_classes if conditional else 0,
        embed_dim=model_cfg.embed_dim, spectral_norm=model_cfg.spectral_norm_g,
        final_init_scale=model_cfg.final_init_scale,
    )
    discriminator = ResNetDiscriminator(
        image_size=data.image_size, channels=data.channels, base_channels=model_cfg.discriminator_base_channels,
        num_blocks=model_cfg.num_blocks, max_channels=model_cfg.max_channels, attention_resolutions=sides,
        spectral_norm=model_cfg.spectral_norm_d, num_classes=data.num_classes,
        projection="projection" in model_cfg.condition, auxiliary_classifier="acgan" in model_cfg.condition,
    )
    return generator, discriminator


def build_models(model_cfg, data: DataShape, loss_type: str = "ns") -> tuple[nn.Module, nn.Module]:
    """Build the configured architecture's generator and discriminator."""
    return GAN_ARCHITECTURES.get(model_cfg.architecture)(model_cfg, data, loss_type)
