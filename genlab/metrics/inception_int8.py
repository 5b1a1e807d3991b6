"""Int8 inference of the FID Inception network on CPU: genlab's fast mode where bfloat16 does not pay.

On CPUs with VNNI but without AMX (most Xeons and Cores before Sapphire Rapids-with-AMX) bfloat16
convolutions run no faster than float32, while oneDNN's int8 convolutions run about four times faster.
This module turns the fused float32 network (`inception_net.fuse_for_inference`) into an int8 one:

- The network is traced with torch.fx (each fused conv+ReLU a leaf), so every tensor in it is a graph node.
- Every conv writes uint8 activations with its own scale: its largest output on a fixed, seeded set of
  synthetic images (`calibration_images`; no data set is read) times HEADROOM, calibrated once per
  weights file and cached.
- Scales are carried per channel, so a concatenation of branches with different scales needs no
  requantization: a conv reading channels with scales s_c and writing with scale t computes
  relu(W·x + b) / t = relu((W·s/t)·q + b/t) (ReLU commutes with the positive 1/t), i.e. the scales are
  folded into its weights, which are then quantized symmetrically per output channel. Max pooling and
  TF-style average pooling act channel by channel, keep their input's scales and run on uint8 (the
  average pool as a depthwise int8 convolution).
- The first convolution (3 input channels, 0.3 % of the work, and the most sensitive to rounding) stays
  float32 on the exact preprocessed input and writes uint8; every other one is int8, with bias correction.
- The global average pool dequantizes: pool3 = mean(q) · t.

Deviation from the exact float32 path is measured by `benchmarks/fid_speed.py` and documented in
docs/metrics.md; a given machine and weights file give the same features whatever the batch size.
"""

from __future__ import annotations

import copy
import logging
import math
import pickle
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from genlab.metrics.cache import atomic_save, cache_dir
from genlab.metrics.extractor_base import cpu_has_int8_convolutions
from genlab.metrics.inception_net import FIDInceptionV3, FusedConvReLU, fid_preprocess, tf_avg_pool

log = logging.getLogger(__name__)

CALIBRATION_VERSION = 1
CALIBRATION_IMAGES = 64
CALIBRATION_SIZE = 64
CALIBRATION_SEED = 20151205
HEADROOM = 1.0
UINT8_MAX = 255
INT8_MAX = 127
CALIBRATION_BATCH = 16


def calibration_images(count: int = CALIBRATION_IMAGES, size: int = CALIBRATION_SIZE,
                       seed: int = CALIBRATION_SEED) -> torch.Tensor:
    """uint8 count×3×size×size images of four seeded kinds, so the activation ranges cover more than one look.

    Smooth colour fields with grain (photo-like), the same in gray, sharp light strokes and boxes on a dark
    ground (digits and clothes), and dark-on-light boxes with texture (documents, scans).
    """
    generator = torch.Generator().manual_seed(seed)
    quarter = math.ceil(count / 4)

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    coarse = F.interpolate(uniform(quarter, 3, 6, 6), size=(size, size), mode="bicubic", align_corners=False)
    colour = coarse + 0.08 * torch.randn(quarter, 3, size, size, generator=generator)
    gray = colour.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    strokes = torch.zeros(quarter, 3, size, size)
    boxes = torch.ones(quarter, 3, size, size)
    for index in range(quarter):
        for _ in range(4):
            x0, y0, width, height = uniform(4).tolist()
            inside = ((xs - x0).abs() < 0.05 + 0.25 * width) & ((ys - y0).abs() < 0.05 + 0.25 * height)
            strokes[index, :, inside] = 0.5 + 0.5 * uniform(1).item()
            boxes[index, :, inside] = uniform(3, 1) * 0.6
    boxes = boxes + 0.15 * uniform(quarter, 1, size, size)
    images = torch.cat([colour, gray, strokes, boxes])[:count]
    return (images.clamp(0, 1) * UINT8_MAX).round().to(torch.uint8)


class _Tracer(torch.fx.Tracer):
    """Keeps each fused conv+ReLU as one graph node."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, FusedConvReLU) or super().is_leaf_module(module, qualified_name)


def trace(network: FIDInceptionV3) -> torch.fx.GraphModule:
    """The fused network as an fx graph whose nodes are fused convs, poolings, concatenations and the mean."""
    return torch.fx.GraphModule(network, _Tracer().trace(network))


class _Calibration(torch.fx.Interpreter):
    """Runs the graph and keeps, for every fused conv, its output's per-channel maximum and input's mean."""

    def __init__(self, graph_module: torch.fx.GraphModule) -> None:
        super().__init__(graph_module)
        self.maxima: dict[str, torch.Tensor] = {}
        self.input_sums: dict[str, torch.Tensor] = {}

    def call_module(self, target, args, kwargs):  # noqa: ANN001, ANN201 (fx's signature)
        output = super().call_module(target, args, kwargs)
        channel_max = output.amax(dim=(0, 2, 3)).double()
        input_mean = args[0].double().mean(dim=(0, 2, 3))
        previous = self.maxima.get(target)
        self.maxima[target] = channel_max if previous is None else torch.maximum(previous, channel_max)
        self.input_sums[target] = input_mean + self.input_sums.get(target, 0)
        return output


def calibrate(graph_module: torch.fx.GraphModule, batches: Iterable[torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """For every fused conv: `scale`, its uint8 output scale per channel, and `input_mean`, its input's mean.

    `batches` are network inputs (float, [-1, 1]) of equal size.
    """
    interpreter = _Calibration(graph_module)
    batches = list(batches)
    with torch.inference_mode():
        for batch in batches:
            interpreter.run(batch)
    return {
        name: {"scale": output_scale(maxima), "input_mean": interpreter.input_sums[name] / len(batches)}
        for name, maxima in interpreter.maxima.items()
    }


def output_scale(channel_max: torch.Tensor) -> torch.Tensor:
    """One uint8 scale for a conv's whole output (its largest calibrated value × HEADROOM / 255), per channel.

    Per-tensor beats per-channel scales here: folded into the next weights, per-channel scales leave the
    columns of quiet channels only a few int8 levels, and quiet channels clip on other images (measured).
    """
    top = float(channel_max.max()) if float(channel_max.max()) > 0 else 1.0
    return torch.full_like(channel_max, top * HEADROOM / UINT8_MAX)


class Int8ConvReLU(nn.Module):
    """A fused conv+ReLU as oneDNN int8: uint8 in (scale 1 after folding), uint8 out, per-channel int8 weights.

    The bias absorbs the mean error of the rounded weights on the calibration inputs (bias correction,
    Nagel et al. 2019), which cut the error that weight rounding adds to pool3 features by about a third.
    """

    def __init__(self, unit: FusedConvReLU, in_scale: torch.Tensor, out_scale: torch.Tensor,
                 input_mean: torch.Tensor) -> None:
        super().__init__()
        self.stride, self.padding = list(unit.stride), list(unit.padding)
        folded = unit.weight.double() * in_scale.view(1, -1, 1, 1) / out_scale.view(-1, 1, 1, 1)
        weight_scale = (folded.abs().amax(dim=(1, 2, 3)) / INT8_MAX).clamp_min(1e-12)
        quantized = (folded / weight_scale.view(-1, 1, 1, 1)).round().clamp(-INT8_MAX, INT8_MAX)
        rounding_error = quantized * weight_scale.view(-1, 1, 1, 1) - folded
        bias = unit.bias.double() / out_scale - rounding_error.sum(dim=(2, 3)) @ (input_mean / in_scale)
        self.register_buffer("weight_scale", weight_scale.float())
        self.register_buffer("weight_zero_point", torch.zeros(len(weight_scale), dtype=torch.long))
        self.register_buffer("bias", bias.float())
        self.packed_weight = torch.ops.onednn.qconv_prepack(
            quantized.to(torch.int8), self.weight_scale, 1.0, 0, self.stride, self.padding, [1, 1], 1, None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.onednn.qconv2d_pointwise(
            x, 1.0, 0, self.packed_weight, self.weight_scale, self.weight_zero_point, self.bias,
            self.stride, self.padding, [1, 1], 1, 1.0, 0, None, "relu", [], "",
        )


class FloatConvReLUToUint8(nn.Module):
    """The first fused conv+ReLU in float32 (it reads the exact float input), writing uint8 activations.

    Its weights and bias are divided by the output scale and the bias raised by ½, so that truncating
    relu(conv) to an integer rounds it to the nearest level.
    """

    def __init__(self, unit: FusedConvReLU, out_scale: torch.Tensor) -> None:
        super().__init__()
        self.stride, self.padding = list(unit.stride), list(unit.padding)
        self.register_buffer("weight", (unit.weight.double() / out_scale.view(-1, 1, 1, 1)).float())
        self.register_buffer("bias", (unit.bias.double() / out_scale + 0.5).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = F.relu_(F.conv2d(x, self.weight, self.bias, self.stride, self.padding))
        return levels.clamp_(max=UINT8_MAX).to(torch.uint8).contiguous(memory_format=torch.channels_last)


def _window_views(x: torch.Tensor, kernel: int, stride: int) -> list[torch.Tensor]:
    """The kernel×kernel strided views whose element-wise reduction is a (valid) pooling of `x`."""
    height = (x.shape[-2] - kernel) // stride + 1
    width = (x.shape[-1] - kernel) // stride + 1
    return [
        x[..., i : i + stride * (height - 1) + 1 : stride, j : j + stride * (width - 1) + 1 : stride]
        for i in range(kernel) for j in range(kernel)
    ]


def u8_max_pool2d(x: torch.Tensor, kernel_size: int, stride: int | None = None, padding: int = 0, dilation: int = 1,
                  ceil_mode: bool = False, return_indices: bool = False) -> torch.Tensor:
    """Max pooling of a non-negative uint8 tensor (zero padding is then exact), kept channels-last.

    Takes F.max_pool2d's arguments; only the plain case (no dilation, floor mode, no indices) is supported.
    """
    if dilation != 1 or ceil_mode or return_indices:
        raise ValueError("u8_max_pool2d supports neither dilation, ceil_mode nor return_indices")
    if padding:
        x = F.pad(x, (padding,) * 4)
    views = _window_views(x, kernel_size, stride or kernel_size)
    result = views[0].contiguous(memory_format=torch.channels_last)
    for view in views[1:]:
        torch.maximum(result, view, out=result)
    return result


class U8TFAvgPool(nn.Module):
    """TF's 3×3 stride-1 average pool (real pixels only at the borders) on uint8, rounded to the nearest level.

    A depthwise oneDNN int8 convolution of ones with output scale 9 averages every window; the border
    rows and columns, whose windows hold 6 or 4 real pixels, are then recomputed from thin slabs.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("weight_scale", torch.ones(channels))
        self.register_buffer("weight_zero_point", torch.zeros(channels, dtype=torch.long))
        ones = torch.ones(channels, 1, 3, 3, dtype=torch.int8)
        self.packed_weight = torch.ops.onednn.qconv_prepack(
            ones, self.weight_scale, 1.0, 0, [1, 1], [1, 1], [1, 1], channels, None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 3:
            raise ValueError("U8TFAvgPool needs feature maps of at least 3×3")
        out = torch.ops.onednn.qconv2d_pointwise(
            x, 1.0, 0, self.packed_weight, self.weight_scale, self.weight_zero_point, None,
            [1, 1], [1, 1], [1, 1], self.channels, 9.0, 0, None, "none", [], "",
        )
        for dim in (2, 3):
            for start, edge in ((0, 0), (x.shape[dim] - 3, 2)):
                pooled = tf_avg_pool(x.narrow(dim, start, 3).float()).narrow(dim, edge, 1)
                out.narrow(dim, start + edge, 1).copy_(pooled.round_())
        return out


def dequantized_mean(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Global average pool of uint8 activations back in float32: mean over H×W times each channel's scale."""
    return x.float().mean(dim=(2, 3)) * scale


def quantize_network(graph_module: torch.fx.GraphModule,
                     calibration: dict[str, dict[str, torch.Tensor]]) -> torch.fx.GraphModule:
    """The int8 graph: the float network input -> float32 pool3 features, uint8 activations in between.

    Walks the graph once, carrying each node's per-channel scale: convs get their calibrated output scale,
    poolings keep their input's, concatenations join their inputs'. Anything else is refused.
    """
    graph_module = torch.fx.GraphModule(graph_module, copy.deepcopy(graph_module.graph))
    node_scale: dict[torch.fx.Node, torch.Tensor] = {}
    for node in list(graph_module.graph.nodes):
        if node.op in ("placeholder", "output"):
            continue
        if node.op == "call_module":
            (source,) = node.args
            unit, found = graph_module.get_submodule(node.target), calibration[node.target]
            if source.op == "placeholder":
                replacement: nn.Module = FloatConvReLUToUint8(unit, found["scale"])
            else:
                replacement = Int8ConvReLU(unit, node_scale[source], found["scale"], found["input_mean"])
            parent, _, child = node.target.rpartition(".")
            setattr(graph_module.get_submodule(parent) if parent else graph_module, child, replacement)
            node_scale[node] = found["scale"]
        elif node.op == "call_function" and node.target is F.max_pool2d:
            node.target = u8_max_pool2d
            node_scale[node] = node_scale[node.args[0]]
        elif node.op == "call_function" and node.target is tf_avg_pool:
            (source,) = node.args
            name = f"{node.name}_u8"
            graph_module.add_submodule(name, U8TFAvgPool(len(node_scale[source])))
            node.op, node.target = "call_module", name
            node_scale[node] = node_scale[source]
        elif node.op == "call_function" and node.target is torch.cat:
            node_scale[node] = torch.cat([node_scale[part] for part in node.args[0]])
        elif node.op == "call_method" and node.target == "mean":
            source = node.args[0]
            name = f"pool3_scale_{len(node_scale)}"
            graph_module.register_buffer(name, node_scale[source].float())
            with graph_module.graph.inserting_before(node):
                scale_node = graph_module.graph.get_attr(name)
                mean = graph_module.graph.call_function(dequantized_mean, (source, scale_node))
            node.replace_all_uses_with(mean)
            graph_module.graph.erase_node(node)
        else:
            raise ValueError(f"int8 conversion does not handle the graph node {node.format_node()}")
    graph_module.graph.lint()
    graph_module.recompile()
    return graph_module


def _calibration_file(weights_sha256: str) -> Path:
    return cache_dir() / "inception" / f"int8_calibration_{weights_sha256[:16]}_v{CALIBRATION_VERSION}.pt"


def cached_calibration(graph_module: torch.fx.GraphModule, weights_sha256: str) -> dict[str, dict[str, torch.Tensor]]:
    """`calibrate` on `calibration_images()`, cached per weights file (about 5 s on 2 cores otherwise)."""
    path = _calibration_file(weights_sha256)
    if path.is_file():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload.get("version") == CALIBRATION_VERSION and payload.get("weights") == weights_sha256:
                return payload["calibration"]
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as err:
            warnings.warn(f"Ignoring unreadable int8 calibration {path} ({err}); recalibrating.", stacklevel=2)
    log.info("Calibrating the int8 Inception on %d synthetic images", CALIBRATION_IMAGES)
    batches = (fid_preprocess(batch) for batch in calibration_images().split(CALIBRATION_BATCH))
    calibration = calibrate(graph_module, batches)
    try:
        atomic_save({"version": CALIBRATION_VERSION, "weights": weights_sha256, "calibration": calibration}, path)
    except OSError as err:
        warnings.warn(f"Could not cache the int8 calibration in {path} ({err}); it will be redone.", stacklevel=2)
    return calibration


def build_int8_inception(fused: FIDInceptionV3, weights_sha256: str) -> torch.fx.GraphModule:
    """Network input (N×3×299×299 in [-1, 1]) -> float32 N×2048 pool3 features, with int8 convolutions."""
    if not cpu_has_int8_convolutions():
        raise RuntimeError("int8 inference needs PyTorch's oneDNN int8 convolutions and a CPU with VNNI")
    graph_module = trace(fused)
    return quantize_network(graph_module, cached_calibration(graph_module, weights_sha256))
