"""Validation reports as text: the terminal summary and the Markdown page of a Validation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from vsim.measure.dataset import LATENCY_KINDS

if TYPE_CHECKING:  # compare.py imports this module: the type only, no runtime import
    from vsim.validate.compare import Validation

__all__ = ["SHOWN_LATENCIES", "markdown", "present_metrics", "summary"]

# The latency metrics a report shows for every point (beside IOPS), in the tables and plots.
SHOWN_LATENCIES = ("clat_mean_us", "lat_mean_us", "clat_p99_us", "lat_p99_us")


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


def present_metrics(table: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """The metrics of `metrics` that some point of a validation table measured."""
    return [m for m in metrics if table[f"{m}_meas"].notna().any()]


def _set_label(cal: Any) -> str:
    return "cal" if bool(cal) else "held-out"


def _qd(r: pd.Series) -> str:
    """The iodepth cell, with the point's CPU placement when it is pinned (``8 @0:1``)."""
    pl = str(r.get("placement", "free"))
    return str(r["iodepth"]) if pl == "free" else f"{r['iodepth']} @{pl}"


def _qd_column(df: pd.DataFrame) -> pd.Series:
    """The iodepth column of a text table: numbers, unless some point is pinned."""
    if "placement" not in df or (df["placement"] == "free").all():
        return df["iodepth"]
    return df.apply(_qd, axis=1)


def _point_cells(r: pd.Series) -> list[str]:
    return [
        str(r["design"]),
        str(r["rw"]),
        str(r["dir"]),
        str(r["bs"]),
        _qd(r),
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
        present = present_metrics(t, metrics)
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
            str(r["n_inconclusive"]),
            _f(r["median_abs"], 2),
            _f(r["worst_abs"], 2),
            f"{r['n_ok']}/{r['n']} within {_f(r['target'], 0)}"
            if not math.isnan(r["target"]) or r["metric"] == "gain_sign"
            else "-",
            f"{_f(r['median_all'], 2)} / {_f(r['worst_all'], 2)}",
        ]
        for _, r in sub.iterrows()
    ]
    if not rows:
        return "(no such points)"
    head = [
        "metric",
        "unit",
        "n conclusive",
        "n inconclusive",
        "median abs",
        "worst abs",
        "ok",
        "all points: median / worst",
    ]
    return _md(head, rows)


def _inconclusive_md(v: Validation) -> str:
    """The held-out points whose IOPS or mean latency CI is wider than the conclusive bound."""
    t = v.table[~v.table["calibration"].astype(bool)]
    cols = [f"{m}_ci_pct" for m in ("iops", "lat_mean_us", "clat_mean_us") if f"{m}_ci_pct" in t]
    wide = t[(t[cols].isna() | (t[cols] > v.conclusive_pct)).any(axis=1)]
    if not len(wide):
        return "(none)"
    rows = [[*_point_cells(r), *[_f(r[c]) for c in cols]] for _, r in wide.iterrows()]
    return _md([*_POINT_HEAD, *(f"{c.removesuffix('_ci_pct')} CI +-%" for c in cols)], rows)


def _gains_md(g: pd.DataFrame) -> str:
    rows = []
    for _, r in g.iterrows():
        meas = _f(r["gain_meas_pct"])
        if not math.isnan(r["gain_lo_pct"]):
            meas += f" [{_f(r['gain_lo_pct'])}, {_f(r['gain_hi_pct'])}]"
        rows.append(
            [
                str(r["design"]),
                str(r["rw"]),
                str(r["dir"]),
                str(r["bs"]),
                _qd(r),
                "cal" if r["calibration"] else "held-out",
                meas,
                _f(r["gain_pred_pct"]),
                _f(r["gain_err_pp"]),
            ]
        )
    head = ["design", "rw", "dir", "bs", "iodepth", "set", "measured % [CI]", "predicted %"]
    head.append("error pp")
    return _md(head, rows)


_NOTES = """\
- err % = (predicted - measured) / measured; `-` = not measured (or not computable).
- measured = mean over repeats with a Student-t {lv} CI in brackets (2+ repeats).
- conclusive: a point whose measured CI half-width is within {cp:g} % of its mean (a gain:
  within {cp:g} points); only conclusive points enter the headline's median and worst, the
  others are counted (and listed below the headline), and "all points" gives both figures
  over every point. `ok` counts the conclusive points whose error is within the target
  (a prediction inside a wide CI is not "ok").
- gain = IOPS(design) / IOPS({b}) - 1. Where the two designs' runs pair up by repeat (run i of
  each measured back to back, as `vsim measure` interleaves them), it is the geometric mean of
  the pair ratios with a Student-t {lv} CI on the mean log ratio: the machine's slow drift
  cancels within a pair. Otherwise the ratio of the mean IOPS, its CI formed on the log ratio
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
        f"### Inconclusive held-out points (IOPS or mean latency CI wider than "
        f"{v.conclusive_pct:g} %)\n\n{_inconclusive_md(v)}",
        f"### Calibration points (fit quality, not validation)\n\n"
        f"{_headline_md(v.headline, 'calibration')}",
        *_metric_tables(v),
    ]
    if len(v.gains):
        out.append(f"## Gains over {v.baseline} (IOPS)\n\n{_gains_md(v.gains)}")
    if plots:
        out.append("## Plots\n\n" + "\n".join(f"![{p}]({p})" for p in plots))
    out.append("## Notes\n\n" + _NOTES.format(lv=lv, b=v.baseline, cp=v.conclusive_pct))
    return "\n\n".join(out) + "\n"


def summary(v: Validation) -> str:
    t = v.table
    lines = [f"profile {v.profile} vs {v.dataset} (seed {v.seed}, {v.ios} I/Os per point)"]
    cols = {
        "design": t["design"],
        "rw": t["rw"],
        "dir": t["dir"],
        "bs": t["bs"],
        "qd": _qd_column(t),
        "set": t["calibration"].map(_set_label),
    }
    for m in present_metrics(t, ("iops", *SHOWN_LATENCIES)):
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
        lines.append(f"gains over {v.baseline} (%):")
        gt = pd.DataFrame(
            {
                "design": g["design"],
                "rw": g["rw"],
                "dir": g["dir"],
                "bs": g["bs"],
                "qd": _qd_column(g),
                "measured": g["gain_meas_pct"].map(_f),
                "predicted": g["gain_pred_pct"].map(_f),
                "error pp": g["gain_err_pp"].map(_f),
            }
        )
        lines.append(gt.to_string(index=False))
    h = v.headline[v.headline["subset"] == "held-out"]
    if len(h):
        lines.append(
            f"held-out headline (median / worst absolute over the conclusive points, CI within"
            f" {v.conclusive_pct:g} %; then over all points):"
        )
        lines += [
            f"  {r['metric']:<22} {_f(r['median_abs'], 2):>8} / {_f(r['worst_abs'], 2):>8}"
            f" {r['unit']} (n={r['n']}, inconclusive {r['n_inconclusive']}"
            + (
                f", ok {r['n_ok']}/{r['n']} within {_f(r['target'], 0)}"
                if r["n"] and not math.isnan(r["target"])
                else ""
            )
            + f"); all: {_f(r['median_all'], 2)} / {_f(r['worst_all'], 2)}"
            for _, r in h.iterrows()
            if r["metric"] != "gain_sign"
        ]
        sign = h[h["metric"] == "gain_sign"]
        lines += [
            f"  gain sign right at {r['n_ok']} of {r['n']} gains whose CI excludes zero"
            for _, r in sign.iterrows()
        ]
    return "\n".join(lines)
