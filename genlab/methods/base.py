"""What the training loop knows about a model family: one object with `train_step` and `sample`.

A family (GAN, VAE, DDPM) is a `Method` subclass registered in `METHODS` under its
`model.family` name. It owns its architecture registry, checks its own config keys
(`check_config`), and decides what sampling costs (`grid_options`: a diffusion model draws its
training grids with a cheap sampler, not 1,000 steps every few hundred training steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from genlab.config import Config
from genlab.data import Batch
from genlab.errors import GenlabError
from genlab.registry import Registry


@dataclass(frozen=True)
class StepContext:
    """Where in training a step is: `step` counts completed steps before this one."""

    step: int
    steps_per_epoch: int
    total_steps: int

    @property
    def epoch(self) -> float:
        """Fractional epoch at the start of this step."""
        return self.step / self.steps_per_epoch

    @property
    def total_epochs(self) -> float:
        """Length of the whole run in (fractional) epochs."""
        return self.total_steps / self.steps_per_epoch


@dataclass(frozen=True)
class SampleOptions:
    """How to draw samples; each family reads the options that mean something to it and ignores the rest.

    `ema`: use the averaged weights; `truncation`: redraw |z| above it (GAN, VAE prior); `sampler`,
    `steps`, `eta`: the diffusion sampler (ddpm, ddim, dpm++), its step count and DDIM's η;
    `progress`: show a progress bar for long samplers.
    """

    ema: bool = True
    truncation: float | None = None
    sampler: str | None = None
    steps: int | None = None
    eta: float | None = None
    progress: bool = False


def truncate(noise: torch.Tensor, threshold: float, generator: torch.Generator) -> torch.Tensor:
    """Truncation trick (BigGAN): redraw every entry with |z| > threshold, trading diversity for fidelity."""
    if threshold <= 0:
        raise GenlabError(f"--truncation must be positive (e.g. 0.7), got {threshold}.")
    noise = noise.clone()
    outside = noise.abs() > threshold
    while outside.any():
        redraw = torch.randn(int(outside.sum()), generator=generator, device=generator.device).to(noise)
        noise[outside] = redraw
        outside = noise.abs() > threshold
    return noise


class Method:
    """Base of every family (GAN, VAE, DDPM): the loop calls only what is defined here."""

    #: The value of model.family this method trains.
    family: ClassVar[str]
    #: The family's own architecture registry (model.architecture is looked up here).
    architectures: ClassVar[Registry[Any]]
    #: Whether saturated sample pixels point at a failing generator (a GAN's tanh, seed 004); a diffusion model's
    #: clamped early samples or a VAE's are no such sign.
    saturation_alarm: ClassVar[bool] = False

    @classmethod
    def check_config(cls, cfg: Config, source: str) -> None:
        """Family-specific checks of registry-backed names and key combinations (raise ConfigError)."""

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached scalar tensors to log."""
        raise NotImplementedError

    def make_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latent inputs for `n` samples (on the method's device)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, labels: torch.Tensor | None = None,
               options: SampleOptions | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] for given latent inputs; `generator` seeds any randomness sampling adds."""
        raise NotImplementedError

    def interval_values(self, means: dict[str, float]) -> dict[str, float]:
        """The values logged for one interval, from the means of the step stats (a family may derive some)."""
        return means

    def grid_options(self) -> SampleOptions:
        """Options for the fixed-noise grids drawn during training (cheap by default)."""
        return SampleOptions()

    def figures(self, real: torch.Tensor) -> dict[str, tuple[torch.Tensor, int]]:
        """Family-specific figures drawn beside the sample grids from a fixed real batch: name -> (images, per row).

        A VAE shows its reconstructions and a latent interpolation; the default shows nothing extra.
        """
        return {}

    def networks(self) -> dict[str, nn.Module]:
        """The trained networks by name (for parameter counts and summaries)."""
        raise NotImplementedError

    def health(self) -> dict[str, float]:
        """Cheap family-specific health numbers logged with each interval (a GAN: EMA vs raw distance)."""
        return {}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The method's optimisers (found among its attributes): what the NaN guard scales."""
        return [value for value in vars(self).values() if isinstance(value, torch.optim.Optimizer)]

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per network."""
        return {name: sum(p.numel() for p in net.parameters()) for name, net in self.networks().items()}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""
        raise NotImplementedError
