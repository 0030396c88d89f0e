"""Latency CDF figures: per-I/O latency distributions of simulated and measured points."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    FuncFormatter,
    LogLocator,
    NullFormatter,
)
from numpy.typing import ArrayLike, NDArray

from vsim.errors import ConfigError
from vsim.plots.style import (
    DESIGN_COLORS,
    LINESTYLES,
    VsimFigure,
    design_colors,
    legend_below,
    styled,
)
from vsim.plots.tables import (
    size_label,
)
from vsim.results import Result

__all__ = [
    "cdf_samples",
    "plot_cdf",
]

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
        out[lab] = (known[base], LINESTYLES[k % len(LINESTYLES)])
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
    with styled():
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
            for ax, y in ((body, p), (tail, 1 - p)):  # the same percentile on both panels
                ax.axhline(y, color=".55", lw=0.8, ls=(0, (2, 2)), zorder=0)
                ax.text(
                    1.0,
                    y,
                    f" p{p * 100:g}",
                    transform=ax.get_yaxis_transform(),
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
        legend_below(fig, handles, min(len(handles), 2))
        fig.suptitle(title if title is not None else "Latency distribution")
    return fig
