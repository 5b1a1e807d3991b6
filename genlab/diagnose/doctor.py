"""`genlab doctor RUN`: read a run's config, metrics.jsonl and, when needed, its checkpoints; rank what went wrong.

Each rule looks at one failure mode (seed note 004's list and more) and returns a `Finding`: the
symptom with its numbers and step range, the likely cause, and the exact overrides to try. Rules
read the late part of the run (its last third) so that a rough start does not count against a run
that recovered. A run with no finding "looks healthy". What metrics.jsonl lacks (sample health of older
runs or of runs with logging.diagnostics=false, parameter counts, FID behind best.pt) comes from
checkpoints/last.pt and best.pt (`genlab.diagnose.checkpoints`), loaded only then.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genlab.diagnose.checkpoints import CheckpointFacts, read_checkpoints
from genlab.diagnose.signals import (
    CAPACITY_RATIO_LOW,
    CHANCE_D_LOSS,
    DIVERSITY_ALARM,
    DOMINANCE_ACCURACY,
    SATURATION_EXCESS_ALARM,
    collapsed,
    dominates,
    generator_losing,
)
from genlab.errors import GenlabError
from genlab.runs.records import read_json, read_jsonl, read_run_config

#: Share of the run (its end) the rules judge by.
LATE_SHARE = 1 / 3
#: Standard deviation of D's and G's losses, as a share of their mean size, above which they oscillate.
OSCILLATION_SWING = 0.5


@dataclass
class Finding:
    """One failure mode found in a run: what shows it, why it likely happens, what to try."""

    name: str
    severity: float
    symptom: str
    cause: str
    overrides: list[str] = field(default_factory=list)
    steps: tuple[int, int] | None = None


@dataclass
class Diagnosis:
    """Everything `genlab doctor RUN` reports: the run, how far it got, and its findings, worst first."""

    run: str
    family: str
    step: int
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)
    #: The run's `name` key: a retry with the same config needs another name (a named run is never overwritten).
    name: str | None = None

    @property
    def healthy(self) -> bool:
        """True when no rule found anything."""
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json`."""
        return {"run": self.run, "family": self.family, "step": self.step, "healthy": self.healthy,
                "findings": [asdict(f) for f in self.findings], "notes": self.notes}

    def render(self) -> str:
        """The report as text: ranked findings with the command line to try, or the healthy verdict."""
        lines = [f"genlab doctor: {self.run} ({self.family}, step {self.step})"]
        if self.healthy:
            lines.append("Looks healthy: no failure mode found (saturation, dominance, collapse, divergence, "
                         "oscillation, vanishing gradients, schedules, FID).")
        for rank, finding in enumerate(self.findings, 1):
            where = f", steps {finding.steps[0]}-{finding.steps[1]}" if finding.steps else ""
            lines.append(f"{rank}. {finding.name}{where}: {finding.symptom}")
            lines.append(f"   Likely cause: {finding.cause}")
            if finding.overrides:
                rename = [f"name={self.name}-fix"] if self.name else []
                lines.append(f"   Try: genlab train --config {Path(self.run) / 'config.yaml'} "
                             + " ".join([*finding.overrides, *rename]))
        lines += [f"Note: {note}" for note in self.notes]
        return "\n".join(lines)


class RunView:
    """A run directory's config (as written) and metrics records, split by kind, with a few helpers."""

    def __init__(self, root: Path, checkpoints: bool = True) -> None:
        self.root = root
        self.use_checkpoints = checkpoints
        self._facts: CheckpointFacts | None = None
        self.config: dict[str, Any] = read_run_config(root)
        records = read_jsonl(root / "metrics.jsonl")
        self.train = [r for r in records if not r.get("evaluation") and any(k.startswith("loss") for k in r)]
        self.samples = [r for r in records if "saturation_excess" in r]
        self.evaluations = [r for r in records if r.get("evaluation")]
        self.records = records

    def checkpoint(self) -> CheckpointFacts | None:
        """What last.pt (and best.pt) say, loaded once on first need (None when checkpoints are not to be read)."""
        if not self.use_checkpoints:
            return None
        if self._facts is None:
            gan = self.get("model.family", "gan") == "gan"
            self._facts = read_checkpoints(self.root, want_health=gan and not self.samples)
        return self._facts

    def get(self, dotted: str, default: Any = None) -> Any:
        """A config value by dotted key (the default when the run's config lacks it)."""
        value: Any = self.config
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                return default
            value = value[part]
        return value

    @property
    def step(self) -> int:
        """The last step logged."""
        return max((int(r.get("step", 0)) for r in self.records), default=0)

    @staticmethod
    def late(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The last third of `records` (at least one)."""
        return records[-max(1, math.ceil(len(records) * LATE_SHARE)):]

    @staticmethod
    def values(records: list[dict[str, Any]], key: str) -> list[float]:
        """The finite values of `key` in `records`."""
        return [float(r[key]) for r in records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]

    def first_value(self, key: str) -> float | None:
        """The first logged value of `key` (e.g. g_d_param_ratio, logged once at the start)."""
        return next((float(r[key]) for r in self.records if isinstance(r.get(key), (int, float))), None)

    def parameters(self) -> tuple[float, float] | None:
        """(G, D) parameter counts: logged at the start, else from summary.json, else from the networks in last.pt."""
        g, d = self.first_value("g_params"), self.first_value("d_params")
        if g and d:
            return g, d
        counts = (read_json(self.root / "summary.json") or {}).get("parameters") or {}
        g, d = counts.get("generator"), counts.get("discriminator")
        if isinstance(g, (int, float)) and isinstance(d, (int, float)) and d:
            return float(g), float(d)
        if self.get("model.family", "gan") != "gan":
            return None
        facts = self.checkpoint()
        return facts.parameters if facts else None


def _span(records: list[dict[str, Any]]) -> tuple[int, int] | None:
    return (int(records[0]["step"]), int(records[-1]["step"])) if records else None


def _rate(value: float) -> str:
    return f"{value:.3g}"


def _halved_rates(view: RunView) -> list[str]:
    return [f"training.{key}={_rate(view.get(f'training.{key}') / 2)}" for key in ("lr_g", "lr_d")
            if isinstance(view.get(f"training.{key}"), (int, float))]


def _smaller_d_width(view: RunView, ratio: float) -> int | None:
    """A discriminator width that brings the G/D parameter ratio near 1 (parameters grow with width squared)."""
    width = view.get("model.discriminator_base_channels")
    if not isinstance(width, int):
        return None
    return max(8, int(round(width * math.sqrt(ratio) / 8)) * 8)


def check_divergence(view: RunView) -> Finding | None:
    """NaN/Inf losses: logged as null, counted by the NaN guard, or the run stopped as diverged."""
    bad = [r for r in view.train if any(k.startswith("loss") and r[k] is None for k in r)]
    skipped = view.values(view.records, "nonfinite_steps")
    recoveries = view.values(view.records, "nan_recoveries")
    lock = read_json(view.root / "run.lock") or {}
    crashed = "TrainingDiverged" in str(lock.get("crashed", ""))
    if not (bad or skipped or recoveries or crashed):
        return None
    marked = [r for r in view.records if r.get("nonfinite_steps") is not None] or bad
    parts = []
    if skipped:
        gradients = view.values(view.records, "nonfinite_gradient_steps")
        of_which = f" ({int(max(gradients))} of them with finite losses but NaN/Inf gradients)" if gradients else ""
        parts.append(f"{int(max(skipped))} steps had NaN/Inf losses or gradients and were skipped{of_which}")
    if recoveries:
        parts.append(f"the NaN guard reloaded the last checkpoint {int(max(recoveries))} times, lowering the "
                     "learning rates each time")
    if bad and not skipped:
        parts.append(f"{len(bad)} log intervals have NaN/Inf losses")
    if crashed:
        parts.append("the run stopped as diverged")
    overrides = _halved_rates(view)
    if not view.get("training.grad_clip"):
        overrides.append("training.grad_clip=1.0")
    return Finding("divergence (NaN/Inf)", 100.0, "; ".join(parts) + ".",
                   "steps too large for the loss surface: learning rates too high for this model, no gradient "
                   "clipping, or an unbounded loss (a critic without a Lipschitz constraint).", overrides, _span(marked))


def check_saturation(view: RunView) -> Finding | None:
    """Samples saturated (|x| > 0.99) well beyond the real data's share: seed 004's tanh saturation."""
    late = view.late(view.samples)
    excess = view.values(late, "saturation_excess")
    if not excess or statistics.mean(excess) <= SATURATION_EXCESS_ALARM:
        return None
    sample, real = statistics.mean(view.values(late, "sample_saturation")), statistics.mean(
        view.values(late, "real_saturation"))
    alarmed = [r for r in view.samples if r["saturation_excess"] is not None
               and r["saturation_excess"] > SATURATION_EXCESS_ALARM]
    overrides = []
    if view.get("model.final_sn"):
        overrides.append("model.final_sn=false")
    if view.get("model.architecture") == "resnet" and (view.get("model.final_init_scale") or 0.1) > 0.1:
        overrides.append("model.final_init_scale=0.1")
    elif view.get("model.final_sn"):
        overrides.append("model.final_init_scale=0.1")
    if view.get("model.init") == "orthogonal":
        overrides.append("model.init=auto")
    if not overrides:
        overrides = [f"training.lr_g={_rate(view.get('training.lr_g', 2e-4) / 2)}"]
    return Finding(
        "tanh saturation", 90.0 + statistics.mean(excess),
        f"{sample:.0%} of sample pixels are saturated (|x| > 0.99) against {real:.0%} of real ones, "
        f"{statistics.mean(excess):.0%} more (alarm above {SATURATION_EXCESS_ALARM:.0%}).",
        "the generator's last layer drives tanh into its flat ends, where its gradient vanishes: spectral norm on "
        "the last conv undoes a small init (seed note 004), or the last layer starts too large.",
        overrides, _span(alarmed or late))


def check_collapse(view: RunView) -> Finding | None:
    """Samples that look like images but hardly differ from one another."""
    late = view.late(view.samples)
    if not late or sum(collapsed(r) for r in late) * 2 <= len(late):
        return None
    ratio = statistics.mean(view.values(late, "diversity_ratio"))
    return Finding(
        "mode collapse", 85.0 + (1 - ratio),
        f"samples are {ratio:.0%} as spread out as real images (mean pairwise distance; alarm below "
        f"{DIVERSITY_ALARM:.0%}).",
        "the generator maps most noise vectors to the same few images (or ignores z); the discriminator no "
        "longer pushes it apart.",
        [f"training.lr_g={_rate(view.get('training.lr_g', 2e-4) / 2)}", "training.d_noise_std=0.1",
         "training.diffaugment=color,translation"], _span(late))


def check_dominance(view: RunView) -> Finding | None:
    """D right about nearly every real and fake image over the late run (any loss, by accuracy)."""
    late = view.late(view.train)
    acc_real, acc_fake = view.values(late, "d_acc_real"), view.values(late, "d_acc_fake")
    if not acc_real or not acc_fake:
        return None
    real, fake = statistics.mean(acc_real), statistics.mean(acc_fake)
    losses = view.values(late, "loss_d")
    loss_d = statistics.mean(losses) if losses else None
    loss_type = view.get("training.loss_type")
    if not dominates(real, fake, loss_d, loss_type):
        return None
    # D winning while G's loss falls and its gradient holds is a DCGAN's usual start, not a failure (the demo).
    if not generator_losing(view.values(view.train, "loss_g"), view.values(view.train, "grad_norm_g")):
        return None
    lr_g, lr_d = view.get("training.lr_g", 2e-4), view.get("training.lr_d", 2e-4)
    overrides = [f"training.lr_d={_rate(lr_g if lr_d > lr_g else lr_d / 4)}"]
    if (view.get("training.n_critic") or 1) > 1:
        overrides.append("training.n_critic=1")
    counts = view.parameters()
    ratio = counts[0] / counts[1] if counts else None
    if ratio is not None and ratio < CAPACITY_RATIO_LOW and (width := _smaller_d_width(view, ratio)):
        overrides.append(f"model.discriminator_base_channels={width}")
    if not view.get("training.d_noise_std"):
        overrides.append("training.d_noise_std=0.1")
    winning = [r for r in view.train if dominates(r.get("d_acc_real") or 0, r.get("d_acc_fake") or 0,
                                                  r.get("loss_d"), loss_type)]
    chance = CHANCE_D_LOSS.get(loss_type or "")
    loss_note = f", and its loss is {loss_d:.3g} against {chance:.3g} at chance" if chance and loss_d is not None else ""
    return Finding(
        "discriminator dominance", 80.0 + (real + fake) / 2,
        f"D is right about {real:.0%} of real and {fake:.0%} of fake images over the last third of the run "
        f"(above {DOMINANCE_ACCURACY:.0%} on both){loss_note}, while the generator's loss rose or its gradient "
        "vanished.",
        "the discriminator learns much faster than the generator (a higher lr_d, more critic steps, a larger D), "
        "so the generator's gradient carries little information.", overrides, _span(winning or late))


def check_capacity(view: RunView) -> Finding | None:
    """A discriminator with far more parameters than the generator (seed 004: ratio 0.25, target 0.5-1.5)."""
    counts = view.parameters()
    if counts is None or counts[0] / counts[1] >= CAPACITY_RATIO_LOW:
        return None
    g, d = counts
    ratio = g / d
    width = _smaller_d_width(view, ratio)
    return Finding(
        "G/D capacity imbalance", 70.0 + (1 - ratio),
        f"G has {g:,.0f} parameters and D {d:,.0f} from the start: a ratio of {ratio:.2f} (seed note 004 targets "
        "0.5-1.5).",
        "a discriminator this much larger learns to separate real from fake before the generator can follow.",
        [f"model.discriminator_base_channels={width}"] if width else [])


def check_noise_removed(view: RunView) -> Finding | None:
    """Instance noise decayed to zero mid-run, and D's accuracy climbed once it was gone."""
    with_noise = [r for r in view.train if isinstance(r.get("d_noise_std"), (int, float))]
    gone = [r for r in with_noise if r["d_noise_std"] == 0]
    if not gone or len(gone) == len(with_noise):
        return None
    before = [r for r in with_noise if r["d_noise_std"] > 0]

    def accuracy(records: list[dict[str, Any]]) -> float | None:
        values = [(r["d_acc_real"] + r["d_acc_fake"]) / 2 for r in records
                  if isinstance(r.get("d_acc_real"), (int, float)) and isinstance(r.get("d_acc_fake"), (int, float))]
        return statistics.mean(values) if values else None

    acc_before, acc_after = accuracy(view.late(before)), accuracy(gone)
    if acc_before is None or acc_after is None or acc_after < acc_before + 0.05 or acc_after < 0.75:
        return None
    epochs = view.get("training.num_epochs")
    return Finding(
        "instance noise gone too early", 60.0,
        f"instance noise reached 0 at step {gone[0]['step']}; D's accuracy rose from {acc_before:.0%} to "
        f"{acc_after:.0%} afterwards.",
        "the noise was what kept the discriminator from separating real and fake; removing it halfway lets D win.",
        [f"training.d_noise_decay_epochs={epochs}"] if epochs else [], _span(gone))


def check_lr_decayed(view: RunView) -> Finding | None:
    """The generator's learning rate scheduled down to almost nothing while the generator is losing."""
    rates = view.values(view.train, "lr_g")
    if len(rates) < 2 or rates[-1] >= 0.1 * max(rates):
        return None
    late = view.late(view.train)
    losing_g = view.values(late, "loss_g")
    early_g = view.values(view.train[: max(1, len(view.train) // 3)], "loss_g")
    acc = view.values(late, "d_acc_fake")
    # Every cosine run ends near zero; it hurts when D is right about G's samples and G's loss keeps rising.
    losing = (acc and statistics.mean(acc) > 0.85 and losing_g and early_g
              and statistics.mean(losing_g) > statistics.mean(early_g))
    if not losing:
        return None
    low = next(r for r in view.train if isinstance(r.get("lr_g"), (int, float)) and r["lr_g"] < 0.1 * max(rates))
    return Finding(
        "learning rate decayed while G is losing", 55.0,
        f"lr_g fell to {rates[-1]:.2g} ({rates[-1] / max(rates):.0%} of its peak) from step {low['step']} while "
        "the generator was losing (its loss rising and D right about its samples).",
        "the schedule takes away the generator's last chance to catch up with the discriminator (seed note 004).",
        ["training.lr_schedule=none"], (int(low["step"]), view.step))


def check_vanishing_gradient(view: RunView) -> Finding | None:
    """The generator's gradient norm shrinks to a tiny fraction of what it was early on."""
    norms = view.values(view.train, "grad_norm_g")
    if len(norms) < 6:
        return None
    third = max(1, len(norms) // 3)
    early, late = statistics.median(norms[:third]), statistics.median(norms[-third:])
    if early <= 0 or late >= 0.01 * early:
        return None
    overrides = [f"training.lr_d={_rate(view.get('training.lr_d', 2e-4) / 4)}"]
    if view.get("training.loss_type") == "bce":
        overrides.append("training.loss_type=ns")
    return Finding(
        "vanishing generator gradient", 50.0,
        f"the generator's gradient norm fell from a median of {early:.3g} early on to {late:.3g} late in the run.",
        "D's outputs on fakes sit where the loss is flat (a saturating loss, or D too confident).",
        overrides, _span(view.late(view.train)))


def check_oscillation(view: RunView) -> Finding | None:
    """Both losses swinging widely around their means late in the run."""
    late = view.late(view.train)
    if len(late) < 8 or str(view.get("training.loss_type", "")).startswith("wgan"):
        return None  # a Wasserstein critic's loss has no scale to swing against
    swings = []
    for key in ("loss_d", "loss_g"):
        values = view.values(late, key)
        if len(values) < 8 or statistics.mean(map(abs, values)) == 0:
            return None
        swings.append(statistics.pstdev(values) / statistics.mean(map(abs, values)))
    if min(swings) <= OSCILLATION_SWING:
        return None
    return Finding(
        "oscillation", 40.0,
        f"late in the run the losses swing by {swings[0]:.1f}× (D) and {swings[1]:.1f}× (G) their mean size.",
        "G and D take turns overshooting each other: steps too large for the game.", _halved_rates(view), _span(late))


def check_fid(view: RunView) -> Finding | None:
    """FID that got worse after its best (best.pt much older than last.pt) or stopped improving."""
    scores = [(int(r["step"]), float(r[k])) for r in view.evaluations for k in r
              if k.startswith("fid") and isinstance(r[k], (int, float)) and math.isfinite(r[k])]
    if len(scores) < 3:
        return _fid_regression_from_checkpoints(view)
    best_step, best = min(scores, key=lambda s: s[1])
    last_step, last = scores[-1]
    if last > 1.1 * best and best_step < last_step:
        return Finding(
            "FID regression", 30.0,
            f"FID was {best:.4g} at step {best_step} (best.pt) and is {last:.4g} at step {last_step}.",
            "training went past its best point; later steps made samples worse (over-training or instability).",
            ["eval.early_stop_patience=3", *_halved_rates(view)], (best_step, last_step))
    tail = [score for _, score in scores[-3:]]
    if len(scores) >= 4 and min(tail) > 0.99 * min(score for _, score in scores[:-3]):
        return Finding(
            "FID plateau", 25.0, f"the last three evaluations ({', '.join(f'{s:.4g}' for s in tail)}) did not "
            f"improve on {best:.4g}.", "the run has converged at these settings; more epochs will not help.",
            ["training.lr_schedule=cosine", "eval.early_stop_patience=3"], (scores[-3][0], last_step))
    return None


def _fid_regression_from_checkpoints(view: RunView) -> Finding | None:
    """Too few evaluation records: best.pt's step against last.pt's, with the scores last.pt's evaluation hook kept."""
    if not (view.root / "checkpoints" / "best.pt").is_file():
        return None
    facts = view.checkpoint()
    if facts is None or facts.best is None or facts.last_score is None or facts.step is None:
        return None
    metric = facts.metric or "fid"
    if not metric.startswith(("fid", "kid")):
        return None  # only lower-is-better scores read this way
    best_step, best = facts.best
    if best_step >= facts.step or facts.last_score <= 1.1 * best:
        return None
    return Finding(
        f"{'KID' if metric.startswith('kid') else 'FID'} regression", 30.0,
        f"{metric} was {best:.4g} at step {best_step} (checkpoints/best.pt) and is {facts.last_score:.4g} at the "
        f"last evaluation (checkpoints/last.pt, step {facts.step}).",
        "training went past its best point; later steps made samples worse (over-training or instability).",
        ["eval.early_stop_patience=3", *_halved_rates(view)], (best_step, facts.step))


def check_posterior_collapse(view: RunView) -> Finding | None:
    """VAE: the KL term near zero or no active latent units late in the run."""
    late = view.late(view.train)
    kl, active = view.values(late, "kl"), view.values(late, "active_units")
    if not kl or not (statistics.mean(kl) < 0.1 or (active and max(active) == 0)):
        return None
    beta = view.get("training.beta", 1.0)
    return Finding(
        "posterior collapse", 85.0,
        f"the KL term averages {statistics.mean(kl):.3g} nats and {max(active, default=0):.0f} latent units are "
        "active late in the run.",
        "the decoder models the images without the latent code, so the encoder's posterior falls onto the prior.",
        [f"training.beta={_rate(beta / 10)}", "training.beta_warmup_epochs=5"], _span(late))


def check_high_t_loss(view: RunView) -> Finding | None:
    """Diffusion: the loss at the noisiest quarter of t does not fall while the overall loss does."""
    if len(view.train) < 6:
        return None
    third = max(1, len(view.train) // 3)
    early, late = view.train[:third], view.train[-third:]
    high_early, high_late = view.values(early, "loss_t3"), view.values(late, "loss_t3")
    all_early, all_late = view.values(early, "loss"), view.values(late, "loss")
    if not (high_early and high_late and all_early and all_late):
        return None
    if statistics.mean(high_late) < 0.95 * statistics.mean(high_early) or \
            statistics.mean(all_late) >= 0.95 * statistics.mean(all_early):
        return None
    return Finding(
        "loss stuck at high t", 45.0,
        f"the loss on the noisiest quarter of t stays at {statistics.mean(high_late):.3g} (from "
        f"{statistics.mean(high_early):.3g}) while the overall loss falls.",
        "the schedule leaves the last steps nearly pure noise, which the model cannot learn from.",
        ["model.beta_schedule=cosine"], _span(late))


#: Every rule, in no particular order: findings are ranked by severity.
RULES: tuple[Callable[[RunView], Finding | None], ...] = (
    check_divergence, check_saturation, check_collapse, check_dominance, check_capacity, check_noise_removed,
    check_lr_decayed, check_vanishing_gradient, check_oscillation, check_fid, check_posterior_collapse,
    check_high_t_loss,
)


def diagnose_run(run: str | Path, checkpoints: bool = True) -> Diagnosis:
    """Read a run directory and return its findings, worst first (a GenlabError when it is no run).

    `checkpoints=False` reads config.yaml and metrics.jsonl only (no network is rebuilt, nothing is sampled).
    """
    root = Path(run)
    if not (root / "config.yaml").is_file():
        raise GenlabError(f"{root} is not a run directory (it has no config.yaml). Give a folder written by "
                          "`genlab train`, e.g. runs/<name>; `genlab doctor` without a run checks the environment.")
    view = RunView(root, checkpoints)  # a damaged config.yaml: read_run_config's GenlabError says so
    if not view.records:
        raise GenlabError(f"{root} has logged nothing yet (metrics.jsonl is missing or empty), so there is nothing to "
                          "diagnose. Run `genlab doctor` again after the first logging.log_every steps.")
    notes = []
    if view.get("model.family", "gan") == "gan" and not view.samples:
        facts = view.checkpoint()
        if facts is not None and facts.health is not None:
            view.samples = [{"step": facts.step, **facts.health}]
            notes.append(f"metrics.jsonl has no sample-health records (the run predates them or ran with "
                         f"logging.diagnostics=false), so saturation and diversity were measured on samples of "
                         f"checkpoints/last.pt (step {facts.step}) against the run's real images.")
        else:
            notes.append("no sample-health records (saturation/diversity against real images): the run predates them "
                         "or never reached logging.sample_every steps"
                         + (f"; {' '.join(facts.notes)}" if facts and facts.notes else "."))
    findings = sorted(filter(None, (rule(view) for rule in RULES)), key=lambda f: -f.severity)
    name = view.get("name")
    return Diagnosis(str(root), str(view.get("model.family", "gan")), view.step, findings, notes,
                     name if isinstance(name, str) else None)


def to_json(diagnosis: Diagnosis) -> str:
    """`genlab doctor --json` output."""
    return json.dumps(diagnosis.to_dict(), indent=2)
