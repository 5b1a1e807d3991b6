"""`genlab doctor` on deliberately broken tiny runs: each failure named first, with overrides that fix it."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
import yaml
from typer.testing import CliRunner

from genlab.cli import app
from genlab.diagnose.doctor import diagnose_run
from genlab.diagnose.signals import SATURATION_EXCESS_ALARM
from genlab.errors import GenlabError
from genlab.methods.gan import GANMethod
from genlab.runs.checkpoint import load_checkpoint
from genlab.train import train
from genlab.train.logging import read_jsonl

SHORT = ("training.num_epochs=4", "logging.log_every=2", "logging.sample_every=8")


def late_excess(run_dir) -> float:
    """Mean saturation excess over the last half of a run's sample checks."""
    values = [r["saturation_excess"] for r in read_jsonl(run_dir / "metrics.jsonl") if "saturation_excess" in r]
    return statistics.mean(values[len(values) // 2:])


def test_healthy_default_run_has_no_finding_and_logs_every_live_signal(tiny_config):
    run = train(tiny_config(*SHORT, "training.d_noise_std=0.05")).run_dir
    diagnosis = diagnose_run(run)
    assert diagnosis.findings == [], diagnosis.render()
    assert "Looks healthy" in diagnosis.render()
    records = read_jsonl(run / "metrics.jsonl")
    assert records[0]["step"] == 0 and records[0]["g_d_param_ratio"] == pytest.approx(
        records[0]["g_params"] / records[0]["d_params"])
    interval = next(r for r in records if "loss_g" in r)
    assert {"d_acc_real", "d_acc_fake", "grad_norm_d", "grad_norm_g", "lr_g", "lr_d", "d_noise_std",
            "ema_distance"} <= set(interval)
    grid = next(r for r in records if "sample_saturation" in r)
    assert {"real_saturation", "saturation_excess", "sample_diversity", "real_diversity", "diversity_ratio"} <= set(grid)


def test_large_last_layer_init_is_named_saturation_and_the_first_override_fixes_it(tiny_config):
    """The fix loop: broken run → doctor's first suggested overrides → same budget → excess under the alarm."""
    broken = train(tiny_config("name=broken", "model.architecture=resnet", "model.final_init_scale=20", *SHORT))
    first = diagnose_run(broken.run_dir).findings[0]
    assert first.name == "tanh saturation"
    assert first.overrides == ["model.final_init_scale=0.1"]
    assert late_excess(broken.run_dir) > SATURATION_EXCESS_ALARM
    fixed = train(tiny_config("name=fixed", "model.architecture=resnet", "model.final_init_scale=20", *SHORT,
                              *first.overrides))
    assert late_excess(fixed.run_dir) < SATURATION_EXCESS_ALARM
    assert "tanh saturation" not in [f.name for f in diagnose_run(fixed.run_dir).findings]


def test_fast_wide_discriminator_is_named_dominance_first(tiny_config):
    """D's learning rate ×20 and a D four times as wide: dominance first, then the capacity imbalance."""
    run = train(tiny_config("training.lr_d=4e-3", "model.discriminator_base_channels=32", *SHORT)).run_dir
    findings = diagnose_run(run).findings
    assert [f.name for f in findings[:2]] == ["discriminator dominance", "G/D capacity imbalance"]
    assert "training.lr_d=0.0002" in findings[0].overrides  # back to lr_g
    assert any(o.startswith("model.discriminator_base_channels=") for o in findings[0].overrides)


def test_generator_that_ignores_z_is_named_collapse(tiny_config, monkeypatch):
    monkeypatch.setattr(GANMethod, "make_noise",
                        lambda self, n, generator=None: torch.zeros(n, self.latent_dim, device=self.device))
    run = train(tiny_config("model.architecture=resnet", "model.g_norm=none", *SHORT, "training.num_epochs=5")).run_dir
    findings = diagnose_run(run).findings
    assert findings and findings[0].name == "mode collapse", diagnose_run(run).render()


def write_run(root, config: dict, records: list[dict]) -> None:
    """A run directory by hand: config.yaml and metrics.jsonl only."""
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_seed_004_knobs_are_what_the_saturation_finding_undoes(tmp_path):
    config = {"name": "seed004", "model": {"family": "gan", "architecture": "resnet", "final_sn": True,
                                           "init": "orthogonal", "final_init_scale": 0.1}}
    records = [{"step": s, "sample_saturation": 0.9, "real_saturation": 0.02, "saturation_excess": 0.88,
                "diversity_ratio": 0.9, "contrast_ratio": 1.2} for s in (500, 1000, 1500)]
    write_run(tmp_path / "run", config, records)
    diagnosis = diagnose_run(tmp_path / "run")
    assert diagnosis.findings[0].overrides == ["model.final_sn=false", "model.final_init_scale=0.1", "model.init=auto"]
    assert diagnosis.findings[0].steps == (500, 1500)
    assert "90% of sample pixels" in diagnosis.render() and "name=seed004-fix" in diagnosis.render()


def test_noise_removed_and_lr_decayed_while_g_loses_are_found(tmp_path):
    config = {"model": {"family": "gan"}, "training": {"num_epochs": 200, "lr_g": 1e-4, "lr_d": 1e-4,
                                                       "loss_type": "hinge", "d_noise_std": 0.1}}
    records = []
    for i in range(1, 31):
        noisy = i <= 15
        records.append({"step": i * 100, "loss_d": 1.2 if noisy else 1.0, "loss_g": 0.5 + i / 30,
                        "d_acc_real": 0.7 if noisy else 0.88, "d_acc_fake": 0.7 if noisy else 0.88,
                        "d_noise_std": 0.1 * (1 - i / 15) if noisy else 0.0, "lr_g": 1e-4 * (1 - i / 31) ** 3})
    write_run(tmp_path / "run", config, records)
    names = {f.name: f for f in diagnose_run(tmp_path / "run").findings}
    assert names["instance noise gone too early"].overrides == ["training.d_noise_decay_epochs=200"]
    assert names["learning rate decayed while G is losing"].overrides == ["training.lr_schedule=none"]


def test_fid_regression_points_at_best_pt(tmp_path):
    records = [{"step": s, "evaluation": True, "fid": f} for s, f in ((100, 50.0), (200, 30.0), (300, 45.0))]
    write_run(tmp_path / "run", {"model": {"family": "gan"}}, records)
    finding = diagnose_run(tmp_path / "run").findings[0]
    assert finding.name == "FID regression" and finding.steps == (200, 300)


def test_vae_posterior_collapse_ranks_above_a_fid_regression(tmp_path):
    records = [{"step": s, "loss": 0.1, "kl": 0.01, "active_units": 0.0} for s in range(1, 10)]
    records += [{"step": s, "evaluation": True, "fid": f} for s, f in ((3, 90.0), (6, 60.0), (9, 80.0))]
    write_run(tmp_path / "run", {"model": {"family": "vae"}, "training": {"beta": 1.0}}, records)
    findings = diagnose_run(tmp_path / "run").findings
    assert [f.name for f in findings] == ["posterior collapse", "FID regression"]
    assert findings[0].overrides == ["training.beta=0.1", "training.beta_warmup_epochs=5"]


def test_doctor_cli_json_and_clear_errors(tiny_config, tmp_path):
    run = train(tiny_config("training.max_steps=4")).run_dir
    runner = CliRunner()
    result = runner.invoke(app, ["doctor", str(run), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["run"] == str(run)
    missing = runner.invoke(app, ["doctor", str(tmp_path / "nowhere")])
    assert isinstance(missing.exception, Exception) and "not a run directory" in str(missing.exception)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.yaml").write_text("model: {family: gan}\n")
    with pytest.raises(Exception, match="logged nothing yet"):
        diagnose_run(tmp_path / "empty")
    (run / "config.yaml").write_text("model: {family: gan\n")  # a crash mid-write, by hand
    with pytest.raises(GenlabError, match=r"Could not read .*config.yaml.*damaged.*--resume"):
        diagnose_run(run)
    (run / "config.yaml").write_text("- a list\n")
    with pytest.raises(GenlabError, match="not a config mapping"):
        diagnose_run(run)


def test_doctor_without_a_run_checks_the_environment(tmp_path):
    result = CliRunner().invoke(app, ["doctor", "--json", "--output-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert checks["device"]["status"] in ("ok", "warn")
    assert {"data: fashion-mnist", "FID weights"} <= set(checks)
    assert checks["runs folder"]["status"] == "ok" and "not created yet" in checks["runs folder"]["detail"]
    assert not (tmp_path / "runs").exists()


def test_capacity_of_an_older_run_comes_from_summary_json(tmp_path):
    records = [{"step": s, "loss_d": 1.0, "loss_g": 1.0} for s in range(1, 4)]
    write_run(tmp_path / "run", {"model": {"family": "gan", "discriminator_base_channels": 128}}, records)
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"parameters": {"generator": 2.5e6,
                                                                              "discriminator": 1e7}}))
    finding = diagnose_run(tmp_path / "run").findings[0]
    assert finding.name == "G/D capacity imbalance" and finding.overrides == ["model.discriminator_base_channels=64"]


def test_diagnostics_off_logs_none_of_the_signals(tiny_config):
    """What benchmarks/diagnostics_cost.py compares against: logging.diagnostics=false training.nan_guard=off."""
    run = train(tiny_config("training.max_steps=4", "logging.diagnostics=false", "training.nan_guard=off")).run_dir
    keys = set().union(*read_jsonl(run / "metrics.jsonl"))
    assert "loss_g" in keys and "sample_saturation" in keys
    assert not keys & {"d_acc_real", "grad_norm_d", "grad_norm_g", "ema_distance", "real_saturation"}


def swinging(i: int) -> float:
    return 3.0 if i % 2 else 0.05


@pytest.mark.parametrize(("name", "family", "record"), [
    ("oscillation", "gan", lambda i: {"loss_d": swinging(i), "loss_g": swinging(i + 1) * 2}),
    ("vanishing generator gradient", "gan", lambda i: {"loss_d": 1.0, "loss_g": 1.0,
                                                       "grad_norm_g": 1.0 if i < 10 else 1e-4}),
    ("loss stuck at high t", "ddpm", lambda i: {"loss": 1.0 - i / 40, "loss_t3": 0.5}),
])
def test_rules_read_from_the_records_fire_and_stay_quiet(tmp_path, name, family, record):
    bad = [{"step": i * 10, **record(i)} for i in range(1, 31)]
    write_run(tmp_path / "bad", {"model": {"family": family}, "training": {"lr_g": 2e-4, "lr_d": 2e-4}}, bad)
    assert name in [f.name for f in diagnose_run(tmp_path / "bad").findings]
    calm = [{"step": i * 10, "loss": 1.0 - i / 40, "loss_t3": 0.5 - i / 100, "loss_d": 1.0 + 0.01 * (i % 3),
             "loss_g": 0.9, "grad_norm_g": 1.0} for i in range(1, 31)]
    write_run(tmp_path / "calm", {"model": {"family": family}}, calm)
    assert diagnose_run(tmp_path / "calm").healthy


@pytest.mark.parametrize(("g_loss_rises", "finding"), [(False, None), (True, "discriminator dominance")])
def test_dominance_needs_the_generator_losing_ground(tmp_path, g_loss_rises, finding):
    """The demo's shape: D right about >90 % of images throughout while G's loss falls is no finding; G's loss rising
    under the same D is."""
    config = {"model": {"family": "gan"}, "training": {"loss_type": "ns", "lr_g": 2e-4, "lr_d": 2e-4}}
    records = [{"step": 50 * i, "loss_d": 0.3, "d_acc_real": 0.95, "d_acc_fake": 0.96, "grad_norm_g": 12.0,
                "loss_g": 2.0 + i / 10 if g_loss_rises else 4.0 - i / 10} for i in range(1, 19)]
    write_run(tmp_path / "run", config, records)
    findings = diagnose_run(tmp_path / "run").findings
    assert (findings[0].name if findings else None) == finding


def test_without_sample_records_doctor_samples_last_pt(tiny_config):
    """logging.diagnostics=false logs no saturation against real images: doctor measures it on last.pt's samples."""
    run = train(tiny_config("model.architecture=resnet", "model.final_init_scale=20", *SHORT,
                            "logging.diagnostics=false")).run_dir
    assert not any("saturation_excess" in r for r in read_jsonl(run / "metrics.jsonl"))
    assert "tanh saturation" not in [f.name for f in diagnose_run(run, checkpoints=False).findings]
    diagnosis = diagnose_run(run)
    assert diagnosis.findings[0].name == "tanh saturation", diagnosis.render()
    assert diagnosis.findings[0].steps == (32, 32)
    assert any("checkpoints/last.pt (step 32)" in note for note in diagnosis.notes)


def test_parameter_counts_of_a_run_without_records_come_from_last_pt(tiny_config):
    """A run that predates the logged counts and summary.json: the networks in last.pt are counted."""
    run = train(tiny_config("model.discriminator_base_channels=32", "training.max_steps=4")).run_dir
    records = [r for r in read_jsonl(run / "metrics.jsonl") if "g_params" not in r]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "summary.json").unlink()
    assert "G/D capacity imbalance" not in [f.name for f in diagnose_run(run, checkpoints=False).findings]
    finding = next(f for f in diagnose_run(run).findings if f.name == "G/D capacity imbalance")
    assert "G has 11,563 parameters and D 165,729" in finding.symptom


def test_fid_regression_behind_best_pt_is_read_from_the_checkpoints(tiny_config):
    """No evaluation records in metrics.jsonl: best.pt's step and the scores last.pt's evaluation hook kept."""
    run = train(tiny_config("training.max_steps=8")).run_dir
    last = run / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    torch.save({**state, "step": 4}, run / "checkpoints" / "best.pt")
    torch.save({**state, "hooks": {**state["hooks"], "evaluation": {"best": 30.0, "last": {"fid": 45.0}}}}, last)
    finding = diagnose_run(run).findings[0]
    assert finding.name == "FID regression" and finding.steps == (4, 8)
    assert "30 at step 4 (checkpoints/best.pt) and is 45" in finding.symptom
    torch.save({**state, "hooks": {**state["hooks"], "evaluation": {"best": 30.0, "last": {"fid": 31.0}}}}, last)
    assert diagnose_run(run).healthy
