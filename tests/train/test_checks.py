"""Config-time checks of what best.pt and early stopping watch: a result that eval.metrics computes."""

from __future__ import annotations

import pytest

from genlab.errors import ConfigError
from genlab.train import load_experiment


def test_best_and_early_stop_metrics_must_be_computed_by_eval_metrics():
    for overrides in (["eval.metrics=[kid]", "eval.best_metric=kid"],  # kid stands for kid_mean
                      ["eval.metrics=[kid]", "eval.best_metric=kid_mean", "eval.early_stop_metric=kid_std"],
                      ["eval.metrics=[fid,prdc]", "eval.early_stop_metric=recall"],
                      ["eval.metrics=[is]", "eval.best_metric=is"],
                      ["eval.metrics=[acd]", "eval.best_metric=acd", "gasten.classifier=unused"],
                      ["eval.best_metric=anything"]):  # nothing is evaluated during training
        load_experiment(None, overrides)
    with pytest.raises(ConfigError, match=r"eval.best_metric='kid' is never computed.*produce fid") as err:
        load_experiment(None, ["eval.metrics=[fid]", "eval.best_metric=kid"])
    assert "add its metric to eval.metrics" in str(err.value)
    with pytest.raises(ConfigError, match="eval.early_stop_metric='acd'"):
        load_experiment(None, ["eval.metrics=[fid]", "eval.early_stop_metric=acd"])
    with pytest.raises(ConfigError, match="did you mean 'kid_mean'"):
        load_experiment(None, ["eval.metrics=[kid]", "eval.best_metric=kid_man"])
    with pytest.raises(ConfigError, match="precision, recall, density, coverage"):
        load_experiment(None, ["eval.metrics=[prdc]", "eval.best_metric=prdc"])  # no single main key: name one
