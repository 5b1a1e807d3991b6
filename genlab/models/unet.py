"""The DDPM U-Net (seed note 003, phase 4), built on diffusers' `UNet2DModel`.

genlab does not re-implement the network: `build_unet` only translates the seed's vocabulary (base channels,
channel multipliers per level, "attention at R px") into diffusers' block lists. Level i of the U-Net works on
feature maps of side image_size / 2**i; every level but the last halves the side on the way down, and the up path
mirrors it. A level gets `AttnDownBlock2D` / `AttnUpBlock2D` when its side is one of `attention_resolutions`,
plain `DownBlock2D` / `UpBlock2D` otherwise. diffusers' middle block (at the lowest side) always has
self-attention, as in Ho et al.'s DDPM; `mid_attention=False` turns it off.

`check_unet` rejects what `UNet2DModel` would otherwise fail on obscurely (a side that does not halve exactly,
making the skip connections mismatch) or silently ignore (attention at a side the U-Net never reaches).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from diffusers import UNet2DModel

from genlab.errors import ConfigError

SEED_CHANNEL_MULTS = (1, 2, 2, 2)


def level_sides(image_size: int, num_levels: int) -> list[int]:
    """Feature-map side at each U-Net level, from the image down: 32 px, 4 levels -> [32, 16, 8, 4]."""
    return [image_size // 2**i for i in range(num_levels)]


def _divisible_levels(image_size: int) -> int:
    """Most U-Net levels whose sides all halve exactly (1 + the power of 2 dividing image_size)."""
    halvings, side = 0, image_size
    while side > 1 and side % 2 == 0:
        side //= 2
        halvings += 1
    return halvings + 1


def check_unet(image_size: int, channel_mults: Sequence[int], attention_resolutions: Sequence[int]) -> None:
    """Raise ConfigError when the image size does not halve exactly or attention sits at a side never reached."""
    num_levels = len(channel_mults)
    if image_size < 1 or num_levels < 1:
        raise ConfigError(
            f"The U-Net needs a positive image size and at least one level, got image_size={image_size} and "
            f"channel_mults={tuple(channel_mults)}. Set data.image_size and one channel multiplier per level."
        )
    if any(m < 1 for m in channel_mults):
        raise ConfigError(
            f"U-Net channel multipliers must be positive integers, got channel_mults={tuple(channel_mults)}. "
            "Give one multiplier per level, e.g. (1, 2, 2, 2)."
        )
    downsamplings = num_levels - 1
    factor = 2**downsamplings
    if image_size % factor:
        fits = _divisible_levels(image_size)
        ladder = " -> ".join(str(s) for s in level_sides(image_size, fits))
        padded = math.ceil(image_size / factor) * factor
        depth = (
            f"use {fits - 1} down-sampling level{'s' if fits > 2 else ''} ({ladder}, i.e. {fits} channel "
            f"multipliers such as {fit_channel_mults(image_size, channel_mults)}) or "
            if fits >= 2
            else ""
        )
        raise ConfigError(
            f"A {image_size} px image does not fit a U-Net with {num_levels} levels (channel_mults="
            f"{tuple(channel_mults)}): halving the side {downsamplings} time{'s' if downsamplings != 1 else ''} needs "
            f"a side divisible by {factor}, otherwise the skip connections do not line up. To fix it, {depth}pad "
            f"the images to {padded} px."
        )
    sides = level_sides(image_size, num_levels)
    unreached = sorted(set(attention_resolutions) - set(sides))
    if unreached:
        raise ConfigError(
            f"attention_resolutions={tuple(attention_resolutions)} asks for self-attention at {unreached} px, but a "
            f"{image_size} px U-Net with channel_mults={tuple(channel_mults)} only works at sides {sides}. "
            f"Pick attention sides from {sides} (or change the number of levels)."
        )


def fit_channel_mults(image_size: int, channel_mults: Sequence[int] = SEED_CHANNEL_MULTS) -> tuple[int, ...]:
    """The given multipliers, cut to the deepest prefix whose down-sampling divides image_size.

    Choice for 28 px (Fashion-MNIST, MNIST): keep the native size, no padding, and cut the seed's (1, 2, 2, 2)
    to (1, 2, 2), three levels at 28 -> 14 -> 7 px (the VAE's 7×7 bottom too). The seed's "attention at 8 and
    16 px" then has to be given as 7 and 14 px (same depths as 8 and 16 in a 32 px U-Net); `check_unet` says so
    if it is not. The alternative, padding to 32 px, keeps the seed's exact network but is a data-side choice.
    Sizes that already fit (32, 64, ...) keep their multipliers unchanged.
    """
    mults = tuple(int(m) for m in channel_mults)
    if not mults:
        raise ConfigError("channel_mults is empty: give one multiplier per U-Net level, e.g. (1, 2, 2, 2).")
    return mults[: min(len(mults), _divisible_levels(image_size))]


def _group_count(widths: Sequence[int], preferred: int = 32) -> int:
    """GroupNorm groups dividing every width: 32 (diffusers' default) when it can, fewer for tiny test nets."""
    groups = preferred
    for width in widths:
        groups = math.gcd(groups, width)
    return groups


def build_unet(
    image_size: int,
    channels: int,
    base_channels: int = 128,
    channel_mults: Sequence[int] = SEED_CHANNEL_MULTS,
    layers_per_block: int = 2,
    attention_resolutions: Sequence[int] = (8, 16),
    dropout: float = 0.0,
    num_classes: int | None = None,
    attention_head_dim: int | None = None,
    mid_attention: bool = True,
    norm_num_groups: int | None = None,
) -> UNet2DModel:
    """A diffusers UNet2DModel predicting a channels×image_size² tensor, sized the seed's way.

    `attention_head_dim=None` gives one head as wide as the level (Ho et al.); `num_classes` adds diffusers'
    class embedding (the forward pass then needs `class_labels`); `norm_num_groups=None` uses 32 GroupNorm
    groups, or the largest count dividing every width for narrow networks.
    """
    check_unet(image_size, channel_mults, attention_resolutions)
    if base_channels < 1 or channels < 1 or layers_per_block < 1:
        raise ConfigError(
            f"The U-Net needs positive sizes, got base_channels={base_channels}, channels={channels}, "
            f"layers_per_block={layers_per_block}."
        )
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"U-Net dropout must be in [0, 1), got {dropout}.")
    widths = tuple(base_channels * int(m) for m in channel_mults)
    sides = level_sides(image_size, len(widths))
    attention = [side in set(attention_resolutions) for side in sides]
    down_blocks = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention)
    up_blocks = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    groups = norm_num_groups if norm_num_groups is not None else _group_count(widths)
    if any(w % groups for w in widths):
        raise ConfigError(
            f"norm_num_groups={groups} does not divide the U-Net widths {widths}; pick a divisor of all of them."
        )
    return UNet2DModel(
        sample_size=image_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=widths,
        layers_per_block=layers_per_block,
        down_block_types=down_blocks,
        up_block_types=up_blocks,
        dropout=dropout,
        attention_head_dim=attention_head_dim,
        norm_num_groups=groups,
        add_attention=mid_attention,
        num_class_embeds=num_classes,
    )
