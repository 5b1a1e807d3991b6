"""DiffAugment and the batched augmentation policies: geometry with fixed parameters, randomness with seeds."""

from __future__ import annotations

import pytest
import torch

from genlab.data.augment import (
    AUGMENTATIONS,
    DIFF_AUGMENTATIONS,
    POLICY_PRESETS,
    AugmentPolicy,
    adjust_color,
    augment_batch,
    cutout,
    diff_augment,
    hflip,
    random_cutout,
    random_translation,
    rotate,
    scale_contrast,
    scale_saturation,
    translate,
)
from genlab.errors import GenlabError


def images(n: int = 8, channels: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Random images in [-1, 1]."""
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_each_policy_op_keeps_shape_and_range(name: str, channels: int):
    x = images(channels=channels)
    y = augment_batch(x, [name], seeded())
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= -1 and y.max() <= 1


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", DIFF_AUGMENTATIONS.names())
def test_each_diff_augment_op_keeps_shape(name: str, channels: int):
    x = images(channels=channels)
    assert diff_augment(x, name, seeded()).shape == x.shape


def test_hflip_flips_about_half_and_twice_is_identity():
    x = images(n=2000, size=6)
    y = augment_batch(x, ["hflip"], seeded(3))
    flipped = (y == x.flip(-1)).flatten(1).all(1)
    unchanged = (y == x).flatten(1).all(1)
    assert bool((flipped ^ unchanged).all())
    assert 0.45 < flipped.float().mean().item() < 0.55
    twice = augment_batch(augment_batch(x, ["hflip"], seeded(3)), ["hflip"], seeded(3))
    assert torch.equal(twice, x)
    mask = torch.rand(2000, generator=seeded(4)) < 0.5
    assert torch.equal(hflip(hflip(x, mask), mask), x)


def test_same_seed_same_output_and_other_seed_differs():
    x = images()
    for policy in ("standard", "faces"):
        assert torch.equal(augment_batch(x, policy, seeded(1)), augment_batch(x, policy, seeded(1)))
        assert not torch.equal(augment_batch(x, policy, seeded(1)), augment_batch(x, policy, seeded(2)))
    assert torch.equal(diff_augment(x, generator=seeded(1)), diff_augment(x, generator=seeded(1)))
    assert not torch.equal(diff_augment(x, generator=seeded(1)), diff_augment(x, generator=seeded(2)))


def test_parameters_are_drawn_per_sample():
    x = images(n=1).expand(16, -1, -1, -1)
    for name in AUGMENTATIONS.names():
        y = augment_batch(x, AugmentPolicy(ops=(name,), flip_probability=0.5), seeded(5))
        assert len({tuple(sample.flatten().tolist()) for sample in y}) > 1, name


def test_diff_augment_is_differentiable():
    x = images().requires_grad_(True)
    y = diff_augment(x, "color,translation,cutout", seeded())
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translate_moves_a_bright_pixel_by_the_shift():
    x = -torch.ones(2, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0
    y = translate(x, torch.tensor([[2, -3], [-1, 1]]))
    assert (y[0, 0] == 1).nonzero().tolist() == [[6, 1]]
    assert (y[1, 0] == 1).nonzero().tolist() == [[3, 5]]
    # Rows and columns shifted in from outside the image are zero.
    assert bool((y[0, 0, :2] == 0).all()) and bool((y[0, 0, :, -3:] == 0).all())


def test_random_translation_stays_within_an_eighth():
    x = -torch.ones(256, 1, 32, 32)
    x[:, 0, 16, 16] = 1.0
    y = random_translation(x, seeded())
    rows, cols = (y[:, 0] == 1).nonzero()[:, 1:].T
    assert len(rows) == 256
    assert (rows - 16).abs().max() <= 4 and (cols - 16).abs().max() <= 4
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 20


def test_cutout_zeroes_the_expected_area():
    x = torch.ones(1, 3, 16, 16)
    y = cutout(x, torch.tensor([[8, 8]]), (8, 8))
    assert (y == 0).float().mean().item() == pytest.approx(0.25)
    assert bool((y[0, :, 4:12, 4:12] == 0).all())
    # Random centres anywhere in the image: the square is clipped at the edges, so on average it covers
    # (mean clipped side / 32)² of a 32×32 image with a 16×16 cutout.
    mean_side = sum(min(c + 8, 32) - max(c - 8, 0) for c in range(32)) / 32
    expected = (mean_side / 32) ** 2
    z = random_cutout(torch.ones(4000, 1, 32, 32), seeded())
    zeroed = (z == 0).flatten(1).float().mean(1)
    assert zeroed.max() <= 0.25 + 1e-6
    assert zeroed.mean().item() == pytest.approx(expected, abs=0.01)


def test_color_helpers_keep_their_means():
    x = images()
    factors = torch.linspace(0.0, 2.0, 8)
    assert torch.allclose(scale_contrast(x, factors).mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-5)
    assert torch.allclose(scale_saturation(x, factors).mean(dim=1), x.mean(dim=1), atol=1e-5)
    gray = images(channels=1)
    assert torch.equal(scale_saturation(gray, factors), gray)


def test_color_jitter_neutral_parameters_are_identity_and_grey_stays_grey():
    x = images()
    ones, zeros = torch.ones(8), torch.zeros(8)
    assert torch.allclose(adjust_color(x, ones, ones, ones, zeros), x, atol=1e-5)
    grey = images(channels=1).expand(-1, 3, -1, -1)
    policy = AugmentPolicy(ops=("color_jitter",), brightness=0.0, contrast=0.0, saturation=0.5, hue=0.5)
    y = augment_batch(grey, policy, seeded())
    assert torch.allclose(y, grey, atol=1e-5)


def test_rotation_by_zero_is_identity_and_by_90_is_rot90():
    x = images(size=9)
    assert torch.allclose(rotate(x, torch.zeros(8)), x, atol=1e-5)
    assert torch.allclose(augment_batch(x, AugmentPolicy(ops=("rotation",), degrees=0.0), seeded()), x, atol=1e-5)
    assert torch.allclose(rotate(x, torch.full((8,), 90.0)), torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)


def test_random_resized_crop_of_the_full_square_is_identity():
    x = images()
    policy = AugmentPolicy(ops=("random_resized_crop",), crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    assert torch.allclose(augment_batch(x, policy, seeded()), x, atol=1e-5)


def test_random_resized_crop_zooms_in():
    x = torch.linspace(-1, 1, 32).view(1, 1, 1, 32).expand(64, 1, 32, 32).contiguous()
    policy = AugmentPolicy(ops=("random_resized_crop",), crop_scale=(0.5, 0.5), crop_ratio=(1.0, 1.0))
    y = augment_batch(x, policy, seeded())
    x_span = (x[:, 0, 0, -1] - x[:, 0, 0, 0])
    y_span = (y[:, 0, 0, -1] - y[:, 0, 0, 0])
    assert bool((y_span < 0.8 * x_span).all())


def test_presets_follow_the_seed_notes():
    faces = POLICY_PRESETS["faces"]
    assert faces.ops == ("hflip", "rotation", "color_jitter")
    assert (faces.degrees, faces.brightness, faces.contrast, faces.saturation, faces.hue) == (5.0, 0.1, 0.1, 0.05, 0.0)
    default = AugmentPolicy()
    assert (default.brightness, default.contrast, default.saturation, default.hue, default.degrees) == (
        0.2, 0.2, 0.2, 0.1, 15.0)
    assert default.crop_scale == (0.8, 1.0) and default.flip_probability == 0.5


def test_unknown_names_are_explained():
    with pytest.raises(GenlabError, match="color, cutout, translation"):
        diff_augment(images(), "color,flip")
    with pytest.raises(GenlabError, match="color_jitter, hflip, random_resized_crop, rotation"):
        augment_batch(images(), ["hflip", "blur"])
    with pytest.raises(GenlabError, match="Presets"):
        augment_batch(images(), "strong")
    with pytest.raises(GenlabError, match="Valid: ops"):
        AugmentPolicy.from_dict({"ops": ["hflip"], "jitter": 0.3})
    with pytest.raises(GenlabError, match="degrees"):
        AugmentPolicy(degrees=-5)
    assert AugmentPolicy.from_dict({"ops": ["hflip"], "degrees": 5}).degrees == 5
