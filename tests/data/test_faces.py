"""Face alignment: the pure warp on synthetic landmarks, and the MTCNN cache on scikit-image's real photos."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genlab.data import faces
from genlab.data.faces import (
    REFERENCE_LANDMARKS_128,
    align_face,
    find_images,
    output_paths,
    prepare_faces,
    reference_landmarks,
)
from genlab.errors import DataError, GenlabError

needs_skimage = pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="scikit-image not installed")
needs_mtcnn = pytest.mark.skipif(importlib.util.find_spec("facenet_pytorch") is None or
                                 importlib.util.find_spec("skimage") is None,
                                 reason="facenet-pytorch or scikit-image not installed")


def similarity(points: np.ndarray, scale: float, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    """Rotate, scale and shift (x, y) points."""
    angle = math.radians(degrees)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return points @ rotation.T * scale + np.asarray(shift)


def dots(points: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """A dark RGB image with one bright Gaussian dot per (x, y) point."""
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    canvas = np.zeros(shape)
    for x, y in points:
        canvas += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return np.repeat((np.clip(canvas, 0, 1) * 255).astype(np.uint8)[:, :, None], 3, axis=2)


def dot_centres(image: np.ndarray, near: np.ndarray, radius: int = 6) -> np.ndarray:
    """Intensity-weighted centroid of the image around each expected (x, y) position."""
    gray = image[:, :, 0].astype(np.float64)
    centres = []
    for x, y in near:
        top, left = int(round(y)) - radius, int(round(x)) - radius
        patch = gray[max(top, 0) : top + 2 * radius + 1, max(left, 0) : left + 2 * radius + 1]
        ys, xs = np.mgrid[: patch.shape[0], : patch.shape[1]]
        total = patch.sum()
        centres.append([(xs * patch).sum() / total + max(left, 0), (ys * patch).sum() / total + max(top, 0)])
    return np.array(centres)


@needs_skimage
@pytest.mark.parametrize("size", [128, 64])
def test_align_face_maps_landmarks_onto_the_reference(size: int):
    reference = reference_landmarks(size)
    landmarks = similarity(REFERENCE_LANDMARKS_128, scale=2.3, degrees=25.0, shift=(120.0, 40.0))
    photo = dots(landmarks, (420, 400), sigma=2.3 * 1.5)
    aligned = align_face(photo, landmarks, size)
    assert aligned.shape == (size, size, 3) and aligned.dtype == np.uint8
    assert np.abs(dot_centres(aligned, reference, radius=max(3, size // 20)) - reference).max() < 1.0


def test_reference_landmarks_follow_seed_003_and_scale():
    assert np.allclose(reference_landmarks(128), [[38, 51], [90, 51], [64, 71], [45, 95], [83, 95]])
    half = reference_landmarks(64)
    assert np.allclose(half, (REFERENCE_LANDMARKS_128 + 0.5) / 2 - 0.5)
    wider = reference_landmarks(128, margin=0.25)
    centre = 63.5
    assert np.allclose(wider - centre, (reference_landmarks(128) - centre) / 1.25)


@needs_skimage
def test_align_face_rejects_bad_shapes():
    with pytest.raises(ValueError, match="5×2"):
        align_face(np.zeros((32, 32, 3), np.uint8), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="H×W×3"):
        align_face(np.zeros((32, 32, 4), np.uint8), REFERENCE_LANDMARKS_128)


def test_output_paths_mirror_sources_and_avoid_collisions(tmp_path: Path):
    mapping = output_paths([Path("a/x.jpg"), Path("a/x.png"), Path("b/y.JPEG"), Path("z.webp")])
    assert mapping == {Path("a/x.jpg"): Path("a/x_jpg.png"), Path("a/x.png"): Path("a/x_png.png"),
                       Path("b/y.JPEG"): Path("b/y.png"), Path("z.webp"): Path("z.png")}
    (tmp_path / "in" / "c").mkdir(parents=True)
    for name in ("c/one.JPG", "two.bmp", "notes.txt", "out/old.png"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"")
    found = find_images(tmp_path / "in", exclude=tmp_path / "in" / "out")
    assert [p.relative_to(tmp_path / "in").as_posix() for p in found] == ["c/one.JPG", "two.bmp"]


def test_missing_packages_say_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    with pytest.raises(GenlabError, match="pip install --no-deps facenet-pytorch"):
        faces.load_face_detector("cpu")
    monkeypatch.setitem(sys.modules, "skimage.transform", None)
    with pytest.raises(GenlabError, match="pip install scikit-image"):
        align_face(np.zeros((8, 8, 3), np.uint8), REFERENCE_LANDMARKS_128)


def test_bad_arguments_are_data_errors(tmp_path: Path):
    with pytest.raises(DataError, match="not a folder"):
        prepare_faces(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(DataError, match="margin"):
        prepare_faces(tmp_path, tmp_path / "out", margin=-0.1)


class FakeDetector:
    """Stands in for MTCNN: every image has two faces at fixed landmarks, the second more confident."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, batch: np.ndarray, landmarks: bool = True):
        self.calls += 1
        n = len(batch)
        weak = similarity(REFERENCE_LANDMARKS_128, 0.5, 0.0, (0.0, 0.0))
        strong = similarity(REFERENCE_LANDMARKS_128, 1.0, 10.0, (20.0, 5.0))
        return [None] * n, [np.array([0.8, 0.99])] * n, [np.stack([weak, strong])] * n


@needs_skimage
def test_cache_keeps_fresh_outputs_and_redoes_changed_sources(tmp_path: Path, monkeypatch):
    detector = FakeDetector()
    monkeypatch.setattr(faces, "load_face_detector", lambda device: detector)
    src = tmp_path / "src"
    (src / "class_a").mkdir(parents=True)
    photo = np.random.default_rng(0).integers(0, 255, (160, 180, 3), dtype=np.uint8)
    for name in ("one.png", "two.jpg", "three.png"):
        Image.fromarray(photo).save(src / "class_a" / name)
    chosen = faces.detect_landmarks(FakeDetector(), [photo])[0]
    assert np.allclose(chosen, similarity(REFERENCE_LANDMARKS_128, 1.0, 10.0, (20.0, 5.0)))
    first = prepare_faces(src, tmp_path / "out", size=32, batch_size=2)
    assert (first.aligned, first.cached, detector.calls) == (3, 0, 2)
    assert sorted(p.name for p in (tmp_path / "out" / "class_a").iterdir()) == ["one.png", "three.png", "two.png"]
    changed = src / "class_a" / "two.jpg"
    later = (tmp_path / "out" / "class_a" / "two.png").stat().st_mtime_ns + 10**9
    Image.fromarray(photo[::-1]).save(changed)
    os.utime(changed, ns=(later, later))
    second = prepare_faces(src, tmp_path / "out", size=32, batch_size=2)
    assert (second.aligned, second.cached, detector.calls) == (1, 2, 3)
    resized = prepare_faces(src, tmp_path / "out", size=48, batch_size=8)
    assert (resized.aligned, resized.cached) == (3, 0)
    assert Image.open(tmp_path / "out" / "class_a" / "one.png").size == (48, 48)


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """person/astronaut.jpg (one face), animals/chelsea.png (a cat), broken/{garbage,truncated}.jpg."""
    skimage_data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("faces")
    src = root / "photos"
    for folder in ("person", "animals", "broken"):
        (src / folder).mkdir(parents=True)
    Image.fromarray(skimage_data.astronaut()).save(src / "person" / "astronaut.jpg", quality=95)
    Image.fromarray(skimage_data.chelsea()).save(src / "animals" / "chelsea.png")
    (src / "broken" / "garbage.jpg").write_bytes(b"this is not an image")
    encoded = io.BytesIO()
    Image.fromarray(skimage_data.coffee()).save(encoded, format="JPEG")
    (src / "broken" / "truncated.jpg").write_bytes(encoded.getvalue()[:2000])
    return src, root / "aligned"


@pytest.fixture(scope="module")
def first_run(photo_tree: tuple[Path, Path]) -> faces.FacePrepReport:
    src, out = photo_tree
    return prepare_faces(src, out, size=128, device="cpu", batch_size=4)


@needs_mtcnn
def test_prepare_faces_counts_every_outcome(first_run: faces.FacePrepReport, photo_tree: tuple[Path, Path]):
    _, out = photo_tree
    assert (first_run.total, first_run.aligned, first_run.cached) == (4, 1, 0)
    assert first_run.no_face_paths == [Path("animals/chelsea.png")]
    assert sorted(first_run.unreadable_paths) == [Path("broken/garbage.jpg"), Path("broken/truncated.jpg")]
    saved = json.loads((out / "faces_report.json").read_text())
    assert (saved["aligned"], saved["no_face"], saved["unreadable"]) == (1, 1, 2)
    assert saved["no_face_paths"] == ["animals/chelsea.png"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["person/astronaut.png"]


@needs_mtcnn
def test_aligned_astronaut_has_her_eyes_on_the_reference(first_run: faces.FacePrepReport,
                                                         photo_tree: tuple[Path, Path]):
    _, out = photo_tree
    aligned = np.asarray(Image.open(out / "person" / "astronaut.png"))
    assert aligned.shape == (128, 128, 3)
    landmarks = faces.detect_landmarks(faces.load_face_detector("cpu"), [aligned])[0]
    assert landmarks is not None
    eyes, reference_eyes = landmarks[:2], reference_landmarks(128)[:2]
    assert np.abs(eyes - reference_eyes).max() < 6.0


@needs_mtcnn
def test_second_run_is_all_cache(first_run: faces.FacePrepReport, photo_tree: tuple[Path, Path], monkeypatch):
    src, out = photo_tree

    def no_detector(device: str):
        raise AssertionError("the detector must not run when every result is cached")

    monkeypatch.setattr(faces, "load_face_detector", no_detector)
    again = prepare_faces(src, out, size=128)
    assert (again.total, again.aligned, again.cached) == (4, 0, 1)
    assert again.no_face_paths == first_run.no_face_paths
    assert again.unreadable == 2


@needs_skimage
def test_heldout_split_for_fid_is_stable_and_capped(tmp_path: Path, monkeypatch):
    """--heldout N: N faces (at most a tenth) in out/test/, the rest in out/train/, the same on every run."""
    monkeypatch.setattr(faces, "load_face_detector", lambda device: FakeDetector())
    src = tmp_path / "src"
    (src / "people").mkdir(parents=True)
    photo = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for i in range(30):
        Image.fromarray(photo).save(src / "people" / f"{i:02d}.png")
    out = tmp_path / "out"
    report = prepare_faces(src, out, size=16, heldout=2)
    test = sorted(p.relative_to(out / "test") for p in (out / "test").rglob("*.png"))
    train = sorted(p.relative_to(out / "train") for p in (out / "train").rglob("*.png"))
    assert (report.heldout, len(test), len(train)) == (2, 2, 28) and not set(test) & set(train)
    assert "28 in train/, 2 held out in test/" in report.summary()
    again = prepare_faces(src, out, size=16, heldout=2)
    assert (again.cached, again.aligned) == (30, 0)
    assert sorted(p.relative_to(out / "test") for p in (out / "test").rglob("*.png")) == test
    capped = prepare_faces(src, out, size=16, heldout=5000)  # 5,000 asked, a tenth of 30 given
    assert capped.heldout == 3 and len(list((out / "test").rglob("*.png"))) == 3
    assert len(list((out / "train").rglob("*.png"))) == 27 and "capped" in capped.summary()
    assert json.loads((out / "faces_report.json").read_text())["heldout"] == 3
    from genlab.config import DataConfig
    from genlab.data import build_dataset

    data = DataConfig(name="imagefolder", root=str(out), image_size=16, channels=3)
    assert len(build_dataset(data)) == 27 and len(build_dataset(data, split="test")) == 3


def test_face_detector_device_defaults_to_auto(monkeypatch):
    import inspect

    from typer.testing import CliRunner

    from genlab.cli import app

    assert inspect.signature(faces.load_face_detector).parameters["device"].default == "auto"
    assert inspect.signature(prepare_faces).parameters["device"].default == "auto"
    seen = {}

    def fake_prepare(src, out, **kwargs):
        seen.update(kwargs)
        return faces.FacePrepReport(src=src, out=out, size=kwargs["size"], margin=kwargs["margin"])

    monkeypatch.setattr(faces, "prepare_faces", fake_prepare)
    result = CliRunner().invoke(app, ["prepare", "faces", "--src", ".", "--out", "x"])
    assert result.exit_code == 0, result.output
    assert seen["device"] == "auto" and seen["heldout"] == 5000
