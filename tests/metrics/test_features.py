"""Image sources (tensor, arrays, iterables, folders, npz) and the real-statistics cache."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.data.base import to_float
from genlab.errors import DataError
from genlab.metrics import extractor_base
from genlab.metrics.cache import cache_file
from genlab.metrics.features import ImageStream, cached_stats, extract_features, rebatch

from .helpers import MeanPoolExtractor, synthetic_images


def features_of(source, extractor: MeanPoolExtractor, batch_size: int = 5) -> torch.Tensor:
    """Features of `source` with the cheap extractor."""
    return extract_features(source, extractor, batch_size=batch_size, progress=False).features


def write_pngs(images: torch.Tensor, folder: Path) -> None:
    """One PNG per image, split over two nested folders (names sort in image order)."""
    for index, image in enumerate(images):
        target = folder / ("a" if index < len(images) // 2 else "b/c") / f"{index:03d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        array = image.permute(1, 2, 0).numpy()
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(target)


def test_tensor_array_iterable_folder_and_npz_give_the_same_features(tmp_path: Path, meanpool):
    images = synthetic_images(13, seed=0, smooth=True, size=20)
    expected = features_of(images, meanpool)
    assert expected.shape == (13, 48)

    floats = to_float(images)
    torch.testing.assert_close(features_of(floats, meanpool), expected, rtol=0, atol=0)
    torch.testing.assert_close(features_of(images.permute(0, 2, 3, 1).numpy(), meanpool), expected, rtol=0, atol=0)
    labelled = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(floats, torch.zeros(13)), batch_size=4)
    torch.testing.assert_close(features_of(labelled, meanpool, batch_size=6), expected, rtol=0, atol=0)
    uneven = (images[start:stop] for start, stop in ((0, 1), (1, 9), (9, 13)))
    torch.testing.assert_close(features_of(uneven, meanpool), expected, rtol=0, atol=0)

    write_pngs(images, tmp_path / "pngs")
    torch.testing.assert_close(features_of(tmp_path / "pngs", meanpool), expected, rtol=0, atol=0)
    torch.testing.assert_close(features_of(str(tmp_path / "pngs"), meanpool, batch_size=64), expected, rtol=0, atol=0)

    np.savez(tmp_path / "nhwc.npz", images=images.permute(0, 2, 3, 1).numpy(), labels=np.zeros(13))
    np.savez(tmp_path / "nchw.npz", images.numpy())
    for name in ("nhwc.npz", "nchw.npz"):
        torch.testing.assert_close(features_of(tmp_path / name, meanpool), expected, rtol=0, atol=0)


def test_grayscale_sources(tmp_path: Path, meanpool):
    images = synthetic_images(6, seed=1, smooth=True, size=16)[:, :1]
    expected = features_of(images, meanpool)
    write_pngs(images, tmp_path / "gray")
    torch.testing.assert_close(features_of(tmp_path / "gray", meanpool), expected, rtol=0, atol=0)
    np.savez(tmp_path / "gray.npz", images=images[:, 0].numpy())
    torch.testing.assert_close(features_of(tmp_path / "gray.npz", meanpool), expected, rtol=0, atol=0)


def test_corrupt_files_are_skipped_counted_and_reported(tmp_path: Path, meanpool):
    images = synthetic_images(5, seed=2, smooth=True, size=16)
    write_pngs(images, tmp_path)
    (tmp_path / "a" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    stream = ImageStream(tmp_path, batch_size=4)
    with pytest.warns(UserWarning, match=r"Skipped 1 unreadable image file\(s\).*001.png"):
        batches = list(stream)
    assert len(stream.skipped) == 1 and sum(len(batch) for batch in batches) == 4
    with pytest.warns(UserWarning, match="Skipped 1"):
        result = extract_features(tmp_path, meanpool, batch_size=2, num_workers=0, progress=True)
    torch.testing.assert_close(result.features, features_of(images[[0, 2, 3, 4]], meanpool))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (torch.rand(4, 3, 8, 8) * 255, "range over"),
        (torch.zeros(4, 8, 8), "N×C×H×W"),
        (torch.zeros(4, 3, 8, 8, dtype=torch.int32), "int32"),
        (42, "Cannot read images from a int"),
    ],
)
def test_bad_inputs_are_explained(source, message: str, meanpool):
    with pytest.raises(DataError, match=message):
        features_of(source, meanpool)


def test_bad_paths_are_explained(tmp_path: Path, meanpool):
    with pytest.raises(DataError, match="No PNG/JPG/JPEG/WEBP/BMP images"):
        features_of(tmp_path, meanpool)
    with pytest.raises(DataError, match="neither a folder"):
        features_of(tmp_path / "missing.npz", meanpool)
    Image.new("RGB", (8, 8)).save(tmp_path / "small.png")
    Image.new("RGB", (9, 9)).save(tmp_path / "large.png")
    with pytest.raises(DataError, match="different sizes"):
        features_of(tmp_path, meanpool)


class SmallMemoryExtractor(MeanPoolExtractor):
    """Runs out of memory on more than 3 images at once, like a GPU too small for the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def extract(self, images, want_logits=False):
        self.sizes.append(len(images))
        if len(images) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().extract(images, want_logits)


def test_extraction_halves_the_batch_after_out_of_memory_and_gives_the_same_features(caplog):
    images = synthetic_images(25, seed=5, smooth=True, size=12)
    expected = extract_features(images, MeanPoolExtractor(), batch_size=25, progress=False)
    small = SmallMemoryExtractor()
    with caplog.at_level("WARNING"):
        result = extract_features(images, small, batch_size=10, want_logits=True, progress=False)
    torch.testing.assert_close(result.features, expected.features, rtol=0, atol=0)
    assert result.logits.shape == (25, 10)
    assert small.sizes[:3] == [10, 5, 2] and max(small.sizes[3:]) == 2  # backed off once, for good
    assert "Out of memory extracting 10 images at once; continuing with 5" in caplog.text


def test_default_batch_size_is_larger_on_cuda():
    from genlab.metrics.features import CUDA_BATCH_SIZE, DEFAULT_BATCH_SIZE, default_batch_size

    assert default_batch_size(torch.device("cuda")) == CUDA_BATCH_SIZE > DEFAULT_BATCH_SIZE
    assert default_batch_size(torch.device("cpu")) == DEFAULT_BATCH_SIZE


def test_rebatch_regroups_exactly():
    parts = [torch.arange(n) for n in (3, 1, 7, 2)]
    assert [len(b) for b in rebatch(parts, 4)] == [4, 4, 4, 1]
    torch.testing.assert_close(torch.cat(list(rebatch(parts, 4))), torch.cat(parts))


@pytest.mark.filterwarnings("ignore:fast=bf16 on a CPU without AMX")
def test_real_statistics_are_cached_per_key_and_extractor(isolated_cache: Path):
    images = synthetic_images(20, seed=3, smooth=True, size=12)
    calls = []

    def compute():
        calls.append(1)
        return extract_features(images, MeanPoolExtractor(), progress=False)

    exact = MeanPoolExtractor()
    first = cached_stats("cifar-test", compute, extractor=exact)
    again = cached_stats("cifar-test", compute, extractor=exact)
    assert len(calls) == 1 and first.features is None
    assert first.mu.dtype == np.float64 and first.sigma.shape == (48, 48)
    np.testing.assert_array_equal(first.sigma, again.sigma)

    with_features = cached_stats("cifar-test", compute, extractor=exact, keep_features=True)
    assert len(calls) == 2 and with_features.features.shape == (20, 48)
    assert cached_stats("cifar-test", compute, extractor=exact, keep_features=True).features is not None
    assert cached_stats("cifar-test", compute, extractor=exact).count == 20
    assert len(calls) == 2

    cached_stats("cifar-test", compute, extractor=MeanPoolExtractor(fast=True))
    cached_stats("other key", compute, extractor=exact)
    assert len(calls) == 4


def test_corrupt_statistics_cache_is_recomputed(isolated_cache: Path):
    extractor = MeanPoolExtractor()
    path = cache_file("stats", "broken", extractor.identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="Ignoring unreadable statistics cache"):
        stats = cached_stats("broken", lambda: torch.rand(10, 48), extractor=extractor)
    assert stats.count == 10
    assert cached_stats("broken", lambda: torch.rand(3, 48), extractor=extractor).count == 10


def test_fast_mode_on_a_cpu_without_amx_says_exact_is_faster(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(extractor_base, "cpu_has_bfloat16_matrix_units", lambda: False)
    with pytest.warns(UserWarning, match="fast=False is both faster and exact"):
        MeanPoolExtractor(fast=True)
    monkeypatch.setattr(extractor_base, "cpu_has_bfloat16_matrix_units", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert MeanPoolExtractor(fast=True).identity.endswith("-bf16")
