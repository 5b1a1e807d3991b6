"""Precision/recall (Kynkäänniemi et al. 2019, k=3) and density/coverage (Naeem et al. 2020, k=5).

All four compare each sample with k-nearest-neighbour balls around the other set's samples; a ball holds
its boundary for precision/recall (as torch-fidelity) but not for density/coverage (as Naeem et al.'s code).
Distances are computed in float64 in row chunks, so 10k×10k (or larger) sets fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from genlab.errors import DataError
from genlab.metrics.features import FeatureSet, RealStats
from genlab.metrics.registry import register_metric

PR_NEIGHBOURS = 3
DC_NEIGHBOURS = 5
CHUNK_ELEMENTS = 2**24


def squared_distance_chunks(a: torch.Tensor, b: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, squared Euclidean distances of a chunk of `a`'s rows to all of `b`), chunk by chunk."""
    rows = max(1, CHUNK_ELEMENTS // max(1, len(b)))
    b_norms = (b * b).sum(dim=1)
    for start in range(0, len(a), rows):
        chunk = a[start : start + rows]
        squared = (chunk * chunk).sum(dim=1, keepdim=True) + b_norms - 2 * chunk @ b.T
        yield start, squared.clamp_(min=0)


def knn_radii(points: torch.Tensor, k: int) -> torch.Tensor:
    """Squared distance from each point to its k-th nearest other point (the point itself excluded)."""
    if len(points) <= k:
        raise DataError(f"k-nearest-neighbour metrics with k={k} need more than {k} images per set; got {len(points)}.")
    radii = torch.empty(len(points), dtype=points.dtype)
    for start, squared in squared_distance_chunks(points, points):
        radii[start : start + len(squared)] = squared.kthvalue(k + 1, dim=1).values
    return radii


def precision_recall_density_coverage(
    fake: torch.Tensor, real: torch.Tensor, pr_neighbours: int = PR_NEIGHBOURS, dc_neighbours: int = DC_NEIGHBOURS
) -> dict[str, float]:
    """precision: fakes inside some real k-ball; recall: reals inside some fake k-ball (k=3);
    density: mean count of real k-balls holding each fake, over k; coverage: reals whose k-ball holds a fake (k=5)."""
    fake, real = fake.double(), real.double()
    real_pr_radii, fake_pr_radii = knn_radii(real, pr_neighbours), knn_radii(fake, pr_neighbours)
    real_dc_radii = knn_radii(real, dc_neighbours)
    precise = torch.zeros(len(fake), dtype=torch.bool)
    covered = torch.zeros(len(real), dtype=torch.bool)
    recalled = torch.zeros(len(real), dtype=torch.bool)
    density_count = 0.0
    for start, squared in squared_distance_chunks(fake, real):
        rows = slice(start, start + len(squared))
        precise[rows] = (squared <= real_pr_radii).any(dim=1)
        inside_dc = squared < real_dc_radii
        density_count += float(inside_dc.sum())
        covered |= inside_dc.any(dim=0)
        recalled |= (squared <= fake_pr_radii[rows, None]).any(dim=0)
    return {
        "precision": float(precise.double().mean()),
        "recall": float(recalled.double().mean()),
        "density": density_count / (dc_neighbours * len(fake)),
        "coverage": float(covered.double().mean()),
    }


@register_metric("prdc", needs_real_features=True, keys=("precision", "recall", "density", "coverage"),
                 higher_is_better=True)
def prdc_metric(fake: FeatureSet, real: RealStats | None, seed: int) -> dict[str, float]:
    """Precision, recall, density and coverage of the generated features against the real ones."""
    assert real is not None and real.features is not None
    return precision_recall_density_coverage(fake.features, real.features)
