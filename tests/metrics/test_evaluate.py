"""`evaluate()`: metric selection, flat result keys, real-statistics cache, suffixes of other extractors."""

from __future__ import annotations

import pytest
import torch

from genlab.errors import DataError, GenlabError
from genlab.metrics import FEATURE_EXTRACTORS, METRICS, evaluate, extract_features
from genlab.metrics.features import RealStats
from genlab.metrics.fid import fid_metric
from genlab.metrics.inception_score import inception_score
from genlab.metrics.kid import kernel_distance
from genlab.metrics.prdc import precision_recall_density_coverage

from .helpers import MeanPoolExtractor, synthetic_images


@pytest.fixture(scope="module")
def image_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """60 noise and 60 smooth 16×16 images."""
    return synthetic_images(60, seed=4, smooth=False, size=16), synthetic_images(60, seed=5, smooth=True, size=16)


def test_registries_list_the_metrics_and_extractors():
    assert METRICS.names() == ["fid", "is", "kid", "prdc"]
    assert FEATURE_EXTRACTORS.names() == ["domain", "inception"]


def test_all_metrics_in_one_flat_dict_equal_the_direct_functions(image_pair, meanpool):
    fake, real = image_pair
    result = evaluate(fake, real, ("fid", "kid", "is", "prdc"), extractor=meanpool, batch_size=16, seed=3)
    assert set(result) == {"fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall", "density",
                           "coverage"}
    assert all(isinstance(value, float) for value in result.values())
    fake_set = extract_features(fake, meanpool, want_logits=True, progress=False)
    real_features = extract_features(real, meanpool, progress=False).features
    assert result["fid"] == fid_metric(fake_set, RealStats.from_features(real_features), 0)["fid"]
    assert (result["kid_mean"], result["kid_std"]) == kernel_distance(fake_set.features, real_features, seed=3)
    assert (result["is_mean"], result["is_std"]) == inception_score(fake_set.logits, seed=3)
    assert {k: result[k] for k in ("precision", "recall", "density", "coverage")} == (
        precision_recall_density_coverage(fake_set.features, real_features)
    )


def test_unknown_metric_names_the_nearest_one(image_pair, meanpool):
    with pytest.raises(GenlabError, match="Did you mean 'kid'"):
        evaluate(*image_pair, ("kidd",), extractor=meanpool)


def test_real_statistics_cache_allows_real_none_afterwards(image_pair, meanpool):
    fake, real = image_pair
    with pytest.raises(DataError, match="real=None"):
        evaluate(fake, None, "kid", extractor=meanpool)
    first = evaluate(fake, real, "kid", extractor=meanpool, real_cache_key="smooth-16")
    assert evaluate(fake, None, "kid", extractor=meanpool, real_cache_key="smooth-16") == first
    with pytest.raises(DataError, match="nothing is cached under real_cache_key='other'"):
        evaluate(fake, None, "kid", extractor=meanpool, real_cache_key="other")


def test_other_extractors_suffix_their_keys(image_pair):
    fake, real = image_pair
    result = evaluate(fake, real, ("kid", "is", "prdc"), extractor=MeanPoolExtractor(suffix="_domain"))
    assert set(result) == {"kid_domain_mean", "kid_domain_std", "is_domain_mean", "is_domain_std",
                           "precision_domain", "recall_domain", "density_domain", "coverage_domain"}
