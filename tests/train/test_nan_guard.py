"""The NaN guard: bad steps are skipped and counted; a run that stays bad reloads last.pt with lower rates."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.diagnose.doctor import diagnose_run
from genlab.runs.checkpoint import load_checkpoint
from genlab.train import train
from genlab.train.diagnostics import TrainingDiverged
from genlab.train.hooks import Hook
from genlab.train.logging import read_jsonl


class PoisonWeights(Hook):
    """Fills the generator's first weight with NaN after `at_step` (every later step then has NaN losses)."""

    name = "poison"

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def after_step(self, state, stats):
        if state.step == self.at_step:
            with torch.no_grad():
                next(state.method.generator.parameters()).fill_(float("nan"))


def test_injected_nan_is_skipped_then_the_guard_reloads_last_checkpoint_and_the_run_ends(tiny_config):
    result = train(tiny_config("training.num_epochs=2", "training.nan_patience=3", "training.nan_lr_factor=0.5"),
                   hooks=[PoisonWeights(at_step=7)])
    assert result.step == result.total_steps == 16 and not result.interrupted
    records = read_jsonl(result.run_dir / "metrics.jsonl")
    assert max(r["nonfinite_steps"] for r in records if "nonfinite_steps" in r) == 3
    recovery = next(r for r in records if "nan_recoveries" in r)
    assert recovery == {"step": 10, "nan_recoveries": 1.0, "lr_scale": 0.5}
    after = [r for r in records if "loss_g" in r and r["step"] > 10]
    assert after and all(math.isfinite(r["loss_g"]) and math.isfinite(r["loss_d"]) for r in after)
    assert all(r["lr_g"] == pytest.approx(1e-4) for r in after)  # 2e-4 × 0.5, in effect and logged
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert state["method"]["opt_g"]["param_groups"][0]["lr_scale"] == 0.5  # a resume keeps the lower rate
    assert all(torch.isfinite(v).all() for v in state["method"]["generator"].values() if v.is_floating_point())
    assert diagnose_run(result.run_dir).findings[0].name == "divergence (NaN/Inf)"


def test_guard_stops_once_out_of_recoveries(tiny_config):
    with pytest.raises(TrainingDiverged, match="after 0 recoveries"):
        train(tiny_config("training.num_epochs=2", "training.nan_max_recoveries=0"), hooks=[PoisonWeights(at_step=2)])


def test_a_nan_gradient_step_leaves_the_weights_untouched(tiny_config):
    from genlab.methods.optim import MixedPrecision

    net = torch.nn.Linear(3, 1)
    before = net.weight.detach().clone()
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.full((2, 3), float("nan"))).sum().backward()
    norm = MixedPrecision("none", torch.device("cpu")).step(opt, net)
    assert not math.isfinite(float(norm)) and torch.equal(net.weight, before) and not opt.state


def test_guard_goes_back_to_the_start_when_no_checkpoint_exists_yet(tiny_config, caplog):
    with caplog.at_level("WARNING", logger="genlab"):
        result = train(tiny_config("training.num_epochs=2", "checkpoint.every_steps=100"), hooks=[PoisonWeights(2)])
    assert "reloaded the start of this session" in caplog.text and result.step == 16
    last = [r for r in read_jsonl(result.run_dir / "metrics.jsonl") if "loss_g" in r][-1]
    assert last["step"] == 16 and math.isfinite(last["loss_g"])


class PoisonGradients(Hook):
    """Makes the discriminator's first weight's gradient NaN for steps `first`..`last` (1-based, as logged): its
    losses stay finite, so only the gradient check can see those steps."""

    name = "poison_gradients"

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self.handle = None
        self.weights: list[torch.Tensor] = []

    def after_step(self, state, stats):
        weight = next(state.method.discriminator.parameters())
        if self.first - 1 <= state.step <= self.last:
            self.weights.append(weight.detach().clone())
        if state.step == self.first - 1:
            self.handle = weight.register_hook(lambda grad: torch.full_like(grad, float("nan")))
        elif state.step == self.last and self.handle is not None:
            self.handle.remove()


def test_steps_with_finite_losses_but_nan_gradients_are_skipped_and_counted(tiny_config):
    poison = PoisonGradients(first=4, last=5)
    result = train(tiny_config("training.num_epochs=1", "training.nan_patience=5"), hooks=[poison])
    assert result.step == 8 and not result.interrupted
    records = read_jsonl(result.run_dir / "metrics.jsonl")
    counted = [r for r in records if "nonfinite_steps" in r]
    assert [(r["step"], r["nonfinite_steps"], r["nonfinite_gradient_steps"]) for r in counted] == [(4, 1.0, 1.0),
                                                                                                    (5, 2.0, 2.0)]
    assert torch.equal(poison.weights[0], poison.weights[-1])  # D's weights stayed put over the poisoned steps
    assert not any("nan_recoveries" in r for r in records)
    assert all(math.isfinite(r["loss_d"]) for r in records if "loss_d" in r)
    finding = diagnose_run(result.run_dir).findings[0]
    assert finding.name == "divergence (NaN/Inf)" and "2 of them with finite losses but NaN/Inf gradients" in \
        finding.symptom


def test_one_device_sync_checks_the_gradient_norm_and_the_losses_together():
    from genlab.methods.optim import MixedPrecision

    precision = MixedPrecision("none", torch.device("cpu"))
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.ones(2, 3)).sum().backward()
    precision.step(opt, net, {"loss_d": torch.tensor(float("inf")), "d_real": torch.tensor(float("nan"))})
    assert precision.take_verdict() == (0, False)  # a finite gradient steps; the loss verdict is the guard's
    assert precision.take_verdict() == (0, None)  # read once: the next training step starts afresh
    net(torch.full((2, 3), float("nan"))).sum().backward()
    precision.step(opt, net, {"loss_d": torch.tensor(1.0)})
    assert precision.take_verdict() == (1, True)
