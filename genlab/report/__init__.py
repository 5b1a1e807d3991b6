"""What a user looks at: matplotlib figures of classifier outputs and of the most ambiguous samples."""

from genlab.report.plots import ambiguous_grid, most_ambiguous, plot_output_histograms

__all__ = ["ambiguous_grid", "most_ambiguous", "plot_output_histograms"]
