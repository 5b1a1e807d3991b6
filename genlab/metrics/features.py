"""From any image source to feature matrices: batching, progress, and the cache of real-image statistics.

Sources: a tensor N×C×H×W (float in [-1, 1] or uint8), a NumPy array, an iterable of such batches or of
(images, labels) tuples (a DataLoader), a folder of PNG/JPG/WEBP/BMP files (searched recursively), or an .npz
file (uint8 N×H×W×C or N×C×H×W under `images`, else its first array). Float images are rounded to 8 bits
first, exactly as when they are saved as PNG, so a tensor and its exported files give the same features.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from genlab import distributed
from genlab.data.base import to_uint8
from genlab.errors import DataError
from genlab.metrics.cache import atomic_save, cache_file
from genlab.metrics.extractor_base import FeatureExtractor

log = logging.getLogger(__name__)

ImageSource = Union[torch.Tensor, np.ndarray, str, Path, Iterable[Any]]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
DEFAULT_BATCH_SIZE = 64
CUDA_BATCH_SIZE = 256
STATS_FORMAT = 1


@dataclass
class FeatureSet:
    """Features of one image set (float32, CPU) and, when asked for, class logits."""

    features: torch.Tensor
    logits: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.features)


@dataclass
class RealStats:
    """What the metrics need from the real images: Gaussian statistics (float64) and, if kept, raw features."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int
    features: torch.Tensor | None = None

    @classmethod
    def from_features(cls, features: torch.Tensor, keep_features: bool = True) -> RealStats:
        """Mean and covariance of `features`, keeping the features themselves if asked."""
        mu, sigma = gaussian_statistics(features)
        return cls(mu, sigma, len(features), features if keep_features else None)


def gaussian_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 mean vector and covariance matrix (rows are samples, ddof=1), as pytorch-fid computes them."""
    array = np.asarray(features.numpy() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if array.ndim != 2 or len(array) < 2:
        raise DataError(f"Statistics need a 2-D feature matrix with at least 2 rows; got shape {array.shape}.")
    return np.mean(array, axis=0), np.cov(array, rowvar=False)


def as_uint8_batch(images: torch.Tensor | np.ndarray, where: str) -> torch.Tensor:
    """One batch as uint8 N×C×H×W (C = 1 or 3): float [-1, 1] is rounded like a PNG export; NHWC is transposed."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
        if images.ndim == 3:
            images = images.unsqueeze(-1)
        if images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
            images = images.permute(0, 3, 1, 2)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise DataError(
            f"Images from {where} must be N×C×H×W with 1 or 3 channels (tensors) or N×H×W×C (arrays); got "
            f"{shape}. Pass generated images as a tensor in [-1, 1] or uint8 in [0, 255]."
        )
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise DataError(f"Images from {where} are {images.dtype}; use uint8 in [0, 255] or float in [-1, 1].")
    low, high = float(images.min()), float(images.max())
    if low < -1.01 or high > 1.01:
        raise DataError(
            f"Float images from {where} range over [{low:.3g}, {high:.3g}], but genlab expects [-1, 1] (the "
            "generator's tanh range). Rescale them, or pass uint8 tensors for values in [0, 255]."
        )
    return to_uint8(images.cpu())


def rebatch(batches: Iterable[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    """Regroup a stream of batches of any sizes into batches of exactly `batch_size` (the last may be smaller)."""
    pending: list[torch.Tensor] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += len(batch)
        while count >= batch_size:
            merged = torch.cat(pending) if len(pending) > 1 else pending[0]
            yield merged[:batch_size]
            rest = merged[batch_size:]
            pending, count = ([rest], len(rest)) if len(rest) else ([], 0)
    if count:
        yield torch.cat(pending) if len(pending) > 1 else pending[0]


def _read_image(path: str) -> torch.Tensor:
    """One image file as uint8 C×H×W: grayscale stays 1 channel, anything else becomes RGB."""
    with Image.open(path) as image:
        image.load()
        image = image.convert("L" if image.mode in ("1", "L", "I", "I;16", "F") else "RGB")
        array = np.asarray(image)
    return torch.from_numpy(array.copy()).reshape(array.shape[0], array.shape[1], -1).permute(2, 0, 1)


class ImageFiles(torch.utils.data.Dataset):
    """Image files as (uint8 C×H×W tensor or None when unreadable, path, error text)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = [str(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str, str]:
        path = self.paths[index]
        try:
            return _read_image(path), path, ""
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as err:
            return None, path, f"{type(err).__name__}: {err}"


def collate_image_files(items: list[tuple[torch.Tensor | None, str, str]]) -> tuple[list[torch.Tensor], list[str]]:
    """Keep the readable images of a batch and report the unreadable ones (their paths and reasons)."""
    images = [image for image, _, _ in items if image is not None]
    failures = [f"{path} ({error})" for image, path, error in items if image is None]
    return images, failures


class ImageStream:
    """uint8 N×C×H×W batches of `batch_size` from any supported source, with the image count when known."""

    def __init__(self, source: ImageSource, batch_size: int = DEFAULT_BATCH_SIZE, num_workers: int = 0) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.source = source
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.skipped: list[str] = []
        self.total: int | None = None
        self._files: list[Path] | None = None
        self._array: np.ndarray | None = None
        if isinstance(source, (str, Path)):
            self._open_path(Path(source).expanduser())
        elif isinstance(source, (torch.Tensor, np.ndarray)):
            self.total = len(source)
        elif hasattr(source, "dataset") and hasattr(source.dataset, "__len__"):
            self.total = len(source.dataset)
        elif not isinstance(source, Iterable):
            raise DataError(
                f"Cannot read images from a {type(source).__name__}: pass a tensor, an iterable of batches "
                "(e.g. a DataLoader), a folder of images, or an .npz file."
            )

    def _open_path(self, path: Path) -> None:
        if path.is_dir():
            self._files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            if not self._files:
                raise DataError(
                    f"No {'/'.join(e[1:].upper() for e in IMAGE_EXTENSIONS)} images were found in {path} (searched "
                    "recursively). Point to the folder holding the images, e.g. the one `genlab sample` wrote."
                )
            self.total = len(self._files)
        elif path.suffix.lower() == ".npz" and path.is_file():
            with np.load(path, allow_pickle=False) as archive:
                if not archive.files:
                    raise DataError(f"{path} holds no arrays; expected uint8 images under the key `images`.")
                self._array = archive["images" if "images" in archive.files else archive.files[0]]
            self.total = len(self._array)
        else:
            raise DataError(
                f"{path} is neither a folder of images nor an .npz file. Pass a folder (PNG/JPG/WEBP/BMP, searched "
                "recursively), an .npz with uint8 images under `images`, or a tensor."
            )

    @property
    def where(self) -> str:
        """The source, in words, for messages."""
        return str(self.source) if isinstance(self.source, (str, Path)) else f"the {type(self.source).__name__}"

    def __iter__(self) -> Iterator[torch.Tensor]:
        self.skipped = []
        if self._files is not None:
            yield from self._file_batches()
            return
        source = self._array if self._array is not None else self.source
        if isinstance(source, (torch.Tensor, np.ndarray)):
            for start in range(0, len(source), self.batch_size):
                yield as_uint8_batch(source[start : start + self.batch_size], self.where)
            return
        yield from rebatch((as_uint8_batch(self._images_of(item), self.where) for item in source), self.batch_size)

    def _images_of(self, item: Any) -> torch.Tensor | np.ndarray:
        """The images of one item of an iterable: the item itself, or the first element of a tuple/list."""
        return item[0] if isinstance(item, (tuple, list)) else item

    def _file_batches(self) -> Iterator[torch.Tensor]:
        loader = torch.utils.data.DataLoader(
            ImageFiles(self._files), batch_size=self.batch_size, num_workers=self.num_workers,
            collate_fn=collate_image_files,
        )
        for images, failures in loader:
            self.skipped.extend(failures)
            if images:
                yield self._stack(images)
        if self.skipped:
            warnings.warn(
                f"Skipped {len(self.skipped)} unreadable image file(s) in {self.source}, e.g. {self.skipped[0]}. "
                "The metrics use the remaining images; delete or re-export the broken files to silence this.",
                stacklevel=2,
            )

    def _stack(self, images: list[torch.Tensor]) -> torch.Tensor:
        """One batch from single images: grayscale joins colour as RGB; differing sizes are an error."""
        if len({tuple(image.shape[1:]) for image in images}) > 1:
            sizes = sorted({f"{image.shape[2]}×{image.shape[1]}" for image in images})
            raise DataError(
                f"The images in {self.source} have different sizes ({', '.join(sizes[:4])}); genlab's metrics "
                "need one size. Resize them to a common size first."
            )
        if len({image.shape[0] for image in images}) > 1:
            images = [image.expand(3, -1, -1) for image in images]
        return torch.stack(images)


def default_batch_size(device: torch.device) -> int:
    """The extraction batch to start from: large on CUDA (halved on out-of-memory), 64 elsewhere."""
    return CUDA_BATCH_SIZE if device.type == "cuda" else DEFAULT_BATCH_SIZE


class _FittingBatches:
    """Runs an extractor on batches, halving the chunk size for good after an out-of-memory error.

    Features do not depend on the batch size (tested), so backing off changes speed, not results.
    """

    def __init__(self, extractor: FeatureExtractor, want_logits: bool) -> None:
        self.extractor = extractor
        self.want_logits = want_logits
        self.limit: int | None = None

    def __call__(self, batch: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        start = 0
        while start < len(batch):
            size = min(self.limit or len(batch), len(batch) - start)
            try:
                result = self.extractor.extract(batch[start : start + size], want_logits=self.want_logits)
            except torch.OutOfMemoryError:
                if size == 1:
                    raise
                self.limit = size // 2
                if self.extractor.device.type == "cuda":
                    torch.cuda.empty_cache()
                log.warning("Out of memory extracting %d images at once; continuing with %d.", size, self.limit)
                continue
            start += size
            yield result


def extract_features(
    source: ImageSource, extractor: FeatureExtractor, *, batch_size: int | None = None,
    num_workers: int = 0, want_logits: bool = False, progress: bool | None = None,
) -> FeatureSet:
    """Features (and logits) of every image in `source`; a progress bar when more than two batches are expected.

    `batch_size` None starts from `default_batch_size`; any size is halved after an out-of-memory error.
    Inside `genlab.distributed.sharing()` (evaluation under torchrun) each rank extracts every N-th batch and
    the features are gathered in the stream's order, so every rank holds exactly the one-process result.
    """
    batch_size = batch_size or default_batch_size(extractor.device)
    stream = ImageStream(source, batch_size=batch_size, num_workers=num_workers)
    show = progress if progress is not None else (stream.total is None or stream.total > 2 * batch_size)
    show = show and distributed.is_main()
    run = _FittingBatches(extractor, want_logits)
    done: list[tuple[tuple[int, int], tuple[torch.Tensor, torch.Tensor | None]]] = []  # ((batch, part), result)
    with tqdm(total=stream.total, unit="img", desc=f"{extractor.name} features", disable=not show,
              leave=False, dynamic_ncols=True) as bar:
        for index, batch in enumerate(stream):
            if not distributed.owns(index):
                continue
            for part, (batch_features, batch_logits) in enumerate(run(batch)):
                done.append(((index, part), (batch_features, batch_logits)))
                bar.update(len(batch_features) * (distributed.world_size() if distributed.is_sharing() else 1))
    results = distributed.gather_indexed(done)
    features = [batch_features for batch_features, _ in results]
    logits = [batch_logits for _, batch_logits in results if batch_logits is not None]
    if not features:
        raise DataError(f"No images could be read from {stream.where}; the metrics need at least two.")
    return FeatureSet(torch.cat(features), torch.cat(logits) if want_logits else None)


def cached_stats(
    key: str, compute_fn: Callable[[], FeatureSet | torch.Tensor], *, extractor: FeatureExtractor,
    keep_features: bool = False,
) -> RealStats:
    """Real-image statistics cached under (key, extractor, weights hash, fast flag); computed by `compute_fn` once.

    mu/sigma are stored in float64; raw features only when `keep_features` (KID and precision/recall need
    them). A cache written without features is recomputed when they are needed. Files are written atomically.
    """
    path = cache_file("stats", key, extractor.identity)
    cached = _load_stats(path, key, extractor.identity)
    # Under torchrun every rank takes the same path (extraction is shared), and rank 0 alone writes the cache.
    if distributed.agree(cached is not None and (cached.features is not None or not keep_features)):
        log.info("Real statistics for %r from %s", key, path)
        return cached
    result = compute_fn()
    features = result.features if isinstance(result, FeatureSet) else result
    stats = RealStats.from_features(features, keep_features=True)
    payload: dict[str, Any] = {
        "format": STATS_FORMAT, "key": key, "extractor": extractor.identity, "count": stats.count,
        "mu": torch.from_numpy(stats.mu), "sigma": torch.from_numpy(stats.sigma),
    }
    if keep_features:
        payload["features"] = features.float().contiguous()
    try:
        if distributed.is_main():
            atomic_save(payload, path)
    except OSError as err:
        warnings.warn(f"Could not cache real statistics in {path} ({err}); they will be recomputed.", stacklevel=2)
    return stats if keep_features else RealStats(stats.mu, stats.sigma, stats.count)


def _load_stats(path: Path, key: str, identity: str) -> RealStats | None:
    """A cached RealStats if `path` holds one for this key and extractor; None (after a warning if corrupt)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as err:
        warnings.warn(f"Ignoring unreadable statistics cache {path} ({err}); recomputing it.", stacklevel=3)
        return None
    if payload.get("format") != STATS_FORMAT or payload.get("key") != key or payload.get("extractor") != identity:
        return None
    features = payload.get("features")
    return RealStats(payload["mu"].numpy(), payload["sigma"].numpy(), int(payload["count"]), features)
