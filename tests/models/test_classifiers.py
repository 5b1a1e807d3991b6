"""The GASTeN classifier zoo: shapes, freezing, offline weights, save/load, ensembles and clear errors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.errors import CheckpointError, GenlabError
from genlab.models.classifiers import (
    CLASSIFIERS,
    BinaryClassifier,
    EnsembleClassifier,
    TimmClassifier,
    build_classifier,
    load_classifier,
    parse_member,
    predict_proba,
    save_classifier,
)

SHAPES = [(1, 28), (3, 32)]
TIMM_ARCHS = {
    "resnet18_frozen": {},
    "resnet18_ft": {"finetune_blocks": 2},
    "resnet10t": {"frozen": True},
    "vit_tiny_patch16_224": {},  # takes img_size: built for 32-px inputs (2×2 patches)
    "mobilenetv3_small_050": {},  # pooled features come from its conv head (1024), not num_features (288)
}


def images(channels: int, size: int, n: int = 4, seed: int = 0) -> torch.Tensor:
    """Random images in [-1, 1]."""
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every timm pretrained download fail at once (as offline), without touching the network."""
    import timm.models._builder as builder

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(builder, "load_pretrained", offline)


def step(clf: BinaryClassifier, x: torch.Tensor) -> None:
    """One Adam step of BCE towards label 1 on the trainable parameters."""
    clf.train()
    optimizer = torch.optim.Adam([p for p in clf.parameters() if p.requires_grad], lr=1e-2)
    loss = F.binary_cross_entropy_with_logits(clf(x), torch.ones(len(x)))
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("channels,size", SHAPES)
@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_local_archs_give_logits_and_features(arch, channels, size):
    clf = build_classifier(arch, channels, size)
    x = images(channels, size)
    assert clf(x).shape == (4,)
    assert clf.features(x).shape == (4, clf.feature_dim)
    assert (clf.channels, clf.image_size) == (channels, size)
    assert json.loads(json.dumps(clf.spec))["arch"] == arch


def test_local_archs_stay_small_at_28px():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(build_classifier("cnn", 1, 28)) <= 100_000
    assert count(build_classifier("mlp", 1, 28)) <= 50_000
    cnn = build_classifier("cnn", 1, 28, nf=[4, 8, 16])
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 16] and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in cnn.modules()) == 3
    assert sum(isinstance(m, nn.MaxPool2d) for m in cnn.modules()) == 3


@pytest.mark.parametrize("channels,size", SHAPES)
@pytest.mark.parametrize("arch", list(TIMM_ARCHS))
def test_timm_archs_give_logits_and_features(arch, channels, size):
    clf = build_classifier(arch, channels, size, pretrained=False, input_size=32, **TIMM_ARCHS[arch])
    x = images(channels, size, n=3)
    clf.eval()
    assert clf(x).shape == (3,)
    assert clf.features(x).shape == (3, clf.feature_dim)
    prepared = clf.prepare(x)
    assert prepared.shape == (3, 3, 32, 32)
    json.dumps(clf.spec)


def test_timm_input_adaptation_matches_the_recipe():
    clf = build_classifier("resnet18_frozen", 1, 28, pretrained=False, input_size=56)
    x = images(1, 28, n=2)
    rgb = ((x + 1) / 2).repeat(1, 3, 1, 1)
    resized = F.interpolate(rgb, size=(56, 56), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(clf.prepare(x), (resized - mean) / std)
    assert build_classifier("resnet18_frozen", 1, 28, pretrained=False).input_size == 224


def test_frozen_resnet_learns_only_its_head_and_keeps_bn_statistics():
    torch.manual_seed(0)
    clf = build_classifier("resnet18_frozen", 1, 28, pretrained=False, input_size=32)
    assert {n for n, p in clf.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}
    assert clf.head.in_features == 512
    clf.train()
    assert clf.training and not clf.backbone.training
    assert not any(m.training for m in clf.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    backbone = {k: v.clone() for k, v in clf.backbone.state_dict().items()}
    head = clf.head.weight.detach().clone()
    step(clf, images(1, 28, n=8))
    for key, value in clf.backbone.state_dict().items():
        assert torch.equal(value, backbone[key]), key
    assert not torch.equal(clf.head.weight, head)


def test_finetune_blocks_freezes_the_earlier_stages():
    torch.manual_seed(0)
    clf = build_classifier("resnet18_ft", 3, 32, pretrained=False, input_size=32, finetune_blocks=1)
    trainable = {n.split(".")[1] for n, p in clf.named_parameters() if p.requires_grad and n.startswith("backbone.")}
    assert trainable == {"layer4"}
    assert clf.head.weight.requires_grad
    clf.train()
    assert clf.backbone.layer4.training and not clf.backbone.layer3.training and not clf.backbone.bn1.training
    before = {k: v.clone() for k, v in clf.backbone.state_dict().items()}
    step(clf, images(3, 32, n=8))
    after = clf.backbone.state_dict()
    assert torch.equal(after["layer3.1.bn2.running_mean"], before["layer3.1.bn2.running_mean"])
    assert torch.equal(after["layer1.0.conv1.weight"], before["layer1.0.conv1.weight"])
    assert not torch.equal(after["layer4.1.bn2.running_mean"], before["layer4.1.bn2.running_mean"])
    assert not torch.equal(after["layer4.0.bn2.weight"], before["layer4.0.bn2.weight"])  # timm zero-inits it
    everything = build_classifier("resnet18_ft", 3, 32, pretrained=False, input_size=32)
    assert all(p.requires_grad for p in everything.parameters())


def test_pretrained_download_failure_is_one_clear_paragraph(monkeypatch):
    no_download(monkeypatch)
    with pytest.raises(GenlabError) as info:
        build_classifier("resnet18_frozen", 1, 28, input_size=32)
    message = str(info.value)
    assert "\n" not in message
    assert "'resnet18'" in message and "download" in message
    assert "--weights" in message and "--no-pretrained" in message and "HF_HUB_OFFLINE" in message


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_is_loaded(tmp_path, suffix):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = timm.create_model("resnet10t", pretrained=False)
    state = source.state_dict()
    path = tmp_path / f"resnet10t{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    clf = build_classifier("resnet10t", 1, 28, pretrained=False, weights=str(path), input_size=32)
    for key, value in clf.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_bad_weights_files_are_refused(tmp_path):
    with pytest.raises(GenlabError, match="does not exist"):
        build_classifier("resnet10t", 1, 28, weights=str(tmp_path / "missing.pth"), input_size=32)
    foreign = tmp_path / "foreign.pth"
    torch.save({"something.else": torch.zeros(3)}, foreign)
    with pytest.raises(GenlabError, match="no tensor of timm model 'resnet10t'"):
        build_classifier("resnet10t", 1, 28, weights=str(foreign), input_size=32)


def test_unknown_names_and_arguments_are_explained():
    with pytest.raises(GenlabError, match="Did you mean 'resnet18_frozen'.*any timm model name"):
        build_classifier("resnet18_frozn", 1, 28)
    with pytest.raises(GenlabError, match="'cnn' does not take hidden"):
        build_classifier("cnn", 1, 28, hidden=[8])
    with pytest.raises(GenlabError, match="at most 4 entries"):
        build_classifier("cnn", 1, 16, nf=[4, 4, 4, 4, 4])
    assert {"cnn", "mlp", "resnet18_frozen", "resnet18_ft", "ensemble"} <= set(CLASSIFIERS.names())


def test_save_load_roundtrip_is_exact_and_weights_only(tmp_path):
    torch.manual_seed(0)
    clf = build_classifier("cnn", 1, 28, nf=[4, 8])
    step(clf, images(1, 28, n=8))  # moves BN statistics away from their initial values
    run = tmp_path / "run"
    path = save_classifier(clf, run / "classifier.pt", classes=[3, 0], data="fashion-mnist", test_accuracy=0.97)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == 1 and raw["spec"] == clf.spec and raw["metadata"]["classes"] == [3, 0]
    json.dumps(raw["spec"])
    x = images(1, 28)
    clf.eval()
    for source in (path, run, str(run)):
        loaded = load_classifier(source)
        assert isinstance(loaded, type(clf)) and not loaded.training
        assert not any(p.requires_grad for p in loaded.parameters())
        assert loaded.metadata["test_accuracy"] == 0.97
        torch.testing.assert_close(loaded(x), clf(x), rtol=0, atol=0)
        torch.testing.assert_close(loaded.features(x), clf.features(x), rtol=0, atol=0)


def test_timm_roundtrip_never_downloads(tmp_path, monkeypatch):
    torch.manual_seed(0)
    clf = build_classifier("resnet10t", 3, 32, pretrained=False, input_size=32, frozen=True)
    clf.spec["args"]["pretrained"] = True  # as if it had been trained from ImageNet weights
    path = save_classifier(clf, tmp_path / "classifier.pt")
    no_download(monkeypatch)
    loaded = load_classifier(path)
    assert isinstance(loaded, TimmClassifier) and loaded.spec["args"]["pretrained"] is True
    x = images(3, 32)
    clf.eval()
    torch.testing.assert_close(loaded(x), clf(x), rtol=0, atol=0)


def test_ensemble_mean_averages_member_probabilities(tmp_path):
    torch.manual_seed(0)
    members = [build_classifier("cnn", 1, 28, nf=[4, 8]), build_classifier("mlp", 1, 28, hidden=[16])]
    ens = EnsembleClassifier(members, "mean").eval()
    x = images(1, 28, n=6)
    expected = torch.stack([torch.sigmoid(m(x)) for m in members]).mean(0)
    torch.testing.assert_close(torch.sigmoid(ens(x)), expected)
    assert ens.features(x).shape == (6, 64 + 16) and ens.feature_dim == 80
    loaded = load_classifier(save_classifier(ens, tmp_path / "ens.pt"))
    torch.testing.assert_close(loaded(x), ens(x), rtol=0, atol=0)


def test_meta_ensemble_combines_member_logits(tmp_path):
    torch.manual_seed(0)
    ens = build_classifier("ensemble", 1, 28, members=["cnn:4,8", "mlp:16"], output="meta").eval()
    with torch.no_grad():
        ens.combiner.weight.copy_(torch.tensor([[2.0, -0.5]]))
        ens.combiner.bias.fill_(0.3)
    x = images(1, 28)
    logits = torch.stack([m(x) for m in ens.members], dim=1)
    torch.testing.assert_close(ens(x), 2.0 * logits[:, 0] - 0.5 * logits[:, 1] + 0.3)
    loaded = load_classifier(save_classifier(ens, tmp_path / "meta.pt"))
    assert isinstance(loaded, EnsembleClassifier) and loaded.output == "meta"
    torch.testing.assert_close(loaded(x), ens(x), rtol=0, atol=0)


@pytest.mark.parametrize("output", ["mean", "meta"])
def test_features_and_logits_agree_with_the_separate_passes(output):
    torch.manual_seed(0)
    x = images(1, 28)
    for clf in (build_classifier("cnn", 1, 28).eval(),
                build_classifier("ensemble", 1, 28, members=["cnn:4,8", "mlp:16"], output=output).eval()):
        features, logits = clf.features_and_logits(x)
        torch.testing.assert_close(features, clf.features(x))
        torch.testing.assert_close(logits, clf(x))


def test_comma_separated_sources_load_as_a_mean_ensemble(tmp_path):
    torch.manual_seed(0)
    a, b = build_classifier("cnn", 1, 28, nf=[4]), build_classifier("mlp", 1, 28, hidden=[8])
    save_classifier(a, tmp_path / "a" / "classifier.pt", classes=[3, 0], data="fashion-mnist")
    save_classifier(b, tmp_path / "b.pt", classes=[3, 0], data="fashion-mnist")
    ens = load_classifier(f"{tmp_path / 'a'}, {tmp_path / 'b.pt'}")
    assert isinstance(ens, EnsembleClassifier) and ens.output == "mean" and len(ens.members) == 2
    assert ens.metadata["classes"] == [3, 0] and len(ens.metadata["members"]) == 2
    x = images(1, 28)
    expected = (torch.sigmoid(a.eval()(x)) + torch.sigmoid(b.eval()(x))) / 2
    torch.testing.assert_close(torch.sigmoid(ens(x)), expected)


def test_missing_and_corrupt_files_say_what_to_do(tmp_path):
    with pytest.raises(CheckpointError, match="No classifier at .*genlab classifier train"):
        load_classifier(tmp_path / "nowhere")
    torn = tmp_path / "torn.pt"
    torn.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_classifier(torn)
    foreign = tmp_path / "gan.pt"
    torch.save({"format": 1, "generator": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a genlab classifier file"):
        load_classifier(foreign)
    clf = build_classifier("cnn", 1, 28, nf=[4])
    path = save_classifier(clf, tmp_path / "edited.pt")
    state = torch.load(path, weights_only=True)
    state["spec"]["args"]["nf"] = [8]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="do not fit its architecture"):
        load_classifier(path)


def test_predict_proba_accepts_uint8_and_float():
    torch.manual_seed(0)
    clf = build_classifier("cnn", 1, 28, nf=[4])
    raw = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    p_uint8 = predict_proba(clf, raw, batch_size=3)
    p_float = predict_proba(clf, raw.float() / 127.5 - 1)
    assert p_uint8.shape == (10,) and ((p_uint8 > 0) & (p_uint8 < 1)).all()
    torch.testing.assert_close(p_uint8, p_float)
    assert clf.training  # the mode it had is restored
    with pytest.raises(GenlabError, match="N×1×28×28"):
        predict_proba(clf, torch.zeros(2, 3, 28, 28))


def test_member_strings():
    assert parse_member("cnn:4,8,16") == ("cnn", {"nf": [4, 8, 16]})
    assert parse_member("mlp:64") == ("mlp", {"hidden": [64]})
    assert parse_member("resnet18_ft:finetune_blocks=1,input_size=64") == (
        "resnet18_ft", {"finetune_blocks": 1, "input_size": 64})
    assert parse_member("resnet18_frozen") == ("resnet18_frozen", {})
    with pytest.raises(GenlabError, match="key=value"):
        parse_member("resnet18_ft:1,2")
    with pytest.raises(GenlabError, match="Did you mean 'cnn'"):
        parse_member("cnm:4")
