"""The diffusion family's own settings (seed note 003, phase 4: linear ε → cosine → v-prediction → wider U-Net).

The U-Net is diffusers' `UNet2DModel`, the schedulers are diffusers' (DDPM, DDIM, DPM-Solver++);
these keys size the one and pick the others. Valid only with model.family=ddpm.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from genlab.config.schema import Config, ModelConfig, TrainingConfig, register_family

PredictionType = Literal["epsilon", "v_prediction", "sample"]
Sampler = Literal["ddpm", "ddim", "dpm++"]


class DdpmModelConfig(ModelConfig):
    """The denoising U-Net and the noise schedule it is trained on."""

    family: Literal["ddpm"] = Field("ddpm", description="Model family: ddpm (these keys); model.family=gan or vae switches to that family's keys.")
    architecture: str = Field("unet", description="Denoiser from the diffusion registry: unet (diffusers UNet2DModel).")
    base_channels: int = Field(128, ge=1, description="U-Net width at full resolution (seed 003: 128; 4.4 widens to 192).")
    channel_mults: list[int] | None = Field(
        [1, 2, 2, 2],
        description="Width multiplier per level; each level but the last halves the side. null keeps the deepest "
        "prefix of [1, 2, 2, 2] that divides the image size (28 px: [1, 2, 2], 28 → 14 → 7).",
    )
    layers_per_block: int = Field(2, ge=1, description="Residual blocks per U-Net level.")
    attention_resolutions: list[int] = Field(
        [8, 16], description="Feature-map sides with self-attention (seed 003: 8 and 16 px; 4.4 adds 32)."
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout in the U-Net's residual blocks.")
    timesteps: int = Field(1000, ge=2, description="T, the number of diffusion steps (seed 003: 1000).")
    beta_schedule: Literal["linear", "cosine"] = Field(
        "linear", description="linear β (Ho et al., 1e-4 to 0.02) or cosine (Nichol & Dhariwal, s = 0.008, β ≤ 0.999)."
    )
    prediction_type: PredictionType = Field(
        "epsilon", description="What the U-Net predicts: epsilon (ε), v_prediction (v = √ᾱ·ε − √(1−ᾱ)·x₀) or sample (x₀)."
    )


class DdpmTrainingConfig(TrainingConfig):
    """Optimiser defaults of seed 003's DDPM and the samplers used for evaluation and for training grids."""

    optimizer: Literal["adamw", "adam"] = Field("adamw", description="AdamW (seed 003) or Adam.")
    lr_g: float = Field(2e-4, gt=0, description="Learning rate of the U-Net (seed 003: AdamW 2e-4).")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1.")
    ema_decay: float = Field(0.9999, ge=0, lt=1, description="EMA decay of the U-Net (seed 003: 0.9999; sampling uses it).")
    sampler: Sampler = Field("ddim", description="Sampler for `genlab sample`, `evaluate` and in-training evaluation.")
    sampling_steps: int = Field(100, ge=1, description="Steps of that sampler (seed 003: DDIM with 100 steps).")
    eta: float = Field(0.0, ge=0, le=1, description="DDIM's η: 0 is deterministic DDIM, 1 adds DDPM-like noise.")
    grid_sampler: Sampler = Field("dpm++", description="Sampler for the fixed-noise grids drawn while training (cheap).")
    grid_steps: int = Field(20, ge=1, description="Steps of the grid sampler (so grids don't dominate training time).")


class DdpmConfig(Config):
    """A diffusion experiment."""

    model: DdpmModelConfig = Field(default_factory=DdpmModelConfig)
    training: DdpmTrainingConfig = Field(default_factory=DdpmTrainingConfig)

    @model_validator(mode="after")
    def _check_steps(self) -> DdpmConfig:
        T = self.model.timesteps
        for key in ("sampling_steps", "grid_steps"):
            if getattr(self.training, key) > T:
                raise ValueError(f"training.{key}={getattr(self.training, key)} is more than model.timesteps={T}; "
                                 f"a sampler can visit at most the T steps the model was trained on")
        return self


register_family("ddpm", DdpmConfig)
