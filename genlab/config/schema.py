"""The config groups every model family shares, and the registry of family-shaped configs.

`model` and `training` hold what every family needs (family, architecture; batch, budget,
optimiser, schedule, EMA, precision, accumulation). A family adds its own keys by subclassing
`ModelConfig` and `TrainingConfig` (see `genlab.config.gan`) and registering a `Config` subclass
with `register_family`; its keys are then validated only for runs of that family, like pythae's
`<model>_config.py` files, where each model owns its settings.
"""

from __future__ import annotations

import re
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

PRESET_DIR_NAME = "configs"
DEFAULT_PRESET = "fashion_mnist_dcgan"
DEFAULT_FAMILY = "gan"


def _scalar_types(annotation: Any) -> set[Any]:
    """The types an annotation admits at its top level (a Union's members, a Literal's value types)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return set().union(*(_scalar_types(a) for a in get_args(annotation)))
    if origin is Literal:
        return {type(a) for a in get_args(annotation)}
    return {origin or annotation}


def strict_number(value: Any, annotation: Any) -> Any:
    """`value` unchanged, or ValueError when it is a bool, string or fraction given for a number field.

    Pydantic's lax mode reads `true` as 1.0 and `8.0` as 8; genlab takes numbers strictly
    (an int may still stand for a float), also inside lists such as `tune.lr_range`.
    """
    kinds = _scalar_types(annotation)
    if isinstance(value, list) and list in kinds:
        item = next((get_args(a)[0] for a in (annotation, *get_args(annotation))
                     if get_origin(a) is list and get_args(a)), None)
        for v in value:
            strict_number(v, item)
        return value
    if not kinds & {int, float} or bool in kinds or value is None:
        return value
    wanted = "a valid number" if float in kinds else "a valid integer"
    if isinstance(value, bool):
        plain = "a number" if float in kinds else "an integer"
        raise ValueError(f"a boolean is not a number; write {plain} here (true/false are not read as 1/0)")
    if isinstance(value, str) and str not in kinds:
        raise ValueError(f"expected {wanted}, got the text {value!r}")
    if isinstance(value, float) and float not in kinds:
        raise ValueError(f"expected a valid integer, got {value!r} (decimals are not truncated to integers)")
    return value


class Section(BaseModel):
    """Base of every config group: unknown keys are errors, assignments are validated, numbers are strict."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """No bool -> number, text -> number or float -> int coercion (see `strict_number`)."""
        field = cls.model_fields.get(info.field_name or "")
        return value if field is None else strict_number(value, field.annotation)


class ModelConfig(Section):
    """The networks: which family and which architecture; each family's subclass adds their sizes."""

    family: str = Field(DEFAULT_FAMILY, description="Model family: gan, vae or ddpm; each adds its own model and training keys.")
    architecture: str = Field("", description="Network architecture, from the family's own registry.")


class TrainingConfig(Section):
    """Optimisation settings every family shares: budget, optimisers, schedule, EMA, precision."""

    batch_size: int = Field(64, ge=2, description="Images per step (drop_last: every batch is full).")
    num_epochs: int = Field(10, ge=1, description="Passes over the training set.")
    max_steps: int | None = Field(
        None, ge=1, description="Optional step budget; stops early when reached (null = num_epochs only)."
    )
    lr_g: float = Field(2e-4, gt=0, description="Learning rate of the generative network (G, the VAE, the U-Net).")
    lr_d: float = Field(2e-4, gt=0, description="Discriminator learning rate, for families with one (GAN, VAE with PatchGAN); TTUR when different from lr_g.")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1 (0.0 for WGAN-GP).")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2.")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay for every network.")
    grad_accum: int = Field(
        1, ge=1, description="Split each batch into this many micro-batches, accumulating gradients (less memory)."
    )
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
    amp: Literal["none", "bf16", "fp16", "auto"] = Field(
        "none", description="Mixed precision: bf16 autocast (CPU or GPU), fp16 autocast with GradScaler (CUDA), or "
        "auto: fp16 + GradScaler on CUDA, bf16 on CPUs with bf16 hardware (AMX or AVX-512 BF16), else none (float32); "
        "the choice is logged once."
    )
    channels_last: bool = Field(
        False, description="Speed switch: keep the networks' weights and activations in channels-last (NHWC) memory "
        "order, which oneDNN and cuDNN convolutions prefer; results equal float32's within rounding.",
    )
    compile: bool = Field(
        False, description="Speed switch: torch.compile the trained networks (G and D, the VAE, the U-Net). The first "
        "steps compile (on a CPU this needs a C compiler and takes a minute or more); where compile is unavailable or "
        "fails, training goes on uncompiled after one warning. Checkpoints are the same as without it.",
    )
    fused_adam: bool = Field(
        False, description="Speed switch: Adam/AdamW's fused kernel (CPU and CUDA) instead of the multi-tensor foreach "
        "one; the same update within float rounding.",
    )
    reuse_cpu_memory: bool = Field(
        True, description="On a CPU under Linux (glibc): keep the memory a step frees for the next steps instead of "
        "handing it back to the system and faulting it in again, thousands of page faults per step (mallopt: "
        "M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 1 GiB). Measured here: 1.18x the default DCGAN's images/s "
        "(VAE 1.31x, DDPM 1.16x). It acts on the whole process for the rest of its life; the resident memory stays "
        "near its peak, as under CUDA's caching allocator. false leaves the C library's defaults (unless an earlier "
        "run in this process set them).",
    )
    sync_batchnorm: bool = Field(
        False, description="Under torchrun (several processes): BatchNorm layers normalise with the statistics of the "
        "whole global batch (SyncBatchNorm, CUDA only) instead of each process's slice; no effect in one process.",
    )
    perceptual_network: Literal["vgg16", "vgg19"] = Field("vgg16", description="VGG used by perceptual/Gram losses.")
    perceptual_layers: list[str] = Field(
        ["relu1_2", "relu2_2", "relu3_3"], description="VGG layers compared by the perceptual and Gram losses."
    )
    vgg_weights: str | None = Field(
        "imagenet", description="VGG weights: imagenet (torchvision download, cached), a .pth path, or null (random)."
    )
    nan_guard: Literal["recover", "off"] = Field(
        "recover", description="NaN/Inf losses: recover skips those steps and, after nan_patience in a row, reloads the "
        "last good checkpoint with the learning rates times nan_lr_factor; off stops the run at the next log.",
    )
    nan_patience: int = Field(3, ge=1, description="NaN guard: consecutive bad steps before it reloads the last checkpoint.")
    nan_lr_factor: float = Field(0.5, gt=0, le=1, description="NaN guard: factor on every learning rate at each recovery.")
    nan_max_recoveries: int = Field(3, ge=0, description="NaN guard: recoveries before the run stops as diverged.")
    init_from: str | None = Field(
        None,
        description="Start from another run's weights: a checkpoint .pt or a run directory (its last.pt). Networks, "
        "EMA and optimiser states are loaded; the step count, data order and noise start afresh.",
    )

    @field_validator("nan_guard", mode="before")
    @classmethod
    def _off_is_a_word(cls, value: Any) -> Any:
        """YAML reads a bare `off` as false (and `on` as true): take them as the words they were."""
        return ("recover" if value else "off") if isinstance(value, bool) else value


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
    pin_memory: Union[bool, Literal["auto"]] = Field(
        "auto", description="File-based data sets: page-locked batches for faster copies to the GPU (auto = on CUDA "
        "only; it buys nothing on a CPU).",
    )
    prefetch_factor: int = Field(
        2, ge=1, description="File-based data sets with num_workers > 0: batches each worker decodes ahead.",
    )
    persistent_workers: bool = Field(
        False, description="File-based data sets with num_workers > 0: keep the workers alive between epochs "
        "instead of starting new ones each epoch.",
    )

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
    best_metric: str = Field(
        "fid",
        description="Result that picks checkpoints/best.pt: a metric of eval.metrics (kid = kid_mean) or one of its "
        "result keys (recall); lower or higher is better as the metric says (is, precision, recall: higher).",
    )
    early_stop_patience: int = Field(
        0, ge=0, description="Stop training after this many evaluations without improving early_stop_metric (0 = off)."
    )
    early_stop_metric: str | None = Field(
        None, description="Result watched by early stopping (null = best_metric), named like best_metric, e.g. fid or acd."
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
    report: bool = Field(True, description="Write report.html (curves, grids, summary, environment) when training stops.")
    diagnostics: bool = Field(
        True, description="Live health signals: D accuracy, G/D gradient norms, EMA distance, sample saturation and "
        "diversity against real images (false: off, e.g. to measure their cost; `genlab doctor` then sees less).",
    )


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
        False, description="Add weight · L_amb(C(G(z))) to the generator loss (`genlab gasten step2` turns it on; "
        "gasten.gaussian_update=separate gives the gaussian loss a generator step of its own instead).",
    )
    weight: float = Field(25.0, ge=0, description="α, the weight of the ambiguity loss in step 2 (with "
                          "gasten.gaussian_update=separate: the separate step's gradient norm is clipped to 0.5 · α).")
    loss: str = Field(
        "confusion", description="Ambiguity loss: confusion (mean |0.5 − p|), kl (KL to the uniform prediction) or "
        "gaussian (½[log σ² + (p − 0.5)²/σ²]).",
    )
    gaussian_var: float = Field(0.01, gt=0, description="σ² of the gaussian ambiguity loss.")
    gaussian_update: Literal["added", "separate"] = Field(
        "added",
        description="gaussian loss only: add weight · L_amb to the generator loss, or (GASTeN v2's code) take a "
        "separate generator step on L_amb with its gradient norm clipped to 0.5 · weight before the adversarial step.",
    )
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
    """A whole experiment (the family-neutral base; `FAMILIES` holds the class each family validates with)."""

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

#: Family name -> the Config subclass whose `model` and `training` groups carry that family's keys.
FAMILIES: dict[str, type[Config]] = {}


def register_family(name: str, config_cls: type[Config]) -> type[Config]:
    """Make `config_cls` the schema of runs with model.family=name (a second registration is an error)."""
    if name in FAMILIES:
        raise ValueError(f"model family {name!r} is already registered")
    FAMILIES[name] = config_cls
    return config_cls


def family_of(key_group: str, key: str) -> list[str]:
    """Families whose `key_group` group (model or training) has `key`: what an out-of-family key belongs to."""
    return [name for name, cls in FAMILIES.items()
            if key in getattr(cls.model_fields.get(key_group), "annotation", Section).model_fields]
