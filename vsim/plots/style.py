"""The look of vsim's figures: colours, style, figure layout and shared axis helpers."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import matplotlib as mpl
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    NullLocator,
)

from vsim.plots.tables import (
    constants,
)

__all__ = [
    "DESIGN_COLORS",
    "LINESTYLES",
    "RC",
    "SEGMENT_COLORS",
    "VsimFigure",
    "design_colors",
    "finish",
    "iodepth_axis",
    "legend_below",
    "marker_size",
    "new_figure",
    "styled",
    "thousands",
]

#: Fixed colours of the preset designs (seaborn's colour-blind palette), the same in every plot.
DESIGN_COLORS: dict[str, str] = {
    "virtio-blk": "#0173b2",
    "vhost-blk": "#de8f05",
    "virtio-blk-batched": "#029e73",
    "qemu-iothread": "#cc78bc",
    "iothread-vq-mapping": "#d55e00",
    "vhost-blk-mq": "#56b4e9",
    "vhost-user-blk": "#ca9161",
}
# Colours for other labels (variants, profiles), handed out in order of first appearance.
_EXTRA_COLORS = ("#cc78bc", "#d55e00", "#56b4e9", "#ca9161", "#949494", "#ece133", "#fbafe4")
#: Colours of the latency-breakdown segments: the guest in blues, the notification path in pink,
#: the backend in orange/green, the disk a neutral grey (it often dominates; the host's share
#: should stand out against it).
SEGMENT_COLORS: dict[str, str] = {
    "guest_submit": "#8da0cb",
    "kick_queue": "#e78ac3",
    "backend_submit": "#fc8d62",
    "disk": "#c8c8c8",
    "completion": "#66c2a5",
    "signal_reap": "#ffd92f",
}
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 1)))
RC: dict[str, Any] = {
    **sns.axes_style("whitegrid"),
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "sans-serif"],
    "font.size": 10.0,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10.0,
    "axes.edgecolor": ".7",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.color": ".88",
    "legend.frameon": False,
    "legend.fontsize": 9.0,
    "xtick.bottom": True,
    "ytick.left": True,
    "figure.titlesize": 12.5,
    "figure.titleweight": "bold",
    "svg.hashsalt": "vsim",
}


def styled() -> AbstractContextManager[None]:
    """vsim's style for the figures built inside (rcParams restored on exit)."""
    rc: Any = RC
    return mpl.rc_context(rc)


class VsimFigure(Figure):
    """A matplotlib Figure that shows itself as a PNG in Jupyter without pyplot."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100, facecolor="white")
        return buf.getvalue()


# ------------------------------------------------------------------------------ colours


def design_colors(
    labels: Iterable[str], palette: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A colour per label: `palette`, then DESIGN_COLORS, then extra colours in label order."""
    fixed = {**DESIGN_COLORS, **(palette or {})}
    out: dict[str, str] = {}
    spare = [c for c in _EXTRA_COLORS if c not in fixed.values()]
    i = 0
    for lab in labels:
        if lab in out:
            continue
        if lab in fixed:
            out[lab] = fixed[lab]
        else:
            out[lab] = spare[i % len(spare)]
            i += 1
    return out


def new_figure(
    n_panels: int,
    *,
    panel_w: float = 4.6,
    panel_h: float = 3.6,
    max_cols: int = 3,
    sharey: bool = False,
) -> tuple[Figure, list[Axes]]:
    cols = min(n_panels, max_cols)
    rows = math.ceil(n_panels / cols)
    if cols == 1:
        panel_w = max(panel_w, 6.4)
    fig = VsimFigure(figsize=(0.6 + panel_w * cols, 0.9 + panel_h * rows), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False, sharey=sharey)
    axes: list[Axes] = list(grid.flat)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def iodepth_axis(ax: Axes, values: Iterable[Any]) -> None:
    """iodepth ticks at the swept values; a log2 axis when they span a factor 8 or more."""
    qd = sorted({int(v) for v in values})
    if not qd:
        return
    log = qd[0] > 0 and qd[-1] / qd[0] >= 8
    ticks = qd
    if log:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
        if len(qd) > 12:
            ticks = sorted({qd[0], qd[-1], *(v for v in qd if v & (v - 1) == 0)})
    elif len(qd) > 12:
        ticks = qd[:: math.ceil(len(qd) / 12)]
    ax.xaxis.set_major_locator(FixedLocator([float(t) for t in ticks]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    lo, hi = qd[0], qd[-1]
    if log:
        ax.set_xlim(lo / 1.25, hi * 1.25)
    else:
        pad = max((hi - lo) * 0.06, 0.3)
        ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel("iodepth (I/Os in flight)")


def marker_size(points: int) -> float:
    """Smaller markers on lines with many points."""
    return 5.0 if points <= 12 else 3.0


def thousands(v: float, _pos: int) -> str:
    return f"{v / 1000:g}k" if abs(v) >= 1000 else f"{v:g}"


def finish(fig: Figure, title: str | None, default: str, df: pd.DataFrame | None) -> None:
    sub = constants(df) if df is not None else ""
    text = title if title is not None else default + (f": {sub}" if sub else "")
    width = int(fig.get_figwidth() * 10.5)  # characters of the bold title that fit
    fig.suptitle(textwrap.fill(text, width=max(width, 30)))


def legend_below(fig: Figure, handles: list[Any], ncol: int) -> None:
    fig.legend(handles=handles, loc="outside lower center", ncol=max(1, ncol))
