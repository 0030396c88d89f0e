"""Figures shared by notebooks, reports and the CLI: IOPS, latency, CDFs and breakdowns."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogLocator,
    NullFormatter,
    NullLocator,
)
from numpy.typing import ArrayLike, NDArray

from vsim.breakdown import SEGMENT_LABELS, SEGMENT_NAMES, breakdown
from vsim.errors import ConfigError
from vsim.plot_tables import (
    constants,
    direction_totals,
    panel_keys,
    panel_title,
    per_run,
    require_columns,
    size_label,
    summarise,
    unique,
)
from vsim.results import Result

#: Fixed colours of the preset designs (seaborn's colour-blind palette), the same in every plot.
DESIGN_COLORS: dict[str, str] = {
    "virtio-blk": "#0173b2",
    "vhost-blk": "#de8f05",
    "virtio-blk-batched": "#029e73",
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
_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 1)))
_RC: dict[str, Any] = {
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


def _styled() -> AbstractContextManager[None]:
    """vsim's style for the figures built inside (rcParams restored on exit)."""
    rc: Any = _RC
    return mpl.rc_context(rc)


class VsimFigure(Figure):
    """A matplotlib Figure that shows itself as a PNG in Jupyter without pyplot."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100, facecolor="white")
        return buf.getvalue()


PLOT_KINDS = ("iops", "latency", "cdf", "breakdown")
Kind = Literal["iops", "latency", "cdf", "breakdown"]


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


def _new_figure(
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


def _iodepth_axis(ax: Axes, values: Iterable[Any]) -> None:
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


def _marker_size(points: int) -> float:
    """Smaller markers on lines with many points."""
    return 5.0 if points <= 12 else 3.0


def _thousands(v: float, _pos: int) -> str:
    return f"{v / 1000:g}k" if abs(v) >= 1000 else f"{v:g}"


def _finish(fig: Figure, title: str | None, default: str, df: pd.DataFrame | None) -> None:
    sub = constants(df) if df is not None else ""
    text = title if title is not None else default + (f": {sub}" if sub else "")
    width = int(fig.get_figwidth() * 10.5)  # characters of the bold title that fit
    fig.suptitle(textwrap.fill(text, width=max(width, 30)))


def _legend_below(fig: Figure, handles: list[Any], ncol: int) -> None:
    fig.legend(handles=handles, loc="outside lower center", ncol=max(1, ncol))


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
    with _styled():
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
        fig, axes = _new_figure(len(panels), sharey=True)
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
                    ms=_marker_size(len(g)),
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
            _iodepth_axis(ax, part["iodepth"])
            if annotate_gain and len(labs) == 2:
                _annotate_gain(ax, fig.get_figwidth(), part, hue, labs, colors)
            ax.set_title(panel_title(keys, pv))
            ax.set_ylim(bottom=0)
            ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
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
        _legend_below(fig, handles, len(handles))
        _finish(fig, title, "IOPS vs iodepth", df)
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
    with _styled():
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
        fig, axes = _new_figure(len(panels), sharey=False)
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
                    ms=_marker_size(len(g)),
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
            _iodepth_axis(ax, part["iodepth"])
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
        _legend_below(fig, handles, len(handles))
        name = "Total latency" if metric == "lat" else "Completion latency (clat)"
        _finish(fig, title, f"{name} vs iodepth", df)
    return fig


# ------------------------------------------------------------------------------ CDF


def cdf_samples(
    results: Iterable[Result], metric: Literal["lat", "clat"] = "lat"
) -> dict[str, NDArray[np.int64]]:
    """Per-I/O latencies (ns) of Results keyed by a label: `design QDn` (plus rw/bs if mixed)."""
    items = list(results)
    rws = {r.scenario.workload.rw for r in items}
    bss = {r.scenario.workload.bs for r in items}
    out: dict[str, NDArray[np.int64]] = {}
    for r in items:
        w = r.scenario.workload
        label = f"{r.scenario.design.name} QD{w.iodepth}"
        if len(rws) > 1:
            label += f" {w.rw}"
        if len(bss) > 1:
            label += f" {size_label(w.bs)}"
        arr: NDArray[np.int64] = r.lat_ns if metric == "lat" else r.clat_ns
        out[label] = arr
    return out


def _cdf_styles(labels: list[str], palette: Mapping[str, str] | None) -> dict[str, tuple[str, Any]]:
    """Colour and line style per label: a design's colour for labels that start with its name."""
    known = {**DESIGN_COLORS, **(palette or {})}
    out: dict[str, tuple[str, Any]] = {}
    used: dict[str, int] = {}
    others = design_colors([lab for lab in labels if not _design_prefix(lab, known)], palette)
    for lab in labels:
        base = _design_prefix(lab, known)
        if base is None:
            out[lab] = (others[lab], "-")
            continue
        k = used.get(base, 0)
        used[base] = k + 1
        out[lab] = (known[base], _LINESTYLES[k % len(_LINESTYLES)])
    return out


def _design_prefix(label: str, known: Mapping[str, str]) -> str | None:
    best = None
    for name in known:
        if (label == name or label.startswith(name + " ")) and (
            best is None or len(name) > len(best)
        ):
            best = name
    return best


def plot_cdf(
    samples: Mapping[str, ArrayLike],
    *,
    title: str | None = None,
    palette: Mapping[str, str] | None = None,
    log_x: bool | None = None,
    what: str = "total latency (slat + clat)",
) -> Figure:
    """Overlaid latency CDFs: the body (left, up to p99.5) and the tail as 1 - CDF (right).

    `samples` maps a label to per-I/O latencies in ns. Labels that start with a design name take
    its colour (several points of one design get different line styles). The tail panel is
    log-log; its x axis is linear when the latencies span less than a factor 20 (or as `log_x`
    says).
    """
    data = {k: np.sort(np.asarray(v, dtype=np.float64)) / 1000 for k, v in samples.items()}
    data = {k: v for k, v in data.items() if v.size}
    if not data:
        raise ConfigError("plot_cdf: no samples")
    labels = list(data)
    styles = _cdf_styles(labels, palette)
    lo = min(float(v[0]) for v in data.values())
    hi = max(float(v[-1]) for v in data.values())
    body_hi = max(float(np.quantile(v, 0.995)) for v in data.values())
    if log_x is None:
        log_x = lo > 0 and hi / lo > 20
    with _styled():
        fig = VsimFigure(figsize=(11.0, 4.6), layout="constrained")
        body, tail = fig.subplots(1, 2)
        handles: list[Any] = []
        for lab in labels:
            x = data[lab]
            n = x.size
            color, ls = styles[lab]
            # At most ~1,400 quantiles per line: dense in the body, log-spaced in the tail.
            levels = np.unique(
                np.concatenate([np.linspace(0.0, 0.99, 991), 1 - np.logspace(-2, -6, 400), [1.0]])
            )
            levels = levels[levels <= 1 - 0.5 / n] if n > 1 else levels[:1]
            q = np.quantile(x, levels)
            body.plot(q, levels, color=color, ls=ls, lw=1.8, label=lab)
            tail.plot(q, 1 - levels, color=color, ls=ls, lw=1.8)
            mean, p99 = float(x.mean()), float(np.quantile(x, 0.99))
            handles.append(
                Line2D(
                    [],
                    [],
                    color=color,
                    ls=ls,
                    lw=1.8,
                    label=f"{lab}: mean {mean:,.0f} µs, p99 {p99:,.0f} µs",
                )
            )
        for p in (0.5, 0.99):
            body.axhline(p, color=".55", lw=0.8, ls=(0, (2, 2)), zorder=0)
            body.text(
                1.0,
                p,
                f" p{p * 100:g}",
                transform=body.get_yaxis_transform(),
                va="center",
                ha="left",
                fontsize=8,
                color=".4",
            )
            tail.axhline(1 - p, color=".55", lw=0.8, ls=(0, (2, 2)), zorder=0)
            tail.text(
                1.0,
                1 - p,
                f" p{p * 100:g}",
                transform=tail.get_yaxis_transform(),
                va="center",
                ha="left",
                fontsize=8,
                color=".4",
            )
        pad = (body_hi - lo) * 0.05
        body.set_xlim(max(lo - pad, 0.0), body_hi + pad)
        body.set_ylim(0, 1.0)
        body.set_ylabel("fraction of I/Os ≤ x (CDF)")
        body.set_title("body (up to p99.5)")
        tail.set_yscale("log")
        tail.set_ylabel("fraction of I/Os > x (1 - CDF)")
        min_level = min(0.5 / max(v.size, 1) for v in data.values())
        tail.set_ylim(max(min_level / 1.5, 1e-6), 1.05)
        tail.set_title("tail (all I/Os)")
        if log_x:
            tail.set_xscale("log")
            tail.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            tail.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}"))
            tail.xaxis.set_minor_formatter(NullFormatter())
        for ax in (body, tail):
            ax.set_xlabel(f"{what} (µs)")
        _legend_below(fig, handles, min(len(handles), 2))
        fig.suptitle(title if title is not None else "Latency distribution")
    return fig


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
    with _styled():
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
        _finish(fig, title, "Where the time goes", bd)
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
    """The figure `kind` (iops, latency, cdf or breakdown) of a sweep table: `vsim plot`.

    `cdf` and `breakdown` need the per-I/O data of `results` (see vsim.report.resimulate).
    """
    if kind == "iops":
        return plot_iops(df, measured, title=title)
    if kind == "latency":
        return plot_latency(df, measured, title=title)
    if kind in ("cdf", "breakdown"):
        if not results:
            raise ConfigError(f"--kind {kind} needs per-I/O results (re-simulate the points)")
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
        fig.savefig(p, dpi=dpi, metadata=meta, facecolor="white")
    return p
