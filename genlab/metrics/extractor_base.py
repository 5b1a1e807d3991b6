"""What every feature extractor shares: device, fast (reduced-precision) mode, inference, identity for caches."""

from __future__ import annotations

import contextlib
import warnings
from abc import ABC, abstractmethod
from typing import Union

import torch
import torch.nn.functional as F

from genlab.data.base import convert_channels, to_float
from genlab.errors import GenlabError
from genlab.metrics.cache import tensors_sha256
from genlab.utils import select_device

FAST_PRECISIONS = ("auto", "bf16", "fp16", "int8")
FastMode = Union[bool, str]


def cpu_has_bfloat16_matrix_units() -> bool:
    """Whether this CPU has AMX tiles, the units that make bfloat16 convolutions faster than float32."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe()) if probe is not None else False


def cpu_has_int8_convolutions() -> bool:
    """Whether this PyTorch build and CPU offer oneDNN's int8 convolutions with VNNI dot products."""
    has_ops = torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qconv2d_pointwise")
    probe = getattr(torch.cpu, "_is_vnni_supported", None)
    return bool(has_ops and probe is not None and probe())


def resolve_precision(fast: FastMode, device: torch.device, int8_capable: bool) -> str:
    """"exact", "bf16", "fp16" or "int8" for a `fast` setting (False, True/"auto", or a precision's name).

    auto: fp16 autocast on CUDA; on CPU bfloat16 where AMX makes it fast, else int8 where the extractor and
    the CPU support it (VNNI), else bfloat16.
    """
    if fast is False or fast is None or fast == "exact":
        return "exact"
    choice = "auto" if fast is True else str(fast).lower()
    if choice not in FAST_PRECISIONS:
        raise GenlabError(
            f"Unknown fast precision {fast!r}; use one of {', '.join(FAST_PRECISIONS)} (or false for the exact "
            "float32 path), e.g. eval.fast=auto or `--fast-precision int8`."
        )
    if choice == "auto":
        if device.type == "cuda":
            return "fp16"
        if device.type == "cpu" and not cpu_has_bfloat16_matrix_units() and int8_capable:
            return "int8"
        return "bf16"
    if choice == "int8" and not int8_capable:
        raise GenlabError(
            f"fast=int8 is available for the Inception extractor on a CPU with VNNI (AVX512-VNNI or AVX-VNNI) "
            f"and a PyTorch build with oneDNN; this extractor on {device} has no int8 path. Use fast=auto, "
            "bf16 or fp16 instead."
        )
    return choice


class FeatureExtractor(ABC):
    """A frozen network mapping uint8 N×C×H×W batches to features (and, if it has a head, class logits).

    `fast` picks a reduced-precision path (see `resolve_precision`); `precision` says which one runs.
    """

    name: str
    metric_suffix: str = ""
    feature_dim: int

    def __init__(self, device: str | torch.device | None = None, fast: FastMode = False) -> None:
        self.device = select_device("auto") if device is None else torch.device(device)
        self.precision = resolve_precision(fast, self.device, self.int8_capable())
        if self.precision == "bf16" and self.device.type == "cpu" and not cpu_has_bfloat16_matrix_units():
            warnings.warn(
                "fast=bf16 on a CPU without AMX: bfloat16 convolutions run no faster here than genlab's exact "
                "float32 path (and move FID by ~1%), so fast=False is both faster and exact on this machine.",
                stacklevel=3,
            )

    @property
    def fast(self) -> bool:
        """Whether a reduced-precision path runs."""
        return self.precision != "exact"

    def int8_capable(self) -> bool:
        """Whether this extractor has an int8 path on its device (only the Inception network, on CPU)."""
        return False

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
        return f"{self.name}-{self.weights_sha256[:16]}-{self.precision_tag}"

    @property
    def precision_tag(self) -> str:
        """The precision as it enters cache keys: int8 paths add their calibration version."""
        return self.precision

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to bfloat16 or float16 in those fast modes; nothing in exact and int8 mode."""
        if self.precision not in ("bf16", "fp16"):
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
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

    def __init__(self, classifier: torch.nn.Module, device: str | torch.device | None = None,
                 fast: FastMode = False) -> None:
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
