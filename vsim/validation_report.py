"""Validation reports: the text summary, the Markdown page and the PNG plots of a Validation."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from vsim.measured import LATENCY_KINDS
from vsim.outputs import write_atomic
from vsim.scenario import DESIGNS
from vsim.validate import BASELINE, CONTENDER

if TYPE_CHECKING:
    from vsim.validate import Validation


def _f(x: Any, nd: int = 1) -> str:
    if x is None or x is pd.NA or math.isnan(float(x)):
        return "-"
    text = f"{float(x):.{nd}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.0"


def _with_ci(row: pd.Series, m: str, nd: int) -> str:
    base = _f(row[f"{m}_meas"], nd)
    if math.isnan(row[f"{m}_lo"]):
        return base
    return f"{base} [{_f(row[f'{m}_lo'], nd)}, {_f(row[f'{m}_hi'], nd)}]"


def _md(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _present(table: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    return [m for m in metrics if table[f"{m}_meas"].notna().any()]


def _set_label(cal: Any) -> str:
    return "cal" if bool(cal) else "held-out"


def _point_cells(r: pd.Series) -> list[str]:
    return [
        str(r["design"]),
        str(r["rw"]),
        str(r["dir"]),
        str(r["bs"]),
        str(r["iodepth"]),
        "cal" if r["calibration"] else "held-out",
        str(r["repeats"]),
    ]


_POINT_HEAD = ["design", "rw", "dir", "bs", "iodepth", "set", "repeats"]


def _metric_tables(v: Validation) -> list[str]:
    t = v.table
    parts = []
    for title, metrics in (
        ("IOPS and mean latency (us)", ("iops", "clat_mean_us", "lat_mean_us")),
        ("Latency percentiles (us)", ("clat_p50_us", "clat_p99_us", "lat_p50_us", "lat_p99_us")),
    ):
        present = _present(t, metrics)
        if not present:
            continue
        head = list(_POINT_HEAD)
        for m in present:
            label = m.removesuffix("_us")
            head += [f"{label} measured", f"{label} predicted", "err %"]
        rows = []
        for _, r in t.iterrows():
            cells = _point_cells(r)
            for m in present:
                nd = 0 if m == "iops" else 1
                cells += [_with_ci(r, m, nd), _f(r[f"{m}_pred"], nd), _f(r[f"{m}_err_pct"])]
            rows.append(cells)
        parts.append(f"## {title}\n\n{_md(head, rows)}")
    kinds = [k for k in LATENCY_KINDS if t.get(f"{k}_demerit_us", pd.Series()).notna().any()]
    if kinds:
        head = [
            *_POINT_HEAD,
            "latency",
            "demerit us (% mean)",
            "p<=0.99",
            "noise floor",
            "p<=0.99",
            "demerit / noise",
        ]
        rows = []
        for _, r in t.iterrows():
            for k in kinds:
                if math.isnan(r[f"{k}_demerit_us"]):
                    continue
                rows.append(
                    [*_point_cells(r), k]
                    + [
                        f"{_f(r[f'{k}_{s}_us'])} ({_f(r[f'{k}_{s}_pct'])} %)"
                        for s in ("demerit", "demerit99", "noise", "noise99")
                    ]
                    + [_f(r[f"{k}_demerit_ratio"], 2)]
                )
        parts.append(f"## Latency distributions: demerit figure\n\n{_md(head, rows)}")
    return parts


def _headline_md(h: pd.DataFrame, subset: str) -> str:
    sub = h[h["subset"] == subset]
    rows = [
        [
            str(r["metric"]),
            str(r["unit"]),
            str(r["n"]),
            _f(r["median_abs"], 2),
            _f(r["worst_abs"], 2),
            f"{r['n_ok']}/{r['n_checked']}" if r["n_checked"] else "-",
        ]
        for _, r in sub.iterrows()
    ]
    if not rows:
        return "(no such points)"
    return _md(["metric", "unit", "n", "median abs", "worst abs", "ok / checked"], rows)


def _gains_md(g: pd.DataFrame) -> str:
    rows = []
    for _, r in g.iterrows():
        meas = _f(r["gain_meas_pct"])
        if not math.isnan(r["gain_lo_pct"]):
            meas += f" [{_f(r['gain_lo_pct'])}, {_f(r['gain_hi_pct'])}]"
        rows.append(
            [
                str(r["rw"]),
                str(r["dir"]),
                str(r["bs"]),
                str(r["iodepth"]),
                "cal" if r["calibration"] else "held-out",
                meas,
                _f(r["gain_pred_pct"]),
                _f(r["gain_err_pp"]),
            ]
        )
    head = ["rw", "dir", "bs", "iodepth", "set", "measured % [CI]", "predicted %", "error pp"]
    return _md(head, rows)


_NOTES = """\
- err % = (predicted - measured) / measured; `-` = not measured (or not computable).
- measured = mean over repeats with a Student-t {lv} CI in brackets (2+ repeats);
  `ok / checked` counts the points whose prediction lies inside that CI.
- gain = IOPS({c}) / IOPS({b}) - 1; its {lv} CI is formed on the log ratio of the mean IOPS
  by the delta method with Welch-Satterthwaite degrees of freedom (unpaired repeats);
  error pp = predicted - measured gain. `gain_sign` counts the gains whose CI excludes zero
  (checked) and how many of them the prediction gets the sign of (ok).
- demerit figure (Ruemmler & Wilkes 1994, DiskSim rms.c): root-mean-square distance between
  the measured and predicted latency CDFs at quantile levels 0.0001 ... p_max (linear
  interpolation), averaged over the repeats, in us and % of the measured mean, over p <= 1 and
  p <= 0.99. The prediction is binned into fio's json+ buckets like the measurement.
  noise floor = mean demerit between pairs of repeats of the point.
- headline: absolute values over the points of each subset; a point is a calibration point
  when any of its runs is marked so.
"""


def markdown(v: Validation, plots: Sequence[str]) -> str:
    t = v.table
    n_cal = int(t["calibration"].sum())
    lv = f"{100 * v.level:g} %"
    out = [
        f"# Validation of profile `{v.profile}` against `{v.dataset}`",
        f"Every measured point predicted with `vsim.simulate` (seed {v.seed}, {v.ios} I/Os per "
        f"point, no ramp_time): {len(t)} points from {len(v.measured.runs)} runs, {n_cal} "
        f"marked `cal` (calibration data, excluded from the headline), {len(t) - n_cal} held "
        "out.",
        f"## Headline: held-out points\n\n{_headline_md(v.headline, 'held-out')}",
        f"### Calibration points (fit quality, not validation)\n\n"
        f"{_headline_md(v.headline, 'calibration')}",
        *_metric_tables(v),
    ]
    if len(v.gains):
        out.append(f"## Gain of {CONTENDER} over {BASELINE} (IOPS)\n\n{_gains_md(v.gains)}")
    if plots:
        out.append("## Plots\n\n" + "\n".join(f"![{p}]({p})" for p in plots))
    out.append("## Notes\n\n" + _NOTES.format(lv=lv, c=CONTENDER, b=BASELINE))
    return "\n\n".join(out) + "\n"


def summary(v: Validation) -> str:
    t = v.table
    lines = [f"profile {v.profile} vs {v.dataset} (seed {v.seed}, {v.ios} I/Os per point)"]
    cols = {
        "design": t["design"],
        "rw": t["rw"],
        "dir": t["dir"],
        "bs": t["bs"],
        "qd": t["iodepth"],
        "set": t["calibration"].map(_set_label),
    }
    for m in _present(t, ("iops", "clat_mean_us", "lat_mean_us", "clat_p99_us", "lat_p99_us")):
        label = m.removesuffix("_us")
        nd = 0 if m == "iops" else 1
        cols[f"{label} meas"] = t[f"{m}_meas"].map(lambda x, nd=nd: _f(x, nd))
        cols[f"{label} pred"] = t[f"{m}_pred"].map(lambda x, nd=nd: _f(x, nd))
        cols[f"{label} err%"] = t[f"{m}_err_pct"].map(_f)
    for k in LATENCY_KINDS:
        if t.get(f"{k}_demerit_pct", pd.Series()).notna().any():
            cols[f"{k} demerit%"] = t[f"{k}_demerit_pct"].map(_f)
            cols[f"{k} noise%"] = t[f"{k}_noise_pct"].map(_f)
    lines.append(pd.DataFrame(cols).to_string(index=False))
    if len(v.gains):
        g = v.gains
        lines.append(f"gain {CONTENDER} over {BASELINE} (%):")
        gt = pd.DataFrame(
            {
                "rw": g["rw"],
                "dir": g["dir"],
                "bs": g["bs"],
                "qd": g["iodepth"],
                "measured": g["gain_meas_pct"].map(_f),
                "predicted": g["gain_pred_pct"].map(_f),
                "error pp": g["gain_err_pp"].map(_f),
            }
        )
        lines.append(gt.to_string(index=False))
    h = v.headline[v.headline["subset"] == "held-out"]
    if len(h):
        lines.append("held-out headline (median / worst absolute):")
        lines += [
            f"  {r['metric']:<22} {_f(r['median_abs'], 2):>8} / {_f(r['worst_abs'], 2):>8}"
            f" {r['unit']} (n={r['n']})"
            for _, r in h.iterrows()
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


def _panels(t: pd.DataFrame) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    keys = ["rw", "dir", "bs", "numjobs", "rwmixread"]
    return [(k if isinstance(k, tuple) else (k,), g) for k, g in t.groupby(keys, sort=False)]


def _panel_title(key: tuple[Any, ...]) -> str:
    rw, d, bs, nj, _ = key
    return f"rw={rw} {d} bs={bs}" + (f" numjobs={nj}" if nj != 1 else "")


def plots(v: Validation, out: Path) -> list[Path]:
    import seaborn as sns
    from matplotlib.figure import Figure

    t = v.table
    designs = list(dict.fromkeys(t["design"]))
    # seaborn's colour-blind palette in DESIGNS order: a design keeps its colour in every plot
    order = [*DESIGNS, *sorted(set(designs) - set(DESIGNS))]
    palette = sns.color_palette("colorblind", len(order))
    colors = {d: palette[order.index(d)] for d in designs}
    panels = _panels(t)
    written: list[Path] = []
    figures = [
        ("iops.png", _present(t, ("iops",))),
        ("latency.png", _present(t, ("clat_mean_us", "lat_mean_us", "clat_p99_us", "lat_p99_us"))),
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
    import seaborn as sns
    from matplotlib.figure import Figure

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
