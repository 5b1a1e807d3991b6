"""Batched image augmentation on N×C×H×W tensors in [-1, 1], every sample with its own random parameters.

Two families live here:

* `diff_augment` — DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
  Training"): differentiable colour / translation / cutout applied to both real and fake batches before
  the discriminator, so it sees augmented data without the generator learning the augmentations.
* `augment_batch` — data-pipeline policies (registry `AUGMENTATIONS`: hflip, color_jitter, rotation,
  random_resized_crop) with strengths in `AugmentPolicy`; presets in `POLICY_PRESETS` follow the seed notes.

All random draws come from one `torch.Generator` in a fixed order, so a seed reproduces a batch exactly,
and no op loops over the batch in Python. Each op has a helper taking explicit parameters (`translate`,
`cutout`, `rotate`, `resized_crop`, ...) so its geometry can be tested without randomness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F

from genlab.errors import GenlabError
from genlab.registry import Registry

# ITU-R 601 luma weights, as torchvision uses for grayscale.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def _uniform(shape: Sequence[int], low: float, high: float, generator: torch.Generator | None,
             like: torch.Tensor) -> torch.Tensor:
    """Uniform samples in [low, high) drawn on the generator's device, returned on `like`'s device and dtype."""
    device = generator.device if generator is not None else torch.device("cpu")
    values = torch.rand(*shape, generator=generator, device=device)
    return (values * (high - low) + low).to(device=like.device, dtype=like.dtype)


def _randint(low: int, high: int, shape: Sequence[int], generator: torch.Generator | None,
             like: torch.Tensor) -> torch.Tensor:
    """Integers in [low, high) drawn on the generator's device, returned on `like`'s device."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(low, high, tuple(shape), generator=generator, device=device).to(like.device)


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    """Shape N -> N×1×1×1 so per-sample values broadcast over an image batch."""
    return values.view(-1, 1, 1, 1)


DIFF_AUGMENTATIONS: Registry[Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]] = Registry(
    "DiffAugment policy"
)


def shift_brightness(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Add one offset per sample (DiffAugment brightness)."""
    return x + _per_sample(offsets)


def scale_saturation(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's distance from its channel mean (DiffAugment saturation; a no-op for 1 channel)."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * _per_sample(factors) + mean


def scale_contrast(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Scale each image's distance from its overall mean (DiffAugment contrast)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _per_sample(factors) + mean


def translate(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move sample n's content by shifts[n] = (dy, dx) whole pixels, filling uncovered pixels with zeros."""
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h, 1) - shifts[:, 0].view(n, 1, 1).to(x.device)
    cols = torch.arange(w, device=x.device).view(1, 1, w) - shifts[:, 1].view(n, 1, 1).to(x.device)
    # Index into a zero border: anything sourced from outside the image reads a padded zero.
    padded = F.pad(x, [1, 1, 1, 1])
    rows = rows.clamp(-1, h).add(1).expand(n, h, w)
    cols = cols.clamp(-1, w).add(1).expand(n, h, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, centres: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero a size=(height, width) rectangle centred at centres[n] = (row, col) in sample n (clipped at edges)."""
    n, _, h, w = x.shape
    top = centres[:, 0].view(n, 1, 1).to(x.device) - size[0] // 2
    left = centres[:, 1].view(n, 1, 1).to(x.device) - size[1] // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size[0]) & (cols >= left) & (cols < left + size[1])
    return x * (~inside).unsqueeze(1).to(x.dtype)


@DIFF_AUGMENTATIONS.register("color")
def random_color(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Brightness ±0.5 added, saturation ×[0, 2], contrast ×[0.5, 1.5], one draw per sample each."""
    n = x.shape[0]
    x = shift_brightness(x, _uniform([n], -0.5, 0.5, generator, x))
    x = scale_saturation(x, _uniform([n], 0.0, 2.0, generator, x))
    return scale_contrast(x, _uniform([n], 0.5, 1.5, generator, x))


@DIFF_AUGMENTATIONS.register("translation")
def random_translation(x: torch.Tensor, generator: torch.Generator | None = None, ratio: float = 0.125) -> torch.Tensor:
    """Shift each sample by up to `ratio` of its height/width (whole pixels), zero-filled."""
    n, _, h, w = x.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shifts = torch.stack([_randint(-max_dy, max_dy + 1, [n], generator, x),
                          _randint(-max_dx, max_dx + 1, [n], generator, x)], dim=1)
    return translate(x, shifts)


@DIFF_AUGMENTATIONS.register("cutout")
def random_cutout(x: torch.Tensor, generator: torch.Generator | None = None, ratio: float = 0.5) -> torch.Tensor:
    """Zero a rectangle of `ratio` × the image size, centred anywhere in the image, per sample."""
    n, _, h, w = x.shape
    size = (int(h * ratio + 0.5), int(w * ratio + 0.5))
    centres = torch.stack([_randint(0, h, [n], generator, x), _randint(0, w, [n], generator, x)], dim=1)
    return cutout(x, centres, size)


def parse_diff_policy(policy: str) -> list[str]:
    """Split "color,translation,cutout" into known op names; unknown names raise listing the valid ones."""
    names = [name.strip() for name in policy.split(",") if name.strip()]
    unknown = [name for name in names if name not in DIFF_AUGMENTATIONS]
    if unknown:
        raise GenlabError(f"DiffAugment policy {policy!r} names unknown op(s) {', '.join(map(repr, unknown))}. "
                          f"Use a comma-separated list of: {', '.join(DIFF_AUGMENTATIONS.names())}.")
    return names


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """DiffAugment: differentiable per-sample colour/translation/cutout; call it on real and fake batches alike."""
    for name in parse_diff_policy(policy):
        x = DIFF_AUGMENTATIONS.get(name)(x, generator)
    return x


AugmentOp = Callable[[torch.Tensor, "AugmentPolicy", "torch.Generator | None"], torch.Tensor]
AUGMENTATIONS: Registry[AugmentOp] = Registry("augmentation")
ROTATION_PADDING = ("reflection", "border", "zeros")


@dataclass(frozen=True)
class AugmentPolicy:
    """Which ops `augment_batch` applies (in order) and how strongly; defaults follow seed note 001."""

    ops: tuple[str, ...] = ("hflip",)
    flip_probability: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.1
    degrees: float = 15.0
    rotation_padding: str = "reflection"
    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "crop_scale", tuple(self.crop_scale))
        object.__setattr__(self, "crop_ratio", tuple(self.crop_ratio))
        problems = []
        unknown = [name for name in self.ops if name not in AUGMENTATIONS]
        if unknown:
            valid = ", ".join(AUGMENTATIONS.names())
            problems.append(f"ops {', '.join(map(repr, unknown))} are unknown (valid: {valid})")
        if not 0.0 <= self.flip_probability <= 1.0:
            problems.append(f"flip_probability={self.flip_probability} must lie in [0, 1]")
        for key in ("brightness", "contrast", "saturation"):
            if getattr(self, key) < 0:
                problems.append(f"{key}={getattr(self, key)} must be >= 0")
        if not 0.0 <= self.hue <= 0.5:
            problems.append(f"hue={self.hue} must lie in [0, 0.5] (a fraction of the colour circle)")
        if self.degrees < 0:
            problems.append(f"degrees={self.degrees} must be >= 0 (rotations are drawn in ±degrees)")
        if self.rotation_padding not in ROTATION_PADDING:
            problems.append(f"rotation_padding={self.rotation_padding!r} must be one of {', '.join(ROTATION_PADDING)}")
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            problems.append(f"crop_scale={self.crop_scale} must satisfy 0 < low <= high <= 1 (fractions of the area)")
        low, high = self.crop_ratio
        if not 0.0 < low <= high:
            problems.append(f"crop_ratio={self.crop_ratio} must satisfy 0 < low <= high (width / height)")
        if problems:
            raise GenlabError("Invalid augmentation policy: " + "; ".join(problems) + ". Fix these values.")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AugmentPolicy:
        """Build from plain config data; unknown keys raise naming the valid ones."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise GenlabError(f"Unknown augmentation setting(s) {', '.join(unknown)}. Valid: {', '.join(valid)}.")
        return cls(**values)


def hflip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the samples where the boolean `flip` (shape N) is true."""
    return torch.where(_per_sample(flip.to(x.device)), x.flip(-1), x)


def _grayscale(images01: torch.Tensor) -> torch.Tensor:
    weights = images01.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
    return (images01 * weights).sum(dim=1, keepdim=True)


def _hue_rotation_matrices(turns: torch.Tensor) -> torch.Tensor:
    """N×3×3 RGB rotations about the grey axis by `turns` of a full circle (Rodrigues' formula)."""
    angle = turns * 2 * math.pi
    axis = turns.new_tensor([1.0, 1.0, 1.0]) / math.sqrt(3.0)
    cross = turns.new_tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    outer = torch.outer(axis, axis)
    eye = torch.eye(3, dtype=turns.dtype, device=turns.device)
    cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
    return cos * eye + sin * cross + (1 - cos) * outer


def adjust_color(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor,
                 hue: torch.Tensor) -> torch.Tensor:
    """Per-sample brightness/contrast/saturation factors and hue turns, in that order, like torchvision's maths."""
    images = (x + 1) / 2
    images = (images * _per_sample(brightness)).clamp(0, 1)
    gray = _grayscale(images) if images.shape[1] == 3 else images
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    images = ((images - mean) * _per_sample(contrast) + mean).clamp(0, 1)
    if images.shape[1] == 3:
        gray = _grayscale(images)
        images = ((images - gray) * _per_sample(saturation) + gray).clamp(0, 1)
        # Hue: rotate colours about the grey axis (as StyleGAN2-ADA does) rather than through HSV.
        rotation = _hue_rotation_matrices(hue)
        images = torch.einsum("nij,njhw->nihw", rotation, images).clamp(0, 1)
    return images * 2 - 1


def rotate(x: torch.Tensor, degrees: torch.Tensor, padding: str = "reflection") -> torch.Tensor:
    """Rotate each sample counter-clockwise by degrees[n] about its centre, bilinear, with the given padding."""
    n, _, h, w = x.shape
    radians = degrees.to(device=x.device, dtype=x.dtype) * (math.pi / 180)
    cos, sin = radians.cos(), radians.sin()
    zeros = torch.zeros_like(cos)
    # affine_grid maps output to input in [-1, 1] coordinates; the h/w factors keep non-square images undistorted.
    theta = torch.stack([torch.stack([cos, -sin * h / w, zeros], dim=1),
                         torch.stack([sin * w / h, cos, zeros], dim=1)], dim=1)
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Crop boxes[n] = (top, left, height, width) in pixels from sample n and resize it back to H×W, bilinear."""
    n, _, h, w = x.shape
    boxes = boxes.to(device=x.device, dtype=x.dtype)
    top, left, height, width = boxes.unbind(dim=1)
    centre_x = (left + width / 2) / (w / 2) - 1
    centre_y = (top + height / 2) / (h / 2) - 1
    zeros = torch.zeros_like(top)
    theta = torch.stack([torch.stack([width / w, zeros, centre_x], dim=1),
                         torch.stack([zeros, height / h, centre_y], dim=1)], dim=1)
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@AUGMENTATIONS.register("hflip")
def random_hflip(x: torch.Tensor, policy: AugmentPolicy, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each sample with probability policy.flip_probability."""
    return hflip(x, _uniform([x.shape[0]], 0.0, 1.0, generator, x) < policy.flip_probability)


@AUGMENTATIONS.register("color_jitter")
def random_color_jitter(x: torch.Tensor, policy: AugmentPolicy,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Brightness, contrast, saturation ×[1 - s, 1 + s] and hue ±h turns, drawn per sample."""
    n = x.shape[0]
    brightness = _uniform([n], max(0.0, 1 - policy.brightness), 1 + policy.brightness, generator, x)
    contrast = _uniform([n], max(0.0, 1 - policy.contrast), 1 + policy.contrast, generator, x)
    saturation = _uniform([n], max(0.0, 1 - policy.saturation), 1 + policy.saturation, generator, x)
    hue = _uniform([n], -policy.hue, policy.hue, generator, x)
    return adjust_color(x, brightness, contrast, saturation, hue)


@AUGMENTATIONS.register("rotation")
def random_rotation(x: torch.Tensor, policy: AugmentPolicy, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate each sample by an angle drawn uniformly in ±policy.degrees."""
    angles = _uniform([x.shape[0]], -policy.degrees, policy.degrees, generator, x)
    return rotate(x, angles, policy.rotation_padding)


@AUGMENTATIONS.register("random_resized_crop")
def random_resized_crop(x: torch.Tensor, policy: AugmentPolicy,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Crop a random area fraction (crop_scale) and aspect ratio (crop_ratio) and resize back to H×W."""
    n, _, h, w = x.shape
    area = _uniform([n], *policy.crop_scale, generator, x) * (h * w)
    log_ratio = _uniform([n], math.log(policy.crop_ratio[0]), math.log(policy.crop_ratio[1]), generator, x)
    ratio = log_ratio.exp()
    # torchvision retries draws that do not fit; a batch cannot loop per sample, so oversize boxes are clipped.
    width = (area * ratio).sqrt().clamp(max=w)
    height = (area / ratio).sqrt().clamp(max=h)
    top = _uniform([n], 0.0, 1.0, generator, x) * (h - height)
    left = _uniform([n], 0.0, 1.0, generator, x) * (w - width)
    return resized_crop(x, torch.stack([top, left, height, width], dim=1))


POLICY_PRESETS: dict[str, AugmentPolicy] = {
    "none": AugmentPolicy(ops=()),
    "hflip": AugmentPolicy(ops=("hflip",)),
    # Seed note 001: ColorJitter(0.2, 0.2, 0.2, 0.1), RandomRotation(15), RandomResizedCrop(scale=(0.8, 1)).
    "standard": AugmentPolicy(ops=("hflip", "random_resized_crop", "rotation", "color_jitter")),
    # Seed note 003, aligned faces: flip, ±5° residual tilt, mild colour; no translation (breaks alignment).
    "faces": AugmentPolicy(ops=("hflip", "rotation", "color_jitter"), degrees=5.0, brightness=0.1, contrast=0.1,
                           saturation=0.05, hue=0.0),
}


def as_policy(policy: Sequence[str] | AugmentPolicy | str) -> AugmentPolicy:
    """An AugmentPolicy from itself, a preset name, or a list of op names with default strengths."""
    if isinstance(policy, AugmentPolicy):
        return policy
    if isinstance(policy, str):
        if policy not in POLICY_PRESETS:
            raise GenlabError(f"Unknown augmentation preset {policy!r}. Presets: {', '.join(POLICY_PRESETS)}; "
                              f"or give a list of ops from: {', '.join(AUGMENTATIONS.names())}.")
        return POLICY_PRESETS[policy]
    return AugmentPolicy(ops=tuple(policy))


def augment_batch(x: torch.Tensor, policy: Sequence[str] | AugmentPolicy | str,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the policy's ops in order to a [-1, 1] N×C×H×W batch, each sample with its own random draw."""
    policy = as_policy(policy)
    for name in policy.ops:
        x = AUGMENTATIONS.get(name)(x, policy, generator)
    return x.clamp(-1, 1)


def resolve_policy(augment: str | Sequence[str] | dict[str, Any] | None, hflip: bool = False) -> AugmentPolicy | None:
    """The policy `data.augment` (and the `data.hflip` shorthand) asks for, or None when nothing is applied."""
    if augment is None:
        policy = None
    elif isinstance(augment, dict):
        policy = AugmentPolicy.from_dict(augment)
    else:
        policy = as_policy(augment)
    if hflip and (policy is None or "hflip" not in policy.ops):
        policy = AugmentPolicy(ops=("hflip",)) if policy is None else replace(policy, ops=("hflip", *policy.ops))
    return None if policy is None or not policy.ops else policy
