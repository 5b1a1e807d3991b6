"""`genlab evaluate RUN` scores like the run's own evaluation, says what it compared, and knows every metric."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from genlab.cli import app
from genlab.train import load_experiment
from genlab.train.logging import read_jsonl
from genlab.train.loop import train

TINY = ["data.name=synthetic", "data.image_size=16", "training.batch_size=8", "logging.progress=false",
        "logging.tensorboard=false", "logging.report=false", "device=cpu", "model.generator_base_channels=8",
        "model.discriminator_base_channels=8", "model.latent_dim=8"]


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
    """One epoch with an evaluation at its end, on 48 of the test split's images (private statistics cache)."""
    root = tmp_path_factory.mktemp("agree")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENLAB_CACHE", str(root / "cache"))
        cfg = load_experiment(None, [*TINY, f"output_dir={root / 'runs'}", "name=agree", "training.num_epochs=1",
                                     "data.num_samples=64", "eval.every_epochs=1", "eval.metrics=[fid, kid]",
                                     "eval.extractor=domain", "eval.num_samples=40", "eval.real_split=test",
                                     "eval.real_samples=48", "data.seed=7"])
        yield train(cfg).run_dir


@pytest.fixture(autouse=True)
def same_cache(scored_run, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(scored_run.parent.parent / "cache"))


def test_evaluate_defaults_reproduce_the_training_evaluation(scored_run):
    during = [r for r in read_jsonl(scored_run / "metrics.jsonl") if r.get("evaluation")][-1]
    out = CliRunner().invoke(app, ["evaluate", str(scored_run), "--metrics", "fid,kid"])
    assert out.exit_code == 0, out.output
    after = read_jsonl(scored_run / "metrics.jsonl")[-1]
    for key in ("fid_domain", "kid_domain_mean"):
        assert after[key] == pytest.approx(during[key], rel=1e-6), key
    # It says what it compared: the samples, their noise seed, and the real images.
    assert "fake: 40 samples, noise seed 11" in out.output
    assert "real: synthetic, split test, first 48 images" in out.output and "metric seed 7" in out.output
    other = CliRunner().invoke(app, ["evaluate", str(scored_run), "--metrics", "fid", "--seed", "3", "--n", "40"])
    assert other.exit_code == 0 and "noise seed 3" in other.output
    assert read_jsonl(scored_run / "metrics.jsonl")[-1]["fid_domain"] != pytest.approx(during["fid_domain"])


def test_evaluate_knows_every_registered_metric(scored_run, tmp_path):
    from genlab.train.classifier import ClassifierTrainConfig, train_classifier

    classifier = train_classifier(ClassifierTrainConfig(
        data="synthetic", classes=[0, 3], image_size=16, max_samples=200, epochs=1, nf=[4, 8],
        output_dir=str(tmp_path / "classifiers"), name="shapes", progress=False, device="cpu")).run_dir
    out = CliRunner().invoke(app, ["evaluate", str(scored_run), "--metrics", "acd,hubris,focd", "--n", "32",
                                   "--classifier", str(classifier)])
    assert out.exit_code == 0, out.output
    assert all(f"\n{name} " in out.output for name in ("acd", "hubris")) and "focd" in out.output
    missing = CliRunner().invoke(app, ["evaluate", str(scored_run), "--metrics", "acd", "--n", "8"])
    assert missing.exit_code != 0 and "binary classifier" in str(missing.exception)
    typo = CliRunner().invoke(app, ["evaluate", str(scored_run), "--metrics", "hubirs"])
    assert typo.exit_code != 0 and "did you mean 'hubris'" in str(typo.exception)
