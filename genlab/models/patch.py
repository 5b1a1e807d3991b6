"""PatchGAN and multi-scale discriminators (seed notes 002 and 003).

A PatchGAN scores overlapping patches instead of whole images: its output is a map of logits, one
per receptive field, flattened to a vector so every loss treats each patch as one sample. The
multi-scale wrapper runs copies of a discriminator on the image and on 2× and 4× average-pooled
versions, so coarse structure and fine texture are both judged; each scale's scores are averaged
per image so the scales weigh equally. Labels reach every scale, so a conditional discriminator
(projection, label map) judges each scale against the class; AC-GAN class logits are averaged too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.models.layers import dcgan_init, maybe_spectral_norm, norm_layer


class PatchDiscriminator(nn.Module):
    """pix2pix-style PatchGAN: `num_layers` stride-2 convs, then stride-1 convs to a 1-channel logit map."""

    def __init__(self, channels: int = 3, base_channels: int = 64, num_layers: int = 3, max_channels: int = 512,
                 norm: str = "batch", leaky_slope: float = 0.2, spectral_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = channels
        for i in range(num_layers + 1):
            width = min(base_channels * 2**i, max_channels)
            stride = 2 if i < num_layers else 1
            layers.append(maybe_spectral_norm(nn.Conv2d(in_ch, width, 4, stride=stride, padding=1, bias=i == 0), spectral_norm))
            if i > 0:
                layers.append(norm_layer(norm, width))
            layers.append(nn.LeakyReLU(leaky_slope, inplace=True))
            in_ch = width
        layers.append(maybe_spectral_norm(nn.Conv2d(in_ch, 1, 4, stride=1, padding=1), spectral_norm))
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def logit_map(self, images: torch.Tensor) -> torch.Tensor:
        """Per-patch logits, N×1×h×w."""
        return self.net(images)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """One score per image: the mean of its patch logits (losses see whole-image scores)."""
        return self.logit_map(images).mean(dim=(1, 2, 3))


class MultiScaleDiscriminator(nn.Module):
    """`num_scales` discriminators on the image and its 2×, 4×, ... down-sampled copies; scores averaged."""

    def __init__(self, build: Callable[[int], nn.Module], image_size: int, num_scales: int = 2) -> None:
        super().__init__()
        sizes = [-(-image_size // 2**k) for k in range(num_scales)]
        self.discriminators = nn.ModuleList(build(size) for size in sizes)
        self.aux_logits: torch.Tensor | None = None

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of the per-scale scores (N); `aux_logits` is the mean of the scales' class logits, if any."""
        scores, aux = [], []
        for k, discriminator in enumerate(self.discriminators):
            if k:
                images = F.avg_pool2d(images, 3, stride=2, padding=1, count_include_pad=False)
            scores.append(discriminator(images, labels))
            if getattr(discriminator, "aux_logits", None) is not None:
                aux.append(discriminator.aux_logits)
        self.aux_logits = torch.stack(aux).mean(0) if aux else None
        return torch.stack(scores).mean(0)
