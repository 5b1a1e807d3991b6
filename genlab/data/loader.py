"""Seeded, resumable batch iteration: epoch e's order depends only on (seed, e)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from genlab.data.augment import AugmentPolicy, augment_batch
from genlab.data.base import ImageDataset, InMemoryImageDataset, Uint8View, to_float


@dataclass
class Batch:
    """One training batch: images in [-1, 1] on the training device, integer labels."""

    images: torch.Tensor
    labels: torch.Tensor


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch `epoch`'s data order (independent of everything else in the run)."""
    return (seed * 1_000_003 + epoch * 7_919 + 17) % (2**63 - 1)


class EpochLoader:
    """Yields full batches in a seeded per-epoch order, optionally starting mid-epoch (for resume).

    In-memory data sets are gathered with one index op per batch; file-based ones go through a
    DataLoader whose workers decode uint8 images. Random augmentation happens on the whole batch
    in the main process with a checkpointed generator, so resuming is exact. With `balanced`, each
    epoch draws indices with replacement, weighted by 1 / (size of the image's class).
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        seed: int,
        device: torch.device,
        augment: AugmentPolicy | None = None,
        num_workers: int = 0,
        balanced: bool = False,
    ) -> None:
        if len(dataset) < batch_size:
            raise ValueError(f"the data set has {len(dataset)} images, fewer than one batch of {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.augment = augment
        self.num_workers = num_workers
        self.sample_weights = None
        if balanced:
            counts = torch.bincount(dataset.labels, minlength=dataset.num_classes).clamp_min(1)
            self.sample_weights = 1.0 / counts[dataset.labels].double()

    @property
    def steps_per_epoch(self) -> int:
        """Full batches per epoch (the last partial batch is dropped)."""
        return len(self.dataset) // self.batch_size

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of data indices used in `epoch`."""
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        if self.sample_weights is not None:
            return torch.multinomial(self.sample_weights, len(self.dataset), replacement=True, generator=gen)
        return torch.randperm(len(self.dataset), generator=gen)

    def _uint8_batches(self, index_batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.dataset, InMemoryImageDataset):
            for idx in index_batches:
                yield self.dataset.batch_uint8(idx)
            return
        loader = torch.utils.data.DataLoader(
            Uint8View(self.dataset),
            batch_sampler=[idx.tolist() for idx in index_batches],
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        yield from loader

    def epoch(self, epoch: int, start_batch: int = 0, aug_generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Batches of `epoch` from batch `start_batch` on."""
        order = self.order(epoch)[: self.steps_per_epoch * self.batch_size]
        index_batches = list(order.view(self.steps_per_epoch, self.batch_size)[start_batch:])
        for images, labels in self._uint8_batches(index_batches):
            images = to_float(images.to(self.device, non_blocking=True))
            if self.augment is not None:
                images = augment_batch(images, self.augment, aug_generator)
            yield Batch(images, labels.to(self.device, non_blocking=True))
