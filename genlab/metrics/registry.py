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
    """A metric on features: what it needs, how to compute it, the result keys it writes and which way is better.

    `keys` are its results before any extractor suffix; `main_key` is the one that stands for the metric
    (kid -> kid_mean) when checkpoints or early stopping watch it by name (None: name a key instead).
    """

    name: str
    compute: MetricFunction
    needs_real: bool = True
    needs_real_features: bool = False
    needs_logits: bool = False
    keys: tuple[str, ...] = ()
    main_key: str | None = None
    higher_is_better: bool = False


METRICS: Registry[Metric] = Registry("metric")
FEATURE_EXTRACTORS: Registry[ExtractorBuilder] = Registry("feature extractor")


def register_metric(
    name: str, *, needs_real: bool = True, needs_real_features: bool = False, needs_logits: bool = False,
    keys: tuple[str, ...] | None = None, main_key: str | None = None, higher_is_better: bool = False,
) -> Callable[[MetricFunction], MetricFunction]:
    """Decorator registering `compute(fake, real, seed) -> {key: value}` in METRICS under `name`.

    `keys` default to (name,) with `name` as the main key; `higher_is_better` gives the direction of every key.
    """
    keys = keys or (name,)
    main_key = main_key or (keys[0] if len(keys) == 1 else None)

    def add(compute: MetricFunction) -> MetricFunction:
        METRICS.register(name)(Metric(name, compute, needs_real, needs_real_features, needs_logits, keys, main_key,
                                      higher_is_better))
        return compute

    return add
