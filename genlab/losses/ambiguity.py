"""GASTeN ambiguity losses: how far a binary classifier's outputs p = C(G(z)) are from the undecided 0.5.

Step 2 adds `weight · L_amb(p)` to the generator loss, pulling samples onto the decision boundary.
Each loss is a pure function of the probabilities (registry `AMBIGUITY_LOSSES`), so it can be checked
against its formula on hand-computed tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from genlab.registry import Registry

AmbiguityLoss = Callable[[torch.Tensor], torch.Tensor]
AMBIGUITY_LOSSES: Registry[Callable[..., AmbiguityLoss]] = Registry("ambiguity loss")

_EPS = 1e-7


def confusion_distance(probs: torch.Tensor) -> torch.Tensor:
    """Mean |0.5 − p|: GASTeN's original loss, and the ACD metric when computed without gradients."""
    return (0.5 - probs).abs().mean()


def kl_to_uniform(probs: torch.Tensor) -> torch.Tensor:
    """Mean KL(p ‖ 0.5) of the Bernoulli predictions: log 2 minus their entropy, zero only at p = 0.5."""
    p = probs.clamp(_EPS, 1 - _EPS)
    return (p * torch.log(2 * p) + (1 - p) * torch.log(2 * (1 - p))).mean()


def gaussian_ambiguity(probs: torch.Tensor, var: float = 0.01) -> torch.Tensor:
    """Mean ½[log σ² + (p − 0.5)²/σ²]: the Gaussian negative log-likelihood of p around 0.5 (GASTeN v2)."""
    return 0.5 * (math.log(var) + (probs - 0.5).square() / var).mean()


AMBIGUITY_LOSSES.register("confusion")(lambda **_: confusion_distance)
AMBIGUITY_LOSSES.register("kl")(lambda **_: kl_to_uniform)
AMBIGUITY_LOSSES.register("gaussian")(lambda var=0.01, **_: lambda probs: gaussian_ambiguity(probs, var))


def build_ambiguity_loss(name: str, var: float = 0.01) -> AmbiguityLoss:
    """The ambiguity loss `name` (confusion, kl or gaussian with variance `var`)."""
    return AMBIGUITY_LOSSES.get(name)(var=var)
