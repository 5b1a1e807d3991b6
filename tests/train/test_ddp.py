"""Distributed training under torchrun (gloo on the CPU, 2 processes) against one process.

One torchrun launch (`ddp_worker.py`) trains a GAN, a VAE and a DDPM, a GAN run that crashes after
step 5 and is resumed through the CLI (`genlab train --resume`, what `torchrun -m genlab` runs), and
scores the GAN under `distributed.sharing()`. The tests compare with one process.

Tolerance for "N processes = 1 process with the same global batch": 1e-6 on every weight. Each rank's
gradient is a mean over its slice of the batch and the ranks average them, which is the one-process
mean gradient with the float32 additions in another order (the two halves are summed apart, and a
convolution's weight gradient reduces over a batch of 4 instead of 8): relative differences of ~1e-7.
Adam turns gradients into steps of about lr (2e-4 here) whatever their scale, so after 8 steps the
weights differ by ~5e-8 (measured), far below one step; reading the wrong shard, or drawing the same
noise on both ranks, changes the weights by about lr per step (≥ 1e-4), which the tolerance catches.

The U-Net is the exception that proves the rule: some of its parameters have a gradient that is zero
in exact arithmetic (attention key biases, which softmax ignores; biases and time-embedding projections
that the next one-channel-per-group GroupNorm subtracts again). Their float gradient is rounding noise,
which Adam scales up to steps of about lr, so they drift apart by up to lr per step — between any two
summation orders, not only between 1 and 2 processes — without changing what the network computes.
So for every family the test compares what the trained networks compute (samples from fixed noise, EMA
and raw weights: 1e-5 on images in [-1, 1], measured at most 4e-7), and the weights themselves where no
such parameters exist (GAN, VAE: measured at most 5e-8).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genlab.config import DataConfig
from genlab.data import EpochLoader, build_dataset
from genlab.data.augment import POLICY_PRESETS
from genlab.generate import load_run
from genlab.methods import SampleOptions
from genlab.train import load_experiment, train
from genlab.train.logging import read_jsonl

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="this PyTorch has no torch.distributed")
WORKER = Path(__file__).with_name("ddp_worker.py")
TOLERANCE = 1e-6
OUTPUT_TOLERANCE = 1e-5

TINY_RUN = ["data.name=synthetic", "data.image_size=16", "data.num_samples=64", "training.batch_size=8",
            "training.max_steps=8", "logging.log_every=1", "logging.sample_every=4", "logging.num_sample_images=16",
            "logging.progress=false", "checkpoint.every_steps=3", "device=cpu", "logging.report=false"]
#: No BatchNorm (each rank would normalise with its own half of the batch; SyncBatchNorm needs CUDA), and the
#: batch-shaped random draws besides z: DiffAugment, instance noise, random flips.
FAMILIES = {
    "gan": [*TINY_RUN, "model.generator_base_channels=8", "model.discriminator_base_channels=8", "model.latent_dim=8",
            "model.g_norm=none", "model.d_norm=instance", "training.diffaugment=color,translation,cutout",
            "training.d_noise_std=0.1", "data.hflip=true"],
    "vae": [*TINY_RUN, "model.family=vae", "model.latent_dim=8", "model.base_channels=8", "model.norm=none",
            "training.vgg_weights=null"],
    "ddpm": [*TINY_RUN, "model.family=ddpm", "model.base_channels=8", "model.channel_mults=[1,2]",
             "model.layers_per_block=1", "model.attention_resolutions=[8]", "model.timesteps=50",
             "training.sampling_steps=5", "training.grid_steps=4", "training.ema_decay=0.9"],
}
CRASH_STEP = 5
FID_SAMPLES = 56


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "GENLAB_CACHE": str(cache)}


def _torchrun(args: list[str], env: dict[str, str]) -> str:
    """Launch 2 processes; what they printed to stdout."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Everything the 2-process runs leave, under one folder: runs/<name>/, fid.json."""
    root = tmp_path_factory.mktemp("ddp")
    runs = root / "runs"
    jobs = [{"train": [*overrides, f"output_dir={runs}", f"name={family}"]} for family, overrides in FAMILIES.items()]
    jobs += [{"train": [*FAMILIES["gan"], f"output_dir={runs}", "name=crashed"], "crash_step": CRASH_STEP},
             {"copy": [str(runs / "crashed"), str(runs / "crashed-1proc")]},  # to resume with one process instead
             {"cli": ["train", "--resume", str(runs / "crashed")]},
             {"fid": str(runs / "gan"), "num_samples": FID_SAMPLES, "out": str(root / "fid.json")}]
    (root / "jobs.json").write_text(json.dumps(jobs))
    (root / "stdout.txt").write_text(_torchrun([str(WORKER), str(root / "jobs.json")], _env(root / "cache")))
    return root


def _method(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")["method"]


def _tensors(state: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a (nested) state dict, by its path."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return {}
    return {k: v for key, value in items for k, v in _tensors(value, f"{prefix}/{key}").items()}


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """Networks and EMA weights of a run's last.pt (float tensors only)."""
    method = _method(run_dir)
    return {k: v for k, v in _tensors({n: s for n, s in method.items() if not n.startswith(("opt", "scaler"))}).items()
            if v.is_floating_point()}


def _worst_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def _samples(run_dir: Path) -> list[torch.Tensor]:
    """What a run's networks compute: samples from fixed noise with the EMA and with the raw weights."""
    method = load_run(run_dir, device="cpu").method
    noise = method.make_noise(8, torch.Generator().manual_seed(0))
    return [method.sample(noise, options=SampleOptions(ema=ema), generator=torch.Generator().manual_seed(1))
            for ema in (True, False)]


def _losses(run_dir: Path) -> list[dict[str, float]]:
    """The loss values of each logged interval."""
    records = ({k: v for k, v in record.items() if k.startswith("loss") and v is not None}
               for record in read_jsonl(run_dir / "metrics.jsonl"))
    return [record for record in records if record]


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_two_processes_match_one_with_the_same_global_batch(ddp, family):
    single = train(load_experiment(None, [*FAMILIES[family], f"output_dir={ddp / 'single'}", f"name={family}"]))
    run = ddp / "runs" / family
    for mine, theirs in zip(_samples(run), _samples(single.run_dir), strict=True):
        assert (mine - theirs).abs().max() < OUTPUT_TOLERANCE
    if family != "ddpm":  # see the module docstring
        assert _worst_difference(_weights(run), _weights(single.run_dir)) < TOLERANCE
    # Rank 0 alone wrote the run: one line per log and the losses logged are global-batch means.
    ddp_losses, single_losses = _losses(run), _losses(single.run_dir)
    assert len(ddp_losses) == len(single_losses) == 8
    for mine, theirs in zip(ddp_losses, single_losses, strict=True):
        assert mine.keys() == theirs.keys()
        assert all(abs(mine[k] - theirs[k]) <= 1e-5 * max(1.0, abs(theirs[k])) for k in mine)
    assert json.loads((run / "summary.json").read_text())["images_seen"] == 8 * 8
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert not (run / "run.lock").exists()


@pytest.mark.slow
def test_killed_ddp_run_resumes_like_an_uninterrupted_one(ddp):
    runs = ddp / "runs"
    resumes = json.loads((runs / "crashed" / "env.json").read_text())["resumes"]
    assert [r["from_step"] for r in resumes] == [3]  # crashed after step 5, resumed once from last.pt (step 3)
    assert [r["processes"] for r in resumes] == [2]
    reference, resumed = _method(runs / "gan"), _method(runs / "crashed")
    # Same processes, same reduction order: bit for bit, optimiser states and random streams included.
    tensors = _tensors(reference)
    assert tensors.keys() == _tensors(resumed).keys()
    assert all(torch.equal(value, _tensors(resumed)[key]) for key, value in tensors.items())
    drop = {"images_per_sec"}
    lines = [{k: v for k, v in r.items() if k not in drop} for r in read_jsonl(runs / "crashed" / "metrics.jsonl")]
    assert lines == [{k: v for k, v in r.items() if k not in drop} for r in read_jsonl(runs / "gan" / "metrics.jsonl")]
    # Resumed by one process instead of two (same global batch): the same run up to float reduction order.
    train(resume=runs / "crashed-1proc")
    assert _worst_difference(_weights(runs / "crashed-1proc"), _weights(runs / "gan")) < TOLERANCE
    # The CLI's closing lines of the resumed run come once, from rank 0, not once per process.
    assert (ddp / "stdout.txt").read_text().count("Training finished at step 8/8.") == 1


@pytest.mark.parametrize(("rank", "main"), [(None, True), ("0", True), ("1", False)])
def test_after_the_process_group_ends_rank_0_is_known_from_torchrun_rank(monkeypatch, rank, main):
    from genlab import distributed

    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    assert not distributed.is_active() and distributed.is_main_process() is main


def _worker_module():
    spec = importlib.util.spec_from_file_location("ddp_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_fid_under_ddp_equals_the_one_process_fid(ddp, monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "fresh-cache"))  # real statistics extracted anew here
    worker = _worker_module()
    extractor = worker.MeanPoolExtractor()
    single = worker.score(str(ddp / "runs" / "gan"), FID_SAMPLES, extractor)
    shared = json.loads((ddp / "fid.json").read_text())
    assert set(shared["results"]) == {"fid", "kid_mean", "kid_std"} and shared["results"]["fid"] > 0
    assert shared["results"] == single  # the same features in the same order: equal to the last bit
    # Each process extracted its share of the fake and real batches (5 images each), not everything ...
    per_rank = shared["images_per_rank"]
    assert sum(per_rank) == extractor.images == FID_SAMPLES + 64 and max(per_rank) < extractor.images * 0.6
    # ... and drew its share of the samples (batches of 8: 4 and 3 of the 7), gathered into the same images.
    assert shared["samples_per_rank"] == [32, 24]


def test_each_rank_reads_its_slice_of_the_one_process_batch():
    """The shards of every global batch, augmented with the global batch's draws, are the one-process batch."""
    dataset = build_dataset(DataConfig(name="synthetic", image_size=16, num_samples=48))

    def batches(rank: int, ranks: int) -> list[torch.Tensor]:
        loader = EpochLoader(dataset, 12, 7, torch.device("cpu"), POLICY_PRESETS["standard"], shard=(rank, ranks))
        rng = torch.Generator().manual_seed(3)
        return [torch.cat([b.images, b.labels[:, None, None, None].float().expand(-1, 1, 16, 1)], dim=3)
                for b in loader.epoch(1, start_batch=1, aug_generator=rng)]

    whole = batches(0, 1)
    for ranks in (2, 3):
        shards = [batches(rank, ranks) for rank in range(ranks)]
        assert all(len(s[0]) == 12 // ranks for s in shards)
        for step, batch in enumerate(whole):
            assert torch.equal(torch.cat([s[step] for s in shards]), batch)


def test_a_sample_batch_is_the_same_whichever_rank_draws_it_alone(tiny_ddpm_config, monkeypatch):
    """generate()'s batches have their own noise streams: a rank drawing only batch 1 of a DDPM's samples (whose
    sampler draws noise at every step) gets what one process draws for it after batch 0."""
    from genlab import distributed
    from genlab.generate import generate
    from genlab.methods import SampleOptions, build_method
    from genlab.models import DataShape

    method = build_method(tiny_ddpm_config(), DataShape(16, 1, 4), torch.device("cpu"))
    options = SampleOptions(steps=3, progress=False)
    whole = generate(method, 12, seed=5, batch_size=6, options=options)
    monkeypatch.setattr(distributed, "owns", lambda index: index == 1)  # the second of two ranks
    assert torch.equal(generate(method, 12, seed=5, batch_size=6, options=options), whole[6:])
    assert not torch.equal(whole[:6], whole[6:])
