"""Speed switches (training.channels_last, compile, fused_adam, amp=bf16; data.prefetch/persistent workers).

Each switch trains the same tiny run as without it and must end at the same weights: within float
tolerance for channels_last and fused Adam (different kernels round differently), bit for bit where
compile falls back. A real torch.compile on the CPU needs a C compiler and over a minute of warm-up,
so that test runs only with GENLAB_TEST_COMPILE=1; the fallback tests force compile to fail instead.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from genlab.config import load_config
from genlab.data import EpochLoader, build_dataset
from genlab.errors import ConfigError
from genlab.generate import load_run
from genlab.methods import build_method
from genlab.methods import speed as speed_module
from genlab.methods.optim import adam
from genlab.models import DataShape
from genlab.runs.checkpoint import load_checkpoint
from genlab.train.logging import read_jsonl
from genlab.train.loop import train

#: Largest |Δ| allowed between the weights of a switched run and the plain one after 8 steps. Measured:
#: channels_last 8e-7, fused vs foreach Adam 1.5e-8, while lr_g 0.5 % higher (2.01e-4) moves them by 3.4e-4.
TOLERANCE = 1e-4
TWO_EPOCHS = ("training.num_epochs=1",)  # 8 steps of batch 8 on 64 synthetic images


def _weights(run_dir) -> dict[str, torch.Tensor]:
    method = load_checkpoint(run_dir / "checkpoints" / "last.pt")["method"]
    return {f"{net}.{key}": value for net in ("generator", "discriminator") for key, value in method[net].items()
            if value.is_floating_point()}


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture
def plain_weights(tiny_config):
    return _weights(train(tiny_config("name=plain", *TWO_EPOCHS)).run_dir)


def test_channels_last_trains_to_the_same_weights(tiny_config, plain_weights):
    cfg = tiny_config("name=cl", "training.channels_last=true", *TWO_EPOCHS)
    method = build_method(cfg, DataShape(16, 1, 4), torch.device("cpu"))
    convs = [m.weight for m in method.discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert all(w.is_contiguous(memory_format=torch.channels_last)
               for w in method.ema.model.parameters() if w.dim() == 4 and w.shape[-1] > 1)
    weights = _weights(train(cfg).run_dir)
    assert _max_difference(weights, plain_weights) < TOLERANCE


def test_fused_adam_trains_to_the_same_weights(tiny_config, plain_weights):
    cfg = tiny_config("name=fused", "training.fused_adam=true", *TWO_EPOCHS)
    method = build_method(cfg, DataShape(16, 1, 4), torch.device("cpu"))
    assert method.opt_g.defaults["fused"] and method.opt_d.defaults["fused"]
    assert _max_difference(_weights(train(cfg).run_dir), plain_weights) < TOLERANCE


def test_fused_adam_step_equals_foreach_adam():
    torch.manual_seed(0)
    params = [torch.randn(16, 8, 3, 3), torch.randn(7)]
    copies = {kind: [nn.Parameter(p.clone()) for p in params] for kind in ("foreach", "fused")}
    optimizers = {kind: adam(ps, 2e-4, (0.5, 0.999), 0.0, fused=kind == "fused") for kind, ps in copies.items()}
    assert optimizers["fused"].defaults["fused"] and optimizers["foreach"].defaults["foreach"]
    for step in range(20):
        grads = [torch.randn_like(p) * (step + 1) for p in params]
        for kind, ps in copies.items():
            for p, g in zip(ps, grads, strict=True):
                p.grad = g.clone()
            optimizers[kind].step()
    for a, b in zip(copies["foreach"], copies["fused"], strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-6)
    assert not torch.equal(copies["fused"][0], params[0])  # the optimisers did move the weights


def test_bf16_autocast_runs_with_every_switch(tiny_config):
    cfg = tiny_config("name=bf16", "training.amp=bf16", "training.channels_last=true", "training.fused_adam=true",
                      *TWO_EPOCHS)
    run = train(cfg).run_dir
    assert all(torch.isfinite(w).all() for w in _weights(run).values())


def _failing_compile(*args, **kwargs):
    """A torch.compile whose compiled functions fail when first called, as inductor does without a C compiler."""

    def compiled(*call_args, **call_kwargs):
        raise RuntimeError("InductorError: no working C compiler found")

    return compiled


def test_compile_falls_back_with_one_warning_when_it_cannot_work(tiny_config, plain_weights, monkeypatch, caplog):
    monkeypatch.setattr(speed_module, "_COMPILE_PROBES", {})
    monkeypatch.setattr(torch, "compile", _failing_compile)
    with caplog.at_level(logging.WARNING, logger="genlab"):
        run = train(tiny_config("name=nocompile", "training.compile=true", *TWO_EPOCHS)).run_dir
    warnings = [r.getMessage() for r in caplog.records if "training.compile" in r.getMessage()]
    assert len(warnings) == 1 and "no working C compiler" in warnings[0] and "uncompiled" in warnings[0]
    assert _max_difference(_weights(run), plain_weights) == 0.0


def test_compile_failing_at_the_first_step_falls_back_to_the_plain_forward(tiny_config, plain_weights, monkeypatch,
                                                                           caplog):
    def compile_in_place(module, *args, **kwargs):
        module._compiled_call_impl = _failing_compile()

    monkeypatch.setattr(speed_module, "compile_problem", lambda device: None)
    monkeypatch.setattr(nn.Module, "compile", compile_in_place)
    with caplog.at_level(logging.WARNING, logger="genlab"):
        run = train(tiny_config("name=latefail", "training.compile=true", *TWO_EPOCHS)).run_dir
    warnings = [r.getMessage() for r in caplog.records if "training.compile" in r.getMessage()]
    assert len(warnings) == 2  # one per network (G, D), then never again
    assert _max_difference(_weights(run), plain_weights) == 0.0


def test_checkpoints_of_switched_runs_load_and_resume_without_switches(tiny_config, monkeypatch):
    monkeypatch.setattr(speed_module, "compile_problem", lambda device: None)
    monkeypatch.setattr(nn.Module, "compile", lambda module, *a, **k: setattr(module, "_compiled_call_impl",
                                                                              module._call_impl))
    switched = train(tiny_config("name=switched", "training.channels_last=true", "training.compile=true",
                                 "training.fused_adam=true", *TWO_EPOCHS)).run_dir
    state = load_checkpoint(switched / "checkpoints" / "last.pt")["method"]
    assert not any("_orig_mod" in key for net in ("generator", "discriminator") for key in state[net])
    plain_cfg = tiny_config("name=reader", *TWO_EPOCHS)
    method = build_method(plain_cfg, DataShape(16, 1, 4), torch.device("cpu"))
    method.load_state_dict(state)
    loaded = method.generator.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state["generator"].items())
    loaded = load_run(switched)  # genlab sample / evaluate: no compilation for a one-off draw
    assert loaded.cfg.training.compile and loaded.method.generator._compiled_call_impl is None
    resumed = train(resume=switched, overrides=["training.channels_last=false", "training.compile=false",
                                                "training.fused_adam=false", "training.num_epochs=2"])
    assert resumed.step == 16


@pytest.mark.skipif(os.environ.get("GENLAB_TEST_COMPILE") != "1",
                    reason="a real torch.compile on the CPU takes over a minute; set GENLAB_TEST_COMPILE=1")
def test_real_compile_trains_to_the_same_weights(tiny_config, plain_weights, caplog):
    with caplog.at_level(logging.WARNING, logger="genlab"):
        run = train(tiny_config("name=compiled", "training.compile=true", *TWO_EPOCHS)).run_dir
    assert not [r for r in caplog.records if "training.compile" in r.getMessage()]
    weights = _weights(run)
    assert not any("_orig_mod" in key for key in weights)
    assert _max_difference(weights, plain_weights) < TOLERANCE


def _image_folder(root, count: int = 24) -> None:
    rng = np.random.default_rng(0)
    (root / "a").mkdir(parents=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(root / "a" / f"{i:02d}.png")


def test_file_loader_with_workers_prefetch_and_persistence_gives_the_same_batches(tmp_path):
    _image_folder(tmp_path)
    cfg = load_config(None, ["data.name=imagefolder", f"data.root={tmp_path}", "data.image_size=12", "data.channels=1"])
    dataset = build_dataset(cfg.data)
    cpu = torch.device("cpu")
    plain = EpochLoader(dataset, 8, 5, cpu)
    fast = EpochLoader(dataset, 8, 5, cpu, num_workers=1, pin_memory=False, prefetch_factor=3, persistent_workers=True)
    for epoch in range(2):
        for a, b in zip(plain.epoch(epoch), fast.epoch(epoch), strict=True):
            assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert fast._file_loader is not None and fast._file_loader.persistent_workers
    mid = [b.images for b in fast.epoch(2, start_batch=1)]
    assert len(mid) == 2 and torch.equal(mid[0], next(plain.epoch(2, start_batch=1)).images)


def test_new_keys_are_described_and_strict():
    cfg = load_config(None, ["training.compile=true", "training.channels_last=true", "training.fused_adam=true",
                             "data.pin_memory=auto", "data.prefetch_factor=4", "data.persistent_workers=true"])
    assert cfg.training.compile and cfg.data.prefetch_factor == 4
    for bad in ("training.compile=3", "training.compiled=true", "data.prefetch_factor=0", "data.pin_memory=maybe"):
        with pytest.raises(ConfigError):
            load_config(None, [bad])


@pytest.mark.parametrize("family", ["vae", "ddpm"])
def test_vae_and_ddpm_train_alike_with_channels_last_and_fused_adam(family, tiny_vae_config, tiny_ddpm_config):
    """Compared by their losses: biases before a GroupNorm get pure rounding noise as gradient, which Adam turns
    into steps of ±lr, so those weights differ by ~lr between any two kernels while the outputs agree."""
    make = tiny_vae_config if family == "vae" else tiny_ddpm_config
    losses = {}
    for name, switches in (("plain", ()), ("switched", ("training.channels_last=true", "training.fused_adam=true"))):
        run = train(make(f"name={name}", "training.max_steps=6", *switches)).run_dir
        losses[name] = [r["loss"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]
    assert len(losses["plain"]) == 6
    assert losses["switched"] == pytest.approx(losses["plain"], rel=1e-4)


FAULT_PROBE = """
import resource, sys, tempfile
from genlab.config import load_config
from genlab.train.loop import train
for reuse in ("false", "true"):  # false first: glibc's own thresholds until a run sets them
    faults = {}
    def count(step, stats):
        faults[step] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with tempfile.TemporaryDirectory() as out:
        train(load_config("fashion_mnist_dcgan", ["data.name=synthetic", "data.num_samples=256", "device=cpu",
              "logging.progress=false", "logging.report=false", "training.max_steps=10",
              f"training.reuse_cpu_memory={reuse}", f"output_dir={out}"]), callbacks=(count,))
    print((faults[10] - faults[4]) / 6)
"""


@pytest.mark.skipif(not (sys.platform == "linux" and platform.libc_ver()[0] == "glibc"), reason="glibc's mallopt")
def test_reuse_cpu_memory_stops_the_page_faults_of_every_step():
    """The default DCGAN at batch 64 frees and re-allocates its large blocks every step; with glibc's own sliding
    thresholds they go back to the system and fault in again (measured 2,600-9,600 minor faults per step), with
    training.reuse_cpu_memory they stay (0-40). In a fresh process: the switch acts on the whole process."""
    probe = subprocess.run([sys.executable, "-c", FAULT_PROBE], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert probe.returncode == 0, probe.stderr
    without, with_reuse = (float(line) for line in probe.stdout.split())
    assert without > 300, without  # the churn the switch is for (a glibc without it would make this test moot)
    assert with_reuse < without / 10, (with_reuse, without)
