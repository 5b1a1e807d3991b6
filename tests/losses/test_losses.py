"""Each adversarial loss and penalty against its formula on small tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genlab.losses import build_adversarial_loss, gradient_penalty, instance_noise_std, r1_penalty

REAL = torch.tensor([2.0, -1.0, 0.5])
FAKE = torch.tensor([-0.5, 1.5, 0.0])


def test_non_saturating():
    loss = build_adversarial_loss("ns")
    expected_d = -torch.log(torch.sigmoid(REAL)).mean() - torch.log(1 - torch.sigmoid(FAKE)).mean()
    assert loss.d_loss(REAL, FAKE) == pytest.approx(expected_d.item(), rel=1e-6)
    assert loss.g_loss(FAKE) == pytest.approx(-torch.log(torch.sigmoid(FAKE)).mean().item(), rel=1e-6)


def test_bce_label_smoothing_is_one_sided():
    loss = build_adversarial_loss("bce", label_smoothing=0.1)
    p_real, p_fake = torch.sigmoid(REAL), torch.sigmoid(FAKE)
    expected = -(0.9 * torch.log(p_real) + 0.1 * torch.log(1 - p_real)).mean() - torch.log(1 - p_fake).mean()
    assert loss.d_loss(REAL, FAKE) == pytest.approx(expected.item(), rel=1e-6)
    assert loss.g_loss(FAKE) == pytest.approx(-torch.log(p_fake).mean().item(), rel=1e-6)


def test_least_squares_wasserstein_hinge():
    ls = build_adversarial_loss("ls")
    assert ls.d_loss(REAL, FAKE) == pytest.approx(0.5 * (((REAL - 1) ** 2).mean() + (FAKE**2).mean()).item())
    assert ls.g_loss(FAKE) == pytest.approx(0.5 * ((FAKE - 1) ** 2).mean().item())  # (1.5² + 0.5² + 1²) / 6
    assert ls.g_loss(FAKE).item() == pytest.approx(0.583333, rel=1e-5)
    wgan = build_adversarial_loss("wgan-gp")
    assert wgan.gradient_penalty and wgan.d_loss(REAL, FAKE) == pytest.approx((FAKE.mean() - REAL.mean()).item())
    assert wgan.g_loss(FAKE) == pytest.approx(-FAKE.mean().item()) and not wgan.weight_clipping
    plain = build_adversarial_loss("wgan")
    assert plain.weight_clipping and not plain.gradient_penalty
    assert plain.d_loss(REAL, FAKE).item() == pytest.approx(1 / 3 - 0.5)  # E[D(fake)] − E[D(real)]
    assert plain.g_loss(FAKE).item() == pytest.approx(-1 / 3)
    hinge = build_adversarial_loss("hinge")
    expected = F.relu(1 - REAL).mean() + F.relu(1 + FAKE).mean()
    assert hinge.d_loss(REAL, FAKE) == pytest.approx(expected.item())
    assert hinge.g_loss(FAKE) == pytest.approx(-FAKE.mean().item())


def test_label_smoothing_is_refused_by_losses_without_targets():
    assert build_adversarial_loss("bce", label_smoothing=0.2).real_target == pytest.approx(0.8)
    for name in ("ns", "ls", "wgan", "wgan-gp", "hinge"):
        build_adversarial_loss(name)
        with pytest.raises(ValueError, match=f"{name} loss"):
            build_adversarial_loss(name, label_smoothing=0.1)


def test_gradient_penalty_interpolates_real_and_fake():
    """A critic whose gradient is x itself (½‖x‖²): the penalty depends on exactly where the interpolates fall."""

    def critic(x):
        return 0.5 * x.flatten(1).pow(2).sum(1)

    real, fake = torch.randn(6, 2, 3, 3), 3 * torch.randn(6, 2, 3, 3)
    alpha = torch.rand(6, 1, 1, 1, generator=torch.Generator().manual_seed(5))
    mixed = alpha * real + (1 - alpha) * fake
    expected = (mixed.flatten(1).norm(dim=1) - 1).pow(2).mean()
    got = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(5))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert got.item() != pytest.approx(gradient_penalty(critic, real, real, torch.Generator().manual_seed(5)).item())
    fake.requires_grad_(True)
    gradient_penalty(critic, real, fake).backward()
    assert fake.grad is None  # interpolates are built from detached images: the penalty trains D only


def test_gradient_penalty_zero_for_unit_gradient_critic():
    w = torch.randn(3 * 4 * 4)
    w = w / w.norm()

    def critic(x):
        return x.flatten(1) @ w

    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    assert gradient_penalty(lambda x: 3 * critic(x), real, fake).item() == pytest.approx(4.0, rel=1e-5)


def test_r1_matches_autograd():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    real = torch.randn(6, 3, 2, 2)
    x = real.clone().requires_grad_(True)
    grads = torch.stack([torch.autograd.grad(net(x[i : i + 1]).sum(), x)[0][i] for i in range(6)])
    expected = grads.flatten(1).pow(2).sum(1).mean()
    assert r1_penalty(lambda t: net(t).flatten(), real).item() == pytest.approx(expected.item(), rel=1e-5)


def test_instance_noise_schedule():
    assert instance_noise_std(0.15, 200, 0) == pytest.approx(0.15)
    assert instance_noise_std(0.15, 200, 100) == pytest.approx(0.075)
    assert instance_noise_std(0.15, 200, 250) == 0.0
    assert instance_noise_std(0.1, 0, 1000) == 0.1
    assert math.isclose(instance_noise_std(0.0, 10, 1), 0.0)
