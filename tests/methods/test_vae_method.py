"""The VAE family end to end: the seed's objective term by term, resume, figures, sampling, config errors.

Perceptual terms use VGG-16 with seeded random weights (training.vgg_weights=null): ImageNet weights
are not available offline. The formula check does not depend on which weights VGG has.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from genlab.cli import app
from genlab.errors import ConfigError
from genlab.generate import load_run
from genlab.methods import VAEMethod
from genlab.methods.base import StepContext
from genlab.models import DataShape
from genlab.runs.checkpoint import load_checkpoint
from genlab.train import load_experiment, train
from genlab.train.logging import read_jsonl


def test_objective_is_the_seed_formula_term_by_term(tiny_vae_config):
    cfg = tiny_vae_config("model.discriminator=patch", "training.perceptual_weight=0.1", "training.adversarial_weight=0.1",
                     "training.beta=1e-4", "model.norm=group")
    method = VAEMethod(cfg, DataShape(16, 3, 1), torch.device("cpu"))
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rng_state = method.noise_rng.get_state()
    total, terms, recon = method.objective(images, beta=1e-4, adv_weight=0.1)

    eps_rng = torch.Generator().set_state(rng_state)
    mu, logvar = method.vae.encode(images)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=eps_rng)
    expected_recon = torch.tanh(method.vae.decode_logits(z))
    mse = F.mse_loss(expected_recon, images)
    kl = (0.5 * (mu**2 + logvar.exp() - logvar - 1)).sum(1).mean()
    vgg = method.perceptual(expected_recon, images)
    adv = -method.discriminator(expected_recon).mean()  # hinge generator loss
    torch.testing.assert_close(recon, expected_recon)
    torch.testing.assert_close(total, mse + 0.1 * vgg + 0.1 * adv + 1e-4 * kl)
    for key, value in (("recon", mse), ("kl", kl), ("perceptual", vgg), ("adv_g", adv)):
        torch.testing.assert_close(terms[key], value.detach())
    torch.testing.assert_close(terms["kl_weighted"], 1e-4 * kl.detach())


def test_beta_warmup_and_adversarial_start_follow_the_epochs(tiny_vae_config):
    cfg = tiny_vae_config("model.discriminator=patch", "training.adversarial_weight=0.5", "training.beta=2",
                     "training.beta_warmup_epochs=2", "training.adversarial_start_epochs=1")
    method = VAEMethod(cfg, DataShape(16, 3, 1), torch.device("cpu"))
    assert method._weights(StepContext(0, 10, 100)) == (0.0, 0.0)
    assert method._weights(StepContext(10, 10, 100)) == (1.0, 0.5)
    assert method._weights(StepContext(30, 10, 100)) == (2.0, 0.5)


def _records(run_dir):
    return [{k: v for k, v in r.items() if k != "images_per_sec"} for r in read_jsonl(run_dir / "metrics.jsonl")
            if "loss" in r]


def test_vae_resume_is_bitwise_identical(tiny_vae_config, crash_and_resume):
    knobs = ("model.discriminator=patch", "training.adversarial_weight=0.1", "training.perceptual_weight=0.1",
             "training.num_epochs=2", "logging.log_every=3", "training.ema_decay=0.9", "data.hflip=true")
    reference, crashed = crash_and_resume(tiny_vae_config, knobs, crash_step=12)
    assert _records(reference) == _records(crashed)
    ref, res = (load_checkpoint(d / "checkpoints" / "last.pt")["method"] for d in (reference, crashed))
    for part in ("vae", "discriminator"):
        assert all(torch.equal(ref[part][k], res[part][k]) for k in ref[part])
    assert all(torch.equal(ref["ema"]["model"][k], res["ema"]["model"][k]) for k in ref["ema"]["model"])


def test_vae_run_logs_its_terms_draws_figures_and_samples_from_the_prior(tiny_vae_config, tmp_path):
    result = train(tiny_vae_config("name=vae", "training.num_epochs=1", "data.channels=3"))
    record = _records(result.run_dir)[-1]
    for key in ("loss", "recon", "kl", "kl_weighted", "active_units", "beta", "grad_norm"):
        assert key in record
    assert 0 <= record["active_units"] <= 8
    samples = result.run_dir / "samples"
    assert (samples / "reconstructions_latest.png").is_file() and (samples / "interpolation_latest.png").is_file()
    loaded = load_run(result.run_dir)
    real = torch.rand(2, 3, 16, 16) * 2 - 1
    ends = loaded.method.interpolate(real[0], real[1], steps=5)
    torch.testing.assert_close(ends[[0, -1]], loaded.method.reconstruct(real))
    out = tmp_path / "prior.npz"
    cli = CliRunner().invoke(app, ["sample", str(result.run_dir), "--n", "6", "--out", str(out), "--truncation", "1"])
    assert cli.exit_code == 0, cli.output
    assert np.load(out)["images"].shape == (6, 16, 16, 3)


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.latent_dim=0"], "model.latent_dim"),
    (["training.beta=-1"], "training.beta"),
    (["training.adversarial_weight=0.1"], "model.discriminator=patch"),
    (["data.image_size=20", "model.num_blocks=3"], "data.image_size=20"),
    (["training.n_critic=2"], "'training.n_critic' is a setting of the gan family"),
    (["training.loss_type=wgan-gp"], "not Wasserstein"),
])
def test_bad_tiny_vae_configs_are_clear_errors(tiny_vae_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_vae_config(*overrides)


def _active_units_after(overrides):
    cfg = load_experiment("fashion_mnist_vae", [
        "data.name=synthetic", "data.image_size=16", "data.num_samples=256", "model.base_channels=8",
        "model.latent_dim=16", "training.num_epochs=1000", "training.max_steps=200", "training.batch_size=32", "logging.log_every=50",
        "logging.sample_every=1000", "checkpoint.every_steps=1000", "logging.progress=false",
        "logging.report=false", "device=cpu", *overrides])
    return _records(train(cfg).run_dir)[-1]["active_units"]


def test_the_seed_31_preset_keeps_its_latents_active(tmp_path):
    # Seed 003's β = 1 is the ELBO's weight on the per-image squared-error sum (the preset); on the per-pixel mean
    # the same β weighs the KL 256× more here (784× at 28 px) and every latent unit collapses.
    elbo = _active_units_after([f"output_dir={tmp_path / 'sum'}"])
    mean = _active_units_after([f"output_dir={tmp_path / 'mean'}", "training.reconstruction_reduction=mean"])
    assert elbo >= 4 and mean <= 1, (elbo, mean)
