"""Feature-space losses on a frozen torchvision VGG: perceptual (feature distance) and Gram (texture/style).

Both share `VGGFeatures`, which cuts VGG's `features` stack after the deepest requested layer. Layers are
named `relu<block>_<conv>` (relu1_1 ... relu5_3 for VGG16, ... relu5_4 for VGG19). Weights come from
torch.hub's cache ("imagenet", downloaded once), from a torchvision state dict file, or are random (None,
for offline tests of the code path only — random features are not a meaningful loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VGG16_Weights, VGG19_Weights
from torchvision.models.vgg import cfgs, make_layers

from genlab.errors import GenlabError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's layer tables: "D" is VGG16, "E" is VGG19 (numbers are conv widths, "M" a 2×2 max-pool).
VGG_CONFIGS = {"vgg16": "D", "vgg19": "E"}
IMAGENET_WEIGHTS = {"vgg16": VGG16_Weights.IMAGENET1K_V1, "vgg19": VGG19_Weights.IMAGENET1K_V1}
DISTANCES = {"l1": F.l1_loss, "l2": F.mse_loss}
PERCEPTUAL_LAYERS = ("relu1_2", "relu2_2", "relu3_3")
GRAM_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def _check_network(network: str) -> list[int | str]:
    if network not in VGG_CONFIGS:
        raise GenlabError(f"Unknown VGG network {network!r} for a feature loss. Use one of: {', '.join(VGG_CONFIGS)}.")
    return cfgs[VGG_CONFIGS[network]]


def vgg_layer_indices(network: str) -> dict[str, int]:
    """Map relu<block>_<conv> names to their index in torchvision's `vgg16/vgg19().features`."""
    names: dict[str, int] = {}
    index, block, conv = 0, 1, 0
    for entry in _check_network(network):
        if entry == "M":
            index, block, conv = index + 1, block + 1, 0
        else:
            conv += 1
            names[f"relu{block}_{conv}"] = index + 1  # each conv is followed by its ReLU
            index += 2
    return names


def _conv_parameter_names(network: str) -> set[str]:
    """State-dict keys (without the `features.` prefix) of the full torchvision feature stack."""
    convs = [index - 1 for index in vgg_layer_indices(network).values()]
    return {f"{i}.{kind}" for i in convs for kind in ("weight", "bias")}


def _build_feature_stack(network: str, depth: int) -> nn.Sequential:
    """torchvision's VGG feature layers 0..depth-1, built without the (large) classifier."""
    prefix: list[int | str] = []
    built = 0
    for entry in _check_network(network):
        if built >= depth:
            break
        prefix.append(entry)
        built += 1 if entry == "M" else 2
    return make_layers(prefix, batch_norm=False)[:depth]


def _imagenet_state_dict(network: str) -> dict[str, torch.Tensor]:
    weights = IMAGENET_WEIGHTS[network]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as err:  # urllib, socket, hash and unpickling failures all mean the same to the user
        raise GenlabError(
            f"The ImageNet weights of {network} for the perceptual/Gram loss are not in torch.hub's cache "
            f"({cached}) and could not be downloaded ({type(err).__name__}: {err}). The download needs network "
            f"once, after which the cached file is used offline; set TORCH_HOME to choose the cache folder. "
            f"Without network, copy {cached.name} from a machine that has it and set "
            f"training.vgg_weights=/path/to/{cached.name} (a torchvision state dict); training.vgg_weights=null "
            "runs the loss on seeded random VGG weights, which tests use but which is no ImageNet perceptual loss."
        ) from err


def _file_state_dict(network: str, path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise GenlabError(
            f"VGG weights file {path} does not exist. Pass weights='imagenet' (downloaded once into torch.hub's "
            f"cache) or the path of a torchvision {network} state dict, e.g. saved with "
            f"torch.save(torchvision.models.{network}(weights='IMAGENET1K_V1').state_dict(), path)."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises several types for foreign or corrupt files
        raise GenlabError(
            f"Could not read VGG weights {path} as a PyTorch state dict ({type(err).__name__}: {err}). "
            f"Save the weights with torch.save(model.state_dict(), path) from torchvision.models.{network}."
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GenlabError(f"VGG weights {path} is not a state dict (a dict of tensors). Save "
                          f"torchvision.models.{network}().state_dict() rather than the model object.")
    return state


def load_vgg_state_dict(network: str, weights: str | Path) -> dict[str, torch.Tensor]:
    """The feature-stack tensors of torchvision VGG weights ("imagenet" or a file), keys without `features.`."""
    _check_network(network)
    if isinstance(weights, str) and weights == "imagenet":
        source, state = f"ImageNet {network} weights", _imagenet_state_dict(network)
    else:
        path = Path(weights).expanduser()
        source, state = str(path), _file_state_dict(network, path)
    if any(key.startswith("features.") for key in state):
        state = {key.removeprefix("features."): value for key, value in state.items() if key.startswith("features.")}
    expected = _conv_parameter_names(network)
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        raise GenlabError(
            f"{source} does not hold torchvision {network} weights: missing keys {missing[:4]}"
            f"{' ...' if len(missing) > 4 else ''}, unexpected keys {unexpected[:4]}"
            f"{' ...' if len(unexpected) > 4 else ''}. Pass a state dict of torchvision.models.{network} "
            f"(not vgg*_bn or another network), or set network= to the one the file holds."
        )
    return state


class VGGFeatures(nn.Module):
    """Frozen VGG feature stack cut after the deepest requested layer; returns each layer's activations."""

    def __init__(self, network: str = "vgg16", layers: Sequence[str] = PERCEPTUAL_LAYERS,
                 weights: str | Path | None = "imagenet") -> None:
        super().__init__()
        indices = vgg_layer_indices(network)
        layers = (layers,) if isinstance(layers, str) else tuple(layers)
        unknown = [name for name in layers if name not in indices]
        if unknown or not layers:
            raise GenlabError(
                f"Unknown {network} layer name(s) {unknown} for a feature loss (got layers={list(layers)}). "
                f"Valid names: {', '.join(indices)}."
            )
        self.network = network
        self.layers = layers
        self.indices = tuple(indices[name] for name in layers)
        self.body = _build_feature_stack(network, max(self.indices) + 1)
        if weights is not None:
            state = load_vgg_state_dict(network, weights)
            kept = {key: value for key, value in state.items() if int(key.split(".")[0]) < len(self.body)}
            try:
                self.body.load_state_dict(kept)
            except RuntimeError as err:
                raise GenlabError(f"VGG weights {weights} do not fit torchvision's {network}: {err}") from err
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        """Stay in eval mode whatever the owner does: the extractor is a fixed measuring instrument."""
        return super().train(False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images (1 or 3 channels; grey is replicated) -> ImageNet-normalised RGB."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected N×1×H×W or N×3×H×W images, got shape {tuple(images.shape)}")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        images01 = (images + 1) / 2
        return (images01 - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Activations of `self.layers`, in the order they were requested."""
        wanted = set(self.indices)
        activations: dict[int, torch.Tensor] = {}
        x = self.normalize(images)
        for index, module in enumerate(self.body):
            x = module(x)
            if index in wanted:
                activations[index] = x
        return [activations[index] for index in self.indices]


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """N×C×C channel correlations of N×C×H×W features, divided by C·H·W so layers of any size compare."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def _layer_weights(layers: Sequence[str], layer_weights: Sequence[float] | None) -> tuple[float, ...]:
    if layer_weights is None:
        return tuple(1.0 / len(layers) for _ in layers)
    weights = tuple(float(w) for w in layer_weights)
    if len(weights) != len(layers):
        raise GenlabError(f"layer_weights has {len(weights)} values but layers has {len(layers)} "
                          f"({', '.join(layers)}). Give one weight per layer, or None for the plain mean.")
    return weights


class _FeatureLoss(nn.Module):
    """Shared plumbing: a VGGFeatures extractor, per-layer weights, and constant `real` features."""

    def __init__(self, network: str, layers: Sequence[str], weights: str | Path | None,
                 layer_weights: Sequence[float] | None) -> None:
        super().__init__()
        self.features = VGGFeatures(network, layers, weights)
        self.layer_weights = _layer_weights(self.features.layers, layer_weights)

    def _features_of(self, fake: torch.Tensor, real: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        fake_features = self.features(fake)
        # `real` is a target: skip building its graph unless the caller asked for gradients through it.
        with torch.set_grad_enabled(torch.is_grad_enabled() and real.requires_grad):
            real_features = self.features(real)
        return fake_features, real_features


class PerceptualLoss(_FeatureLoss):
    """Distance between VGG features of fake and real images in [-1, 1], averaged over layers (Johnson et al.)."""

    def __init__(self, network: str = "vgg16", layers: Sequence[str] = PERCEPTUAL_LAYERS,
                 weights: str | Path | None = "imagenet", distance: str = "l1",
                 layer_weights: Sequence[float] | None = None) -> None:
        if distance not in DISTANCES:
            raise GenlabError(f"Unknown perceptual distance {distance!r}. Use one of: {', '.join(DISTANCES)}.")
        super().__init__(network, layers, weights, layer_weights)
        self.distance = distance

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Σ_layers weight · mean |φ(fake) − φ(real)| (or squared for l2); weights default to 1/len(layers)."""
        if fake.shape != real.shape:
            raise ValueError(f"fake {tuple(fake.shape)} and real {tuple(real.shape)} must have the same shape")
        distance = DISTANCES[self.distance]
        fake_features, real_features = self._features_of(fake, real)
        terms = [w * distance(f, r) for w, f, r in zip(self.layer_weights, fake_features, real_features, strict=True)]
        return torch.stack(terms).sum()


class GramLoss(_FeatureLoss):
    """Texture loss: L1 between Gram matrices of VGG features of fake and real images, averaged over layers."""

    def __init__(self, network: str = "vgg16", layers: Sequence[str] = GRAM_LAYERS,
                 weights: str | Path | None = "imagenet", layer_weights: Sequence[float] | None = None) -> None:
        super().__init__(network, layers, weights, layer_weights)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Σ_layers weight · mean |G(φ(fake)) − G(φ(real))|; sizes may differ, batch sizes must match."""
        if fake.shape[0] != real.shape[0]:
            raise ValueError(f"fake and real batches must have the same size, got {fake.shape[0]} and {real.shape[0]}")
        fake_features, real_features = self._features_of(fake, real)
        terms = [w * F.l1_loss(gram_matrix(f), gram_matrix(r))
                 for w, f, r in zip(self.layer_weights, fake_features, real_features, strict=True)]
        return torch.stack(terms).sum()
