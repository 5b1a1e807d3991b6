"""The diffusion family end to end: training, loss by quarter of t, resume, samplers, config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genlab.cli import app
from genlab.errors import ConfigError
from genlab.methods import SampleOptions
from genlab.models.diffusion import GaussianDiffusion
from genlab.runs.checkpoint import load_checkpoint
from genlab.train import train
from genlab.train.logging import read_jsonl


def _records(run_dir):
    return [{k: v for k, v in r.items() if k != "images_per_sec"} for r in read_jsonl(run_dir / "metrics.jsonl")
            if "loss" in r]


def test_ddpm_resume_is_bitwise_identical(tiny_ddpm_config, crash_and_resume):
    knobs = ("training.num_epochs=2", "logging.log_every=3", "data.hflip=true", "logging.sample_every=100")
    reference, crashed = crash_and_resume(tiny_ddpm_config, knobs, crash_step=12)
    assert _records(reference) == _records(crashed)
    ref, res = (load_checkpoint(d / "checkpoints" / "last.pt")["method"] for d in (reference, crashed))
    assert all(torch.equal(ref["unet"][k], res["unet"][k]) for k in ref["unet"])
    assert all(torch.equal(ref["ema"]["model"][k], res["ema"]["model"][k]) for k in ref["ema"]["model"])


def test_loss_by_quarter_of_t_is_logged_and_pools_to_the_mean(tiny_ddpm_config):
    result = train(tiny_ddpm_config("name=quarters", "logging.log_every=8", "logging.sample_every=100"))
    record = _records(result.run_dir)[0]
    quarters = [record[f"loss_t{q}"] for q in range(4) if f"loss_t{q}" in record]
    assert len(quarters) >= 3 and not any(k.endswith(("_sum", "_count")) for k in record)
    assert min(quarters) <= record["loss"] <= max(quarters)
    assert record["grad_norm"] > 0  # the U-Net's gradient norm, logged with the diagnostics


def test_training_grids_use_the_cheap_sampler_and_sampling_the_configured_one(tiny_ddpm_config, monkeypatch):
    calls = []
    original = GaussianDiffusion.sample

    def spy(self, noise, sampler="ddim", steps=100, eta=0.0, **kwargs):
        calls.append((sampler, steps, eta))
        return original(self, noise, sampler=sampler, steps=steps, eta=eta, **kwargs)

    monkeypatch.setattr(GaussianDiffusion, "sample", spy)
    result = train(tiny_ddpm_config("name=grids", "training.max_steps=4", "training.grid_sampler=dpm++",
                                    "training.grid_steps=4", "training.sampler=ddim", "training.sampling_steps=6",
                                    "training.eta=0.5"))
    assert ("dpm++", 4, 0.0) in calls  # the grid at step 4
    assert calls[-1] == ("ddim", 6, 0.5)  # summary.json's sampling time uses the evaluation sampler
    from genlab.generate import load_run

    method = load_run(result.run_dir).method
    calls.clear()
    method.sample(method.make_noise(2), options=SampleOptions(sampler="ddpm", steps=7))
    assert calls == [("ddpm", 7, 0.5)]


def test_sample_command_takes_sampler_steps_and_eta(tiny_ddpm_config, tmp_path):
    result = train(tiny_ddpm_config("name=cli", "training.max_steps=2"))
    runner = CliRunner()
    out = tmp_path / "s.npz"
    ok = runner.invoke(app, ["sample", str(result.run_dir), "--n", "3", "--out", str(out), "--sampler", "ddim",
                             "--steps", "3", "--eta", "1", "--no-progress"])
    assert ok.exit_code == 0, ok.output
    assert np.load(out)["images"].shape == (3, 16, 16, 1)
    for args, message in ((["--steps", "51"], "from 1 to T=50"), (["--sampler", "euler"], "Unknown sampler"),
                          (["--eta", "1.5"], "eta must be in")):
        bad = runner.invoke(app, ["sample", str(result.run_dir), "--n", "1", "--out", str(out), *args])
        assert bad.exit_code != 0 and message in str(bad.exception), (args, bad.output)


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.attention_resolutions=[4]"], "only works at sides"),
    (["data.image_size=18", "model.channel_mults=[1,2,2]", "model.attention_resolutions=[9]"], "divisible"),
    (["training.sampling_steps=60"], "more than model.timesteps=50"),
    (["training.eta=1.5"], "training.eta"),
    (["training.sampler=euler"], "training.sampler"),
    (["model.prediction_type=x0"], "model.prediction_type"),
    (["training.n_critic=2"], "'training.n_critic' is a setting of the gan family"),
])
def test_bad_ddpm_configs_are_clear_errors(tiny_ddpm_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_ddpm_config(*overrides)


def test_evaluate_scores_a_diffusion_run_with_the_asked_sampler(tiny_ddpm_config, monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    calls = []
    original = GaussianDiffusion.sample

    def spy(self, noise, sampler="ddim", steps=100, eta=0.0, **kwargs):
        calls.append((sampler, steps))
        return original(self, noise, sampler=sampler, steps=steps, eta=eta, **kwargs)

    result = train(tiny_ddpm_config("name=eval", "training.max_steps=2", "data.num_samples=128"))
    monkeypatch.setattr(GaussianDiffusion, "sample", spy)
    out = CliRunner().invoke(app, ["evaluate", str(result.run_dir), "--metrics", "fid", "--n", "16",
                                   "--extractor", "domain", "--sampler", "ddim", "--steps", "2"])
    assert out.exit_code == 0, out.output
    assert "fid_domain" in out.output and set(calls) == {("ddim", 2)}
    record = read_jsonl(result.run_dir / "metrics.jsonl")[-1]
    assert record["evaluation"] and record["samples"] == 16 and np.isfinite(record["fid_domain"])
