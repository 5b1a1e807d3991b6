"""Speed switches every family shares: channels-last memory order and torch.compile (`training.*`).

They change how a step is computed, never what: channels-last reorders memory (convolutions give the
same values up to float rounding), and `compile` runs each network's forward through torch.compile
*in place* (`nn.Module.compile`), so the module objects, their `state_dict` keys (no `_orig_mod.`
prefix) and hence checkpoints are exactly those of an uncompiled run. Where torch.compile is missing
or cannot build code here (e.g. no C compiler on a CPU), training goes on uncompiled after one warning.
The fused Adam kernel, the third switch, lives with the optimisers (`genlab.methods.optim.adam`).

On a CPU, `reuse_cpu_memory` (on by default) tunes the C library's allocator instead: glibc hands large freed
blocks back to the system (munmap, heap trimming) and faults every page in again when the next step allocates
them, thousands of minor page faults per step of the default DCGAN; with fixed thresholds it keeps them.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import platform
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn

log = logging.getLogger("genlab")

#: Device type -> why torch.compile does not work there (None: it works); probed once per process.
_COMPILE_PROBES: dict[str, str | None] = {}


def _probe_function(x: torch.Tensor) -> torch.Tensor:
    return (x.sin() * 2 + 1).relu().sum()


def compile_problem(device: torch.device) -> str | None:
    """Why torch.compile cannot be used on `device` (None when it can): a tiny function compiled, run and differentiated.

    A missing compiler or an unsupported Python only shows when the first compiled call runs, so this
    runs one (forward and backward) instead of trusting that `torch.compile` exists. Cached per device type.
    """
    if device.type in _COMPILE_PROBES:
        return _COMPILE_PROBES[device.type]
    problem = None
    if not hasattr(torch, "compile"):
        problem = f"torch {torch.__version__} has no torch.compile"
    else:
        try:
            x = torch.linspace(-1, 1, 8, device=device, requires_grad=True)
            torch.compile(_probe_function, dynamic=False)(x).backward()
        except Exception as err:  # any failure means: do not compile here
            problem = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else 'no message'}"
    _COMPILE_PROBES[device.type] = problem
    return problem


def to_channels_last(modules: Iterable[nn.Module]) -> None:
    """Store every 4-d weight of `modules` channels-last (in place: parameter objects, and so optimisers, stay)."""
    for module in modules:
        module.to(memory_format=torch.channels_last)


def _eager_fallback(module: nn.Module, compiled: Callable[..., Any]) -> Callable[..., Any]:
    """`compiled` (the module's compiled call), which turns into the plain call for good if compiling ever fails."""

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return compiled(*args, **kwargs)
        except Exception as err:
            module._compiled_call_impl = None  # back to nn.Module's plain __call__ from now on
            result = module._call_impl(*args, **kwargs)  # a genuine error in the network raises here instead
            log.warning("training.compile: torch.compile failed on %s (%s: %s); it runs uncompiled from here on.",
                        type(module).__name__, type(err).__name__, str(err).strip().splitlines()[0] if str(err) else "")
            return result

    return call


def compile_networks(modules: Iterable[nn.Module], device: torch.device) -> bool:
    """torch.compile each module in place (same objects, same state_dict keys); False, after one warning, where it cannot.

    Modules whose compiled forward later fails to build fall back to their plain forward, again with a warning.
    """
    problem = compile_problem(device)
    if problem is not None:
        log.warning("training.compile=true, but torch.compile does not work on %s here (%s); training runs "
                    "uncompiled. Install a C compiler (gcc/clang) for CPU code, or set training.compile=false.",
                    device.type, problem)
        return False
    for module in modules:
        module.compile(dynamic=False)
        module._compiled_call_impl = _eager_fallback(module, module._compiled_call_impl)
    return True


#: glibc's mallopt parameters (malloc.h) and the values reuse_cpu_memory sets: blocks up to 32 MiB (glibc's largest
#: allowed threshold on 64-bit) come from the heap instead of their own mmap, and up to 1 GiB of free memory at the
#: heap's top stays mapped. Setting them also turns off glibc's sliding thresholds, which move with each free.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES = 32 * 2**20, 2**30


@functools.cache
def reuse_freed_cpu_memory() -> bool:
    """Keep freed CPU memory for reuse (glibc's mallopt, once per process); False where the C library is not glibc.

    Process-wide and for good: glibc cannot go back to its sliding thresholds.
    """
    tuned = False
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        accepted = [mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)]
        tuned = all(accepted)  # mallopt returns 1 on success
    log.debug("training.reuse_cpu_memory: %s", "glibc thresholds set" if tuned else "not glibc, left alone")
    return tuned


def apply_speed_switches(training: Any, device: torch.device, trained: Iterable[nn.Module | None],
                         averaged: Iterable[nn.Module | None] = (),
                         compiled: Iterable[nn.Module | None] | None = None) -> None:
    """training.reuse_cpu_memory on a CPU; training.channels_last on the `trained` networks and their EMA copies
    (`averaged`), then training.compile on `compiled` (default: the trained ones; EMA copies only sample, so they
    stay uncompiled). Call after the EMA copies are made, so they copy no compiled state."""
    trained = [m for m in trained if m is not None]
    if training.reuse_cpu_memory and device.type == "cpu":
        reuse_freed_cpu_memory()
    if training.channels_last:
        to_channels_last([*trained, *(m for m in averaged if m is not None)])
    if training.compile:
        compile_networks([m for m in (trained if compiled is None else compiled) if m is not None], device)
