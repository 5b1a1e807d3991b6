"""Perceptual and Gram losses on randomly initialised VGG (no network): maths, gradients, layer names, errors."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from genlab.errors import GenlabError
from genlab.losses.perceptual import (
    GramLoss,
    PerceptualLoss,
    VGGFeatures,
    gram_matrix,
    load_vgg_state_dict,
    vgg_layer_indices,
)


def images(channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(2, channels, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(autouse=True)
def fixed_init():
    torch.manual_seed(0)


@pytest.mark.parametrize("loss", [
    lambda: PerceptualLoss(weights=None),
    lambda: PerceptualLoss("vgg19", layers=("relu1_1", "relu3_4"), weights=None, distance="l2"),
    lambda: GramLoss(weights=None),
])
def test_zero_for_identical_inputs_positive_otherwise(loss):
    module = loss()
    real = images()
    assert module(real, real).item() == 0.0
    assert module(images(seed=1), real).item() > 0.0


def test_gradient_reaches_fake_but_not_vgg():
    for module in (PerceptualLoss(weights=None), GramLoss(weights=None)):
        fake = images().requires_grad_(True)
        module(fake, images(seed=1)).backward()
        assert fake.grad is not None and fake.grad.abs().sum() > 0
        assert all(not p.requires_grad and p.grad is None for p in module.parameters())


def test_extractor_stays_in_eval_mode():
    module = PerceptualLoss(weights=None)
    module.train()
    assert not module.features.training and not any(m.training for m in module.features.modules())


def test_gray_input_is_replicated():
    module = PerceptualLoss(weights=None)
    fake, real = images(channels=1), images(channels=1, seed=1)
    expected = module(fake.expand(-1, 3, -1, -1), real.expand(-1, 3, -1, -1))
    assert module(fake, real).item() == pytest.approx(expected.item(), rel=1e-6)


def test_layer_weights_weight_each_layer():
    fake, real = images(), images(seed=1)
    mean = PerceptualLoss(layers=("relu1_2", "relu2_2"), weights=None)
    weighted = PerceptualLoss(layers=("relu1_2", "relu2_2"), weights=None, layer_weights=(2.0, 0.5))
    weighted.load_state_dict(mean.state_dict())
    first, second = (torch.nn.functional.l1_loss(f, r).item()
                     for f, r in zip(mean.features(fake), mean.features(real), strict=True))
    assert mean(fake, real).item() == pytest.approx((first + second) / 2, rel=1e-5)
    assert weighted(fake, real).item() == pytest.approx(2.0 * first + 0.5 * second, rel=1e-5)
    with pytest.raises(GenlabError, match="one weight per layer"):
        PerceptualLoss(weights=None, layer_weights=(1.0,))


def test_layer_names_map_to_torchvision_indices():
    vgg16, vgg19 = vgg_layer_indices("vgg16"), vgg_layer_indices("vgg19")
    assert (vgg16["relu1_2"], vgg16["relu2_2"], vgg16["relu3_3"], vgg16["relu4_3"], vgg16["relu5_3"]) == (
        3, 8, 15, 22, 29)
    assert (vgg19["relu3_4"], vgg19["relu4_4"], vgg19["relu5_4"]) == (17, 26, 35)
    assert len(vgg16) == 13 and len(vgg19) == 16 and "relu5_4" not in vgg16
    for network, names in (("vgg16", vgg16), ("vgg19", vgg19)):
        body = VGGFeatures(network, layers=tuple(names), weights=None).body
        assert len(body) == max(names.values()) + 1
        for index in names.values():
            assert isinstance(body[index], nn.ReLU) and isinstance(body[index - 1], nn.Conv2d)


def test_extractor_is_cut_after_the_deepest_layer_and_returns_requested_order():
    features = VGGFeatures("vgg16", layers=("relu2_2", "relu1_1"), weights=None)
    assert len(features.body) == 9
    out = features(images())
    assert [tuple(f.shape) for f in out] == [(2, 128, 16, 16), (2, 64, 32, 32)]


def test_weights_file_from_torchvision_vgg16_loads(tmp_path: Path):
    reference = torchvision.models.vgg16(weights=None)
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in reference.features.state_dict().items()}, path)
    loss = PerceptualLoss(weights=path)
    for index in (0, 2, 14):
        assert torch.equal(loss.features.body[index].weight, reference.features[index].weight)
    x = images()
    with torch.no_grad():
        expected = reference.features[:16](loss.features.normalize(x))
    assert torch.allclose(loss.features(x)[-1], expected, atol=1e-5)


def test_gram_matrix_matches_the_formula():
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, -1.0]]]])  # N=1, C=2, H=1, W=2
    expected = torch.tensor([[[1 + 4, 3 - 2], [3 - 2, 9 + 1]]]) / (2 * 1 * 2)
    assert torch.allclose(gram_matrix(features), expected)
    random = torch.randn(3, 4, 5, 6)
    by_einsum = torch.einsum("nchw,ndhw->ncd", random, random) / (4 * 5 * 6)
    assert torch.allclose(gram_matrix(random), by_einsum, atol=1e-5)


def test_unknown_names_are_explained():
    with pytest.raises(GenlabError, match="relu3_3") as info:
        PerceptualLoss(layers=("relu3_3", "relu5_4"), weights=None)
    assert "relu5_4" in str(info.value) and "relu1_1" in str(info.value)
    with pytest.raises(GenlabError, match="vgg16, vgg19"):
        PerceptualLoss("resnet50", weights=None)
    with pytest.raises(GenlabError, match="l1, l2"):
        PerceptualLoss(weights=None, distance="cosine")


def test_missing_or_wrong_weights_file(tmp_path: Path):
    with pytest.raises(GenlabError, match="does not exist"):
        PerceptualLoss(weights=tmp_path / "nowhere.pth")
    wrong = tmp_path / "vgg19.pth"
    vgg19 = VGGFeatures("vgg19", layers=("relu5_4",), weights=None)
    torch.save({f"features.{k}": v for k, v in vgg19.body.state_dict().items()}, wrong)
    with pytest.raises(GenlabError, match="does not hold torchvision vgg16 weights"):
        PerceptualLoss(weights=wrong)
    assert len(load_vgg_state_dict("vgg19", wrong)) == 32
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(GenlabError, match="Could not read"):
        GramLoss(weights=garbage)


def test_imagenet_weights_without_network_explain_how_to_get_them(tmp_path: Path, monkeypatch):
    attempts = []

    def offline(url, dst, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(GenlabError) as info:
        PerceptualLoss(weights="imagenet")
    message = str(info.value)
    assert attempts and attempts[0].endswith("vgg16-397923af.pth")
    assert "needs network once" in message and "training.vgg_weights=/path/to/vgg16-397923af.pth" in message
    assert str(tmp_path / "torch-home") in message
