"""Diffusion training (seed note 003, phase 4) on diffusers' U-Net and schedulers.

genlab adds what diffusers leaves to its example scripts: the training method (uniform t, the ε / v /
x₀ target, AdamW or Adam, EMA, mixed precision, micro-batches), resume, and sampling through the
family-neutral `SampleOptions`: `genlab sample --sampler ddim --steps 50 --eta 0`. Training grids
use the cheap `training.grid_sampler` (DPM-Solver++, 20 steps) rather than 1,000 ancestral steps.
The loss is also logged per quarter of t (`loss_t0` … `loss_t3`), so users see where the model fails.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from genlab.config import Config
from genlab.data import Batch
from genlab.errors import ConfigError
from genlab.methods.base import Method, SampleOptions, StepContext
from genlab.methods.ema import EMA
from genlab.methods.optim import MixedPrecision, accumulate, adam, schedule_learning_rates, split
from genlab.methods.speed import apply_speed_switches
from genlab.models import DataShape
from genlab.models.diffusion import DIFFUSION_ARCHITECTURES, check_diffusion, loss_by_quarter, quarter_means


class DDPMMethod(Method):
    """A denoising diffusion model: one U-Net trained on q(x_t | x₀) at uniform t, sampled with diffusers' schedulers."""

    family = "ddpm"
    architectures = DIFFUSION_ARCHITECTURES

    @classmethod
    def check_config(cls, cfg: Config, source: str) -> None:
        """The architecture name, a U-Net that fits the image size, attention where the U-Net goes."""
        DIFFUSION_ARCHITECTURES.require(cfg.model.architecture, "model.architecture", source)
        try:
            check_diffusion(cfg.model, cfg.data.image_size)
        except ConfigError as err:
            raise ConfigError(f"Invalid configuration ({source}): data.image_size={cfg.data.image_size}, "
                              f"model.channel_mults={cfg.model.channel_mults}: {err}") from None

    def __init__(self, cfg: Config, data: DataShape, device: torch.device) -> None:
        t = cfg.training
        self.cfg, self.device = cfg, device
        self.shape = (data.channels, data.image_size, data.image_size)
        self.diffusion = DIFFUSION_ARCHITECTURES.get(cfg.model.architecture)(cfg.model, data).to(device)
        self.unet = self.diffusion.unet
        betas = (t.beta1, t.beta2)
        if t.optimizer == "adamw":
            kernel = {"fused": True} if t.fused_adam else {"foreach": True}
            self.opt = torch.optim.AdamW(self.unet.parameters(), lr=t.lr_g, betas=betas, weight_decay=t.weight_decay,
                                         **kernel)
        else:
            self.opt = adam(self.unet.parameters(), t.lr_g, betas, t.weight_decay, t.fused_adam)
        self.ema = EMA(self.unet, t.ema_decay, t.ema_warmup) if t.ema_decay > 0 else None
        apply_speed_switches(t, device, (self.unet,), (self.ema and self.ema.model,))
        self.precision = MixedPrecision(t.amp, device, t.grad_clip)
        self.diagnose = cfg.logging.diagnostics
        self.precision.track_norm = self.diagnose or t.nan_guard != "off"  # the norm also skips NaN/Inf steps
        self.noise_rng = torch.Generator(device=device).manual_seed(cfg.data.seed + 1)

    def make_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_T ~ N(0, I), n×C×H×W."""
        gen = generator if generator is not None else self.noise_rng
        return torch.randn(n, *self.shape, generator=gen, device=gen.device).to(self.device)

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One optimiser step on the mean squared error against the target at uniformly drawn t."""
        t = self.cfg.training
        stats = schedule_learning_rates(t, ctx, [("lr", self.opt, t.lr_g)])
        parts = t.grad_accum
        totals: dict[str, torch.Tensor] = {}
        self.opt.zero_grad(set_to_none=True)
        for images in split(batch.images, parts):
            with self.precision.autocast():
                per_sample, steps = self.diffusion.loss(images, generator=self.noise_rng)
            loss = per_sample.mean()
            self.precision.backward(loss / parts)
            accumulate(totals, {"loss": loss.detach(), **loss_by_quarter(per_sample, steps, self.diffusion.num_timesteps)})
        norm = self.precision.step(self.opt, self.unet, totals)  # totals: the NaN guard's check too
        if self.diagnose:
            stats["grad_norm"] = norm
        if self.ema is not None:
            self.ema.update(self.unet)
        self.precision.update()
        stats.update({key: value / parts for key, value in totals.items()})
        return stats

    def interval_values(self, means: dict[str, float]) -> dict[str, float]:
        """Turn the per-quarter sums and counts into the mean loss per quarter of t (quarters never drawn left out)."""
        out = {k: v for k, v in means.items() if not (k.startswith("loss_t") and k.endswith(("_sum", "_count")))}
        out.update(quarter_means(means))
        return out

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, labels: torch.Tensor | None = None,
               options: SampleOptions | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Denoise x_T with the chosen sampler (training.sampler / sampling_steps / eta unless options say otherwise)."""
        options = options or SampleOptions()
        t = self.cfg.training
        unet = self.ema.model if (options.ema and self.ema is not None) else self.unet
        return self.diffusion.sample(
            noise.to(self.device), sampler=options.sampler or t.sampler, steps=options.steps or t.sampling_steps,
            eta=t.eta if options.eta is None else options.eta, generator=generator, progress=options.progress,
            unet=unet)

    def grid_options(self) -> SampleOptions:
        """Training grids use the cheap sampler (DPM-Solver++ with 20 steps by default)."""
        t = self.cfg.training
        return SampleOptions(sampler=t.grid_sampler, steps=t.grid_steps, eta=0.0)

    def networks(self) -> dict[str, nn.Module]:
        return {"unet": self.unet}

    def state_dict(self) -> dict[str, Any]:
        return {"unet": self.unet.state_dict(), "opt": self.opt.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "noise_rng": self.noise_rng.get_state(), "scaler": self.precision.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.unet.load_state_dict(state["unet"])
        self.opt.load_state_dict(state["opt"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.noise_rng.set_state(state["noise_rng"])
        self.precision.scaler.load_state_dict(state["scaler"])
