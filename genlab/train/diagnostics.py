"""Watching a run for the classic failure modes and saying what to do about them."""

from __future__ import annotations

import logging
import math

import torch

from genlab.errors import GenlabError

log = logging.getLogger("genlab")

SATURATION_THRESHOLD = 0.3
DOMINANCE_THRESHOLD = 0.95
DOMINANCE_PATIENCE = 5


class TrainingDiverged(GenlabError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def saturation_ratio(images: torch.Tensor, level: float = 0.99) -> float:
    """Fraction of pixels whose |value| exceeds `level` (tanh saturation, seed note 004)."""
    return float((images.abs() > level).float().mean())


class Diagnostics:
    """Stateful checks run at log and sample time; each warning is given once per run."""

    def __init__(self) -> None:
        self.warned: set[str] = set()
        self.dominance_streak = 0

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning(message)

    def check_losses(self, step: int, values: dict[str, float]) -> None:
        """Stop on non-finite losses; warn when the discriminator wins outright for a while."""
        bad = [k for k, v in values.items() if k.startswith("loss") and not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(
                f"Training diverged at step {step}: {', '.join(bad)} became {values[bad[0]]}. The last checkpoint "
                "(checkpoints/last.pt) is from before this and is intact. Try lower learning rates "
                "(training.lr_g / training.lr_d), gradient clipping (training.grad_clip=1.0), or a more stable "
                "loss (training.loss_type=hinge or wgan-gp), then resume or restart."
            )
        d_real, d_fake = values.get("d_real"), values.get("d_fake")
        if d_real is not None and d_fake is not None and 0 <= d_fake <= 1 and 0 <= d_real <= 1:
            dominant = d_real > DOMINANCE_THRESHOLD and d_fake < 1 - DOMINANCE_THRESHOLD
            self.dominance_streak = self.dominance_streak + 1 if dominant else 0
            if self.dominance_streak >= DOMINANCE_PATIENCE:
                self._warn_once(
                    "dominance",
                    f"Step {step}: the discriminator separates real from fake almost perfectly "
                    f"(D(x)={d_real:.3f}, D(G(z))={d_fake:.3f}) for {self.dominance_streak} log intervals, so the "
                    "generator gets little gradient. Consider instance noise (training.d_noise_std=0.1), label "
                    "smoothing (training.loss_type=bce training.label_smoothing=0.1), a smaller discriminator "
                    "(model.discriminator_base_channels) or a lower training.lr_d.",
                )

    def check_saturation(self, step: int, images: torch.Tensor) -> float:
        """Fraction of saturated pixels in the samples; warns above 30 %."""
        ratio = saturation_ratio(images)
        if ratio > SATURATION_THRESHOLD:
            self._warn_once(
                "saturation",
                f"Step {step}: {ratio:.0%} of sample pixels are saturated (|x| > 0.99), the tanh-saturation failure "
                "of seed note 004. Usual causes: spectral norm or large init on the generator's last layer, or a "
                "discriminator that overwhelms the generator. Lower training.lr_d or shrink the discriminator.",
            )
        return ratio

    @staticmethod
    def summary(values: dict[str, float]) -> dict[str, str]:
        """Short progress-bar fields: D and G losses, D(x), D(G(z)), images/s."""
        names = {"loss_d": "D", "loss_g": "G", "d_real": "D(x)", "d_fake": "D(G(z))", "images_per_sec": "img/s"}
        return {short: (f"{values[k]:.0f}" if k == "images_per_sec" else f"{values[k]:.3f}")
                for k, short in names.items() if k in values}
