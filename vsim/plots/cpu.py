"""IOPS against the host CPU they cost: each design's line over iodepth, and where it spends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from vsim.plots.style import design_colors, finish, legend_below, new_figure, styled, thousands
from vsim.plots.tables import panel_keys, panel_title, per_run, require_columns, unique

__all__ = ["plot_cpu"]


def plot_cpu(
    df: pd.DataFrame,
    *,
    hue: str = "design",
    title: str | None = None,
    palette: Mapping[str, str] | None = None,
) -> Figure:
    """IOPS (y) against the host CPU cores the backend keeps busy (x: IOPS x host CPU per
    I/O, polling and wake-ups included), one line per design through its iodepths (the first
    and last labelled), one panel per rw/bs/profile/numjobs. Up and to the left is better: a
    design that polls moves right for the IOPS it gains."""
    need = (hue, "iodepth", "iops", "host_cpu_us_per_io")
    require_columns(df, need, "plot_cpu")
    with styled():
        keys = panel_keys(df, always=("rw",))
        k = [*keys, hue, "iodepth"]
        iops = per_run(df, k, "iops").groupby(k, sort=False, dropna=False)["iops"].mean()
        # The CPU columns are per point (every direction's row has the same one).
        cpu = df.groupby(k, sort=False, dropna=False)[["host_cpu_us_per_io"]].mean()
        t = cpu.join(iops).reset_index()
        t["cores"] = t["iops"] * t["host_cpu_us_per_io"] / 1e6
        panels = unique(tuple(r) for r in t[keys].itertuples(index=False))
        colors = design_colors(unique(t[hue]), palette)
        fig, axes = new_figure(len(panels), sharey=False)
        for ax, pv in zip(axes, panels, strict=True):
            part = t[(t[keys] == pd.Series(pv, index=keys)).all(axis=1)]
            for lab in unique(part[hue]):
                g = part[part[hue] == lab].sort_values("iodepth")
                ax.plot(g["cores"], g["iops"], "-o", color=colors[lab], lw=2.0, ms=5, zorder=3)
                for _, row in g.iloc[[0, -1]].iterrows():
                    ax.annotate(
                        f"qd {int(row['iodepth'])}",
                        (row["cores"], row["iops"]),
                        xytext=(4, -10),
                        textcoords="offset points",
                        fontsize=8,
                        color=colors[lab],
                    )
            ax.set_title(panel_title(keys, pv))
            ax.set_xlabel("host CPU cores busy (backend threads)")
            ax.set_xlim(left=0)
            ax.set_ylim(bottom=0)
            ax.yaxis.set_major_formatter(FuncFormatter(thousands))
        axes[0].set_ylabel("IOPS (I/Os per second)")
        handles: list[Any] = [
            Line2D([], [], color=colors[lab], marker="o", lw=2, label=str(lab))
            for lab in unique(t[hue])
        ]
        legend_below(fig, handles, len(handles))
        finish(fig, title, "IOPS vs host CPU", df)
    return fig
