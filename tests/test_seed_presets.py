"""The presets say what their seed notes say: data pipeline, attention sides, capacities, blocks, precision, eval."""

from __future__ import annotations

import logging
from unittest import mock

import pytest
import torch
import torch.nn as nn

from genlab.config import list_presets
from genlab.data.augment import resolve_policy
from genlab.models import DataShape, MultiScaleDiscriminator, ResNetDiscriminator, build_models
from genlab.models.layers import SelfAttention
from genlab.train import load_experiment

SMALL = ["model.generator_base_channels=4", "model.discriminator_base_channels=4", "model.max_channels=16",
         "model.embed_dim=8"]


def parameters(module: nn.Module) -> int:
    """Number of parameters of a network."""
    return sum(p.numel() for p in module.parameters())


def attention_sides(network: nn.Module, image_size: int, channels: int, labels: torch.Tensor | None) -> set[int]:
    """Feature-map sides at which a network's self-attention layers run (one forward pass, attention skipped)."""
    seen: set[int] = set()

    def record(module: SelfAttention, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        seen.add(x.shape[-1])
        return x  # (H·W)² attention at 128 px would cost minutes on a CPU

    with torch.no_grad(), mock.patch.object(SelfAttention, "forward", record):
        if hasattr(network, "latent_dim"):
            network.eval()(torch.randn(2, network.latent_dim), labels)
        else:
            network.eval()(torch.zeros(2, channels, image_size, image_size), labels)
    return seen


@pytest.mark.parametrize("preset", ["medical_cgan_256", "medical_cdcgan_256"])
def test_medical_presets_follow_seed_002(preset):
    cfg = load_experiment(preset, SMALL)
    assert cfg.data.balanced and cfg.model.condition != "none"
    assert set(resolve_policy(cfg.data.augment, cfg.data.hflip).ops) == {"hflip", "rotation", "color_jitter"}
    g, d = build_models(cfg.model, DataShape(256, 3, 6), cfg.training.loss_type)
    labels = torch.tensor([0, 5])
    # The note's improved model: self-attention at 32 and 128 px in G, at 32 px in D.
    assert attention_sides(g, 256, 3, labels) == {32, 128}
    assert attention_sides(d, 256, 3, labels) == {32}


def test_conditional_multiscale_resnet_discriminator_trains(tiny_config):
    cfg = load_experiment("medical_cgan_256", [*SMALL, "model.d_scales=2"])  # refused before: NotSupportedYet
    _, d = build_models(cfg.model, DataShape(256, 3, 6), cfg.training.loss_type)
    assert isinstance(d, MultiScaleDiscriminator) and len(d.discriminators) == 2
    assert all(isinstance(sub, ResNetDiscriminator) and sub.embed is not None for sub in d.discriminators)
    images = torch.randn(2, 3, 256, 256)
    assert not torch.allclose(d(images, torch.tensor([0, 0])), d(images, torch.tensor([5, 5])))  # labels count
    from genlab.train.loop import train

    run = tiny_config("model.architecture=resnet", "model.condition=projection+acgan", "model.d_scales=2",
                      "training.max_steps=2", "training.loss_type=hinge")
    result = train(run)
    assert result.step == 2


def test_cifar10_cgan_capacity_ratio_is_seed_004s_target():
    cfg = load_experiment("cifar10_cgan")
    g, d = build_models(cfg.model, DataShape(32, 3, 10), cfg.training.loss_type)
    ratio = parameters(g) / parameters(d)
    assert 0.5 <= ratio <= 1.5, ratio
    assert 2.0e6 < parameters(g) < 3.0e6 and 2.0e6 < parameters(d) < 3.0e6  # Fix 2: about 2.5M each


def test_stl10_dcgan_v3_has_five_convtranspose_bn_relu_blocks():
    cfg = load_experiment("stl10_dcgan_v3")
    g, _ = build_models(cfg.model, DataShape(96, 3, 10), cfg.training.loss_type)
    stages = [g.stem, *g.blocks]
    layer_kinds = (nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU)
    kinds = [[next((k for k in layer_kinds if isinstance(m, k)), type(m)) for m in stage
              if not isinstance(m, (nn.Unflatten, SelfAttention))] for stage in stages]
    assert kinds == [list(layer_kinds)] * 5
    assert isinstance(g.to_image, nn.ConvTranspose2d)  # then ConvTranspose + tanh to 96 px
    assert attention_sides(g, 96, 3, None) == {48}
    with torch.no_grad():
        assert g.eval()(torch.randn(2, 128)).shape == (2, 3, 96, 96)
    spectral = [m for m in g.modules() if hasattr(m, "parametrizations")]
    assert g.to_image not in spectral and len(spectral) >= 5  # SN on G except its last layer


@pytest.mark.parametrize("preset", ["faces_dcgan_64", "faces_wgan_gp_64", "faces_sn_attn_128"])
def test_faces_presets_use_seed_003_standard_settings(preset):
    cfg = load_experiment(preset)
    assert cfg.training.amp == "auto" and cfg.training.ema_decay == 0.9999 and cfg.training.batch_size == 64
    assert cfg.eval.every_epochs == 25 and cfg.eval.metrics == ["fid"]
    assert cfg.eval.real_split == "test" and cfg.eval.real_samples == 5000  # the held-out faces


def test_amp_auto_is_fp16_on_cuda_and_says_what_it_chose_elsewhere(monkeypatch, caplog):
    from genlab.methods.optim import MixedPrecision, resolve_amp

    assert resolve_amp("auto", torch.device("cuda")) == "fp16"
    assert resolve_amp("bf16", torch.device("cpu")) == "bf16"
    for amx, avx512_bf16, chosen in ((True, False, "bf16"), (False, True, "bf16"), (False, False, "none")):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        assert resolve_amp("auto", torch.device("cpu")) == chosen, (amx, avx512_bf16)
    with caplog.at_level(logging.INFO, logger="genlab"):
        precision = MixedPrecision("auto", torch.device("cpu"))
    assert precision.amp == "none" and not precision.scaler.is_enabled()
    assert [r.getMessage() for r in caplog.records if "amp=auto" in r.getMessage()] == [
        "training.amp=auto on cpu: float32 (no fp16 GradScaler off CUDA, no fast bf16 on this CPU)."]


@pytest.mark.parametrize("pair", [(7, 1), (5, 3), (8, 0)])
def test_gasten_presets_for_each_reported_pair(pair):
    first, second = pair
    assert f"gasten/mnist_{first}v{second}" in list_presets()
    cfg = load_experiment(f"gasten/mnist_{first}v{second}")
    base = load_experiment("gasten/fmnist_3v0")
    assert cfg.data.name == "mnist" and cfg.data.classes == [first, second] and cfg.name == f"mnist-{first}v{second}"
    assert cfg.model == base.model and cfg.training == base.training and cfg.eval == base.eval


def test_cifar10_cgan_broken_is_seed_004s_failing_setup():
    cfg = load_experiment("cifar10_cgan_broken")
    g, d = build_models(cfg.model, DataShape(32, 3, 10), cfg.training.loss_type)
    assert 0.2 < parameters(g) / parameters(d) < 0.3  # the note's G/D 0.25
    assert nn.utils.parametrize.is_parametrized(g.to_image, "weight") and cfg.model.init == "orthogonal"
    assert isinstance(g.final_act, nn.Identity)  # the note's final_bn -> final_conv, no ReLU between
    t = cfg.training
    assert (t.n_critic, t.lr_d / t.lr_g, t.lr_schedule, t.d_noise_decay_epochs) == (2, 4.0, "cosine", 100)
