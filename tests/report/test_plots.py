"""The figures a GASTeN user looks at: the most ambiguous samples and the output histograms."""

from __future__ import annotations

import torch
from PIL import Image

from genlab.report import ambiguous_grid, most_ambiguous, plot_output_histograms


def test_most_ambiguous_orders_by_distance_from_half():
    probs = torch.tensor([0.9, 0.53, 0.15, 0.5, 0.44, 0.48])
    assert most_ambiguous(probs, 4).tolist() == [3, 5, 1, 4]
    assert most_ambiguous(probs, 10).tolist() == [3, 5, 1, 4, 2, 0]
    assert most_ambiguous(torch.tensor([0.25, 0.75, 0.5]), 3).tolist() == [2, 0, 1]  # ties keep index order


def test_figures_are_png_files(tmp_path):
    images = torch.rand(10, 1, 8, 8) * 2 - 1
    probs = torch.linspace(0, 1, 10)
    grid = ambiguous_grid(images, probs, tmp_path / "a" / "grid.png", n=4, class_names=("Dress", "T-shirt"))
    hist = plot_output_histograms({"step 1": probs, "step 2": torch.full((10,), 0.5)}, tmp_path / "hist.png", bins=10)
    for path in (grid, hist):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 100
