"""LPIPS diversity: backbone weights from a file map onto the package's slices; pairs; the offline error."""

from __future__ import annotations

import itertools

import pytest
import torch
import torchvision

from genlab.metrics.lpips import LPIPSWeightsMissing, build_lpips, lpips_diversity


def test_missing_backbone_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(LPIPSWeightsMissing, match=r"--download.*--lpips-weights PATH"):
        build_lpips("alex")
    with pytest.raises(LPIPSWeightsMissing, match="does not exist"):
        build_lpips("alex", tmp_path / "nope.pth")


def test_a_torchvision_alexnet_file_is_loaded_into_the_backbone(tmp_path):
    torch.manual_seed(3)
    alexnet = torchvision.models.alexnet(weights=None)
    path = tmp_path / "alexnet.pth"
    torch.save(alexnet.state_dict(), path)
    model = build_lpips("alex", path)
    assert torch.equal(model.net.slice2._modules["3"].weight, alexnet.features[3].weight)
    assert torch.equal(model.net.slice5._modules["10"].weight, alexnet.features[10].weight)
    assert model.backbone == "alex ImageNet"


def test_wrong_backbone_file_is_refused(tmp_path):
    path = tmp_path / "vgg_as_alex.pth"
    torch.save(torchvision.models.vgg11(weights=None).state_dict(), path)
    with pytest.raises(Exception, match="do not fit|size mismatch"):
        build_lpips("alex", path)


def test_diversity_is_the_mean_over_all_pairs():
    model = build_lpips("alex", "random", seed=0)
    images = torch.rand(5, 1, 28, 28) * 2 - 1
    big = torch.nn.functional.interpolate(images.expand(-1, 3, -1, -1), size=64, mode="bilinear", align_corners=False)
    with torch.no_grad():
        pairs = [float(model(big[i : i + 1], big[j : j + 1])) for i, j in itertools.combinations(range(5), 2)]
    assert lpips_diversity(images, model, batch_size=3) == pytest.approx(sum(pairs) / 10, rel=1e-5)
    assert lpips_diversity(images[:1].repeat(4, 1, 1, 1), model) == pytest.approx(0.0, abs=1e-7)
