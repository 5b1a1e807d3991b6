"""Model families: each one object the loop drives with `train_step` and `sample` (registry `METHODS`)."""

from __future__ import annotations

import torch

from genlab.config import Config
from genlab.methods.base import Method, SampleOptions, StepContext, truncate
from genlab.methods.ddpm import DDPMMethod
from genlab.methods.gan import GANMethod
from genlab.methods.vae import VAEMethod
from genlab.models import DataShape
from genlab.registry import Registry

METHODS: Registry[type[Method]] = Registry("model family")
for _family in (GANMethod, VAEMethod, DDPMMethod):
    METHODS.register(_family.family)(_family)


def build_method(cfg: Config, data: DataShape, device: torch.device) -> Method:
    """The configured family's method, with freshly initialised networks on `device`."""
    return METHODS.get(cfg.model.family)(cfg, data, device)


__all__ = ["METHODS", "DDPMMethod", "GANMethod", "Method", "SampleOptions", "StepContext", "VAEMethod", "build_method", "truncate"]
