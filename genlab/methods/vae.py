"""VAE training (seed note 003, phase 3): L = L_rec + λ_perc·L_vgg + λ_adv·L_adv + β·L_kl.

Step 3.1 is the vanilla VAE (MSE + β·KL), 3.2 adds the VGG perceptual term, 3.3 adds a PatchGAN
discriminator on the reconstructions (VQGAN-lite) with its own optimiser and a GAN loss from the
registry; its term may start after `training.adversarial_start_epochs` as VQGAN's does. Every
interval logs each term raw and weighted, the D terms, and the active units of the batch's
posterior means, so posterior collapse shows while it happens.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from genlab.config import Config
from genlab.data import Batch
from genlab.errors import ConfigError
from genlab.losses import ADVERSARIAL_LOSSES, build_adversarial_loss
from genlab.losses.perceptual import PerceptualLoss
from genlab.losses.vae import active_units, adversarial_weight_at, beta_at, kl_divergence, reconstruction_loss
from genlab.methods.base import Method, SampleOptions, StepContext, truncate
from genlab.methods.ema import EMA
from genlab.methods.optim import MixedPrecision, accumulate, adam, schedule_learning_rates, split
from genlab.methods.speed import apply_speed_switches
from genlab.models import VAE, VAE_ARCHITECTURES, DataShape, PatchDiscriminator
from genlab.models.vae import check_vae


class VAEMethod(Method):
    """A Gaussian VAE, optionally with a VGG perceptual term and a PatchGAN discriminator on its reconstructions."""

    family = "vae"
    architectures = VAE_ARCHITECTURES

    @classmethod
    def check_config(cls, cfg: Config, source: str) -> None:
        """Architecture and loss names, and an image size the encoder can halve evenly."""
        VAE_ARCHITECTURES.require(cfg.model.architecture, "model.architecture", source)
        ADVERSARIAL_LOSSES.require(cfg.training.loss_type, "training.loss_type", source)
        try:
            check_vae(cfg.data.image_size, cfg.model.num_blocks, cfg.model.latent_dim)
        except ConfigError as err:
            raise ConfigError(f"Invalid configuration ({source}): data.image_size={cfg.data.image_size} with "
                              f"model.num_blocks={cfg.model.num_blocks}: {err}") from None

    def __init__(self, cfg: Config, data: DataShape, device: torch.device) -> None:
        t, m = cfg.training, cfg.model
        self.cfg, self.device = cfg, device
        self.latent_dim = m.latent_dim
        self.vae = VAE_ARCHITECTURES.get(m.architecture)(m, data).to(device)
        betas = (t.beta1, t.beta2)
        self.opt = adam(self.vae.parameters(), t.lr_g, betas, t.weight_decay, t.fused_adam)
        self.ema = EMA(self.vae, t.ema_decay, t.ema_warmup) if t.ema_decay > 0 else None
        self.precision = MixedPrecision(t.amp, device, t.grad_clip)
        self.diagnose = cfg.logging.diagnostics
        self.precision.track_norm = self.diagnose or t.nan_guard != "off"  # the norm also skips NaN/Inf steps
        self.noise_rng = torch.Generator(device=device).manual_seed(cfg.data.seed + 1)
        self.perceptual = (PerceptualLoss(t.perceptual_network, tuple(t.perceptual_layers), t.vgg_weights).to(device)
                           if t.perceptual_weight > 0 else None)
        self.discriminator: nn.Module | None = None
        if m.discriminator == "patch":
            self.discriminator = PatchDiscriminator(
                channels=data.channels, base_channels=m.discriminator_base_channels, num_layers=m.patch_layers,
                max_channels=m.max_channels, norm=m.d_norm, spectral_norm=m.spectral_norm_d).to(device)
            self.opt_d = adam(self.discriminator.parameters(), t.lr_d, betas, t.weight_decay, t.fused_adam)
            self.adversarial = build_adversarial_loss(t.loss_type)
        # The decoder trains through decoder.logits(), not a module call, so compile reaches the encoder and D.
        apply_speed_switches(t, device, (self.vae, self.discriminator), (self.ema and self.ema.model,),
                             compiled=(self.vae.encoder, self.discriminator))

    def make_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws from the N(0, I) prior, n×latent_dim."""
        gen = generator if generator is not None else self.noise_rng
        return torch.randn(n, self.latent_dim, generator=gen, device=gen.device).to(self.device)

    def _weights(self, ctx: StepContext) -> tuple[float, float]:
        """β after its warm-up, and λ_adv once the discriminator has started (0 before)."""
        t = self.cfg.training
        beta = beta_at(ctx.step, t.beta, round(t.beta_warmup_epochs * ctx.steps_per_epoch))
        start = round(t.adversarial_start_epochs * ctx.steps_per_epoch)
        adv = adversarial_weight_at(ctx.step, t.adversarial_weight, start) if self.discriminator is not None else 0.0
        return beta, adv

    def objective(self, images: torch.Tensor, beta: float, adv_weight: float) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """(total loss, its terms raw and weighted, the reconstruction) for one batch: the seed's formula."""
        t = self.cfg.training
        with self.precision.autocast():
            mu, logvar = self.vae.encode(images)
            z = self.vae.reparameterize(mu.float(), logvar.float(), self.noise_rng)
            logits = self.vae.decode_logits(z).float()
        recon = torch.tanh(logits)
        rec = reconstruction_loss(recon, images, t.reconstruction_loss, t.reconstruction_reduction,
                                  logits=logits if t.reconstruction_loss == "bce" else None)
        kl = kl_divergence(mu.float(), logvar.float())
        total = rec + beta * kl
        terms = {"recon": rec.detach(), "kl": kl.detach(), "kl_weighted": (beta * kl).detach(),
                 "active_units": torch.tensor(float(active_units(mu.detach(), t.active_units_threshold)[0]))}
        if self.perceptual is not None:
            perc = self.perceptual(recon, images)
            total = total + t.perceptual_weight * perc
            terms["perceptual"], terms["perceptual_weighted"] = perc.detach(), (t.perceptual_weight * perc).detach()
        if adv_weight > 0:
            self.discriminator.requires_grad_(False)
            with self.precision.autocast():
                adv = self.adversarial.g_loss(self.discriminator(recon).float())
            self.discriminator.requires_grad_(True)
            total = total + adv_weight * adv
            terms["adv_g"], terms["adv_weighted"] = adv.detach(), (adv_weight * adv).detach()
        terms["loss"] = total.detach()
        return total, terms, recon

    def train_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One VAE update (over training.grad_accum micro-batches) and, once started, one PatchGAN update."""
        t = self.cfg.training
        optimizers = [("lr_g", self.opt, t.lr_g)]
        if self.discriminator is not None:
            optimizers.append(("lr_d", self.opt_d, t.lr_d))
        stats = schedule_learning_rates(t, ctx, optimizers)
        beta, adv_weight = self._weights(ctx)
        parts = t.grad_accum
        totals: dict[str, torch.Tensor] = {}
        recons = []
        self.opt.zero_grad(set_to_none=True)
        for images in split(batch.images, parts):
            loss, terms, recon = self.objective(images, beta, adv_weight)
            self.precision.backward(loss / parts)
            accumulate(totals, terms)
            recons.append(recon.detach())
        norm = self.precision.step(self.opt, self.vae, totals)  # totals: the NaN guard's check too
        if self.diagnose:
            stats["grad_norm"] = norm
        if self.ema is not None:
            self.ema.update(self.vae)
        if adv_weight > 0:
            self.opt_d.zero_grad(set_to_none=True)
            for images, recon in zip(split(batch.images, parts), recons, strict=True):
                with self.precision.autocast():
                    real_out = self.discriminator(images).float()
                    fake_out = self.discriminator(recon).float()
                loss_d = self.adversarial.d_loss(real_out, fake_out)
                self.precision.backward(loss_d / parts)
                accumulate(totals, {"loss_d": loss_d.detach(),
                                    "d_real": self.adversarial.score(real_out.detach()).mean(),
                                    "d_fake": self.adversarial.score(fake_out.detach()).mean()})
            self.precision.step(self.opt_d, self.discriminator, totals)
        self.precision.update()
        stats.update({key: value / parts for key, value in totals.items()})
        stats["beta"] = torch.tensor(beta)
        return stats

    def _net(self, ema: bool) -> VAE:
        return self.ema.model if (ema and self.ema is not None) else self.vae

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, labels: torch.Tensor | None = None,
               options: SampleOptions | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode prior draws in eval mode (EMA weights when kept); truncation redraws |z| above the threshold."""
        options = options or SampleOptions()
        if options.truncation is not None:
            noise = truncate(noise, options.truncation, generator or torch.Generator(noise.device).manual_seed(0))
        net = self._net(options.ema)
        was_training = net.training
        net.eval()
        images = net.decode(noise.to(self.device))
        net.train(was_training)
        return images

    @torch.no_grad()
    def encode(self, images: torch.Tensor, ema: bool = True) -> torch.Tensor:
        """Posterior means E[z | x] of `images` (N×latent_dim), in eval mode."""
        net = self._net(ema)
        was_training = net.training
        net.eval()
        means = net.encode(images.to(self.device))[0]
        net.train(was_training)
        return means

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, ema: bool = True) -> torch.Tensor:
        """Decode the posterior means of `images` (deterministic reconstructions)."""
        net = self._net(ema)
        was_training = net.training
        net.eval()
        out = net.decode(self.encode(images, ema))
        net.train(was_training)
        return out

    @torch.no_grad()
    def interpolate(self, first: torch.Tensor, second: torch.Tensor, steps: int = 8, ema: bool = True) -> torch.Tensor:
        """Decode the straight line between the posterior means of two images (steps images, ends included)."""
        net = self._net(ema)
        was_training = net.training
        net.eval()
        means = net.encode(torch.stack([first, second]).to(self.device))[0]
        weights = torch.linspace(0, 1, steps, device=self.device)[:, None]
        out = net.decode((1 - weights) * means[0] + weights * means[1])
        net.train(was_training)
        return out

    def figures(self, real: torch.Tensor) -> dict[str, tuple[torch.Tensor, int]]:
        """A reconstruction grid (inputs above, outputs below) and an interpolation between the first two inputs."""
        real = real.to(self.device)
        pairs = torch.cat([real, self.reconstruct(real)])
        return {"reconstructions": (pairs, len(real)), "interpolation": (self.interpolate(real[0], real[1]), 8)}

    def networks(self) -> dict[str, nn.Module]:
        nets: dict[str, nn.Module] = {"encoder": self.vae.encoder, "decoder": self.vae.decoder}
        if self.discriminator is not None:
            nets["discriminator"] = self.discriminator
        return nets

    def state_dict(self) -> dict[str, Any]:
        state = {"vae": self.vae.state_dict(), "opt": self.opt.state_dict(),
                 "ema": self.ema.state_dict() if self.ema is not None else None,
                 "noise_rng": self.noise_rng.get_state(), "scaler": self.precision.scaler.state_dict()}
        if self.discriminator is not None:
            state["discriminator"], state["opt_d"] = self.discriminator.state_dict(), self.opt_d.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.vae.load_state_dict(state["vae"])
        self.opt.load_state_dict(state["opt"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.noise_rng.set_state(state["noise_rng"])
        self.precision.scaler.load_state_dict(state["scaler"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])
