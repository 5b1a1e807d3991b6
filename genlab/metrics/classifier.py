"""GASTeN's classifier metrics: how ambiguous generated images are to a binary classifier C.

- **ACD**, average confusion distance: mean |0.5 − p| over the classifier's outputs p = C(G(z)).
- **hubris**: 1 − exp(−KL̄(p‖u) / KL̄(w‖u)), the mean KL divergence of the predictions from the undecided
  u = 0.5, normalised by that of a reference spread w = linspace(0, 1, N) (GASTeN v2): 0 when every
  prediction is 0.5, 1 − e⁻¹ for the evenly spread reference, towards 1 as predictions grow confident.
- **FOCD**: the Fréchet distance between generated and real images on C's penultimate features.
- the histogram of p, to see the outputs pile up at 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from genlab.metrics.extractor_base import ClassifierFeatureExtractor
from genlab.metrics.features import DEFAULT_BATCH_SIZE, ImageSource, RealStats, cached_stats, extract_features
from genlab.metrics.fid import frechet_distance

CLASSIFIER_METRICS = ("acd", "hubris", "focd")
#: Which way each classifier metric improves: all three fall as samples grow ambiguous (acd, hubris) or real (focd).
CLASSIFIER_HIGHER_IS_BETTER: dict[str, bool] = {"acd": False, "hubris": False, "focd": False}


def average_confusion_distance(probs: torch.Tensor) -> float:
    """ACD: mean |0.5 − p| (0 = every output undecided, 0.5 = every output certain)."""
    return float((0.5 - probs.double()).abs().mean())


def mean_kl_from_uniform(probs: torch.Tensor) -> torch.Tensor:
    """Mean KL(p ‖ 0.5) of Bernoulli predictions, with 0·log 0 = 0 (so p ∈ {0, 1} gives log 2)."""
    p = probs.double()
    terms = torch.special.xlogy(p, 2 * p) + torch.special.xlogy(1 - p, 2 * (1 - p))
    return terms.mean()


def hubris(probs: torch.Tensor) -> float:
    """1 − exp(−KL̄(p‖u) / KL̄(w‖u)) with w = linspace(0, 1, N): the classifier's overconfidence on these images."""
    reference = mean_kl_from_uniform(torch.linspace(0, 1, max(len(probs), 2), dtype=torch.float64))
    return float(1 - torch.exp(-mean_kl_from_uniform(probs) / reference))


def output_histogram(probs: torch.Tensor, bins: int = 20) -> list[int]:
    """Counts of p in `bins` equal bins over [0, 1] (p = 1 falls in the last bin)."""
    return [int(c) for c in torch.histc(probs.double().clamp(0, 1), bins=bins, min=0, max=1)]


class ClassifierExtractor(ClassifierFeatureExtractor):
    """A binary classifier as a feature extractor: penultimate features, and its logit as a 1-column `logits`."""

    name = "classifier"
    metric_suffix = "_classifier"

    def network_forward(self, inputs: torch.Tensor, want_logits: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not want_logits:
            return self.classifier.features(inputs), None
        if hasattr(self.classifier, "features_and_logits"):
            features, logits = self.classifier.features_and_logits(inputs)
        else:
            features, logits = self.classifier.features(inputs), self.classifier(inputs)
        return features, logits.reshape(-1, 1)


def classifier_metrics(
    fake: ImageSource, classifier: torch.nn.Module | ClassifierExtractor, metrics: Sequence[str] = CLASSIFIER_METRICS,
    *, real: ImageSource | None = None, real_cache_key: str | None = None, bins: int = 20,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[dict[str, float], torch.Tensor, list[int]]:
    """(results, probabilities, histogram) of generated images under a binary classifier.

    `metrics` picks among acd, hubris and focd; focd compares with `real` (statistics cached under
    `real_cache_key` and the classifier's weights hash).
    """
    if not isinstance(classifier, ClassifierExtractor):
        weight = next(iter(classifier.parameters()), None)
        classifier = ClassifierExtractor(classifier, device=weight.device if weight is not None else None)
    extractor = classifier
    unknown = sorted(set(metrics) - set(CLASSIFIER_METRICS))
    if unknown:
        raise ValueError(f"unknown classifier metrics {unknown}; choose from {CLASSIFIER_METRICS}")
    fake_set = extract_features(fake, extractor, batch_size=batch_size, want_logits=True, progress=False)
    probs = torch.sigmoid(fake_set.logits.reshape(-1).double())
    results: dict[str, float] = {}
    if "acd" in metrics:
        results["acd"] = average_confusion_distance(probs)
    if "hubris" in metrics:
        results["hubris"] = hubris(probs)
    if "focd" in metrics:
        def compute() -> torch.Tensor:
            if real is None:
                raise ValueError("focd compares with real images: pass real= (or a cached real_cache_key)")
            return extract_features(real, extractor, batch_size=batch_size, progress=False).features

        stats = (cached_stats(real_cache_key, compute, extractor=extractor) if real_cache_key
                 else RealStats.from_features(compute(), keep_features=False))
        fake_stats = RealStats.from_features(fake_set.features, keep_features=False)
        results["focd"] = frechet_distance(fake_stats.mu, fake_stats.sigma, stats.mu, stats.sigma)
    return results, probs.float(), output_histogram(probs, bins)
