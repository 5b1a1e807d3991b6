"""What the training loop knows about a model family: one object with `train_step` and `sample`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from genlab.data import Batch


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


class Method:
    """Base of every family (GAN, VAE, DDPM): the loop calls only what is defined here."""

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached scalar tensors to log."""
        raise NotImplementedError

    def make_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latent inputs for `n` samples (on the method's device)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, labels: torch.Tensor | None = None, ema: bool = True) -> torch.Tensor:
        """Images in [-1, 1] for given latent inputs."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""
        raise NotImplementedError
