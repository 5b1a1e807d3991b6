"""The int8 fast path of the FID Inception: uint8 pooling, folded int8 convs, calibration, and the whole network."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genlab.errors import GenlabError
from genlab.metrics import extractor_base
from genlab.metrics import inception_int8 as int8
from genlab.metrics.extractor_base import cpu_has_int8_convolutions, resolve_precision
from genlab.metrics.features import gaussian_statistics
from genlab.metrics.fid import frechet_distance
from genlab.metrics.inception import BasicConv2d, FusedConvReLU, InceptionExtractor, tf_avg_pool

from .helpers import MeanPoolExtractor, needs_fid_helper, synthetic_images

pytestmark = pytest.mark.filterwarnings("ignore:Matrix is singular:scipy.linalg.LinAlgWarning")
needs_int8 = pytest.mark.skipif(not cpu_has_int8_convolutions(), reason="no oneDNN int8 convolutions on this CPU")


def random_uint8(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
    return images.contiguous(memory_format=torch.channels_last)


def fused_unit(in_channels: int, out_channels: int, kernel: int, padding: int = 0, seed: int = 0) -> FusedConvReLU:
    """A FusedConvReLU with random weights and batch-norm statistics."""
    torch.manual_seed(seed)
    unit = BasicConv2d(in_channels, out_channels, kernel, padding=padding).requires_grad_(False)
    unit.conv.weight.data.normal_(0, 0.1)
    unit.bn.running_mean.uniform_(-0.2, 0.2)
    unit.bn.running_var.uniform_(0.5, 2.0)
    unit.bn.bias.uniform_(-0.1, 0.3)
    return FusedConvReLU(unit, prepack_for_cpu=False)


@pytest.mark.parametrize(("kernel", "stride", "padding"), [(3, 2, 0), (3, 1, 1)])
def test_uint8_max_pool_is_exact(kernel, stride, padding):
    x = random_uint8(2, 5, 17, 15)
    expected = F.max_pool2d(x.float(), kernel, stride, padding)
    result = int8.u8_max_pool2d(x, kernel, stride=stride, padding=padding)
    assert result.dtype == torch.uint8 and result.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(result.float(), expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="dilation"):
        int8.u8_max_pool2d(x, 3, dilation=2)


@needs_int8
@pytest.mark.parametrize("size", [(35, 35), (8, 8), (5, 7)])
def test_uint8_tf_average_pool_is_the_rounded_tf_pool(size):
    x = random_uint8(3, 24, *size, seed=1)
    expected = tf_avg_pool(x.float()).round()
    result = int8.U8TFAvgPool(24)(x)
    assert result.dtype == torch.uint8
    torch.testing.assert_close(result.float(), expected, rtol=0, atol=0)


@needs_int8
def test_int8_conv_folds_the_scales_and_matches_the_float_conv():
    unit = fused_unit(16, 24, 3, padding=1)
    x = torch.rand(4, 16, 12, 12).mul(3).contiguous(memory_format=torch.channels_last)
    in_scale = torch.cat([torch.full((8,), 3 / 255), torch.full((8,), 6 / 255)]).double()  # two "branches"
    levels = (x / in_scale.view(1, -1, 1, 1).float()).round().clamp(0, 255).to(torch.uint8)
    dequantized_input = levels.float() * in_scale.view(1, -1, 1, 1).float()
    expected = unit(dequantized_input)
    out_scale = torch.full((24,), float(expected.max()) * 1.2 / 255, dtype=torch.float64)
    input_mean = dequantized_input.double().mean(dim=(0, 2, 3))
    conv = int8.Int8ConvReLU(unit, in_scale, out_scale, input_mean)
    result = conv(levels.contiguous(memory_format=torch.channels_last))
    assert result.dtype == torch.uint8
    dequantized = result.float() * out_scale.view(1, -1, 1, 1).float()
    assert ((dequantized - expected).norm() / expected.norm()) < 0.03


def test_float_first_conv_rounds_to_the_nearest_level():
    unit = fused_unit(3, 8, 3)
    x = torch.rand(2, 3, 9, 9) * 2 - 1
    out_scale = torch.full((8,), 0.01, dtype=torch.float64)
    result = int8.FloatConvReLUToUint8(unit, out_scale)(x)
    levels = (unit(x) / 0.01).clamp(max=255)
    assert result.dtype == torch.uint8
    assert (result.float() - levels).abs().max() <= 0.5 + 1e-4


def test_conversion_refuses_an_unknown_graph_node():
    class Squashed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unit = fused_unit(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.unit(x))

    graph = int8.trace(Squashed())
    calibration = int8.calibrate(graph, [torch.rand(2, 3, 6, 6)])
    assert calibration["unit"]["scale"].shape == (4,) and calibration["unit"]["input_mean"].shape == (3,)
    with pytest.raises(ValueError, match="does not handle the graph node"):
        int8.quantize_network(graph, calibration)


def test_calibration_images_are_fixed_and_varied():
    first, again = int8.calibration_images(), int8.calibration_images()
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert first.shape == (int8.CALIBRATION_IMAGES, 3, int8.CALIBRATION_SIZE, int8.CALIBRATION_SIZE)
    assert first.dtype == torch.uint8 and first.float().std() > 40
    quarter = int8.CALIBRATION_IMAGES // 4
    gray = first[quarter : 2 * quarter]
    assert torch.equal(gray[:, 0], gray[:, 1]) and not torch.equal(first[0, 0], first[0, 1])


def test_precision_resolution(monkeypatch: pytest.MonkeyPatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(extractor_base, "cpu_has_bfloat16_matrix_units", lambda: False)
    assert resolve_precision(False, cpu, True) == "exact"
    assert resolve_precision(True, cuda, True) == "fp16"
    assert resolve_precision("auto", cpu, True) == "int8"
    assert resolve_precision(True, cpu, False) == "bf16"
    assert resolve_precision("BF16", cpu, True) == "bf16"
    monkeypatch.setattr(extractor_base, "cpu_has_bfloat16_matrix_units", lambda: True)
    assert resolve_precision(True, cpu, True) == "bf16"
    with pytest.raises(GenlabError, match="no int8 path"):
        resolve_precision("int8", cpu, False)
    with pytest.raises(GenlabError, match="Unknown fast precision 'int4'"):
        resolve_precision("int4", cpu, True)


def test_an_extractor_without_int8_refuses_it():
    with pytest.raises(GenlabError, match="no int8 path"):
        MeanPoolExtractor(fast="int8")


@pytest.fixture(scope="module")
def int8_extractor(inception_weights):
    if not cpu_has_int8_convolutions():
        pytest.skip("no oneDNN int8 convolutions on this CPU")
    return InceptionExtractor(inception_weights, device="cpu", fast="int8")


def features(extractor: InceptionExtractor, images: torch.Tensor, batch_size: int = 25) -> torch.Tensor:
    return torch.cat([extractor.extract(batch)[0] for batch in images.split(batch_size)])


@needs_fid_helper
def test_int8_network_tracks_the_exact_features_and_fid(int8_extractor, inception_extractor):
    assert int8_extractor.identity.endswith(f"-int8v{int8.CALIBRATION_VERSION}")
    fake, real = synthetic_images(50, seed=11, smooth=True), synthetic_images(50, seed=12, smooth=False)
    gray = synthetic_images(10, seed=13, smooth=True)[:, :1]
    for images in (fake, real, gray):
        exact, fast = features(inception_extractor, images), features(int8_extractor, images)
        assert fast.shape == exact.shape and fast.dtype == torch.float32
        assert F.cosine_similarity(exact, fast).min() > 0.97
    exact_fid = frechet_distance(*gaussian_statistics(features(inception_extractor, fake).double()),
                                 *gaussian_statistics(features(inception_extractor, real).double()))
    fast_fid = frechet_distance(*gaussian_statistics(features(int8_extractor, fake).double()),
                                *gaussian_statistics(features(int8_extractor, real).double()))
    assert abs(fast_fid - exact_fid) / exact_fid < 0.05


@needs_fid_helper
def test_int8_features_do_not_depend_on_the_batch_size(int8_extractor):
    images = synthetic_images(12, seed=14, smooth=True)
    np.testing.assert_allclose(features(int8_extractor, images, 12).numpy(),
                               features(int8_extractor, images, 5).numpy(), rtol=0, atol=1e-5)


@needs_fid_helper
@needs_int8
def test_evaluate_command_runs_int8_on_two_sources(inception_weights, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from genlab.cli import app

    fake_dir = tmp_path / "fake"
    fake_dir.mkdir()
    for index, image in enumerate(synthetic_images(6, seed=15, smooth=True)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(fake_dir / f"{index}.png")
    real = tmp_path / "real.npz"
    np.savez(real, images=synthetic_images(6, seed=16, smooth=False).permute(0, 2, 3, 1).numpy())
    out = CliRunner().invoke(app, ["evaluate", "--fake", str(fake_dir), "--real", str(real), "--metrics", "fid",
                                   "--fast-precision", "int8", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    assert "fid" in out.output
    refused = CliRunner().invoke(app, ["evaluate", "--fake", str(fake_dir), "--real", str(real),
                                       "--fast-precision", "int4", "--device", "cpu"])
    assert refused.exit_code != 0 and "Unknown fast precision 'int4'" in str(refused.exception)


@needs_fid_helper
@needs_int8
def test_calibration_is_cached_and_a_corrupt_cache_is_redone(inception_weights, isolated_cache,
                                                             monkeypatch: pytest.MonkeyPatch):
    InceptionExtractor(inception_weights, device="cpu", fast="int8")  # cached now (or already)
    path = int8._calibration_file(inception_weights.sha256)
    assert path.is_file()
    calls = []
    real_calibrate = int8.calibrate
    monkeypatch.setattr(int8, "calibrate", lambda *args: calls.append(1) or real_calibrate(*args))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        InceptionExtractor(inception_weights, device="cpu", fast="int8")
    assert calls == []
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="Ignoring unreadable int8 calibration"):
        InceptionExtractor(inception_weights, device="cpu", fast="int8")
    assert calls == [1]
    assert torch.load(path, weights_only=True)["version"] == int8.CALIBRATION_VERSION
