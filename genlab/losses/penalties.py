"""Regularisers on the discriminator: gradient penalty (WGAN-GP) and R1, plus instance noise."""

from __future__ import annotations

from collections.abc import Callable

import torch

from genlab.distributed import draw_global


def _input_gradients(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad.flatten(1)


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean of (‖∇D(x̂)‖₂ − 1)² over random interpolates x̂ = αx + (1 − α)x̃ (Gulrajani et al.)."""
    alpha = draw_global(lambda n: torch.rand(n, 1, 1, 1, generator=generator, device=real.device, dtype=real.dtype),
                        real.shape[0])  # under torchrun: this rank's rows of the global batch's draw
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    norms = _input_gradients(critic(mixed), mixed).norm(2, dim=1)
    return (norms - 1).pow(2).mean()


def r1_penalty(discriminator: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """Mean squared input-gradient norm on real images, E‖∇D(x)‖² (Mescheder et al.); weight γ/2 outside."""
    real = real.detach().requires_grad_(True)
    return _input_gradients(discriminator(real), real).pow(2).sum(1).mean()


def instance_noise_std(base_std: float, decay_epochs: float, epoch: float) -> float:
    """Instance-noise std at (fractional) `epoch`: linear decay to 0 over decay_epochs (0 = constant)."""
    if base_std <= 0:
        return 0.0
    if decay_epochs <= 0:
        return base_std
    return base_std * max(0.0, 1.0 - epoch / decay_epochs)
