"""Fréchet Inception Distance (Heusel et al. 2017): distance between Gaussians fitted to two feature sets."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy import linalg

from genlab.errors import GenlabError
from genlab.metrics.features import FeatureSet, RealStats, gaussian_statistics
from genlab.metrics.registry import register_metric

log = logging.getLogger(__name__)

SINGULAR_OFFSET = 1e-6
IMAGINARY_TOLERANCE = 1e-3


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = SINGULAR_OFFSET
) -> float:
    """||mu1 - mu2||² + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)), with pytorch-fid's numerical safeguards.

    If sqrtm of the product is not finite (singular product), `eps` is added to both diagonals and it is
    retried; an imaginary part whose diagonal stays within 1e-3 of zero is rounding noise and dropped.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different dimensions: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        log.warning("FID: singular covariance product; adding %g to the diagonals", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAGINARY_TOLERANCE):
            raise GenlabError(
                f"FID's matrix square root has an imaginary part of up to {np.max(np.abs(covmean.imag)):.3g}: "
                "the covariance estimates are too poor, usually because there are too few images. Use more "
                "images (at least as many as the feature dimension, ideally 10,000 or more)."
            )
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def warn_if_few_samples(count: int, dim: int, what: str) -> None:
    """Warn that a covariance from fewer samples than dimensions is rank-deficient (FID is then biased)."""
    if count < dim:
        warnings.warn(
            f"FID from {count} {what} images with {dim}-dimensional features: the covariance is rank-deficient "
            f"and the value is strongly biased and not comparable with published ones. Use at least {dim} "
            "images (10,000+ is customary).",
            stacklevel=3,
        )


@register_metric("fid")
def fid_metric(fake: FeatureSet, real: RealStats | None, seed: int) -> dict[str, float]:
    """FID between the generated features and the real statistics."""
    assert real is not None
    dim = fake.features.shape[1]
    warn_if_few_samples(len(fake), dim, "generated")
    warn_if_few_samples(real.count, dim, "real")
    mu, sigma = gaussian_statistics(fake.features)
    return {"fid": frechet_distance(mu, sigma, real.mu, real.sigma)}
