"""The registered data sets. Each builder returns an ImageDataset at its native size and channels."""

from __future__ import annotations

import gzip
import logging
import os
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from genlab.data.base import GRAY_MODES, FileImageDataset, ImageDataset, InMemoryImageDataset, probe_image
from genlab.data.synthetic import draw_shapes
from genlab.errors import DataError, DataNotFoundError
from genlab.registry import Registry

log = logging.getLogger(__name__)

DATASETS: Registry[Callable[..., ImageDataset]] = Registry("data set")

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def default_root() -> Path:
    """Where downloads go when data.root is unset: $GENLAB_DATA or ./data."""
    return Path(os.environ.get("GENLAB_DATA", "data"))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzip-compressed or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number). Re-download it.")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {array.size}. Re-download it.")
    return array.reshape(shape)


def _find_idx(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for name in (f"{stem}.gz", stem):
            if (d / name).is_file():
                return d / name
    return None


def load_idx_pair(
    dirs: list[Path], split: str, title: str, how_to_get: str, download: Callable[[], Path] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Find and read the images/labels IDX pair of an MNIST-format split, downloading only if allowed."""
    if split not in ("train", "test"):
        raise DataError(f"{title} has splits 'train' and 'test', not {split!r}. Set data.split accordingly.")
    prefix = "train" if split == "train" else "t10k"
    images = _find_idx(dirs, f"{prefix}-images-idx3-ubyte")
    labels = _find_idx(dirs, f"{prefix}-labels-idx1-ubyte")
    if (images is None or labels is None) and download is not None:
        dirs = [download(), *dirs]
        images = _find_idx(dirs, f"{prefix}-images-idx3-ubyte")
        labels = _find_idx(dirs, f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        looked = ", ".join(str(d) for d in dirs)
        raise DataNotFoundError(f"{title} ({split} split) was not found. Looked in: {looked}. {how_to_get}")
    x, y = read_idx(images), read_idx(labels)
    if len(x) != len(y):
        raise DataError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels. Re-download {title}.")
    return x, y


def _torchvision_download(cls_name: str, root: Path) -> Callable[[], Path]:
    def fetch() -> Path:
        import torchvision.datasets as tvd

        log.info("Downloading %s into %s with torchvision", cls_name, root)
        for train in (True, False):
            getattr(tvd, cls_name)(str(root), train=train, download=True)
        return root / cls_name / "raw"

    return fetch


def _idx_dataset(
    root: str | None, split: str, download: bool, *, title: str, slug: str, tv_name: str,
    system_dir: Path | None, class_names: list[str],
) -> InMemoryImageDataset:
    base = Path(root) if root else default_root()
    dirs = [base, base / slug, base / tv_name / "raw"]
    if system_dir is not None:
        dirs.append(system_dir)
    how = (
        f"Get it with `genlab prepare data {slug}` (torchvision download), or run with data.download=true, "
        f"or set data.root to a folder holding the four *-idx*-ubyte(.gz) files."
    )
    if system_dir is not None:
        how = f"Install the Debian package `dataset-{slug}` (it fills {system_dir}), or: " + how[0].lower() + how[1:]
    x, y = load_idx_pair(dirs, split, title, how, _torchvision_download(tv_name, base) if download else None)
    images = torch.from_numpy(x.copy()).unsqueeze(1)
    return InMemoryImageDataset(images, torch.from_numpy(y.astype(np.int64)), class_names, slug)


@DATASETS.register("fashion-mnist")
def fashion_mnist(root: str | None = None, split: str = "train", download: bool = False, **_: object) -> ImageDataset:
    """Fashion-MNIST: 28 px grayscale clothing, 10 classes (Debian files, a root, or torchvision)."""
    return _idx_dataset(root, split, download, title="Fashion-MNIST", slug="fashion-mnist",
                        tv_name="FashionMNIST", system_dir=DEBIAN_FASHION_MNIST, class_names=FASHION_MNIST_CLASSES)


@DATASETS.register("mnist")
def mnist(root: str | None = None, split: str = "train", download: bool = False, **_: object) -> ImageDataset:
    """MNIST: 28 px grayscale digits, 10 classes (a root holding the IDX files, or torchvision)."""
    return _idx_dataset(root, split, download, title="MNIST", slug="mnist", tv_name="MNIST",
                        system_dir=None, class_names=[str(i) for i in range(10)])


def _missing_torchvision(title: str, slug: str, root: Path, size: str) -> DataError:
    return DataNotFoundError(
        f"{title} was not found under {root}. Download it once with `genlab prepare data {slug}` "
        f"(about {size}), or run with data.download=true, or set data.root to the folder where "
        f"torchvision already stored it."
    )


def _torchvision_set(cls_name: str, title: str, slug: str, size: str, root: str | None, download: bool, **kwargs: object):
    import torchvision.datasets as tvd

    base = Path(root) if root else default_root()
    try:
        return getattr(tvd, cls_name)(str(base), download=download, **kwargs)
    except (RuntimeError, FileNotFoundError) as err:
        if download:
            raise DataError(f"Downloading {title} into {base} failed ({err}). Check the network, or fetch it by hand "
                            "and set data.root.") from None
        raise _missing_torchvision(title, slug, base, size) from None


@DATASETS.register("cifar10")
def cifar10(root: str | None = None, split: str = "train", download: bool = False, **_: object) -> ImageDataset:
    """CIFAR-10: 32 px RGB, 10 classes (torchvision)."""
    if split not in ("train", "test"):
        raise DataError(f"CIFAR-10 has splits 'train' and 'test', not {split!r}.")
    ds = _torchvision_set("CIFAR10", "CIFAR-10", "cifar10", "170 MB", root, download, train=split == "train")
    images = torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return InMemoryImageDataset(images, torch.tensor(ds.targets), list(ds.classes), "cifar10")


@DATASETS.register("stl10")
def stl10(root: str | None = None, split: str = "train", download: bool = False, **_: object) -> ImageDataset:
    """STL-10: 96 px RGB; splits train, test, unlabeled, train+unlabeled (torchvision)."""
    ds = _torchvision_set("STL10", "STL-10", "stl10", "2.6 GB", root, download, split=split)
    labels = torch.from_numpy(np.asarray(ds.labels, dtype=np.int64)).clamp_min(0)  # unlabeled images: -1 -> 0
    return InMemoryImageDataset(torch.from_numpy(np.asarray(ds.data)), labels, list(ds.classes), "stl10")


def _files_from_torchvision(ds: object, files_attr: str, labels: list[int], class_names: list[str],
                            image_size: int, channels: int | None, center_crop: bool, name: str) -> FileImageDataset:
    files = [Path(f) for f in getattr(ds, files_attr)]
    return FileImageDataset(files, torch.tensor(labels), class_names, image_size, channels or 3, center_crop, name)


@DATASETS.register("flowers102")
def flowers102(root: str | None = None, split: str = "train", download: bool = False, image_size: int = 64,
               channels: int | None = None, center_crop: bool = True, **_: object) -> ImageDataset:
    """Oxford Flowers-102: RGB photos, 102 classes; splits train, val, test (torchvision)."""
    ds = _torchvision_set("Flowers102", "Flowers-102", "flowers102", "330 MB", root, download, split=split)
    labels = list(ds._labels)
    return _files_from_torchvision(ds, "_image_files", labels, [str(i) for i in range(102)],
                                   image_size, channels, center_crop, "flowers102")


@DATASETS.register("celeba")
def celeba(root: str | None = None, split: str = "train", download: bool = False, image_size: int = 64,
           channels: int | None = None, center_crop: bool = True, **_: object) -> ImageDataset:
    """CelebA aligned faces (one class); splits train, valid, test, all (torchvision)."""
    ds = _torchvision_set("CelebA", "CelebA", "celeba", "1.4 GB", root, download, split=split, target_type=[])
    folder = Path(ds.root) / ds.base_folder / "img_align_celeba"
    files = [folder / f for f in ds.filename]
    return FileImageDataset(files, torch.zeros(len(files), dtype=torch.long), ["face"],
                            image_size, channels or 3, center_crop, "celeba")


def _warn_about_folder(base: Path, used: int, skipped: list[tuple[Path, str]], converted: Counter[str],
                       empty: list[str], single: list[str]) -> None:
    """One warning for everything unusual in an image folder: skipped, converted, empty or one-image classes."""
    notes = []
    if skipped:
        first, why = skipped[0]
        notes.append(f"skipped {len(skipped)} unreadable image file(s) of {len(skipped) + used} (first: {first} — {why})")
    if converted:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(converted.items()))
        notes.append(f"converted {sum(converted.values())} image(s) to 8-bit grayscale/RGB ({kinds}; 16-bit scaled "
                     "down, transparency composited on black)")
    if empty:
        notes.append(f"ignored {len(empty)} class folder(s) without readable images ({', '.join(empty)}); the other "
                     "classes are numbered without them")
    if single:
        notes.append(f"{len(single)} class(es) hold a single image ({', '.join(single)})")
    if notes:
        log.warning("imagefolder %s: %s.", base, "; ".join(notes))


@DATASETS.register("imagefolder")
def imagefolder(root: str | None = None, split: str = "train", image_size: int = 64, channels: int | None = None,
                center_crop: bool = True, extensions: list[str] | None = None, **_: object) -> ImageDataset:
    """Any folder tree of images: one sub-folder per class (or images directly in root, one class)."""
    if not root:
        raise DataError("data.name=imagefolder needs data.root: the folder holding your images "
                        "(one sub-folder per class, or the images directly).")
    base = Path(root).expanduser()
    if (base / split).is_dir():
        base = base / split
    if not base.is_dir():
        raise DataError(f"data.root={root!r} is not a folder. Point it at the folder holding your images.")
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in (extensions or [".png", ".jpg", ".jpeg", ".webp"])}
    class_dirs = sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    groups = [(d.name, d) for d in class_dirs] or [(base.name, base)]
    found: list[tuple[str, list[Path]]] = []
    skipped: list[tuple[Path, str]] = []
    converted: Counter[str] = Counter()
    modes: set[str] = set()
    for name, folder in groups:
        kept = []
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts and p.is_file()):
            probe = probe_image(path)
            if probe.reason is None:
                kept.append(path)
                modes.add(probe.mode)
                converted.update([probe.conversion] if probe.conversion else [])
            else:
                skipped.append((path, probe.reason))
        found.append((name, kept))
    empty = [name for name, kept in found if not kept]
    found = [(name, kept) for name, kept in found if kept]  # a folder without readable images is not a class
    files = [path for _, kept in found for path in kept]
    labels = [label for label, (_, kept) in enumerate(found) for _ in kept]
    _warn_about_folder(base, len(files), skipped, converted, empty if files else [],
                       [name for name, kept in found if len(kept) == 1 and len(found) > 1])
    if not files:
        raise DataError(f"No readable images with extensions {sorted(exts)} under {base}"
                        + (f" ({len(skipped)} unreadable)" if skipped else "")
                        + ". Check data.root and data.extensions.")
    if channels is None:
        channels = 1 if modes <= GRAY_MODES else 3
    ds = FileImageDataset(files, torch.tensor(labels), [name for name, _ in found], image_size, channels,
                          center_crop, f"imagefolder:{base}")
    ds.skipped = skipped
    return ds


@DATASETS.register("synthetic")
def synthetic(split: str = "train", image_size: int = 32, channels: int | None = None, num_samples: int = 2048,
              seed: int = 0, **_: object) -> ImageDataset:
    """Procedurally drawn shapes in 4 classes (disc, square, triangle, cross): offline, any size."""
    split_seed = seed * 7919 + (0 if split == "train" else 1)
    images, labels, names = draw_shapes(num_samples, image_size, channels or 1, split_seed)
    return InMemoryImageDataset(images, labels, names, "synthetic")
