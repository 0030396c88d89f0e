"""IOPS and latency against iodepth, any figure by its kind, and saving a figure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import matplotlib as mpl
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import (
    FuncFormatter,
)

from vsim.breakdown import breakdown
from vsim.errors import ConfigError
from vsim.outputs import write_atomic
from vsim.plots.breakdown import plot_breakdown
from vsim.plots.cdf import cdf_samples, plot_cdf
from vsim.plots.cpu import plot_cpu
from vsim.plots.style import (
    design_colors,
    finish,
    iodepth_axis,
    legend_below,
    marker_size,
    new_figure,
    styled,
    thousands,
)
from vsim.plots.tables import (
    direction_totals,
    panel_keys,
    panel_title,
    per_run,
    require_columns,
    summarise,
    unique,
)
from vsim.results import Result

__all__ = ["PLOT_KINDS", "plot_iops", "plot_kind", "plot_latency", "save"]

PLOT_KINDS = ("iops", "latency", "cpu", "cdf", "breakdown")

# ------------------------------------------------------------------------------ IOPS


def plot_iops(
    df: pd.DataFrame,
    measured: pd.DataFrame | None = None,
    *,
    hue: str = "design",
    title: str | None = None,
    palette: Mapping[str, str] | None = None,
    annotate_gain: bool = True,
) -> Figure:
    """IOPS against iodepth, one line per `hue` value (design), one panel per rw/bs/profile.

    `df` is a tidy sweep table (SweepResult.to_dataframe()); IOPS of a mixed job's directions
    are added up. `measured` (the same columns, e.g. MeasuredSet.points; replicates in `repeat`)
    is drawn as hollow markers with 95 % confidence intervals over its repeats. With exactly two
    hue values, each iodepth is labelled with the second's gain over the first.
    """
    require_columns(df, (hue, "iodepth", "iops"), "plot_iops")
    with styled():
        keys = panel_keys(df, always=("rw",))
        k = [*keys, hue, "iodepth"]
        sim = summarise(per_run(df, k, "iops"), k, ["iops"])
        if "iops_hw_pct" in df.columns and not (sim["iops_ci"] > 0).any():
            # One replicate: the simulation's own 95 % CI half-width (batch means), if recorded.
            hw = df.groupby(k, sort=False, dropna=False)["iops_hw_pct"].max().rename("_hw")
            sim = sim.merge(hw.reset_index(), on=k, how="left")
            sim["iops_ci"] = sim["iops"] * sim["_hw"].fillna(0.0).clip(lower=0.0) / 100
        meas = None
        if measured is not None and len(measured):
            require_columns(measured, (hue, "iodepth", "iops"), "plot_iops (measured)")
            mkeys = [k for k in keys if k in measured.columns]
            meas = summarise(
                per_run(measured, [*mkeys, hue, "iodepth"], "iops"),
                [*mkeys, hue, "iodepth"],
                ["iops"],
            )
        panels = unique(tuple(r) for r in sim[keys].itertuples(index=False))
        labels = unique(sim[hue])
        if meas is not None:
            labels += [v for v in unique(meas[hue]) if v not in labels]
        colors = design_colors(labels, palette)
        fig, axes = new_figure(len(panels), sharey=True)
        for ax, pv in zip(axes, panels, strict=True):
            sel = (sim[keys] == pd.Series(pv, index=keys)).all(axis=1)
            part = sim[sel]
            for lab in unique(part[hue]):
                g = part[part[hue] == lab].sort_values("iodepth")
                ax.plot(
                    g["iodepth"],
                    g["iops"],
                    "-o",
                    color=colors[lab],
                    lw=2.0,
                    ms=marker_size(len(g)),
                    label=str(lab),
                    zorder=3,
                )
                if (g["iops_ci"] > 0).any():
                    ax.fill_between(
                        g["iodepth"],
                        g["iops"] - g["iops_ci"],
                        g["iops"] + g["iops_ci"],
                        color=colors[lab],
                        alpha=0.2,
                        lw=0,
                    )
            if meas is not None:
                mk = [k for k in keys if k in meas.columns]
                msel = meas[mk] == pd.Series([pv[keys.index(k)] for k in mk], index=mk)
                mpart = meas[msel.all(axis=1)] if mk else meas
                for lab in unique(mpart[hue]):
                    g = mpart[mpart[hue] == lab].sort_values("iodepth")
                    ax.errorbar(
                        g["iodepth"],
                        g["iops"],
                        yerr=g["iops_ci"],
                        fmt="s",
                        mfc="white",
                        mec=colors[lab],
                        ecolor=colors[lab],
                        mew=1.6,
                        ms=7,
                        capsize=3,
                        elinewidth=1.2,
                        zorder=4,
                    )
            labs = unique(part[hue])
            iodepth_axis(ax, part["iodepth"])
            if annotate_gain and len(labs) == 2:
                _annotate_gain(ax, fig.get_figwidth(), part, hue, labs, colors)
            ax.set_title(panel_title(keys, pv))
            ax.set_ylim(bottom=0)
            ax.yaxis.set_major_formatter(FuncFormatter(thousands))
        axes[0].set_ylabel("IOPS (I/Os per second)")
        for ax in axes:
            ax.set_ylim(0, ax.get_ylim()[1] * 1.12)
        handles: list[Any] = [
            Line2D([], [], color=colors[lab], marker="o", lw=2, label=str(lab))
            for lab in unique(sim[hue])
        ]
        if (sim["iops_ci"] > 0).any():
            handles.append(Patch(color=".5", alpha=0.25, lw=0, label="95 % CI (simulation)"))
        if meas is not None:
            handles.append(_measured_handle(meas))
        legend_below(fig, handles, len(handles))
        finish(fig, title, "IOPS vs iodepth", df)
    return fig


def _measured_handle(meas: pd.DataFrame) -> Line2D:
    repeated = "n" in meas.columns and bool((meas["n"] > 1).any())
    label = "measured (mean, 95 % CI)" if repeated else "measured"
    return Line2D([], [], ls="none", marker="s", mfc="white", mec=".3", ms=7, label=label)


def _annotate_gain(
    ax: Axes,
    fig_w: float,
    part: pd.DataFrame,
    hue: str,
    labs: list[Any],
    colors: Mapping[str, str],
) -> None:
    a = part[part[hue] == labs[0]].set_index("iodepth")["iops"]
    b = part[part[hue] == labs[1]].set_index("iodepth")["iops"]
    common = sorted(set(a.index) & set(b.index))
    if not common:
        return
    # Skip a label that would overlap the previous one (closer than about 0.3 inch).
    log = ax.get_xscale() == "log"
    pos = {qd: math.log2(qd) if log else float(qd) for qd in common}
    lo, hi = ax.get_xlim()
    span = (math.log2(hi) - math.log2(lo)) if log else hi - lo
    width_in = ax.get_position().width * fig_w
    min_gap = span * 0.3 / max(width_in, 0.5)
    last = -math.inf
    for qd in common:
        if a[qd] <= 0 or pos[qd] - last < min_gap:
            continue
        last = pos[qd]
        gain = b[qd] / a[qd] - 1
        ax.annotate(
            f"{gain:+.0%}",
            (qd, max(a[qd], b[qd])),
            xytext=(0, 7),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8.5,
            color=colors[labs[1]],
            fontweight="bold",
        )
    ax.text(
        0.02,
        0.98,
        f"labels: {labs[1]} vs {labs[0]}",
        transform=ax.transAxes,
        ha="left",
        va="top",
        fontsize=8,
        color=".35",
    )


# ------------------------------------------------------------------------------ latency


def plot_latency(
    df: pd.DataFrame,
    measured: pd.DataFrame | None = None,
    *,
    metric: Literal["lat", "clat"] = "lat",
    hue: str = "design",
    combine_dirs: bool = False,
    title: str | None = None,
    palette: Mapping[str, str] | None = None,
) -> Figure:
    """Mean latency (solid, markers) with a p50-p99 band (dotted p50, dashed p99) vs iodepth.

    One panel per rw/bs/profile and direction; `combine_dirs` merges a mixed job's read and
    write rows into one I/O-weighted `total` (exact mean; approximate percentiles). `metric` is
    fio's `lat` (total: slat + clat) or `clat`. `measured` rows are drawn as hollow markers with
    95 % confidence intervals of the mean over repeats (in the panel of the same direction).
    """
    mean_c, p50_c, p99_c = (f"{metric}_{s}_us" for s in ("mean", "p50", "p99"))
    require_columns(df, (hue, "iodepth", mean_c), "plot_latency")
    with styled():
        keys = panel_keys(df, always=("rw",))
        sim = df
        if combine_dirs:
            sim = direction_totals(df, [*keys, hue, "iodepth"], metric)
        pkeys = [*keys, "dir"] if "dir" in sim.columns else keys
        cols = [c for c in (mean_c, p50_c, p99_c) if c in sim.columns]
        sim = summarise(sim, [*pkeys, hue, "iodepth"], cols)
        meas = None
        if measured is not None and len(measured) and mean_c in measured.columns:
            require_columns(measured, (hue, "iodepth"), "plot_latency (measured)")
            m = measured.dropna(subset=[mean_c])
            mk = [k for k in keys if k in m.columns]
            if combine_dirs:
                m = direction_totals(m, [*mk, hue, "iodepth"], metric)
            mp = [*mk, "dir"] if "dir" in m.columns else mk
            mcols = [c for c in (mean_c, p50_c, p99_c) if c in m.columns]
            meas = summarise(m, [*mp, hue, "iodepth"], mcols) if len(m) else None
        panels = unique(tuple(r) for r in sim[pkeys].itertuples(index=False))
        labels = unique(sim[hue])
        colors = design_colors(labels, palette)
        fig, axes = new_figure(len(panels), sharey=False)
        for ax, pv in zip(axes, panels, strict=True):
            part = sim[(sim[pkeys] == pd.Series(pv, index=pkeys)).all(axis=1)]
            for lab in unique(part[hue]):
                g = part[part[hue] == lab].sort_values("iodepth")
                c = colors[lab]
                x = g["iodepth"]
                if p50_c in g.columns and p99_c in g.columns:
                    ax.fill_between(x, g[p50_c], g[p99_c], color=c, alpha=0.13, lw=0)
                    ax.plot(x, g[p50_c], ":", color=c, lw=1.3)
                    ax.plot(x, g[p99_c], "--", color=c, lw=1.3)
                ax.plot(
                    x,
                    g[mean_c],
                    "-o",
                    color=c,
                    lw=2.0,
                    ms=marker_size(len(g)),
                    label=str(lab),
                    zorder=3,
                )
            if meas is not None:
                mk = [k for k in pkeys if k in meas.columns]
                want = pd.Series([pv[pkeys.index(k)] for k in mk], index=mk)
                mpart = meas[(meas[mk] == want).all(axis=1)] if mk else meas
                for lab in unique(mpart[hue]):
                    g = mpart[mpart[hue] == lab].sort_values("iodepth")
                    c = colors.get(lab, ".3")
                    ax.errorbar(
                        g["iodepth"],
                        g[mean_c],
                        yerr=g[f"{mean_c}_ci"],
                        fmt="s",
                        mfc="white",
                        mec=c,
                        ecolor=c,
                        mew=1.6,
                        ms=7,
                        capsize=3,
                        zorder=4,
                    )
            iodepth_axis(ax, part["iodepth"])
            ax.set_title(panel_title(pkeys, pv))
            ax.set_ylim(bottom=0)
        what = "total latency (slat + clat)" if metric == "lat" else "completion latency (clat)"
        axes[0].set_ylabel(f"{what} (µs)")
        handles: list[Any] = [Patch(color=colors[lab], label=str(lab)) for lab in labels]
        handles.append(Line2D([], [], color=".3", marker="o", lw=2, label="mean"))
        if p50_c in sim.columns and p99_c in sim.columns:
            handles += [
                Line2D([], [], color=".3", ls=":", lw=1.3, label="p50"),
                Line2D([], [], color=".3", ls="--", lw=1.3, label="p99"),
            ]
        if meas is not None:
            handles.append(_measured_handle(meas))
        legend_below(fig, handles, len(handles))
        name = "Total latency" if metric == "lat" else "Completion latency (clat)"
        finish(fig, title, f"{name} vs iodepth", df)
    return fig


# ------------------------------------------------------------------------------ dispatch, save


def plot_kind(
    kind: str,
    df: pd.DataFrame,
    *,
    results: Sequence[Result] | None = None,
    measured: pd.DataFrame | None = None,
    title: str | None = None,
) -> Figure:
    """The figure `kind` (iops, latency, cpu, cdf or breakdown) of a sweep table: `vsim plot`.

    `cdf` and `breakdown` need the per-I/O data of `results` (see vsim.sweep.resimulate).
    """
    if kind == "iops":
        return plot_iops(df, measured, title=title)
    if kind == "latency":
        return plot_latency(df, measured, title=title)
    if kind == "cpu":
        return plot_cpu(df, title=title)
    if kind in ("cdf", "breakdown"):
        if not results:
            raise ConfigError(f"kind {kind} needs per-I/O results (re-simulate the points)")
        if kind == "cdf":
            return plot_cdf(cdf_samples(results), title=title)
        return plot_breakdown(breakdown(results), title=title)
    raise ConfigError(f"unknown plot kind {kind!r} (choose from {', '.join(PLOT_KINDS)})")


def save(fig: Figure, path: str | Path, *, dpi: int = 150) -> Path:
    """Write fig as PNG or SVG (by the extension), byte-identical for the same figure."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in (".png", ".svg"):
        raise ConfigError(f"cannot save a plot as {p.name!r}: use a .png or .svg file name")
    meta: dict[str, str | None] = {"Date": None} if ext == ".svg" else {"Software": None}
    rc: Any = {"svg.hashsalt": "vsim", "svg.fonttype": "path"}
    with mpl.rc_context(rc):
        write_atomic(
            p,
            lambda tmp: fig.savefig(tmp, format=ext[1:], dpi=dpi, metadata=meta, facecolor="white"),
        )
    return p
