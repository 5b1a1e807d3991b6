"""Losses: adversarial pairs (`ADVERSARIAL_LOSSES`), discriminator penalties and GASTeN ambiguity (`AMBIGUITY_LOSSES`)."""

from genlab.losses.adversarial import ADVERSARIAL_LOSSES, AdversarialLoss, build_adversarial_loss
from genlab.losses.ambiguity import AMBIGUITY_LOSSES, build_ambiguity_loss
from genlab.losses.penalties import gradient_penalty, instance_noise_std, r1_penalty

__all__ = ["ADVERSARIAL_LOSSES", "AMBIGUITY_LOSSES", "build_ambiguity_loss", "AdversarialLoss", "build_adversarial_loss", "gradient_penalty",
           "instance_noise_std", "r1_penalty"]
