"""What every feature extractor shares: device, fast (reduced-precision) mode, inference, identity for caches."""

from __future__ import annotations

import contextlib
import warnings
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from genlab.data.base import convert_channels, to_float
from genlab.metrics.cache import tensors_sha256
from genlab.utils import select_device


def cpu_has_bfloat16_matrix_units() -> bool:
    """Whether this CPU has AMX tiles, the units that make bfloat16 convolutions faster than float32."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe()) if probe is not None else False


class FeatureExtractor(ABC):
    """A frozen network mapping uint8 N×C×H×W batches to features (and, if it has a head, class logits)."""

    name: str
    metric_suffix: str = ""
    feature_dim: int

    def __init__(self, device: str | torch.device | None = None, fast: bool = False) -> None:
        self.device = select_device("auto") if device is None else torch.device(device)
        self.fast = fast
        if fast and self.device.type == "cpu" and not cpu_has_bfloat16_matrix_units():
            warnings.warn(
                "fast=True on a CPU without AMX: bfloat16 convolutions run slower here than genlab's exact float32 "
                "path (and move FID by ~1%), so fast=False is both faster and exact on this machine.",
                stacklevel=3,
            )

    @property
    @abstractmethod
    def has_logits(self) -> bool:
        """Whether `extract` can return class logits (needed by the Inception Score)."""

    @property
    @abstractmethod
    def weights_sha256(self) -> str:
        """sha256 of the tensors that determine the features."""

    @abstractmethod
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N×C×H×W batch (any device) -> the network's float input on `self.device`."""

    @abstractmethod
    def network_forward(self, inputs: torch.Tensor, want_logits: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Preprocessed batch -> (N×feature_dim features, N×K logits or None)."""

    @property
    def identity(self) -> str:
        """Extractor, weights and precision in one string: what a cached result depends on."""
        return f"{self.name}-{self.weights_sha256[:16]}-{'fast' if self.fast else 'exact'}"

    def autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast on CPU, float16 on CUDA in fast mode; nothing in exact mode."""
        if not self.fast:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def extract(self, images: torch.Tensor, want_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features (and logits) of one uint8 batch, as float32 CPU tensors."""
        if want_logits and not self.has_logits:
            raise ValueError(f"the {self.name} extractor has no logit head")
        with torch.inference_mode():
            inputs = self.preprocess(images)
            with self.autocast():
                features, logits = self.network_forward(inputs, want_logits)
            features = features.float().cpu()
            logits = logits.float().cpu() if logits is not None else None
        return features, logits


class ClassifierFeatureExtractor(FeatureExtractor):
    """A frozen classifier as an extractor: images go to its channel count, [-1, 1] and its input size.

    The classifier has `channels`, `image_size`, `feature_dim` and `features(x)`; subclasses say what
    `network_forward` returns as logits.
    """

    def __init__(self, classifier: torch.nn.Module, device: str | torch.device | None = None, fast: bool = False) -> None:
        super().__init__(device, fast)
        self.classifier = classifier.to(self.device).eval().requires_grad_(False)
        self.feature_dim = int(classifier.feature_dim)
        self._sha256 = tensors_sha256(classifier.state_dict())

    @property
    def has_logits(self) -> bool:
        return True

    @property
    def weights_sha256(self) -> str:
        return self._sha256

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> the classifier's channels -> [-1, 1] -> its input size (antialiased bilinear) if different."""
        if images.shape[1] != self.classifier.channels:
            images = convert_channels(images.cpu(), self.classifier.channels)
        x = to_float(images.to(self.device))
        size = self.classifier.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return x
