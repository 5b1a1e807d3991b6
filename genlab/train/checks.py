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
from genlab.metrics import METRICS
from genlab.metrics.classifier import CLASSIFIER_METRICS
from genlab.registry import Registry, closest


def _check_name(source: str, dotted: str, value: str, registry: Registry) -> None:
    if value not in registry:
        hint = closest(value, registry.names())
        raise ConfigError(f"Invalid configuration ({source}): '{dotted}' = {value!r} is not known"
                          + (f" — did you mean {hint!r}?" if hint else ".")
                          + f" Available: {', '.join(registry.names())}.")


def check_config(cfg: Config, source: str = "config") -> None:
    """Raise ConfigError (one paragraph) for any registry-backed name or family rule `cfg` breaks."""
    _check_name(source, "data.name", cfg.data.name, DATASETS)
    _check_name(source, "model.family", cfg.model.family, METHODS)
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


def _check_gasten(cfg: Config, source: str) -> None:
    """The ambiguity loss name, the step-1 epoch choice, the classifier step 2 needs, and its family."""
    gasten: GastenConfig = cfg.gasten
    if gasten.loss not in AMBIGUITY_LOSSES:
        hint = closest(gasten.loss, AMBIGUITY_LOSSES.names())
        raise ConfigError(f"Invalid configuration ({source}): 'gasten.loss' = {gasten.loss!r} is not known"
                          + (f" — did you mean {hint!r}?" if hint else ".")
                          + f" Available: {', '.join(AMBIGUITY_LOSSES.names())}.")
    epoch = gasten.step1_epoch
    if not (epoch in ("best", "last") or (isinstance(epoch, int) and epoch >= 0) or str(epoch).isdigit()):
        raise ConfigError(f"Invalid configuration ({source}): 'gasten.step1_epoch' = {gasten.step1_epoch!r}; use best, "
                          "last or an epoch number such as 5.")
    if gasten.ambiguity and not gasten.classifier:
        raise ConfigError(f"Invalid configuration ({source}): gasten.ambiguity=true needs gasten.classifier (a run "
                          "directory from `genlab classifier train`).")
    if gasten.ambiguity and cfg.model.family != "gan":
        raise ConfigError(f"Invalid configuration ({source}): gasten.ambiguity=true trains a GAN generator towards a "
                          f"classifier's boundary, but this run has model.family={cfg.model.family}. Use a GAN.")


def load_experiment(source: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """`load_config` plus `check_config`: a config that is ready to train."""
    cfg = load_config(source, overrides)
    label = "defaults" if source is None else str(source)
    check_config(cfg, label + (" + overrides" if overrides else ""))
    return cfg
