"""FID, KID, IS and precision/recall/density/coverage against straightforward NumPy reference formulas."""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest
import torch

from genlab.errors import DataError
from genlab.metrics import fid as fid_module
from genlab.metrics import prdc as prdc_module
from genlab.metrics.features import FeatureSet, RealStats, gaussian_statistics
from genlab.metrics.fid import fid_metric, frechet_distance
from genlab.metrics.inception_score import MissingLogitHead, inception_score, inception_score_metric
from genlab.metrics.kid import kernel_distance
from genlab.metrics.prdc import precision_recall_density_coverage

RTOL = 1e-6


def correlated_features(rng: np.random.Generator, count: int, dim: int, shift: float) -> np.ndarray:
    """Gaussian features with a random covariance and mean `shift`."""
    mixing = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    return rng.standard_normal((count, dim)) @ mixing + shift


def reference_fid(x: np.ndarray, y: np.ndarray) -> float:
    """FID via eigendecompositions: Tr sqrt(S1 S2) = sum of sqrt eigenvalues of S1^1/2 S2 S1^1/2."""
    mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)
    s_x = (x - mu_x).T @ (x - mu_x) / (len(x) - 1)
    s_y = (y - mu_y).T @ (y - mu_y) / (len(y) - 1)
    values, vectors = np.linalg.eigh(s_x)
    root_x = vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh(root_x @ s_y @ root_x), 0, None)).sum()
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(s_x) + np.trace(s_y) - 2 * trace_root)


def test_fid_matches_reference_formula():
    rng = np.random.default_rng(0)
    x, y = correlated_features(rng, 400, 24, 0.0), correlated_features(rng, 300, 24, 0.3)
    value = frechet_distance(*gaussian_statistics(x), *gaussian_statistics(y))
    assert value == pytest.approx(reference_fid(x, y), rel=RTOL)
    assert frechet_distance(*gaussian_statistics(x), *gaussian_statistics(x)) == pytest.approx(0, abs=1e-8)


@pytest.mark.skipif(importlib.util.find_spec("pytorch_fid") is None, reason="pytorch-fid is not installed")
def test_fid_matches_pytorch_fid_on_rank_deficient_statistics():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(1)
    x, y = np.abs(correlated_features(rng, 12, 40, 0.0)), np.abs(correlated_features(rng, 15, 40, 0.2))
    stats = (*gaussian_statistics(x), *gaussian_statistics(y))
    with pytest.warns(DeprecationWarning):
        expected = calculate_frechet_distance(*stats)
    assert frechet_distance(*stats) == pytest.approx(expected, rel=1e-9)


def test_fid_retries_with_offset_when_the_product_is_singular(monkeypatch: pytest.MonkeyPatch):
    calls = []
    real_sqrtm = fid_module.linalg.sqrtm

    def first_not_finite(matrix):
        calls.append(matrix)
        return np.full_like(matrix, np.nan) if len(calls) == 1 else real_sqrtm(matrix)

    monkeypatch.setattr(fid_module.linalg, "sqrtm", first_not_finite)
    rng = np.random.default_rng(2)
    mu1, s1 = gaussian_statistics(correlated_features(rng, 50, 6, 0.0))
    mu2, s2 = gaussian_statistics(correlated_features(rng, 50, 6, 1.0))
    value = frechet_distance(mu1, s1, mu2, s2, eps=1e-3)
    offset = np.eye(6) * 1e-3
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], (s1 + offset) @ (s2 + offset))
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(real_sqrtm(calls[1]).real)
    assert value == pytest.approx(expected, rel=1e-12)


def test_fid_metric_warns_with_fewer_samples_than_dimensions():
    rng = np.random.default_rng(3)
    fake = torch.from_numpy(correlated_features(rng, 10, 16, 0.0)).float()
    real = RealStats.from_features(torch.from_numpy(correlated_features(rng, 40, 16, 0.5)).float())
    with pytest.warns(UserWarning, match="10 generated images with 16-dimensional"):
        fid_metric(FeatureSet(fake), real, seed=0)


def reference_kid(x: np.ndarray, y: np.ndarray, subsets: int, size: int, seed: int) -> tuple[float, float]:
    """Unbiased MMD² with k(a, b) = (a·b/d + 1)³, written pair by pair, over torch-fidelity's subset draws."""
    rng = np.random.RandomState(seed)
    dim = x.shape[1]
    values = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), size, replace=False)]
        b = y[rng.choice(len(y), size, replace=False)]
        kernel = lambda p, q: (float(np.dot(p, q)) / dim + 1) ** 3  # noqa: E731
        within_a = sum(kernel(a[i], a[j]) for i, j in itertools.permutations(range(size), 2))
        within_b = sum(kernel(b[i], b[j]) for i, j in itertools.permutations(range(size), 2))
        across = sum(kernel(a[i], b[j]) for i in range(size) for j in range(size))
        values.append((within_a + within_b) / (size * (size - 1)) - 2 * across / size**2)
    return float(np.mean(values)), float(np.std(values))


def test_kid_matches_reference_formula():
    rng = np.random.default_rng(4)
    x, y = np.abs(correlated_features(rng, 40, 8, 0.0)), np.abs(correlated_features(rng, 30, 8, 0.5))
    mean, std = kernel_distance(x, y, subsets=4, subset_size=12, seed=7)
    expected_mean, expected_std = reference_kid(x, y, subsets=4, size=12, seed=7)
    assert mean == pytest.approx(expected_mean, rel=RTOL)
    assert std == pytest.approx(expected_std, rel=RTOL)


def test_kid_caps_the_subset_size_by_the_sample_count():
    rng = np.random.default_rng(5)
    x, y = np.abs(correlated_features(rng, 14, 6, 0.0)), np.abs(correlated_features(rng, 11, 6, 0.3))
    mean, std = kernel_distance(x, y, subsets=3, seed=0)
    assert (mean, std) == pytest.approx(reference_kid(x, y, subsets=3, size=11, seed=0), rel=RTOL)
    with pytest.raises(DataError):
        kernel_distance(x[:1], y, subsets=1)


def reference_prdc(fake: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """Kynkäänniemi et al. precision/recall (k=3, balls closed) and Naeem et al. density/coverage (k=5)."""
    def distances(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    real_real, fake_fake, fake_real = distances(real, real), distances(fake, fake), distances(fake, real)
    real_r3 = np.sort(real_real, axis=1)[:, 3]
    fake_r3 = np.sort(fake_fake, axis=1)[:, 3]
    real_r5 = np.sort(real_real, axis=1)[:, 5]
    precision = np.mean([(fake_real[i] <= real_r3).any() for i in range(len(fake))])
    recall = np.mean([(fake_real[:, j] <= fake_r3).any() for j in range(len(real))])
    density = (fake_real < real_r5[None, :]).sum() / (5 * len(fake))
    coverage = np.mean(fake_real.min(axis=0) < real_r5)
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("chunk_elements", [2**24, 97])
def test_prdc_matches_reference_formula(monkeypatch: pytest.MonkeyPatch, chunk_elements: int):
    monkeypatch.setattr(prdc_module, "CHUNK_ELEMENTS", chunk_elements)
    rng = np.random.default_rng(6)
    fake, real = correlated_features(rng, 70, 5, 0.4), correlated_features(rng, 90, 5, 0.0)
    result = precision_recall_density_coverage(torch.from_numpy(fake).float(), torch.from_numpy(real).float())
    expected = reference_prdc(fake.astype(np.float32).astype(np.float64), real.astype(np.float32).astype(np.float64))
    assert result == pytest.approx(expected, rel=RTOL)
    assert 0 < result["precision"] < 1 and 0 < result["recall"] < 1 and 0 < result["coverage"] < 1


def test_prdc_needs_more_samples_than_neighbours():
    with pytest.raises(DataError, match="k=3"):
        precision_recall_density_coverage(torch.zeros(3, 2), torch.zeros(10, 2))


def reference_inception_score(logits: np.ndarray, splits: int) -> tuple[float, float]:
    """exp(mean KL(p(y|x) || p(y))) per split (rows i·N//splits onwards, as the original code), NumPy softmax."""
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    scores = []
    bounds = [i * len(logits) // splits for i in range(splits + 1)]
    for part in (probabilities[start:stop] for start, stop in itertools.pairwise(bounds)):
        marginal = part.mean(axis=0)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(marginal)), axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def test_inception_score_on_hand_made_logits():
    classes = 5
    confident = np.tile(np.eye(classes) * 30.0, (10, 1))
    mean, std = inception_score(confident, splits=10, seed=None)
    assert mean == pytest.approx(classes, rel=1e-9) and std == pytest.approx(0, abs=1e-9)
    assert inception_score(np.zeros((20, classes)), splits=10, seed=None) == pytest.approx((1.0, 0.0))

    logits = np.random.default_rng(8).standard_normal((53, 7)) * 3
    expected = reference_inception_score(logits, 10)
    assert inception_score(logits, splits=10, seed=None) == pytest.approx(expected, rel=RTOL)
    shuffled = logits[np.random.RandomState(11).permutation(len(logits))]
    assert inception_score(logits, splits=10, seed=11) == pytest.approx(
        reference_inception_score(shuffled, 10), rel=RTOL
    )


def test_inception_score_without_logits_raises_the_clear_message():
    with pytest.raises(MissingLogitHead, match="IS needs the logit head: set GENLAB_FID_WEIGHTS"):
        inception_score_metric(FeatureSet(torch.zeros(20, 4)), None, seed=0)
    with pytest.raises(DataError, match="at least 10"):
        inception_score(np.zeros((5, 3)), splits=10)
