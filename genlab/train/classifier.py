"""Training GASTeN's binary classifiers: two classes of a data set, BCE on one logit, seeded and reproducible.

Like every genlab command, a classifier run is configured by a YAML file plus `key=value` overrides
(`classifier_config`): the keys are `ClassifierTrainConfig`'s fields, and a run's own config.json is
such a file, so `--config runs/classifiers/<name>/config.json epochs=10` retrains it with more epochs.
`train_classifier` writes runs/classifiers/<name>/ with config.json, env.json, metrics.jsonl (per-epoch train
loss, validation loss and accuracy) and classifier.pt (spec + weights + metadata such as the test accuracy),
which `genlab.models.classifiers.load_classifier` reads back without any download.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from genlab.config import DataConfig, apply_overrides, read_yaml, strict_number
from genlab.data import build_dataset
from genlab.data.base import to_float
from genlab.errors import ConfigError, GenlabError
from genlab.models.classifiers import (
    ENSEMBLE_OUTPUTS,
    BinaryClassifier,
    EnsembleClassifier,
    build_classifier,
    builder_for,
    load_classifier,
    parse_int_list,
    parse_member,
    predict_proba,
    save_classifier,
)
from genlab.registry import closest
from genlab.runs.rundir import environment
from genlab.train.logging import RunLogger
from genlab.utils import select_device

LOCAL_ARCHS = ("cnn", "mlp")


@dataclass
class ClassifierTrainConfig:
    """Everything `genlab classifier train` needs; the resolved copy is saved as config.json in the run directory."""

    data: str = "fashion-mnist"
    root: str | None = None
    classes: list[int] = field(default_factory=lambda: [3, 0])
    image_size: int = 28
    channels: int | None = None
    max_samples: int | None = None
    arch: str = "cnn"
    nf: list[int] = field(default_factory=lambda: [4, 8, 16])
    hidden: list[int] = field(default_factory=lambda: [32])
    pretrained: bool | None = None
    weights: str | None = None
    input_size: int | None = None
    finetune_blocks: int | None = None
    members: list[str] = field(default_factory=lambda: ["cnn:4,8,16", "mlp:32"])
    ensemble_output: str = "mean"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    val_fraction: float = 0.1
    early_stop_patience: int = 0
    seed: int = 0
    device: str = "auto"
    output_dir: str = "runs/classifiers"
    name: str | None = None
    progress: bool = True
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse impossible settings with one clear paragraph each."""
        if len(self.classes) != 2 or self.classes[0] == self.classes[1]:
            raise GenlabError(
                f"A GASTeN classifier is binary: give exactly two different class ids, e.g. --classes 3,0 "
                f"(the first becomes class 1), got {list(self.classes)}."
            )
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}."),
            (self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}."),
            (self.lr > 0, f"lr must be positive, got {self.lr}."),
            (0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction}."),
            (self.early_stop_patience >= 0, f"early_stop_patience must be 0 (off) or more, got {self.early_stop_patience}."),
            (self.max_samples is None or self.max_samples >= 2, f"max_samples must be at least 2, got {self.max_samples}."),
            (self.channels in (None, 1, 3), f"channels must be 1, 3 or None (the data's own), got {self.channels}."),
            (self.image_size >= 8, f"image_size must be at least 8 pixels, got {self.image_size}."),
            (self.ensemble_output in ENSEMBLE_OUTPUTS,
             f"ensemble_output must be one of {', '.join(ENSEMBLE_OUTPUTS)}, got {self.ensemble_output!r}."),
        ]
        for ok, message in checks:
            if not ok:
                raise GenlabError(f"Classifier training: {message}")
        timm_only = {"weights": self.weights, "input_size": self.input_size, "finetune_blocks": self.finetune_blocks}
        given = [key for key, value in timm_only.items() if value is not None]
        if self.arch in LOCAL_ARCHS and given:
            verb = "is" if len(given) == 1 else "are"
            raise GenlabError(f"{', '.join(given)} {verb} only used by timm backbones (resnet18_frozen, resnet18_ft or a "
                              f"timm model name), not by --arch {self.arch}; leave {'it' if len(given) == 1 else 'them'} out.")
        if self.arch == "ensemble":
            if not self.members:
                raise GenlabError("--arch ensemble needs members, e.g. --members 'cnn:4,8,16;mlp:32'.")
            if self.ensemble_output == "meta" and self.val_fraction <= 0:
                raise GenlabError("--ensemble-output meta learns its combiner on the validation split; set "
                                  "--val-fraction above 0 (e.g. 0.1) or use --ensemble-output mean.")
            if self.weights is not None:
                raise GenlabError("--weights is for a single timm backbone; give ensemble members their own, e.g. "
                                  "--members 'resnet18_frozen:weights=/path/resnet18.safetensors;cnn:4,8,16'.")

    def run_name(self) -> str:
        """The run directory's name: `name`, or data-classes-arch plus the widths of cnn/mlp."""
        if self.name:
            return self.name
        first, second = self.classes
        base = f"{self.data}-{first}v{second}-{self.arch}"
        if self.arch == "cnn":
            return base + "-" + "-".join(map(str, self.nf))
        if self.arch == "mlp":
            return base + "-" + "-".join(map(str, self.hidden))
        if self.arch == "ensemble":
            return f"{base}-{self.ensemble_output}"
        return base


#: Fields that take a list of ints, also written as the flags' comma text ("4,8,16").
_INT_LISTS = ("classes", "nf", "hidden")


def classifier_config(config: str | Path | None = None, overrides: list[str] | None = None,
                      **given: Any) -> ClassifierTrainConfig:
    """Defaults < the YAML/JSON file `config` < `given` (the CLI's shortcut flags; None = not given) < overrides.

    Keys are ClassifierTrainConfig's fields (an unknown one names the nearest valid key); values are
    type-checked, so `epochs=x` is an error, not a crash mid-training, and numbers are strict as in every
    genlab config (`lr=true` is not 1.0, `epochs=2.0` is not 2).
    """
    from pydantic import TypeAdapter, ValidationError

    raw: dict[str, Any] = read_yaml(Path(config)) if config is not None else {}
    raw.update({key: value for key, value in given.items() if value is not None})
    raw = apply_overrides(raw, overrides or [])
    valid = [f.name for f in dataclasses.fields(ClassifierTrainConfig)]
    source = f"classifier config{f' {config}' if config else ''}"
    for key in raw:
        if key not in valid:
            hint = closest(str(key), valid)
            raise ConfigError(f"Invalid {source}: unknown key {key!r}" + (f" — did you mean {hint!r}?" if hint else ".")
                              + f" Valid keys: {', '.join(valid)}.")
    for key in _INT_LISTS:
        if isinstance(raw.get(key), str):
            raw[key] = parse_int_list(raw[key], key)
    if isinstance(raw.get("members"), str):
        raw["members"] = [m.strip() for m in raw["members"].split(";") if m.strip()]
    types = get_type_hints(ClassifierTrainConfig)
    problems = []
    for key, value in raw.items():
        try:
            strict_number(value, types[key])
        except ValueError as err:
            problems.append(f"{key} = {value!r}: {err}")
    if problems:
        raise ConfigError(f"Invalid {source}: {'; '.join(problems)}.")
    try:
        return TypeAdapter(ClassifierTrainConfig).validate_python(raw, strict=False)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))} = {e.get('input')!r}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"Invalid {source}: {problems}.") from None


@dataclass(frozen=True)
class ClassifierResult:
    """Where a trained classifier went and how well it does."""

    run_dir: Path
    path: Path
    test_accuracy: float
    val_accuracy: float | None
    epochs_run: int
    test_images: int


@dataclass(frozen=True)
class ClassifierEvaluation:
    """Accuracy of a classifier on one split of a two-class data set."""

    accuracy: float
    images: int
    data: str
    classes: list[int]
    split: str


def arch_args(cfg: ClassifierTrainConfig, arch: str, member_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """The builder arguments of `arch` from the config (member options override them for ensemble members)."""
    builder_for(arch)
    if arch == "cnn":
        args: dict[str, Any] = {"nf": list(cfg.nf)}
    elif arch == "mlp":
        args = {"hidden": list(cfg.hidden)}
    else:
        args = {}
    if arch not in (*LOCAL_ARCHS, "ensemble"):
        args["pretrained"] = True if cfg.pretrained is None else cfg.pretrained
        if cfg.weights is not None:
            args["weights"] = cfg.weights
        if cfg.input_size is not None:
            args["input_size"] = cfg.input_size
        if cfg.finetune_blocks is not None:
            args["finetune_blocks"] = cfg.finetune_blocks
    return {**args, **(member_args or {})}


def _dataset_tensors(cfg: ClassifierTrainConfig, split: str, max_samples: int | None) -> tuple[Any, torch.Tensor, torch.Tensor]:
    from pydantic import ValidationError

    try:
        data_cfg = DataConfig(name=cfg.data, root=cfg.root, classes=list(cfg.classes), image_size=cfg.image_size,
                              channels=cfg.channels, split=split, max_samples=max_samples)
    except ValidationError as err:
        raise GenlabError(f"Classifier data settings are invalid: {err.errors()[0]['msg']}. Check --data, "
                          "--classes, --image-size and --channels.") from None
    dataset = build_dataset(data_cfg)
    images = getattr(dataset, "images", None)
    if images is None:
        images = torch.stack([dataset.get_uint8(i) for i in range(len(dataset))])
    return dataset, images, dataset.labels.clone()


def _loss_and_accuracy(
    model: BinaryClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """Mean BCE and accuracy of `model` (in eval mode) on uint8 images."""
    probs = predict_proba(model, images, batch_size=max(batch_size, 256)).clamp(1e-7, 1 - 1e-7)
    target = labels.float()
    loss = F.binary_cross_entropy(probs.double(), target.double()).item()
    accuracy = ((probs >= 0.5).long() == labels).float().mean().item()
    return loss, accuracy


def _fit(
    model: BinaryClassifier, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor] | None,
    cfg: ClassifierTrainConfig, device: torch.device, generator: torch.Generator, logger: Any, member: str | None,
) -> int:
    """Adam on BCE-with-logits; keeps the best-validation-loss weights and stops after `patience` bad epochs."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    images, labels = train
    best_loss, best_state, bad_epochs, epoch = math.inf, None, 0, 0
    label = f"{member} " if member else ""
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total, seen = 0.0, 0
        batches = tqdm(order.split(cfg.batch_size), desc=f"{label}epoch {epoch}/{cfg.epochs}", leave=False,
                       disable=not cfg.progress)
        for index in batches:
            if len(index) < 2 < len(images):
                continue  # a lone image would break BatchNorm's batch statistics
            x = to_float(images[index]).to(device)
            y = labels[index].float().to(device)
            loss = F.binary_cross_entropy_with_logits(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
            seen += len(index)
            batches.set_postfix(loss=f"{total / seen:.4f}")
        record = {"train_loss": total / max(seen, 1)}
        if val is not None:
            val_loss, val_acc = _loss_and_accuracy(model, *val, cfg.batch_size)
            record.update(val_loss=val_loss, val_accuracy=val_acc)
        logger.log(epoch, record, **({"member": member} if member else {}))
        if val is None:
            continue
        if record["val_loss"] < best_loss:
            best_loss, bad_epochs = record["val_loss"], 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
            if cfg.early_stop_patience and bad_epochs >= cfg.early_stop_patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return epoch


def _fit_meta(
    ensemble: EnsembleClassifier, val: tuple[torch.Tensor, torch.Tensor], device: torch.device, batch_size: int
) -> None:
    """Logistic regression of the labels on the member logits (full batch L-BFGS, a little L2)."""
    images, labels = val
    ensemble.eval()
    with torch.no_grad():
        logits = torch.cat([ensemble.member_logits(to_float(chunk).to(device)) for chunk in images.split(256)])
    target = labels.float().to(device)
    combiner = ensemble.combiner
    optimizer = torch.optim.LBFGS(combiner.parameters(), lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(combiner(logits).squeeze(1), target)
        loss = loss + 1e-3 * combiner.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)


def _member_list(cfg: ClassifierTrainConfig) -> list[tuple[str, dict[str, Any]]]:
    return [parse_member(text) for text in cfg.members]


def _resolved(cfg: ClassifierTrainConfig, channels: int) -> ClassifierTrainConfig:
    pretrained = cfg.pretrained
    if pretrained is None:
        pretrained = cfg.arch not in (*LOCAL_ARCHS, "ensemble")
    return dataclasses.replace(cfg, name=cfg.run_name(), pretrained=pretrained, channels=channels)


def train_classifier(cfg: ClassifierTrainConfig) -> ClassifierResult:
    """Train, validate, test and save one binary classifier (or ensemble) under output_dir/name/classifier.pt."""
    cfg.validate()
    builder_for(cfg.arch)
    members = _member_list(cfg) if cfg.arch == "ensemble" else []
    run_dir = Path(cfg.output_dir) / cfg.run_name()
    path = run_dir / "classifier.pt"
    if path.exists() and not cfg.overwrite:
        raise GenlabError(f"{path} already exists and is never overwritten by accident. Choose another --name, or "
                          "pass --overwrite to replace it.")
    device = select_device(cfg.device)
    train_set, images, labels = _dataset_tensors(cfg, "train", cfg.max_samples)
    _, test_images, test_labels = _dataset_tensors(cfg, "test", None)
    resolved = _resolved(cfg, train_set.channels)

    generator = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(images), generator=generator)
    n_val = max(1, round(len(images) * cfg.val_fraction)) if cfg.val_fraction > 0 else 0
    if len(images) - n_val < 2:
        raise GenlabError(f"Only {len(images)} training images are left after the validation split; raise "
                          "--max-samples or lower --val-fraction.")
    val = (images[order[:n_val]], labels[order[:n_val]]) if n_val else None
    train = (images[order[n_val:]], labels[order[n_val:]])

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(resolved), indent=2) + "\n")
    (run_dir / "env.json").write_text(json.dumps(environment(device, cfg.seed), indent=2, default=str) + "\n")
    if cfg.overwrite:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    logger = RunLogger(run_dir, tensorboard=False)
    try:
        channels, size = train_set.channels, train_set.image_size
        if cfg.arch == "ensemble":
            built: list[BinaryClassifier] = []
            epochs_run = 0
            for i, (arch, member_args) in enumerate(members):
                torch.manual_seed(cfg.seed + i)
                member = build_classifier(arch, channels, size, **arch_args(cfg, arch, member_args)).to(device)
                epochs_run = max(epochs_run, _fit(member, train, val, cfg, device, generator, logger, f"{i}:{arch}"))
                built.append(member)
            model: BinaryClassifier = EnsembleClassifier(built, cfg.ensemble_output).to(device)
            if cfg.ensemble_output == "meta" and val is not None:
                _fit_meta(model, val, device, cfg.batch_size)
                meta_loss, meta_acc = _loss_and_accuracy(model, *val, cfg.batch_size)
                logger.log(epochs_run, {"val_loss": meta_loss, "val_accuracy": meta_acc}, member="meta")
        else:
            torch.manual_seed(cfg.seed)
            model = build_classifier(cfg.arch, channels, size, **arch_args(cfg, cfg.arch)).to(device)
            epochs_run = _fit(model, train, val, cfg, device, generator, logger, None)
        val_accuracy = _loss_and_accuracy(model, *val, cfg.batch_size)[1] if val is not None else None
        test_loss, test_accuracy = _loss_and_accuracy(model, test_images, test_labels, cfg.batch_size)
        logger.log(epochs_run, {"test_loss": test_loss, "test_accuracy": test_accuracy}, split="test")
    finally:
        logger.close()
    save_classifier(
        model, path, classes=list(cfg.classes), data=cfg.data, image_size=size, channels=channels,
        test_accuracy=test_accuracy, val_accuracy=val_accuracy, class_names=list(train_set.class_names),
        arch=cfg.arch, test_images=len(test_images), train_images=len(train[0]), epochs_run=epochs_run, seed=cfg.seed,
    )
    return ClassifierResult(run_dir, path, test_accuracy, val_accuracy, epochs_run, len(test_images))


def evaluate_classifier(
    source: str | Path, data: str | None = None, classes: list[int] | None = None, split: str = "test",
    root: str | None = None, max_samples: int | None = None, device: str = "auto", batch_size: int = 256,
) -> ClassifierEvaluation:
    """Accuracy of a saved classifier on a split; data and classes default to the ones it was trained on."""
    clf = load_classifier(source, select_device(device))
    meta = clf.metadata
    data = data or meta.get("data")
    classes = list(classes or meta.get("classes") or [])
    if not data or len(classes) != 2:
        raise GenlabError(f"{source} does not record its data set and two classes; pass --data and --classes "
                          "(e.g. --data fashion-mnist --classes 3,0).")
    cfg = ClassifierTrainConfig(data=data, classes=classes, root=root, image_size=clf.image_size,
                                channels=clf.channels, max_samples=max_samples)
    _, images, labels = _dataset_tensors(cfg, split, max_samples)
    accuracy = _loss_and_accuracy(clf, images, labels, batch_size)[1]
    return ClassifierEvaluation(accuracy, len(images), data, classes, split)
