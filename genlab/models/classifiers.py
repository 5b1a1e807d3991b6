"""Binary classifiers for GASTeN: a small zoo (cnn, mlp, timm backbones, ensembles), saved and loaded offline.

GASTeN steers a generator towards images that a binary classifier finds ambiguous (p ≈ 0.5). Every classifier
here takes images in [-1, 1] at the data's size and returns one logit per image (class 1 = the FIRST class given
to `--classes`), and exposes its penultimate activations through `features` for the FOCD metric. `spec` is plain
data that rebuilds the architecture without any download; the saved state dict carries every weight.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.data.base import to_float
from genlab.errors import CheckpointError, GenlabError
from genlab.registry import Registry, closest
from genlab.runs.checkpoint import atomic_save

log = logging.getLogger(__name__)

CLASSIFIER_FORMAT = 1
PROB_EPS = 1e-6
ACTIVATIONS = ("relu", "leaky_relu")
ENSEMBLE_OUTPUTS = ("mean", "meta")

CLASSIFIERS: Registry[Callable[..., BinaryClassifier]] = Registry("classifier")


class BinaryClassifier(nn.Module):
    """Base class: images in [-1, 1] (N×C×H×W) -> N logits; `features` gives the N×feature_dim penultimate layer."""

    feature_dim: int
    head: nn.Module

    def __init__(self, channels: int, image_size: int) -> None:
        super().__init__()
        if channels < 1 or image_size < 1:
            raise GenlabError(f"A classifier needs positive channels and image_size, got {channels} and {image_size}.")
        self.channels = channels
        self.image_size = image_size
        self.spec: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}

    def make_spec(self, arch: str, **args: Any) -> dict[str, Any]:
        """The plain-data description `classifier_from_spec` rebuilds this architecture from."""
        return {"arch": arch, "channels": self.channels, "image_size": self.image_size, "args": args}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N×feature_dim) of images in [-1, 1]; each architecture defines its own."""
        raise NotImplementedError(f"{type(self).__name__} does not define features()")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One logit per image (N); sigmoid(logit) is the probability of the first class."""
        return self.head(self.features(x)).squeeze(1)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features and logits in one pass (what the FOCD and ACD metrics both need)."""
        features = self.features(x)
        return features, self.head(features).squeeze(1)


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    raise GenlabError(f"Unknown classifier activation {name!r}. Use one of {', '.join(ACTIVATIONS)}.")


def _positive_ints(values: Sequence[int], what: str) -> list[int]:
    out = [int(v) for v in values]
    if not out or any(v < 1 for v in out):
        raise GenlabError(f"{what} must be a non-empty list of positive integers, got {list(values)}.")
    return out


@CLASSIFIERS.register("cnn")
class CNNClassifier(BinaryClassifier):
    """GASTeN's small CNN: per block Conv3×3 → BatchNorm → ReLU → MaxPool2, then Linear → features → Linear."""

    def __init__(
        self, channels: int, image_size: int, nf: Sequence[int] = (4, 8, 16), feature_dim: int = 64,
        activation: str = "relu",
    ) -> None:
        super().__init__(channels, image_size)
        nf = _positive_ints(nf, "cnn nf (filters per block)")
        side = image_size
        for _ in nf:
            side //= 2
        if side < 1:
            raise GenlabError(
                f"cnn with {len(nf)} blocks halves {image_size}-px images {len(nf)} times, leaving nothing. "
                f"Use at most {int(math.log2(image_size))} entries in nf."
            )
        if feature_dim < 1:
            raise GenlabError(f"cnn feature_dim must be positive, got {feature_dim}.")
        layers: list[nn.Module] = []
        in_ch = channels
        for out_ch in nf:
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                       _activation(activation), nn.MaxPool2d(2)]
            in_ch = out_ch
        self.blocks = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(in_ch * side * side, feature_dim), _activation(activation))
        self.head = nn.Linear(feature_dim, 1)
        self.feature_dim = feature_dim
        self.spec = self.make_spec("cnn", nf=nf, feature_dim=feature_dim, activation=activation)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Activations after the first linear layer."""
        return self.project(self.blocks(x))


@CLASSIFIERS.register("mlp")
class MLPClassifier(BinaryClassifier):
    """Flattened pixels through fully connected hidden layers to one logit (a quick sanity-check baseline)."""

    def __init__(
        self, channels: int, image_size: int, hidden: Sequence[int] = (32,), activation: str = "relu"
    ) -> None:
        super().__init__(channels, image_size)
        hidden = _positive_ints(hidden, "mlp hidden (layer widths)")
        layers: list[nn.Module] = [nn.Flatten()]
        width = channels * image_size * image_size
        for h in hidden:
            layers += [nn.Linear(width, h), _activation(activation)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)
        self.feature_dim = width
        self.spec = self.make_spec("mlp", hidden=hidden, activation=activation)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Activations of the last hidden layer."""
        return self.body(x)


def _download_advice(model: str, err: BaseException) -> GenlabError:
    return GenlabError(
        f"Could not download the pretrained ImageNet weights of timm model {model!r} "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no details'}). Run once with network "
        f"access so timm caches them (later runs, also with HF_HUB_OFFLINE=1, use that cache), or pass "
        f"--weights PATH to a downloaded .pth/.bin/.safetensors state dict of the backbone, or train from random "
        f"initialisation with --no-pretrained."
    )


def _check_weights_file(path: Path, backbone: nn.Module, model: str) -> None:
    """Refuse a weights file that shares no tensor name with the backbone (it would load nothing, silently)."""
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(path))
    except Exception as err:
        raise GenlabError(
            f"Weights file {path} for {model!r} cannot be read ({type(err).__name__}: {err}). Give a .pth, .bin or "
            f".safetensors state dict saved from timm.create_model({model!r}), or download it again."
        ) from None
    expected = set(backbone.state_dict())
    missing = expected - set(state)
    if missing == expected:
        raise GenlabError(
            f"Weights file {path} holds no tensor of timm model {model!r} (it has e.g. {sorted(state)[:3]}, the model "
            f"expects e.g. {sorted(expected)[:3]}). Give the state dict of that very model."
        )
    if missing:
        log.warning("%s lacks %d of %d tensors of %s (e.g. %s); those keep their initial values.",
                    path, len(missing), len(expected), model, sorted(missing)[:3])


def create_backbone(
    model: str, input_size: int | None, pretrained: bool, weights: str | None = None
) -> tuple[nn.Module, bool]:
    """A timm model without its classifier (`num_classes=0`) and whether it accepted `img_size=input_size`."""
    import timm

    weights_path = Path(weights).expanduser() if weights else None
    if weights_path is not None and not weights_path.is_file():
        raise GenlabError(f"--weights {weights} does not exist. Give the path of a downloaded .pth/.bin/.safetensors "
                          f"state dict of {model!r}, or leave --weights out.")
    load = pretrained or weights_path is not None
    kwargs: dict[str, Any] = {"num_classes": 0}
    if weights_path is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": str(weights_path)}
    attempts: list[dict[str, Any]] = [{"img_size": input_size}, {}] if input_size is not None else [{}]
    for extra in attempts:
        try:
            backbone = timm.create_model(model, pretrained=load, **kwargs, **extra)
        except TypeError as err:
            if extra and "img_size" in str(err):
                continue
            raise
        except GenlabError:
            raise
        except Exception as err:
            if weights_path is not None:
                raise GenlabError(
                    f"Could not load --weights {weights_path} into timm model {model!r} ({type(err).__name__}: "
                    f"{err}). Give the state dict of that very model (.pth, .bin or .safetensors)."
                ) from None
            if load:
                raise _download_advice(model, err) from None
            raise
        if weights_path is not None:
            _check_weights_file(weights_path, backbone, model)
        return backbone, bool(extra)
    raise AssertionError("unreachable: the last attempt either returns or raises")


class TimmClassifier(BinaryClassifier):
    """A timm backbone (`num_classes=0`) plus a new linear head to one logit, with inputs adapted to the backbone.

    Images in [-1, 1] become [0, 1], grey is repeated to RGB, the side is resized (bilinear, antialiased) to
    `input_size` and the backbone's mean/std normalisation is applied. `frozen` trains only the head;
    `finetune_blocks=k` trains the last k stages (timm's coarse parameter groups) plus the head. Frozen parts
    stay in eval mode, so their BatchNorm statistics never move.
    """

    def __init__(
        self, channels: int, image_size: int, model: str = "resnet18", pretrained: bool = True,
        weights: str | None = None, input_size: int | None = None, frozen: bool = False,
        finetune_blocks: int | None = None,
    ) -> None:
        super().__init__(channels, image_size)
        if channels not in (1, 3):
            raise GenlabError(f"timm classifiers take 1- or 3-channel images, got {channels} channels.")
        if input_size is not None and input_size < 1:
            raise GenlabError(f"input_size must be a positive number of pixels, got {input_size}.")
        if finetune_blocks is not None and finetune_blocks < 0:
            raise GenlabError(f"finetune_blocks must be 0 or more (None trains everything), got {finetune_blocks}.")
        self.backbone, took_size = create_backbone(model, input_size, pretrained, weights)
        cfg = self.backbone.pretrained_cfg
        native = int(cfg.get("input_size", (3, 224, 224))[-1])
        if input_size is not None and not took_size and cfg.get("fixed_input_size") and input_size != native:
            raise GenlabError(
                f"timm model {model!r} only takes {native}-px inputs and cannot be built for input_size={input_size}. "
                f"Leave --input-size out or use {native}."
            )
        self.model_name = model
        self.input_size = int(input_size or native)
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.5, 0.5, 0.5))).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.5, 0.5, 0.5))).view(1, -1, 1, 1), persistent=False)
        self.feature_dim = int(getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features)
        self.head = nn.Linear(self.feature_dim, 1)
        self.frozen = frozen or finetune_blocks == 0
        self._set_trainable(finetune_blocks)
        self.train(self.training)
        self.spec = self.make_spec(model, pretrained=pretrained, weights=weights, input_size=self.input_size,
                                   frozen=frozen, finetune_blocks=finetune_blocks)

    def _set_trainable(self, finetune_blocks: int | None) -> None:
        if self.frozen:
            self.backbone.requires_grad_(False)
            return
        if finetune_blocks is None:
            return
        from timm.models import group_parameters

        if not hasattr(self.backbone, "group_matcher"):
            raise GenlabError(f"timm model {self.model_name!r} does not name its stages, so finetune_blocks cannot "
                              "pick the last ones. Train all of it (leave finetune_blocks out) or freeze it (0).")
        groups = group_parameters(self.backbone, self.backbone.group_matcher(coarse=True))
        ids = sorted(groups)
        trainable = {name for gid in ids[max(len(ids) - finetune_blocks, 0):] for name in groups[gid]}
        for name, param in self.backbone.named_parameters():
            param.requires_grad_(name in trainable)

    def train(self, mode: bool = True) -> TimmClassifier:
        """Switch modes, but keep every fully frozen part of the backbone in eval mode (fixed BN statistics)."""
        super().train(mode)
        if mode:
            for module in self.backbone.modules():
                params = list(module.parameters())
                if params and not any(p.requires_grad for p in params):
                    module.eval()
        return self

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images at the data's size -> the backbone's normalised RGB input at input_size."""
        x = (x + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features (its classifier input)."""
        return self.backbone(self.prepare(x))


@CLASSIFIERS.register("resnet18_frozen")
def resnet18_frozen(
    channels: int, image_size: int, pretrained: bool = True, weights: str | None = None, input_size: int | None = None
) -> TimmClassifier:
    """timm resnet18 (ImageNet weights by default), frozen in eval mode; only a new 512→1 head is learned."""
    clf = TimmClassifier(channels, image_size, "resnet18", pretrained, weights, input_size, frozen=True)
    clf.spec = clf.make_spec("resnet18_frozen", pretrained=pretrained, weights=weights, input_size=clf.input_size)
    return clf


@CLASSIFIERS.register("resnet18_ft")
def resnet18_ft(
    channels: int, image_size: int, pretrained: bool = True, weights: str | None = None, input_size: int | None = None,
    finetune_blocks: int | None = None,
) -> TimmClassifier:
    """timm resnet18 fine-tuned: all of it (finetune_blocks=None) or only its last k stages plus the head."""
    clf = TimmClassifier(channels, image_size, "resnet18", pretrained, weights, input_size,
                         finetune_blocks=finetune_blocks)
    clf.spec = clf.make_spec("resnet18_ft", pretrained=pretrained, weights=weights, input_size=clf.input_size,
                             finetune_blocks=finetune_blocks)
    return clf


class EnsembleClassifier(BinaryClassifier):
    """Several binary classifiers as one: the mean of their probabilities, or a learned logistic combiner ("meta")."""

    def __init__(self, members: Sequence[BinaryClassifier], output: str = "mean") -> None:
        if not members:
            raise GenlabError("An ensemble needs at least one member classifier.")
        if output not in ENSEMBLE_OUTPUTS:
            raise GenlabError(f"Unknown ensemble output {output!r}. Use one of {', '.join(ENSEMBLE_OUTPUTS)}.")
        first = members[0]
        for member in members[1:]:
            if (member.channels, member.image_size) != (first.channels, first.image_size):
                raise GenlabError(
                    f"Ensemble members must take the same images: one takes {first.channels}×{first.image_size}px, "
                    f"another {member.channels}×{member.image_size}px. Train them on the same data and image size."
                )
        super().__init__(first.channels, first.image_size)
        self.members = nn.ModuleList(members)
        self.output = output
        self.feature_dim = sum(m.feature_dim for m in members)
        if output == "meta":
            self.combiner = nn.Linear(len(members), 1)
            with torch.no_grad():
                self.combiner.weight.fill_(1.0 / len(members))
                self.combiner.bias.zero_()
        self.spec = self.make_spec("ensemble", output=output, members=[m.spec for m in members])

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """N×M logits, one column per member."""
        return torch.stack([m(x) for m in self.members], dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's features, concatenated."""
        return torch.cat([m.features(x) for m in self.members], dim=1)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenated member features and the ensemble logit, each member run once."""
        pairs = [m.features_and_logits(x) for m in self.members]
        features = torch.cat([f for f, _ in pairs], dim=1)
        return features, self._combine(torch.stack([logit for _, logit in pairs], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of the mean member probability, or the meta-learner's logit."""
        return self._combine(self.member_logits(x))

    def _combine(self, logits: torch.Tensor) -> torch.Tensor:
        """N×M member logits -> N ensemble logits."""
        if self.output == "meta":
            return self.combiner(logits).squeeze(1)
        prob = torch.sigmoid(logits).mean(dim=1).clamp(PROB_EPS, 1 - PROB_EPS)
        return torch.logit(prob)


@CLASSIFIERS.register("ensemble")
def ensemble(
    channels: int, image_size: int, members: Sequence[str | dict[str, Any] | BinaryClassifier] = ("cnn", "mlp"),
    output: str = "mean",
) -> EnsembleClassifier:
    """An ensemble of members given as classifiers, specs, or strings such as "cnn:4,8,16" and "mlp:32"."""
    built: list[BinaryClassifier] = []
    for member in members:
        if isinstance(member, BinaryClassifier):
            built.append(member)
        elif isinstance(member, dict):
            built.append(classifier_from_spec(member, pretrained=True))
        else:
            arch, args = parse_member(member)
            built.append(build_classifier(arch, channels, image_size, **args))
    return EnsembleClassifier(built, output)


def is_timm_model(name: str) -> bool:
    """Whether timm knows `name` (optionally with a pretrained tag, e.g. resnet18.a1_in1k)."""
    import timm

    return bool(timm.is_model(name) or ("." in name and timm.is_model(name.split(".", 1)[0])))


def zoo_names() -> list[str]:
    """The registered architectures (any timm model name works as well)."""
    return CLASSIFIERS.names()


def _timm_builder(model: str) -> Callable[..., TimmClassifier]:
    def build(
        channels: int, image_size: int, pretrained: bool = True, weights: str | None = None,
        input_size: int | None = None, frozen: bool = False, finetune_blocks: int | None = None,
    ) -> TimmClassifier:
        return TimmClassifier(channels, image_size, model, pretrained, weights, input_size, frozen, finetune_blocks)

    return build


def builder_for(arch: str) -> Callable[..., BinaryClassifier]:
    """The builder of a zoo name or timm model name; unknown names raise a GenlabError naming the nearest."""
    if arch in CLASSIFIERS:
        return CLASSIFIERS.get(arch)
    if is_timm_model(arch):
        return _timm_builder(arch)
    hint = closest(arch, zoo_names())
    did_you_mean = f" Did you mean {hint!r}?" if hint else ""
    raise GenlabError(
        f"Unknown classifier architecture {arch!r}.{did_you_mean} Use one of {', '.join(zoo_names())}, "
        f"or any timm model name (see timm.list_models())."
    )


def build_classifier(arch: str, channels: int, image_size: int, **args: Any) -> BinaryClassifier:
    """A fresh classifier of architecture `arch` for channels×image_size×image_size images in [-1, 1]."""
    builder = builder_for(arch)
    accepted = [p for p in inspect.signature(builder).parameters if p not in ("channels", "image_size")]
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise GenlabError(
            f"Classifier {arch!r} does not take {', '.join(unknown)}. It takes: {', '.join(accepted) or 'nothing'}."
        )
    return builder(channels, image_size, **args)


def classifier_from_spec(spec: dict[str, Any], pretrained: bool = False) -> BinaryClassifier:
    """Rebuild an architecture from its `spec`; by default with no pretrained download (weights come after)."""
    try:
        arch, channels, image_size = spec["arch"], int(spec["channels"]), int(spec["image_size"])
        args = dict(spec.get("args", {}))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"Classifier spec {spec!r} is incomplete ({err}); it needs arch, channels, "
                              "image_size and args. Retrain the classifier with `genlab classifier train`.") from None
    if arch == "ensemble":
        members = [classifier_from_spec(m, pretrained) for m in args.get("members", [])]
        clf: BinaryClassifier = EnsembleClassifier(members, args.get("output", "mean"))
    else:
        if not pretrained and "pretrained" in args:
            args["pretrained"], args["weights"] = False, None
        clf = build_classifier(arch, channels, image_size, **args)
    clf.spec = spec
    return clf


def _plain(value: Any, where: str) -> Any:
    """`value` as types `torch.load(weights_only=True)` accepts (Paths become strings, tuples lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, where) for k, v in value.items()}
    raise GenlabError(f"Classifier {where} can only hold plain data (numbers, strings, lists, dicts), "
                      f"not {type(value).__name__}: {value!r}.")


def save_classifier(clf: BinaryClassifier, path: str | Path, **metadata: Any) -> Path:
    """Write {"format", "spec", "state_dict", "metadata"} atomically; loadable with torch.load(weights_only=True)."""
    payload = {
        "format": CLASSIFIER_FORMAT,
        "spec": _plain(clf.spec, "spec"),
        "state_dict": {k: v.detach().cpu().clone() for k, v in clf.state_dict().items()},
        "metadata": _plain({**clf.metadata, **metadata}, "metadata"),
    }
    path = Path(path)
    atomic_save(payload, path)
    return path


def _classifier_file(source: str | Path) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "classifier.pt"
    if not path.is_file():
        raise CheckpointError(
            f"No classifier at {source}. Give a classifier run directory (made by `genlab classifier train`, holding "
            "classifier.pt), a classifier .pt file, or a comma-separated list of them; train one with "
            "`genlab classifier train --data fashion-mnist --classes 3,0`."
        )
    return path


def _load_one(source: str | Path) -> BinaryClassifier:
    path = _classifier_file(source)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for torn or foreign files
        raise CheckpointError(f"Classifier file {path} cannot be read ({type(err).__name__}: {err}). It may be "
                              "truncated or not a torch file; retrain it with `genlab classifier train`.") from None
    if not isinstance(state, dict) or state.get("format") != CLASSIFIER_FORMAT or not {"spec", "state_dict"} <= set(state):
        raise CheckpointError(f"{path} is not a genlab classifier file (format {CLASSIFIER_FORMAT} with spec and "
                              "state_dict). GAN checkpoints are not classifiers; give the classifier.pt written by "
                              "`genlab classifier train`.")
    clf = classifier_from_spec(state["spec"])
    try:
        clf.load_state_dict(state["state_dict"])
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"The weights in {path} do not fit its architecture {state['spec'].get('arch')!r} "
                              f"({first}). The file is damaged or was edited; retrain the classifier.") from None
    clf.metadata = dict(state.get("metadata") or {})
    clf.metadata.setdefault("source", str(path))
    return clf


def load_classifier(source: str | Path | Sequence[str | Path], device: str | torch.device = "cpu") -> BinaryClassifier:
    """A saved classifier (.pt file, run directory, or comma-separated list -> mean ensemble), frozen in eval mode."""
    if isinstance(source, (str, Path)):
        parts = [p.strip() for p in str(source).split(",") if p.strip()] if isinstance(source, str) else [source]
    else:
        parts = list(source)
    if not parts:
        raise CheckpointError("No classifier given. Pass a classifier run directory, a .pt file, or a comma-separated "
                              "list of them.")
    if len(parts) == 1:
        clf = _load_one(parts[0])
    else:
        members = [_load_one(p) for p in parts]
        clf = EnsembleClassifier(members, "mean")
        shared = {k: v for k, v in members[0].metadata.items()
                  if k in ("classes", "data", "class_names", "image_size", "channels")
                  and all(m.metadata.get(k) == v for m in members)}
        clf.metadata = {**shared, "members": [m.metadata for m in members], "source": ",".join(map(str, parts))}
    clf.requires_grad_(False)
    return clf.to(device).eval()


def predict_proba(clf: BinaryClassifier, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Probabilities of the first class (CPU, float) for uint8 [0, 255] or float [-1, 1] N×C×H×W images."""
    expected = (clf.channels, clf.image_size, clf.image_size)
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise GenlabError(f"The classifier takes N×{expected[0]}×{expected[1]}×{expected[2]} images, got shape "
                          f"{tuple(images.shape)}. Generate or load the data at the classifier's size and channels.")
    device = next(clf.parameters()).device
    was_training = clf.training
    clf.eval()
    out = []
    try:
        with torch.no_grad():
            for chunk in images.split(batch_size):
                x = to_float(chunk) if chunk.dtype == torch.uint8 else chunk.float()
                out.append(torch.sigmoid(clf(x.to(device)).float()).cpu())
    finally:
        clf.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def parse_int_list(text: str | Sequence[int], what: str) -> list[int]:
    """Parse "4,8,16" into [4, 8, 16]; anything else is a GenlabError naming the option."""
    if not isinstance(text, str):
        return [int(v) for v in text]
    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise GenlabError(f"{what} must be comma-separated integers such as 4,8,16, got {text!r}.") from None
    if not values:
        raise GenlabError(f"{what} must list at least one integer (e.g. 4,8,16), got {text!r}.")
    return values


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def parse_member(text: str) -> tuple[str, dict[str, Any]]:
    """An ensemble member: "cnn:4,8,16" (nf), "mlp:64" (hidden), "resnet18_ft:finetune_blocks=1,input_size=64"."""
    arch, _, rest = text.strip().partition(":")
    arch = arch.strip()
    if not arch:
        raise GenlabError(f"Ensemble member {text!r} has no architecture name; write e.g. cnn:4,8,16 or mlp:64.")
    builder_for(arch)
    rest = rest.strip()
    if not rest:
        return arch, {}
    parts = [p.strip() for p in rest.split(",") if p.strip()]
    if all("=" in p for p in parts):
        return arch, {k.strip(): _parse_value(v.strip()) for k, v in (p.split("=", 1) for p in parts)}
    shorthand = {"cnn": "nf", "mlp": "hidden"}
    if arch not in shorthand:
        raise GenlabError(f"Ensemble member {text!r}: only cnn (nf) and mlp (hidden) take a list of widths; give "
                          f"{arch} its options as key=value pairs, e.g. {arch}:input_size=64.")
    return arch, {shorthand[arch]: parse_int_list(rest, f"ensemble member {text!r}")}
