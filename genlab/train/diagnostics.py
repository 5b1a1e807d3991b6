"""Watching a run for the classic failure modes and saying what to do about them (`genlab doctor` says more)."""

from __future__ import annotations

import logging
import math

import torch

from genlab.diagnose.signals import (
    CAPACITY_RATIO_LOW,
    DOMINANCE_PATIENCE,
    SATURATION_EXCESS_ALARM,
    collapsed,
    dominates,
    generator_losing,
    sample_health,
    saturation_ratio,
)
from genlab.errors import GenlabError

__all__ = ["Diagnostics", "TrainingDiverged", "saturation_ratio"]

log = logging.getLogger("genlab")

#: Sample checks in a row below DIVERSITY_ALARM before the collapse warning (the first grids are noise).
COLLAPSE_PATIENCE = 2


class TrainingDiverged(GenlabError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def non_finite_losses(values: dict[str, float]) -> list[str]:
    """The loss keys of `values` that are NaN or infinite."""
    return [k for k, v in values.items() if k.startswith("loss") and not math.isfinite(v)]


class Diagnostics:
    """Stateful checks run at log and sample time; each warning is given once per run."""

    def __init__(self, loss_type: str | None = None) -> None:
        self.loss_type = loss_type
        self.warned: set[str] = set()
        self.dominance_streak = 0
        #: G's loss and gradient norm over the dominance streak: D winning while G still improves is no failure.
        self.streak_g: list[tuple[float | None, float | None]] = []
        self.collapse_streak = 0

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning(message)

    def check_losses(self, step: int, values: dict[str, float]) -> None:
        """Stop on non-finite losses; warn when the discriminator wins outright for a while (any loss)."""
        bad = non_finite_losses(values)
        if bad:
            raise TrainingDiverged(
                f"Training diverged at step {step}: {', '.join(bad)} became {values[bad[0]]}. The last checkpoint "
                "(checkpoints/last.pt) is from before this and is intact. Try lower learning rates "
                "(training.lr_g / training.lr_d), gradient clipping (training.grad_clip=1.0), or a more stable "
                "loss (training.loss_type=hinge or wgan-gp), then resume or restart; training.nan_guard=recover "
                "reloads the last checkpoint with lower rates by itself."
            )
        acc_real, acc_fake = values.get("d_acc_real"), values.get("d_acc_fake")
        if acc_real is None or acc_fake is None:
            return
        dominant = dominates(acc_real, acc_fake, values.get("loss_d"), self.loss_type)
        self.dominance_streak = self.dominance_streak + 1 if dominant else 0
        self.streak_g = [*self.streak_g, (values.get("loss_g"), values.get("grad_norm_g"))][-256:] if dominant else []
        if self.dominance_streak < DOMINANCE_PATIENCE:
            return
        losses = [g for g, _ in self.streak_g if g is not None and math.isfinite(g)]
        norms = [n for _, n in self.streak_g if n is not None and math.isfinite(n)]
        if generator_losing(losses, norms):  # else D wins while G still improves: a DCGAN's usual start
            self._warn_once(
                "dominance",
                f"Step {step}: the discriminator tells real from fake almost always (accuracy {acc_real:.0%} on real, "
                f"{acc_fake:.0%} on fake) for {self.dominance_streak} log intervals while the generator's loss rises "
                "or its gradient vanishes, so the generator gets little useful gradient. Consider a lower "
                "training.lr_d, training.n_critic=1, a smaller discriminator "
                "(model.discriminator_base_channels) or instance noise (training.d_noise_std=0.1); "
                "`genlab doctor <run>` suggests exact values.",
            )

    def check_capacity(self, counts: dict[str, int]) -> dict[str, float]:
        """G/D parameter counts and ratio (logged once at the start); warns when D is far larger (seed 004: 0.25)."""
        g, d = counts.get("generator"), counts.get("discriminator")
        if not g or not d:
            return {}
        ratio = g / d
        if ratio < CAPACITY_RATIO_LOW:
            self._warn_once(
                "capacity",
                f"The generator has {g:,} parameters and the discriminator {d:,}: a G/D ratio of {ratio:.2f}, below "
                f"the 0.5-1.5 that seed note 004 targets. A discriminator this much larger tends to win outright; "
                "shrink model.discriminator_base_channels or grow model.generator_base_channels.",
            )
        return {"g_params": float(g), "d_params": float(d), "g_d_param_ratio": ratio}

    def check_samples(self, step: int, samples: torch.Tensor, real: torch.Tensor | None,
                      alarm: bool = True) -> dict[str, float]:
        """Saturation and diversity of the samples beside a real batch; warns on their excess, not absolute values.

        A third of Fashion-MNIST's pixels are black (−1), so a fixed threshold would call healthy samples
        saturated; the alarm fires when samples hold SATURATION_EXCESS_ALARM more saturated pixels than
        real images, or are spread out less than DIVERSITY_ALARM times as much as real ones (while not flat) for
        COLLAPSE_PATIENCE checks in a row.
        """
        if real is None:
            return {"sample_saturation": saturation_ratio(samples)}
        values = sample_health(samples, real.to(samples.device))
        if not alarm:
            return values
        excess = values["saturation_excess"]
        if excess > SATURATION_EXCESS_ALARM:
            self._warn_once(
                "saturation",
                f"Step {step}: {values['sample_saturation']:.0%} of sample pixels are saturated (|x| > 0.99) against "
                f"{values['real_saturation']:.0%} of real ones, the tanh-saturation failure of seed note 004. Usual "
                "causes: spectral norm or a large init on the generator's last layer (model.final_sn=false, "
                "model.final_init_scale=0.1), or a discriminator that overwhelms the generator.",
            )
        self.collapse_streak = self.collapse_streak + 1 if collapsed(values) else 0
        if self.collapse_streak >= COLLAPSE_PATIENCE:
            self._warn_once(
                "collapse",
                f"Step {step}: samples are {values['diversity_ratio']:.0%} as spread out as real images (mean pairwise "
                "distance): the generator is collapsing onto few outputs. `genlab doctor <run>` suggests what to try.",
            )
        return values

    def state_dict(self) -> dict[str, object]:
        """Streaks and warnings given, so a resumed run neither repeats nor forgets them."""
        return {"warned": sorted(self.warned), "dominance": self.dominance_streak, "collapse": self.collapse_streak,
                "streak_g": [list(pair) for pair in self.streak_g]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what `state_dict` returned."""
        self.warned = set(state.get("warned", []))
        self.dominance_streak = int(state.get("dominance", 0))
        self.streak_g = [(g, n) for g, n in state.get("streak_g", [])]  # absent in checkpoints that predate it
        self.collapse_streak = int(state.get("collapse", 0))

    @staticmethod
    def summary(values: dict[str, float]) -> dict[str, str]:
        """Short progress-bar fields: D and G losses, D(x), D(G(z)), images/s."""
        names = {"loss_d": "D", "loss_g": "G", "d_real": "D(x)", "d_fake": "D(G(z))", "images_per_sec": "img/s"}
        return {short: (f"{values[k]:.0f}" if k == "images_per_sec" else f"{values[k]:.3f}")
                for k, short in names.items() if k in values}
