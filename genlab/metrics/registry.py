"""The two registries of the metrics package: metrics by name and feature extractors by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from genlab.metrics.extractor_base import FeatureExtractor
from genlab.metrics.features import FeatureSet, RealStats
from genlab.registry import Registry

MetricFunction = Callable[[FeatureSet, RealStats | None, int], dict[str, float]]
ExtractorBuilder = Callable[..., FeatureExtractor]


@dataclass(frozen=True)
class Metric:
    """A metric on features: what it needs from the real images and the generated ones, and how to compute it."""

    name: str
    compute: MetricFunction
    needs_real: bool = True
    needs_real_features: bool = False
    needs_logits: bool = False


METRICS: Registry[Metric] = Registry("metric")
FEATURE_EXTRACTORS: Registry[ExtractorBuilder] = Registry("feature extractor")


def register_metric(
    name: str, *, needs_real: bool = True, needs_real_features: bool = False, needs_logits: bool = False
) -> Callable[[MetricFunction], MetricFunction]:
    """Decorator registering `compute(fake, real, seed) -> {key: value}` in METRICS under `name`."""

    def add(compute: MetricFunction) -> MetricFunction:
        METRICS.register(name)(Metric(name, compute, needs_real, needs_real_features, needs_logits))
        return compute

    return add
