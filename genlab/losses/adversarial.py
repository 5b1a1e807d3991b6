"""Adversarial losses as (discriminator loss, generator loss) pairs on raw logits / critic scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genlab.registry import Registry


class AdversarialLoss:
    """Base: `d_loss(real, fake)` and `g_loss(fake)` on raw discriminator outputs."""

    #: True for losses whose critic needs a gradient penalty (wgan-gp).
    gradient_penalty: bool = False
    #: True for critics kept Lipschitz by clipping their weights (wgan, Arjovsky et al.).
    weight_clipping: bool = False
    #: True when training.label_smoothing means something to the loss (bce).
    label_smoothing: bool = False
    #: True when `score` maps outputs to probabilities (shown as D(x), D(G(z))).
    probabilistic: bool = True
    #: Raw output above which D calls an image real: 0 for logits (p > 0.5) and critics (the sign), 0.5 for LSGAN.
    decision_threshold: float = 0.0

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Loss the discriminator minimises."""
        raise NotImplementedError

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """Loss the generator minimises."""
        raise NotImplementedError

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """Outputs as shown in progress and logs: probabilities for logit losses, raw scores otherwise."""
        return torch.sigmoid(logits) if self.probabilistic else logits

    def accuracy(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D's accuracy on real and on fake outputs (seed 004's table), for every loss via `decision_threshold`."""
        return ((real > self.decision_threshold).float().mean(), (fake <= self.decision_threshold).float().mean())


class NonSaturatingLoss(AdversarialLoss):
    """Goodfellow et al.'s GAN loss with the non-saturating generator objective −log D(G(z))."""

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake).mean()


class BCELoss(AdversarialLoss):
    """Binary cross-entropy against targets, with one-sided label smoothing of the real targets."""

    label_smoothing = True

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.real_target = 1.0 - label_smoothing

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return (F.binary_cross_entropy_with_logits(real, torch.full_like(real, self.real_target))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


class LeastSquaresLoss(AdversarialLoss):
    """LSGAN (Mao et al.): D pushes real to 1 and fake to 0, G pushes fake to 1, squared errors."""

    probabilistic = False
    decision_threshold = 0.5

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * (fake - 1).pow(2).mean()


class WassersteinLoss(AdversarialLoss):
    """WGAN critic loss E[D(fake)] − E[D(real)]; the generator maximises E[D(fake)]."""

    probabilistic = False
    weight_clipping = True

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return fake.mean() - real.mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


class WassersteinGPLoss(WassersteinLoss):
    """WGAN-GP (Gulrajani et al.): the Wasserstein loss plus a gradient penalty on interpolates."""

    gradient_penalty = True
    weight_clipping = False


class HingeLoss(AdversarialLoss):
    """Hinge loss (SAGAN/BigGAN): relu(1 − D(real)) + relu(1 + D(fake)); G maximises D(fake)."""

    probabilistic = False

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


ADVERSARIAL_LOSSES: Registry[type[AdversarialLoss]] = Registry("adversarial loss")
ADVERSARIAL_LOSSES.register("ns")(NonSaturatingLoss)
ADVERSARIAL_LOSSES.register("bce")(BCELoss)
ADVERSARIAL_LOSSES.register("ls")(LeastSquaresLoss)
ADVERSARIAL_LOSSES.register("wgan")(WassersteinLoss)
ADVERSARIAL_LOSSES.register("wgan-gp")(WassersteinGPLoss)
ADVERSARIAL_LOSSES.register("hinge")(HingeLoss)


def build_adversarial_loss(name: str, label_smoothing: float = 0.0) -> AdversarialLoss:
    """The registered loss `name`; label smoothing only where the loss has targets to smooth (bce)."""
    cls = ADVERSARIAL_LOSSES.get(name)
    if cls.label_smoothing:
        return cls(label_smoothing)
    if label_smoothing:
        raise ValueError(f"label smoothing {label_smoothing} would be ignored by the {name} loss (bce only)")
    return cls()
