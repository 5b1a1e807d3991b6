"""Image data sets as genlab sees them: uint8 storage, [-1, 1] float tensors out, integer labels."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

log = logging.getLogger(__name__)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 in [0, 255] (rounded, clamped)."""
    return images.detach().add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def resize_uint8(images: torch.Tensor, size: int, center_crop: bool = True) -> torch.Tensor:
    """Centre-crop (optional) and resize a uint8 N×C×H×W batch to size×size with antialiasing."""
    h, w = images.shape[-2:]
    if center_crop and h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        images = images[..., top : top + side, left : left + side]
    if images.shape[-2:] == (size, size):
        return images.contiguous()
    out = []
    for chunk in images.split(1024):
        resized = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(resized.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def convert_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """Grayscale <-> RGB for a uint8 N×C×H×W batch (ITU-R 601 luma for RGB -> gray)."""
    if channels is None or images.shape[1] == channels:
        return images
    if channels == 3 and images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and images.shape[1] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {images.shape[1]} channels to {channels}")


class ImageDataset(torch.utils.data.Dataset):
    """Base class: `ds[i]` is (image float C×H×W in [-1, 1], label int); `labels` holds every label."""

    name: str = "images"
    labels: torch.Tensor
    class_names: list[str]
    channels: int
    image_size: int

    @property
    def num_classes(self) -> int:
        """Number of classes (length of class_names)."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)

    def get_uint8(self, index: int) -> torch.Tensor:
        """The image at `index` as uint8 C×H×W."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return to_float(self.get_uint8(index)), int(self.labels[index])

    def subset(self, indices: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> ImageDataset:
        """A view holding only `indices`, relabelled with `labels`."""
        raise NotImplementedError


class InMemoryImageDataset(ImageDataset):
    """All images held as one uint8 N×C×H×W tensor: batches are gathered with one index op."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], name: str = "images") -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 N×C×H×W tensor, got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images.contiguous()
        self.labels = labels.long()
        self.class_names = list(class_names)
        self.channels = images.shape[1]
        self.image_size = images.shape[-1]
        self.name = name

    def get_uint8(self, index: int) -> torch.Tensor:
        return self.images[index]

    def batch_uint8(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather a batch as (uint8 images, labels) in one indexing op."""
        return self.images[indices], self.labels[indices]

    def subset(self, indices: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> InMemoryImageDataset:
        return InMemoryImageDataset(self.images[indices], labels, class_names, self.name)


#: PIL modes read as one channel when data.channels is null.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_ALPHA_MODES = frozenset({"LA", "La", "RGBA", "RGBa", "PA"})


def conversion_of(img: Image.Image) -> str | None:
    """What `to_8bit` does to an opened image beyond decoding: 16-bit, CMYK, alpha, palette, another mode, or None."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        return "16-bit"
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        return "alpha"
    if mode in ("L", "RGB", "1"):
        return None
    return {"CMYK": "CMYK", "P": "palette"}.get(mode, f"{mode} mode")


def to_8bit(img: Image.Image) -> Image.Image:
    """The image as 8-bit L or RGB: 16 bits scaled down (not clipped), palettes expanded, CMYK and other modes
    converted, transparency composited on black (so what lies under transparent pixels never shows)."""
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float64)
        if mode != "F" and (mode != "I" or values.max(initial=0) > 255):
            values = values / 257.0  # 0..65535 -> 0..255
        return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), "L")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
        img = img.convert("L" if mode in ("LA", "La") else "RGB")
    if img.mode == "1":
        img = img.convert("L")
    if img.mode not in ("L", "RGB"):  # CMYK, YCbCr, LAB, HSV
        img = img.convert("RGB")
    return img


def load_image_uint8(path: Path, size: int, channels: int | None, center_crop: bool) -> torch.Tensor:
    """Decode one image file to a uint8 C×H×W tensor of the configured size and channels (see `to_8bit`)."""
    with Image.open(path) as img:
        img = to_8bit(ImageOps.exif_transpose(img))
        if channels == 1:
            img = img.convert("L")
        elif channels == 3:
            img = img.convert("RGB")
        else:
            img.load()
        if center_crop:
            img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
        else:
            img = img.resize((size, size), Image.Resampling.BICUBIC)
        array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class ImageProbe:
    """What a quick look at one image file found: why it cannot be used (or None), its PIL mode, its conversion."""

    reason: str | None
    mode: str = ""
    conversion: str | None = None


def probe_image(path: Path) -> ImageProbe:
    """Check that `path` decodes: PNG structure and checksums by `verify()`, other formats (where `verify()`
    does not see truncation) by decoding, JPEG at reduced scale (`draft`), so that the check stays cheap."""
    try:
        with Image.open(path) as img:
            mode, fmt, conversion = img.mode, img.format, conversion_of(img)
            img.verify()
        if fmt != "PNG":
            with Image.open(path) as img:
                img.draft(img.mode, (16, 16))
                img.load()
    except Exception as err:  # PIL raises many types for broken files
        return ImageProbe(f"{type(err).__name__}: {err}")
    return ImageProbe(None, mode, conversion)


def image_file_is_readable(path: Path) -> str | None:
    """None when `path` decodes as an image (see `probe_image`), else the reason it does not."""
    return probe_image(path).reason


class FileImageDataset(ImageDataset):
    """Images decoded from files on demand (imagefolder, Flowers-102, CelebA, ...)."""

    def __init__(
        self,
        files: Sequence[Path],
        labels: torch.Tensor,
        class_names: Sequence[str],
        image_size: int,
        channels: int,
        center_crop: bool = True,
        name: str = "files",
    ) -> None:
        self.files = [Path(f) for f in files]
        self.labels = labels.long()
        self.class_names = list(class_names)
        self.image_size = image_size
        self.channels = channels
        self.center_crop = center_crop
        self.name = name
        self._reported: set[int] = set()

    def get_uint8(self, index: int) -> torch.Tensor:
        """Decode file `index`; a file that broke after the scan is replaced by the next readable one."""
        for offset in range(len(self.files)):
            i = (index + offset) % len(self.files)
            try:
                return load_image_uint8(self.files[i], self.image_size, self.channels, self.center_crop)
            except Exception as err:  # PIL raises many types for broken files
                if i not in self._reported:
                    self._reported.add(i)
                    warnings.warn(f"Skipping unreadable image {self.files[i]} ({type(err).__name__}: {err}).", stacklevel=2)
        raise RuntimeError(f"none of the {len(self.files)} image files of {self.name} can be decoded")

    def subset(self, indices: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> FileImageDataset:
        files = [self.files[int(i)] for i in indices]
        return FileImageDataset(files, labels, class_names, self.image_size, self.channels, self.center_crop, self.name)


class Uint8View(torch.utils.data.Dataset):
    """A dataset's uint8 images and labels, for DataLoader workers (4× less to copy than floats)."""

    def __init__(self, dataset: ImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.get_uint8(index), self.dataset.labels[index]


def select_classes(dataset: ImageDataset, classes: Sequence[int]) -> ImageDataset:
    """Keep only `classes`; two classes follow GASTeN (first -> 1, second -> 0), more go by position."""
    n = dataset.num_classes
    bad = [c for c in classes if not 0 <= c < n]
    if bad:
        raise ValueError(f"class ids {bad} are outside 0..{n - 1} of {dataset.name}")
    order = list(classes)
    new_id = {c: (1 - i if len(order) == 2 else i) for i, c in enumerate(order)}
    keep = torch.isin(dataset.labels, torch.tensor(order))
    indices = keep.nonzero().squeeze(1)
    mapping = torch.full((n,), -1, dtype=torch.long)
    for c, i in new_id.items():
        mapping[c] = i
    labels = mapping[dataset.labels[indices]]
    names = [""] * len(order)
    for c, i in new_id.items():
        names[i] = dataset.class_names[c]
    return dataset.subset(indices, labels, names)
