"""Convolutional VAE: shapes at 28-128 px, no transposed convs, seeded reparameterisation, ELBO training, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from genlab.errors import ConfigError, GenlabError
from genlab.losses.vae import kl_divergence, reconstruction_loss
from genlab.models.vae import VAE, ConvDecoder, ConvEncoder, check_vae, default_num_blocks

TINY = {"base_channels": 4, "max_channels": 16}


@pytest.fixture(autouse=True)
def fixed_init():
    torch.manual_seed(0)


@pytest.mark.parametrize("size", [28, 32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_range_at_each_resolution(size, channels):
    vae = VAE(size, channels, latent_dim=8, **TINY)
    x = torch.rand(2, channels, size, size) * 2 - 1
    recon, mu, logvar = vae(x)
    assert recon.shape == x.shape
    assert mu.shape == logvar.shape == (2, 8)
    assert recon.abs().max() <= 1.0
    assert vae.sample(3).shape == (3, channels, size, size)


@pytest.mark.parametrize("size", [28, 32, 64, 128])
def test_decoder_upsamples_with_nearest_then_conv_never_transposed(size):
    vae = VAE(size, 3, latent_dim=8, **TINY)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in vae.modules())
    layers = list(vae.decoder.blocks)
    ups = [i for i, m in enumerate(layers) if isinstance(m, nn.Upsample)]
    assert len(ups) == vae.num_blocks == default_num_blocks(size)
    for i in ups:
        assert layers[i].mode == "nearest" and layers[i].scale_factor == 2
        conv = layers[i + 1]
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)


@pytest.mark.parametrize("size,blocks,side", [(28, 2, 7), (32, 3, 4), (64, 4, 4), (128, 5, 4), (16, 2, 4), (48, 3, 6)])
def test_default_blocks_by_resolution(size, blocks, side):
    assert default_num_blocks(size) == blocks
    encoder = ConvEncoder(size, 1, 4, **TINY)
    decoder = ConvDecoder(size, 1, 4, **TINY)
    assert encoder.final_side == side and decoder.stem_shape[1:] == (side, side)
    assert encoder.features(torch.zeros(1, 1, size, size)).shape[1] == decoder.stem_shape[0] * side * side


def test_explicit_blocks_and_norms():
    vae = VAE(32, 1, latent_dim=4, num_blocks=5, norm="group", **TINY)
    assert vae.encoder.final_side == 1
    assert vae(torch.zeros(2, 1, 32, 32))[0].shape == (2, 1, 32, 32)
    plain = VAE(28, 1, latent_dim=4, norm="none", **TINY)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in plain.modules())


def test_decode_is_tanh_of_logits():
    vae = VAE(28, 1, latent_dim=4, **TINY).eval()
    z = torch.randn(3, 4)
    torch.testing.assert_close(vae.decode(z), torch.tanh(vae.decode_logits(z)))


def test_reparameterize_is_seeded_reproducible():
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6)
    a = VAE.reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    b = VAE.reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    c = VAE.reparameterize(mu, logvar, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    vae = VAE(28, 1, latent_dim=4, **TINY).eval()
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    first = vae(x, torch.Generator().manual_seed(3))[0]
    assert torch.equal(first, vae(x, torch.Generator().manual_seed(3))[0])
    assert not torch.equal(first, vae(x, torch.Generator().manual_seed(4))[0])


def test_reparameterize_statistics_and_gradients():
    n = 200_000
    mu = torch.tensor([1.0, -2.0, 0.0]).expand(n, 3).clone().requires_grad_()
    logvar = torch.log(torch.tensor([0.25, 4.0, 1.0])).expand(n, 3).clone().requires_grad_()
    z = VAE.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -2.0, 0.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(z.var(0), torch.tensor([0.25, 4.0, 1.0]), atol=0, rtol=0.02)
    z.sum().backward()  # the sample is differentiable in both posterior parameters
    assert torch.all(mu.grad == 1) and logvar.grad.abs().sum() > 0


def shapes_dataset(n: int = 64, size: int = 16, seed: int = 0) -> torch.Tensor:
    """n grey images in [-1, 1]: a filled square or disc of random size and position on black."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.full((n, 1, size, size), -1.0)
    for i in range(n):
        r = int(torch.randint(2, 5, (1,), generator=g))
        cy, cx = (int(v) for v in torch.randint(r, size - r, (2,), generator=g))
        if i % 2:
            mask = (yy - cy).abs().le(r) & (xx - cx).abs().le(r)
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        images[i, 0][mask] = 1.0
    return images


def negative_elbo(vae: VAE, x: torch.Tensor, seed: int) -> torch.Tensor:
    recon, mu, logvar = vae(x, torch.Generator().manual_seed(seed))
    return reconstruction_loss(recon, x, "mse", reduction="sum") + kl_divergence(mu, logvar)


def test_elbo_improves_on_synthetic_shapes():
    data = shapes_dataset()
    vae = VAE(16, 1, latent_dim=8, base_channels=8, max_channels=32, norm="group")
    with torch.no_grad():
        before = negative_elbo(vae, data, seed=123).item()
    optimizer = torch.optim.Adam(vae.parameters(), lr=2e-3)
    for step in range(40):
        optimizer.zero_grad()
        loss = negative_elbo(vae, data, seed=step)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = negative_elbo(vae, data, seed=123).item()
    mean_image = (data - data.mean(0, keepdim=True)).pow(2).flatten(1).sum(1).mean().item()
    assert after < 0.6 * before, (before, after)
    assert after < 0.8 * mean_image, (mean_image, after)  # the latent carries information about each image


@pytest.mark.parametrize("latent_dim", [0, -3])
def test_check_vae_rejects_latent_dim(latent_dim):
    with pytest.raises(ConfigError, match=rf"positive.*latent_dim={latent_dim}\b"):
        check_vae(32, None, latent_dim)
    with pytest.raises(ConfigError):
        VAE(32, 3, latent_dim)


def test_check_vae_rejects_uneven_reduction_and_says_what_works():
    with pytest.raises(ConfigError) as err:
        check_vae(28, 3, 16)
    message = str(err.value)
    assert "28 px" in message and "num_blocks=3" in message and "between 1 and 2" in message
    assert "24, 32" in message  # nearby sizes divisible by 2**3
    with pytest.raises(ConfigError, match="odd"):
        check_vae(27, 1, 16)
    with pytest.raises(ConfigError, match="no default number of blocks"):
        check_vae(27, None, 16)
    with pytest.raises(ConfigError, match="at least one"):
        check_vae(32, 0, 16)
    with pytest.raises(ConfigError):
        ConvDecoder(28, 1, 16, num_blocks=3)
    assert issubclass(ConfigError, GenlabError)


def test_check_vae_accepts_and_returns_blocks():
    assert check_vae(28, None, 1) == 2
    assert check_vae(28, 1, 1) == 1
    assert check_vae(128, 7, 256) == 7
