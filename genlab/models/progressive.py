"""Progressive growing (Karras et al. 2018) shared by the DCGAN and ResNet families.

A growing generator runs its per-level blocks only up to the current stage's level and turns that
level's features into an image with a 1×1 "to RGB" conv; while a new level fades in, the previous
level's image is up-sampled and blended with weight 1 − alpha. A growing discriminator mirrors it
with "from RGB" entries. The stage (level, alpha) lives in a buffer, so checkpoints and the EMA copy
carry it and a loaded model samples at the resolution it was trained to.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


def _mirror_stage(module: nn.Module, *_: object) -> None:
    """Keep a Python copy of the stage buffer (also after load_state_dict), which compiled forwards read."""
    module._stage_mirror = (int(module.stage[0]), float(module.stage[1]))


def _current_stage(module: nn.Module) -> tuple[int, float]:
    """(level, alpha) from the stage buffer; under torch.compile from its Python copy, so the graph needs no sync."""
    if torch.compiler.is_compiling():
        return module._stage_mirror
    return int(module.stage[0]), float(module.stage[1])


def _track_stage(module: nn.Module) -> None:
    _mirror_stage(module)
    module.register_load_state_dict_post_hook(_mirror_stage)


class GrowingGenerator(nn.Module):
    """Mixin for generators whose level i maps features of side sizes[i] to sizes[i + 1]."""

    sizes: list[int]

    def init_growth(self, sizes: list[int], widths: list[int], channels: int) -> None:
        """Add to-RGB heads for every level below the image and start at full resolution."""
        self.sizes = sizes
        self.to_rgb = nn.ModuleList(nn.Conv2d(w, channels, 1) for w in widths[: len(sizes) - 1])
        self.register_buffer("stage", torch.tensor([float(len(sizes) - 1), 1.0]))
        _track_stage(self)

    def set_stage(self, level: int, alpha: float) -> None:
        """Produce images of side sizes[level], faded in with weight alpha over the previous level."""
        self.stage.copy_(torch.tensor([float(level), float(alpha)]))
        _mirror_stage(self)

    def grow(self, h: torch.Tensor, run_level: Callable[[int, torch.Tensor], torch.Tensor],
             to_image: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Pre-activation image at the current stage from stem features `h`."""
        level, alpha = _current_stage(self)
        last = len(self.sizes) - 1
        previous = h
        for i in range(min(level, last - 1)):
            previous, h = h, run_level(i, h)
        image = to_image(h) if level == last else self.to_rgb[level](h)
        if alpha < 1.0 and level > 0:
            old = self.to_rgb[level - 1](previous if level < last else h)
            image = alpha * image + (1 - alpha) * F.interpolate(old, size=image.shape[-2:], mode="nearest")
        return image


class GrowingDiscriminator(nn.Module):
    """Mixin for discriminators whose level i maps features of side sizes[i] (image first) to sizes[i + 1]."""

    sizes: list[int]

    def init_growth(self, sizes: list[int], in_widths: list[int], channels: int, activation: nn.Module) -> None:
        """Add from-RGB entries for every level after the first (and the head); start at full resolution."""
        self.sizes = sizes
        self.from_rgb = nn.ModuleList(nn.Sequential(nn.Conv2d(channels, w, 1), activation) for w in in_widths[1:])
        self.register_buffer("stage", torch.tensor([0.0, 1.0]))
        _track_stage(self)

    def set_stage(self, first_level: int, alpha: float) -> None:
        """Take images of side sizes[first_level], faded in with weight alpha over the next coarser entry."""
        self.stage.copy_(torch.tensor([float(first_level), float(alpha)]))
        _mirror_stage(self)

    def _enter(self, level: int, images: torch.Tensor) -> torch.Tensor:
        return images if level == 0 else self.from_rgb[level - 1](images)

    def grow(self, images: torch.Tensor, levels: nn.ModuleList) -> torch.Tensor:
        """Features after the last level for images at the current stage."""
        first, alpha = _current_stage(self)
        h = self._enter(first, images)
        if first < len(levels):
            h = levels[first](h)
            if alpha < 1.0:
                side = self.sizes[first + 1]
                coarse = F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
                h = alpha * h + (1 - alpha) * self._enter(first + 1, coarse)
        for level in levels[first + 1 :]:
            h = level(h)
        return h
