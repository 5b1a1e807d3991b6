"""The command line: train, sample (grid / folder / npz, EMA, seed), resume, `python -m genlab`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from genlab.cli import app

TINY = [
    "data.name=synthetic", "data.image_size=16", "data.num_samples=64", "training.batch_size=8",
    "model.generator_base_channels=8", "model.discriminator_base_channels=8", "model.latent_dim=8",
    "logging.progress=false", "device=cpu", "training.num_epochs=1",
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(app, ["train", *TINY, f"output_dir={out}", "name=cli"])
    assert result.exit_code == 0, result.output
    assert "Results:" in result.output
    return out / "cli"


def test_sample_grid_folder_and_npz(trained_run, tmp_path):
    runner = CliRunner()
    grid = tmp_path / "grid.png"
    assert runner.invoke(app, ["sample", str(trained_run), "--n", "9", "--out", str(grid)]).exit_code == 0
    assert Image.open(grid).size == (3 * 16 + 4 * 2, 3 * 16 + 4 * 2)
    folder = tmp_path / "pngs"
    assert runner.invoke(app, ["sample", str(trained_run), "--n", "5", "--out", f"{folder}/"]).exit_code == 0
    files = sorted(folder.glob("*.png"))
    assert len(files) == 5 and Image.open(files[0]).size == (16, 16)
    npz = tmp_path / "s.npz"
    assert runner.invoke(app, ["sample", str(trained_run), "--n", "7", "--out", str(npz)]).exit_code == 0
    images = np.load(npz)["images"]
    assert images.shape == (7, 16, 16, 1) and images.dtype == np.uint8


def test_sample_seed_and_ema_switch(trained_run, tmp_path):
    runner = CliRunner()

    def draw(name, *flags):
        path = tmp_path / f"{name}.npz"
        result = runner.invoke(app, ["sample", str(trained_run), "--n", "4", "--out", str(path), *flags])
        assert result.exit_code == 0, result.output
        return np.load(path)["images"]

    a, b = draw("a", "--seed", "1"), draw("b", "--seed", "1")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, draw("c", "--seed", "2"))
    assert not np.array_equal(a, draw("d", "--seed", "1", "--no-ema"))


def test_sample_reports_missing_checkpoint(trained_run, tmp_path):
    result = CliRunner().invoke(app, ["sample", str(trained_run), "--checkpoint", "best", "--out", str(tmp_path / "x.png")])
    assert result.exit_code != 0 and "Available: last.pt" in str(result.exception)


def test_python_dash_m_runs_the_same_app(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "genlab", "config", "list"], capture_output=True, text=True)
    assert ok.returncode == 0 and "fashion_mnist_dcgan" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "genlab", "train", "training.lr_gen=1"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "did you mean 'training.lr_g'" in bad.stderr and "Traceback" not in bad.stderr


def test_truncation_trick_bounds_noise_and_changes_samples(trained_run, tmp_path):
    import torch

    from genlab.methods import truncate

    z = truncate(torch.randn(1000, 8) * 3, 0.5, torch.Generator().manual_seed(0))
    assert z.abs().max() <= 0.5 and z.std() > 0.2
    runner = CliRunner()
    plain, cut = tmp_path / "p.npz", tmp_path / "t.npz"
    assert runner.invoke(app, ["sample", str(trained_run), "--n", "4", "--out", str(plain)]).exit_code == 0
    result = runner.invoke(app, ["sample", str(trained_run), "--n", "4", "--out", str(cut), "--truncation", "0.5"])
    assert result.exit_code == 0
    assert not np.array_equal(np.load(plain)["images"], np.load(cut)["images"])
