"""Evaluation metrics for generative models: one file per metric, two registries, one `evaluate()`.

    from genlab.metrics import evaluate
    evaluate(fake_images, "data/real_pngs", metrics=("fid", "kid", "is", "prdc"), real_cache_key="cifar10-train")

Metrics (registry METRICS): fid, kid, is, prdc. Feature extractors (registry FEATURE_EXTRACTORS): inception
(the FID Inception network) and domain (a small CNN trained on the data set, see `train_domain_classifier`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from genlab.errors import DataError
from genlab.metrics import fid, inception_score, kid, prdc  # noqa: F401  (each registers its metric)
from genlab.metrics.classifier import CLASSIFIER_HIGHER_IS_BETTER, CLASSIFIER_METRICS
from genlab.metrics.domain import (
    DomainClassifier,
    DomainClassifierExtractor,
    load_domain_classifier,
    train_domain_classifier,
)
from genlab.metrics.extractor_base import FeatureExtractor
from genlab.metrics.features import (
    FeatureSet,
    ImageSource,
    RealStats,
    cached_stats,
    extract_features,
)
from genlab.metrics.fid import frechet_distance
from genlab.metrics.inception import FIDInceptionV3, InceptionExtractor
from genlab.metrics.inception_score import MissingLogitHead
from genlab.metrics.inception_weights import InceptionWeights, resolve_inception_weights
from genlab.metrics.kid import kernel_distance
from genlab.metrics.prdc import precision_recall_density_coverage
from genlab.metrics.registry import FEATURE_EXTRACTORS, METRICS, Metric, register_metric

__all__ = [
    "FEATURE_EXTRACTORS", "METRICS", "DomainClassifier", "DomainClassifierExtractor", "FIDInceptionV3",
    "FeatureExtractor", "FeatureSet", "InceptionExtractor", "InceptionWeights", "Metric", "RealStats",
    "build_extractor", "cached_stats", "evaluate", "extract_features", "frechet_distance", "kernel_distance",
    "load_domain_classifier", "precision_recall_density_coverage", "register_metric", "score_features",
    "resolve_inception_weights", "result_key", "result_keys", "train_domain_classifier", "watched_result",
]


def build_extractor(
    name: str, *, weights: str | Path | DomainClassifier | None = None, download: bool = False,
    device: str | torch.device | None = None, fast: bool | str = False,
) -> FeatureExtractor:
    """The registered feature extractor `name` ("inception" or "domain") with its weights resolved."""
    return FEATURE_EXTRACTORS.get(name)(weights=weights, download=download, device=device, fast=fast)


def result_key(key: str, metric: str, suffix: str) -> str:
    """Insert the extractor's suffix after the metric name: kid_mean -> kid_domain_mean, fid -> fid_domain."""
    if not suffix:
        return key
    return f"{metric}{suffix}{key[len(metric):]}" if key.startswith(f"{metric}_") or key == metric else key + suffix


def watched_result(name: str, metrics: Sequence[str]) -> tuple[str, bool] | None:
    """(result key, higher_is_better) that `name` watches among what `metrics` produce, else None.

    A metric's name stands for its main key (kid -> kid_mean, is -> is_mean); any result key (kid_std,
    recall) stands for itself. Keys are before the extractor's suffix (fid, not fid_domain).
    """
    for metric in metrics:
        if metric in CLASSIFIER_METRICS:
            if name == metric:
                return metric, CLASSIFIER_HIGHER_IS_BETTER[metric]
        elif metric in METRICS:
            spec = METRICS.get(metric)
            if name == spec.name and spec.main_key is not None:
                return spec.main_key, spec.higher_is_better
            if name in spec.keys:
                return name, spec.higher_is_better
    return None


def result_keys(metrics: Sequence[str]) -> list[str]:
    """Every result key `metrics` produce (before the extractor's suffix), in order."""
    keys: list[str] = []
    for metric in metrics:
        if metric in CLASSIFIER_METRICS:
            keys.append(metric)
        elif metric in METRICS:
            keys.extend(METRICS.get(metric).keys)
    return keys


def evaluate(
    fake: ImageSource, real: ImageSource | None, metrics: Sequence[str] | str = ("fid",), *,
    extractor: str | FeatureExtractor = "inception", batch_size: int | None = None,
    device: str | torch.device | None = None, fast: bool | str = False, real_cache_key: str | None = None,
    weights: str | Path | DomainClassifier | None = None, download: bool = False, num_workers: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """Metrics of generated images `fake` against real images `real`, as a flat {name: value} dict.

    `fake`/`real`: a tensor (float [-1, 1] or uint8), an iterable of batches or (images, labels), a folder,
    or an .npz. With `real_cache_key`, real statistics are cached (and `real` may be None once cached).
    `weights`: Inception weights path (else resolved offline; `download=True` allows pytorch-fid's file) or,
    for extractor="domain", the classifier's cache key. `fast`: reduced precision, True/"auto", "bf16", "fp16"
    or "int8" (see `resolve_precision`). `batch_size`: images per forward pass, by default 256 on CUDA and
    64 elsewhere, halved after an out-of-memory error. `seed` drives KID's subsets and IS's shuffle. IS
    without a logit head is skipped with a warning saying how to get one.
    """
    names = (metrics,) if isinstance(metrics, str) else tuple(dict.fromkeys(metrics))
    chosen = [METRICS.get(name) for name in names]
    if not isinstance(extractor, FeatureExtractor):
        extractor = build_extractor(extractor, weights=weights, download=download, device=device, fast=fast)
    want_logits = extractor.has_logits and any(metric.needs_logits for metric in chosen)
    fake_set = extract_features(
        fake, extractor, batch_size=batch_size, num_workers=num_workers, want_logits=want_logits
    )
    real_stats = None
    if any(metric.needs_real for metric in chosen):
        real_stats = _real_statistics(
            real, extractor, keep_features=any(metric.needs_real_features for metric in chosen),
            cache_key=real_cache_key, batch_size=batch_size, num_workers=num_workers,
            metric_names=[metric.name for metric in chosen if metric.needs_real],
        )
    return score_features(fake_set, real_stats, names, seed=seed, suffix=extractor.metric_suffix)


def score_features(fake: FeatureSet, real: RealStats | None, metrics: Sequence[str], *, seed: int = 0,
                   suffix: str = "") -> dict[str, float]:
    """The registered `metrics` of already extracted features (what `evaluate` does after extraction).

    IS without a logit head is skipped with a warning saying how to get one.
    """
    results: dict[str, float] = {}
    for metric in (METRICS.get(name) for name in dict.fromkeys(metrics)):
        try:
            values = metric.compute(fake, real, seed)
        except MissingLogitHead as err:
            warnings.warn(str(err), stacklevel=3)
            continue
        results.update({result_key(k, metric.name, suffix): float(v) for k, v in values.items()})
    return results


def _real_statistics(
    real: ImageSource | None, extractor: FeatureExtractor, *, keep_features: bool, cache_key: str | None,
    batch_size: int | None, num_workers: int, metric_names: list[str],
) -> RealStats:
    """Real statistics from the cache (when keyed) or from `real`."""

    def compute() -> FeatureSet:
        if real is None:
            cached = f" and nothing is cached under real_cache_key={cache_key!r} yet" if cache_key else ""
            raise DataError(
                f"The metrics {', '.join(metric_names)} compare with real images, but real=None{cached}. Pass the "
                "real images (a folder, .npz, tensor or DataLoader)."
            )
        return extract_features(real, extractor, batch_size=batch_size, num_workers=num_workers)

    if cache_key is not None:
        return cached_stats(cache_key, compute, extractor=extractor, keep_features=keep_features)
    return RealStats.from_features(compute().features, keep_features=keep_features)
