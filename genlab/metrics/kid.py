"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased polynomial-kernel MMD² over random subsets."""

from __future__ import annotations

import numpy as np
import torch

from genlab.errors import DataError
from genlab.metrics.features import FeatureSet, RealStats
from genlab.metrics.registry import register_metric

SUBSETS = 100
SUBSET_SIZE = 1000
DEGREE = 3
COEF0 = 1.0


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = DEGREE, coef0: float = COEF0) -> np.ndarray:
    """(x·y / d + coef0) ** degree for every pair of rows (gamma = 1/d, the KID convention)."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def unbiased_mmd2(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased MMD² estimate from the three kernel matrices of two equal-size samples."""
    m = k_xx.shape[0]
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kernel_distance(
    fake: np.ndarray | torch.Tensor, real: np.ndarray | torch.Tensor, *, subsets: int = SUBSETS,
    subset_size: int = SUBSET_SIZE, seed: int = 0,
) -> tuple[float, float]:
    """Mean and std of MMD² over `subsets` seeded random subsets (without replacement), like torch-fidelity.

    The subset size is capped by the smaller sample count; each subset draws fake rows, then real rows.
    """
    fake = np.asarray(fake, dtype=np.float64)
    real = np.asarray(real, dtype=np.float64)
    size = min(subset_size, len(fake), len(real))
    if size < 2:
        raise DataError(f"KID needs at least 2 images on each side; got {len(fake)} generated and {len(real)} real.")
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = fake[rng.choice(len(fake), size, replace=False)]
        y = real[rng.choice(len(real), size, replace=False)]
        values[i] = unbiased_mmd2(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))
    return float(values.mean()), float(values.std())


@register_metric("kid", needs_real_features=True, keys=("kid_mean", "kid_std"), main_key="kid_mean")
def kid_metric(fake: FeatureSet, real: RealStats | None, seed: int) -> dict[str, float]:
    """KID mean and standard deviation over subsets."""
    assert real is not None and real.features is not None
    mean, std = kernel_distance(fake.features, real.features, seed=seed)
    return {"kid_mean": mean, "kid_std": std}
