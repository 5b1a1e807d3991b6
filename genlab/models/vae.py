"""Convolutional VAE for 28 to 128 px images (seed note 003, phase 3).

The encoder halves the image with `num_blocks` stride-2 convolutions (4×4 kernel, padding 1, so an even
side halves exactly) and ends in two linear heads for the posterior mean and log-variance. The decoder
mirrors it: a linear layer to a C×s×s map, then `num_blocks` blocks of nearest-neighbour 2× up-sampling
followed by a 3×3 convolution (no transposed convolutions, hence no checkerboard artefacts), a final 3×3
convolution to the image channels, and tanh (images live in [-1, 1]).

Block rule (`default_num_blocks`): halve the side while it is even and the half is still at least 4 px.
This gives 28 -> 7×7 with 2 blocks, 32 -> 4×4 with 3, 64 -> 4×4 with 4 and 128 -> 4×4 with 5 (and e.g.
48 -> 6×6 with 3, 16 -> 4×4 with 2). An explicit `num_blocks` works whenever the side is divisible by
2**num_blocks; `check_vae` says so otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from genlab.distributed import draw_global
from genlab.errors import ConfigError
from genlab.models.base import DataShape
from genlab.models.layers import norm_layer
from genlab.registry import Registry

LEAKY_SLOPE = 0.2


def max_even_halvings(image_size: int) -> int:
    """How many times `image_size` can be halved exactly (the power of 2 dividing it)."""
    count = 0
    while image_size > 0 and image_size % 2 == 0:
        image_size //= 2
        count += 1
    return count


def default_num_blocks(image_size: int) -> int:
    """Blocks to halve the side while it is even and the half is at least 4: 28->2, 32->3, 64->4, 128->5."""
    blocks, side = 0, image_size
    while side % 2 == 0 and side // 2 >= 4:
        side //= 2
        blocks += 1
    return blocks


def check_vae(image_size: int, num_blocks: int | None, latent_dim: int) -> int:
    """Validate the VAE shape arguments and return the number of blocks (the default when None)."""
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim <= 0:
        raise ConfigError(
            f"The VAE latent dimension must be a positive integer, got latent_dim={latent_dim!r}. It is the size "
            f"of the posterior mean and log-variance vectors; set it to e.g. 16 for 28 px digits or 256 as in "
            f"seed note 003 phase 3.1."
        )
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 2:
        raise ConfigError(
            f"The VAE image size must be an integer side in pixels of at least 2, got image_size={image_size!r}. "
            f"The convolutional VAE is built for square images of 28 to 128 px; set the data's image size to "
            f"e.g. 28, 32, 64 or 128."
        )
    most = max_even_halvings(image_size)
    if num_blocks is None:
        blocks = default_num_blocks(image_size)
        if blocks == 0:
            raise ConfigError(
                f"The VAE has no default number of blocks for {image_size} px images: the default halves the side "
                f"while it is even and the half is at least 4 px, which is impossible here. Resize the data to "
                f"28, 32, 64 or 128 px (any side divisible by 8 works), or give num_blocks explicitly for an "
                f"even side divisible by 2**num_blocks."
            )
        return blocks
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks <= 0:
        raise ConfigError(
            f"The VAE needs at least one down-sampling block, got num_blocks={num_blocks!r}. Leave it unset "
            f"for the default by resolution (28 px: 2, 32 px: 3, 64 px: 4, 128 px: 5) or give a positive integer."
        )
    if num_blocks > most:
        factor = 2**num_blocks
        lower, upper = (image_size // factor) * factor, (image_size // factor + 1) * factor
        sizes = ", ".join(str(s) for s in (lower, upper) if s > 0)
        default = default_num_blocks(image_size)
        usable = (f"With {image_size} px use num_blocks between 1 and {most}{f' (default {default})' if default else ''}"
                  if most else f"No number of blocks works at {image_size} px (the side is odd)")
        raise ConfigError(
            f"The VAE encoder cannot reduce a {image_size} px image evenly with num_blocks={num_blocks}: each "
            f"block halves the side, so the side must be divisible by 2**{num_blocks} = {factor}. {usable}; "
            f"or keep num_blocks={num_blocks} with an image size divisible by {factor} (e.g. {sizes})."
        )
    return num_blocks


def block_widths(base_channels: int, num_blocks: int, max_channels: int) -> list[int]:
    """Encoder widths per block, doubling from `base_channels` and capped at `max_channels`."""
    return [min(base_channels * 2**i, max_channels) for i in range(num_blocks)]


class ConvEncoder(nn.Module):
    """images (N×channels×S×S) -> (mu, logvar), each N×latent_dim."""

    def __init__(self, image_size: int, channels: int, latent_dim: int, base_channels: int = 32,
                 num_blocks: int | None = None, max_channels: int = 512, norm: str = "batch") -> None:
        super().__init__()
        num_blocks = check_vae(image_size, num_blocks, latent_dim)
        widths = block_widths(base_channels, num_blocks, max_channels)
        self.image_size = image_size
        self.latent_dim = latent_dim
        self.final_side = image_size // 2**num_blocks
        blocks: list[nn.Module] = []
        in_ch = channels
        for width in widths:
            blocks += [nn.Conv2d(in_ch, width, 4, stride=2, padding=1, bias=norm == "none"),
                       norm_layer(norm, width), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)]
            in_ch = width
        self.features = nn.Sequential(*blocks, nn.Flatten())
        features = in_ch * self.final_side**2
        self.to_mu = nn.Linear(features, latent_dim)
        self.to_logvar = nn.Linear(features, latent_dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance of q(z|x)."""
        h = self.features(images)
        return self.to_mu(h), self.to_logvar(h)


class ConvDecoder(nn.Module):
    """z (N×latent_dim) -> images (N×channels×S×S) in [-1, 1]; `logits` gives the values before tanh."""

    def __init__(self, image_size: int, channels: int, latent_dim: int, base_channels: int = 32,
                 num_blocks: int | None = None, max_channels: int = 512, norm: str = "batch") -> None:
        super().__init__()
        num_blocks = check_vae(image_size, num_blocks, latent_dim)
        widths = block_widths(base_channels, num_blocks, max_channels)[::-1]  # widest first
        side = image_size // 2**num_blocks
        self.image_size = image_size
        self.latent_dim = latent_dim
        self.stem_shape = (widths[0], side, side)
        self.stem = nn.Sequential(
            nn.Linear(latent_dim, widths[0] * side * side),
            nn.Unflatten(1, self.stem_shape),
            norm_layer(norm, widths[0]),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        )
        blocks: list[nn.Module] = []
        for i in range(num_blocks):
            in_ch, out_ch = widths[i], widths[min(i + 1, num_blocks - 1)]
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=norm == "none"),
                       norm_layer(norm, out_ch), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)]
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.Conv2d(widths[-1], channels, 3, padding=1)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-tanh outputs a (images are tanh(a); for BCE, (tanh(a) + 1) / 2 = sigmoid(2a))."""
        return self.to_image(self.blocks(self.stem(z)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode latents to images in [-1, 1]."""
        return torch.tanh(self.logits(z))


class VAE(nn.Module):
    """Gaussian-posterior VAE with a standard-normal prior: encoder, reparameterised sample, decoder."""

    def __init__(self, image_size: int, channels: int, latent_dim: int, base_channels: int = 32,
                 num_blocks: int | None = None, max_channels: int = 512, norm: str = "batch") -> None:
        super().__init__()
        num_blocks = check_vae(image_size, num_blocks, latent_dim)
        self.image_size = image_size
        self.channels = channels
        self.latent_dim = latent_dim
        self.num_blocks = num_blocks
        self.encoder = ConvEncoder(image_size, channels, latent_dim, base_channels, num_blocks, max_channels, norm)
        self.decoder = ConvDecoder(image_size, channels, latent_dim, base_channels, num_blocks, max_channels, norm)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters (mu, logvar), each N×latent_dim."""
        return self.encoder(x)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + exp(logvar / 2) · ε with ε ~ N(0, I) drawn from `generator` (seeded noise) when given."""
        eps = draw_global(lambda n: torch.randn((n, *mu.shape[1:]), generator=generator, device=mu.device,
                                                dtype=mu.dtype), len(mu))  # torchrun: this rank's rows
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from latents."""
        return self.decoder(z)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-tanh decoder outputs (for a numerically stable BCE reconstruction loss)."""
        return self.decoder.logits(z)

    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode `num` draws from the N(0, I) prior."""
        device = next(self.parameters()).device
        return self.decode(torch.randn(num, self.latent_dim, generator=generator, device=device))

    def forward(self, x: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction in [-1, 1], mu, logvar) for one posterior sample per image."""
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar, generator)), mu, logvar


#: The VAE family's architectures: builders (model config, data shape) -> VAE.
VAE_ARCHITECTURES: Registry[Callable[..., VAE]] = Registry("VAE architecture")


@VAE_ARCHITECTURES.register("conv")
def build_conv_vae(model_cfg: Any, data: DataShape) -> VAE:
    """The convolutional VAE sized by model.latent_dim, base_channels, num_blocks, max_channels and norm."""
    return VAE(data.image_size, data.channels, model_cfg.latent_dim, model_cfg.base_channels, model_cfg.num_blocks,
               model_cfg.max_channels, model_cfg.norm)
