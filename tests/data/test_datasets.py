"""Every data source that works offline: Debian Fashion-MNIST, IDX files, imagefolder, synthetic."""

from __future__ import annotations

import gzip
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.config import DataConfig
from genlab.data import EpochLoader, build_dataset
from genlab.data.augment import resolve_policy
from genlab.data.sources import DEBIAN_FASHION_MNIST
from genlab.errors import DataError

needs_debian_fmnist = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed (.ci/run installs it)",
)


@needs_debian_fmnist
def test_fashion_mnist_from_debian_files():
    ds = build_dataset(DataConfig(name="fashion-mnist"))
    assert len(ds) == 60_000 and ds.num_classes == 10 and ds.channels == 1 and ds.image_size == 28
    image, label = ds[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert -1.0 <= image.min() and image.max() <= 1.0 and 0 <= label < 10
    assert torch.bincount(ds.labels).tolist() == [6000] * 10
    test = build_dataset(DataConfig(name="fashion-mnist", split="test"))
    assert len(test) == 10_000


@needs_debian_fmnist
def test_class_pair_follows_gasten_convention_and_resizes():
    ds = build_dataset(DataConfig(name="fashion-mnist", classes=[3, 0], image_size=32, channels=3))
    assert len(ds) == 12_000 and ds.class_names == ["T-shirt/top", "Dress"]
    assert ds.num_classes == 2 and ds[0][0].shape == (3, 32, 32)
    full = build_dataset(DataConfig(name="fashion-mnist"))
    first_dress = int((full.labels == 3).nonzero()[0])
    first_kept = int(((full.labels == 3) | (full.labels == 0)).nonzero()[0])
    assert int(ds.labels[0]) == (1 if first_kept == first_dress else 0)
    assert ds.labels.sum() == 6000


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_idx_files_from_a_root(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (50, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte.gz", np.arange(50) % 10)
    ds = build_dataset(DataConfig(name="mnist", root=str(tmp_path), classes=[7, 1]))
    assert len(ds) == 10 and set(ds.labels.tolist()) == {0, 1}


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28)))
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"\x00\x01")
    with pytest.raises(DataError, match="truncated"):
        build_dataset(DataConfig(name="mnist", root=str(tmp_path)))


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="genlab prepare data mnist"):
        build_dataset(DataConfig(name="mnist", root=str(tmp_path)))
    with pytest.raises(DataError, match="genlab prepare data cifar10"):
        build_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    with pytest.raises(DataError, match="needs data.root"):
        build_dataset(DataConfig(name="imagefolder"))


def _make_image_folder(root: Path) -> None:
    rng = np.random.default_rng(1)
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (40 + 10 * i, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.{('png', 'jpg', 'webp')[i]}")
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    good = (root / "cats" / "0.png").read_bytes()
    (root / "cats" / "torn.png").write_bytes(good[: len(good) // 3])
    (root / "cats" / "notes.txt").write_text("not an image")


def test_imagefolder_skips_and_counts_corrupt_files(tmp_path, caplog):
    _make_image_folder(tmp_path)
    with caplog.at_level("WARNING"):
        ds = build_dataset(DataConfig(name="imagefolder", root=str(tmp_path), image_size=24))
    assert len(ds) == 6 and ds.class_names == ["cats", "dogs"] and ds.channels == 3
    assert len(ds.skipped) == 2
    assert sum("skipped 2 unreadable" in r.message for r in caplog.records) == 1
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (3, 24, 24) and label == int(i >= 3)


def test_imagefolder_runtime_breakage_never_crashes_an_epoch(tmp_path):
    _make_image_folder(tmp_path)
    ds = build_dataset(DataConfig(name="imagefolder", root=str(tmp_path), image_size=16, channels=1))
    ds.files[1].write_bytes(b"garbage after the scan")
    loader = EpochLoader(ds, batch_size=2, seed=0, device=torch.device("cpu"))
    with pytest.warns(UserWarning, match="Skipping unreadable image"):
        batches = list(loader.epoch(0))
    assert len(batches) == 3 and all(b.images.shape == (2, 1, 16, 16) for b in batches)


def _make_faulty_folder(root: Path) -> None:
    """Every kind of odd file an image folder meets, made with PIL."""
    rng = np.random.default_rng(2)
    for cls in ("a", "b", "empty", "one"):
        (root / cls).mkdir(parents=True)
    Image.fromarray(np.full((20, 20), 90, np.uint8)).save(root / "a" / "0_gray.png")  # first file: grayscale
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(root / "a" / "cmyk.jpg")
    Image.fromarray(np.full((20, 20), 32768, np.uint16)).save(root / "a" / "gray16.png")
    palette = Image.new("P", (20, 20), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0])
    palette.save(root / "a" / "palette.png")
    palette.save(root / "a" / "palette_transparent.png", transparency=1)
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(root / "a" / "rgba_transparent.png")
    Image.new("LA", (20, 20), (255, 0)).save(root / "a" / "la_transparent.png")
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / "b" / f"{i}.jpg", quality=90)
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / "one" / "only.png")
    jpeg, png = (root / "b" / "0.jpg").read_bytes(), (root / "one" / "only.png").read_bytes()
    (root / "b" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) - 10])  # headers intact: only decoding tells
    (root / "b" / "truncated.png").write_bytes(png[: len(png) // 2])
    (root / "b" / "not_an_image.jpg").write_text("a text file with an image extension")


def test_imagefolder_faults_are_trained_on_or_skipped_and_counted_in_one_warning(tmp_path, caplog):
    """Truncated, CMYK, 16-bit, palette and alpha files, empty and one-image classes, text named .jpg."""
    _make_faulty_folder(tmp_path)
    with caplog.at_level("WARNING"):
        ds = build_dataset(DataConfig(name="imagefolder", root=str(tmp_path), image_size=16))
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1, warned
    for words in ("skipped 3 unreadable image file(s) of 14", "converted 6 image(s)", "1 CMYK", "1 16-bit", "3 alpha",
                  "1 palette", "without readable images (empty)", "1 class(es) hold a single image (one)"):
        assert words in warned[0], (words, warned[0])
    assert ds.class_names == ["a", "b", "one"] and ds.channels == 3
    assert len(ds) == 11 and torch.bincount(ds.labels).tolist() == [7, 3, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left to skip or convert with a warning at training time
        images = {path.name: ds[i][0] for i, path in enumerate(ds.files)}
    assert all(image.shape == (3, 16, 16) for image in images.values())
    assert abs(images["gray16.png"].mean().item()) < 0.02  # 32768 of 65535 is mid-gray, not clipped to white
    for name in ("rgba_transparent.png", "la_transparent.png", "palette_transparent.png"):
        assert images[name].max().item() == -1.0, name  # fully transparent: black, whatever colour lies beneath
    assert images["palette.png"][1].min().item() == 1.0  # palette index 1 is pure green
    assert images["cmyk.jpg"][0].mean().item() > 0.9 and images["cmyk.jpg"][1:].mean().item() < -0.9  # red


def test_synthetic_is_deterministic_and_sized():
    a = build_dataset(DataConfig(name="synthetic", image_size=20, channels=3, num_samples=40, seed=5))
    b = build_dataset(DataConfig(name="synthetic", image_size=20, channels=3, num_samples=40, seed=5))
    assert torch.equal(a.images, b.images) and a.images.shape == (40, 3, 20, 20)
    assert a.num_classes == 4 and set(a.labels.tolist()) <= {0, 1, 2, 3}
    test = build_dataset(DataConfig(name="synthetic", split="test", image_size=20, num_samples=40, seed=5))
    assert not torch.equal(test.images, a.images[:, :1])


def test_loader_order_is_seeded_and_resumable():
    ds = build_dataset(DataConfig(name="synthetic", image_size=8, num_samples=40))
    loader = EpochLoader(ds, batch_size=8, seed=3, device=torch.device("cpu"), augment=resolve_policy("standard"))
    full = [b.images for b in loader.epoch(1, 0, torch.Generator().manual_seed(0))]
    gen = torch.Generator().manual_seed(0)
    batches = loader.epoch(1, 0, gen)
    head = [next(batches).images for _ in range(2)]
    restored = torch.Generator()
    restored.set_state(gen.get_state())
    tail = [b.images for b in loader.epoch(1, 2, restored)]
    assert all(torch.equal(x, y) for x, y in zip(full, head + tail, strict=True))
    assert not torch.equal(loader.order(1), loader.order(2))


def test_balanced_sampling_evens_out_classes():
    ds = build_dataset(DataConfig(name="synthetic", image_size=8, num_samples=400))
    keep = torch.cat([(ds.labels == 0).nonzero()[:10, 0], (ds.labels == 1).nonzero()[:190, 0]])
    skewed = ds.subset(keep, (ds.labels[keep] == 1).long(), ["rare", "common"])
    loader = EpochLoader(skewed, batch_size=10, seed=0, device=torch.device("cpu"), balanced=True)
    drawn = torch.cat([loader.order(e) for e in range(5)])
    rare_share = (skewed.labels[drawn] == 0).float().mean().item()
    assert 0.4 < rare_share < 0.6
    plain = EpochLoader(skewed, batch_size=10, seed=0, device=torch.device("cpu"))
    assert (skewed.labels[plain.order(0)] == 0).sum() == 10


def test_augment_config_forms():
    assert resolve_policy(None) is None
    assert resolve_policy(None, hflip=True).ops == ("hflip",)
    assert resolve_policy(["rotation"], hflip=True).ops == ("hflip", "rotation")
    assert resolve_policy({"ops": ["color_jitter"], "brightness": 0.1}).brightness == 0.1
    from genlab.errors import ConfigError
    from genlab.train import load_experiment

    with pytest.raises(ConfigError, match="unknown"):
        load_experiment(None, ["data.augment=[hflip, twirl]"])
    with pytest.raises(ConfigError, match="DiffAugment"):
        load_experiment(None, ["training.diffaugment=color,zoom"])
