"""Each ambiguity loss against its formula on hand-computed tensors, and its gradient's direction."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.errors import GenlabError
from genlab.losses import AMBIGUITY_LOSSES, build_ambiguity_loss
from genlab.losses.ambiguity import confusion_distance, gaussian_ambiguity, kl_to_uniform

PROBS = torch.tensor([0.5, 0.9, 0.2, 1.0], dtype=torch.float64)


def test_confusion_distance_is_mean_distance_from_half():
    # |0| + |0.4| + |0.3| + |0.5| over 4
    assert confusion_distance(PROBS).item() == pytest.approx((0.0 + 0.4 + 0.3 + 0.5) / 4)


def test_kl_to_uniform_matches_bernoulli_kl():
    def kl(p: float) -> float:
        p = min(max(p, 1e-7), 1 - 1e-7)
        return p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)

    expected = sum(kl(p) for p in PROBS.tolist()) / 4
    assert kl_to_uniform(PROBS).item() == pytest.approx(expected, rel=1e-6)
    assert kl_to_uniform(torch.full((3,), 0.5)).item() == pytest.approx(0.0, abs=1e-12)
    assert kl_to_uniform(torch.ones(2, dtype=torch.float64)).item() == pytest.approx(math.log(2), rel=1e-5)


def test_gaussian_ambiguity_formula():
    var = 0.04
    expected = sum(0.5 * (math.log(var) + (p - 0.5) ** 2 / var) for p in PROBS.tolist()) / 4
    assert gaussian_ambiguity(PROBS, var).item() == pytest.approx(expected, rel=1e-12)
    assert build_ambiguity_loss("gaussian", var)(PROBS).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", AMBIGUITY_LOSSES.names())
def test_every_loss_is_smallest_at_half_and_pushes_towards_it(name):
    loss = build_ambiguity_loss(name)
    assert loss(torch.full((4,), 0.5)) < loss(torch.full((4,), 0.7))
    p = torch.tensor([0.8, 0.1], requires_grad=True)
    loss(p).backward()
    assert p.grad[0] > 0 and p.grad[1] < 0  # gradient descent moves both towards 0.5


def test_unknown_loss_names_nearest():
    with pytest.raises(GenlabError, match="gaussian"):
        build_ambiguity_loss("gausian")
