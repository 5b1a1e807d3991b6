"""Training GASTeN classifiers: accuracy on real Fashion-MNIST, reproducibility, ensembles, run files and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from genlab.cli.classifier import classifier_app
from genlab.data.sources import DEBIAN_FASHION_MNIST
from genlab.errors import ConfigError, GenlabError
from genlab.models.classifiers import EnsembleClassifier, TimmClassifier, load_classifier
from genlab.train.classifier import ClassifierTrainConfig, classifier_config, evaluate_classifier, train_classifier
from genlab.train.logging import read_jsonl

needs_fashion_mnist = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed (.ci/run installs it)",
)


def synthetic(tmp_path, **overrides) -> ClassifierTrainConfig:
    """A tiny offline run: disc vs cross drawings at 16 px."""
    settings = dict(data="synthetic", classes=[0, 3], image_size=16, max_samples=400, epochs=1, nf=[4, 8],
                    hidden=[16], lr=3e-3, output_dir=str(tmp_path / "runs"), progress=False, device="cpu")
    return ClassifierTrainConfig(**{**settings, **overrides})


@pytest.mark.slow
@needs_fashion_mnist
def test_cnn_separates_fashion_mnist_dresses_from_tshirts(tmp_path):
    cfg = ClassifierTrainConfig(classes=[3, 0], arch="cnn", nf=[4, 8, 16], max_samples=3000, epochs=2, lr=2e-3,
                                batch_size=32, output_dir=str(tmp_path), progress=False, device="cpu")
    result = train_classifier(cfg)
    assert result.test_accuracy > 0.9 and result.test_images == 2000 and result.epochs_run == 2
    assert result.run_dir == tmp_path / "fashion-mnist-3v0-cnn-4-8-16"
    assert {p.name for p in result.run_dir.iterdir()} >= {"classifier.pt", "config.json", "env.json", "metrics.jsonl"}
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["classes"] == [3, 0] and config["channels"] == 1 and config["name"] == result.run_dir.name
    assert json.loads((result.run_dir / "env.json").read_text())["seed"] == 0
    records = read_jsonl(result.run_dir / "metrics.jsonl")
    epochs = [r for r in records if "train_loss" in r]
    assert [r["step"] for r in epochs] == [1, 2] and all("val_loss" in r and "val_accuracy" in r for r in epochs)
    assert records[-1]["test_accuracy"] == pytest.approx(result.test_accuracy)
    clf = load_classifier(result.run_dir)
    meta = clf.metadata
    assert meta["classes"] == [3, 0] and meta["data"] == "fashion-mnist" and meta["arch"] == "cnn"
    assert meta["class_names"] == ["T-shirt/top", "Dress"] and meta["test_accuracy"] == result.test_accuracy
    assert evaluate_classifier(result.run_dir, device="cpu").accuracy == pytest.approx(result.test_accuracy)


def test_same_seed_same_weights(tmp_path):
    first = train_classifier(synthetic(tmp_path, name="a", seed=3))
    second = train_classifier(synthetic(tmp_path, name="b", seed=3))
    other = train_classifier(synthetic(tmp_path, name="c", seed=4))
    a, b, c = (torch.load(r.path, weights_only=True)["state_dict"] for r in (first, second, other))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert first.test_accuracy == second.test_accuracy


def test_meta_ensemble_trains_members_then_its_combiner(tmp_path):
    cfg = synthetic(tmp_path, arch="ensemble", members=["cnn:4,8", "mlp:16"], ensemble_output="meta",
                    max_samples=800, val_fraction=0.25, epochs=5)
    result = train_classifier(cfg)
    assert result.run_dir.name == "synthetic-0v3-ensemble-meta"
    clf = load_classifier(result.path)
    assert isinstance(clf, EnsembleClassifier) and clf.output == "meta" and len(clf.members) == 2
    assert not torch.allclose(clf.combiner.weight, torch.full((1, 2), 0.5))  # learned, not the initial average
    records = read_jsonl(result.run_dir / "metrics.jsonl")
    assert {r.get("member") for r in records} >= {"0:cnn", "1:mlp", "meta"}
    assert result.test_accuracy > 0.9


def test_early_stopping_keeps_the_best_validation_weights(tmp_path):
    result = train_classifier(synthetic(tmp_path, epochs=6, lr=0.05, early_stop_patience=1))  # a rate that overshoots
    records = [r for r in read_jsonl(result.run_dir / "metrics.jsonl") if "val_loss" in r]
    assert result.epochs_run == len(records) < 6
    assert records[-1]["val_loss"] > records[-2]["val_loss"]
    best = min(r["val_loss"] for r in records)
    assert result.val_accuracy == pytest.approx(next(r for r in records if r["val_loss"] == best)["val_accuracy"])


@pytest.mark.slow
def test_timm_backbone_trains_offline(tmp_path):
    result = train_classifier(synthetic(tmp_path, arch="resnet18_frozen", pretrained=False, input_size=16,
                                        max_samples=64))
    clf = load_classifier(result.path)
    assert isinstance(clf, TimmClassifier) and clf.input_size == 16
    assert json.loads((result.run_dir / "config.json").read_text())["pretrained"] is False


def test_existing_runs_are_not_overwritten(tmp_path):
    train_classifier(synthetic(tmp_path, name="run", max_samples=40))
    with pytest.raises(GenlabError, match="another --name.*--overwrite"):
        train_classifier(synthetic(tmp_path, name="run", max_samples=40))
    train_classifier(synthetic(tmp_path, name="run", max_samples=40, overwrite=True))


@pytest.mark.parametrize("classes", [[3], [3, 0, 1], [3, 3]])
def test_classes_must_be_exactly_two(classes):
    with pytest.raises(GenlabError, match="exactly two different class ids"):
        ClassifierTrainConfig(classes=classes)


def test_impossible_settings_are_refused():
    with pytest.raises(GenlabError, match="weights is only used by timm backbones"):
        ClassifierTrainConfig(arch="cnn", weights="resnet18.pth")
    with pytest.raises(GenlabError, match="--val-fraction above 0"):
        ClassifierTrainConfig(arch="ensemble", ensemble_output="meta", val_fraction=0)
    with pytest.raises(GenlabError, match="Did you mean 'resnet18_ft'"):
        train_classifier(ClassifierTrainConfig(arch="resnet18_fd"))


def test_cli_train_evaluate_and_list(tmp_path):
    runner = CliRunner()
    out = tmp_path / "runs"
    args = ["train", "--data", "synthetic", "--classes", "0,3", "--image-size", "16", "--nf", "4,8",
            "--max-samples", "300", "--epochs", "1", "--no-progress", "--device", "cpu", "--output-dir", str(out)]
    result = runner.invoke(classifier_app, args)
    assert result.exit_code == 0, result.output
    run = out / "synthetic-0v3-cnn-4-8"
    assert "Test accuracy 0." in result.output and f"Saved {run / 'classifier.pt'}" in result.output
    assert "(0 vs 3, " in result.output
    assert {"classifier.pt", "config.json", "env.json", "metrics.jsonl"} <= {p.name for p in run.iterdir()}
    evaluated = runner.invoke(classifier_app, ["evaluate", str(run), "--device", "cpu", "--max-samples", "100"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "Accuracy 0." in evaluated.output and "synthetic test, 100 images" in evaluated.output
    listing = runner.invoke(classifier_app, ["list"])
    assert all(name in listing.output for name in ("cnn", "mlp", "resnet18_frozen", "resnet18_ft", "ensemble", "timm"))


def test_cli_parse_errors_are_genlab_errors(tmp_path):
    result = CliRunner().invoke(classifier_app, ["train", "--nf", "4,x", "--output-dir", str(tmp_path)])
    assert isinstance(result.exception, GenlabError) and "--nf must be comma-separated integers" in str(result.exception)
    result = CliRunner().invoke(classifier_app, ["train", "--classes", "3", "--output-dir", str(tmp_path)])
    assert isinstance(result.exception, GenlabError) and "exactly two" in str(result.exception)


def test_cli_train_reads_a_config_with_overrides_and_flags(tmp_path):
    """`classifier train --config FILE key=value --flag`: file < flags < overrides, like every other command."""
    config = tmp_path / "shapes.yaml"
    config.write_text("data: synthetic\nclasses: [0, 3]\nimage_size: 16\nnf: [4, 8]\nmax_samples: 300\n"
                      "epochs: 3\nprogress: false\ndevice: cpu\nname: from-yaml\n")
    out = tmp_path / "runs"
    runner = CliRunner()
    result = runner.invoke(classifier_app, ["train", "--config", str(config), "epochs=1", "nf=[4, 4]",
                                            "--output-dir", str(out), "--epochs", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "from-yaml" / "config.json").read_text())
    assert (saved["epochs"], saved["nf"], saved["seed"], saved["image_size"]) == (1, [4, 4], 3, 16)
    again = runner.invoke(classifier_app, ["train", "--config", str(out / "from-yaml" / "config.json"),
                                           "name=again"])  # a run's config.json is a config too
    assert again.exit_code == 0, again.output
    assert (out / "again" / "classifier.pt").is_file()
    bad = runner.invoke(classifier_app, ["train", "--config", str(config), "epoch=1"])
    assert isinstance(bad.exception, GenlabError) and "did you mean 'epochs'" in str(bad.exception)
    bad = runner.invoke(classifier_app, ["train", "--config", str(config), "epochs=x"])
    assert isinstance(bad.exception, GenlabError) and "epochs = 'x'" in str(bad.exception)


def test_classifier_config_numbers_are_strict_as_in_every_config(tmp_path):
    """`lr=true`, `epochs=2.0` and `seed='3'` are refused (issue #16 item 9); YAML's `1e-3` is still a number."""
    for override, words in (("lr=true", "a boolean is not a number"), ("epochs=2.0", "decimals are not truncated"),
                            ("epochs=true", "a boolean is not a number"), ("seed='3'", "got the text '3'"),
                            ("nf=[4, 8.0]", "decimals are not truncated")):
        with pytest.raises(ConfigError, match="Invalid classifier config") as err:
            classifier_config(None, [override])
        assert override.split("=")[0] in str(err.value) and words in str(err.value), str(err.value)
    config = tmp_path / "c.yaml"
    config.write_text("lr: 1e-3\nepochs: 2\nval_fraction: 0\n")
    cfg = classifier_config(config, ["max_samples=300"], epochs=3)
    assert (cfg.lr, cfg.epochs, cfg.val_fraction, cfg.max_samples) == (1e-3, 3, 0.0, 300)
