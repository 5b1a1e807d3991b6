"""GASTeN's Bayesian searches on the Optuna study helpers.

Step 1 minimises FID over learning rates, Adam betas, the number of blocks and the filters; each trial
reports its FID every epoch so the median pruner can stop hopeless ones. Step 2 searches the ambiguity
weight α, the step-1 epoch to start from and the classifier, with two objectives (FID, ACD); the Pareto
front is reported and its knee point picked.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from genlab.config import Config, validate
from genlab.errors import GenlabError
from genlab.gasten.pipeline import run_step1, run_step2, saved_epochs, step2_config
from genlab.metrics import result_key
from genlab.tune.study import (
    open_study,
    optimize,
    plot_history,
    plot_pareto,
    report_intermediate,
    study_knee,
    write_summary,
)

log = logging.getLogger("genlab")


def metric_value(results: dict[str, float], name: str) -> float | None:
    """`name` from an evaluation's results, whatever the extractor (fid, or fid_domain with the domain network)."""
    if name in results:
        return results[name]
    return results.get(result_key(name, name.split("_")[0], "_domain"))


def trial_raw_config(cfg: Config, study_dir: Path, number: int) -> dict:
    """A trial's run: named after the trial, inside the study directory, quiet."""
    raw = cfg.to_dict()
    raw["name"] = f"trial_{number:04d}"
    raw["output_dir"] = str(Path(study_dir) / "trials")
    raw["logging"]["progress"] = False
    return raw


def suggest_step1(trial, cfg: Config) -> dict[str, float | int]:
    """Draw the step-1 hyper-parameters from cfg.tune's ranges."""
    t = cfg.tune
    return {
        "lr_g": trial.suggest_float("lr_g", *t.lr_range, log=True),
        "lr_d": trial.suggest_float("lr_d", *t.lr_range, log=True),
        "beta1": trial.suggest_float("beta1", *t.beta1_range),
        "beta2": trial.suggest_float("beta2", *t.beta2_range),
        "num_blocks": trial.suggest_categorical("num_blocks", list(t.num_blocks)),
        "generator_base_channels": trial.suggest_categorical("generator_base_channels", list(t.base_channels)),
        "discriminator_base_channels": trial.suggest_categorical("discriminator_base_channels", list(t.base_channels)),
    }


class Step1Objective:
    """Train one step-1 GAN per trial; return its best FID, reporting each epoch's FID for pruning."""

    def __init__(self, cfg: Config, study_dir: Path) -> None:
        if not cfg.eval.metrics:
            raise GenlabError("Tuning step 1 minimises eval.best_metric, so eval.metrics must compute it; "
                              f"add it, e.g. eval.metrics=[{cfg.eval.best_metric}].")
        self.cfg, self.study_dir = cfg, Path(study_dir)
        self.metric = cfg.eval.best_metric

    def __call__(self, trial) -> float:
        params = suggest_step1(trial, self.cfg)
        raw = trial_raw_config(self.cfg, self.study_dir, trial.number)
        raw["training"].update({k: params[k] for k in ("lr_g", "lr_d", "beta1", "beta2")})
        raw["model"].update({k: params[k] for k in ("num_blocks", "generator_base_channels",
                                                    "discriminator_base_channels")})
        cfg = validate(raw, f"trial {trial.number}")
        trial.set_user_attr("run_dir", str(Path(cfg.output_dir) / str(cfg.name)))
        scores: list[tuple[int, float]] = []

        def report(epoch: int, results: dict[str, float]) -> None:
            value = metric_value(results, self.metric)
            if value is None or not math.isfinite(value):
                raise GenlabError(f"Trial {trial.number}: {self.metric} is {value} at epoch {epoch}.")
            scores.append((epoch, value))
            report_intermediate(trial, epoch, value)

        _stop_if_interrupted(run_step1(cfg, eval_callbacks=(report,)))
        if not scores:
            raise GenlabError(f"Trial {trial.number} finished without an evaluation; set eval.every_epochs=1.")
        epoch, best = min(scores, key=lambda item: item[1])
        trial.set_user_attr("best_epoch", epoch)
        return best


class Step2Objective:
    """Train one step 2 per trial from the chosen step-1 epoch and classifier; return (FID, ACD) at its end."""

    def __init__(self, cfg: Config, study_dir: Path, step1_run: Path, classifiers: list[str], epochs: list[int]) -> None:
        if not classifiers:
            raise GenlabError("Tuning step 2 needs at least one classifier: --classifier runs/classifiers/<name> "
                              "(repeat it to let the search choose), or tune.classifiers / gasten.classifier.")
        if not epochs:
            raise GenlabError(f"{step1_run} has no per-epoch checkpoints (epoch_XXXX.pt) to start step 2 from; train "
                              "step 1 with checkpoint.every_epochs=1 (`genlab gasten step1` does).")
        self.cfg, self.study_dir, self.step1_run = cfg, Path(study_dir), Path(step1_run)
        self.classifiers, self.epochs = classifiers, epochs
        self.fid_name = "fid" if "fid" in cfg.eval.metrics else cfg.eval.best_metric

    def __call__(self, trial) -> tuple[float, float]:
        weight = trial.suggest_float("weight", *self.cfg.tune.weight_range)
        epoch = trial.suggest_categorical("step1_epoch", self.epochs)
        classifier = trial.suggest_categorical("classifier", self.classifiers)
        base = self.cfg.model_copy(update={"output_dir": str(self.study_dir / "trials"),
                                           "logging": self.cfg.logging.model_copy(update={"progress": False})})
        cfg = step2_config(base, self.step1_run, classifier=classifier, weight=weight, epoch=epoch,
                           name=f"trial_{trial.number:04d}")
        trial.set_user_attr("run_dir", str(Path(cfg.output_dir) / str(cfg.name)))
        last: dict[str, float] = {}
        _stop_if_interrupted(run_step2(cfg, report=False, eval_callbacks=(lambda _epoch, results: last.update(results),)))
        fid, acd = metric_value(last, self.fid_name), last.get("acd")
        if fid is None or acd is None or not (math.isfinite(fid) and math.isfinite(acd)):
            raise GenlabError(f"Trial {trial.number} ended without finite {self.fid_name} and acd (got {last}).")
        return fid, acd


@dataclass
class TuneOutcome:
    """What a search leaves: the study, its directory and the files a user looks at."""

    study: object
    study_dir: Path
    files: dict[str, Path]


def default_study_dir(cfg: Config, step: str) -> Path:
    """<output_dir>/tune/<name>-<step>."""
    return Path(cfg.output_dir) / "tune" / f"{cfg.name or cfg.data.name}-{step}"


def _run_settings(cfg: Config, n_trials: int | None, timeout: float | None) -> tuple[int | None, float | None]:
    n_trials = n_trials if n_trials is not None else cfg.tune.n_trials
    timeout = timeout if timeout is not None else cfg.tune.timeout
    if n_trials is None and timeout is None:
        raise GenlabError("Say how long to search: --n-trials N and/or --timeout SECONDS (or tune.n_trials / "
                          "tune.timeout in the config).")
    return n_trials, timeout


def _stop_if_interrupted(result) -> None:
    """Ctrl-C makes the training loop stop cleanly; in a search it must stop the study (the trial is redone later)."""
    if result.interrupted:
        raise KeyboardInterrupt


def tune_step1(cfg: Config, *, study_dir: Path | None = None, study_name: str | None = None,
               storage: str | None = None, resume: bool = False, join: bool = False, worker_index: int = 0,
               n_trials: int | None = None, timeout: float | None = None,
               total_trials: int | None = None) -> TuneOutcome:
    """Search step-1 hyper-parameters minimising FID; writes summary.json, trials.csv and history.png."""
    n_trials, timeout = _run_settings(cfg, n_trials, timeout) if total_trials is None else (n_trials, timeout)
    study_dir = Path(study_dir or default_study_dir(cfg, "step1"))
    study = open_study(study_dir, study_name, ["minimize"], storage=storage, seed=cfg.tune.seed,
                       worker_index=worker_index, pruner=cfg.tune.pruner, resume=resume, join=join,
                       startup_trials=cfg.tune.startup_trials)
    optimize(study, Step1Objective(cfg, study_dir), n_trials=n_trials, timeout=timeout, total_trials=total_trials,
             worker_index=worker_index)
    files = {"summary": write_summary(study, study_dir)}
    if any(t.value is not None for t in study.trials):
        files["history"] = plot_history(study, study_dir / "history.png", label=cfg.eval.best_metric.upper())
    return TuneOutcome(study, study_dir, files)


def tune_step2(cfg: Config, step1_run: Path, *, classifiers: list[str] | None = None, epochs: list[int] | None = None,
               study_dir: Path | None = None, study_name: str | None = None, storage: str | None = None,
               resume: bool = False, join: bool = False, worker_index: int = 0, n_trials: int | None = None,
               timeout: float | None = None, total_trials: int | None = None) -> TuneOutcome:
    """Search α, the step-1 epoch and the classifier for (FID, ACD); writes the Pareto plot with its knee."""
    n_trials, timeout = _run_settings(cfg, n_trials, timeout) if total_trials is None else (n_trials, timeout)
    classifiers = classifiers or list(cfg.tune.classifiers) or ([cfg.gasten.classifier] if cfg.gasten.classifier else [])
    available = saved_epochs(step1_run)
    chosen = list(epochs or cfg.tune.step1_epochs) or available
    missing = sorted(set(chosen) - set(available))
    if missing:
        raise GenlabError(f"{step1_run} has no checkpoints for epochs {missing}; saved epochs: {available or 'none'}.")
    study_dir = Path(study_dir or default_study_dir(cfg, "step2"))
    study = open_study(study_dir, study_name, ["minimize", "minimize"], storage=storage, seed=cfg.tune.seed,
                       worker_index=worker_index, pruner="none", resume=resume, join=join)
    optimize(study, Step2Objective(cfg, study_dir, Path(step1_run), classifiers, chosen), n_trials=n_trials,
             timeout=timeout, total_trials=total_trials, worker_index=worker_index)
    files = {"summary": write_summary(study, study_dir)}
    knee = study_knee(study)
    if knee is not None:
        files["pareto"] = plot_pareto(study, study_dir / "pareto.png", knee=knee,
                                      labels=(fid_label(cfg), "ACD"))
    return TuneOutcome(study, study_dir, files)


def fid_label(cfg: Config) -> str:
    """Axis label of the FID objective (FID, or FID (domain) with the domain extractor)."""
    return "FID (domain)" if cfg.eval.extractor == "domain" else "FID"
