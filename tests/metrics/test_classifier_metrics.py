"""ACD, hubris, output histogram and FOCD against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from genlab.metrics.classifier import (
    ClassifierExtractor,
    average_confusion_distance,
    classifier_metrics,
    hubris,
    output_histogram,
)
from genlab.metrics.fid import frechet_distance


def test_acd_hand_computed():
    assert average_confusion_distance(torch.tensor([0.5, 0.75, 0.0, 1.0])) == pytest.approx((0 + 0.25 + 0.5 + 0.5) / 4)


def test_hubris_zero_when_undecided_and_one_minus_inverse_e_on_reference_spread():
    assert hubris(torch.full((100,), 0.5)) == pytest.approx(0.0, abs=1e-12)
    assert hubris(torch.linspace(0, 1, 101, dtype=torch.float64)) == pytest.approx(1 - math.exp(-1), rel=1e-12)
    assert hubris(torch.linspace(0, 1, 101)) == pytest.approx(1 - math.exp(-1), rel=1e-6)
    confident = hubris(torch.tensor([0.0, 1.0] * 50))
    assert confident > hubris(torch.linspace(0, 1, 100)) > hubris(torch.full((100,), 0.6))
    # hand-computed: KL(0.9 || 0.5) against the 2-point reference spread {0, 1} (KL = log 2 each)
    kl = 0.9 * math.log(1.8) + 0.1 * math.log(0.2)
    assert hubris(torch.tensor([0.9, 0.9], dtype=torch.float64)) == pytest.approx(1 - math.exp(-kl / math.log(2)), rel=1e-9)


def test_output_histogram_counts_every_value_once():
    counts = output_histogram(torch.tensor([0.0, 0.04, 0.5, 0.51, 0.99, 1.0]), bins=10)
    assert sum(counts) == 6
    assert counts[0] == 2 and counts[5] == 2 and counts[9] == 2


class Tiny(nn.Module):
    """A fixed 'classifier': features are pixel means of the two halves, logit their difference."""

    channels, image_size, feature_dim = 1, 8, 2

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[..., :4].mean((1, 2, 3)), x[..., 4:].mean((1, 2, 3))], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return 4 * (f[:, 0] - f[:, 1])


def test_classifier_metrics_use_the_classifier_outputs_and_features():
    gen = torch.Generator().manual_seed(0)
    fake = torch.randint(0, 256, (40, 1, 8, 8), generator=gen, dtype=torch.uint8)
    real = torch.randint(0, 256, (50, 1, 8, 8), generator=gen, dtype=torch.uint8)
    clf = Tiny()
    results, probs, histogram = classifier_metrics(fake, clf, ("acd", "hubris", "focd"), real=real, bins=5)
    x = fake.float() / 127.5 - 1
    expected_probs = torch.sigmoid(clf(x).double())
    assert torch.allclose(probs.double(), expected_probs, atol=1e-6)
    assert results["acd"] == pytest.approx(float((expected_probs - 0.5).abs().mean()), rel=1e-6)
    assert results["hubris"] == pytest.approx(hubris(expected_probs), rel=1e-6)
    assert sum(histogram) == 40
    f_fake = clf.features(x).double().numpy()
    f_real = clf.features(real.float() / 127.5 - 1).double().numpy()
    expected_focd = frechet_distance(f_fake.mean(0), np.cov(f_fake, rowvar=False), f_real.mean(0),
                                     np.cov(f_real, rowvar=False))
    assert results["focd"] == pytest.approx(expected_focd, rel=1e-5)


def test_extractor_resizes_to_the_classifier_input():
    extractor = ClassifierExtractor(Tiny(), device="cpu")
    features, logits = extractor.extract(torch.zeros(3, 3, 16, 16, dtype=torch.uint8), want_logits=True)
    assert features.shape == (3, 2) and logits.shape == (3, 1)
