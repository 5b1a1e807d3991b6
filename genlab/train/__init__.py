"""Training: the one loop, its hooks, run-level checks, logging, diagnostics and classifier training."""

from genlab.train.checks import check_config, load_experiment
from genlab.train.hooks import EvalCallback, Hook, StepCallback, TrainState
from genlab.train.loop import TrainResult, train

__all__ = ["EvalCallback", "Hook", "StepCallback", "TrainResult", "TrainState", "check_config", "load_experiment",
           "train"]
