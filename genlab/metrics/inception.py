"""The FID Inception feature extractor: pool3 features (and logits) at the precision asked for.

Exact mode runs the fused float32 network of `inception_net`; fast mode autocasts it (bf16/fp16) or runs
the int8 network of `inception_int8`. Weights are found by `inception_weights`. The network's names
(`FIDInceptionV3`, `BasicConv2d`, `fuse_for_inference`, ...) and `build_fid_inception` are re-exported
here, where they lived before the network got its own module.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from genlab.metrics.extractor_base import FastMode, FeatureExtractor, cpu_has_int8_convolutions
from genlab.metrics.inception_int8 import CALIBRATION_VERSION, build_int8_inception
from genlab.metrics.inception_net import (
    INPUT_SIZE,
    NUM_LOGITS,
    POOL3_DIM,
    BasicConv2d,
    FIDInceptionV3,
    FrozenBatchNorm2d,
    FusedConvReLU,
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
    can_prepack_for_cpu,
    fid_preprocess,
    fuse_for_inference,
    tf_avg_pool,
)
from genlab.metrics.inception_weights import InceptionWeights, build_fid_inception, resolve_inception_weights
from genlab.metrics.registry import FEATURE_EXTRACTORS

__all__ = [
    "INPUT_SIZE", "NUM_LOGITS", "POOL3_DIM", "BasicConv2d", "FIDInceptionV3", "FrozenBatchNorm2d", "FusedConvReLU",
    "InceptionA", "InceptionB", "InceptionC", "InceptionD", "InceptionE", "InceptionExtractor",
    "build_fid_inception", "build_inception_extractor", "can_prepack_for_cpu", "fid_preprocess",
    "fuse_for_inference", "tf_avg_pool",
]


class InceptionExtractor(FeatureExtractor):
    """pool3 features (and 1008 logits when available) of the FID Inception network, pytorch-fid's preprocessing.

    Exact mode runs the fused float32 network; fast mode autocasts it (bf16/fp16) or, on CPUs where that
    does not pay, runs the int8 network of `inception_int8`.
    """

    name = "inception"
    feature_dim = POOL3_DIM

    def __init__(self, weights: InceptionWeights, device: str | torch.device | None = None,
                 fast: FastMode = False) -> None:
        super().__init__(device, fast)
        self.weights = weights
        prepack = self.device.type == "cpu" and self.precision == "exact" and can_prepack_for_cpu()
        network = build_fid_inception(weights).to(self.device, memory_format=torch.channels_last)
        fused = fuse_for_inference(network, prepack_for_cpu=prepack)
        self.logit_head = fused.fc
        if self.precision == "int8":
            self.network: nn.Module = build_int8_inception(fused, weights.sha256)
        else:
            self.network = fused

    def int8_capable(self) -> bool:
        return self.device.type == "cpu" and cpu_has_int8_convolutions()

    @property
    def precision_tag(self) -> str:
        if self.precision != "int8":
            return self.precision
        return f"int8v{CALIBRATION_VERSION}"

    @property
    def has_logits(self) -> bool:
        return self.weights.has_logits

    @property
    def weights_sha256(self) -> str:
        return self.weights.sha256

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return fid_preprocess(images.to(self.device))

    def network_forward(self, inputs: torch.Tensor, want_logits: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        pool3 = self.network(inputs)
        if not want_logits:
            return pool3, None
        if self.logit_head is None:
            raise ValueError("this network was built without the logit head")
        with torch.autocast(self.device.type, enabled=False):
            # The 1008 logits without the bias, as the original IS code and torch-fidelity compute them.
            return pool3, pool3.float() @ self.logit_head.weight.T


@FEATURE_EXTRACTORS.register("inception")
def build_inception_extractor(
    weights: str | Path | None = None, download: bool = False,
    device: str | torch.device | None = None, fast: FastMode = False,
) -> InceptionExtractor:
    """The FID Inception extractor with weights resolved as `resolve_inception_weights` explains."""
    return InceptionExtractor(resolve_inception_weights(weights, download=download), device=device, fast=fast)
