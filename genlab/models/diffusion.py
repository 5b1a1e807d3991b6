"""Gaussian diffusion (DDPM family, seed note 003 phase 4) around diffusers' U-Net and schedulers.

genlab keeps only the small closed forms that training needs as named, testable functions: the β schedules,
q(x_t | x_0) and the conversions between the ε, v and x_0 parametrisations. Sampling is diffusers' own scheduler
loop: `DDPMScheduler` (ancestral), `DDIMScheduler` (steps, η) and `DPMSolverMultistepScheduler` with
algorithm_type "dpmsolver++" (the "dpm++" sampler). Prediction types use diffusers' names: "epsilon",
"v_prediction" and "sample" (x_0).

Notation: ᾱ_t = ∏_{s≤t} (1 − β_s), with t = 0 … T−1 indexing the training steps as diffusers does;
x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε and v = √ᾱ_t·ε − √(1−ᾱ_t)·x_0 (Salimans & Ho).

Schedules: `linear_betas` is Ho et al.'s (1e-4 … 0.02, not rescaled for T ≠ 1000, like diffusers' "linear").
`cosine_betas(T, s=0.008, max_beta=0.999)` is Nichol & Dhariwal's and equals diffusers' "squaredcos_cap_v2"
bit for bit in float32 (diffusers hard-codes s = 0.008 and the 0.999 cap); any other s or cap is handed to
diffusers as `trained_betas` by `make_scheduler`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, SchedulerMixin
from tqdm.auto import tqdm

from genlab.distributed import draw_global
from genlab.errors import ConfigError
from genlab.models.base import DataShape
from genlab.models.unet import SEED_CHANNEL_MULTS, build_unet, check_unet, fit_channel_mults
from genlab.registry import Registry

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
SAMPLERS = ("ddpm", "ddim", "dpm++")
BETA_SCHEDULES = ("linear", "cosine")
# Seed names -> diffusers' names for the same built-in schedule.
DIFFUSERS_BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2", "squaredcos_cap_v2": "squaredcos_cap_v2",
                            "scaled_linear": "scaled_linear"}
_SCHEDULER_CLASSES: dict[str, type[SchedulerMixin]] = {
    "ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler,
}


# ---------------------------------------------------------------------------------------------------------------
# β schedules (float64; callers cast)


def linear_betas(T: int, start: float = 1e-4, end: float = 0.02) -> torch.Tensor:
    """Ho et al.'s linear schedule: T betas evenly spaced from start to end (float64)."""
    _check_T(T)
    return torch.linspace(start, end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: β_t = 1 − ᾱ(t+1)/ᾱ(t), ᾱ(t) = cos²((t/T + s)/(1 + s)·π/2), capped."""
    _check_T(T)
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


def make_betas(schedule: str, T: int, **kwargs: float) -> torch.Tensor:
    """The named seed schedule ("linear" or "cosine") with its keyword options."""
    if schedule == "linear":
        return linear_betas(T, **kwargs)
    if schedule == "cosine":
        return cosine_betas(T, **kwargs)
    raise ConfigError(f"Unknown beta schedule {schedule!r}: use one of {', '.join(BETA_SCHEDULES)}.")


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = ∏_{s≤t} (1 − β_s), computed in float64."""
    return torch.cumprod(1 - betas.to(torch.float64), dim=0)


def _check_T(T: int) -> None:
    """T must be a positive number of diffusion steps."""
    if T < 1:
        raise ConfigError(f"The number of diffusion steps T must be at least 1, got {T}.")


# ---------------------------------------------------------------------------------------------------------------
# Closed forms of q(x_t | x_0) and the ε / v / x_0 conversions


def _coefficients(ac: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(√ᾱ_t, √(1−ᾱ_t)) for each batch element, shaped to broadcast over `like` and in its dtype."""
    a = ac.to(device=t.device)[t].to(like.dtype)
    a = a.reshape(-1, *([1] * (like.dim() - 1)))
    return a.sqrt(), (1 - a).sqrt()


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε."""
    sa, s1a = _coefficients(alphas_cumprod, t, x0)
    return sa * x0 + s1a * noise


def predict_v(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, ac: torch.Tensor) -> torch.Tensor:
    """v = √ᾱ_t·ε − √(1−ᾱ_t)·x_0."""
    sa, s1a = _coefficients(ac, t, x0)
    return sa * noise - s1a * x0


def predict_start_from_noise(xt: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, ac: torch.Tensor) -> torch.Tensor:
    """x_0 = (x_t − √(1−ᾱ_t)·ε) / √ᾱ_t."""
    sa, s1a = _coefficients(ac, t, xt)
    return (xt - s1a * noise) / sa


def predict_noise_from_start(xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor, ac: torch.Tensor) -> torch.Tensor:
    """ε = (x_t − √ᾱ_t·x_0) / √(1−ᾱ_t)."""
    sa, s1a = _coefficients(ac, t, xt)
    return (xt - sa * x0) / s1a


def predict_start_from_v(xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor, ac: torch.Tensor) -> torch.Tensor:
    """x_0 = √ᾱ_t·x_t − √(1−ᾱ_t)·v."""
    sa, s1a = _coefficients(ac, t, xt)
    return sa * xt - s1a * v


def predict_noise_from_v(xt: torch.Tensor, t: torch.Tensor, v: torch.Tensor, ac: torch.Tensor) -> torch.Tensor:
    """ε = √ᾱ_t·v + √(1−ᾱ_t)·x_t."""
    sa, s1a = _coefficients(ac, t, xt)
    return sa * v + s1a * xt


def check_prediction_type(prediction_type: str) -> None:
    """Raise ConfigError unless prediction_type is one of diffusers' "epsilon", "v_prediction", "sample"."""
    if prediction_type not in PREDICTION_TYPES:
        raise ConfigError(
            f"Unknown prediction type {prediction_type!r}: use one of {', '.join(PREDICTION_TYPES)} "
            "(diffusers' names for ε, v and x_0)."
        )


def target_for(
    prediction_type: str, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, ac: torch.Tensor
) -> torch.Tensor:
    """The regression target of the network: ε ("epsilon"), v ("v_prediction") or x_0 ("sample")."""
    check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return predict_v(x0, noise, t, ac)
    return x0


# ---------------------------------------------------------------------------------------------------------------
# diffusers schedulers


def _builtin_betas(schedule: str, num_train_timesteps: int, **overrides: object) -> torch.Tensor:
    """diffusers' own float32 betas for a built-in schedule name."""
    keep = {k: v for k, v in overrides.items() if k in ("beta_start", "beta_end")}
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=schedule, **keep).betas


def make_scheduler(
    kind: str,
    num_train_timesteps: int = 1000,
    betas: torch.Tensor | None = None,
    beta_schedule: str = "linear",
    prediction_type: str = "epsilon",
    **overrides: object,
) -> SchedulerMixin:
    """A diffusers scheduler ("ddpm", "ddim" or "dpm++") for the given training schedule.

    With `betas=None` diffusers builds `beta_schedule` itself ("cosine" means its "squaredcos_cap_v2"). Given
    betas are checked against that built-in schedule and passed as `trained_betas` when they differ by more
    than float32 rounding (e.g. a cosine schedule with s ≠ 0.008). `overrides` go to the scheduler unchanged
    (e.g. timestep_spacing="trailing", clip_sample=False). diffusers' defaults otherwise: clip_sample=True for
    DDPM/DDIM, "leading" timestep spacing for DDPM/DDIM and "linspace" for DPM-Solver++ (2nd order), whose x0
    genlab clips likewise (thresholding at sample_max_value=1).
    """
    if kind not in _SCHEDULER_CLASSES:
        raise ConfigError(f"Unknown sampler {kind!r}: use one of {', '.join(SAMPLERS)}.")
    check_prediction_type(prediction_type)
    _check_T(num_train_timesteps)
    if beta_schedule not in DIFFUSERS_BETA_SCHEDULES:
        raise ConfigError(
            f"Unknown beta schedule {beta_schedule!r}: use one of {', '.join(DIFFUSERS_BETA_SCHEDULES)}."
        )
    name = DIFFUSERS_BETA_SCHEDULES[beta_schedule]
    kwargs: dict[str, object] = {"num_train_timesteps": num_train_timesteps, "beta_schedule": name,
                                 "prediction_type": prediction_type}
    if betas is not None:
        if betas.dim() != 1 or betas.numel() != num_train_timesteps:
            raise ConfigError(
                f"betas must be a vector of num_train_timesteps={num_train_timesteps} values, got shape "
                f"{tuple(betas.shape)}."
            )
        given = betas.detach().cpu().to(torch.float32)
        builtin = _builtin_betas(name, num_train_timesteps, **overrides)
        if not torch.allclose(given, builtin, rtol=1e-6, atol=0.0):
            kwargs["trained_betas"] = betas.detach().cpu().to(torch.float64).numpy()
    if kind == "dpm++":
        # x0 clipped to [-1, 1] at every step, as diffusers' DDPM/DDIM do by default (clip_sample=True): its
        # "dynamic thresholding" with sample_max_value=1 is a plain clip. Unclipped, an ε-model's x0 estimate at
        # high t is x_t / sqrt(ᾱ_t), up to ~150× too large under the linear schedule, and a model that is not yet
        # good there yields saturated noise (measured in docs/families.md). thresholding=False turns it off.
        kwargs.update(algorithm_type="dpmsolver++", thresholding=True, sample_max_value=1.0)
    kwargs.update(overrides)
    return _SCHEDULER_CLASSES[kind](**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Losses by timestep quarter


def loss_by_quarter(per_sample_loss: torch.Tensor, t: torch.Tensor, T: int) -> dict[str, torch.Tensor]:
    """Per-quarter sums and counts of a batch's losses: keys loss_t{q}_sum and loss_t{q}_count, q = 0 … 3.

    Quarter q holds t in [q·T/4, (q+1)·T/4). Sums and counts rather than means because a batch may miss a
    quarter: the count-weighted mean over many steps is Σ sums / Σ counts, which equals mean(sum) / mean(count)
    over steps, so a meter that averages every key per step stays correct; `quarter_means` does the division.
    Values are detached 0-d tensors on the loss's device (no host sync).
    """
    quarter = torch.div(t.to(per_sample_loss.device) * 4, T, rounding_mode="floor").clamp(0, 3)
    loss = per_sample_loss.detach().float()
    sums = torch.zeros(4, device=loss.device).index_add_(0, quarter, loss)
    counts = torch.bincount(quarter, minlength=4).float()
    out: dict[str, torch.Tensor] = {}
    for q in range(4):
        out[f"loss_t{q}_sum"] = sums[q]
        out[f"loss_t{q}_count"] = counts[q]
    return out


def quarter_means(values: Mapping[str, float | torch.Tensor]) -> dict[str, float]:
    """loss_t{q} = loss_t{q}_sum / loss_t{q}_count from summed or averaged stats; quarters never seen are left out."""
    out: dict[str, float] = {}
    for q in range(4):
        total, count = values.get(f"loss_t{q}_sum"), values.get(f"loss_t{q}_count")
        if total is not None and count is not None and float(count) > 0:
            out[f"loss_t{q}"] = float(total) / float(count)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The model


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device (so CPU generators seed CUDA runs too)."""
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


class GaussianDiffusion(nn.Module):
    """A denoising network (diffusers UNet2DModel) with its β schedule and prediction type.

    The schedule tensors are non-persistent buffers: they follow `.to(device)` but the state dict holds only
    the U-Net's weights (under "unet."), as the schedule comes from the configuration.
    """

    def __init__(
        self, unet: nn.Module, betas: torch.Tensor, prediction_type: str = "epsilon", beta_schedule: str = "linear"
    ) -> None:
        super().__init__()
        check_prediction_type(prediction_type)
        if betas.dim() != 1 or betas.numel() < 1:
            raise ConfigError(f"betas must be a non-empty vector, got shape {tuple(betas.shape)}.")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ConfigError("Every beta must lie in (0, 1); check the schedule's start, end and max_beta.")
        self.unet = unet
        self.prediction_type = prediction_type
        self.beta_schedule = beta_schedule
        self.num_timesteps = int(betas.numel())
        self.register_buffer("betas", betas.detach().to(torch.float32), persistent=False)
        self.register_buffer("alphas_cumprod", alphas_cumprod(betas.detach()).to(torch.float32), persistent=False)
        self._betas64 = betas.detach().cpu().to(torch.float64)

    def _denoise(self, unet: nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The network's raw output (ε, v or x_0) at noisy input x and steps t."""
        extra = {} if labels is None else {"class_labels": labels}
        out = unet(x, t, **extra)
        return out.sample if hasattr(out, "sample") else out

    def loss(
        self, x0: torch.Tensor, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample MSE against the prediction target at uniform t, and those t.

        Under torchrun, t and the noise are drawn for the global batch and this rank keeps its rows.
        """
        n = x0.shape[0]
        if generator is None:
            t = draw_global(lambda m: torch.randint(0, self.num_timesteps, (m,), device=x0.device), n)
        else:
            t = draw_global(lambda m: torch.randint(0, self.num_timesteps, (m,), generator=generator,
                                                    device=generator.device), n).to(x0.device)
        noise = draw_global(lambda m: _randn((m, *x0.shape[1:]), generator, x0.device), n).to(x0.dtype)
        xt = q_sample(x0, t, noise, self.alphas_cumprod)
        prediction = self._denoise(self.unet, xt, t, labels)
        target = target_for(self.prediction_type, x0, noise, t, self.alphas_cumprod)
        per_sample = (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)
        return per_sample, t

    def forward(
        self, x0: torch.Tensor, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as `loss` (so wrappers such as DDP see the training computation)."""
        return self.loss(x0, generator, labels)

    def scheduler(self, sampler: str = "ddim", **overrides: object) -> SchedulerMixin:
        """The diffusers scheduler `sampler` for this model's schedule and prediction type."""
        return make_scheduler(sampler, self.num_timesteps, self._betas64, self.beta_schedule, self.prediction_type,
                              **overrides)

    def check_sampling(self, sampler: str, steps: int, eta: float) -> None:
        """Raise ConfigError for an unknown sampler, steps outside [1, T] or η outside [0, 1]."""
        if sampler not in SAMPLERS:
            raise ConfigError(f"Unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}.")
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.num_timesteps:
            raise ConfigError(
                f"Sampling steps must be an integer from 1 to T={self.num_timesteps} (the training steps), got "
                f"{steps!r}. The seed uses 100 DDIM steps; the ancestral 'ddpm' sampler uses up to all T."
            )
        if not 0.0 <= float(eta) <= 1.0:
            raise ConfigError(
                f"DDIM eta must be in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like noise), got {eta!r}."
            )

    @torch.no_grad()
    def sample(
        self,
        noise: torch.Tensor,
        sampler: str = "ddim",
        steps: int = 100,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        progress: bool = False,
        labels: torch.Tensor | None = None,
        unet: nn.Module | None = None,
        **scheduler_overrides: object,
    ) -> torch.Tensor:
        """Denoise x_T = noise with diffusers' scheduler loop; images in [-1, 1].

        `eta` is used by "ddim" only; `unet` replaces the model's own network (e.g. its EMA copy). The network
        runs in eval mode and gets its previous mode back afterwards.
        """
        self.check_sampling(sampler, steps, eta)
        net = self.unet if unet is None else unet
        scheduler = self.scheduler(sampler, **scheduler_overrides)
        with warnings.catch_warnings():
            # diffusers' DPM-Solver++ calls np.array on a tensor, which NumPy 2 flags with a DeprecationWarning.
            warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
            scheduler.set_timesteps(steps)  # timesteps stay on the CPU, as in diffusers' own pipelines
        if torch.unique(scheduler.timesteps).numel() != scheduler.timesteps.numel():
            # diffusers' DPM-Solver++ spacing repeats a timestep when steps == T; its step then divides by zero.
            raise ConfigError(
                f"The {sampler!r} sampler with {steps} steps visits a timestep twice (diffusers' timestep spacing "
                f"for T={self.num_timesteps}), which makes its update divide by zero. Use fewer steps "
                "(DPM-Solver++ needs about 10-50) or another sampler."
            )
        step_kwargs: dict[str, object] = {"generator": generator}
        if sampler == "ddim":
            # With x̂0 clipped (clip_sample), re-derive ε̂ from the clipped x̂0 as GLIDE does, so the step's two parts
            # agree; diffusers' default keeps the raw ε̂, which leaves grey backgrounds on black-background data
            # (Fashion-MNIST: FID measured in docs/families.md).
            step_kwargs.update(eta=float(eta), use_clipped_model_output=True)
        x = noise * scheduler.init_noise_sigma
        was_training = net.training
        net.eval()
        try:
            for t in tqdm(scheduler.timesteps, desc=f"{sampler} sampling", unit="step", disable=not progress,
                          leave=False):
                model_input = scheduler.scale_model_input(x, t)
                output = self._denoise(net, model_input, t.to(x.device).expand(x.shape[0]), labels)
                x = scheduler.step(output, t, x, **step_kwargs).prev_sample
        finally:
            net.train(was_training)
        return x.clamp(-1.0, 1.0)


#: The diffusion family's denoisers: builders (model config, data shape) -> GaussianDiffusion.
DIFFUSION_ARCHITECTURES: Registry[Callable[..., GaussianDiffusion]] = Registry("diffusion architecture")


def unet_levels(model_cfg: Any, image_size: int) -> tuple[int, ...]:
    """model.channel_mults, or (null) the deepest prefix of the seed's (1, 2, 2, 2) that divides the image size."""
    if model_cfg.channel_mults is None:
        return fit_channel_mults(image_size, SEED_CHANNEL_MULTS)
    return tuple(model_cfg.channel_mults)


def check_diffusion(model_cfg: Any, image_size: int) -> None:
    """Config-time checks of the U-Net's levels and attention sides, and of the prediction type."""
    check_unet(image_size, unet_levels(model_cfg, image_size), model_cfg.attention_resolutions)
    check_prediction_type(model_cfg.prediction_type)


@DIFFUSION_ARCHITECTURES.register("unet")
def build_unet_diffusion(model_cfg: Any, data: DataShape) -> GaussianDiffusion:
    """diffusers' UNet2DModel sized by the config, with the configured β schedule and prediction type."""
    unet = build_unet(data.image_size, data.channels, model_cfg.base_channels, unet_levels(model_cfg, data.image_size),
                      model_cfg.layers_per_block, model_cfg.attention_resolutions, model_cfg.dropout)
    betas = make_betas(model_cfg.beta_schedule, model_cfg.timesteps)
    return GaussianDiffusion(unet, betas, model_cfg.prediction_type, model_cfg.beta_schedule)
