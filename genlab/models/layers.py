"""Building blocks shared by the architectures: normalisation choice and initialisation."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


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


#: model.init schemes other than auto (the architecture's own).
INIT_SCHEMES = ("normal", "orthogonal", "xavier", "kaiming")


def init_weights(module: nn.Module, scheme: str) -> None:
    """Re-initialise every conv/linear weight of `module` by `scheme` (biases 0); spectrally normalised ones too."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init {scheme!r}; use auto or one of {', '.join(INIT_SCHEMES)}")
    for m in module.modules():
        if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            continue
        parametrized = nn.utils.parametrize.is_parametrized(m, "weight")
        weight = m.parametrizations.weight.original if parametrized else m.weight
        with torch.no_grad():
            if scheme == "normal":
                nn.init.normal_(weight, 0.0, 0.02)
            elif scheme == "orthogonal":
                nn.init.orthogonal_(weight, gain=1.0)
            elif scheme == "xavier":
                nn.init.xavier_uniform_(weight)
            else:
                nn.init.kaiming_normal_(weight, a=0.2, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def maybe_spectral_norm(layer: nn.Module, enabled: bool) -> nn.Module:
    """Wrap `layer` in spectral normalisation when `enabled`."""
    return nn.utils.parametrizations.spectral_norm(layer) if enabled else layer


class SelfAttention(nn.Module):
    """SAGAN self-attention: x + γ·attend(x), γ starting at 0 so the block begins as identity."""

    def __init__(self, channels: int, spectral_norm: bool = False) -> None:
        super().__init__()
        self.inner = max(channels // 8, 1)
        self.query = maybe_spectral_norm(nn.Conv2d(channels, self.inner, 1, bias=False), spectral_norm)
        self.key = maybe_spectral_norm(nn.Conv2d(channels, self.inner, 1, bias=False), spectral_norm)
        self.value = maybe_spectral_norm(nn.Conv2d(channels, channels, 1, bias=False), spectral_norm)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Add attention over all positions to x (fused kernel: the H·W × H·W matrix is never stored)."""
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2).unsqueeze(1)
        k = self.key(x).flatten(2).transpose(1, 2).unsqueeze(1)
        v = self.value(x).flatten(2).transpose(1, 2).unsqueeze(1)
        attended = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / √inner) v
        return x + self.gamma * attended.squeeze(1).transpose(1, 2).reshape(b, c, h, w)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift come from a class embedding (Miyato & Koyama; BigGAN)."""

    def __init__(self, channels: int, num_classes: int, embed_dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.to_gain = nn.Linear(embed_dim, channels)
        self.to_bias = nn.Linear(embed_dim, channels)
        nn.init.zeros_(self.to_gain.weight)
        nn.init.ones_(self.to_gain.bias)
        nn.init.zeros_(self.to_bias.weight)
        nn.init.zeros_(self.to_bias.bias)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Normalise x, then scale and shift it per sample by its label's embedding."""
        if labels is None:
            raise ValueError("conditional batch norm needs class labels")
        e = self.embed(labels)
        return self.norm(x) * self.to_gain(e)[:, :, None, None] + self.to_bias(e)[:, :, None, None]
