"""Checks a config needs the registries for: data set, family, metric and loss names, family rules.

`genlab.config` checks keys, types and ranges on its own; the names it cannot know live in the
packages that build the objects (data, methods, losses, metrics), which sit above it. This module
sits above all of them, so every entry point that starts work (`train`, the CLI, GASTeN, studies)
runs the whole check before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from genlab.config import Config, GastenConfig, load_config
from genlab.data import DATASETS
from genlab.data.augment import resolve_policy
from genlab.errors import ConfigError, GenlabError
from genlab.losses import AMBIGUITY_LOSSES
from genlab.methods import METHODS
from genlab.metrics import METRICS, result_keys, watched_result
from genlab.metrics.classifier import CLASSIFIER_METRICS
from genlab.registry import closest


def check_config(cfg: Config, source: str = "config") -> None:
    """Raise ConfigError (one paragraph) for any registry-backed name or family rule `cfg` breaks."""
    DATASETS.require(cfg.data.name, "data.name", source)
    METHODS.require(cfg.model.family, "model.family", source)
    METHODS.get(cfg.model.family).check_config(cfg, source)
    try:
        resolve_policy(cfg.data.augment, cfg.data.hflip)
    except GenlabError as err:
        raise ConfigError(f"Invalid configuration ({source}): {err}") from None
    _check_metrics(cfg, source)
    _check_gasten(cfg, source)


def _check_metrics(cfg: Config, source: str) -> None:
    """eval.metrics names, and the classifier the classifier-based ones need."""
    known = sorted([*METRICS.names(), *CLASSIFIER_METRICS])
    for name in cfg.eval.metrics:
        if name not in known:
            hint = closest(name, known)
            raise ConfigError(f"Invalid configuration ({source}): eval.metrics has unknown metric {name!r}"
                              + (f" — did you mean {hint!r}?" if hint else ".") + f" Available: {', '.join(known)}.")
    wants_classifier = sorted(set(cfg.eval.metrics) & set(CLASSIFIER_METRICS))
    if wants_classifier and not (cfg.eval.classifier or cfg.gasten.classifier):
        raise ConfigError(
            f"Invalid configuration ({source}): eval.metrics asks for {', '.join(wants_classifier)}, which score "
            "samples with a binary classifier, but neither eval.classifier nor gasten.classifier is set. Train one "
            "with `genlab classifier train` and set gasten.classifier=<its run directory>."
        )
    _check_watched(cfg, source)


def _check_watched(cfg: Config, source: str) -> None:
    """eval.best_metric and eval.early_stop_metric name a result that eval.metrics computes."""
    if not cfg.eval.metrics:
        return  # nothing is evaluated during training, so nothing is watched
    for key, name in (("eval.best_metric", cfg.eval.best_metric), ("eval.early_stop_metric", cfg.eval.early_stop_metric)):
        if name is None or watched_result(name, cfg.eval.metrics) is not None:
            continue
        produced = result_keys(cfg.eval.metrics)
        hint = closest(name, [*cfg.eval.metrics, *produced])
        raise ConfigError(
            f"Invalid configuration ({source}): {key}={name!r} is never computed, so best.pt and early stopping "
            f"could not follow it: eval.metrics={cfg.eval.metrics} produce {', '.join(produced)}. Name one of them, "
            "or a metric of eval.metrics (kid stands for kid_mean, is for is_mean), or add its metric to eval.metrics"
            + (f" — did you mean {hint!r}?" if hint else ".")
        )


def _check_gasten(cfg: Config, source: str) -> None:
    """The ambiguity loss name, the step-1 epoch choice, the classifier step 2 needs, and its family."""
    gasten: GastenConfig = cfg.gasten
    AMBIGUITY_LOSSES.require(gasten.loss, "gasten.loss", source)
    epoch = gasten.step1_epoch
    if not (epoch in ("best", "last") or (isinstance(epoch, int) and epoch >= 0) or str(epoch).isdigit()):
        raise ConfigError(f"Invalid configuration ({source}): 'gasten.step1_epoch' = {gasten.step1_epoch!r}; use best, "
                          "last or an epoch number such as 5.")
    if gasten.ambiguity and not gasten.classifier:
        raise ConfigError(f"Invalid configuration ({source}): gasten.ambiguity=true needs gasten.classifier (a run "
                          "directory from `genlab classifier train`).")
    if gasten.gaussian_update == "separate" and gasten.loss != "gaussian":
        raise ConfigError(f"Invalid configuration ({source}): gasten.gaussian_update=separate is GASTeN v2's update "
                          f"for the gaussian ambiguity loss, but gasten.loss={gasten.loss}. Set gasten.loss=gaussian "
                          "or gasten.gaussian_update=added.")
    if gasten.ambiguity and cfg.model.family != "gan":
        raise ConfigError(f"Invalid configuration ({source}): gasten.ambiguity=true trains a GAN generator towards a "
                          f"classifier's boundary, but this run has model.family={cfg.model.family}. Use a GAN.")


def load_experiment(source: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """`load_config` plus `check_config`: a config that is ready to train."""
    cfg = load_config(source, overrides)
    label = "defaults" if source is None else str(source)
    check_config(cfg, label + (" + overrides" if overrides else ""))
    return cfg
