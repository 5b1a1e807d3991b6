"""VAE loss terms and schedules (seed note 003, phase 3).

Conventions:
- KL: `kl_per_dim` is the closed form KL(N(μ, σ²) ‖ N(0, 1)) per sample and latent dimension;
  `kl_divergence` sums it over latent dimensions and averages over the batch (nats per image).
- Reconstruction: `reduction="mean"` (default) averages over every element N·C·H·W, i.e. L_mse is
  `F.mse_loss(recon, target)`, the scale the seed's λ_perc = λ_adv = 0.1, β = 1e-4 (phase 3.3) are set for.
  `reduction="sum"` sums over C·H·W and averages over the batch (per-image, the same scale as the KL), which
  with β = 1 makes MSE + β·KL a true negative ELBO up to constants (Gaussian decoder, σ² = 1/2). With the
  mean reduction β acts C·H·W times stronger relative to the ELBO (3072× at 32×32 RGB).
- BCE treats the [-1, 1] target as Bernoulli probabilities (x + 1) / 2. Pass the decoder's pre-tanh
  `logits` (`VAE.decode_logits`) for the exact, stable form: (tanh(a) + 1) / 2 = sigmoid(2a), so BCE uses
  logits 2a. Without them the tanh output is mapped to [0, 1] and clamped to [eps, 1 − eps].
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

RECONSTRUCTION_KINDS = ("mse", "bce", "l1")
REDUCTIONS = ("mean", "sum")
BCE_EPS = 1e-6


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, 1)) elementwise (N×D): ½(μ² + σ² − log σ² − 1)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL to the standard-normal prior, summed over latent dimensions and averaged over the batch."""
    return kl_per_dim(mu, logvar).flatten(1).sum(1).mean()


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, kind: str = "mse", reduction: str = "mean",
                        logits: torch.Tensor | None = None) -> torch.Tensor:
    """MSE, L1 or BCE between [-1, 1] images; `mean` over all elements or `sum` per image averaged over the batch."""
    if kind not in RECONSTRUCTION_KINDS:
        raise ValueError(f"unknown reconstruction loss {kind!r}; use one of {', '.join(RECONSTRUCTION_KINDS)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; use one of {', '.join(REDUCTIONS)}")
    if recon.shape != target.shape:
        raise ValueError(f"recon {tuple(recon.shape)} and target {tuple(target.shape)} must have the same shape")
    if kind == "mse":
        per_element = F.mse_loss(recon, target, reduction="none")
    elif kind == "l1":
        per_element = F.l1_loss(recon, target, reduction="none")
    else:
        probabilities = ((target + 1) / 2).clamp(0, 1)
        if logits is not None:
            if logits.shape != target.shape:
                raise ValueError(f"logits {tuple(logits.shape)} must have the target's shape {tuple(target.shape)}")
            per_element = F.binary_cross_entropy_with_logits(2 * logits, probabilities, reduction="none")
        else:
            predicted = ((recon + 1) / 2).clamp(BCE_EPS, 1 - BCE_EPS)
            per_element = F.binary_cross_entropy(predicted, probabilities, reduction="none")
    if reduction == "mean":
        return per_element.mean()
    return per_element.flatten(1).sum(1).mean()


def beta_at(step: int, beta: float, warmup_steps: int) -> float:
    """Linear KL warm-up: 0 at step 0 rising to `beta` at `warmup_steps` (and after); `beta` if no warm-up."""
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if warmup_steps == 0:
        return float(beta)
    return float(beta) * min(max(step, 0) / warmup_steps, 1.0)


def adversarial_weight_at(step: int, weight: float, start_step: int) -> float:
    """0 before `start_step`, `weight` from it on (VQGAN's disc_start / adopt_weight)."""
    return float(weight) if step >= start_step else 0.0


def active_units(posterior_means: torch.Tensor | Iterable[torch.Tensor],
                 threshold: float = 0.01) -> tuple[int, torch.Tensor]:
    """(number of active dims, per-dim Var_x[E_q(z|x) z]) from N×D posterior means (or batches of them).

    A dimension is active when its variance across data points is >= threshold (Burda et al. 2016); the
    rest are collapsed. The variance is the unbiased sample variance (N − 1), computed in float64.
    """
    if isinstance(posterior_means, torch.Tensor):
        means = posterior_means.detach().to(torch.float64)
    else:
        batches = [batch.detach().to(torch.float64) for batch in posterior_means]
        means = torch.cat(batches) if batches else torch.empty(0)
    if means.ndim != 2 or means.shape[0] < 2:
        raise ValueError(f"active_units needs N×D posterior means with N >= 2, got shape {tuple(means.shape)}")
    variance = means.var(dim=0, correction=1)
    return int((variance >= threshold).sum()), variance
