"""Experiment configuration: one pydantic schema, YAML presets and dotted `key=value` overrides.

Every knob lives in one of five groups (`model`, `training`, `data`, `eval`, `logging`) plus the
small `checkpoint` group, the GASTeN groups (`gasten`, `tune`) and a few top-level keys. Key names follow the seed notes
(`training.lr_g`, `model.latent_dim`, ...). Mistakes never surface as tracebacks: they become a
`ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from genlab.errors import ConfigError, GenlabError
from genlab.registry import closest

PRESET_DIR_NAME = "configs"
DEFAULT_PRESET = "fashion_mnist_dcgan"


class Section(BaseModel):
    """Base of every config group: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    """The networks: family, architecture and their sizes."""

    family: str = Field("gan", description="Model family: gan (vae and ddpm are planned).")
    architecture: str = Field(
        "dcgan", description="Generator/discriminator pair, e.g. dcgan (28-128 px DCGAN)."
    )
    latent_dim: int = Field(64, ge=1, description="Size of the generator's noise vector z.")
    condition: Literal["none", "projection", "acgan", "projection+acgan"] = Field(
        "none",
        description="Class conditioning: conditional BN in G plus a projection D, an AC-GAN auxiliary classifier, or both.",
    )
    embed_dim: int = Field(128, ge=1, description="Class-embedding size feeding conditional BatchNorm in G.")
    generator_base_channels: int = Field(
        64, ge=1, description="Generator width at the last (highest-resolution) block; doubles per block towards z."
    )
    discriminator_base_channels: int = Field(
        64, ge=1, description="Discriminator width at the first block; doubles per block."
    )
    max_channels: int = Field(512, ge=1, description="Cap on any block's width.")
    num_blocks: int | None = Field(
        None, ge=1, le=8, description="Up/down-sampling blocks; null picks by resolution (3 up to 32 px, 4 at 64 px, ...)."
    )
    projection: Literal["auto", "conv", "linear"] = Field(
        "auto",
        description="How G turns z into the first feature map: conv (seed 000, 28-32 px) or linear FC (seed 001, 64 px); auto picks by resolution.",
    )
    g_norm: Literal["batch", "instance", "group", "none"] = Field(
        "batch", description="Normalisation in the generator blocks."
    )
    d_norm: Literal["batch", "instance", "group", "none", "auto"] = Field(
        "auto",
        description="Normalisation in the discriminator; auto = batch, or instance (affine) for wgan-gp losses.",
    )
    leaky_slope: float = Field(0.2, ge=0.0, lt=1.0, description="LeakyReLU slope in the discriminator.")
    spectral_norm_d: bool = Field(False, description="Spectral normalisation on every discriminator layer.")
    discriminator: Literal["standard", "patch"] = Field(
        "standard", description="Whole-image discriminator, or a PatchGAN scoring overlapping patches (dcgan only)."
    )
    patch_layers: int = Field(3, ge=1, le=6, description="Stride-2 layers of the PatchGAN discriminator.")
    d_scales: int = Field(1, ge=1, le=4, description="Multi-scale discriminator: copies on 1×, 2×, 4×... down-sampled images.")
    use_self_attention: bool = Field(
        False, description="Self-attention (SAGAN) at attention_resolutions (default: 16 px up to 64 px, else size/4)."
    )
    attention_resolutions: list[int] = Field([], description="Feature-map sides that get self-attention, e.g. [16, 32].")
    use_residual: bool = Field(False, description="Residual blocks (SNGAN style): the resnet architecture.")
    upsample: Literal["nearest", "pixel_shuffle", "convtranspose"] = Field(
        "nearest", description="Up-sampling in residual generator blocks."
    )
    spectral_norm_g: bool = Field(False, description="Spectral normalisation on the generator (never its last conv).")
    final_init_scale: float = Field(
        0.1, gt=0, description="Scale of the residual generator's last-conv init: keeps tanh unsaturated (seed 004)."
    )


class TrainingConfig(Section):
    """Optimisation: budget, optimisers, losses and stabilisers."""

    batch_size: int = Field(64, ge=2, description="Images per step (drop_last: every batch is full).")
    num_epochs: int = Field(10, ge=1, description="Passes over the training set.")
    max_steps: int | None = Field(
        None, ge=1, description="Optional step budget; stops early when reached (null = num_epochs only)."
    )
    lr_g: float = Field(2e-4, gt=0, description="Generator learning rate (Adam).")
    lr_d: float = Field(2e-4, gt=0, description="Discriminator learning rate (Adam); TTUR when different from lr_g.")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1 (0.0 for WGAN-GP).")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2.")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay for both networks.")
    n_critic: int = Field(1, ge=1, description="Discriminator steps per generator step.")
    grad_accum: int = Field(
        1, ge=1, description="Split each batch into this many micro-batches, accumulating gradients (less memory)."
    )
    loss_type: str = Field("ns", description="Adversarial loss: ns, bce, ls, wgan, wgan-gp or hinge.")
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="One-sided label smoothing of real targets (bce loss only)."
    )
    gp_lambda: float = Field(10.0, ge=0, description="Gradient-penalty weight for wgan-gp.")
    aux_weight: float = Field(1.0, ge=0, description="Weight of the AC-GAN auxiliary classification loss.")
    grad_clip: float = Field(0.0, ge=0, description="Clip each network's gradient norm to this (0 = off).")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA decay of the generator weights (0 = no EMA).")
    ema_warmup: bool = Field(
        True, description="Ramp the EMA decay up as min(decay, (1+t)/(10+t)) so early averages are not stale."
    )
    lr_schedule: Literal["none", "cosine", "warmup_cosine", "step"] = Field(
        "none", description="Learning-rate schedule over the whole run."
    )
    warmup_epochs: float = Field(0.0, ge=0, description="Linear warm-up length for warmup_cosine.")
    lr_min_ratio: float = Field(0.0, ge=0, le=1, description="Cosine floor as a fraction of the base rate.")
    lr_step_epochs: float = Field(30.0, gt=0, description="Epochs between decays for the step schedule.")
    lr_gamma: float = Field(0.1, gt=0, le=1, description="Decay factor of the step schedule.")
    d_noise_std: float = Field(0.0, ge=0, description="Instance-noise std added to D's inputs (0 = off).")
    d_noise_decay_epochs: float = Field(
        0.0, ge=0, description="Instance noise decays linearly to zero over this many epochs (0 = constant)."
    )
    r1_gamma: float = Field(0.0, ge=0, description="R1 penalty weight on real images (0 = off).")
    r1_every: int = Field(16, ge=1, description="Apply R1 lazily every this many steps (scaled to match).")
    progressive: bool = Field(False, description="Progressive growing: start small, add resolutions with fade-in.")
    progressive_start: int = Field(8, ge=4, description="Side of the first progressive-growing stage.")
    progressive_epochs: float = Field(1.0, gt=0, description="Epochs spent at each progressive-growing resolution.")
    progressive_fade: float = Field(
        0.5, ge=0, le=1, description="Fraction of each new stage spent fading the new resolution in."
    )
    amp: Literal["none", "bf16", "fp16"] = Field(
        "none", description="Mixed precision: bf16 autocast (CPU or GPU) or fp16 autocast with GradScaler (CUDA)."
    )
    diffaugment: str = Field(
        "", description="DiffAugment policy for D's real and fake inputs, e.g. color,translation,cutout ('' = off)."
    )
    perceptual_weight: float = Field(0.0, ge=0, description="Weight of the VGG perceptual loss G(z) vs real batch (0 = off).")
    gram_weight: float = Field(0.0, ge=0, description="Weight of the Gram-matrix texture loss G(z) vs real batch (0 = off).")
    perceptual_network: Literal["vgg16", "vgg19"] = Field("vgg16", description="VGG used by perceptual/Gram losses.")
    perceptual_layers: list[str] = Field(
        ["relu1_2", "relu2_2", "relu3_3"], description="VGG layers compared by the perceptual and Gram losses."
    )
    vgg_weights: str | None = Field(
        "imagenet", description="VGG weights: imagenet (torchvision download, cached), a .pth path, or null (random)."
    )
    init_from: str | None = Field(
        None,
        description="Start from another run's weights: a checkpoint .pt or a run directory (its last.pt). Networks, "
        "EMA and optimiser states are loaded; the step count, data order and noise start afresh.",
    )


def _check_micro_batches(training: TrainingConfig) -> None:
    if training.batch_size // training.grad_accum < 2:
        raise ValueError(
            f"training.batch_size={training.batch_size} split into training.grad_accum={training.grad_accum} "
            "micro-batches leaves fewer than 2 images per micro-batch; lower grad_accum"
        )


class DataConfig(Section):
    """The data set and how its images are prepared."""

    name: str = Field(
        "fashion-mnist",
        description="fashion-mnist, mnist, cifar10, stl10, flowers102, celeba, imagefolder or synthetic.",
    )
    root: str | None = Field(
        None, description="Where the data lives (null: the data set's usual places, then ./data)."
    )
    download: bool = Field(False, description="Allow torchvision to download a missing data set.")
    split: str = Field("train", description="Split to train on (train, test, ...).")
    image_size: int = Field(28, ge=8, le=1024, description="Side of the square training images in pixels.")
    channels: int | None = Field(None, description="1 (grayscale) or 3 (RGB); null keeps the data set's own.")
    num_classes: int | None = Field(
        None, ge=1, description="Number of classes; null takes it from the data set (after `classes`)."
    )
    classes: list[int] | None = Field(
        None,
        description="Keep only these class ids. Two classes follow GASTeN (first -> 1, second -> 0); more are relabelled by position.",
    )
    center_crop: bool = Field(True, description="Centre-crop to a square before resizing (no distortion).")
    hflip: bool = Field(False, description="Random horizontal flips (p=0.5); shorthand for adding hflip to augment.")
    augment: str | list[str] | dict[str, Any] | None = Field(
        None,
        description="Augmentation policy: a preset (standard, faces), a list of ops (hflip, color_jitter, rotation, "
        "random_resized_crop), or a mapping {ops: [...], brightness: 0.2, degrees: 15, ...}.",
    )
    balanced: bool = Field(False, description="Class-balanced oversampling: draw each class equally often per epoch.")
    max_samples: int | None = Field(None, ge=1, description="Use only the first N images (quick runs).")
    num_samples: int = Field(2048, ge=1, description="Images generated by the synthetic data set.")
    extensions: list[str] = Field(
        [".png", ".jpg", ".jpeg", ".webp", ".bmp"], description="Image-file extensions imagefolder reads."
    )
    seed: int = Field(42, description="The run's seed: data order, initialisation, noise and augmentation.")
    num_workers: int = Field(0, ge=0, description="DataLoader workers for file-based data sets.")

    @model_validator(mode="after")
    def _check_channels(self) -> DataConfig:
        if self.channels not in (None, 1, 3):
            raise ValueError(f"data.channels must be 1, 3 or null, got {self.channels}")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ValueError(f"data.classes has repeated ids: {self.classes}")
        if self.classes is not None and len(self.classes) < 2:
            raise ValueError(f"data.classes needs at least two class ids, got {self.classes}")
        return self


class EvalConfig(Section):
    """Metrics computed during training (see `genlab evaluate` for scoring after the fact)."""

    every_epochs: int = Field(0, ge=0, description="Evaluate every N epochs (0 = never during training).")
    num_samples: int = Field(10000, ge=2, description="Generated images per evaluation.")
    metrics: list[str] = Field([], description="Metrics to compute during training, e.g. [fid, kid].")
    extractor: Literal["inception", "domain"] = Field(
        "inception", description="Features: the FID Inception network, or a classifier trained on the data set (28-64 px)."
    )
    real_split: str = Field("train", description="Split of the data set whose statistics are the reference.")
    real_samples: int | None = Field(None, ge=2, description="Use only the first N real images (null = all).")
    best_metric: str = Field("fid", description="Lower-is-better result that picks checkpoints/best.pt.")
    early_stop_patience: int = Field(
        0, ge=0, description="Stop training after this many evaluations without improving early_stop_metric (0 = off)."
    )
    early_stop_metric: str | None = Field(
        None, description="Lower-is-better result watched by early stopping (null = best_metric), e.g. fid or acd."
    )
    classifier: str | None = Field(
        None,
        description="Binary classifier for the acd, focd and hubris metrics: a classifier run directory, .pt file, "
        "or comma-separated list (an ensemble). Null uses gasten.classifier.",
    )
    histogram_bins: int = Field(20, ge=2, description="Bins of the classifier-output histogram logged with acd.")
    fast: Union[bool, Literal["auto", "bf16", "fp16", "int8"]] = Field(
        False,
        description="Faster, reduced-precision feature extraction: true/auto picks fp16 on CUDA, bf16 on CPUs with "
        "AMX, int8 on other CPUs with VNNI (Inception only); or name bf16, fp16, int8. Deviation: docs/metrics.md.",
    )


class LoggingConfig(Section):
    """What the run writes while it trains and how often."""

    log_every: int = Field(50, ge=1, description="Average and append losses to metrics.jsonl every N steps.")
    sample_every: int = Field(500, ge=1, description="Save a fixed-noise sample grid every N steps.")
    num_sample_images: int = Field(64, ge=1, description="Images in each fixed-noise grid.")
    tensorboard: bool = Field(True, description="Also write TensorBoard event files.")
    progress: bool = Field(True, description="Show a live progress bar.")


class CheckpointConfig(Section):
    """How often `last.pt` is written and how many numbered snapshots are kept."""

    every_steps: int = Field(1000, ge=1, description="Write checkpoints/last.pt every N steps (and at exit).")
    keep: int = Field(
        2, ge=-1, description="Also keep this many numbered step_XXXXXXX.pt snapshots (-1 = all, 0 = none)."
    )
    every_epochs: int = Field(
        0, ge=0, description="Also keep checkpoints/epoch_XXXX.pt every N epochs, never pruned (0 = off; GASTeN step 1 uses 1)."
    )


class GastenConfig(Section):
    """GASTeN (seed 000): train G towards a binary classifier's decision boundary in step 2."""

    classifier: str | None = Field(
        None, description="The binary classifier C: a run directory from `genlab classifier train`, a .pt file, "
        "or a comma-separated list (mean ensemble).",
    )
    ambiguity: bool = Field(
        False, description="Add weight · L_amb(C(G(z))) to the generator loss (`genlab gasten step2` turns it on).",
    )
    weight: float = Field(25.0, ge=0, description="α, the weight of the ambiguity loss in step 2.")
    loss: str = Field(
        "confusion", description="Ambiguity loss: confusion (mean |0.5 − p|), kl (KL to the uniform prediction) or "
        "gaussian (½[log σ² + (p − 0.5)²/σ²]).",
    )
    gaussian_var: float = Field(0.01, gt=0, description="σ² of the gaussian ambiguity loss.")
    step1_epoch: int | str = Field(
        "best", description="Step-1 checkpoint step 2 starts from: best (by eval.best_metric), last, or an epoch number.",
    )
    step2_epochs: int = Field(10, ge=1, description="Epochs of step 2.")
    grid_images: int = Field(64, ge=1, description="Images in the most-ambiguous grid written after step 2.")


class TuneConfig(Section):
    """Search spaces of `genlab gasten tune` (Optuna TPE; log scale for learning rates)."""

    lr_range: list[float] = Field([1e-5, 1e-3], description="Step 1: [low, high] of lr_g and lr_d (log-uniform).")
    beta1_range: list[float] = Field([0.0, 0.9], description="Step 1: [low, high] of Adam beta1.")
    beta2_range: list[float] = Field([0.9, 0.9999], description="Step 1: [low, high] of Adam beta2.")
    num_blocks: list[int] = Field([2, 3], description="Step 1: choices for model.num_blocks.")
    base_channels: list[int] = Field([16, 32, 64], description="Step 1: choices for G's and D's base filters.")
    weight_range: list[float] = Field([1.0, 30.0], description="Step 2: [low, high] of the ambiguity weight α.")
    step1_epochs: list[int] = Field([], description="Step 2: step-1 epochs to start from (empty = every saved epoch).")
    classifiers: list[str] = Field([], description="Step 2: classifiers to choose from (empty = gasten.classifier).")
    n_trials: int | None = Field(None, ge=1, description="Trials to run (null = until the timeout).")
    timeout: float | None = Field(None, gt=0, description="Seconds to search (null = until n_trials).")
    seed: int = Field(0, description="Seed of the TPE sampler (workers add their index).")
    pruner: Literal["median", "none"] = Field("median", description="Stop step-1 trials whose FID trails the median.")
    startup_trials: int = Field(5, ge=0, description="Trials before the pruner may stop any.")

    @model_validator(mode="after")
    def _check_ranges(self) -> TuneConfig:
        for name in ("lr_range", "beta1_range", "beta2_range", "weight_range"):
            value = getattr(self, name)
            if len(value) != 2 or not value[0] <= value[1]:
                raise ValueError(f"tune.{name} must be [low, high] with low <= high, got {value}")
        if self.lr_range[0] <= 0:
            raise ValueError(f"tune.lr_range must be positive (it is searched on a log scale), got {self.lr_range}")
        if not self.num_blocks or not self.base_channels:
            raise ValueError("tune.num_blocks and tune.base_channels need at least one choice each")
        return self


class Config(Section):
    """A whole experiment."""

    name: str | None = Field(None, description="Run name; the run lives in <output_dir>/<name>.")
    output_dir: str = Field("runs", description="Folder holding run directories.")
    device: str = Field("auto", description="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    gasten: GastenConfig = Field(default_factory=GastenConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)

    @model_validator(mode="after")
    def _check_device(self) -> Config:
        _check_micro_batches(self.training)
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what config.yaml and checkpoints store)."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------------------------
# Aliases: spellings used by the seed notes that map onto one canonical key.
# --------------------------------------------------------------------------------------------

_LOSS_ARG_ALIASES = {"lambda": "gp_lambda", "gp_lambda": "gp_lambda", "lambda_gp": "gp_lambda",
                     "label_smoothing": "label_smoothing", "smoothing": "label_smoothing"}


def _normalise_aliases(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Rewrite seed-note spellings (e.g. `model.loss: {name, args}`) into canonical keys."""
    model = raw.get("model")
    if isinstance(model, dict) and "loss" in model:
        loss = model.pop("loss")
        training = raw.setdefault("training", {})
        if not isinstance(training, dict):
            raise ConfigError(f"In {source}: 'training' must be a mapping, got {training!r}.")
        if isinstance(loss, str):
            loss = {"name": loss}
        if not isinstance(loss, dict) or "name" not in loss:
            raise ConfigError(
                f"In {source}: model.loss must be a loss name or a mapping like "
                f"{{name: wgan-gp, args: {{lambda: 10}}}}, got {loss!r}."
            )
        extra = set(loss) - {"name", "args"}
        if extra:
            raise ConfigError(f"In {source}: model.loss accepts only 'name' and 'args', not {sorted(extra)}.")
        training["loss_type"] = loss["name"]
        for key, value in (loss.get("args") or {}).items():
            if key not in _LOSS_ARG_ALIASES:
                hint = closest(key, list(_LOSS_ARG_ALIASES))
                raise ConfigError(
                    f"In {source}: unknown model.loss.args key {key!r}"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                    + f". Valid: {', '.join(sorted(_LOSS_ARG_ALIASES))}."
                )
            training[_LOSS_ARG_ALIASES[key]] = value
    return raw


# --------------------------------------------------------------------------------------------
# Loading, overrides and error messages.
# --------------------------------------------------------------------------------------------

_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)$")


def parse_value(text: str) -> Any:
    """Parse an override's value as YAML (so `1e-4` is a float and `[7,1]` a list); never evaluates code."""
    if _FLOAT_RE.match(text.strip()):
        return float(text)
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def _fix_yaml_floats(value: Any) -> Any:
    """YAML 1.1 reads `1e-4` as a string; turn such strings back into floats."""
    if isinstance(value, dict):
        return {k: _fix_yaml_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fix_yaml_floats(v) for v in value]
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` strings to a raw config mapping (a copy is returned)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"Override {item!r} is not of the form key=value (for example training.lr_g=1e-4). "
                "Keys are dotted paths into the config; see `genlab config show` for all of them."
            )
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"Override {item!r} has an empty key segment; write e.g. training.lr_g=1e-4.")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"Override {item!r}: {where} is a value, not a group, so {key} cannot be set.")
            node = child
        node[parts[-1]] = parse_value(text)
    return out


def _field_names(model_cls: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """Valid keys at `path` inside the schema (for "did you mean")."""
    cls: Any = model_cls
    for part in path:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        cls = annotation
    return list(cls.model_fields)


def _describe_errors(err: ValidationError, source: str) -> str:
    """Turn pydantic's errors into one readable paragraph per problem."""
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            valid = _field_names(Config, loc[:-1])
            hint = closest(str(loc[-1]), valid)
            group = ".".join(str(p) for p in loc[:-1]) or "the top level"
            lines.append(
                f"unknown key '{dotted}'"
                + (f" — did you mean '{'.'.join([*map(str, loc[:-1]), hint])}'?" if hint else ".")
                + f" Valid keys in {group}: {', '.join(valid)}."
            )
        else:
            value = e.get("input")
            shown = repr(value) if not isinstance(value, dict) else "a mapping"
            msg = e["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            lines.append(f"'{dotted}' = {shown}: {msg}.")
    body = "\n  - ".join(lines)
    return (
        f"Invalid configuration ({source}):\n  - {body}\n"
        "Fix the YAML file or the key=value override; `genlab config show` lists every key with its default."
    )


def validate(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate a raw mapping into a Config, raising ConfigError with readable messages."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a YAML mapping of groups (model:, training:, ...), got {type(raw).__name__}.")
    raw = _normalise_aliases(_fix_yaml_floats(copy.deepcopy(raw)), source)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_describe_errors(err, source)) from None
    check_names(cfg, source)
    return cfg


def check_names(cfg: Config, source: str = "config") -> None:
    """Check registry-backed names (data set, architecture, loss, family) and not-yet-supported values."""
    from genlab.data import DATASETS
    from genlab.losses import ADVERSARIAL_LOSSES
    from genlab.methods import METHODS
    from genlab.models import ARCHITECTURES

    for dotted, value, registry in (
        ("data.name", cfg.data.name, DATASETS),
        ("model.architecture", cfg.model.architecture, ARCHITECTURES),
        ("model.family", cfg.model.family, METHODS),
        ("training.loss_type", cfg.training.loss_type, ADVERSARIAL_LOSSES),
    ):
        if value not in registry:
            hint = closest(value, registry.names())
            raise ConfigError(
                f"Invalid configuration ({source}): '{dotted}' = {value!r} is not known"
                + (f" — did you mean {hint!r}?" if hint else ".")
                + f" Available: {', '.join(registry.names())}."
            )
    from genlab.data.augment import parse_diff_policy, resolve_policy
    from genlab.errors import NotSupportedYet

    try:
        resolve_policy(cfg.data.augment, cfg.data.hflip)
        parse_diff_policy(cfg.training.diffaugment)
    except GenlabError as err:
        raise ConfigError(f"Invalid configuration ({source}): {err}") from None
    if cfg.eval.metrics:
        from genlab.metrics import METRICS
        from genlab.metrics.classifier import CLASSIFIER_METRICS

        known = sorted([*METRICS.names(), *CLASSIFIER_METRICS])
        for name in cfg.eval.metrics:
            if name not in known:
                hint = closest(name, known)
                raise ConfigError(
                    f"Invalid configuration ({source}): eval.metrics has unknown metric {name!r}"
                    + (f" — did you mean {hint!r}?" if hint else ".") + f" Available: {', '.join(known)}."
                )
        wants_classifier = sorted(set(cfg.eval.metrics) & set(CLASSIFIER_METRICS))
        if wants_classifier and not (cfg.eval.classifier or cfg.gasten.classifier):
            raise ConfigError(
                f"Invalid configuration ({source}): eval.metrics asks for {', '.join(wants_classifier)}, which score "
                "samples with a binary classifier, but neither eval.classifier nor gasten.classifier is set. Train one "
                "with `genlab classifier train` and set gasten.classifier=<its run directory>."
            )
    _check_gasten(cfg.gasten, source)
    if cfg.model.architecture == "dcgan":
        unsupported = {"use_residual": cfg.model.use_residual, "condition": cfg.model.condition != "none",
                       "training.progressive with PatchGAN/multi-scale D":
                           cfg.training.progressive and (cfg.model.discriminator != "standard" or cfg.model.d_scales > 1)}
        hint = "Use model.architecture=resnet for class conditioning and residual blocks."
    else:
        unsupported = {"discriminator": cfg.model.discriminator != "standard", "d_scales": cfg.model.d_scales > 1}
        hint = "PatchGAN and multi-scale discriminators come with model.architecture=dcgan."
    for key, used in unsupported.items():
        if used:
            raise NotSupportedYet(
                f"In {source}: {key if '.' in key else 'model.' + key} is not supported yet by the "
                f"{cfg.model.architecture} architecture. {hint}"
            )
    if cfg.model.use_residual and cfg.model.architecture != "resnet":
        raise ConfigError(f"In {source}: model.use_residual=true needs model.architecture=resnet.")


def _check_gasten(gasten: GastenConfig, source: str) -> None:
    """The ambiguity loss name, the step-1 epoch choice and the classifier step 2 needs."""
    from genlab.losses import AMBIGUITY_LOSSES

    if gasten.loss not in AMBIGUITY_LOSSES:
        hint = closest(gasten.loss, AMBIGUITY_LOSSES.names())
        raise ConfigError(f"Invalid configuration ({source}): 'gasten.loss' = {gasten.loss!r} is not known"
                          + (f" — did you mean {hint!r}?" if hint else ".")
                          + f" Available: {', '.join(AMBIGUITY_LOSSES.names())}.")
    epoch = gasten.step1_epoch
    if not (epoch in ("best", "last") or (isinstance(epoch, int) and epoch >= 0) or str(epoch).isdigit()):
        raise ConfigError(f"Invalid configuration ({source}): 'gasten.step1_epoch' = {gasten.step1_epoch!r}; use best, "
                          "last or an epoch number such as 5.")
    if gasten.ambiguity and not gasten.classifier:
        raise ConfigError(f"Invalid configuration ({source}): gasten.ambiguity=true needs gasten.classifier (a run "
                          "directory from `genlab classifier train`).")


def preset_dirs() -> list[Path]:
    """Where presets are looked up: the package's own copy, then the source tree's configs/."""
    here = Path(__file__).resolve().parent
    return [d for d in (here / PRESET_DIR_NAME, here.parent / PRESET_DIR_NAME) if d.is_dir()]


def list_presets() -> list[str]:
    """Names of the shipped presets (nested ones as dir/name)."""
    names: set[str] = set()
    for d in preset_dirs():
        names.update(str(p.relative_to(d).with_suffix("")) for p in d.rglob("*.yaml"))
    return sorted(names)


def resolve_preset(name_or_path: str) -> Path:
    """A YAML path, or a preset name such as `fashion_mnist_dcgan`."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = name_or_path[:-5] if name_or_path.endswith(".yaml") else name_or_path
    for d in preset_dirs():
        candidate = d / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    presets = list_presets()
    hint = closest(stem, presets)
    raise ConfigError(
        f"No config file or preset named {name_or_path!r}"
        + (f" — did you mean {hint!r}?" if hint else ".")
        + f" Give a path to a YAML file or one of: {', '.join(presets) or '(none found)'}."
    )


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with safe_load, explaining syntax errors."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}. Fix the file and try again.") from None
    except OSError as err:
        raise ConfigError(f"Cannot read config file {path}: {err.strerror}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a mapping of groups (model:, training:, ...), not {type(data).__name__}.")
    return data


def load_config(source: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a preset or YAML file (default: the built-in defaults), apply overrides, validate."""
    raw: dict[str, Any] = {}
    label = "defaults"
    if source is not None:
        path = resolve_preset(str(source))
        raw = read_yaml(path)
        label = str(path)
    if overrides:
        raw = apply_overrides(_normalise_aliases(_fix_yaml_floats(raw), label), overrides)
        label += " + overrides"
    return validate(raw, label)


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config as YAML (every key, defaults included)."""
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def describe_schema(model_cls: type[BaseModel] = Config, values: BaseModel | None = None, prefix: str = "") -> list[str]:
    """Lines `key: value  # description` for every key, for help texts and `config show`."""
    lines: list[str] = []
    for name, field in model_cls.model_fields.items():
        annotation = field.annotation
        current = getattr(values, name) if values is not None else field.get_default(call_default_factory=True)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(f"{prefix}{name}:")
            lines.extend(describe_schema(annotation, current, prefix + "  "))
            continue
        shown = yaml.safe_dump(current, default_flow_style=True, width=10_000).strip()
        if shown.endswith("..."):
            shown = shown[:-3].strip()
        lines.append(f"{prefix}{name}: {shown}  # {field.description or ''}".rstrip())
    return lines
