"""GAN training: discriminator and generator phases, pluggable losses, penalties and EMA.

Like stylegan2-ada's `accumulate_gradients`, a step runs named phases: `Dmain` (adversarial loss,
plus the gradient penalty for wgan-gp), `Dreg` (lazy R1 every `r1_every` steps) and `Gmain`
(every `n_critic` steps). New losses and penalties plug into these phases; the loop never changes.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.config import Config
from genlab.data import Batch
from genlab.data.augment import diff_augment, parse_diff_policy
from genlab.distributed import average_gradients, draw_global, on_global_batch
from genlab.errors import ConfigError, GenlabError, NotSupportedYet
from genlab.losses import (
    ADVERSARIAL_LOSSES,
    build_adversarial_loss,
    build_ambiguity_loss,
    gradient_penalty,
    instance_noise_std,
    r1_penalty,
)
from genlab.losses.perceptual import GramLoss, PerceptualLoss
from genlab.methods.base import Method, SampleOptions, StepContext, truncate
from genlab.methods.ema import EMA
from genlab.methods.optim import MixedPrecision, accumulate, adam, schedule_learning_rates, split
from genlab.methods.schedules import progressive_stage
from genlab.methods.speed import apply_speed_switches
from genlab.models import GAN_ARCHITECTURES, DataShape, build_models
from genlab.models.classifiers import load_classifier

log = logging.getLogger("genlab")


class AmbiguityTerm:
    """GASTeN step 2: weight · L_amb(C(G(z))) through a frozen binary classifier C (gradients reach G only)."""

    def __init__(self, classifier: nn.Module, weight: float, loss_name: str, var: float, image_size: int,
                 separate: bool = False) -> None:
        self.classifier = classifier.eval().requires_grad_(False)
        self.weight = weight
        self.loss = build_ambiguity_loss(loss_name, var)
        self.image_size = image_size
        #: GASTeN v2's Gaussian update: a generator step of its own, gradient norm clipped to 0.5 · weight.
        self.separate = separate

    @classmethod
    def from_config(cls, cfg: Config, data: DataShape, device: torch.device) -> AmbiguityTerm:
        """Load gasten.classifier and check that it reads this data's images."""
        g = cfg.gasten
        if not g.classifier:
            raise ConfigError("gasten.ambiguity=true needs gasten.classifier: a run from `genlab classifier train`.")
        classifier = load_classifier(g.classifier, device=device)
        if classifier.channels != data.channels:
            raise ConfigError(f"The classifier {g.classifier} reads {classifier.channels}-channel images but the GAN "
                              f"makes {data.channels}-channel ones; train the classifier on the same data.")
        return cls(classifier, g.weight, g.loss, g.gaussian_var, classifier.image_size,
                   separate=g.gaussian_update == "separate")

    def __call__(self, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ambiguity loss, batch ACD) of generated images in [-1, 1]."""
        if fake.shape[-1] != self.image_size:
            fake = F.interpolate(fake, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                                 align_corners=False)
        probs = torch.sigmoid(self.classifier(fake.float()).float().reshape(-1))
        return self.loss(probs), (0.5 - probs.detach()).abs().mean()


class GANMethod(Method):
    """A generator/discriminator pair trained with the configured adversarial loss."""

    family = "gan"
    architectures = GAN_ARCHITECTURES
    saturation_alarm = True

    @classmethod
    def check_config(cls, cfg: Config, source: str) -> None:
        """The GAN registry names (architecture, loss), the DiffAugment policy and what each architecture supports."""
        GAN_ARCHITECTURES.require(cfg.model.architecture, "model.architecture", source)
        ADVERSARIAL_LOSSES.require(cfg.training.loss_type, "training.loss_type", source)
        try:
            parse_diff_policy(cfg.training.diffaugment)
        except GenlabError as err:
            raise ConfigError(f"Invalid configuration ({source}): {err}") from None
        m = cfg.model
        if m.architecture == "dcgan":
            unsupported = {"model.use_residual": m.use_residual,
                           f"model.condition={m.condition}": m.condition not in ("none", "concat"),
                           "model.condition=concat with a PatchGAN D": m.condition == "concat" and m.discriminator != "standard",
                           "training.progressive with PatchGAN/multi-scale D":
                               cfg.training.progressive and (m.discriminator != "standard" or m.d_scales > 1)}
            hint = ("It conditions with model.condition=concat (seed 002); use model.architecture=resnet for "
                    "projection/AC-GAN conditioning and residual blocks.")
        else:
            unsupported = {"model.discriminator": m.discriminator != "standard",
                           "model.condition=concat": m.condition == "concat",
                           "training.progressive with a multi-scale D": cfg.training.progressive and m.d_scales > 1}
            hint = "PatchGAN discriminators and concat conditioning come with model.architecture=dcgan."
        for key, used in unsupported.items():
            if used:
                raise NotSupportedYet(f"In {source}: {key} is not supported yet by the {m.architecture} architecture. "
                                      f"{hint}")
        if m.use_residual and m.architecture != "resnet":
            raise ConfigError(f"In {source}: model.use_residual=true needs model.architecture=resnet.")
        cls._check_loss_settings(cfg, source)

    @staticmethod
    def _check_loss_settings(cfg: Config, source: str) -> None:
        """A Lipschitz critic for wgan(-gp), per-sample D norms under input-gradient penalties, smoothing for bce only."""
        t, m = cfg.training, cfg.model
        loss = ADVERSARIAL_LOSSES.get(t.loss_type)
        unbounded = ("training.wgan_clip=0" if loss.weight_clipping and t.wgan_clip == 0
                     else "training.gp_lambda=0" if loss.gradient_penalty and t.gp_lambda == 0 else None)
        if unbounded and not m.spectral_norm_d:
            raise ConfigError(
                f"Invalid configuration ({source}): training.loss_type={t.loss_type} estimates a Wasserstein distance "
                f"only with a Lipschitz critic, and with {unbounded} and model.spectral_norm_d=false nothing bounds "
                "it, so the critic's scores grow without limit. Keep training.wgan_clip=0.01 (weight clipping, as in "
                "Arjovsky et al.) for wgan, training.gp_lambda=10 for wgan-gp, or set model.spectral_norm_d=true.")
        penalties = [name for name, on in (("the wgan-gp gradient penalty", loss.gradient_penalty and t.gp_lambda > 0),
                                           ("R1 (training.r1_gamma > 0)", t.r1_gamma > 0)) if on]
        if penalties and m.d_norm == "batch":
            raise ConfigError(
                f"Invalid configuration ({source}): model.d_norm=batch with {' and '.join(penalties)}. The penalty "
                "takes each image's own input gradient, but BatchNorm makes D(x_i) depend on the whole batch, so the "
                "penalty is no longer the one defined. Use model.d_norm=auto (instance here), instance, group or none.")
        if t.label_smoothing > 0 and not loss.label_smoothing:
            raise ConfigError(
                f"Invalid configuration ({source}): training.label_smoothing={t.label_smoothing} would be silently "
                f"ignored by the {t.loss_type} loss: one-sided label smoothing softens the real targets of the bce "
                "loss only. Set training.loss_type=bce or training.label_smoothing=0.")

    def __init__(self, cfg: Config, data: DataShape, device: torch.device) -> None:
        t = cfg.training
        self.cfg = cfg
        self.device = device
        self.latent_dim = cfg.model.latent_dim
        self.num_classes = data.num_classes
        self.image_size = data.image_size
        self.conditional = cfg.model.condition != "none"
        self.generator, self.discriminator = (m.to(device) for m in
                                              build_models(cfg.model, data, t.loss_type, t.r1_gamma))
        self.loss = build_adversarial_loss(t.loss_type, t.label_smoothing)
        self.clip_weights = t.wgan_clip if self.loss.weight_clipping else 0.0
        # Lazy R1 takes a D step of its own every r1_every steps: k + 1 Adam steps per k batches, which
        # stylegan2-ada's training_loop offsets with lr · c and β^c, c = k / (k + 1).
        self.lazy_r1 = t.r1_gamma > 0 and t.r1_every > 1
        ratio = t.r1_every / (t.r1_every + 1) if self.lazy_r1 else 1.0
        self.lr_d, self.betas_d = t.lr_d * ratio, (t.beta1**ratio, t.beta2**ratio)
        self.opt_g = adam(self.generator.parameters(), t.lr_g, (t.beta1, t.beta2), t.weight_decay, t.fused_adam)
        self.opt_d = adam(self.discriminator.parameters(), self.lr_d, self.betas_d, t.weight_decay, t.fused_adam)
        self.ema = EMA(self.generator, t.ema_decay, t.ema_warmup) if t.ema_decay > 0 else None
        apply_speed_switches(t, device, (self.generator, self.discriminator), (self.ema and self.ema.model,))
        self.noise_rng = torch.Generator(device=device).manual_seed(cfg.data.seed + 1)
        self.precision = MixedPrecision(t.amp, device, t.grad_clip)
        self.diagnose = cfg.logging.diagnostics
        self.precision.track_norm = self.diagnose or t.nan_guard != "off"
        self.reconstruction_terms = self._reconstruction_terms(cfg, device)
        self.ambiguity = AmbiguityTerm.from_config(cfg, data, device) if cfg.gasten.ambiguity else None

    def _grow(self, ctx: StepContext, images: torch.Tensor) -> torch.Tensor:
        """Set G's and D's progressive-growing stage for this step; return the real batch at that stage's size."""
        t = self.cfg.training
        sizes = self.generator.sizes
        start = next((i for i, side in enumerate(sizes) if side >= t.progressive_start), len(sizes) - 1)
        level, alpha = progressive_stage(ctx.epoch, len(sizes), start, t.progressive_epochs, t.progressive_fade)
        self.generator.set_stage(level, alpha)
        self.discriminator.set_stage(len(sizes) - 1 - level, alpha)
        side = sizes[level]
        if images.shape[-1] != side:
            images = F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        return images

    @staticmethod
    def _reconstruction_terms(cfg: Config, device: torch.device) -> list[tuple[str, float, nn.Module]]:
        """Optional generator terms comparing G(z) with the real batch: VGG perceptual and Gram texture losses."""
        t = cfg.training
        terms: list[tuple[str, float, nn.Module]] = []
        if t.perceptual_weight > 0 or t.gram_weight > 0:
            kwargs = {"network": t.perceptual_network, "layers": tuple(t.perceptual_layers), "weights": t.vgg_weights}
            if t.perceptual_weight > 0:
                terms.append(("perceptual", t.perceptual_weight, PerceptualLoss(**kwargs).to(device)))
            if t.gram_weight > 0:
                terms.append(("gram", t.gram_weight, GramLoss(**kwargs).to(device)))
        return terms

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        """DiffAugment (when configured) applied alike to everything the discriminator sees."""
        policy = self.cfg.training.diffaugment
        return on_global_batch(lambda x: diff_augment(x, policy, self.noise_rng), images) if policy else images

    def make_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard-normal z of shape n×latent_dim."""
        gen = generator if generator is not None else self.noise_rng
        return torch.randn(n, self.latent_dim, generator=gen, device=gen.device).to(self.device)

    def make_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """Uniformly drawn class labels for conditional models (None when unconditional)."""
        if not self.conditional:
            return None
        gen = generator if generator is not None else self.noise_rng
        return torch.randint(0, self.num_classes, (n,), generator=gen, device=gen.device).to(self.device)

    def grid_labels(self, n: int) -> torch.Tensor | None:
        """Labels for sample grids: classes in turn, so each class shows up."""
        return torch.arange(n, device=self.device) % self.num_classes if self.conditional else None

    def _aux_loss(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """AC-GAN cross-entropy of the discriminator's last auxiliary logits against `labels`."""
        logits = getattr(self.discriminator, "aux_logits", None)
        if logits is None or labels is None:
            return None
        return F.cross_entropy(logits.float(), labels)

    def _set_learning_rates(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        t = self.cfg.training
        return schedule_learning_rates(t, ctx, [("lr_g", self.opt_g, t.lr_g), ("lr_d", self.opt_d, self.lr_d)])

    def _noisy(self, images: torch.Tensor, std: float) -> torch.Tensor:
        if std <= 0:
            return images
        rng = self.noise_rng
        noise = draw_global(lambda n: torch.randn((n, *images.shape[1:]), generator=rng, device=rng.device), len(images))
        return images + std * noise.to(images)

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One discriminator update and, every n_critic steps, one generator update.

        With `training.grad_accum` > 1 each phase runs over that many micro-batches, accumulating
        gradients before a single optimiser step (same effective batch, less memory).
        """
        t = self.cfg.training
        G, D = self.generator, self.discriminator
        stats = self._set_learning_rates(ctx)
        noise_std = instance_noise_std(t.d_noise_std, t.d_noise_decay_epochs, ctx.epoch)
        train_g = (ctx.step + 1) % t.n_critic == 0
        if t.progressive:
            batch = Batch(self._grow(ctx, batch.images), batch.labels)
        run_r1 = t.r1_gamma > 0 and ctx.step % t.r1_every == 0
        n = batch.images.shape[0]
        z = draw_global(self.make_noise, n)  # under torchrun: this rank's rows of the global batch's draw
        fake_labels = draw_global(self.make_labels, n)
        real_labels = batch.labels if self.conditional else None
        parts = t.grad_accum
        separate_amb = self.ambiguity is not None and self.ambiguity.separate
        # One G forward serves both phases, as in the classic DCGAN loop, unless a G step comes in between.
        reuse_fake = parts == 1 and not separate_amb
        gp_on = self.loss.gradient_penalty and t.gp_lambda > 0
        chunks = list(zip(split(batch.images, parts), split(real_labels, parts), split(z, parts),
                          split(fake_labels, parts), strict=True))
        totals: dict[str, torch.Tensor] = {}

        self.opt_d.zero_grad(set_to_none=True)
        fakes = []
        for real, y_real, z_part, y_fake in chunks:
            with torch.set_grad_enabled(train_g and reuse_fake), self.precision.autocast():
                fake = G(z_part, y_fake).float()
            fakes.append(fake)
            gp_fake = None
            if gp_on and y_real is not None:  # interpolate within a class: fakes drawn for the real labels
                with torch.no_grad(), self.precision.autocast():
                    gp_fake = G(z_part, y_real).float()
            accumulate(totals, self._discriminator_pass(real, y_real, fake.detach(), y_fake, noise_std,
                                                        run_r1 and not self.lazy_r1, parts, gp_fake))
        norm_d = self._step_discriminator(totals)
        if self.diagnose:
            stats["grad_norm_d"] = norm_d
        if run_r1 and self.lazy_r1:  # Dreg: its own D step (stylegan2-ada's lazy regularisation)
            self.precision.update()
            self.opt_d.zero_grad(set_to_none=True)
            for real, y_real, _, _ in chunks:
                accumulate(totals, self._r1_term(self._noisy(self._augment(real), noise_std), y_real, parts))
            self._step_discriminator(totals)

        if train_g:
            D.requires_grad_(False)
            if separate_amb:
                accumulate(totals, self._ambiguity_step(chunks))
            self.opt_g.zero_grad(set_to_none=True)
            for (real, _, z_part, y_fake), fake in zip(chunks, fakes, strict=True):
                if not reuse_fake:
                    with self.precision.autocast():
                        fake = G(z_part, y_fake).float()
                accumulate(totals, self._generator_pass(real, fake, y_fake, noise_std, parts))
            D.requires_grad_(True)
            norm_g = self.precision.step(self.opt_g, G, totals)  # totals: the NaN guard's check too
            if self.diagnose:
                stats["grad_norm_g"] = norm_g
            if self.ema is not None:
                self.ema.update(G)
        self.precision.update()
        stats.update({key: value / parts for key, value in totals.items()})
        if t.d_noise_std > 0:  # logged until the end, so the step where it reached zero shows
            stats["d_noise_std"] = torch.tensor(noise_std)
        return stats

    def _step_discriminator(self, losses: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """One D optimiser step, then wgan's weight clipping to [-wgan_clip, wgan_clip] (Arjovsky et al.)."""
        norm = self.precision.step(self.opt_d, self.discriminator, losses)
        if self.clip_weights > 0:
            with torch.no_grad():
                for param in self.discriminator.parameters():
                    param.clamp_(-self.clip_weights, self.clip_weights)
        return norm

    def _r1_term(self, real_in: torch.Tensor, labels: torch.Tensor | None, parts: int) -> dict[str, torch.Tensor]:
        """R1 on D's real inputs, backward with weight γ/2 · r1_every, so its average strength matches r1_gamma."""
        t = self.cfg.training
        r1 = r1_penalty(lambda x: self.discriminator(x, labels), real_in)
        self.precision.backward(0.5 * t.r1_gamma * t.r1_every * r1 / parts)
        return {"r1": r1.detach()}

    def _ambiguity_step(self, chunks: list[tuple]) -> dict[str, torch.Tensor]:
        """GASTeN v2's Gaussian update: a G step on L_amb alone, its gradient norm clipped to 0.5 · α."""
        G, term = self.generator, self.ambiguity
        parts = len(chunks)
        totals: dict[str, torch.Tensor] = {}
        self.opt_g.zero_grad(set_to_none=True)
        for _, _, z_part, y_fake in chunks:
            with self.precision.autocast():
                fake = G(z_part, y_fake).float()
            amb, acd = term(fake)
            self.precision.backward(amb / parts)
            accumulate(totals, {"loss_amb": amb.detach(), "acd_batch": acd})
        scaler = self.precision.scaler
        average_gradients(G.parameters())
        scaler.unscale_(self.opt_g)
        torch.nn.utils.clip_grad_norm_(G.parameters(), 0.5 * term.weight)
        scaler.step(self.opt_g)
        self.precision.update()
        return totals

    def _discriminator_pass(self, real: torch.Tensor, real_labels: torch.Tensor | None, fake: torch.Tensor,
                            fake_labels: torch.Tensor | None, noise_std: float, run_r1: bool,
                            parts: int, gp_fake: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Dmain (adversarial loss, + gradient penalty, + AC-GAN class loss), and R1 when it is not lazy: backward only.

        The gradient penalty interpolates real images with `gp_fake` (fakes of the real labels, for
        conditional critics) when given, else with `fake`.
        """
        t = self.cfg.training
        D = self.discriminator
        real_in = self._noisy(self._augment(real), noise_std)
        fake_in = self._noisy(self._augment(fake), noise_std)
        with self.precision.autocast():
            real_out = D(real_in, real_labels).float()
            aux_real = self._aux_loss(real_labels)
            fake_out = D(fake_in, fake_labels).float()
            aux_fake = self._aux_loss(fake_labels)
        loss_d = self.loss.d_loss(real_out, fake_out)
        stats = {"loss_d": loss_d.detach(), "d_real": self.loss.score(real_out.detach()).mean(),
                 "d_fake": self.loss.score(fake_out.detach()).mean()}
        if self.diagnose:
            stats["d_acc_real"], stats["d_acc_fake"] = self.loss.accuracy(real_out.detach(), fake_out.detach())
        if aux_real is not None and aux_fake is not None:
            loss_d = loss_d + t.aux_weight * (aux_real + aux_fake)
            stats["aux_d"] = (aux_real + aux_fake).detach()
        if self.loss.gradient_penalty and t.gp_lambda > 0:
            mix_with = fake_in if gp_fake is None else self._noisy(self._augment(gp_fake), noise_std)
            gp = gradient_penalty(lambda x: D(x, real_labels), real_in, mix_with, self.noise_rng)
            loss_d = loss_d + t.gp_lambda * gp
            stats["gp"] = gp.detach()
        self.precision.backward(loss_d / parts)
        if run_r1:
            stats.update(self._r1_term(real_in, real_labels, parts))
        return stats

    def _generator_pass(self, real: torch.Tensor, fake: torch.Tensor, fake_labels: torch.Tensor | None,
                        noise_std: float, parts: int) -> dict[str, torch.Tensor]:
        """Gmain: adversarial loss through the frozen discriminator, plus perceptual/Gram and AC-GAN terms."""
        t = self.cfg.training
        with self.precision.autocast():
            fake_scores = self.discriminator(self._noisy(self._augment(fake), noise_std), fake_labels).float()
        loss_g = self.loss.g_loss(fake_scores)
        stats = {"loss_g": loss_g.detach()}
        for name, weight, term in self.reconstruction_terms:
            value = term(fake, real)
            loss_g = loss_g + weight * value
            stats[name] = value.detach()
        if self.ambiguity is not None and not self.ambiguity.separate:
            amb, acd = self.ambiguity(fake)
            loss_g = loss_g + self.ambiguity.weight * amb
            stats["loss_amb"], stats["acd_batch"] = amb.detach(), acd
        aux_g = self._aux_loss(fake_labels)
        if aux_g is not None:
            loss_g = loss_g + t.aux_weight * aux_g
            stats["aux_g"] = aux_g.detach()
        self.precision.backward(loss_g / parts)
        return stats

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, labels: torch.Tensor | None = None,
               options: SampleOptions | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Generate images in eval mode: the EMA generator unless options.ema is off, z truncated if asked."""
        options = options or SampleOptions()
        net = self.ema.model if (options.ema and self.ema is not None) else self.generator
        if options.truncation is not None:
            noise = truncate(noise, options.truncation, generator or torch.Generator(noise.device).manual_seed(0))
        if labels is None:
            labels = self.grid_labels(len(noise))
        was_training = net.training
        net.eval()
        images = net(noise.to(self.device), None if labels is None else labels.to(self.device))
        if images.shape[-1] != self.image_size:  # a progressive-growing stage below full resolution
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="nearest")
        net.train(was_training)
        return images

    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    @torch.no_grad()
    def health(self) -> dict[str, float]:
        """How far the EMA generator is from the raw one: ‖θ_ema − θ‖ / ‖θ‖ (nothing without EMA or diagnostics)."""
        if self.ema is None or not self.diagnose:
            return {}
        raw = [p.detach().float() for p in self.generator.parameters()]
        ema = [p.float() for p in self.ema.model.parameters()]
        distance = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(torch._foreach_sub(ema, raw))))
        scale = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(raw)))
        return {"ema_distance": float(distance / scale.clamp_min(1e-12))}

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "noise_rng": self.noise_rng.get_state(),
            "scaler": self.precision.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        for group in self.opt_d.param_groups:  # a run without lazy R1 (training.init_from) stored other betas
            group["betas"] = self.betas_d
        self.noise_rng.set_state(state["noise_rng"])
        if state.get("scaler"):
            self.precision.scaler.load_state_dict(state["scaler"])
