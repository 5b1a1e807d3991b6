"""Building blocks shared by the architectures: normalisation choice and initialisation."""

from __future__ import annotations

import torch.nn as nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    """A 2-D normalisation layer by name: batch, instance (affine), group (32 groups or fewer), none."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r}; use batch, instance, group or none")


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv/linear weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def maybe_spectral_norm(layer: nn.Module, enabled: bool) -> nn.Module:
    """Wrap `layer` in spectral normalisation when `enabled`."""
    return nn.utils.parametrizations.spectral_norm(layer) if enabled else layer
