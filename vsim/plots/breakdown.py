"""Latency breakdown figures: where each I/O's time goes, stage by stage."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import (
    FuncFormatter,
)

from vsim.breakdown import SEGMENT_LABELS, SEGMENT_NAMES
from vsim.plots.style import (
    SEGMENT_COLORS,
    VsimFigure,
    design_colors,
    finish,
    styled,
)
from vsim.plots.tables import (
    panel_keys,
    panel_title,
    require_columns,
    unique,
)

__all__ = [
    "plot_breakdown",
]

# ------------------------------------------------------------------------------ breakdown


def plot_breakdown(
    bd: pd.DataFrame,
    *,
    hue: str = "design",
    title: str | None = None,
    palette: Mapping[str, str] | None = None,
    share: bool = False,
) -> Figure:
    """Where the time goes: stacked bars of the mean time per I/O in each segment.

    `bd` is a tidy breakdown (vsim.breakdown.breakdown / breakdown_trace, concatenated). One bar
    per `hue` value (design) and iodepth, grouped by iodepth; one panel per rw/bs/profile. Bar
    labels are coloured like the designs in the other plots; `share` plots fractions of the
    total instead of microseconds. Measured and simulated bars (`source`) are told apart.
    """
    require_columns(bd, (hue, "iodepth", "stage", "mean_us"), "plot_breakdown")
    with styled():
        keys = panel_keys(bd, always=("rw",))
        d = bd.copy()
        two_sources = "source" in d.columns and d["source"].nunique() > 1
        d["_bar"] = d[hue].astype(str)
        if two_sources:
            d["_bar"] = d["_bar"] + " · " + d["source"].astype(str)
        value = "share" if share else "mean_us"
        panels = unique(tuple(r) for r in d[keys].itertuples(index=False))
        colors = design_colors(unique(d[hue].astype(str)), palette)
        bars_per_panel = [
            d[(d[keys] == pd.Series(pv, index=keys)).all(axis=1)]
            .drop_duplicates(["iodepth", "_bar"])
            .shape[0]
            for pv in panels
        ]
        heights = [0.9 + 0.32 * n for n in bars_per_panel]
        fig = VsimFigure(figsize=(10.0, 1.3 + sum(heights)), layout="constrained")
        grid = fig.subplots(
            len(panels), 1, squeeze=False, sharex=True, gridspec_kw={"height_ratios": heights}
        )
        axes: list[Axes] = list(grid.flat)
        xmax = 0.0
        totals_by_ax: list[list[tuple[float, float]]] = []
        for ax, pv in zip(axes, panels, strict=True):
            part = d[(d[keys] == pd.Series(pv, index=keys)).all(axis=1)]
            ypos: list[float] = []
            ticklabels: list[str] = []
            tickcolors: list[str] = []
            totals: list[tuple[float, float]] = []
            y = 0.0
            for qd in sorted(unique(part["iodepth"])):
                at_qd = part[part["iodepth"] == qd]
                for bar in unique(at_qd["_bar"]):
                    rows = at_qd[at_qd["_bar"] == bar].set_index("stage")
                    left = 0.0
                    for seg in SEGMENT_NAMES:
                        if seg not in rows.index:
                            continue
                        v = float(rows.at[seg, value])
                        ax.barh(
                            y,
                            v,
                            left=left,
                            height=0.78,
                            color=SEGMENT_COLORS[seg],
                            edgecolor="white",
                            linewidth=0.6,
                        )
                        left += v
                    totals.append((y, left))
                    xmax = max(xmax, left)
                    ypos.append(y)
                    ticklabels.append(f"QD{qd}  {bar}")
                    tickcolors.append(colors[str(rows[hue].iloc[0])])
                    y += 1.0
                y += 0.5
            ax.set_yticks(ypos, ticklabels)
            for tick, c in zip(ax.get_yticklabels(), tickcolors, strict=True):
                tick.set_color(c)
                tick.set_fontweight("bold")
            ax.set_ylim(y - 0.5 - 0.2, -0.7)
            ax.grid(axis="y", visible=False)
            if len(panels) > 1:
                ax.set_title(panel_title(keys, pv), loc="left")
            totals_by_ax.append(totals)
        unit = "" if share else " µs"
        for ax, totals in zip(axes, totals_by_ax, strict=True):
            ax.set_xlim(0, xmax * 1.12)
            for y, tot in totals:
                text = f"{tot:.0%}" if share else f"{tot:,.0f}{unit}"
                ax.text(
                    tot + xmax * 0.008, y, text, va="center", ha="left", fontsize=8.5, color=".25"
                )
            for patch in ax.patches:
                w = patch.get_width()  # type: ignore[attr-defined]
                if w > xmax * 0.035:
                    x0 = patch.get_x() + w / 2  # type: ignore[attr-defined]
                    y0 = patch.get_y() + patch.get_height() / 2  # type: ignore[attr-defined]
                    ax.text(
                        x0,
                        y0,
                        f"{w:.0%}" if share else f"{w:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7.5,
                        color=".15",
                    )
        axes[-1].set_xlabel(
            "share of the mean total latency" if share else "mean time per I/O (µs)"
        )
        if share:
            axes[-1].xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0%}"))
        handles = [Patch(color=SEGMENT_COLORS[s], label=SEGMENT_LABELS[s]) for s in SEGMENT_NAMES]
        fig.legend(handles=handles, loc="outside lower center", ncol=3)
        finish(fig, title, "Where the time goes", bd)
    return fig
