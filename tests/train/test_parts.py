"""EMA, learning-rate schedules and the per-step GAN phases."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.methods.ema import EMA
from genlab.methods.schedules import lr_factor


def test_ema_follows_its_formula():
    net = torch.nn.Linear(3, 2)
    ema = EMA(net, decay=0.9, warmup=False)
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    assert torch.allclose(ema.model.weight, 0.9 * start + 0.1 * net.weight)
    assert not torch.equal(ema.model.weight, net.weight)


def test_ema_warmup_ramps_decay():
    ema = EMA(torch.nn.Linear(1, 1), decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)
    ema.num_updates = 10_000
    assert ema.current_decay() == 0.999


def test_lr_schedules():
    assert lr_factor("none", 5, 10) == 1.0
    assert lr_factor("cosine", 0, 10) == pytest.approx(1.0)
    assert lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert lr_factor("cosine", 10, 10, min_ratio=0.01) == pytest.approx(0.01)
    assert lr_factor("warmup_cosine", 1, 10, warmup_epochs=2) == pytest.approx(0.5)
    assert lr_factor("warmup_cosine", 6, 10, warmup_epochs=2) == pytest.approx(0.5)
    assert lr_factor("step", 65, 100, step_epochs=30, gamma=0.1) == pytest.approx(0.01)
    assert math.isclose(lr_factor("warmup_cosine", 2, 10, warmup_epochs=2), 1.0)


def test_n_critic_and_lazy_r1_run_on_the_right_steps(tiny_config):
    from genlab.data import build_dataset
    from genlab.data.loader import EpochLoader
    from genlab.methods import GANMethod, StepContext
    from genlab.models import DataShape

    cfg = tiny_config("training.n_critic=3", "training.r1_gamma=1", "training.r1_every=4")
    ds = build_dataset(cfg.data)
    method = GANMethod(cfg, DataShape(16, 1, 4), torch.device("cpu"))
    batches = list(EpochLoader(ds, 8, 0, torch.device("cpu")).epoch(0))
    seen = [method.train_step(b, StepContext(i, 8, 8)) for i, b in enumerate(batches)]
    assert [i for i, s in enumerate(seen) if "loss_g" in s] == [2, 5]
    assert [i for i, s in enumerate(seen) if "r1" in s] == [0, 4]
    assert method.ema.num_updates == 2


def test_stabilisers_change_what_they_should(tiny_config):
    """DiffAugment, perceptual and Gram terms, conditioning and AC-GAN all reach the logged step stats."""
    from genlab.data import build_dataset
    from genlab.data.loader import EpochLoader
    from genlab.methods import GANMethod, StepContext
    from genlab.models import DataShape

    cfg = tiny_config("model.architecture=resnet", "model.condition=projection+acgan", "model.embed_dim=8",
                      "training.diffaugment=color,translation,cutout", "training.perceptual_weight=0.1",
                      "training.gram_weight=0.1", "training.vgg_weights=null", "data.image_size=32")
    ds = build_dataset(cfg.data)
    method = GANMethod(cfg, DataShape(32, 1, 4), torch.device("cpu"))
    batch = next(EpochLoader(ds, 8, 0, torch.device("cpu")).epoch(0))
    stats = method.train_step(batch, StepContext(0, 8, 8))
    for key in ("perceptual", "gram", "aux_d", "aux_g", "loss_g"):
        assert torch.isfinite(stats[key]) and stats[key] > 0
    images = method.sample(method.make_noise(8))
    assert images.shape == (8, 1, 32, 32)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains(tiny_config, amp):
    """bf16 autocast, and fp16 autocast with the grad scaler (exercised on CPU; meant for CUDA)."""
    from genlab.runs.checkpoint import load_checkpoint
    from genlab.train.logging import read_jsonl
    from genlab.train.loop import train

    result = train(tiny_config(f"name={amp}", f"training.amp={amp}", "training.max_steps=4", "training.grad_clip=1.0",
                               "training.loss_type=wgan-gp"))
    losses = [r for r in read_jsonl(result.run_dir / "metrics.jsonl") if "loss_d" in r]
    assert len(losses) == 4 and all(math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"]) for r in losses)
    scaler = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["method"]["scaler"]
    assert (scaler.get("scale") is not None) == (amp == "fp16")


def test_step_clips_to_grad_clip_and_reports_the_norm_before_clipping():
    """The step's clipping gives clip_grad_norm_'s gradients; the logged norm is the unclipped one."""
    from genlab.methods.optim import MixedPrecision

    def stepped(clip):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
        (net(torch.randn(16, 4)) * 30).pow(2).sum().backward()
        return net

    ours, reference = stepped(1.0), stepped(1.0)
    expected = torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
    norm = MixedPrecision("none", torch.device("cpu"), grad_clip=1.0).step(
        torch.optim.SGD(ours.parameters(), lr=0.0), ours)
    assert float(expected) > 10 and torch.equal(norm, expected)
    for mine, theirs in zip(ours.parameters(), reference.parameters(), strict=True):
        assert torch.equal(mine.grad, theirs.grad)
    assert float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ours.parameters()]))) == pytest.approx(1.0)


def test_gradient_accumulation_matches_the_full_batch_gradient(tiny_config):
    """Without batch-coupled layers, 4 micro-batches give the same update as one full batch."""
    from genlab.data import build_dataset
    from genlab.data.loader import EpochLoader
    from genlab.methods import GANMethod, StepContext
    from genlab.models import DataShape

    def one_step(*extra):
        cfg = tiny_config("model.g_norm=none", "model.d_norm=none", "training.ema_decay=0", *extra)
        torch.manual_seed(0)
        method = GANMethod(cfg, DataShape(16, 1, 4), torch.device("cpu"))
        batch = next(EpochLoader(build_dataset(cfg.data), 8, 0, torch.device("cpu")).epoch(0))
        stats = method.train_step(batch, StepContext(0, 8, 8))
        return method, stats

    full, full_stats = one_step()
    accum, accum_stats = one_step("training.grad_accum=4")
    for a, b in zip(full.generator.parameters(), accum.generator.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(full.discriminator.parameters(), accum.discriminator.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(full_stats["loss_d"], accum_stats["loss_d"], atol=1e-5)
    from genlab.errors import ConfigError
    from genlab.train import load_experiment

    with pytest.raises(ConfigError, match="micro-batch"):
        load_experiment(None, ["training.batch_size=8", "training.grad_accum=8"])


def test_progressive_schedule():
    from genlab.methods.schedules import progressive_stage

    # ladder 4-8-16-32 (levels 0..3), start at level 1 (8 px), 2 epochs per stage, half of each new stage fading
    assert progressive_stage(0.5, 4, 1, 2.0, 0.5) == (1, 1.0)
    assert progressive_stage(2.5, 4, 1, 2.0, 0.5) == (2, 0.5)
    assert progressive_stage(3.5, 4, 1, 2.0, 0.5) == (2, 1.0)
    assert progressive_stage(4.0, 4, 1, 2.0, 0.5) == (3, 0.0)
    assert progressive_stage(99.0, 4, 1, 2.0, 0.5) == (3, 1.0)


@pytest.mark.parametrize("architecture", ["dcgan", "resnet"])
def test_progressive_growing_trains_through_every_resolution(tiny_config, architecture):
    from genlab.generate import load_run
    from genlab.models import DCGANDiscriminator, DCGANGenerator, ResNetDiscriminator, ResNetGenerator
    from genlab.train.loop import train

    if architecture == "dcgan":
        g = DCGANGenerator(latent_dim=8, image_size=32, base_channels=4)
        d = DCGANDiscriminator(image_size=32, base_channels=4)
    else:
        g = ResNetGenerator(latent_dim=8, image_size=32, channels=1, base_channels=4, attention_resolutions=(16,))
        d = ResNetDiscriminator(image_size=32, channels=1, base_channels=4, attention_resolutions=(16,))
    assert g.sizes == [4, 8, 16, 32] and d.sizes == [32, 16, 8, 4]
    full = g(torch.randn(2, 8))
    for level, side in enumerate(g.sizes):
        for alpha in (0.3, 1.0):
            g.set_stage(level, alpha)
            d.set_stage(len(g.sizes) - 1 - level, alpha)
            images = g(torch.randn(2, 8))
            assert images.shape[-1] == side and d(images).shape == (2,)
    g.set_stage(2, 0.0)
    low = g(torch.randn(2, 8))  # alpha 0: only the previous level's output, upsampled
    assert torch.equal(low[..., ::2, ::2], low[..., 1::2, 1::2])
    assert full.shape == (2, 1, 32, 32)

    result = train(tiny_config(f"name=grow-{architecture}", f"model.architecture={architecture}",
                               "data.image_size=32", "training.progressive=true",
                               "training.progressive_start=8", "training.progressive_epochs=0.5", "training.num_epochs=2"))
    method = load_run(result.run_dir, device="cpu").method
    assert method.generator.stage.tolist() == [3.0, 1.0]
    assert method.sample(method.make_noise(2)).shape == (2, 1, 32, 32)
