"""GANMethod's phases: Lipschitz critics, per-sample penalties, conditional GP, lazy R1, GASTeN v2's update, AMP, DiffAugment."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import genlab.methods.gan as gan_module
from genlab.data import Batch
from genlab.data.augment import diff_augment
from genlab.errors import ConfigError
from genlab.methods import GANMethod, StepContext
from genlab.methods.gan import AmbiguityTerm
from genlab.models import DataShape, discriminator_norm
from genlab.models.layers import ConditionalBatchNorm2d

SHAPE = DataShape(16, 1, 4)


def make(tiny_config, *overrides: str) -> GANMethod:
    """A tiny GAN on 16 px, 1 channel, 4 classes, with seeded weights."""
    torch.manual_seed(0)
    return GANMethod(tiny_config(*overrides), SHAPE, torch.device("cpu"))


def batch(seed: int = 0) -> Batch:
    """Eight random 16 px images in [-1, 1] with labels 0-3."""
    gen = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(8, 1, 16, 16, generator=gen) * 2 - 1, torch.randint(0, 4, (8,), generator=gen))


def step(method: GANMethod, index: int = 0) -> dict[str, torch.Tensor]:
    """One training step on the seeded batch."""
    return method.train_step(batch(), StepContext(index, 8, 64))


class OptimiserSteps:
    """Counts an optimiser's steps and records the gradient norm each one sees."""

    def __init__(self, optimizer: torch.optim.Optimizer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.norms: list[float] = []
        params = [p for group in optimizer.param_groups for p in group["params"]]
        original = optimizer.step

        def counted(*args, **kwargs):
            self.norms.append(math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params if p.grad is not None)))
            return original(*args, **kwargs)

        monkeypatch.setattr(optimizer, "step", counted)


def test_wgan_clips_every_discriminator_weight_after_each_d_step(tiny_config):
    method = make(tiny_config, "training.loss_type=wgan", "training.wgan_clip=0.01", "training.n_critic=2")
    assert max(p.abs().max().item() for p in method.discriminator.parameters()) > 0.01  # the init is not clipped
    step(method)
    d_max = max(p.abs().max().item() for p in method.discriminator.parameters())
    assert d_max == pytest.approx(0.01)  # clipped, and the clip is reached
    assert max(p.abs().max().item() for p in method.generator.parameters()) > 0.01  # G is left alone


def test_wgan_without_a_lipschitz_constraint_is_refused(tiny_config):
    with pytest.raises(ConfigError, match="Lipschitz") as err:
        tiny_config("training.loss_type=wgan", "training.wgan_clip=0")
    assert "training.wgan_clip" in str(err.value) and "spectral_norm_d" in str(err.value)
    with pytest.raises(ConfigError, match="gp_lambda=0"):
        tiny_config("training.loss_type=wgan-gp", "training.gp_lambda=0")
    method = make(tiny_config, "training.loss_type=wgan", "training.wgan_clip=0", "model.spectral_norm_d=true")
    assert method.clip_weights == 0  # spectral norm bounds the critic instead
    assert make(tiny_config, "training.loss_type=hinge").clip_weights == 0  # clipping belongs to wgan only


def test_penalties_get_a_per_sample_discriminator_norm(tiny_config):
    """Under R1 or a GP, d_norm=auto is per-sample: D(x_0) does not depend on x_1..x_7."""
    cfg = tiny_config()
    assert discriminator_norm(cfg.model, "ns") == "batch"
    assert discriminator_norm(cfg.model, "ns", r1_gamma=1.0) == "instance"
    assert discriminator_norm(cfg.model, "wgan-gp") == "instance"
    method = make(tiny_config, "training.r1_gamma=1")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in method.discriminator.modules())
    x = batch().images.requires_grad_(True)
    method.discriminator(x)[0].backward()
    assert x.grad[0].abs().sum() > 0 and x.grad[1:].abs().sum() == 0
    for penalty in ("training.r1_gamma=1", "training.loss_type=wgan-gp"):
        with pytest.raises(ConfigError, match="d_norm=batch"):
            tiny_config("model.d_norm=batch", penalty)
    make(tiny_config, "model.d_norm=batch")  # without a penalty batch norm stays allowed


def test_conditional_gradient_penalty_interpolates_within_the_real_labels(tiny_config, monkeypatch):
    method = make(tiny_config, "model.architecture=resnet", "model.condition=projection", "model.embed_dim=8",
                  "training.loss_type=wgan-gp", "training.beta1=0")
    for module in method.generator.modules():  # at init conditional BN ignores the class: make classes differ
        if isinstance(module, ConditionalBatchNorm2d):
            nn.init.normal_(module.to_bias.weight)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    forward = method.generator.forward

    def recording(z, labels=None):
        images = forward(z, labels)
        calls.append((labels.clone(), images.detach().clone()))
        return images

    monkeypatch.setattr(method.generator, "forward", recording)
    mixed_with: list[torch.Tensor] = []
    penalty = gan_module.gradient_penalty

    def spy(critic, real, fake, generator=None):
        mixed_with.append(fake.detach().clone())
        return penalty(critic, real, fake, generator)

    monkeypatch.setattr(gan_module, "gradient_penalty", spy)
    stats = step(method)
    assert torch.isfinite(stats["gp"])
    labels = batch().labels
    (fake,) = mixed_with
    sources = [y for y, images in calls if torch.equal(images, fake)]
    assert len(sources) == 1 and torch.equal(sources[0], labels)  # G drew the GP's fakes for the real images' classes
    assert any(not torch.equal(y, labels) for y, _ in calls)  # while D's fakes have drawn labels


def test_label_smoothing_is_refused_by_losses_that_ignore_it(tiny_config):
    for loss in ("ns", "ls", "hinge"):
        with pytest.raises(ConfigError, match=f"ignored by the {loss} loss"):
            tiny_config(f"training.loss_type={loss}", "training.label_smoothing=0.1")
    assert make(tiny_config, "training.loss_type=bce", "training.label_smoothing=0.1").loss.real_target == 0.9


def test_lazy_r1_takes_its_own_d_step_with_the_adam_correction(tiny_config, monkeypatch):
    method = make(tiny_config, "training.r1_gamma=1", "training.r1_every=4", "training.lr_d=1e-3")
    c = 4 / 5
    counter = OptimiserSteps(method.opt_d, monkeypatch)
    stats = [step(method, i) for i in range(5)]
    assert len(counter.norms) == 7  # steps 0 and 4 add a Dreg step
    group = method.opt_d.param_groups[0]
    assert group["lr"] == pytest.approx(1e-3 * c)  # the schedule keeps the corrected rate
    assert group["betas"] == pytest.approx((0.5**c, 0.999**c))
    assert [i for i, s in enumerate(stats) if "r1" in s] == [0, 4]
    assert method.opt_g.param_groups[0]["betas"] == (0.5, 0.999)
    every_step = make(tiny_config, "training.r1_gamma=1", "training.r1_every=1")
    assert every_step.opt_d.param_groups[0]["betas"] == (0.5, 0.999)  # not lazy: one combined D step
    counter = OptimiserSteps(every_step.opt_d, monkeypatch)
    assert "r1" in step(every_step) and len(counter.norms) == 1


class Halves(nn.Module):
    """A fixed binary 'classifier' of 16 px grey images: the logit is a linear function of the pixels."""

    channels, image_size = 1, 16

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(256, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)).squeeze(1)


@pytest.mark.parametrize("update", ["added", "separate"])
def test_gaussian_ambiguity_update(tiny_config, monkeypatch, update):
    """gasten.gaussian_update from the config to the steps G takes (the classifier is a stand-in, not a run)."""
    weight = 0.01
    monkeypatch.setattr(gan_module, "load_classifier", lambda source, device: Halves())
    method = make(tiny_config, "gasten.ambiguity=true", "gasten.classifier=halves.pt", "gasten.loss=gaussian",
                  f"gasten.weight={weight}", f"gasten.gaussian_update={update}", "training.ema_decay=0")
    assert isinstance(method.ambiguity, AmbiguityTerm) and method.ambiguity.weight == weight
    assert method.ambiguity.separate == (update == "separate")
    counter = OptimiserSteps(method.opt_g, monkeypatch)
    stats = step(method)
    assert torch.isfinite(stats["loss_amb"]) and torch.isfinite(stats["loss_g"])
    if update == "added":
        assert len(counter.norms) == 1
    else:  # GASTeN v2: an ambiguity step clipped to 0.5 · α, then the adversarial step
        assert len(counter.norms) == 2 and counter.norms[0] == pytest.approx(0.5 * weight, rel=1e-4)
        assert counter.norms[1] > 0.5 * weight  # the adversarial step is not clipped by α


def test_separate_gaussian_update_needs_the_gaussian_loss(tiny_config):
    with pytest.raises(ConfigError, match="gaussian_update=separate"):
        tiny_config("gasten.loss=confusion", "gasten.gaussian_update=separate")


def test_bf16_autocast_stays_close_to_fp32(tiny_config):
    """Three steps with bf16 autocast on the CPU: finite, not the fp32 numbers, but the same training direction."""
    losses, updates = {}, {}
    for amp in ("none", "bf16"):
        method = make(tiny_config, f"training.amp={amp}")
        params = [*method.generator.parameters(), *method.discriminator.parameters()]
        start = torch.cat([p.detach().flatten() for p in params])
        losses[amp] = [step(method, i)["loss_d"].item() for i in range(3)]
        updates[amp] = torch.cat([p.detach().flatten() for p in params]) - start
    assert all(math.isfinite(v) for v in losses["none"] + losses["bf16"]) and torch.isfinite(updates["bf16"]).all()
    assert losses["bf16"] != losses["none"] and not torch.equal(updates["bf16"], updates["none"])  # bf16 really ran
    assert losses["bf16"] == pytest.approx(losses["none"], rel=1e-2)
    assert F.cosine_similarity(updates["bf16"], updates["none"], dim=0) > 0.95  # Adam moved the weights alike


def weights(method: GANMethod) -> torch.Tensor:
    """Every parameter of G and D, flattened into one vector."""
    params = (*method.generator.parameters(), *method.discriminator.parameters())
    return torch.cat([p.detach().flatten() for p in params])


def test_fp16_grad_scaler_skips_overflow_then_follows_fp32(tiny_config):
    """training.amp=fp16 with its GradScaler (what amp=auto picks on CUDA; fp16 autocast also runs on the CPU).

    A step whose scaled gradients overflow fp16 leaves the weights alone and halves the scale; at a
    scale that fits, three steps move the weights as three fp32 steps do.
    """
    method = make(tiny_config, "training.amp=fp16")
    assert method.precision.dtype == torch.float16 and method.precision.scaler.is_enabled()
    method.precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)  # every gradient overflows fp16
    start = weights(method)
    assert torch.isfinite(step(method)["loss_d"])
    assert torch.equal(weights(method), start) and method.precision.scaler.get_scale() == 2.0**23
    losses, updates = {}, {}
    for amp in ("none", "fp16"):
        method = make(tiny_config, f"training.amp={amp}")
        if amp == "fp16":
            method.precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        start = weights(method)
        losses[amp] = [step(method, i)["loss_d"].item() for i in range(3)]
        updates[amp] = weights(method) - start
    assert method.precision.scaler.get_scale() == 2.0**10  # no fp16 step was skipped
    assert losses["fp16"] != losses["none"] and losses["fp16"] == pytest.approx(losses["none"], rel=1e-2)
    assert torch.isfinite(updates["fp16"]).all() and F.cosine_similarity(updates["fp16"], updates["none"], dim=0) > 0.95


def test_diffaugment_changes_what_the_discriminator_sees(tiny_config, monkeypatch):
    """DiffAugment reaches all three D inputs of a step (real and fake in Dmain, fake in Gmain), differentiably."""
    seen: dict[str, list[tuple[torch.Tensor, bool]]] = {}
    for policy in ("", "translation,cutout"):
        method = make(tiny_config, f"training.diffaugment={policy}")
        forward = method.discriminator.forward
        inputs: list[tuple[torch.Tensor, bool]] = []

        def recording(x, labels=None, forward=forward, inputs=inputs):
            inputs.append((x.detach().clone(), x.requires_grad))
            return forward(x, labels)

        monkeypatch.setattr(method.discriminator, "forward", recording)
        step(method)
        seen[policy] = inputs
    plain, augmented = seen[""], seen["translation,cutout"]
    assert len(plain) == len(augmented) == 3
    assert torch.equal(plain[0][0], batch().images)  # the real batch, as D sees it
    assert not torch.equal(augmented[0][0], plain[0][0])
    assert ((augmented[0][0] == 0) & (plain[0][0] != 0)).any()  # zero-filled borders and cut-out squares
    # The fakes too (G(z) from tanh is never exactly 0): in D's step, and in G's step, where G's gradient
    # must still flow through the augmentation.
    assert [bool((x == 0).any()) for x, _ in plain] == [False] * 3
    assert [bool((x == 0).any()) for x, _ in augmented] == [True] * 3
    assert augmented[2][1] and not augmented[1][1]  # Gmain's input carries G's graph; Dmain's fakes are detached


def test_translation_moves_and_cutout_zeroes_pixels():
    x = torch.arange(1, 16 * 16 * 8 + 1, dtype=torch.float32).view(8, 1, 16, 16)  # every pixel distinct, non-zero
    moved = diff_augment(x, "translation", torch.Generator().manual_seed(3))
    shifts = []
    for n in range(8):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(moved[n], _shifted(x[n], dy, dx))]
        assert len(found) == 1, f"sample {n} is not a whole-pixel shift of at most 2 px"
        shifts.append(found[0])
    assert any(s != (0, 0) for s in shifts) and len(set(shifts)) > 1
    cut = diff_augment(torch.ones(8, 1, 16, 16), "cutout", torch.Generator().manual_seed(3))
    for n in range(8):
        rows, cols = (cut[n, 0] == 0).nonzero(as_tuple=True)
        assert 0 < len(rows) <= 64 and set(cut[n].unique().tolist()) == {0.0, 1.0}
        height, width = int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1
        assert len(rows) == height * width and height <= 8 and width <= 8  # one rectangle of at most half the side


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """`image` with its content moved down dy and right dx pixels, uncovered pixels zero."""
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out
