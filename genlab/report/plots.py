"""Matplotlib figures written as PNG files, on the Agg canvas: no display and no global pyplot state."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


def new_figure(figsize: tuple[float, float] = (6.4, 4.8)) -> Any:
    """A matplotlib Figure drawn on its own Agg canvas (safe in notebooks and headless machines alike)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Any, path: str | Path) -> Path:
    """Write `figure` as a PNG at `path`, making its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    return path


def most_ambiguous(probs: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the `n` outputs closest to 0.5, most ambiguous first (ties by index)."""
    distance = (probs.double() - 0.5).abs()
    order = torch.sort(distance, stable=True).indices
    return order[: min(n, len(order))]


def ambiguous_grid(images: torch.Tensor, probs: torch.Tensor, path: str | Path, n: int = 64,
                   class_names: tuple[str, str] | None = None) -> Path:
    """A grid of the `n` generated images the classifier finds most ambiguous, each titled with C(x).

    `images` are in [-1, 1]; p is the probability of class 1 (the first class of the pair).
    """
    picked = most_ambiguous(probs, n)
    cols = max(1, math.ceil(math.sqrt(len(picked))))
    rows = max(1, math.ceil(len(picked) / cols))
    fig = new_figure((1.3 * cols, 1.45 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, picked.tolist(), strict=False):
        image = ((images[index].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy()
        if image.shape[2] == 1:
            ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(image)
        ax.set_title(f"{float(probs[index]):.3f}", fontsize=8)
    label = f"C(x) = P({class_names[0]})" if class_names else "C(x)"
    fig.suptitle(f"Most ambiguous generated images ({label})", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_output_histograms(outputs: Mapping[str, torch.Tensor], path: str | Path, bins: int = 20,
                           title: str = "Classifier output on generated images") -> Path:
    """Overlaid histograms of classifier outputs, one per label (e.g. step 1 and step 2)."""
    fig = new_figure((6, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    edges = torch.linspace(0, 1, bins + 1).numpy()
    for label, probs in outputs.items():
        ax.hist(probs.double().clamp(0, 1).cpu().numpy(), bins=edges, alpha=0.55, label=label, edgecolor="black",
                linewidth=0.4)
    ax.axvline(0.5, color="black", linestyle="--", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("C(G(z))")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)
