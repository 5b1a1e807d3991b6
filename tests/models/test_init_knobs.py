"""Seed 004's knobs: spectral norm on the generator's last conv (model.final_sn) and model.init."""

from __future__ import annotations

import torch
import torch.nn as nn

from genlab.config import load_config
from genlab.models import DataShape, build_models


def last_conv(generator: nn.Module) -> nn.Module:
    return generator.to_image


def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight the layer computes with (spectral norm applied when it is on)."""
    layer.eval()
    return layer.weight.detach()


def test_final_sn_undoes_the_small_last_layer_init_as_seed_004_says():
    shape = DataShape(16, 3, 1)
    kwargs = ["model.architecture=resnet", "model.generator_base_channels=8", "model.final_init_scale=0.1"]
    fixed, _ = build_models(load_config(None, kwargs).model, shape)
    torch.manual_seed(0)
    broken, _ = build_models(load_config(None, [*kwargs, "model.final_sn=true"]).model, shape)
    assert not nn.utils.parametrize.is_parametrized(last_conv(fixed))
    assert nn.utils.parametrize.is_parametrized(last_conv(broken), "weight")
    sigma = torch.linalg.matrix_norm(effective_weight(last_conv(broken)).flatten(1), ord=2)
    assert abs(float(sigma) - 1) < 0.05  # W / σ(W): the 0.1 scale is gone
    assert torch.linalg.matrix_norm(effective_weight(last_conv(fixed)).flatten(1), ord=2) < 0.5


def test_orthogonal_init_reaches_every_layer_of_both_networks_even_under_spectral_norm():
    cfg = load_config(None, ["model.init=orthogonal", "model.spectral_norm_d=true", "model.generator_base_channels=8",
                             "model.discriminator_base_channels=8"])
    generator, discriminator = build_models(cfg.model, DataShape(16, 1, 1))
    for net in (generator, discriminator):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                raw = m.parametrizations.weight.original if nn.utils.parametrize.is_parametrized(m) else m.weight
                w = raw.detach().flatten(1)
                w = w if w.shape[0] <= w.shape[1] else w.T
                assert torch.allclose(w @ w.T, torch.eye(len(w)), atol=1e-4), m


def test_auto_init_keeps_dcgan_normal_weights():
    generator, _ = build_models(load_config(None, ["model.generator_base_channels=8"]).model, DataShape(16, 1, 1))
    assert abs(float(generator.to_image.weight.detach().std()) - 0.02) < 0.005


def test_sn_last_conv_saturates_by_alignment_with_its_relu_inputs_not_at_init():
    """Why seed 004's knobs saturate slowly, not at init (and not in a tiny CPU run): under spectral norm each output
    pixel is w·x with |w| <= 1, so at init its size is that of one input (std ~0.6 at any width; the seed note's
    sqrt(fan-in) growth is the bound, not the typical value). The bound is reached when training aligns w with the
    mean of the non-negative ReLU inputs: then the pre-tanh value is mean(x)·sqrt(9·C), mostly past atanh(0.99)."""
    shape = DataShape(16, 1, 1)
    for width in (8, 64):
        cfg = load_config(None, ["model.architecture=resnet", f"model.generator_base_channels={width}",
                                 f"model.max_channels={width}", "model.final_sn=true", "model.init=orthogonal"])
        torch.manual_seed(0)
        generator, _ = build_models(cfg.model, shape)
        z = torch.randn(16, cfg.model.latent_dim)
        with torch.no_grad():
            at_init = float((generator(z).abs() > 0.99).float().mean())
            generator.to_image.parametrizations.weight.original.fill_(1.0)  # w along the mean input direction
            for _ in range(5):  # let spectral norm's power iteration find the new sigma
                generator(z)
            aligned = float((generator(z).abs() > 0.99).float().mean())
        assert at_init < 0.05, (width, at_init)
        assert aligned > 0.5, (width, aligned)


def test_final_relu_false_feeds_the_last_conv_batch_norm_output_as_seed_004_does():
    """Seed 004's G: BN → last conv, no ReLU between; genlab's default keeps the ReLU."""
    shape = DataShape(16, 1, 1)
    seen = {}
    for relu in (True, False):
        cfg = load_config(None, ["model.architecture=resnet", "model.generator_base_channels=8",
                                 f"model.final_relu={str(relu).lower()}"])
        generator, _ = build_models(cfg.model, shape)
        last_conv(generator).register_forward_hook(
            lambda module, args, out, relu=relu: seen.setdefault(relu, args[0].detach()))
        generator(torch.randn(16, cfg.model.latent_dim))
    assert float(seen[True].min()) >= 0 and float(seen[False].min()) < -0.5
    assert torch.allclose(seen[False].mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-5)  # BN's output itself
