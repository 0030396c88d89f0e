"""Figures of a validation: measured against predicted per point, and the latency CDFs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from vsim.measure.dataset import LATENCY_KINDS
from vsim.outputs import write_atomic
from vsim.scenario import DESIGNS
from vsim.validate.report import SHOWN_LATENCIES, present_metrics

if TYPE_CHECKING:
    from vsim.validate.compare import Validation

__all__ = ["validation_plots"]


def _panels(t: pd.DataFrame) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    keys = ["rw", "dir", "bs", "numjobs", "rwmixread", "placement"]
    keys = [k for k in keys if k in t.columns]
    return [(k if isinstance(k, tuple) else (k,), g) for k, g in t.groupby(keys, sort=False)]


def _panel_title(key: tuple[Any, ...]) -> str:
    rw, d, bs, nj = key[:4]
    pl = key[5] if len(key) > 5 else "free"
    title = f"rw={rw} {d} bs={bs}" + (f" numjobs={nj}" if nj != 1 else "")
    return title + (f" cpus {pl}" if pl != "free" else "")


def validation_plots(v: Validation, out: Path) -> list[Path]:
    """The IOPS and latency of every point, measured against predicted, and the latency CDFs
    of every point with per-I/O samples, as PNG files in `out`."""
    t = v.table
    designs = list(dict.fromkeys(t["design"]))
    # seaborn's colour-blind palette in DESIGNS order: a design keeps its colour in every plot
    order = [*DESIGNS, *sorted(set(designs) - set(DESIGNS))]
    palette = sns.color_palette("colorblind", len(order))
    colors = {d: palette[order.index(d)] for d in designs}
    panels = _panels(t)
    written: list[Path] = []
    figures = [
        ("iops.png", present_metrics(t, ("iops",))),
        (
            "latency.png",
            present_metrics(t, SHOWN_LATENCIES),
        ),
    ]
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.8):
        for fname, metrics in figures:
            if not metrics:
                continue
            fig = Figure(figsize=(4.2 * len(panels), 3.2 * len(metrics)), layout="constrained")
            axes = fig.subplots(len(metrics), len(panels), squeeze=False)
            for j, (key, grp) in enumerate(panels):
                for i, m in enumerate(metrics):
                    ax = axes[i][j]
                    for d in designs:
                        s = grp[grp["design"] == d].sort_values("iodepth")
                        if s.empty:
                            continue
                        lo = (s[f"{m}_meas"] - s[f"{m}_lo"]).fillna(0).to_numpy()
                        hi = (s[f"{m}_hi"] - s[f"{m}_meas"]).fillna(0).to_numpy()
                        ax.errorbar(
                            s["iodepth"],
                            s[f"{m}_meas"],
                            yerr=[lo, hi],
                            fmt="o",
                            color=colors[d],
                            capsize=3,
                            label=f"{d} measured",
                        )
                        ax.plot(
                            s["iodepth"],
                            s[f"{m}_pred"],
                            "--",
                            color=colors[d],
                            label=f"{d} predicted",
                        )
                    ax.set_xlabel("iodepth")
                    ax.set_ylabel(m.replace("_us", " (us)"))
                    ax.set_title(_panel_title(key))
                    ax.set_xticks(sorted(grp["iodepth"].unique()))
            axes[0][0].legend(fontsize="small")
            fig.suptitle(
                f"{v.profile} vs {v.dataset}: measured (points, {100 * v.level:g} % CI)"
                " and predicted (dashed)"
            )
            path = out / fname
            _save(fig, path)
            written.append(path)
        written += _cdf_plots(v, out, panels, colors)
    return written


def _cdf_plots(
    v: Validation,
    out: Path,
    panels: list[tuple[tuple[Any, ...], pd.DataFrame]],
    colors: Mapping[str, Any],
) -> list[Path]:
    written = []
    for key, grp in panels:
        for kind in LATENCY_KINDS:
            col = f"{kind}_demerit_us"
            if col not in grp or not grp[col].notna().any():
                continue
            grp_s = grp[grp[col].notna()]
            designs = list(dict.fromkeys(grp_s["design"]))
            depths = sorted(grp_s["iodepth"].unique())
            fig = Figure(figsize=(3.2 * len(depths), 2.6 * len(designs)), layout="constrained")
            axes = fig.subplots(len(designs), len(depths), squeeze=False)
            for idx, r in grp_s.iterrows():
                ax = axes[designs.index(r["design"])][depths.index(r["iodepth"])]
                row = int(idx)
                reps = [v.measured.samples(m, kind) for m in v.members[row]]
                for s in reps:
                    if s is not None:
                        sns.ecdfplot(x=s / 1000, ax=ax, color="0.45", linewidth=0.8)
                res = v.predicted[row]
                d = str(r["dir"])
                mask = np.ones(res.ios, dtype=bool) if d == "total" else res.direction(d)
                pred = (res.clat_ns if kind == "clat" else res.lat_ns)[mask] / 1000
                sns.ecdfplot(x=pred, ax=ax, color=colors[r["design"]], linewidth=1.6)
                tops = [float(np.quantile(s, 0.999)) / 1000 for s in reps if s is not None]
                top = max(float(np.quantile(pred, 0.999)), *tops)
                ax.set_xlim(left=0, right=top * 1.05)
                ax.set_title(f"{r['design']} iodepth={r['iodepth']}")
                ax.set_xlabel(f"{kind} (us)")
            fig.suptitle(
                f"{_panel_title(key)}: {kind} CDF\nmeasured repeats (grey), predicted (colour)",
                fontsize="small",
            )
            slug = re.sub(r"[^A-Za-z0-9]+", "-", _panel_title(key)).strip("-")
            path = out / f"cdf-{kind}-{slug}.png"
            _save(fig, path)
            written.append(path)
    return written


def _save(fig: Any, path: Path) -> None:
    write_atomic(
        path, lambda tmp: fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
    )
