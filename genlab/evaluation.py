"""Scoring runs: generated samples against the run's real data, with cached real statistics.

`genlab.metrics` does the numbers on any two image sources; this module knows about runs and data
sets: it draws samples from a run's generator, streams the matching real images, picks the feature
extractor (Inception, or the domain classifier trained once per data set), and appends results to
the run's metrics.jsonl. `RunEvaluator` is the one scorer of a run: the evaluation hook during
training and `genlab evaluate RUN` both use it, with the same noise seed, real set and KID seed, so
they give the same numbers for the same generator.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from genlab.config import Config, DataConfig
from genlab.data import ImageDataset, build_dataset
from genlab.data.base import InMemoryImageDataset, Uint8View
from genlab.errors import DataError, GenlabError
from genlab.generate import generate
from genlab.methods import Method, SampleOptions
from genlab.metrics import build_extractor, evaluate, result_key, train_domain_classifier
from genlab.metrics.classifier import CLASSIFIER_METRICS, ClassifierExtractor, classifier_metrics
from genlab.metrics.features import DEFAULT_BATCH_SIZE
from genlab.models.classifiers import load_classifier


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


class DatasetBatches:
    """A data set's first `limit` images as uint8 batches, iterable more than once (image and classifier metrics)."""

    def __init__(self, dataset: ImageDataset, limit: int | None = None, batch_size: int = 64,
                 num_workers: int = 0) -> None:
        self.dataset, self.limit, self.batch_size, self.num_workers = dataset, limit, batch_size, num_workers

    def __iter__(self) -> Iterator[torch.Tensor]:
        return real_batches(self.dataset, self.limit, self.batch_size, self.num_workers)


def dataset_batches(cfg: DataConfig, limit: int | None = None, batch_size: int = 64) -> Iterator[torch.Tensor]:
    """Like `real_batches`, but the data set is only built once iterated, so a statistics-cache hit reads no data."""
    yield from real_batches(build_dataset(cfg), limit, batch_size, cfg.num_workers)


def parse_real(spec: str, data: DataConfig | None = None, default_split: str = "train") -> tuple[object, str | None]:
    """`--real` as a folder / .npz path, or `DATASET[:SPLIT]` (sized like `data`, else natively; default_split)."""
    path = Path(spec)
    if path.exists():
        return str(path), None
    name, _, split = spec.partition(":")
    base = data.model_dump() if data is not None else {}
    cfg = DataConfig(**{**base, "name": name, "split": split or default_split})
    try:
        dataset = build_dataset(cfg)
    except GenlabError as err:
        raise DataError(f"--real {spec!r} is neither an existing folder/.npz nor a usable data set: {err}") from None
    return DatasetBatches(dataset), dataset_key(cfg, cfg.split, None)


def extractor_for(cfg: Config, name: str, device: torch.device, fast: bool | str = False, download: bool = False):
    """The feature extractor: Inception, or the data set's own classifier (trained once and cached)."""
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
                  batch_size: int | None = None) -> dict[str, float]:
    """Metrics of `fake` against the config's real data (real statistics cached per data set)."""
    split = split or cfg.eval.real_split
    data_cfg = cfg.data.model_copy(update={"split": split, "max_samples": None})
    key = dataset_key(data_cfg, split, real_limit)
    real = dataset_batches(data_cfg, real_limit, batch_size or DEFAULT_BATCH_SIZE)
    return evaluate(fake, real, metrics, extractor=extractor, real_cache_key=key, seed=seed, batch_size=batch_size)


def best_key(name: str, extractor: object) -> str:
    """The results key of `eval.best_metric` for this extractor (fid -> fid_domain with the domain classifier)."""
    if name in CLASSIFIER_METRICS or extractor is None:
        return name
    return result_key(name, name.split("_")[0], getattr(extractor, "metric_suffix", ""))


def classifier_source(cfg: Config) -> str | None:
    """The binary classifier behind acd/focd/hubris: eval.classifier, else gasten.classifier."""
    return cfg.eval.classifier or cfg.gasten.classifier


def noise_seed(cfg: Config) -> int:
    """The seed of the fixed noise a run is evaluated on (during training and by `genlab evaluate`)."""
    return cfg.data.seed + 4


def real_set_description(cfg: Config) -> str:
    """Which real images a run is scored against: data set, split and how many."""
    limit = cfg.eval.real_samples
    where = f"{cfg.data.name}" + (f" ({cfg.data.root})" if cfg.data.root else "")
    return f"{where}, split {cfg.eval.real_split}, {f'first {limit}' if limit else 'all'} images"


def score_sources(fake: object, real: object, metrics: Sequence[str], *, extractor: object | None,
                  classifier: str | None = None, real_cache_key: str | None = None, seed: int = 0,
                  batch_size: int | None = None, device: torch.device | None = None) -> dict[str, float]:
    """Image metrics and classifier metrics (acd, focd, hubris with `classifier`) of any two image sources."""
    image_metrics = [m for m in metrics if m not in CLASSIFIER_METRICS]
    wanted = [m for m in metrics if m in CLASSIFIER_METRICS]
    results = evaluate(fake, real, image_metrics, extractor=extractor, real_cache_key=real_cache_key,
                       batch_size=batch_size, seed=seed) if image_metrics else {}
    if wanted:
        if classifier is None:
            raise GenlabError(f"The metrics {', '.join(wanted)} need a binary classifier: pass --classifier "
                              "runs/classifiers/<name> (from `genlab classifier train`).")
        extractor = ClassifierExtractor(load_classifier(classifier, device=device), device=device)
        real_key = None if real_cache_key is None else "classifier-" + real_cache_key
        values, _, _ = classifier_metrics(fake, extractor, wanted, real=real, real_cache_key=real_key,
                                          batch_size=batch_size or DEFAULT_BATCH_SIZE)
        results.update(values)
    return results


@dataclass
class Evaluation:
    """One evaluation of a generator: metric values and, with a classifier, its outputs on the samples."""

    results: dict[str, float]
    images: torch.Tensor
    probs: torch.Tensor | None = None
    histogram: list[int] | None = None


class RunEvaluator:
    """Scores a generator on fixed noise: eval.metrics, image metrics and classifier metrics alike.

    Networks (the Inception or domain extractor, the binary classifier) are built on first use and kept,
    and real statistics are cached per data set, so evaluating every epoch costs only the fake images.
    """

    def __init__(self, cfg: Config, device: torch.device, metrics: Sequence[str] | None = None, *,
                 extractor: object | None = None, batch_size: int | None = None) -> None:
        self.cfg, self.device = cfg, device
        names = list(cfg.eval.metrics if metrics is None else metrics)
        self.image_metrics = [m for m in names if m not in CLASSIFIER_METRICS]
        self.classifier_metrics = [m for m in names if m in CLASSIFIER_METRICS]
        self._extractor: object | None = extractor
        self._classifier: object | None = None
        self.batch_size = batch_size

    def describe(self, num_samples: int | None = None, seed: int | None = None) -> str:
        """What a call scores: the fake samples (count, noise seed), the real set, and the KID/IS seed."""
        cfg = self.cfg
        n = num_samples or cfg.eval.num_samples
        seed = noise_seed(cfg) if seed is None else seed
        return (f"fake: {n} samples, noise seed {seed}; real: {real_set_description(cfg)}; "
                f"metric seed {cfg.data.seed}")

    @property
    def extractor(self) -> object | None:
        """The image-metric feature extractor (None when only classifier metrics are asked for)."""
        if self._extractor is None and self.image_metrics:
            self._extractor = extractor_for(self.cfg, self.cfg.eval.extractor, self.device, self.cfg.eval.fast)
        return self._extractor

    @property
    def classifier_extractor(self) -> object:
        """The binary classifier of eval.classifier / gasten.classifier, wrapped once as a feature extractor."""
        if self._classifier is None:
            source = classifier_source(self.cfg)
            if source is None:
                raise GenlabError("The metrics acd, focd and hubris need a binary classifier: set eval.classifier "
                                  "(or gasten.classifier) to a run from `genlab classifier train`.")
            self._classifier = ClassifierExtractor(load_classifier(source, device=self.device), device=self.device)
        return self._classifier

    @property
    def classifier(self) -> torch.nn.Module:
        """The binary classifier itself."""
        return self.classifier_extractor.classifier

    def __call__(self, method: Method, seed: int | None = None, num_samples: int | None = None,
                 options: SampleOptions | None = None) -> Evaluation:
        """Generate eval.num_samples images from fixed noise (with the sampler `options`) and score them."""
        cfg = self.cfg
        seed = noise_seed(cfg) if seed is None else seed
        fake = generate(method, num_samples or cfg.eval.num_samples, seed=seed, batch_size=cfg.training.batch_size,
                        options=options)
        results: dict[str, float] = {}
        if self.image_metrics:
            results.update(score_samples(cfg, fake, self.image_metrics, extractor=self.extractor,
                                         real_limit=cfg.eval.real_samples, seed=cfg.data.seed,
                                         batch_size=self.batch_size))
        evaluation = Evaluation(results, fake)
        if self.classifier_metrics:
            split = cfg.eval.real_split
            data_cfg = cfg.data.model_copy(update={"split": split, "max_samples": None})
            real = dataset_batches(data_cfg, cfg.eval.real_samples, cfg.training.batch_size)
            values, probs, histogram = classifier_metrics(
                fake, self.classifier_extractor, self.classifier_metrics, real=real, bins=cfg.eval.histogram_bins,
                real_cache_key="classifier-" + dataset_key(data_cfg, split, cfg.eval.real_samples),
                batch_size=cfg.training.batch_size)
            results.update(values)
            evaluation.probs, evaluation.histogram = probs, histogram
        return evaluation
