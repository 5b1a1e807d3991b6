"""Seeded, resumable batch iteration: epoch e's order depends only on (seed, e)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from genlab.data.augment import AugmentPolicy, augment_batch
from genlab.data.base import ImageDataset, InMemoryImageDataset, Uint8View, to_float
from genlab.distributed import on_global_batch, shard_rows


@dataclass
class Batch:
    """One training batch: images in [-1, 1] on the training device, integer labels."""

    images: torch.Tensor
    labels: torch.Tensor


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch `epoch`'s data order (independent of everything else in the run)."""
    return (seed * 1_000_003 + epoch * 7_919 + 17) % (2**63 - 1)


class _EpochBatches:
    """A batch sampler whose batches are set per epoch, so one DataLoader (with persistent workers) serves every epoch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(list(self.batches))

    def __len__(self) -> int:
        return len(self.batches)


class EpochLoader:
    """Yields full batches in a seeded per-epoch order, optionally starting mid-epoch (for resume).

    In-memory data sets are gathered with one index op per batch; file-based ones go through a
    DataLoader whose workers decode uint8 images (pinned for CUDA, `prefetch_factor` batches ahead,
    optionally kept alive between epochs). Random augmentation happens on the whole batch
    in the main process with a checkpointed generator, so resuming is exact. With `balanced`, each
    epoch draws indices with replacement, weighted by 1 / (size of the image's class).

    `shard=(rank, ranks)` (torchrun): `batch_size` is the global batch and this rank yields its contiguous
    slice of each one, augmented with the global batch's random draws, so the ranks' slices together are
    exactly the one-process batch.
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
        pin_memory: bool | str = "auto",
        prefetch_factor: int = 2,
        persistent_workers: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if len(dataset) < batch_size:
            raise ValueError(f"the data set has {len(dataset)} images, fewer than one batch of {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.augment = augment
        self.num_workers = num_workers
        self.pin_memory = device.type == "cuda" if pin_memory == "auto" else bool(pin_memory)
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers and num_workers > 0
        self._file_loader: torch.utils.data.DataLoader | None = None  # kept across epochs with persistent workers
        self._epoch_batches = _EpochBatches()
        self.rank, self.ranks = shard
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
        self._epoch_batches.batches = [idx.tolist() for idx in index_batches]
        loader = self._file_loader
        if loader is None:
            workers = {"prefetch_factor": self.prefetch_factor,
                       "persistent_workers": self.persistent_workers} if self.num_workers > 0 else {}
            loader = torch.utils.data.DataLoader(Uint8View(self.dataset), batch_sampler=self._epoch_batches,
                                                 num_workers=self.num_workers, pin_memory=self.pin_memory, **workers)
            if self.persistent_workers:
                self._file_loader = loader
        yield from loader

    def epoch(self, epoch: int, start_batch: int = 0, aug_generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Batches of `epoch` from batch `start_batch` on."""
        order = self.order(epoch)[: self.steps_per_epoch * self.batch_size]
        index_batches = [shard_rows(idx, self.rank, self.ranks)
                         for idx in order.view(self.steps_per_epoch, self.batch_size)[start_batch:]]
        for images, labels in self._uint8_batches(index_batches):
            images = to_float(images.to(self.device, non_blocking=True))
            if self.augment is not None:
                images = on_global_batch(lambda x: augment_batch(x, self.augment, aug_generator), images,
                                         self.rank, self.ranks)
            yield Batch(images, labels.to(self.device, non_blocking=True))
