"""LPIPS diversity: the mean pairwise perceptual distance within a set of generated images.

The distance is the `lpips` package's (Zhang et al. 2018, v0.1): its calibrated linear heads ship with
the package, but the backbone (AlexNet or VGG-16, ImageNet weights) comes from torchvision's
download. genlab never downloads behind a user's back: the backbone is read from torchvision's cache
(`torch.hub.get_dir()/checkpoints`), from a path given as `weights`, or downloaded only with
`download=True`. `weights="random"` builds the backbone from a seeded random initialisation so the
code runs offline (tests); such numbers are labelled and are not LPIPS.

Images smaller than 64 px are resized to 64 px (bilinear) first: AlexNet's pooling stack needs at
least ~32 px and LPIPS was calibrated on 64 px patches; grayscale is repeated to three channels.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from genlab.errors import GenlabError
from genlab.runs.checkpoint import safe_torch_load

#: torchvision's ImageNet checkpoints of the LPIPS backbones (file names in torch.hub's cache).
BACKBONES = {"alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
             "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth"}
MIN_SIZE = 64
RANDOM = "random"


class LPIPSWeightsMissing(GenlabError):
    """The LPIPS backbone's ImageNet weights are neither cached nor given."""


def backbone_file(net: str) -> Path:
    """Where torchvision caches the backbone's ImageNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONES[net].rsplit("/", 1)[1]


def _backbone_state(net: str, weights: str | Path | None, download: bool) -> dict[str, torch.Tensor]:
    path = Path(weights) if weights is not None else backbone_file(net)
    if weights is None and not path.is_file() and download:
        return torch.hub.load_state_dict_from_url(BACKBONES[net], progress=True, weights_only=True)
    if not path.is_file():
        given = f"--lpips-weights {weights} does not exist" if weights is not None else (
            f"the {net} backbone's ImageNet weights are not in torchvision's cache ({path})")
        raise LPIPSWeightsMissing(
            f"LPIPS diversity needs an ImageNet {'AlexNet' if net == 'alex' else 'VGG-16'} backbone, but {given}. "
            f"Download it once where you have a network (`python -c \"import torch; "
            f"torch.hub.load_state_dict_from_url('{BACKBONES[net]}')\"`, or pass --download), or give the .pth "
            "file with --lpips-weights PATH; leave lpips out of --metrics to skip it. (`--lpips-weights random` "
            "runs the code with a random backbone, for tests only: its numbers are not LPIPS.)")
    return safe_torch_load(path, what="LPIPS backbone weights")


def build_lpips(net: str = "alex", weights: str | Path | None = None, *, download: bool = False,
                device: torch.device | str = "cpu", seed: int = 0) -> torch.nn.Module:
    """The `lpips.LPIPS` module with its shipped linear heads and the backbone from `weights` (see module doc)."""
    if net not in BACKBONES:
        raise GenlabError(f"LPIPS backbone {net!r} is not supported; use one of {', '.join(BACKBONES)}.")
    try:
        import lpips
    except ImportError:
        raise GenlabError("LPIPS diversity needs the `lpips` package: pip install lpips") from None
    random_backbone = str(weights) == RANDOM
    state = None if random_backbone else _backbone_state(net, weights, download)
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    if state is not None:
        # The package splits torchvision's `features` into slices that keep their indices: features.3 -> sliceK.3.
        own = model.net.state_dict()
        by_index = {name.split(".", 1)[1]: name for name in own}
        mapped = {by_index[key[len("features."):]]: value for key, value in state.items()
                  if key.startswith("features.") and key[len("features."):] in by_index}
        if len(mapped) != len(own):
            raise GenlabError(f"The LPIPS backbone weights {weights or backbone_file(net)} do not fit torchvision's "
                              f"{net} features ({len(mapped)} of {len(own)} tensors found); give the ImageNet "
                              f"{'alexnet' if net == 'alex' else 'vgg16'} .pth file.")
        model.net.load_state_dict(mapped)
    model.backbone = "random (seeded, not LPIPS)" if random_backbone else f"{net} ImageNet"  # type: ignore[attr-defined]
    return model.to(device).eval()


def _prepare(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images as LPIPS wants them: three channels, at least MIN_SIZE px."""
    images = images.float()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if min(images.shape[-2:]) < MIN_SIZE:
        scale = MIN_SIZE / min(images.shape[-2:])
        size = (round(images.shape[-2] * scale), round(images.shape[-1] * scale))
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    return images


@torch.no_grad()
def lpips_diversity(images: torch.Tensor, model: torch.nn.Module, batch_size: int = 128) -> float:
    """Mean LPIPS distance over all pairs of `images` (N×C×H×W in [-1, 1]); N ≥ 2."""
    if len(images) < 2:
        raise GenlabError(f"LPIPS diversity needs at least 2 images, got {len(images)}.")
    device = next(model.parameters()).device
    images = _prepare(images)
    pairs = list(itertools.combinations(range(len(images)), 2))
    total = 0.0
    for start in range(0, len(pairs), batch_size):
        chunk = torch.tensor(pairs[start : start + batch_size])
        a, b = images[chunk[:, 0]].to(device), images[chunk[:, 1]].to(device)
        total += float(model(a, b).sum())
    return total / len(pairs)
