"""Measured vs predicted: errors, the demerit figure, noise floor, gains, and the report."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from vsim.engine import simulate
from vsim.errors import ConfigError
from vsim.fio import bins_from_ns, latency_summary, percentile_key, sample_from_bins
from vsim.measured import LATENCY_KINDS, METRICS, POINT_KEYS, MeasuredSet
from vsim.profile import Profile, load_profile
from vsim.results import Result
from vsim.scenario import DESIGNS, Scenario, Workload, design

#: Spacing of the quantile levels of the demerit figure (DiskSim rms.c: RMS_INCR).
LEVEL_STEP = 1e-4
_LEVELS = 10_000  # levels per unit probability (1 / LEVEL_STEP, exact)
#: The metrics compared per point (suffixes ``_meas _lo _hi _pred _err_pct _in_ci``).
COMPARED = tuple(m for m in METRICS if m != "slat_mean_us")
GAIN_KEYS = tuple(k for k in POINT_KEYS if k != "design")
BASELINE, CONTENDER = "virtio-blk", "vhost-blk"
DEFAULT_IOS = 20_000
CalibrationRule = str | Mapping[str, Collection[object]]


# --------------------------------------------------------------------------- demerit figure


def quantile_levels(p_max: float = 1.0) -> NDArray[np.float64]:
    """The demerit's quantile levels 0.0001, 0.0002, ..., up to and including ``p_max``."""
    if not LEVEL_STEP <= p_max <= 1.0:
        raise ConfigError(f"p_max must be within {LEVEL_STEP}..1, got {p_max}")
    k = math.floor(p_max * _LEVELS + 1e-9)
    return np.arange(1, k + 1, dtype=np.float64) / _LEVELS


def _sorted_sample(sample: ArrayLike, what: str) -> NDArray[np.float64]:
    x = np.asarray(sample, dtype=np.float64).ravel()
    if x.size == 0:
        raise ConfigError(f"{what}: empty sample")
    if not np.isfinite(x).all():
        raise ConfigError(f"{what}: samples must be finite")
    return np.sort(x)


def cdf_quantiles(sample: ArrayLike, levels: ArrayLike) -> NDArray[np.float64]:
    """x(p) of a sample's CDF drawn as straight lines between its points, at each level p.

    The sorted sample x_(1) <= ... <= x_(n) gives the CDF points (x_(k), k/n) for k = 1..n, and
    the curve starts at (x_(1), 0); x(p) is read off by linear interpolation between the two
    points around p, exactly as DiskSim's ``compute_rms`` does on its CDF tables. This is
    ``numpy.quantile(sample, p, method="interpolated_inverted_cdf")`` (Hyndman & Fan type 4).
    """
    x = _sorted_sample(sample, "cdf_quantiles")
    xs = np.concatenate((x[:1], x))
    ys = np.arange(x.size + 1, dtype=np.float64) / x.size
    out: NDArray[np.float64] = np.interp(np.asarray(levels, dtype=np.float64), ys, xs)
    return out


def demerit(measured: ArrayLike, predicted: ArrayLike, p_max: float = 1.0) -> float:
    """The demerit figure (Ruemmler & Wilkes 1994) between two latency samples, in their unit.

    For levels p = 0.0001, 0.0002, ..., p_max each CDF is interpolated linearly to give x1(p)
    and x2(p) (:func:`cdf_quantiles`), and the demerit is sqrt(mean_p (x1(p) - x2(p))^2): the
    root-mean-square horizontal distance between the two CDFs. It matches DiskSim 4.0's
    ``valid/rms.c`` (``compute_rms``): there ``pnt`` runs from RMS_INCR = 0.0001 to 1.0 in steps
    of RMS_INCR, each curve's x at ``pnt`` is interpolated linearly between its first CDF point
    with y >= pnt and the point before it, and the result is sqrt(sum of squares / count).
    Differences: rms.c reads CDF tables (histogram bucket bounds and cumulative fractions) where
    this reads samples (each sample is a CDF point, see :func:`cdf_quantiles`); rms.c
    accumulates ``pnt += 0.0001`` in double (its 10,000th level is 1 - 9.4e-14), this uses
    k / 10000 exactly; and ``p_max`` < 1 truncates the levels (the figure "over p <= 0.99").
    Symmetric in its arguments; :func:`demerit_pct` gives it as % of the measured mean.
    """
    levels = quantile_levels(p_max)
    d = cdf_quantiles(measured, levels) - cdf_quantiles(predicted, levels)
    return float(np.sqrt(np.mean(d * d)))


def demerit_pct(measured: ArrayLike, predicted: ArrayLike, p_max: float = 1.0) -> float:
    """:func:`demerit` as a percentage of the measured sample's mean."""
    mean = float(np.mean(_sorted_sample(measured, "demerit_pct")))
    return 100.0 * demerit(measured, predicted, p_max) / mean


def noise_floor(samples_of_same_point: Sequence[ArrayLike], p_max: float = 1.0) -> float | None:
    """The mean demerit over all pairs of repeated measurements of one point (None below 2).

    Two independent samples of one distribution differ by chance; a model cannot be expected
    to come closer to a measurement than another measurement does.
    """
    if len(samples_of_same_point) < 2:
        return None
    levels = quantile_levels(p_max)
    qs = [cdf_quantiles(s, levels) for s in samples_of_same_point]
    pairs = [float(np.sqrt(np.mean((a - b) ** 2))) for a, b in combinations(qs, 2)]
    return float(np.mean(pairs))


# --------------------------------------------------------------------------- intervals


class CI(NamedTuple):
    """A point estimate with a confidence interval (low, high NaN when it cannot be formed)."""

    mean: float
    low: float
    high: float
    n: int


def mean_ci(values: ArrayLike, level: float = 0.95) -> CI:
    """Mean and Student-t confidence interval of repeated measurements (NaNs are dropped)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    n = int(v.size)
    if n == 0:
        return CI(math.nan, math.nan, math.nan, 0)
    m = float(v.mean())
    if n < 2:
        return CI(m, math.nan, math.nan, n)
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * float(v.std(ddof=1)) / math.sqrt(n)
    return CI(m, m - half, m + half, n)


def gain_ci(baseline: ArrayLike, contender: ArrayLike, level: float = 0.95) -> CI:
    """The gain mean(contender) / mean(baseline) - 1 in %, with a Welch / delta-method CI.

    The interval is formed on the log of the ratio of means: by the delta method
    Var(ln m_c - ln m_b) ~ s_c^2 / (n_c m_c^2) + s_b^2 / (n_b m_b^2), with Welch-Satterthwaite
    degrees of freedom, and mapped back (exp(.) - 1), so it is asymmetric and never below
    -100 %. Unpaired: it does not assume the repeats were interleaved. Needs 2 repeats of each
    side for an interval; ``n`` is the smaller repeat count.
    """
    b = np.asarray(baseline, dtype=np.float64).ravel()
    c = np.asarray(contender, dtype=np.float64).ravel()
    b, c = b[~np.isnan(b)], c[~np.isnan(c)]
    n = int(min(b.size, c.size))
    if n == 0:
        return CI(math.nan, math.nan, math.nan, 0)
    mb, mc = float(b.mean()), float(c.mean())
    if mb <= 0 or mc <= 0:
        raise ConfigError("gain_ci: means must be > 0")
    g = 100.0 * (mc / mb - 1.0)
    if n < 2:
        return CI(g, math.nan, math.nan, n)
    vb = float(b.var(ddof=1)) / (b.size * mb * mb)
    vc = float(c.var(ddof=1)) / (c.size * mc * mc)
    if vb + vc == 0.0:
        return CI(g, g, g, n)
    df = (vb + vc) ** 2 / (vb * vb / (b.size - 1) + vc * vc / (c.size - 1))
    half = float(stats.t.ppf((1 + level) / 2, df)) * math.sqrt(vb + vc)
    log_ratio = math.log(mc / mb)
    return CI(g, 100.0 * math.expm1(log_ratio - half), 100.0 * math.expm1(log_ratio + half), n)


def rel_err_pct(predicted: float, measured: float) -> float:
    """(predicted - measured) / measured in %, NaN when either is missing."""
    if math.isnan(predicted) or math.isnan(measured) or measured == 0:
        return math.nan
    return 100.0 * (predicted - measured) / measured


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True, eq=False)
class Validation:
    """Measured against predicted, point by point.

    ``table``: one row per measured point and direction (keys of ``POINT_KEYS``, then
    ``calibration``, ``repeats``, and for each metric m of :data:`COMPARED`: ``m_meas`` (mean
    over repeats), ``m_lo`` / ``m_hi`` (its CI), ``m_pred``, ``m_err_pct``, ``m_in_ci``; and per
    latency kind k in clat, lat: ``k_demerit_us`` / ``_pct`` over p <= 1, ``k_demerit99_*`` over
    p <= 0.99, the same for ``k_noise*`` (the noise floor) and ``k_demerit_ratio`` /
    ``k_demerit99_ratio`` = demerit / noise floor). ``gains``: per point without the design,
    the contender-over-baseline IOPS gain measured (with CI) and predicted, ``gain_err_pp``.
    ``headline``: per subset (held-out, calibration) and metric: n, median and worst absolute
    value, ``n_checked`` / ``n_ok`` (see the report's notes).
    """

    profile: str
    dataset: str
    seed: int
    ios: int
    level: float
    table: pd.DataFrame
    gains: pd.DataFrame
    headline: pd.DataFrame
    measured: MeasuredSet = field(repr=False)
    predicted: dict[int, Result] = field(repr=False)  # table row -> its simulated Result
    members: dict[int, list[int]] = field(repr=False)  # table row -> measured rows (repeats)

    def summary(self) -> str:
        """The table, gains and held-out headline as plain text (for a terminal or a log)."""
        return _summary(self)

    def to_markdown(self, plots: Sequence[str] = ()) -> str:
        """The report as Markdown, linking the given plot files."""
        return _markdown(self, plots)

    def write_report(self, directory: str | Path) -> list[Path]:
        """Write report.md, table.csv, gains.csv, headline.csv, measured.csv and PNG plots."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, df in (
            ("table", self.table),
            ("gains", self.gains),
            ("headline", self.headline),
            ("measured", self.measured.points),
        ):
            path = out / f"{name}.csv"
            df.to_csv(path, index=False, lineterminator="\n")
            written.append(path)
        plots = _plots(self, out)
        report = out / "report.md"
        report.write_text(self.to_markdown([p.name for p in plots]), encoding="utf-8")
        return [report, *written, *plots]


def validate(
    profile: str | Path | Profile,
    measured: MeasuredSet,
    *,
    seed: int = 1,
    ios: int = DEFAULT_IOS,
    used_for_calibration: CalibrationRule | None = None,
    level: float = 0.95,
) -> Validation:
    """Predict every measured point with :func:`~vsim.engine.simulate` and compare.

    Each point is simulated once (seed ``seed``) from its first run's workload and design with
    ``ios`` I/Os (``number_ios = ceil(ios / numjobs)``, no runtime, no ramp_time: the measured
    run length is not replayed). ``used_for_calibration`` marks calibration points: a pandas
    query over the point columns (``"iodepth in [1, 8]"``, ``"design == 'virtio-blk'"``) or a
    mapping ``{column: values}``; None takes the dataset's own ``calibration`` marks (a point
    is a calibration point when any of its runs is). Calibration points are excluded from the
    headline.
    """
    if ios < 1:
        raise ConfigError(f"ios must be >= 1, got {ios}")
    if not 0 < level < 1:
        raise ConfigError(f"level must be within (0, 1), got {level}")
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    name = prof.name if isinstance(profile, Profile) else str(profile)
    pts = measured.points
    cache: dict[tuple[str, Workload], Result] = {}
    rows: list[dict[str, Any]] = []
    predicted: dict[int, Result] = {}
    members: dict[int, list[int]] = {}
    groups = pts.groupby(list(POINT_KEYS), sort=False)
    for key, grp in sorted(groups, key=lambda kv: _order(kv[0])):
        point = dict(zip(POINT_KEYS, key, strict=True))
        w = measured.workload(int(grp.index[0]))
        w = replace(w, number_ios=math.ceil(ios / w.numjobs), runtime=None, ramp_time=0.0)
        ck = (str(point["design"]), w)
        if ck not in cache:
            scen = Scenario(workload=w, design=design(ck[0]), profile=name)
            cache[ck] = simulate(scen, seed, profile=prof)
        res = cache[ck]
        i = len(rows)
        predicted[i], members[i] = res, [int(r) for r in grp.index]
        rows.append(_compare(point, grp, res, measured, level))
    table = pd.DataFrame(rows)
    for col in [c for c in table.columns if c.endswith("_in_ci")]:
        table[col] = table[col].astype("boolean")
    if used_for_calibration is not None:
        table["calibration"] = _rule_mask(table, used_for_calibration)
    gains = _gains(table, pts, level)
    return Validation(
        profile=name,
        dataset=measured.name,
        seed=seed,
        ios=ios,
        level=level,
        table=table,
        gains=gains,
        headline=_headline(table, gains),
        measured=measured,
        predicted=predicted,
        members=members,
    )


def _order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    point = dict(zip(POINT_KEYS, key, strict=True))
    names = list(DESIGNS)
    d = str(point["design"])
    rank = (names.index(d), "") if d in names else (len(names), d)
    return (
        point["rw"],
        point["dir"],
        point["bs"],
        point["numjobs"],
        point["rwmixread"],
        rank,
        point["iodepth"],
    )


def _rule_mask(table: pd.DataFrame, rule: CalibrationRule) -> pd.Series:
    if isinstance(rule, str):
        try:
            picked = table[list(POINT_KEYS)].query(rule).index
        except Exception as exc:  # pandas raises many kinds for a bad expression
            raise ConfigError(f"used_for_calibration: cannot evaluate {rule!r}: {exc}") from None
        return pd.Series(table.index.isin(picked), index=table.index)
    mask = pd.Series(True, index=table.index)
    for col, values in rule.items():
        if col not in POINT_KEYS:
            raise ConfigError(f"used_for_calibration: no column {col!r} ({', '.join(POINT_KEYS)})")
        mask &= table[col].isin(list(values))
    return mask


def _predicted_metrics(res: Result, d: str) -> tuple[dict[str, float], dict[str, Any]]:
    mask = np.ones(res.ios, dtype=bool) if d == "total" else res.direction(d)
    n = int(mask.sum())
    out: dict[str, float] = {"iops": n / res.elapsed_s}
    arrays = {"clat": res.clat_ns[mask], "lat": res.lat_ns[mask]}
    for kind, arr in arrays.items():
        summ = latency_summary(arr, with_bins=False, percentiles=(50.0, 99.0)) if n else {}
        pct = summ.get("percentile", {})
        out[f"{kind}_mean_us"] = summ["mean"] / 1000 if n else math.nan
        for p in (50, 99):
            val = pct.get(percentile_key(float(p)))
            out[f"{kind}_p{p}_us"] = val / 1000 if val is not None else math.nan
    return out, arrays


def _compare(
    point: dict[str, Any], grp: pd.DataFrame, res: Result, measured: MeasuredSet, level: float
) -> dict[str, Any]:
    pred, arrays = _predicted_metrics(res, str(point["dir"]))
    row: dict[str, Any] = {
        **point,
        "calibration": bool(grp["calibration"].any()),
        "repeats": len(grp),
    }
    for m in COMPARED:
        ci = mean_ci(grp[m].to_numpy(dtype=np.float64), level)
        row[f"{m}_meas"], row[f"{m}_lo"], row[f"{m}_hi"] = ci.mean, ci.low, ci.high
        row[f"{m}_pred"] = pred[m]
        row[f"{m}_err_pct"] = rel_err_pct(pred[m], ci.mean)
        row[f"{m}_in_ci"] = ci.low <= pred[m] <= ci.high if not math.isnan(ci.low) else None
    for kind in LATENCY_KINDS:
        reps = [measured.samples(int(r), kind) for r in grp.index]
        have = [s for s in reps if s is not None]
        pred_sample = arrays[kind]
        # a CDF comparison needs per-I/O data of every repeat (json+ bins) and of the prediction
        if not have or len(have) < len(reps) or pred_sample.size == 0:
            for suffix in ("demerit", "demerit99", "noise", "noise99"):
                row[f"{kind}_{suffix}_us"] = row[f"{kind}_{suffix}_pct"] = math.nan
            row[f"{kind}_demerit_ratio"] = row[f"{kind}_demerit99_ratio"] = math.nan
            continue
        # the measured latencies are fio bucket middles: put the prediction in the same buckets
        pred_sample = sample_from_bins(bins_from_ns(pred_sample))
        scale = float(np.mean([s.mean() for s in have]))
        for suffix, p_max in (("", 1.0), ("99", 0.99)):
            dem = float(np.mean([demerit(s, pred_sample, p_max) for s in have]))
            noise = noise_floor(have, p_max)
            row[f"{kind}_demerit{suffix}_us"] = dem / 1000
            row[f"{kind}_demerit{suffix}_pct"] = 100 * dem / scale
            row[f"{kind}_noise{suffix}_us"] = noise / 1000 if noise is not None else math.nan
            row[f"{kind}_noise{suffix}_pct"] = (
                100 * noise / scale if noise is not None else math.nan
            )
            row[f"{kind}_demerit{suffix}_ratio"] = dem / noise if noise else math.nan
    return row


def _gains(table: pd.DataFrame, pts: pd.DataFrame, level: float) -> pd.DataFrame:
    rows = []
    for key, grp in table.groupby(list(GAIN_KEYS), sort=False):
        by = {str(r["design"]): r for _, r in grp.iterrows()}
        if BASELINE not in by or CONTENDER not in by:
            continue
        point = dict(zip(GAIN_KEYS, key, strict=True))
        sel = (pts[list(GAIN_KEYS)] == pd.Series(point)).all(axis=1)
        iops = {d: pts.loc[sel & (pts["design"] == d), "iops"] for d in (BASELINE, CONTENDER)}
        ci = gain_ci(iops[BASELINE].to_numpy(), iops[CONTENDER].to_numpy(), level)
        pred = 100.0 * (by[CONTENDER]["iops_pred"] / by[BASELINE]["iops_pred"] - 1.0)
        decisive = not math.isnan(ci.low) and (ci.low > 0 or ci.high < 0)
        rows.append(
            {
                **point,
                "calibration": bool(by[BASELINE]["calibration"] and by[CONTENDER]["calibration"]),
                "n": ci.n,
                "gain_meas_pct": ci.mean,
                "gain_lo_pct": ci.low,
                "gain_hi_pct": ci.high,
                "gain_pred_pct": pred,
                "gain_err_pp": pred - ci.mean,
                "gain_in_ci": (ci.low <= pred <= ci.high) if not math.isnan(ci.low) else None,
                "ci_excludes_zero": decisive,
                "sign_right": bool(np.sign(pred) == np.sign(ci.mean)),
            }
        )
    gains = pd.DataFrame(
        rows,
        columns=[
            *GAIN_KEYS,
            "calibration",
            "n",
            "gain_meas_pct",
            "gain_lo_pct",
            "gain_hi_pct",
            "gain_pred_pct",
            "gain_err_pp",
            "gain_in_ci",
            "ci_excludes_zero",
            "sign_right",
        ],
    )
    gains["gain_in_ci"] = gains["gain_in_ci"].astype("boolean")
    return gains


def _headline(table: pd.DataFrame, gains: pd.DataFrame) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []

    def add(subset: str, metric: str, unit: str, vals: pd.Series, ok: pd.Series | None) -> None:
        v = vals.to_numpy(dtype=np.float64)
        v = np.abs(v[~np.isnan(v)])
        if v.size == 0:
            return
        checked = ok.dropna() if ok is not None else pd.Series([], dtype="boolean")
        rows.append(
            {
                "subset": subset,
                "metric": metric,
                "unit": unit,
                "n": int(v.size),
                "median_abs": float(np.median(v)),
                "worst_abs": float(v.max()),
                "n_checked": int(checked.size),
                "n_ok": int(checked.sum()),
            }
        )

    for subset, cal in (("held-out", False), ("calibration", True)):
        t = table[table["calibration"] == cal]
        for m in COMPARED:
            add(subset, f"{m}_err", "%", t[f"{m}_err_pct"], t[f"{m}_in_ci"])
        for kind in LATENCY_KINDS:
            for s in ("", "99"):
                if f"{kind}_demerit{s}_pct" in t:
                    add(
                        subset, f"{kind}_demerit{s}", "% of mean", t[f"{kind}_demerit{s}_pct"], None
                    )
                    add(
                        subset,
                        f"{kind}_demerit{s}_ratio",
                        "x noise floor",
                        t[f"{kind}_demerit{s}_ratio"],
                        None,
                    )
        g = gains[gains["calibration"] == cal]
        add(subset, "gain_err", "pp", g["gain_err_pp"], g["gain_in_ci"])
        decisive = g[g["ci_excludes_zero"]]
        if len(decisive):
            rows.append(
                {
                    "subset": subset,
                    "metric": "gain_sign",
                    "unit": "",
                    "n": len(decisive),
                    "median_abs": math.nan,
                    "worst_abs": math.nan,
                    "n_checked": len(decisive),
                    "n_ok": int(decisive["sign_right"].sum()),
                }
            )
    cols = ["subset", "metric", "unit", "n", "median_abs", "worst_abs", "n_checked", "n_ok"]
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- text and Markdown


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


def _markdown(v: Validation, plots: Sequence[str]) -> str:
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


def _summary(v: Validation) -> str:
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


def _plots(v: Validation, out: Path) -> list[Path]:
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
            fig.savefig(path, dpi=90, metadata={"Software": None})
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
            fig.savefig(path, dpi=90, metadata={"Software": None})
            written.append(path)
    return written
