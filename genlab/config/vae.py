"""The VAE family's own settings (seed note 003, phase 3: vanilla → +perceptual → +PatchGAN, VQGAN-lite).

L = L_rec + λ_perc·L_vgg + λ_adv·L_adv + β·L_kl, with `training.perceptual_weight` = λ_perc,
`training.adversarial_weight` = λ_adv and `training.beta` = β. Valid only with model.family=vae.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from genlab.config.schema import Config, ModelConfig, TrainingConfig, register_family


class VaeModelConfig(ModelConfig):
    """The encoder/decoder pair and, for VQGAN-lite, the PatchGAN discriminator."""

    family: Literal["vae"] = Field("vae", description="Model family: vae (these keys); model.family=gan or ddpm switches to that family's keys.")
    architecture: str = Field(
        "conv", description="Encoder/decoder pair from the VAE registry: conv (stride-2 convs down, Upsample+Conv up)."
    )
    latent_dim: int = Field(256, ge=1, description="Size of the latent z (seed 003: 256).")
    base_channels: int = Field(32, ge=1, description="Encoder width at the first block (doubles per block); the decoder mirrors it.")
    num_blocks: int | None = Field(
        None, ge=1, le=8,
        description="Down/up-sampling blocks; null halves the side while it stays even and ≥ 4 px (28 → 7, 64 → 4).",
    )
    max_channels: int = Field(512, ge=1, description="Cap on any block's width.")
    norm: Literal["batch", "group", "none"] = Field("batch", description="Normalisation in encoder and decoder blocks.")
    discriminator: Literal["none", "patch"] = Field(
        "none", description="patch adds a PatchGAN discriminator (seed 003 step 3.3, VQGAN-lite); none trains no D."
    )
    discriminator_base_channels: int = Field(64, ge=1, description="PatchGAN width at its first layer.")
    patch_layers: int = Field(3, ge=1, le=6, description="Stride-2 layers of the PatchGAN discriminator.")
    d_norm: Literal["batch", "instance", "group", "none"] = Field("batch", description="Normalisation in the PatchGAN.")
    spectral_norm_d: bool = Field(False, description="Spectral normalisation on the PatchGAN's layers.")


class VaeTrainingConfig(TrainingConfig):
    """The VAE objective's terms and their schedules; the optimiser defaults follow seed 003 step 3.1."""

    lr_g: float = Field(1e-3, gt=0, description="Learning rate of the VAE (seed 003: Adam 1e-3).")
    beta1: float = Field(0.9, ge=0, lt=1, description="Adam beta1 (Adam's default for VAEs).")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="EMA decay of the VAE weights (0 = no EMA).")
    reconstruction_loss: Literal["mse", "bce", "l1"] = Field(
        "mse", description="Reconstruction term: mse (seed 003), bce (images read as Bernoulli probabilities) or l1."
    )
    reconstruction_reduction: Literal["mean", "sum"] = Field(
        "mean",
        description="mean over every pixel (the scale seed 003's λ and β are set for) or sum per image (a true ELBO with β = 1).",
    )
    beta: float = Field(1.0, ge=0, description="β, the weight of the KL term (seed 003: 1.0 in 3.1, 1e-4 in 3.3).")
    beta_warmup_epochs: float = Field(0.0, ge=0, description="Raise β linearly from 0 over this many epochs (0 = off).")
    perceptual_weight: float = Field(
        0.0, ge=0, description="λ_perc, the VGG perceptual loss between reconstruction and input (seed 003: 0.1)."
    )
    adversarial_weight: float = Field(
        0.0, ge=0, description="λ_adv, the PatchGAN term on reconstructions (seed 003: 0.1); needs model.discriminator=patch."
    )
    adversarial_start_epochs: float = Field(
        0.0, ge=0, description="Epochs before the discriminator and its term start (VQGAN's disc_start; 0 = at once)."
    )
    loss_type: str = Field("hinge", description="GAN loss of the PatchGAN term: hinge (VQGAN), ns, bce, ls.")
    active_units_threshold: float = Field(
        0.01, gt=0, description="A latent dimension whose posterior-mean variance over a batch is below this is collapsed."
    )

    @model_validator(mode="after")
    def _check_loss_type(self) -> VaeTrainingConfig:
        if self.loss_type in ("wgan", "wgan-gp"):
            raise ValueError("the VAE's PatchGAN term supports hinge, ns, bce or ls, not Wasserstein critics")
        return self


class VaeConfig(Config):
    """A VAE experiment."""

    model: VaeModelConfig = Field(default_factory=VaeModelConfig)
    training: VaeTrainingConfig = Field(default_factory=VaeTrainingConfig)

    @model_validator(mode="after")
    def _check_discriminator(self) -> VaeConfig:
        if self.training.adversarial_weight > 0 and self.model.discriminator == "none":
            raise ValueError(
                f"training.adversarial_weight={self.training.adversarial_weight} weights a PatchGAN term, but "
                "model.discriminator=none; set model.discriminator=patch (seed 003 step 3.3) or the weight to 0"
            )
        return self


register_family("vae", VaeConfig)
