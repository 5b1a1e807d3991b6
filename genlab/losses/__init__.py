"""Losses: adversarial pairs (registry `ADVERSARIAL_LOSSES`) and discriminator penalties."""

from genlab.losses.adversarial import ADVERSARIAL_LOSSES, AdversarialLoss, build_adversarial_loss
from genlab.losses.penalties import gradient_penalty, instance_noise_std, r1_penalty

__all__ = ["ADVERSARIAL_LOSSES", "AdversarialLoss", "build_adversarial_loss", "gradient_penalty",
           "instance_noise_std", "r1_penalty"]
