"""The GAN family's own settings: its networks (`model.*`) and its losses and stabilisers (`training.*`).

Keys keep the seed notes' spellings (`training.n_critic`, `training.r1_gamma`, `model.latent_dim`);
they are valid only in runs with model.family=gan.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from genlab.config.schema import Config, ModelConfig, TrainingConfig, register_family


class GanModelConfig(ModelConfig):
    """The generator/discriminator pair and their sizes."""

    family: Literal["gan"] = Field("gan", description="Model family: gan (these keys); model.family=vae or ddpm switches to that family's keys.")
    architecture: str = Field(
        "dcgan", description="Generator/discriminator pair from the GAN registry: dcgan (28-128 px) or resnet."
    )
    latent_dim: int = Field(64, ge=1, description="Size of the generator's noise vector z.")
    condition: Literal["none", "projection", "acgan", "projection+acgan", "concat"] = Field(
        "none",
        description="Class conditioning. resnet: conditional BN in G plus a projection D, an AC-GAN auxiliary "
        "classifier, or both. dcgan: concat (seed 002), the label embedding concatenated to z in G and a label map "
        "as an extra input channel of D.",
    )
    embed_dim: int = Field(
        128, ge=1, description="Class-embedding size (conditional BatchNorm in a resnet G; concat: G's label embedding "
        "and D's label-map embedding).",
    )
    generator_base_channels: int = Field(
        64, ge=1, description="Generator width at the last (highest-resolution) block; doubles per block towards z."
    )
    discriminator_base_channels: int = Field(
        64, ge=1, description="Discriminator width at the first block; doubles per block."
    )
    max_channels: int = Field(512, ge=1, description="Cap on any block's width.")
    num_blocks: int | None = Field(
        None, ge=1, le=8, description="Up/down-sampling blocks; null picks by resolution (3 up to 32 px, 4 at 64 px, ...)."
    )
    projection: Literal["auto", "conv", "linear"] = Field(
        "auto",
        description="How G turns z into the first feature map: conv (seed 000, 28-32 px) or linear FC (seed 001, 64 px); auto picks by resolution.",
    )
    g_norm: Literal["batch", "instance", "group", "none"] = Field(
        "batch", description="Normalisation in the generator blocks."
    )
    d_norm: Literal["batch", "instance", "group", "none", "auto"] = Field(
        "auto",
        description="Normalisation in the discriminator; auto = instance (affine) when a gradient penalty (wgan-gp) "
        "or R1 is on, whose per-sample input gradients BatchNorm would couple across the batch; batch otherwise.",
    )
    leaky_slope: float = Field(0.2, ge=0.0, lt=1.0, description="LeakyReLU slope in the discriminator.")
    spectral_norm_d: bool = Field(False, description="Spectral normalisation on every discriminator layer.")
    discriminator: Literal["standard", "patch"] = Field(
        "standard", description="Whole-image discriminator, or a PatchGAN scoring overlapping patches (dcgan only)."
    )
    patch_layers: int = Field(3, ge=1, le=6, description="Stride-2 layers of the PatchGAN discriminator.")
    d_scales: int = Field(
        1, ge=1, le=4, description="Multi-scale discriminator: copies on 1×, 2×, 4×... down-sampled images (dcgan, and "
        "resnet with or without projection/AC-GAN conditioning).",
    )
    use_self_attention: bool = Field(
        False, description="Self-attention (SAGAN) at attention_resolutions (default: 16 px up to 64 px, else size/4)."
    )
    attention_resolutions: list[int] = Field([], description="Feature-map sides that get self-attention, e.g. [16, 32].")
    attention_resolutions_d: list[int] | None = Field(
        None, description="Feature-map sides that get self-attention in D, e.g. [32] (null = as in G; [] = none).",
    )
    use_residual: bool = Field(False, description="Residual blocks (SNGAN style): the resnet architecture.")
    upsample: Literal["nearest", "pixel_shuffle", "convtranspose"] = Field(
        "nearest", description="Up-sampling in residual generator blocks."
    )
    spectral_norm_g: bool = Field(False, description="Spectral normalisation on the generator (not its last conv: "
                                  "see final_sn).")
    final_sn: bool = Field(
        False, description="Spectral norm on the generator's last conv too: seed 004's tanh-saturation bug (SN undoes "
        "final_init_scale), kept to reproduce it (configs/cifar10_cgan_broken.yaml).",
    )
    final_relu: bool = Field(
        True, description="Residual generator: BN -> ReLU -> last conv (true), or seed 004's BN -> last conv with no "
        "ReLU (false; configs/cifar10_cgan_broken.yaml), the layout in which its final_sn saturated tanh.",
    )
    init: Literal["auto", "normal", "orthogonal", "xavier", "kaiming"] = Field(
        "auto", description="Weight init of G and D: auto (the architecture's own: DCGAN's N(0, 0.02), PyTorch's "
        "for resnet), normal N(0, 0.02), orthogonal (gain 1, seed 004), xavier or kaiming.",
    )
    final_init_scale: float = Field(
        0.1, gt=0, description="Scale of the residual generator's last-conv init: keeps tanh unsaturated (seed 004)."
    )


class GanTrainingConfig(TrainingConfig):
    """What only adversarial training has: losses, critic steps, penalties, noise, augmentation, growing."""

    n_critic: int = Field(1, ge=1, description="Discriminator steps per generator step.")
    loss_type: str = Field("ns", description="Adversarial loss: ns, bce, ls, wgan, wgan-gp or hinge.")
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="One-sided label smoothing of real targets (bce loss only; an error with any other)."
    )
    gp_lambda: float = Field(10.0, ge=0, description="Gradient-penalty weight for wgan-gp.")
    wgan_clip: float = Field(
        0.01, ge=0, description="wgan loss: clip every discriminator parameter to [-c, c] after each D step "
        "(Arjovsky et al.; 0 = off, then model.spectral_norm_d must keep the critic Lipschitz).",
    )
    aux_weight: float = Field(1.0, ge=0, description="Weight of the AC-GAN auxiliary classification loss.")
    d_noise_std: float = Field(0.0, ge=0, description="Instance-noise std added to D's inputs (0 = off).")
    d_noise_decay_epochs: float = Field(
        0.0, ge=0, description="Instance noise decays linearly to zero over this many epochs (0 = constant)."
    )
    r1_gamma: float = Field(0.0, ge=0, description="R1 penalty weight on real images (0 = off).")
    r1_every: int = Field(
        16, ge=1, description="Apply R1 lazily every this many steps (scaled to match), as a separate D step with "
        "stylegan2's Adam correction (lr · c, β^c, c = k/(k+1)) when above 1.",
    )
    progressive: bool = Field(False, description="Progressive growing: start small, add resolutions with fade-in.")
    progressive_start: int = Field(8, ge=4, description="Side of the first progressive-growing stage.")
    progressive_epochs: float = Field(1.0, gt=0, description="Epochs spent at each progressive-growing resolution.")
    progressive_fade: float = Field(
        0.5, ge=0, le=1, description="Fraction of each new stage spent fading the new resolution in."
    )
    diffaugment: str = Field(
        "", description="DiffAugment policy for D's real and fake inputs, e.g. color,translation,cutout ('' = off)."
    )
    perceptual_weight: float = Field(0.0, ge=0, description="Weight of the VGG perceptual loss G(z) vs real batch (0 = off).")
    gram_weight: float = Field(0.0, ge=0, description="Weight of the Gram-matrix texture loss G(z) vs real batch (0 = off).")


class GanConfig(Config):
    """A GAN experiment."""

    model: GanModelConfig = Field(default_factory=GanModelConfig)
    training: GanTrainingConfig = Field(default_factory=GanTrainingConfig)


register_family("gan", GanConfig)
