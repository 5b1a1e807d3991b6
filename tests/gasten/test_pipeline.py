"""GASTeN end to end on real Fashion-MNIST 3-vs-0: step 2 makes the classifier less sure, FID stays finite."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from genlab.cli import app
from genlab.data.sources import DEBIAN_FASHION_MNIST
from genlab.errors import CheckpointError, ConfigError, GenlabError
from genlab.gasten import run_step1, run_step2, step1_checkpoint, step2_config
from genlab.gasten.pipeline import saved_epochs, table
from genlab.runs.checkpoint import load_checkpoint
from genlab.train import load_experiment
from genlab.train.classifier import ClassifierTrainConfig, train_classifier
from genlab.train.logging import read_jsonl

pytestmark = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed (.ci/run installs it)",
)

SMALL = [
    "training.num_epochs=2", "training.batch_size=32", "data.max_samples=1024",
    "model.generator_base_channels=16", "model.discriminator_base_channels=16",
    "eval.extractor=domain", "eval.num_samples=256", "eval.metrics=[fid]",
    "logging.progress=false", "logging.tensorboard=false", "checkpoint.every_steps=1000", "device=cpu",
]


@pytest.fixture(scope="module")
def gasten_runs(tmp_path_factory):
    """A binary classifier and a short step-1 run on the pair, shared by the tests of this module."""
    root = tmp_path_factory.mktemp("gasten")
    patch = pytest.MonkeyPatch()
    patch.setenv("GENLAB_CACHE", str(root / "cache"))
    classifier = train_classifier(ClassifierTrainConfig(
        classes=[3, 0], nf=[4, 8, 16], epochs=2, max_samples=2000, output_dir=str(root / "classifiers"),
        name="cnn", progress=False, device="cpu"))
    overrides = [*SMALL, f"output_dir={root / 'runs'}"]
    step1 = run_step1(load_experiment("gasten/fmnist_3v0", overrides))
    yield {"root": root, "classifier": classifier.run_dir, "step1": step1.run_dir, "overrides": overrides}
    patch.undo()


def test_step1_keeps_a_checkpoint_and_an_fid_per_epoch(gasten_runs):
    step1 = gasten_runs["step1"]
    assert saved_epochs(step1) == [1, 2]
    assert (step1 / "checkpoints" / "best.pt").is_file()
    evaluations = [r for r in read_jsonl(step1 / "metrics.jsonl") if r.get("evaluation")]
    assert [r["epoch"] for r in evaluations] == [1, 2]
    assert all(math.isfinite(r["fid_domain"]) for r in evaluations)
    assert load_checkpoint(step1 / "checkpoints" / "epoch_0001.pt")["step"] == 32


def test_step2_lowers_acd_while_fid_stays_finite(gasten_runs):
    cfg = step2_config(load_experiment("gasten/fmnist_3v0", gasten_runs["overrides"]), gasten_runs["step1"],
                       classifier=str(gasten_runs["classifier"]), weight=25, epoch="last",
                       overrides=["gasten.step2_epochs=2"])
    assert cfg.gasten.ambiguity and cfg.training.init_from.endswith("last.pt")
    outcome = run_step2(cfg)
    before, after = outcome.comparison.results["step 1"], outcome.comparison.results["step 2"]
    assert after["acd"] < 0.75 * before["acd"], table(outcome.comparison)
    assert after["hubris"] < before["hubris"]
    assert math.isfinite(after["fid_domain"]) and math.isfinite(after["focd"])
    # the outputs move towards 0.5: more of them in the middle bins of the histogram
    middle = lambda p: float(((p > 0.3) & (p < 0.7)).float().mean())  # noqa: E731
    assert middle(outcome.comparison.probs["step 2"]) > middle(outcome.comparison.probs["step 1"])
    run = outcome.train.run_dir
    report = json.loads((run / "gasten_report.json").read_text())
    assert report["results"]["step 2"]["acd"] == pytest.approx(after["acd"])
    assert sum(report["histograms"]["step 1"]) == 256
    for name in ("classifier_histogram.png", "ambiguous.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    evaluations = [r for r in read_jsonl(run / "metrics.jsonl") if r.get("evaluation")]
    assert len(evaluations) == 2 and all({"acd", "focd", "hubris", "classifier_histogram"} <= set(r) for r in evaluations)
    steps = [r for r in read_jsonl(run / "metrics.jsonl") if "loss_amb" in r]
    assert steps and all(math.isfinite(r["loss_amb"]) for r in steps)


def test_step2_starts_from_the_chosen_step1_weights(gasten_runs):
    step1 = gasten_runs["step1"]
    assert step1_checkpoint(step1, 1).name == "epoch_0001.pt"
    assert step1_checkpoint(step1, "last").name == "last.pt"
    assert step1_checkpoint(step1, "best").name == "best.pt"
    with pytest.raises(CheckpointError, match="Saved epochs: 1, 2 "):
        step1_checkpoint(step1, 7)
    cfg = step2_config(load_experiment("gasten/fmnist_3v0", gasten_runs["overrides"]), step1,
                       classifier=str(gasten_runs["classifier"]), epoch=1,
                       overrides=["gasten.step2_epochs=1", "training.max_steps=1", "eval.every_epochs=0",
                                  "name=from-epoch-1"])
    assert cfg.model.generator_base_channels == 16  # the model comes from the step-1 run
    from genlab.methods import GANMethod
    from genlab.models import DataShape
    from genlab.train.loop import init_weights

    method = GANMethod(cfg, DataShape(28, 1, 2), torch.device("cpu"))
    init_weights(method, cfg.training.init_from, DataShape(28, 1, 2))
    epoch1 = load_checkpoint(step1 / "checkpoints" / "epoch_0001.pt")["method"]["generator"]
    for name, tensor in method.generator.state_dict().items():
        assert torch.equal(tensor, epoch1[name])
    with pytest.raises(CheckpointError, match="data settings must match"):
        init_weights(method, cfg.training.init_from, DataShape(32, 1, 2))


def test_step2_needs_a_classifier(gasten_runs):
    with pytest.raises(GenlabError, match="classifier"):
        step2_config(load_experiment("gasten/fmnist_3v0", gasten_runs["overrides"]), gasten_runs["step1"])
    with pytest.raises(ConfigError, match="did you mean 'gaussian'"):
        step2_config(load_experiment("gasten/fmnist_3v0", gasten_runs["overrides"]), gasten_runs["step1"],
                     classifier="x", loss="gausian")


def test_cli_step2_prints_the_before_after_table(gasten_runs):
    result = CliRunner().invoke(app, [
        "gasten", "step2", "--config", "gasten/fmnist_3v0", "--step1", str(gasten_runs["step1"]),
        "--classifier", str(gasten_runs["classifier"]), "--weight", "10", "--loss", "gaussian", "--step1-epoch", "2",
        *gasten_runs["overrides"], "gasten.step2_epochs=1", "training.max_steps=8",
    ])
    assert result.exit_code == 0, result.output
    assert "step 1" in result.output and "acd" in result.output and "hubris" in result.output
    run = Path(gasten_runs["root"]) / "runs" / "fmnist-3v0-step2-gaussian-a10-e2"
    assert (run / "gasten_report.json").is_file()
