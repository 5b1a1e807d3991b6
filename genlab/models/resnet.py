"""Residual generator and discriminator (SNGAN/BigGAN style) with self-attention and class conditioning.

The generator goes z (+ class embedding) → linear → C×s0×s0, then residual up-blocks (nearest,
pixel-shuffle or transposed-conv up-sampling) with batch norm that is class-conditional when the
model is conditional, self-attention after the blocks whose output side is in
`attention_resolutions`, and BN → ReLU → conv → tanh (`final_relu=false`: seed note 004's BN → conv
→ tanh, without the ReLU). Seed note 004's fix is built in: the last
conv gets no spectral norm (unless `final_sn` asks to reproduce the bug) and its initial weights are
scaled (`final_init_scale`, 0.1) so tanh starts in its linear regime.

The discriminator uses residual down-blocks (optionally spectrally normalised), attention at the
chosen resolutions, global sum pooling, a linear logit, and for conditional models a projection
term ⟨embed(y), h⟩ (Miyato & Koyama) and/or an auxiliary classifier head (AC-GAN).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.models.dcgan import default_num_blocks, resolution_ladder
from genlab.models.layers import ConditionalBatchNorm2d, SelfAttention, init_weights, maybe_spectral_norm, norm_layer
from genlab.models.progressive import GrowingDiscriminator, GrowingGenerator


def _widths(base: int, blocks: int, cap: int) -> list[int]:
    return [min(base * 2 ** (blocks - i), cap) for i in range(blocks + 1)]


class UpBlock(nn.Module):
    """Pre-activation residual block that up-samples to `size` (BN → ReLU → up → conv → BN → ReLU → conv)."""

    def __init__(self, in_ch: int, out_ch: int, size: int, upsample: str, norm: str,
                 num_classes: int = 0, embed_dim: int = 0, spectral_norm: bool = False) -> None:
        super().__init__()
        self.size = size
        self.upsample = upsample
        conditional = num_classes > 0 and embed_dim > 0
        self.norm1 = ConditionalBatchNorm2d(in_ch, num_classes, embed_dim) if conditional else norm_layer(norm, in_ch)
        self.norm2 = ConditionalBatchNorm2d(out_ch, num_classes, embed_dim) if conditional else norm_layer(norm, out_ch)
        if upsample == "pixel_shuffle":
            self.up_conv = maybe_spectral_norm(nn.Conv2d(in_ch, in_ch * 4, 3, padding=1), spectral_norm)
            self.shuffle = nn.PixelShuffle(2)
        elif upsample == "convtranspose":
            self.up_conv = maybe_spectral_norm(nn.ConvTranspose2d(in_ch, in_ch, 4, stride=2, padding=1), spectral_norm)
        self.conv1 = maybe_spectral_norm(nn.Conv2d(in_ch, out_ch, 3, padding=1), spectral_norm)
        self.conv2 = maybe_spectral_norm(nn.Conv2d(out_ch, out_ch, 3, padding=1), spectral_norm)
        self.skip = maybe_spectral_norm(nn.Conv2d(in_ch, out_ch, 1), spectral_norm)

    def _norm(self, layer: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return layer(x, labels) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample == "pixel_shuffle":
            x = self.shuffle(self.up_conv(x))
        elif self.upsample == "convtranspose":
            x = self.up_conv(x)
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="nearest")
        return x

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Up-sample x to this block's size."""
        h = self._up(F.relu(self._norm(self.norm1, x, labels)))
        h = self.conv2(F.relu(self._norm(self.norm2, self.conv1(h), labels)))
        skip = F.interpolate(x, size=(self.size, self.size), mode="nearest")
        return h + self.skip(skip)


class DownBlock(nn.Module):
    """Residual block that halves the resolution (ReLU → conv → ReLU → conv → avg-pool)."""

    def __init__(self, in_ch: int, out_ch: int, spectral_norm: bool, first: bool = False) -> None:
        super().__init__()
        self.first = first
        self.conv1 = maybe_spectral_norm(nn.Conv2d(in_ch, out_ch, 3, padding=1), spectral_norm)
        self.conv2 = maybe_spectral_norm(nn.Conv2d(out_ch, out_ch, 3, padding=1), spectral_norm)
        self.skip = maybe_spectral_norm(nn.Conv2d(in_ch, out_ch, 1), spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Down-sample x by two (ceil for odd sides)."""
        h = x if self.first else F.relu(x)
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(h))), 2, ceil_mode=True)
        return h + F.avg_pool2d(self.skip(x), 2, ceil_mode=True)


class ResNetGenerator(GrowingGenerator):
    """z (and optional labels) → images in [-1, 1] through residual up-blocks."""

    def __init__(self, latent_dim: int = 128, image_size: int = 32, channels: int = 3, base_channels: int = 64,
                 num_blocks: int | None = None, max_channels: int = 512, norm: str = "batch",
                 attention_resolutions: tuple[int, ...] = (), upsample: str = "nearest", num_classes: int = 0,
                 embed_dim: int = 0, spectral_norm: bool = False, final_init_scale: float = 0.1,
                 init: str = "auto", final_sn: bool = False, final_relu: bool = True) -> None:
        super().__init__()
        num_blocks = num_blocks or default_num_blocks(image_size)
        sizes = resolution_ladder(image_size, num_blocks)
        widths = _widths(base_channels, num_blocks, max_channels)
        self.latent_dim = latent_dim
        self.conditional = num_classes > 0 and embed_dim > 0
        self.stem_shape = (widths[0], sizes[0], sizes[0])
        self.stem = maybe_spectral_norm(nn.Linear(latent_dim, widths[0] * sizes[0] ** 2), spectral_norm)
        levels: list[nn.Module] = []
        for i in range(num_blocks):
            level = [UpBlock(widths[i], widths[i + 1], sizes[i + 1], upsample, norm,
                             num_classes if self.conditional else 0, embed_dim, spectral_norm)]
            if sizes[i + 1] in attention_resolutions:
                level.append(SelfAttention(widths[i + 1], spectral_norm))
            levels.append(nn.ModuleList(level))
        self.blocks = nn.ModuleList(levels)
        self.final_norm = norm_layer(norm, widths[-1])
        self.final_act = nn.ReLU() if final_relu else nn.Identity()  # Identity: seed 004's BN -> conv layout
        self.to_image = nn.Conv2d(widths[-1], channels, 3, padding=1)
        # Growing: level i of the ladder is produced after i blocks; the last block's output feeds to_image.
        self.init_growth(sizes, widths, channels)
        if init != "auto":
            init_weights(self, init)
        with torch.no_grad():
            self.to_image.weight.mul_(final_init_scale)
        # Seed 004's bug, kept to reproduce it: SN divides the scaled weight by its own norm, undoing the scale.
        self.to_image = maybe_spectral_norm(self.to_image, final_sn)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Generate images; conditional models need `labels`."""
        if self.conditional and labels is None:
            raise ValueError("this generator is conditional: pass class labels")
        def run_level(i: int, x: torch.Tensor) -> torch.Tensor:
            for module in self.blocks[i]:
                x = module(x, labels) if isinstance(module, UpBlock) else module(x)
            return x

        def to_image(x: torch.Tensor) -> torch.Tensor:
            return self.to_image(self.final_act(self.final_norm(run_level(len(self.blocks) - 1, x))))

        return torch.tanh(self.grow(self.stem(z).view(-1, *self.stem_shape), run_level, to_image))


class ResNetDiscriminator(GrowingDiscriminator):
    """images (and optional labels) → one logit per image; `aux_logits` holds AC-GAN class logits."""

    def __init__(self, image_size: int = 32, channels: int = 3, base_channels: int = 64, num_blocks: int | None = None,
                 max_channels: int = 512, attention_resolutions: tuple[int, ...] = (), spectral_norm: bool = True,
                 num_classes: int = 0, projection: bool = False, auxiliary_classifier: bool = False) -> None:
        super().__init__()
        num_blocks = num_blocks or default_num_blocks(image_size)
        sizes = resolution_ladder(image_size, num_blocks)[::-1]
        widths = _widths(base_channels, num_blocks, max_channels)[::-1][1:]
        levels: list[nn.Module] = []
        in_ch = channels
        for i, width in enumerate(widths):
            level = [DownBlock(in_ch, width, spectral_norm, first=i == 0)]
            if sizes[i + 1] in attention_resolutions:
                level.append(SelfAttention(width, spectral_norm))
            levels.append(nn.Sequential(*level))
            in_ch = width
        self.features = nn.ModuleList(levels)
        self.init_growth(sizes, [channels, *widths], channels, nn.Identity())
        self.to_logit = maybe_spectral_norm(nn.Linear(in_ch, 1), spectral_norm)
        self.embed = maybe_spectral_norm(nn.Embedding(num_classes, in_ch), spectral_norm) if projection else None
        self.aux_head = maybe_spectral_norm(nn.Linear(in_ch, num_classes), spectral_norm) if auxiliary_classifier else None
        self.aux_logits: torch.Tensor | None = None

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Score images; with projection, labels add ⟨embed(y), h⟩ to the logit."""
        h = F.relu(self.grow(images, self.features)).sum(dim=(2, 3))
        logit = self.to_logit(h).flatten()
        if self.embed is not None:
            if labels is None:
                raise ValueError("this discriminator uses projection: pass class labels")
            logit = logit + (self.embed(labels) * h).sum(1)
        self.aux_logits = self.aux_head(h) if self.aux_head is not None else None
        return logit
