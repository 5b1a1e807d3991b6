"""Procedurally drawn shapes: a labelled image set that needs no download, for tests and demos."""

from __future__ import annotations

import numpy as np
import torch

SHAPES = ["disc", "square", "triangle", "cross"]


def draw_shapes(n: int, size: int, channels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """n images (uint8 N×C×size×size) of one random shape each, random place, scale and colour."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(SHAPES), n)
    radius = rng.uniform(0.18, 0.38, n) * size
    cx = rng.uniform(0.35, 0.65, n) * size
    cy = rng.uniform(0.35, 0.65, n) * size
    fg = rng.uniform(150, 255, (n, channels))
    bg = rng.uniform(0, 60, (n, channels))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx = xx[None] - cx[:, None, None]
    dy = yy[None] - cy[:, None, None]
    r = radius[:, None, None]
    masks = {
        0: dx**2 + dy**2 <= r**2,
        1: (np.abs(dx) <= r * 0.8) & (np.abs(dy) <= r * 0.8),
        2: (dy <= r * 0.7) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6),
        3: ((np.abs(dx) <= r * 0.25) | (np.abs(dy) <= r * 0.25)) & (np.abs(dx) <= r) & (np.abs(dy) <= r),
    }
    mask = np.zeros((n, size, size), dtype=bool)
    for label, shape_mask in masks.items():
        mask |= shape_mask & (labels == label)[:, None, None]
    images = np.where(mask[:, None], fg[:, :, None, None], bg[:, :, None, None])
    images = images + rng.normal(0, 6, images.shape)
    images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), list(SHAPES)
