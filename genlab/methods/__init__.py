"""Model families: each one object the loop drives with `train_step` and `sample` (registry `METHODS`)."""

from __future__ import annotations

from collections.abc import Callable

from genlab.methods.base import Method, StepContext
from genlab.methods.gan import GANMethod
from genlab.registry import Registry

METHODS: Registry[Callable[..., Method]] = Registry("model family")
METHODS.register("gan")(GANMethod)

__all__ = ["METHODS", "GANMethod", "Method", "StepContext"]
