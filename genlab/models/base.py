"""What every architecture is told about the data it models."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataShape:
    """What an architecture needs to know about the data."""

    image_size: int
    channels: int
    num_classes: int
