"""`genlab classifier`: train, evaluate and list the binary classifiers that GASTeN steers generators with."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

classifier_app = typer.Typer(
    help="Binary classifiers for GASTeN: train one on two classes of a data set, evaluate it, list the zoo.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@classifier_app.command("train")
def train(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="key=value overrides of the config's keys, e.g. epochs=10 nf=[8,16] (values are YAML)."),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="YAML (or JSON) file with ClassifierTrainConfig keys; a classifier run's "
        "config.json works. The flags below are shortcuts for its keys; key=value overrides win over both."),
    data: Optional[str] = typer.Option(None, "--data", help="Data set name, as in data.name (key data; default fashion-mnist)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Two class ids; the first becomes class 1 (GASTeN; default 3,0)."),
    arch: Optional[str] = typer.Option(
        None, "--arch", help="cnn (default), mlp, resnet18_frozen, resnet18_ft, ensemble, or a timm name."),
    nf: Optional[str] = typer.Option(None, "--nf", help="cnn: filters per block (default 4,8,16)."),
    hidden: Optional[str] = typer.Option(None, "--hidden", help="mlp: hidden layer widths (default 32)."),
    members: Optional[str] = typer.Option(None, "--members", help="ensemble: ';'-separated members (default 'cnn:4,8,16;mlp:32')."),
    ensemble_output: Optional[str] = typer.Option(None, "--ensemble-output", help="ensemble: mean (of probabilities; default) or meta."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Training epochs (default 5)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Default 64."),
    lr: Optional[float] = typer.Option(None, "--lr", min=0.0, help="Adam learning rate (default 1e-3)."),
    pretrained: Optional[bool] = typer.Option(
        None, "--pretrained/--no-pretrained", help="ImageNet weights for timm backbones (default: yes)."
    ),
    weights: Optional[str] = typer.Option(None, "--weights", help="Local .pth/.bin/.safetensors backbone weights."),
    input_size: Optional[int] = typer.Option(None, "--input-size", min=1, help="Backbone input side (default: its own)."),
    finetune_blocks: Optional[int] = typer.Option(
        None, "--finetune-blocks", min=0, help="Train only the last k backbone stages (0 = frozen; default: all)."
    ),
    image_size: Optional[int] = typer.Option(None, "--image-size", min=8, help="Side of the data's images in pixels (default 28)."),
    channels: Optional[int] = typer.Option(None, "--channels", help="1 or 3 (default: the data set's own)."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=2, help="Use only the first N training images."),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", min=0.0, max=0.99, help="Default 0.1."),
    early_stop: Optional[int] = typer.Option(
        None, "--early-stop", min=0, help="Stop after N epochs without a better val loss (key early_stop_patience; 0 = off)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Default 0."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (default), cpu, cuda, mps."),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="Default runs/classifiers."),
    name: Optional[str] = typer.Option(None, "--name", help="Run directory name (default: data-classes-arch)."),
    root: Optional[str] = typer.Option(None, "--root", help="Where the data lives (default: its usual places)."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: on)."),
    overwrite: Optional[bool] = typer.Option(
        None, "--overwrite/--no-overwrite", help="Replace an existing classifier.pt of the same name (default: no)."),
) -> None:
    """Train a binary classifier on two classes and save it (classifier.pt, metrics.jsonl, config.json)."""
    from genlab.models.classifiers import parse_int_list
    from genlab.train.classifier import classifier_config, train_classifier

    def ints(text: Optional[str], flag: str) -> Optional[list[int]]:
        return None if text is None else parse_int_list(text, flag)

    cfg = classifier_config(
        config, overrides or [], data=data, root=root, classes=ints(classes, "--classes"), image_size=image_size,
        channels=channels, max_samples=max_samples, arch=arch, nf=ints(nf, "--nf"), hidden=ints(hidden, "--hidden"),
        pretrained=pretrained, weights=weights,
        input_size=input_size, finetune_blocks=finetune_blocks, members=members, ensemble_output=ensemble_output,
        epochs=epochs, batch_size=batch_size, lr=lr, val_fraction=val_fraction, early_stop_patience=early_stop,
        seed=seed, device=device, output_dir=output_dir, name=name, progress=progress, overwrite=overwrite,
    )
    result = train_classifier(cfg)
    first, second = cfg.classes
    val = f", val {result.val_accuracy:.4f}" if result.val_accuracy is not None else ""
    typer.echo(f"Test accuracy {result.test_accuracy:.4f} ({first} vs {second}, {result.test_images} images{val}; "
               f"{result.epochs_run} epochs). Saved {result.path}")


@classifier_app.command("evaluate")
def evaluate(
    source: str = typer.Argument(..., help="Classifier run directory, .pt file, or comma-separated list (ensemble)."),
    data: Optional[str] = typer.Option(None, "--data", help="Data set (default: the one it was trained on)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Two class ids (default: its own)."),
    split: str = typer.Option("test", "--split", help="Split to score (default test: held-out images, as training "
                              "reports its test accuracy; prepare data fetches train and test)."),
    root: Optional[str] = typer.Option(None, "--root", help="Where the data lives."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=2, help="Use only the first N images."),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps."),
) -> None:
    """Accuracy of a saved classifier on a split of its two classes."""
    from genlab.models.classifiers import parse_int_list
    from genlab.train.classifier import evaluate_classifier

    result = evaluate_classifier(
        source, data=data, classes=parse_int_list(classes, "--classes") if classes else None, split=split, root=root,
        max_samples=max_samples, device=device, batch_size=batch_size,
    )
    first, second = result.classes
    typer.echo(f"Accuracy {result.accuracy:.4f} ({first} vs {second}, {result.data} {result.split}, "
               f"{result.images} images)")


@classifier_app.command("list")
def list_archs() -> None:
    """The classifier zoo; any timm model name works as --arch too."""
    from genlab.models.classifiers import CLASSIFIERS

    names = CLASSIFIERS.names()
    width = max(len(n) for n in names)
    for arch in names:
        doc = (CLASSIFIERS.get(arch).__doc__ or "").strip().splitlines()
        typer.echo(f"{arch:<{width}}  {doc[0] if doc else ''}")
    typer.echo("Any timm model name works as --arch too (timm.list_models(), e.g. resnet10t, convnext_tiny, "
               "vit_small_patch32_224): a new 1-logit head on its pooled features.")
