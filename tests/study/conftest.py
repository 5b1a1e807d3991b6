"""Fixtures of the study and compare tests: a cheap feature extractor in place of Inception, a private cache."""

from __future__ import annotations

import pytest

from genlab.metrics.cache import CACHE_ENV
from tests.metrics.helpers import MeanPoolExtractor


@pytest.fixture(autouse=True)
def cheap_features(monkeypatch, tmp_path):
    """Evaluation during training and `compare` use a 4×4 mean-pool extractor (Inception costs minutes on a CPU
    here; its own numbers are tested in tests/metrics), and real statistics are cached under tmp_path."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    extractor = MeanPoolExtractor()
    monkeypatch.setattr("genlab.evaluation.extractor_for", lambda *a, **k: extractor)
    monkeypatch.setattr("genlab.compare.extractor_for", lambda *a, **k: extractor)
    return extractor
