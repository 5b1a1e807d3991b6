"""DCGAN shapes at each resolution, the two stems, normalisation choices and initialisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from genlab.models import DataShape, DCGANDiscriminator, DCGANGenerator, build_models
from genlab.models.dcgan import default_num_blocks, resolution_ladder
from genlab.train import load_experiment


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3), (128, 1)])
def test_shapes_at_each_resolution(size, channels):
    g = DCGANGenerator(latent_dim=16, image_size=size, channels=channels, base_channels=8)
    d = DCGANDiscriminator(image_size=size, channels=channels, base_channels=8)
    images = g(torch.randn(3, 16))
    assert images.shape == (3, channels, size, size)
    assert images.abs().max() <= 1.0
    assert d(images).shape == (3,)


def test_seed_notes_designs():
    assert resolution_ladder(28, 3) == [4, 7, 14, 28] and default_num_blocks(28) == 3
    small = DCGANGenerator(latent_dim=64, image_size=28, base_channels=64)
    assert isinstance(small.stem[1], nn.ConvTranspose2d) and small.stem_shape == (256, 4, 4)
    flowers = DCGANGenerator(latent_dim=100, image_size=64, channels=3, base_channels=64)
    assert isinstance(flowers.stem[0], nn.Linear) and flowers.stem[0].out_features == 512 * 4 * 4
    assert isinstance(flowers.stem[1], nn.BatchNorm1d)
    widths = [m.out_channels for m in flowers.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert widths == [256, 128, 64, 3]


def test_no_sigmoid_and_critic_norm_for_wgan_gp():
    cfg = load_experiment(None, ["training.loss_type=wgan-gp", "data.image_size=64"])
    g, d = build_models(cfg.model, DataShape(64, 3, 10), cfg.training.loss_type)
    assert any(isinstance(m, nn.InstanceNorm2d) and m.affine for m in d.modules())
    assert not any(isinstance(m, (nn.Sigmoid, nn.BatchNorm2d)) for m in d.modules())
    assert isinstance(d.to_logit, nn.Conv2d)  # the last layer emits raw scores


def test_dcgan_initialisation_statistics():
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=64, image_size=32, base_channels=64)
    conv = g.blocks[0][0]
    bn = g.blocks[0][1]
    assert abs(conv.weight.std().item() - 0.02) < 0.002
    assert abs(bn.weight.mean().item() - 1.0) < 0.01 and bn.bias.abs().max() == 0


def test_spectral_norm_option():
    d = DCGANDiscriminator(image_size=32, channels=1, base_channels=8, spectral_norm=True, norm="none")
    assert any(hasattr(m, "parametrizations") for m in d.modules())


def test_self_attention_matches_its_formula_and_starts_as_identity():
    from genlab.models.layers import SelfAttention

    torch.manual_seed(0)
    attn = SelfAttention(16)
    x = torch.randn(2, 16, 5, 5)
    assert torch.equal(attn(x), x)
    with torch.no_grad():
        attn.gamma.fill_(0.7)
    q = attn.query(x).flatten(2).transpose(1, 2)
    k = attn.key(x).flatten(2)
    v = attn.value(x).flatten(2)
    weights = torch.softmax(q @ k / 2**0.5, dim=-1)
    expected = x + 0.7 * (v @ weights.transpose(1, 2)).view(2, 16, 5, 5)
    assert torch.allclose(attn(x), expected, atol=1e-5)


def test_patch_and_multiscale_discriminators():
    from genlab.models import MultiScaleDiscriminator, PatchDiscriminator

    patch = PatchDiscriminator(channels=3, base_channels=8, num_layers=3)
    x = torch.randn(2, 3, 64, 64)
    assert patch.logit_map(x).shape == (2, 1, 6, 6) and patch(x).shape == (2,)
    cfg = load_experiment(None, ["model.d_scales=3", "model.discriminator=patch", "model.patch_layers=2"])
    _, d = build_models(cfg.model, DataShape(64, 3, 1))
    assert isinstance(d, MultiScaleDiscriminator) and len(d.discriminators) == 3
    assert d(x).shape == (2,)
    cfg = load_experiment(None, ["model.d_scales=2", "data.image_size=32"])
    _, d = build_models(cfg.model, DataShape(32, 1, 1))
    seen = []
    for sub in d.discriminators:
        sub.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[-1]))
    d(torch.randn(2, 1, 32, 32))
    assert seen == [32, 16]


def test_resnet_refuses_patch_discriminator():
    from genlab.errors import NotSupportedYet

    with pytest.raises(NotSupportedYet, match="PatchGAN"):
        load_experiment(None, ["model.architecture=resnet", "model.discriminator=patch"])


def test_conditional_dcgan_follows_seed_002(tiny_config):
    """condition=concat: G concatenates a label embedding to z, D reads a label map as one more input channel."""
    from genlab.errors import NotSupportedYet
    from genlab.train.loop import train

    cfg = load_experiment(None, ["model.condition=concat", "model.embed_dim=16", "data.image_size=32",
                                 "model.generator_base_channels=8", "model.discriminator_base_channels=8"])
    g, d = build_models(cfg.model, DataShape(32, 3, 6))
    assert g.label_embed.num_embeddings == 6 and g.stem[1].in_channels == 64 + 16
    embedding, linear, act = d.label_map
    assert (embedding.embedding_dim, linear.out_features, act.negative_slope) == (16, 32 * 32, 0.2)
    assert d.features[0][0].in_channels == 3 + 1
    torch.manual_seed(0)
    z, images = torch.randn(2, 64), torch.randn(2, 3, 32, 32)
    g.eval()
    assert not torch.allclose(g(z, torch.tensor([0, 0])), g(z, torch.tensor([5, 5])))
    assert not torch.allclose(d(images, torch.tensor([0, 0])), d(images, torch.tensor([5, 5])))
    with pytest.raises(ValueError, match="conditional"):
        g(z)
    for extra in ([], ["model.d_scales=2"], ["training.progressive=true", "training.progressive_epochs=0.05"]):
        result = train(tiny_config("model.condition=concat", "training.max_steps=3", *extra))
        assert result.step == 3, extra
    with pytest.raises(NotSupportedYet, match="model.condition=projection"):
        load_experiment(None, ["model.condition=projection"])
    with pytest.raises(NotSupportedYet, match="concat"):
        load_experiment(None, ["model.architecture=resnet", "model.condition=concat"])
