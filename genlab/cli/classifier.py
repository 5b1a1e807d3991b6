"""`genlab classifier`: train, evaluate and list the binary classifiers that GASTeN steers generators with."""

from __future__ import annotations

from typing import Optional

import typer

classifier_app = typer.Typer(
    help="Binary classifiers for GASTeN: train one on two classes of a data set, evaluate it, list the zoo.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@classifier_app.command("train")
def train(
    data: str = typer.Option("fashion-mnist", "--data", help="Data set name (as in data.name)."),
    classes: str = typer.Option("3,0", "--classes", help="Two class ids; the first becomes class 1 (GASTeN)."),
    arch: str = typer.Option("cnn", "--arch", help="cnn, mlp, resnet18_frozen, resnet18_ft, ensemble, or a timm name."),
    nf: str = typer.Option("4,8,16", "--nf", help="cnn: filters per block."),
    hidden: str = typer.Option("32", "--hidden", help="mlp: hidden layer widths."),
    members: str = typer.Option("cnn:4,8,16;mlp:32", "--members", help="ensemble: ';'-separated members."),
    ensemble_output: str = typer.Option("mean", "--ensemble-output", help="ensemble: mean (of probabilities) or meta."),
    epochs: int = typer.Option(5, "--epochs", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr", min=0.0),
    pretrained: Optional[bool] = typer.Option(
        None, "--pretrained/--no-pretrained", help="ImageNet weights for timm backbones (default: yes)."
    ),
    weights: Optional[str] = typer.Option(None, "--weights", help="Local .pth/.bin/.safetensors backbone weights."),
    input_size: Optional[int] = typer.Option(None, "--input-size", min=1, help="Backbone input side (default: its own)."),
    finetune_blocks: Optional[int] = typer.Option(
        None, "--finetune-blocks", min=0, help="Train only the last k backbone stages (0 = frozen; default: all)."
    ),
    image_size: int = typer.Option(28, "--image-size", min=8, help="Side of the data's images in pixels."),
    channels: Optional[int] = typer.Option(None, "--channels", help="1 or 3 (default: the data set's own)."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=2, help="Use only the first N training images."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.0, max=0.99),
    early_stop: int = typer.Option(0, "--early-stop", min=0, help="Stop after N epochs without a better val loss (0 = off)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, mps."),
    output_dir: str = typer.Option("runs/classifiers", "--output-dir"),
    name: Optional[str] = typer.Option(None, "--name", help="Run directory name (default: data-classes-arch)."),
    root: Optional[str] = typer.Option(None, "--root", help="Where the data lives (default: its usual places)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing classifier.pt of the same name."),
) -> None:
    """Train a binary classifier on two classes and save it (classifier.pt, metrics.jsonl, config.json)."""
    from genlab.models.classifiers import parse_int_list
    from genlab.train.classifier import ClassifierTrainConfig, train_classifier

    cfg = ClassifierTrainConfig(
        data=data, root=root, classes=parse_int_list(classes, "--classes"), image_size=image_size, channels=channels,
        max_samples=max_samples, arch=arch, nf=parse_int_list(nf, "--nf"), hidden=parse_int_list(hidden, "--hidden"),
        pretrained=pretrained, weights=weights, input_size=input_size, finetune_blocks=finetune_blocks,
        members=[m.strip() for m in members.split(";") if m.strip()], ensemble_output=ensemble_output, epochs=epochs,
        batch_size=batch_size, lr=lr, val_fraction=val_fraction, early_stop_patience=early_stop, seed=seed,
        device=device, output_dir=output_dir, name=name, progress=progress, overwrite=overwrite,
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
    split: str = typer.Option("test", "--split"),
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
