"""VAE losses: KL against torch.distributions, reconstruction reductions and BCE, schedules, active units."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from genlab.losses.vae import (
    active_units,
    adversarial_weight_at,
    beta_at,
    kl_divergence,
    kl_per_dim,
    reconstruction_loss,
)


def posterior(n: int = 5, d: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, d, generator=g, dtype=torch.float64) * 2
    logvar = torch.randn(n, d, generator=g, dtype=torch.float64) * 1.5
    return mu, logvar


def test_kl_per_dim_matches_torch_distributions():
    mu, logvar = posterior()
    expected = torch_kl(Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    per_dim = kl_per_dim(mu, logvar)
    assert per_dim.shape == mu.shape
    torch.testing.assert_close(per_dim, expected)
    torch.testing.assert_close(kl_divergence(mu, logvar), expected.sum(1).mean())


def test_kl_is_zero_at_prior_and_scales_with_dims():
    zeros = torch.zeros(3, 4)
    assert kl_divergence(zeros, zeros) == 0
    # one unit of mean in every dim costs 0.5 nats per dim: summed over 4 dims, averaged over 3 samples
    assert kl_divergence(torch.ones(3, 4), zeros).item() == pytest.approx(2.0)


def test_kl_gradient_matches_closed_form():
    mu, logvar = posterior(3, 4)
    mu.requires_grad_()
    logvar.requires_grad_()
    kl_divergence(mu, logvar).backward()
    torch.testing.assert_close(mu.grad, mu.detach() / 3)
    torch.testing.assert_close(logvar.grad, 0.5 * (logvar.detach().exp() - 1) / 3)


def images(seed: int, shape: tuple[int, ...] = (4, 3, 8, 8)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


@pytest.mark.parametrize("kind,reference", [("mse", F.mse_loss), ("l1", F.l1_loss)])
def test_reconstruction_reductions(kind, reference):
    recon, target = images(0), images(1)
    torch.testing.assert_close(reconstruction_loss(recon, target, kind), reference(recon, target))
    per_image = torch.stack([reference(r, t, reduction="sum") for r, t in zip(recon, target, strict=True)])
    torch.testing.assert_close(reconstruction_loss(recon, target, kind, reduction="sum"), per_image.mean())
    pixels = 3 * 8 * 8
    torch.testing.assert_close(reconstruction_loss(recon, target, kind, reduction="sum"),
                               pixels * reconstruction_loss(recon, target, kind))


def test_bce_on_tanh_outputs_and_on_logits_agree():
    logits, target = images(2) * 2, images(3)
    recon = torch.tanh(logits)
    q, p = (recon + 1) / 2, (target + 1) / 2
    expected = -(p * torch.log(q) + (1 - p) * torch.log(1 - q)).mean()
    torch.testing.assert_close(reconstruction_loss(recon, target, "bce"), expected)
    torch.testing.assert_close(reconstruction_loss(recon, target, "bce", logits=logits), expected)


def test_bce_with_logits_stays_exact_where_tanh_saturates():
    logits = torch.full((1, 1, 2, 2), 30.0, dtype=torch.float64)
    target = -torch.ones_like(logits)  # confidently wrong: the true BCE is log(1 + e^60) ≈ 60 nats per pixel
    exact = reconstruction_loss(torch.tanh(logits), target, "bce", logits=logits)
    assert exact.item() == pytest.approx(60.0, rel=1e-6)
    clamped = reconstruction_loss(torch.tanh(logits), target, "bce")
    assert math.isfinite(clamped.item()) and clamped.item() == pytest.approx(-math.log(1e-6), rel=1e-3)


def test_reconstruction_rejects_bad_arguments():
    x = images(0)
    with pytest.raises(ValueError, match="unknown reconstruction"):
        reconstruction_loss(x, x, "huber")
    with pytest.raises(ValueError, match="unknown reduction"):
        reconstruction_loss(x, x, reduction="none")
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_loss(x, x[:, :1])


def test_beta_warmup_is_linear_from_zero():
    assert beta_at(0, 0.5, 100) == 0
    assert beta_at(25, 0.5, 100) == pytest.approx(0.125)
    assert beta_at(50, 0.5, 100) == pytest.approx(0.25)
    assert beta_at(100, 0.5, 100) == 0.5
    assert beta_at(10_000, 0.5, 100) == 0.5
    assert beta_at(0, 1e-4, 0) == 1e-4  # no warm-up: the full weight at once
    values = [beta_at(s, 1.0, 10) for s in range(15)]
    assert values == sorted(values)
    with pytest.raises(ValueError):
        beta_at(0, 1.0, -1)


def test_adversarial_weight_starts_at_start_step():
    assert adversarial_weight_at(0, 0.1, 1000) == 0
    assert adversarial_weight_at(999, 0.1, 1000) == 0
    assert adversarial_weight_at(1000, 0.1, 1000) == 0.1
    assert adversarial_weight_at(5000, 0.1, 1000) == 0.1
    assert adversarial_weight_at(0, 0.1, 0) == 0.1


def test_active_units_counts_collapsed_dimensions():
    g = torch.Generator().manual_seed(0)
    n = 256
    means = torch.cat([
        torch.randn(n, 3, generator=g),  # informative: variance ≈ 1
        torch.full((n, 2), 0.7),  # collapsed: posterior mean is the same for every x
        0.01 * torch.randn(n, 1, generator=g),  # nearly collapsed: variance ≈ 1e-4
    ], dim=1)
    count, variance = active_units(means)
    assert count == 3
    assert variance.shape == (6,)
    assert torch.all(variance[3:5] == 0)
    torch.testing.assert_close(variance, means.double().var(0, unbiased=True))
    assert active_units([means[:100], means[100:]])[0] == 3  # batches give the same answer
    torch.testing.assert_close(active_units([means[:100], means[100:]])[1], variance)


def test_active_units_threshold_boundary():
    means = torch.tensor([[0.5, 0.1], [-0.5, -0.1]], dtype=torch.float64)  # unbiased variances 0.5 and 0.02
    count, variance = active_units(means)
    assert count == 2 and variance[0] == 0.5
    assert active_units(means, threshold=0.5)[0] == 1  # variance equal to the threshold is active
    assert active_units(means, threshold=math.nextafter(0.5, 1.0))[0] == 0
    boundary = variance[1].item()
    assert active_units(means, threshold=boundary)[0] == 2
    assert active_units(means, threshold=math.nextafter(boundary, 1.0))[0] == 1
    assert active_units(means * 0.5)[0] == 1  # variances 0.125 and 0.005: only the first passes 0.01


def test_active_units_needs_two_points():
    with pytest.raises(ValueError, match="N >= 2"):
        active_units(torch.zeros(1, 4))
    with pytest.raises(ValueError):
        active_units(torch.zeros(4))
