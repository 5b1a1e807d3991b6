"""DCGAN generator and discriminator for 28 to 128 px.

Two generator stems, as in the seed notes: a transposed convolution from z to a 4×4 map
(seed 000's 3-block design for 28-32 px) or a fully connected layer to C×4×4 followed by
BatchNorm1d (seed 001's 64 px design). Each block doubles the resolution; widths halve per
block from the stem down to `base_channels`. The discriminator mirrors it and ends in a
convolution to one unbounded logit (no sigmoid: losses work on logits, critics need raw scores).

With `num_classes` and `embed_dim` both are class-conditional as in seed note 002: G concatenates
a learned label embedding to z, and D reads a label map (embedding → linear → LeakyReLU, one
image-sized channel) stacked on the image's channels.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.models.layers import SelfAttention, dcgan_init, maybe_spectral_norm, norm_layer
from genlab.models.progressive import GrowingDiscriminator, GrowingGenerator


def default_num_blocks(image_size: int) -> int:
    """Blocks so that the stem starts at about 4×4: 3 up to 32 px, 4 at 64, 5 at 128."""
    blocks = 1
    while -(-image_size // 2**blocks) > 4:
        blocks += 1
    return max(blocks, 3)


def resolution_ladder(image_size: int, num_blocks: int) -> list[int]:
    """Feature-map sides from the stem to the image, halving (rounding up) per block: 28 -> [4, 7, 14, 28]."""
    sizes = [image_size]
    for _ in range(num_blocks):
        sizes.insert(0, -(-sizes[0] // 2))
    return sizes


def block_widths(base_channels: int, num_blocks: int, max_channels: int) -> list[int]:
    """Widths at each ladder level except the image: the stem is widest, the last block is base_channels."""
    return [min(base_channels * 2 ** (num_blocks - 1 - i), max_channels) for i in range(num_blocks)]


def _up(in_ch: int, out_ch: int, size_in: int, size_out: int) -> nn.ConvTranspose2d:
    """A stride-2 transposed conv mapping size_in to size_out (= 2·size_in or 2·size_in − 1)."""
    kernel = 4 if size_out == 2 * size_in else 3
    return nn.ConvTranspose2d(in_ch, out_ch, kernel, stride=2, padding=1, bias=False)


class DCGANGenerator(GrowingGenerator):
    """z (N×latent_dim) -> images (N×channels×image_size×image_size) in [-1, 1]."""

    def __init__(
        self,
        latent_dim: int = 64,
        image_size: int = 28,
        channels: int = 1,
        base_channels: int = 64,
        num_blocks: int | None = None,
        max_channels: int = 512,
        projection: str = "auto",
        norm: str = "batch",
        attention_resolutions: tuple[int, ...] = (),
        spectral_norm: bool = False,
        num_classes: int = 0,
        embed_dim: int = 0,
        final_sn: bool = False,
    ) -> None:
        super().__init__()
        num_blocks = num_blocks or default_num_blocks(image_size)
        sizes = resolution_ladder(image_size, num_blocks)
        widths = block_widths(base_channels, num_blocks, max_channels)
        if projection == "auto":
            projection = "conv" if image_size <= 32 else "linear"
        self.latent_dim = latent_dim
        self.image_size = image_size
        self.conditional = num_classes > 0 and embed_dim > 0
        self.label_embed = nn.Embedding(num_classes, embed_dim) if self.conditional else None
        stem_in = latent_dim + (embed_dim if self.conditional else 0)
        self.stem_shape = (widths[0], sizes[0], sizes[0])
        if projection == "conv":
            self.stem = nn.Sequential(
                nn.Unflatten(1, (stem_in, 1, 1)),
                maybe_spectral_norm(
                    nn.ConvTranspose2d(stem_in, widths[0], sizes[0], stride=1, padding=0, bias=False), spectral_norm
                ),
                norm_layer(norm, widths[0]),
                nn.ReLU(inplace=True),
            )
        elif projection == "linear":
            features = widths[0] * sizes[0] * sizes[0]
            self.stem = nn.Sequential(
                maybe_spectral_norm(nn.Linear(stem_in, features, bias=False), spectral_norm),
                nn.BatchNorm1d(features) if norm == "batch" else nn.Identity(),
                nn.ReLU(inplace=True),
                nn.Unflatten(1, self.stem_shape),
            )
        else:
            raise ValueError(f"unknown projection {projection!r}; use conv, linear or auto")
        levels: list[nn.Module] = []
        for i in range(num_blocks - 1):
            up = maybe_spectral_norm(_up(widths[i], widths[i + 1], sizes[i], sizes[i + 1]), spectral_norm)
            level = [up, norm_layer(norm, widths[i + 1]), nn.ReLU(inplace=True)]
            if sizes[i + 1] in attention_resolutions:
                level.append(SelfAttention(widths[i + 1], spectral_norm))
            levels.append(nn.Sequential(*level))
        self.blocks = nn.ModuleList(levels)
        self.to_image = _up(widths[-1], channels, sizes[-2], sizes[-1])
        self.init_growth(sizes, widths, channels)
        dcgan_init(self)
        self.to_image = maybe_spectral_norm(self.to_image, final_sn)  # off unless reproducing seed 004's bug

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Generate images from noise (and, when conditional, the label embedding concatenated to it)."""
        if self.label_embed is not None:
            if labels is None:
                raise ValueError("this generator is conditional: pass class labels")
            z = torch.cat([z, self.label_embed(labels).to(z.dtype)], dim=1)
        return torch.tanh(self.grow(self.stem(z), lambda i, h: self.blocks[i](h), self.to_image))


class DCGANDiscriminator(GrowingDiscriminator):
    """images -> one logit per image (N), no sigmoid."""

    def __init__(
        self,
        image_size: int = 28,
        channels: int = 1,
        base_channels: int = 64,
        num_blocks: int | None = None,
        max_channels: int = 512,
        norm: str = "batch",
        leaky_slope: float = 0.2,
        spectral_norm: bool = False,
        attention_resolutions: tuple[int, ...] = (),
        num_classes: int = 0,
        embed_dim: int = 0,
    ) -> None:
        super().__init__()
        num_blocks = num_blocks or default_num_blocks(image_size)
        sizes = resolution_ladder(image_size, num_blocks)[::-1]
        widths = block_widths(base_channels, num_blocks, max_channels)[::-1]
        self.image_size = image_size
        self.label_map = None
        if num_classes > 0 and embed_dim > 0:  # seed 002: embedding -> linear -> LeakyReLU, one image-sized channel
            self.label_map = nn.Sequential(nn.Embedding(num_classes, embed_dim),
                                           nn.Linear(embed_dim, image_size * image_size), nn.LeakyReLU(leaky_slope))
            channels += 1
        levels: list[nn.Module] = []
        in_ch = channels
        for i, width in enumerate(widths):
            conv = nn.Conv2d(in_ch, width, 4 if sizes[i] == 2 * sizes[i + 1] else 3, stride=2, padding=1, bias=i == 0)
            level = [maybe_spectral_norm(conv, spectral_norm)]
            if i > 0:  # DCGAN: no normalisation on the first layer
                level.append(norm_layer(norm, width))
            level.append(nn.LeakyReLU(leaky_slope, inplace=True))
            if sizes[i + 1] in attention_resolutions:
                level.append(SelfAttention(width, spectral_norm))
            levels.append(nn.Sequential(*level))
            in_ch = width
        self.features = nn.ModuleList(levels)
        self.init_growth(sizes, [channels, *widths], channels, nn.LeakyReLU(leaky_slope))
        self.to_logit = maybe_spectral_norm(nn.Conv2d(in_ch, 1, sizes[-1], stride=1, padding=0), spectral_norm)
        dcgan_init(self)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Score images; a conditional discriminator stacks the labels' map on them first."""
        if self.label_map is not None:
            if labels is None:
                raise ValueError("this discriminator is conditional: pass class labels")
            side = self.image_size
            label_map = self.label_map(labels).view(-1, 1, side, side).to(images.dtype)
            if images.shape[-1] != side:  # progressive growing: the current stage is smaller
                label_map = F.interpolate(label_map, size=images.shape[-2:], mode="area")
            images = torch.cat([images, label_map], dim=1)
        h = self.grow(images, self.features)
        return self.to_logit(h).flatten()
