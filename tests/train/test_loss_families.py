"""A short CPU run per loss family on real Fashion-MNIST: losses stay finite and samples move toward the data."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.data import build_dataset, to_float
from genlab.data.sources import DEBIAN_FASHION_MNIST
from genlab.generate import load_run
from genlab.methods import GANMethod, SampleOptions
from genlab.models import DataShape
from genlab.train import load_experiment
from genlab.train.logging import read_jsonl
from genlab.train.loop import train
from genlab.utils import seed_everything

pytestmark = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed (.ci/run installs it)",
)

FAMILIES = {
    "ns": [], "bce": ["training.label_smoothing=0.1"], "ls": [], "hinge": [],
    "wgan-gp": ["training.beta1=0.0", "training.beta2=0.9"],
}


def moment_gap(images: torch.Tensor, real: torch.Tensor) -> float:
    """Squared distance of the samples' per-pixel mean and std from the data's (falls as samples look like data)."""
    return ((images.mean(0) - real.mean(0)).pow(2).mean() + (images.std(0) - real.std(0)).pow(2).mean()).item()


@pytest.mark.slow
@pytest.mark.parametrize("loss", list(FAMILIES))
def test_loss_family_learns(loss, tmp_path):
    overrides = [
        f"training.loss_type={loss}", *FAMILIES[loss], "data.max_samples=2048", "training.max_steps=150",
        "training.batch_size=32", "model.generator_base_channels=16", "model.discriminator_base_channels=16",
        "training.ema_decay=0", "logging.log_every=10", "logging.sample_every=1000", "logging.progress=false",
        "logging.tensorboard=false", f"output_dir={tmp_path}", "name=run", "device=cpu",
    ]
    cfg = load_experiment("fashion_mnist_dcgan", overrides)
    real = to_float(build_dataset(cfg.data).images)
    seed_everything(cfg.data.seed)  # the same initial weights train() starts from
    initial = GANMethod(cfg, DataShape(28, 1, 10), torch.device("cpu"))
    train(cfg)
    trained = load_run(tmp_path / "run", device="cpu").method
    noise = initial.make_noise(256, torch.Generator().manual_seed(1))
    before, after = (m.sample(noise, options=SampleOptions(ema=False)) for m in (initial, trained))

    records = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "loss_d" in r]
    assert len(records) == 15 and all(math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"]) for r in records)
    assert (after - before).abs().mean() > 0.05, "the generator did not move"
    gap_before, gap_after = moment_gap(before, real), moment_gap(after, real)
    assert gap_after < 0.85 * gap_before, f"samples did not move toward the data ({gap_before:.3f} -> {gap_after:.3f})"
