"""Diffusion math against closed forms, diffusers' schedulers against the DDIM formula, and a tiny overfit."""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from genlab.errors import ConfigError
from genlab.models.diffusion import (
    PREDICTION_TYPES,
    SAMPLERS,
    GaussianDiffusion,
    alphas_cumprod,
    cosine_betas,
    linear_betas,
    loss_by_quarter,
    make_betas,
    make_scheduler,
    predict_noise_from_start,
    predict_noise_from_v,
    predict_start_from_noise,
    predict_start_from_v,
    predict_v,
    q_sample,
    quarter_means,
    target_for,
)
from genlab.models.unet import build_unet

T = 1000


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: OpenMP threads busy-wait, so on a busy 2-core machine these tiny networks run
    several times slower with two threads than with one (50 training steps: 2.6 s vs 18-22 s measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_unet(image_size: int = 16, channels: int = 1, base: int = 16, **kwargs) -> torch.nn.Module:
    """Two levels (16 -> 8 px), one resnet per level, attention at 8 px."""
    return build_unet(image_size, channels, base_channels=base, channel_mults=(1, 2), layers_per_block=1,
                      attention_resolutions=(8,), **kwargs)


# ----------------------------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("steps", [1000, 4000, 50])
def test_cosine_betas_equal_diffusers_squaredcos_cap_v2(steps):
    # diffusers hard-codes s = 0.008 and the 0.999 cap, computes in float64 and returns float32: bit-identical.
    ours = cosine_betas(steps, s=0.008).to(torch.float32)
    theirs = DDPMScheduler(num_train_timesteps=steps, beta_schedule="squaredcos_cap_v2").betas
    assert torch.equal(ours, theirs)


def test_cosine_schedule_formula():
    betas = cosine_betas(T)
    f = [math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(T + 1)]
    ac = alphas_cumprod(betas)
    for t in (0, 1, 250, 500, 900, 990):  # ᾱ_t (after t+1 noising steps) = f(t+1)/f(0) where no β is capped
        assert ac[t].item() == pytest.approx(f[t + 1] / f[0], rel=1e-9)
    assert betas.max().item() == 0.999 and betas[-1].item() == 0.999  # capped at the very end only
    assert (betas[:-1] < 0.999).all()
    assert cosine_betas(T, max_beta=0.5).max().item() == 0.5


def test_linear_betas():
    betas = linear_betas(T)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(betas.float(), DDPMScheduler(num_train_timesteps=T).betas, rtol=1e-6, atol=0)
    assert torch.equal(make_betas("cosine", 10), cosine_betas(10))
    with pytest.raises(ConfigError, match="linear, cosine"):
        make_betas("sigmoid", 10)


def test_make_scheduler_passes_seed_betas_only_when_they_differ():
    # Same as diffusers' built-ins: the scheduler keeps the readable built-in name.
    assert make_scheduler("ddim", T, cosine_betas(T), "cosine").config.trained_betas is None
    assert make_scheduler("ddim", T, linear_betas(T), "linear").config.trained_betas is None
    # Another s (or cap): handed over as trained_betas and used as given.
    for betas in (cosine_betas(T, s=0.02), cosine_betas(T, max_beta=0.99), linear_betas(T, end=0.03)):
        for kind in SAMPLERS:
            scheduler = make_scheduler(kind, T, betas, "cosine")
            assert scheduler.config.trained_betas is not None
            assert torch.equal(scheduler.betas, betas.float())
    with pytest.raises(ConfigError, match="num_train_timesteps=1000"):
        make_scheduler("ddim", T, cosine_betas(10))


def test_make_scheduler_kinds_and_errors():
    assert isinstance(make_scheduler("ddpm", T), DDPMScheduler)
    assert isinstance(make_scheduler("ddim", T), DDIMScheduler)
    dpm = make_scheduler("dpm++", T, prediction_type="v_prediction", beta_schedule="cosine")
    assert isinstance(dpm, DPMSolverMultistepScheduler)
    assert dpm.config.algorithm_type == "dpmsolver++" and dpm.config.prediction_type == "v_prediction"
    assert dpm.config.beta_schedule == "squaredcos_cap_v2"
    assert make_scheduler("ddim", T, timestep_spacing="trailing").config.timestep_spacing == "trailing"
    with pytest.raises(ConfigError, match="ddpm, ddim, dpm\\+\\+"):
        make_scheduler("euler", T)
    with pytest.raises(ConfigError, match="epsilon, v_prediction, sample"):
        make_scheduler("ddim", T, prediction_type="eps")


@pytest.mark.parametrize("prediction_type, output", [("epsilon", 0.0), ("v_prediction", -5.0)])
def test_dpm_solver_clips_x0_like_ddim(prediction_type, output):
    # At the first (noisiest) step, ε = 0 claims x0 = x_t / sqrt(ᾱ_T), ~150× x_t under the linear schedule, and
    # v = -5 claims x0 = sqrt(ᾱ)·x_t + 5·sqrt(1-ᾱ) ≈ 5. DDIM clips such estimates (clip_sample); DPM-Solver++ must.
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    def first_x0(**overrides):
        dpm = make_scheduler("dpm++", T, prediction_type=prediction_type, **overrides)
        dpm.set_timesteps(20)
        dpm._init_step_index(dpm.timesteps[0])
        return dpm.convert_model_output(torch.full_like(x, output), sample=x)

    clipped, raw = first_x0(), first_x0(thresholding=False)
    assert clipped.abs().max() <= 1.0
    assert raw.abs().max() > 4.0  # what the unclipped solver would extrapolate from
    torch.testing.assert_close(clipped, raw.clamp(-1.0, 1.0))


def test_scheduler_alphas_cumprod_match_ours():
    # diffusers accumulates ᾱ in float32, ours in float64: they agree to float32 accuracy.
    for schedule in ("linear", "cosine"):
        ours = alphas_cumprod(make_betas(schedule, T))
        theirs = make_scheduler("ddpm", T, beta_schedule=schedule).alphas_cumprod.double()
        assert torch.allclose(ours, theirs, rtol=2e-5, atol=1e-12)


# ----------------------------------------------------------------------------------------------- closed forms


@pytest.fixture
def draws():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(8, 2, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(8, 2, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 10, 250, 500, 750, 998, 999])
    return x0, noise, t


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_closed_forms_invert_each_other(draws, schedule):
    x0, noise, t = draws
    ac = alphas_cumprod(make_betas(schedule, T))
    xt = q_sample(x0, t, noise, ac)
    a = ac[t].view(-1, 1, 1, 1)
    assert torch.allclose(xt, a.sqrt() * x0 + (1 - a).sqrt() * noise)
    v = predict_v(x0, noise, t, ac)
    assert torch.allclose(v, a.sqrt() * noise - (1 - a).sqrt() * x0)
    # Cosine ᾱ_999 ≈ 4e-11: recovering x_0 from ε divides by √ᾱ, so allow the float64 round-off that amplifies.
    assert torch.allclose(predict_start_from_noise(xt, t, noise, ac), x0, atol=1e-5 if schedule == "cosine" else 1e-9)
    assert torch.allclose(predict_noise_from_start(xt, t, x0, ac), noise, atol=1e-6)
    assert torch.allclose(predict_start_from_v(xt, t, v, ac), x0, atol=1e-12)
    assert torch.allclose(predict_noise_from_v(xt, t, v, ac), noise, atol=1e-12)
    # v has unit variance like ε when x_0 is white: |v|² + |x_t|² = |ε|² + |x_0|² sample by sample.
    assert torch.allclose(v.pow(2) + xt.pow(2), noise.pow(2) + x0.pow(2))


def test_closed_forms_match_diffusers(draws):
    x0, noise, t = draws
    scheduler = make_scheduler("ddpm", T, beta_schedule="cosine")
    ac = alphas_cumprod(cosine_betas(T))
    x0, noise = x0.float(), noise.float()
    assert torch.allclose(q_sample(x0, t, noise, ac), scheduler.add_noise(x0, noise, t), atol=1e-5)
    assert torch.allclose(predict_v(x0, noise, t, ac), scheduler.get_velocity(x0, noise, t), atol=1e-5)


def test_targets(draws):
    x0, noise, t = draws
    ac = alphas_cumprod(linear_betas(T))
    assert target_for("epsilon", x0, noise, t, ac) is noise
    assert target_for("sample", x0, noise, t, ac) is x0
    assert torch.equal(target_for("v_prediction", x0, noise, t, ac), predict_v(x0, noise, t, ac))
    with pytest.raises(ConfigError, match="v_prediction"):
        target_for("v", x0, noise, t, ac)


# ----------------------------------------------------------------------------------------------- DDIM step


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_one_ddim_step_matches_the_formula(eta, prediction_type):
    g = torch.Generator().manual_seed(1)
    scheduler = make_scheduler("ddim", T, cosine_betas(T), "cosine", prediction_type)
    scheduler.set_timesteps(10)
    t, t_prev = int(scheduler.timesteps[3]), int(scheduler.timesteps[4])
    assert (t, t_prev) == (600, 500)
    x_t = torch.randn(2, 1, 4, 4, generator=g)
    output = torch.randn(2, 1, 4, 4, generator=g)
    z = torch.randn(2, 1, 4, 4, generator=g)

    ac = alphas_cumprod(cosine_betas(T))
    a_t, a_prev = ac[t].item(), ac[t_prev].item()
    tt = torch.tensor([t])
    if prediction_type == "epsilon":
        x0_hat, eps_hat = predict_start_from_noise(x_t, tt, output, ac), output
    elif prediction_type == "v_prediction":
        x0_hat, eps_hat = predict_start_from_v(x_t, tt, output, ac), predict_noise_from_v(x_t, tt, output, ac)
    else:
        x0_hat, eps_hat = output, predict_noise_from_start(x_t, tt, output, ac)
    x0_hat = x0_hat.clamp(-1, 1)  # diffusers' default clip_sample=True clips x̂0 (ε̂ stays unclipped)
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)
    expected = math.sqrt(a_prev) * x0_hat + math.sqrt(1 - a_prev - sigma**2) * eps_hat + sigma * z

    got = scheduler.step(output, t, x_t, eta=eta, variance_noise=z if eta > 0 else None).prev_sample
    assert torch.allclose(got, expected, atol=2e-5)
    if eta == 0.0:
        assert sigma == 0.0


# ----------------------------------------------------------------------------------------------- loss by quarter


def test_loss_by_quarter_sums_counts_and_means():
    losses = torch.tensor([1.0, 3.0, 10.0, 5.0])
    t = torch.tensor([0, 249, 500, 999])
    stats = loss_by_quarter(losses, t, T)
    assert {k: float(v) for k, v in stats.items()} == {
        "loss_t0_sum": 4.0, "loss_t0_count": 2.0, "loss_t1_sum": 0.0, "loss_t1_count": 0.0,
        "loss_t2_sum": 10.0, "loss_t2_count": 1.0, "loss_t3_sum": 5.0, "loss_t3_count": 1.0,
    }
    assert quarter_means(stats) == {"loss_t0": 2.0, "loss_t2": 10.0, "loss_t3": 5.0}  # no NaN for the empty quarter
    # Averaging every key over steps (as the training meter does) and then dividing gives the pooled mean.
    second = loss_by_quarter(torch.tensor([6.0, 2.0]), torch.tensor([300, 10]), T)
    averaged = {k: (float(stats[k]) + float(second[k])) / 2 for k in stats}
    assert quarter_means(averaged) == pytest.approx({"loss_t0": 2.0, "loss_t1": 6.0, "loss_t2": 10.0, "loss_t3": 5.0})
    assert all(not v.requires_grad for v in loss_by_quarter(losses.requires_grad_(), t, T).values())


# ----------------------------------------------------------------------------------------------- the model


def test_loss_shapes_determinism_and_state_dict():
    diffusion = GaussianDiffusion(tiny_unet(), linear_betas(T))
    x0 = torch.rand(4, 1, 16, 16) * 2 - 1
    loss_a, t_a = diffusion.loss(x0, torch.Generator().manual_seed(5))
    loss_b, t_b = diffusion.loss(x0, torch.Generator().manual_seed(5))
    assert loss_a.shape == (4,) and t_a.shape == (4,) and ((t_a >= 0) & (t_a < T)).all()
    assert torch.equal(t_a, t_b) and torch.allclose(loss_a, loss_b)
    assert all(key.startswith("unet.") for key in diffusion.state_dict())  # the schedule is not saved
    with pytest.raises(ConfigError, match="v_prediction"):
        GaussianDiffusion(tiny_unet(), linear_betas(T), "x0")


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sample_shape_and_range(sampler):
    diffusion = GaussianDiffusion(tiny_unet(channels=3), cosine_betas(T), "v_prediction", "cosine")
    diffusion.train()
    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    images = diffusion.sample(noise, sampler, steps=4, eta=1.0, generator=torch.Generator().manual_seed(1))
    again = diffusion.sample(noise, sampler, steps=4, eta=1.0, generator=torch.Generator().manual_seed(1))
    assert images.shape == noise.shape and torch.isfinite(images).all()
    assert images.min() >= -1 and images.max() <= 1
    assert torch.equal(images, again)  # seeded, even for the stochastic samplers
    assert diffusion.unet.training  # restored after sampling in eval mode


def test_ddim_eta_reaches_the_scheduler():
    diffusion = GaussianDiffusion(tiny_unet(), linear_betas(T))
    noise = torch.randn(1, 1, 16, 16)

    def run(eta: float, seed: int) -> torch.Tensor:
        return diffusion.sample(noise, "ddim", steps=3, eta=eta, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0.0, 1), run(0.0, 2))  # η = 0: deterministic DDIM
    assert not torch.allclose(run(1.0, 1), run(1.0, 2))  # η = 1: fresh noise at each step


def test_ddim_sampling_rederives_epsilon_from_the_clipped_x0(monkeypatch):
    seen = []
    step = DDIMScheduler.step

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("use_clipped_model_output"))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(DDIMScheduler, "step", spy)
    diffusion = GaussianDiffusion(tiny_unet(), linear_betas(T))
    diffusion.sample(torch.randn(1, 1, 16, 16), sampler="ddim", steps=4)
    assert seen == [True] * 4



    diffusion = GaussianDiffusion(tiny_unet(num_classes=3), linear_betas(T))
    labels = torch.tensor([0, 2])
    loss, _ = diffusion.loss(torch.zeros(2, 1, 16, 16), torch.Generator().manual_seed(0), labels=labels)
    assert loss.shape == (2,)
    noise = torch.randn(2, 1, 16, 16)
    assert diffusion.sample(noise, "ddim", steps=2, labels=labels, progress=True).shape == (2, 1, 16, 16)


def test_sampling_errors():
    diffusion = GaussianDiffusion(tiny_unet(), linear_betas(50))
    noise = torch.randn(1, 1, 16, 16)
    with pytest.raises(ConfigError, match="from 1 to T=50"):
        diffusion.sample(noise, "ddim", steps=51)
    with pytest.raises(ConfigError, match="from 1 to T=50"):
        diffusion.sample(noise, "ddim", steps=0)
    for eta in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="eta must be in"):
            diffusion.sample(noise, "ddim", steps=5, eta=eta)
    with pytest.raises(ConfigError, match="ddpm, ddim, dpm"):
        diffusion.sample(noise, "euler", steps=5)
    # diffusers' DPM-Solver++ spacing repeats a timestep when steps == T (its update would divide by zero).
    with pytest.raises(ConfigError, match="visits a timestep twice"):
        diffusion.sample(noise, "dpm++", steps=50)
    assert diffusion.sample(noise, "ddpm", steps=50).shape == noise.shape  # all T steps are fine for ancestral


def test_tiny_unet_overfits_sixteen_images():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    images = F.interpolate(torch.randn(16, 1, 4, 4, generator=g), size=16, mode="bilinear").tanh()  # smooth blobs
    diffusion = GaussianDiffusion(tiny_unet(), linear_betas(T))
    optimiser = torch.optim.Adam(diffusion.parameters(), lr=3e-3)

    def held_loss() -> float:
        """Mean loss over fixed t and noise (the same draws before and after training)."""
        with torch.no_grad():
            fixed = torch.Generator().manual_seed(123)
            return torch.stack([diffusion.loss(images, fixed)[0].mean() for _ in range(8)]).mean().item()

    start_loss, start = held_loss(), time.perf_counter()
    ratio, steps = 1.0, 0
    while steps < 300 and ratio < 10:  # about 100 steps at 16 px on 2 CPU cores (~4 s unloaded)
        for _ in range(25):
            loss = diffusion.loss(images, g)[0].mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        steps += 25
        ratio = start_loss / held_loss()
    print(f"overfit: loss {start_loss:.3f} -> {start_loss / ratio:.4f} ({ratio:.1f}x) in {steps} steps, "
          f"{time.perf_counter() - start:.1f} s")
    assert ratio >= 10
