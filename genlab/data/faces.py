"""Face alignment cache: detect faces with MTCNN, warp them onto fixed landmark positions, write PNGs.

`prepare_faces(src, out)` turns a folder of photos into a folder of size×size aligned faces with the same
relative layout, so `data.name=imagefolder data.root=<out>` trains on them. It is a cache: outputs newer
than their source are kept, and a summary lands in `<out>/faces_report.json`.

With `heldout=N` the crops are split into `<out>/train/` and `<out>/test/`: N faces (at most a tenth of
them) are held out for FID (seed note 003: FID against 5,000 held-out real images), chosen by a hash of
each crop's path, so the same photos always give the same split; `data.split` and `eval.real_split`
pick the folders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from genlab.errors import DataError, GenlabError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
REPORT_NAME = "faces_report.json"
REFERENCE_SIZE = 128
# Canonical 5-point layout for a 128×128 face (seed note 003): left eye, right eye, nose, mouth corners.
REFERENCE_LANDMARKS_128 = np.array(
    [[38.0, 51.0], [90.0, 51.0], [64.0, 71.0], [45.0, 95.0], [83.0, 95.0]], dtype=np.float64
)
# Photos are detected on a copy whose longer side is at most this (MTCNN time grows with pixels).
DETECTION_MAX_SIDE = 1024
#: The held-out split never takes more than this fraction of the faces (the rest is what G trains on).
MAX_HELDOUT_FRACTION = 0.1
SPLITS = ("train", "test")


@dataclass
class FacePrepReport:
    """What one `prepare_faces` run did; paths are relative to `src`."""

    src: Path
    out: Path
    size: int
    margin: float
    total: int = 0
    aligned: int = 0
    cached: int = 0
    no_face_paths: list[Path] = field(default_factory=list)
    unreadable_paths: list[Path] = field(default_factory=list)
    heldout_requested: int = 0
    heldout: int = 0

    @property
    def no_face(self) -> int:
        """Number of readable images in which no face was found."""
        return len(self.no_face_paths)

    @property
    def unreadable(self) -> int:
        """Number of files that could not be decoded as images."""
        return len(self.unreadable_paths)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        line = (f"{self.total} images under {self.src}: {self.aligned} aligned, {self.cached} cached, "
                f"{self.no_face} without a face, {self.unreadable} unreadable -> {self.out}")
        if self.heldout_requested:
            faces = self.aligned + self.cached
            capped = " (capped at a tenth of the faces)" if self.heldout < min(self.heldout_requested, faces) else ""
            line += (f"; {faces - self.heldout} in train/, {self.heldout} held out in test/ for evaluation"
                     f"{capped}")
        return line

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (paths as POSIX strings relative to `src`)."""
        return {
            "src": str(self.src), "out": str(self.out), "size": self.size, "margin": self.margin,
            "total": self.total, "aligned": self.aligned, "cached": self.cached,
            "no_face": self.no_face, "unreadable": self.unreadable,
            "heldout_requested": self.heldout_requested, "heldout": self.heldout,
            "no_face_paths": [p.as_posix() for p in self.no_face_paths],
            "unreadable_paths": [p.as_posix() for p in self.unreadable_paths],
        }


def _require_skimage_transform() -> ModuleType:
    try:
        import skimage.transform
    except ImportError as err:
        raise GenlabError(
            f"Face alignment needs scikit-image, which could not be imported ({err}). "
            "Install it into genlab's environment with `pip install scikit-image`, then run the command again."
        ) from err
    return skimage.transform


def load_face_detector(device: str = "auto") -> Any:
    """facenet-pytorch's MTCNN (weights ship in the package) on `device` (auto: CUDA if present, else the CPU)."""
    try:
        from facenet_pytorch import MTCNN
    except ImportError as err:
        if err.name in (None, "facenet_pytorch"):
            how = ("Install it with `pip install --no-deps facenet-pytorch requests` (--no-deps keeps its stale "
                   "torch pin from replacing genlab's torch; its MTCNN weights ship inside the package)")
        else:
            how = f"facenet-pytorch is installed but needs {err.name!r}: install it with `pip install {err.name}`"
        raise GenlabError(f"Face detection needs facenet-pytorch, which could not be imported ({err}). {how}, "
                          "then run the command again.") from err
    if device == "auto":  # like every genlab command, but MTCNN gains little from MPS: CUDA or the CPU
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch_device = torch.device(device)
    except RuntimeError as err:
        raise GenlabError(f"device={device!r} is not a torch device name. Use 'cpu', 'cuda' or 'cuda:N'.") from err
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise GenlabError(f"device={device!r} was requested for face detection but CUDA is not available "
                          "here. Use device='cpu'.")
    return MTCNN(keep_all=False, select_largest=False, device=torch_device)


def reference_landmarks(size: int = REFERENCE_SIZE, margin: float = 0.0) -> np.ndarray:
    """Canonical (x, y) landmark positions in a size×size crop; margin > 0 zooms out to keep more context."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    scale = size / REFERENCE_SIZE
    # Scale pixel areas, not pixel centres: centre of pixel i covers [i - 0.5, i + 0.5).
    points = (REFERENCE_LANDMARKS_128 + 0.5) * scale - 0.5
    centre = (size - 1) / 2
    return centre + (points - centre) / (1.0 + margin)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = REFERENCE_SIZE,
               margin: float = 0.0) -> np.ndarray:
    """Warp an H×W×3 uint8 photo so its 5 (x, y) landmarks land on the reference layout; size×size×3 uint8."""
    transform_module = _require_skimage_transform()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H×W×3 (or H×W), got shape {image.shape}")
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2):
        raise ValueError(f"landmarks must be 5×2 (x, y) points, got shape {landmarks.shape}")
    transform = _estimate_similarity(transform_module, landmarks, reference_landmarks(size, margin))
    warped = transform_module.warp(image, transform.inverse, output_shape=(size, size), order=3,
                                   mode="edge", preserve_range=True)
    # Bicubic interpolation overshoots near edges: clip before the cast instead of letting uint8 wrap.
    return np.clip(np.rint(warped), 0, 255).astype(np.uint8)


def _estimate_similarity(transform_module: ModuleType, source: np.ndarray, target: np.ndarray) -> Any:
    similarity = transform_module.SimilarityTransform
    if hasattr(similarity, "from_estimate"):
        transform = similarity.from_estimate(source, target)
        ok = bool(transform)
    else:
        transform = similarity()
        ok = transform.estimate(source, target)
    if not ok:
        raise ValueError(f"no similarity transform maps landmarks {source.tolist()} onto the reference")
    return transform


def find_images(src: Path, exclude: Path | None = None) -> list[Path]:
    """Image files under `src` (recursively, sorted), leaving out anything inside `exclude`."""
    excluded = exclude.resolve() if exclude is not None else None
    found = []
    for path in sorted(src.rglob("*")):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        if excluded is not None and path.resolve().is_relative_to(excluded):
            continue
        found.append(path)
    return found


def output_paths(relative: list[Path]) -> dict[Path, Path]:
    """Map source paths (relative) to PNG paths; `a.jpg` and `a.png` side by side become `a_jpg.png`, `a_png.png`."""
    stems: dict[Path, int] = {}
    for rel in relative:
        key = rel.with_suffix("")
        stems[key] = stems.get(key, 0) + 1
    mapping = {}
    for rel in relative:
        if stems[rel.with_suffix("")] > 1:
            mapping[rel] = rel.with_name(f"{rel.stem}_{rel.suffix[1:].lower()}.png")
        else:
            mapping[rel] = rel.with_suffix(".png")
    return mapping


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        return np.asarray(img, dtype=np.uint8).copy()


def _is_up_to_date(target: Path, source: Path) -> bool:
    return target.is_file() and target.stat().st_mtime_ns >= source.stat().st_mtime_ns


def _previous_no_face(out: Path, size: int, margin: float) -> tuple[set[str], int, bool]:
    """Paths an earlier run with the same settings found faceless, the report's mtime, and whether it matches."""
    report_path = out / REPORT_NAME
    try:
        previous = json.loads(report_path.read_text())
        same_settings = previous["size"] == size and previous["margin"] == margin
        return set(previous["no_face_paths"]), report_path.stat().st_mtime_ns, same_settings
    except (OSError, ValueError, KeyError, TypeError):
        return set(), 0, True


def _detection_copy(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image shrunk so its longer side is at most DETECTION_MAX_SIDE, and the (x, y) factors back."""
    height, width = image.shape[:2]
    if max(height, width) <= DETECTION_MAX_SIDE:
        return image, np.ones(2)
    shrink = DETECTION_MAX_SIDE / max(height, width)
    small_height, small_width = max(1, round(height * shrink)), max(1, round(width * shrink))
    small = Image.fromarray(image).resize((small_width, small_height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small), np.array([width / small_width, height / small_height])


def detect_landmarks(detector: Any, images: list[np.ndarray]) -> list[np.ndarray | None]:
    """The 5 landmarks of the most confident face in each image (None where no face is found)."""
    copies = [_detection_copy(image) for image in images]
    result: list[np.ndarray | None] = [None] * len(images)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, (small, _) in enumerate(copies):
        by_shape.setdefault(small.shape, []).append(index)
    for indices in by_shape.values():
        batch = np.stack([copies[i][0] for i in indices])
        _, probabilities, points = detector.detect(batch, landmarks=True)
        for i, probs, pts in zip(indices, probabilities, points, strict=True):
            if pts is None or len(pts) == 0:
                continue
            best = int(np.argmax(np.asarray(probs, dtype=np.float64)))
            result[i] = np.asarray(pts[best], dtype=np.float64) * copies[i][1]
    return result


def _write_png_atomically(image: np.ndarray, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    Image.fromarray(image).save(partial, format="PNG")
    os.replace(partial, target)


def heldout_names(names: list[Path], heldout: int) -> set[Path]:
    """The crops held out for evaluation: `heldout` of them (at most a tenth), by a hash of each path."""
    count = min(heldout, int(len(names) * MAX_HELDOUT_FRACTION))
    ranked = sorted(names, key=lambda name: hashlib.sha256(name.as_posix().encode()).hexdigest())
    return set(ranked[:count])


def _place_splits(out: Path, names: list[Path], heldout: int) -> int:
    """Move each crop into out/train or out/test as `heldout_names` decides (mtimes kept); the held-out count."""
    held = heldout_names(names, heldout)
    for name in names:
        split = "test" if name in held else "train"
        other = out / ("train" if split == "test" else "test") / name
        if other.is_file():
            (out / split / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(other, out / split / name)
    return len(held)


def prepare_faces(src: Path, out: Path, size: int = REFERENCE_SIZE, device: str = "auto", batch_size: int = 16,
                  margin: float = 0.0, heldout: int = 0) -> FacePrepReport:
    """Align the most confident face of every image under `src` into `out` (same relative paths, PNG), cached.

    `heldout` > 0 writes out/train/ and out/test/, with that many faces (at most a tenth) in test/.
    """
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if not src.is_dir():
        raise DataError(f"Face preparation source {src} is not a folder. Point it at the folder holding your photos.")
    if size < 16:
        raise DataError(f"Face crop size must be at least 16 pixels, got size={size}.")
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}.")
    if margin < 0:
        raise DataError(f"margin must be >= 0 (0 = the reference crop, 0.2 = 20% more context), got {margin}.")
    if heldout < 0:
        raise DataError(f"heldout must be 0 (no split) or a number of faces to hold out, got {heldout}.")
    _require_skimage_transform()
    sources = find_images(src, exclude=out)
    relative = [path.relative_to(src) for path in sources]
    targets = output_paths(relative)
    known_faceless, report_time, same_settings = _previous_no_face(out, size, margin)
    report = FacePrepReport(src=src, out=out, size=size, margin=margin, total=len(sources), heldout_requested=heldout)

    def existing(rel: Path) -> Path:
        """Where this source's crop is (or goes): out/<rel>, or out/train|test/<rel> with a held-out split."""
        if not heldout:
            return out / targets[rel]
        test = out / "test" / targets[rel]
        return test if test.is_file() else out / "train" / targets[rel]

    detector = None
    pending: list[tuple[Path, np.ndarray]] = []

    def align_pending() -> None:
        nonlocal detector
        if detector is None:
            detector = load_face_detector(device)
        found = detect_landmarks(detector, [image for _, image in pending])
        for (rel, image), landmarks in zip(pending, found, strict=True):
            if landmarks is None:
                report.no_face_paths.append(rel)
                continue
            try:
                aligned = align_face(image, landmarks, size, margin)
            except ValueError:  # degenerate landmarks (all on one point): no usable face
                report.no_face_paths.append(rel)
                continue
            _write_png_atomically(aligned, existing(rel))
            report.aligned += 1
        pending.clear()

    for source, rel in zip(sources, relative, strict=True):
        if same_settings and _is_up_to_date(existing(rel), source):
            report.cached += 1
            continue
        if same_settings and rel.as_posix() in known_faceless and source.stat().st_mtime_ns <= report_time:
            report.no_face_paths.append(rel)
            continue
        try:
            image = _read_rgb(source)
        except Exception as err:  # PIL raises many types for broken files
            log.warning("Skipping unreadable image %s (%s: %s).", source, type(err).__name__, err)
            report.unreadable_paths.append(rel)
            continue
        pending.append((rel, image))
        if len(pending) >= batch_size:
            align_pending()
    if pending:
        align_pending()
    if heldout:
        faceless = {*report.no_face_paths, *report.unreadable_paths}
        names = [targets[rel] for rel in relative if rel not in faceless and existing(rel).is_file()]
        report.heldout = _place_splits(out, names, heldout)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_NAME).write_text(json.dumps(report.to_json(), indent=2) + "\n")
    log.info("%s", report.summary())
    return report
