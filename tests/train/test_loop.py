"""End-to-end training on synthetic data: every run-directory artefact, bitwise resume, safe checkpoints."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from genlab.config import load_config
from genlab.generate import load_run
from genlab.runs.checkpoint import CheckpointManager, atomic_save, load_checkpoint
from genlab.train.logging import read_jsonl
from genlab.train.loop import train

RESUME_KNOBS = ("data.hflip=true", "training.d_noise_std=0.1", "training.d_noise_decay_epochs=2",
                "training.lr_schedule=cosine", "training.num_epochs=3", "training.r1_gamma=1", "training.r1_every=4")


def test_run_directory_holds_every_artefact(tiny_config):
    cfg = tiny_config("name=full", "training.num_epochs=2")
    result = train(cfg)
    run = result.run_dir
    assert result.step == result.total_steps == 16 and not result.interrupted
    assert (run / "config.yaml").read_text().count("lr_g:") == 1
    env = json.loads((run / "env.json").read_text())
    for key in ("torch", "torchvision", "python", "seed", "git", "device", "genlab"):
        assert key in env
    assert env["seed"] == 42 and env["device"] == "cpu"
    records = read_jsonl(run / "metrics.jsonl")
    losses = [r for r in records if "loss_d" in r]
    assert [r["step"] for r in losses] == list(range(1, 17))
    assert all(k in losses[0] for k in ("loss_g", "d_real", "d_fake", "images_per_sec", "epoch"))
    assert list(run.glob("events.out.tfevents.*"))
    assert (run / "samples" / "latest.png").is_file() and (run / "samples" / "step_00000016.png").is_file()
    assert (run / "checkpoints" / "last.pt").is_file()
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 16 and state["config"]["name"] == "full"


def _loss_records(run_dir):
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if "loss_d" in r]


def _generator_weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["method"]["ema"]["model"]


def test_crash_then_resume_is_bitwise_identical(tiny_config):
    reference = train(tiny_config("name=reference", *RESUME_KNOBS))

    def crash(step, stats):
        if step == 13:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_config("name=crashed", *RESUME_KNOBS), callbacks=(crash,))
    crashed_dir = reference.run_dir.parent / "crashed"
    assert load_checkpoint(crashed_dir / "checkpoints" / "last.pt")["step"] == 10
    resumed = train(resume=crashed_dir)
    assert resumed.step == 24
    ref, res = _loss_records(reference.run_dir), _loss_records(resumed.run_dir)
    assert [r["step"] for r in res] == list(range(1, 25))
    keys = ("loss_d", "loss_g", "d_real", "d_fake", "r1", "lr_g", "d_noise_std")
    assert [[r.get(k) for k in keys] for r in ref] == [[r.get(k) for k in keys] for r in res]
    ref_w, res_w = _generator_weights(reference.run_dir), _generator_weights(resumed.run_dir)
    assert all(torch.equal(ref_w[k], res_w[k]) for k in ref_w)


def test_ctrl_c_saves_and_resume_matches(tiny_config):
    reference = train(tiny_config("name=reference", "training.num_epochs=2"))

    def interrupt(step, stats):
        if step == 7:
            os.kill(os.getpid(), signal.SIGINT)

    stopped = train(tiny_config("name=stopped", "training.num_epochs=2"), callbacks=(interrupt,))
    assert stopped.interrupted and stopped.step == 7
    assert load_checkpoint(stopped.run_dir / "checkpoints" / "last.pt")["step"] == 7
    resumed = train(resume=stopped.run_dir)
    assert not resumed.interrupted
    ref = [(r["loss_d"], r["loss_g"]) for r in _loss_records(reference.run_dir)]
    res = [(r["loss_d"], r["loss_g"]) for r in _loss_records(resumed.run_dir)]
    assert ref == res


def test_resume_can_extend_the_budget(tiny_config):
    first = train(tiny_config("name=short", "training.num_epochs=1"))
    longer = train(resume=first.run_dir, overrides=["training.num_epochs=2"])
    assert (first.step, longer.step) == (8, 16)
    # The run directory records what the run now uses, and which resume changed it.
    assert load_config(first.run_dir / "config.yaml").training.num_epochs == 2
    resumes = json.loads((first.run_dir / "env.json").read_text())["resumes"]
    assert resumes[-1]["from_step"] == 8 and resumes[-1]["overrides"] == ["training.num_epochs=2"]


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path, keep=1)
    manager.save({"step": 1, "weights": torch.ones(3)}, 1)

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        manager.save({"step": 2, "weights": torch.zeros(3)}, 2)
    monkeypatch.undo()
    state = load_checkpoint(manager.last)
    assert state["step"] == 1 and torch.equal(state["weights"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "step_00000001.pt"]


def test_snapshots_are_pruned_to_keep(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (5, 10, 15):
        manager.save({"step": step}, step)
    assert [p.name for p in manager.snapshots()] == ["step_00000010.pt", "step_00000015.pt"]
    assert load_checkpoint(tmp_path / "step_00000010.pt")["step"] == 10


def test_checkpoints_refuse_pickled_code(tmp_path):
    import datetime

    atomic_save({"format": 1, "not_weights": datetime.date(2020, 1, 1)}, tmp_path / "bad.pt")
    from genlab.errors import CheckpointError

    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "bad.pt")


def test_existing_named_run_is_never_overwritten(tiny_config):
    train(tiny_config("name=taken", "training.max_steps=2"))
    from genlab.errors import CheckpointError

    with pytest.raises(CheckpointError, match="--resume"):
        train(tiny_config("name=taken", "training.max_steps=2"))


def test_diverging_run_stops_with_advice(tiny_config):
    from genlab.train.diagnostics import TrainingDiverged

    def poison(step, stats):
        stats["loss_d"].fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match="learning rates"):  # nan_guard=off: today's stop at the next log
        train(tiny_config("name=nan", "training.max_steps=3", "training.nan_guard=off"), callbacks=(poison,))


def test_resume_between_log_intervals_repeats_every_metrics_line(tiny_config, crash_and_resume):
    """The checkpoint (every 5 steps) falls inside a log interval (every 3): the straddling line must match too."""
    knobs = ("logging.log_every=3", "checkpoint.every_steps=5", "training.num_epochs=2")
    reference, crashed = crash_and_resume(tiny_config, knobs, crash_step=13)
    assert json.loads((crashed / "env.json").read_text())["resumes"][0]["from_step"] == 10  # inside a log interval
    ref, res = _loss_records(reference), _loss_records(crashed)
    assert [r["step"] for r in res] == [3, 6, 9, 12, 15, 16]
    without_speed = [{k: v for k, v in r.items() if k != "images_per_sec"} for r in ref]
    assert without_speed == [{k: v for k, v in r.items() if k != "images_per_sec"} for r in res]


def test_summary_counts_parameters_and_adds_up_time_over_resumes(tiny_config):
    first = train(tiny_config("name=summary", "training.num_epochs=1"))
    summary = json.loads((first.run_dir / "summary.json").read_text())
    state = load_checkpoint(first.run_dir / "checkpoints" / "last.pt")
    method = load_run(first.run_dir).method
    assert summary["parameters"] == {"generator": sum(p.numel() for p in method.generator.parameters()),
                                     "discriminator": sum(p.numel() for p in method.discriminator.parameters())}
    assert summary["parameters"]["generator"] > 1000
    assert summary["family"] == "gan" and summary["steps"] == 8 and summary["images_seen"] == 64
    assert summary["status"] == "finished" and summary["sample_seconds_per_image"] > 0
    first_seconds = summary["train_seconds"]
    assert first_seconds > 0 and state["hooks"]["summary"]["train_seconds"] > 0
    train(resume=first.run_dir, overrides=["training.num_epochs=2"])
    resumed = json.loads((first.run_dir / "summary.json").read_text())
    assert resumed["steps"] == 16 and resumed["train_seconds"] > first_seconds
