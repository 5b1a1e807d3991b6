"""Diagnosis: health signals measured against the real data, and `genlab doctor`'s findings about a run.

`signals` holds the measures and alarm levels the training loop's live checks share; `doctor`
reads a finished (or running) run directory and ranks what went wrong, with the overrides to try;
`environment` checks the machine (device, data, FID weights, disk) before a run.
"""

from genlab.diagnose.signals import mean_pairwise_distance, sample_health, saturation_ratio

__all__ = ["mean_pairwise_distance", "sample_health", "saturation_ratio"]
