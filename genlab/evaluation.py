"""Scoring runs: generated samples against the run's real data, with cached real statistics.

`genlab.metrics` does the numbers on any two image sources; this module knows about runs and data
sets: it draws samples from a run's generator, streams the matching real images, picks the feature
extractor (Inception, or the domain classifier trained once per data set), and appends results to
the run's metrics.jsonl.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from genlab.config import Config, DataConfig
from genlab.data import ImageDataset, build_dataset
from genlab.data.base import InMemoryImageDataset, Uint8View
from genlab.errors import DataError, GenlabError


def dataset_key(cfg: DataConfig, split: str, limit: int | None) -> str:
    """Identity of a real image set for the statistics cache."""
    parts = [cfg.name, split, f"{cfg.image_size}px", f"c{cfg.channels}", f"classes{cfg.classes}", f"n{limit}",
             f"crop{int(cfg.center_crop)}", str(Path(cfg.root).resolve()) if cfg.root else "default-root"]
    return "-".join(str(p) for p in parts)


def real_batches(dataset: ImageDataset, limit: int | None = None, batch_size: int = 64,
                 num_workers: int = 0) -> Iterator[torch.Tensor]:
    """The first `limit` images of a data set as uint8 batches (no augmentation)."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if isinstance(dataset, InMemoryImageDataset):
        for start in range(0, n, batch_size):
            yield dataset.images[start : min(start + batch_size, n)]
        return
    subset = torch.utils.data.Subset(Uint8View(dataset), range(n))
    for images, _ in torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=num_workers):
        yield images


def parse_real(spec: str, data: DataConfig | None = None) -> tuple[object, str | None]:
    """`--real` as a folder / .npz path, or `DATASET[:SPLIT]` (sized like `data`, else natively)."""
    path = Path(spec)
    if path.exists():
        return str(path), None
    name, _, split = spec.partition(":")
    base = data.model_dump() if data is not None else {}
    cfg = DataConfig(**{**base, "name": name, "split": split or "train"})
    try:
        dataset = build_dataset(cfg)
    except GenlabError as err:
        raise DataError(f"--real {spec!r} is neither an existing folder/.npz nor a usable data set: {err}") from None
    return real_batches(dataset), dataset_key(cfg, cfg.split, None)


def extractor_for(cfg: Config, name: str, device: torch.device, fast: bool = False, download: bool = False):
    """The feature extractor: Inception, or the data set's own classifier (trained once and cached)."""
    from genlab.metrics import build_extractor, train_domain_classifier

    if name != "domain":
        return build_extractor(name, download=download, device=device, fast=fast)
    train_cfg = cfg.data.model_copy(update={"split": "train", "max_samples": None})
    key = "domain-" + dataset_key(train_cfg, "train", None)
    train_set = build_dataset(train_cfg)
    if not isinstance(train_set, InMemoryImageDataset) or train_set.image_size > 64:
        raise GenlabError("eval.extractor=domain trains a small classifier on the data set in memory; it is meant "
                          "for 28-64 px sets (MNIST, Fashion-MNIST, CIFAR-10, synthetic). Use eval.extractor=inception.")
    try:
        test_set = build_dataset(cfg.data.model_copy(update={"split": "test", "max_samples": None}))
        test = (test_set.images, test_set.labels) if isinstance(test_set, InMemoryImageDataset) else (None, None)
    except GenlabError:
        test = (None, None)
    classifier = train_domain_classifier(train_set.images, train_set.labels, train_set.num_classes,
                                         test_images=test[0], test_labels=test[1], cache_key=key, device=device,
                                         seed=cfg.data.seed)
    return build_extractor("domain", weights=classifier, device=device, fast=fast)


def score_samples(cfg: Config, fake: torch.Tensor, metrics: Sequence[str], *, extractor: object,
                  split: str | None = None, real_limit: int | None = None, seed: int = 0,
                  batch_size: int = 64) -> dict[str, float]:
    """Metrics of `fake` against the config's real data (real statistics cached per data set)."""
    from genlab.metrics import evaluate

    split = split or cfg.eval.real_split
    data_cfg = cfg.data.model_copy(update={"split": split, "max_samples": None})
    key = dataset_key(data_cfg, split, real_limit)
    real = real_batches(build_dataset(data_cfg), real_limit, batch_size, cfg.data.num_workers)
    return evaluate(fake, real, metrics, extractor=extractor, real_cache_key=key, seed=seed, batch_size=batch_size)


def best_key(name: str, extractor: object) -> str:
    """The results key of `eval.best_metric` for this extractor (fid -> fid_domain with the domain classifier)."""
    from genlab.metrics import result_key

    return result_key(name, name.split("_")[0], getattr(extractor, "metric_suffix", ""))
