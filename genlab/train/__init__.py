"""Training: the loop, EMA, checkpoints, run directories, logging and diagnostics.

`train` and `TrainResult` are imported lazily so that methods can use `genlab.train.ema`
without importing the loop (which imports the methods).
"""

from typing import Any

__all__ = ["TrainResult", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from genlab.train import loop

        return getattr(loop, name)
    raise AttributeError(name)
