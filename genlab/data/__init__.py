"""Data sets (registry `DATASETS`), preparation to the configured size, and resumable batching."""

from __future__ import annotations

import torch

from genlab.config import DataConfig
from genlab.data.base import (
    FileImageDataset,
    ImageDataset,
    InMemoryImageDataset,
    convert_channels,
    resize_uint8,
    select_classes,
    to_float,
    to_uint8,
)
from genlab.data.loader import Batch, EpochLoader
from genlab.data.sources import DATASETS
from genlab.errors import DataError

__all__ = [
    "DATASETS", "Batch", "EpochLoader", "FileImageDataset", "ImageDataset", "InMemoryImageDataset",
    "build_dataset", "to_float", "to_uint8",
]


def build_dataset(cfg: DataConfig, split: str | None = None) -> ImageDataset:
    """The configured data set, at data.image_size and data.channels, restricted to data.classes."""
    split = split or cfg.split
    builder = DATASETS.get(cfg.name)
    dataset = builder(
        root=cfg.root, split=split, download=cfg.download, image_size=cfg.image_size, channels=cfg.channels,
        center_crop=cfg.center_crop, extensions=cfg.extensions, num_samples=cfg.num_samples, seed=cfg.seed,
    )
    if isinstance(dataset, InMemoryImageDataset):
        images = convert_channels(dataset.images, cfg.channels)
        images = resize_uint8(images, cfg.image_size, cfg.center_crop)
        dataset = InMemoryImageDataset(images, dataset.labels, dataset.class_names, dataset.name)
    if cfg.classes is not None:
        try:
            dataset = select_classes(dataset, cfg.classes)
        except ValueError as err:
            raise DataError(f"data.classes={cfg.classes}: {err}. Use ids from 0 to {dataset.num_classes - 1}.") from None
    if cfg.max_samples is not None and cfg.max_samples < len(dataset):
        keep = torch.arange(cfg.max_samples)
        dataset = dataset.subset(keep, dataset.labels[keep], dataset.class_names)
    if cfg.num_classes is not None and cfg.num_classes != dataset.num_classes:
        raise DataError(
            f"data.num_classes={cfg.num_classes} but {dataset.name} has {dataset.num_classes} classes "
            f"after data.classes. Set data.num_classes={dataset.num_classes} or null."
        )
    if len(dataset) == 0:
        raise DataError(f"{dataset.name} ({split}) has no images after data.classes/max_samples filtering.")
    return dataset
