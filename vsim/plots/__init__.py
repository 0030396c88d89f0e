"""Figures of sweeps and measurements (seaborn style), and a sweep's one-page report."""

from vsim.plots.breakdown import plot_breakdown
from vsim.plots.cdf import cdf_samples, plot_cdf
from vsim.plots.figures import PLOT_KINDS, plot_iops, plot_kind, plot_latency, save
from vsim.plots.report import REPORT_FORMATS, write_report
from vsim.plots.style import DESIGN_COLORS, SEGMENT_COLORS, VsimFigure, design_colors

__all__ = [
    "DESIGN_COLORS",
    "PLOT_KINDS",
    "REPORT_FORMATS",
    "SEGMENT_COLORS",
    "VsimFigure",
    "cdf_samples",
    "design_colors",
    "plot_breakdown",
    "plot_cdf",
    "plot_iops",
    "plot_kind",
    "plot_latency",
    "save",
    "write_report",
]
