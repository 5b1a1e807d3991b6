"""GAN architectures: the family's registry of builders returning (generator, discriminator)."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from genlab.models.base import DataShape
from genlab.models.dcgan import DCGANDiscriminator, DCGANGenerator
from genlab.models.layers import init_weights
from genlab.models.patch import MultiScaleDiscriminator, PatchDiscriminator
from genlab.models.resnet import ResNetDiscriminator, ResNetGenerator
from genlab.registry import Registry

GAN_ARCHITECTURES: Registry[Callable[..., tuple[nn.Module, nn.Module]]] = Registry("GAN architecture")


#: Losses whose critic takes a gradient penalty on interpolates (a per-sample input gradient).
GRADIENT_PENALTY_LOSSES = ("wgan-gp",)


def discriminator_norm(model_cfg, loss_type: str, r1_gamma: float = 0.0) -> str:
    """Resolve d_norm=auto: instance (affine) when a gradient penalty or R1 is on, batch otherwise.

    Both penalties take each sample's input gradient; BatchNorm mixes the batch into every output, so
    the gradient of D(x_i) would depend on the other samples and the penalty would not be the one defined.
    """
    if model_cfg.d_norm != "auto":
        return model_cfg.d_norm
    return "instance" if loss_type in GRADIENT_PENALTY_LOSSES or r1_gamma > 0 else "batch"


def attention_sides(model_cfg, image_size: int, network: str = "g") -> tuple[int, ...]:
    """Where self-attention goes in G or D: the configured sides, or one default side when only the flag is set."""
    d_sides = getattr(model_cfg, "attention_resolutions_d", None)
    if network == "d" and d_sides is not None:
        return tuple(d_sides)
    if model_cfg.attention_resolutions:
        return tuple(model_cfg.attention_resolutions)
    if model_cfg.use_self_attention:
        return (16,) if image_size <= 64 else (image_size // 4,)
    return ()


def _class_count(model_cfg, data: DataShape) -> int:
    """The number of classes a conditional pair embeds (0 when unconditional)."""
    if model_cfg.condition == "none":
        return 0
    if data.num_classes < 2:
        raise ValueError(f"model.condition={model_cfg.condition} needs labelled data with at least 2 classes")
    return data.num_classes


@GAN_ARCHITECTURES.register("dcgan")
def build_dcgan(model_cfg, data: DataShape, loss_type: str = "ns", r1_gamma: float = 0.0) -> tuple[nn.Module, nn.Module]:
    """DCGAN pair sized by the config (seed 000 at 28-32 px, seed 001 at 64 px; condition=concat: seed 002)."""
    num_classes = _class_count(model_cfg, data)
    embed_dim = model_cfg.embed_dim if num_classes else 0
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
        num_classes=num_classes,
        embed_dim=embed_dim,
        final_sn=model_cfg.final_sn,
    )
    norm = discriminator_norm(model_cfg, loss_type, r1_gamma)

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
            attention_resolutions=attention_sides(model_cfg, size, "d"), num_classes=num_classes, embed_dim=embed_dim,
        )

    return _initialised(model_cfg, generator, _scaled_discriminator(model_cfg, data, build_discriminator))


def _initialised(model_cfg, generator: nn.Module, discriminator: nn.Module) -> tuple[nn.Module, nn.Module]:
    """model.init applied to a DCGAN pair (a resnet generator applies it itself, before scaling its last conv)."""
    if model_cfg.init != "auto":
        init_weights(generator, model_cfg.init)
        init_weights(discriminator, model_cfg.init)
    return generator, discriminator


def _scaled_discriminator(model_cfg, data: DataShape, build: Callable[[int], nn.Module]) -> nn.Module:
    """One discriminator at the image size, or d_scales of them on 1×, 2×, 4×... down-sampled copies."""
    if model_cfg.d_scales > 1:
        return MultiScaleDiscriminator(build, data.image_size, model_cfg.d_scales)
    return build(data.image_size)


@GAN_ARCHITECTURES.register("resnet")
def build_resnet(model_cfg, data: DataShape, loss_type: str = "ns", r1_gamma: float = 0.0) -> tuple[nn.Module, nn.Module]:
    """SNGAN-style residual pair with optional attention, spectral norm, class conditioning and multi-scale D."""
    conditional = _class_count(model_cfg, data) > 0
    sides = attention_sides(model_cfg, data.image_size)
    generator = ResNetGenerator(
        latent_dim=model_cfg.latent_dim, image_size=data.image_size, channels=data.channels,
        base_channels=model_cfg.generator_base_channels, num_blocks=model_cfg.num_blocks,
        max_channels=model_cfg.max_channels, norm=model_cfg.g_norm, attention_resolutions=sides,
        upsample=model_cfg.upsample, num_classes=data.num_classes if conditional else 0,
        embed_dim=model_cfg.embed_dim, spectral_norm=model_cfg.spectral_norm_g,
        final_init_scale=model_cfg.final_init_scale, init=model_cfg.init, final_sn=model_cfg.final_sn,
        final_relu=model_cfg.final_relu,
    )

    def build_discriminator(size: int) -> nn.Module:
        # Each scale has its own projection embedding and AC-GAN head: labels mean the same at every scale.
        return ResNetDiscriminator(
            image_size=size, channels=data.channels, base_channels=model_cfg.discriminator_base_channels,
            num_blocks=model_cfg.num_blocks if size == data.image_size else None, max_channels=model_cfg.max_channels,
            attention_resolutions=attention_sides(model_cfg, size, "d"), spectral_norm=model_cfg.spectral_norm_d,
            num_classes=data.num_classes, projection="projection" in model_cfg.condition,
            auxiliary_classifier="acgan" in model_cfg.condition,
        )

    discriminator = _scaled_discriminator(model_cfg, data, build_discriminator)
    if model_cfg.init != "auto":
        init_weights(discriminator, model_cfg.init)
    return generator, discriminator


def build_models(model_cfg, data: DataShape, loss_type: str = "ns", r1_gamma: float = 0.0) -> tuple[nn.Module, nn.Module]:
    """Build the configured architecture's generator and discriminator (loss and R1 pick D's norm under auto)."""
    return GAN_ARCHITECTURES.get(model_cfg.architecture)(model_cfg, data, loss_type, r1_gamma)
