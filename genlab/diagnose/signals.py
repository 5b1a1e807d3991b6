"""Health signals of a generator, measured against the real data, and the levels at which they alarm.

Both the live checks during training (`genlab.train.diagnostics`) and `genlab doctor` read these
levels, so what the run warned about and what the doctor reports agree.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import torch

#: |x| above this counts as a saturated pixel (tanh's flat ends).
SATURATION_LEVEL = 0.99
#: Alarm when samples have this much more of their pixels saturated than real images (absolute share).
SATURATION_EXCESS_ALARM = 0.2
#: Alarm when samples are this much less spread out than real images (mean pairwise distance ratio).
DIVERSITY_ALARM = 0.25
#: Samples need this share of the real images' contrast before low diversity counts as collapse.
CONTRAST_FOR_COLLAPSE = 0.25
#: D calls this share of both real and fake images right: it wins outright (seed 004: 93 % / 95 %).
DOMINANCE_ACCURACY = 0.9
#: ...and its loss has fallen below this share of the loss of a D that cannot tell them apart (accuracy alone
#: saturates early: D(x) = 0.6 against D(G(z)) = 0.4 is a fair fight that scores 100 %).
DOMINANCE_LOSS_SHARE = 0.35
#: D's loss when it outputs the same for real and fake (logit 0, score 0): 2·ln 2 for ns/bce, 2 for hinge, 1/4 for LS.
CHANCE_D_LOSS = {"ns": 1.3863, "bce": 1.3863, "hinge": 2.0, "ls": 0.25}
#: Consecutive log intervals (live) that D must win by DOMINANCE_ACCURACY before the warning.
DOMINANCE_PATIENCE = 5
#: D winning is a failure only while the generator loses ground: its loss rising by this share of its size (seed 004:
#: G loss 0.48 -> 1.40) or its gradient norm falling below G_GRADIENT_VANISHED of what it was. A DCGAN's D is right
#: about >90 % of images for its first few hundred steps while G's loss falls: a healthy start (the demo).
G_LOSS_RISE = 0.05
G_GRADIENT_VANISHED = 0.1
#: Generator/discriminator parameter ratio below which D overwhelms G (seed 004 targets 0.5-1.5).
CAPACITY_RATIO_LOW = 0.5


def saturation_ratio(images: torch.Tensor, level: float = SATURATION_LEVEL) -> float:
    """Share of pixels whose |value| exceeds `level` (tanh saturation, seed note 004)."""
    return float((images.abs() > level).float().mean())


def mean_pairwise_distance(images: torch.Tensor) -> float:
    """Mean L2 distance between the images of a batch, per pixel: how spread out they are (0 = all identical)."""
    flat = images.detach().float().flatten(1)
    if len(flat) < 2:
        return 0.0
    return float(torch.pdist(flat).mean() / flat.shape[1] ** 0.5)


def mean_contrast(images: torch.Tensor) -> float:
    """Mean per-image standard deviation of the pixels: an untrained generator's flat grey images have almost none."""
    return float(images.detach().float().flatten(1).std(dim=1).mean()) if images.shape[1:].numel() > 1 else 0.0


def sample_health(samples: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """Saturation, diversity and contrast of `samples`, each beside the same measure on a real batch."""
    sample_sat, real_sat = saturation_ratio(samples), saturation_ratio(real)
    sample_div, real_div = mean_pairwise_distance(samples), mean_pairwise_distance(real)
    real_contrast = mean_contrast(real)
    return {"sample_saturation": sample_sat, "real_saturation": real_sat, "saturation_excess": sample_sat - real_sat,
            "sample_diversity": sample_div, "real_diversity": real_div,
            "diversity_ratio": sample_div / real_div if real_div > 0 else 1.0,
            "contrast_ratio": mean_contrast(samples) / real_contrast if real_contrast > 0 else 1.0}


def collapsed(values: dict[str, float]) -> bool:
    """Samples that look like images (contrast) but hardly differ from one another: mode collapse.

    Flat, near-constant samples of an untrained generator are not collapse, only not trained yet.
    """
    diversity, contrast = values.get("diversity_ratio"), values.get("contrast_ratio")
    if not isinstance(diversity, (int, float)) or not isinstance(contrast, (int, float)):
        return False  # not measured, or NaN samples (logged as null): divergence, not collapse
    return diversity < DIVERSITY_ALARM and contrast >= CONTRAST_FOR_COLLAPSE


def dominates(acc_real: float, acc_fake: float, loss_d: float | None, loss_type: str | None) -> bool:
    """D wins outright: right about nearly every real and fake image, with a loss far below chance level.

    For critics without a chance level (wgan, wgan-gp) the accuracies decide alone.
    """
    if not (acc_real > DOMINANCE_ACCURACY and acc_fake > DOMINANCE_ACCURACY):
        return False
    chance = CHANCE_D_LOSS.get(loss_type or "")
    return chance is None or loss_d is None or loss_d < DOMINANCE_LOSS_SHARE * chance


def generator_losing(loss_g: Sequence[float], grad_norm_g: Sequence[float] = ()) -> bool:
    """The generator's side of D dominance, over a window of log intervals in order: G's loss rising (the later
    half's mean above the earlier half's by G_LOSS_RISE of its size) or its gradient norm vanishing (the later half
    below G_GRADIENT_VANISHED of the earlier half). True when too few values to tell (then D's side decides alone).
    """
    if len(loss_g) < 2 and len(grad_norm_g) < 2:
        return True
    if len(loss_g) >= 2:
        half = len(loss_g) // 2
        early, late = statistics.mean(loss_g[:half]), statistics.mean(loss_g[-half:])
        if late - early > G_LOSS_RISE * abs(early):
            return True
    if len(grad_norm_g) >= 2:
        half = len(grad_norm_g) // 2
        early, late = statistics.mean(grad_norm_g[:half]), statistics.mean(grad_norm_g[-half:])
        if early > 0 and late < G_GRADIENT_VANISHED * early:
            return True
    return False
