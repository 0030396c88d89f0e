"""A/B comparisons: paired differences of every metric with CIs, simulated or measured."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.special import stdtrit

from vsim.engine import DEFAULT_MAX_IOS, check_run_options, simulate
from vsim.errors import ConfigError
from vsim.fio import check_percentiles
from vsim.measure.dataset import METRICS, POINT_KEYS, MeasuredSet, load_measured
from vsim.precision import CONFIDENCE, mean_ci
from vsim.profile import Profile, load_profile
from vsim.results import DIRECTIONS, ROW_PERCENTILES
from vsim.scenario import Design, Scenario, Workload, design
from vsim.sweep.executors import run_unordered

# :func:`compare` runs ``reps`` independent replications (rep 0, 1, ...) of design A and of
# design B on one workload and pairs replication r of A with replication r of B. The engine
# seeds a point's random streams without its design (vsim.engine.point_key), so the two runs of
# a pair see the same offsets, disk service times and cost draws (common random numbers): most
# of the run-to-run noise is common to both and cancels in the difference. :func:`compare_measured`
# pairs the runs of two designs in a measured dataset by point and repeat index (``vsim measure``
# interleaves the designs within every round, so a pair ran back to back).
#
# Per point, direction and metric the :class:`Comparison` holds A's and B's means, the mean
# paired difference B - A with its Student-t CI over the pairs (``n - 1`` degrees of freedom,
# vsim.precision.mean_ci), the relative difference (B - A) / A in % with Fieller's CI, the
# number of pairs and a verdict (:data:`VERDICTS`); see :func:`paired_difference`.

__all__ = [
    "COLUMNS",
    "DEFAULT_PROFILE",
    "NOT_METRICS",
    "ROUNDING",
    "RUN_COLUMNS",
    "STATS",
    "VERDICTS",
    "Comparison",
    "compare",
    "compare_measured",
    "is_metric",
    "paired_difference",
]

DEFAULT_PROFILE = "seed-2011"
#: The verdicts: the CI of B - A lies above zero, below it, or contains it; every pair's
#: difference is zero (within ROUNDING); fewer than 2 pairs (no interval).
B_HIGHER, B_LOWER, UNDECIDED, IDENTICAL, NO_INTERVAL = (
    "B higher",
    "B lower",
    "not distinguishable",
    "identical",
    "no interval",
)
VERDICTS = (B_HIGHER, B_LOWER, UNDECIDED, IDENTICAL, NO_INTERVAL)
#: Pairs whose difference is within this share of their values differ by floating-point
#: rounding only (one quantity summed in another order), not by an effect: "identical".
ROUNDING = 1e-9
#: Columns of a simulated tidy row that describe the run, not the system: its I/O count,
#: simulation events and the batch-means CI half-widths of the run itself.
RUN_COLUMNS = ("ios", "events", "iops_hw_pct", "lat_hw_pct")
#: Numeric columns that are never metrics: the scenario's parameters (every field of Workload
#: and Scenario, whether or not the rows carry it), the seed, and RUN_COLUMNS.
NOT_METRICS = frozenset(
    {f.name for f in fields(Workload)}
    | {f.name for f in fields(Scenario)}
    | {"seed", "rep", "repeat", "run"}
    | set(RUN_COLUMNS)
)
#: The statistics columns of Comparison.to_dataframe(), after the point's parameter columns.
STATS = (
    "a_mean",
    "b_mean",
    "diff",
    "diff_lo",
    "diff_hi",
    "rel_pct",
    "rel_lo_pct",
    "rel_hi_pct",
    "n",
    "verdict",
)
COLUMNS = ("dir", "metric", "a", "b", *STATS)
# Columns of a simulated row that are neither metrics nor the point's parameters.
_NOT_POINT = frozenset({"design", "dir", "seed", "extrapolated", *RUN_COLUMNS})
# Per point: its parameters, the direction and per metric the values of A and B, pair by pair.
_Pair = tuple[NDArray[np.float64], NDArray[np.float64]]
_Group = tuple[dict[str, Any], str, dict[str, _Pair]]
# The point fields of a measured run, beside its design and direction (in table order).
_MEASURED_POINT = tuple(k for k in POINT_KEYS if k not in ("design", "dir"))


# --------------------------------------------------------------------------- statistics


def is_metric(column: str, value: object) -> bool:
    """The metric selection rule: a tidy-row column is a metric when its value is a number
    (int or float, not a bool) and the column is not in NOT_METRICS (a scenario parameter,
    the seed, or a figure of the run itself such as its I/O count)."""
    number = isinstance(value, int | float | np.integer | np.floating)
    return number and not isinstance(value, bool | np.bool_) and column not in NOT_METRICS


def paired_difference(a: ArrayLike, b: ArrayLike, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """The paired comparison of values a[i] and b[i] (pair i: replication or repeat i).

    Pairs where either value is missing or not finite are dropped. ``diff`` is the mean of the
    differences d = b - a, with the Student-t CI mean(d) +- t(n-1) s_d / sqrt(n)
    (vsim.precision.mean_ci). ``rel_pct`` is 100 R with R = mean(d) / mean(a); its CI is
    Fieller's (Fieller 1954; the exact interval of a ratio of means under normality): the R
    for which the paired t-test of d - R a does not reject, |mean(d) - R mean(a)| <=
    t(n-1) s(d - R a) / sqrt(n), a quadratic inequality in R. It counts A's own spread and
    its covariance with d, and contains 0 exactly when the CI of the difference does (R = 0
    is that test); it is unbounded (NaN) when A's mean is not distinguishable from 0. The
    verdict follows the interval of the difference: "identical" when every difference is
    zero (or within ROUNDING of its values: the same quantity assembled in another order),
    "no interval" below 2 pairs, else "B higher" / "B lower" when the CI lies above / below
    zero and "not distinguishable" when it contains zero.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ConfigError(f"paired_difference: {x.size} values of A but {y.size} of B")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(x.size)
    d = y - x
    exact = n > 0 and bool(np.all(d == 0))
    same = n > 0 and bool(np.all(np.abs(d) <= ROUNDING * np.maximum(np.abs(x), np.abs(y))))
    ci = mean_ci(d, confidence)
    rel = _relative(x, d, confidence, exact)
    if same:
        verdict = IDENTICAL
    elif n < 2:
        verdict = NO_INTERVAL
    elif ci.low > 0:
        verdict = B_HIGHER
    elif ci.high < 0:
        verdict = B_LOWER
    else:
        verdict = UNDECIDED
    return {
        "a_mean": float(x.mean()) if n else math.nan,
        "b_mean": float(y.mean()) if n else math.nan,
        "diff": ci.mean,
        "diff_lo": ci.low,
        "diff_hi": ci.high,
        "rel_pct": rel[0],
        "rel_lo_pct": rel[1],
        "rel_hi_pct": rel[2],
        "n": n,
        "verdict": verdict,
    }


def _relative(
    x: NDArray[np.float64], d: NDArray[np.float64], level: float, exact: bool
) -> tuple[float, float, float]:
    """100 mean(d) / mean(x) with Fieller's interval (see paired_difference); 0 when every
    difference is 0, even where A's mean is 0."""
    n = int(x.size)
    if exact:
        bound = 0.0 if n >= 2 else math.nan
        return 0.0, bound, bound
    ma = float(x.mean()) if n else math.nan
    if not ma or math.isnan(ma):
        return math.nan, math.nan, math.nan
    md = float(d.mean())
    r = md / ma
    if n < 2:
        return 100.0 * r, math.nan, math.nan
    # R is in the interval when the paired t-test of d - R x does not reject: a quadratic
    # a2 R^2 - 2 b2 R + c2 <= 0 in the (co)variances of x and d
    q = float(stdtrit(n - 1, 0.5 + level / 2)) ** 2 / n
    (s_xx, s_xd), (_, s_dd) = np.cov(x, d, ddof=1)
    a2 = ma * ma - q * float(s_xx)
    b2 = md * ma - q * float(s_xd)
    c2 = md * md - q * float(s_dd)
    if a2 <= 0:  # A's mean is not distinguishable from 0: the interval is unbounded
        return 100.0 * r, math.nan, math.nan
    root = math.sqrt(max(b2 * b2 - a2 * c2, 0.0))
    return 100.0 * r, 100.0 * (b2 - root) / a2, 100.0 * (b2 + root) / a2


def _check_confidence(confidence: float) -> None:
    ok = isinstance(confidence, int | float) and not isinstance(confidence, bool)
    if not ok or not 0 < confidence < 1:
        raise ConfigError(f"confidence must be within (0, 1), got {confidence!r}")


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True, eq=False)
class Comparison:
    """An A/B comparison: one row per point, direction and metric (``frame``, see
    to_dataframe).

    ``a`` and ``b`` label the two sides (design names); ``kind`` is "simulated" or
    "measured"; ``point_columns`` are the parameter columns that identify a point; ``runs``
    holds the per-run values that were paired (``side`` A or B, ``rep`` the pair index,
    ``dir`` and every metric); ``unpaired`` lists the runs left without a partner (empty when
    every run paired); ``settings`` records how the comparison was made (JSON-ready).
    """

    a: str
    b: str
    kind: str
    confidence: float
    frame: pd.DataFrame = field(repr=False)
    point_columns: tuple[str, ...]
    runs: pd.DataFrame = field(repr=False)
    unpaired: pd.DataFrame = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dataframe(self) -> pd.DataFrame:
        """The tidy table: the point's parameter columns, then COLUMNS (dir, metric, the two
        labels a and b, a_mean, b_mean, diff = B - A with diff_lo / diff_hi, rel_pct with
        rel_lo_pct / rel_hi_pct, n pairs and the verdict)."""
        return self.frame.copy()

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready data: the settings, the rows (records of to_dataframe,
        NaN as None) and the unpaired runs."""
        return {
            "kind": self.kind,
            "a": self.a,
            "b": self.b,
            "confidence": self.confidence,
            "settings": _jsonable(self.settings),
            "rows": _records(self.frame),
            "unpaired": _records(self.unpaired),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """to_dict() as JSON text (strict: no NaN)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def verdict(self, metric: str, dir: str | None = None, **point: Any) -> str:
        """The verdict of one metric; ``dir`` and point parameters (``iodepth=8``) narrow the
        rows to one when the comparison has several directions or points."""
        return str(self._row(metric, dir, point)["verdict"])

    def _row(self, metric: str, d: str | None, point: Mapping[str, Any]) -> pd.Series:
        t = self.frame
        if metric not in set(t["metric"]):
            raise ConfigError(f"no metric {metric!r} in this comparison")
        bad = [k for k in point if k not in self.point_columns]
        if bad:
            raise ConfigError(
                f"no point column {bad[0]!r} (the points differ in {', '.join(self.point_columns)})"
            )
        sel = t["metric"] == metric
        if d is not None:
            sel &= t["dir"] == d
        for k, v in point.items():
            sel &= t[k] == v
        rows = t[sel]
        if len(rows) != 1:
            what = "matches no row" if rows.empty else f"matches {len(rows)} rows"
            raise ConfigError(f"{metric} {what}: give dir and the point's parameters")
        return rows.iloc[0]

    # -- display -----------------------------------------------------------------------------
    def header(self) -> str:
        """One line: what A and B are, what was paired and the confidence."""
        pct = f"{100 * self.confidence:g} %"
        s = self.settings
        if self.kind == "simulated":
            how = f"{s['reps']} paired replications (seed {s['seed']}, common random numbers)"
        else:
            left = f", {len(self.unpaired)} unpaired runs left out" if len(self.unpaired) else ""
            how = f"dataset {s['dataset']}: runs paired by point and repeat{left}"
        return f"A = {self.a}, B = {self.b}: {how}; {pct} CI of B - A"

    def table(self, metrics: Sequence[str] | None = None) -> str:
        """A compact text table for a terminal: per point and direction, one line per metric
        (or only ``metrics``) with A, B, B - A [CI], (B - A) / A in % [CI] and the verdict."""
        t = self._shown(metrics)
        lines = [self.header()]
        for key, grp in t.groupby([*self.point_columns, "dir"], sort=False, dropna=False):
            values = key if isinstance(key, tuple) else (key,)
            where = [f"{k}={v}" for k, v in zip([*self.point_columns, "dir"], values, strict=True)]
            lines += ["", f"{' '.join(where)}  (n = {_n_text(grp['n'])})"]
            lines += _aligned(_display_rows(grp))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        t = self._shown(None)
        shown = pd.DataFrame(_display_rows(t)[1:], columns=_display_rows(t)[0])
        points = t[[*self.point_columns, "dir"]].reset_index(drop=True)
        body = pd.concat([points, shown], axis=1).to_html(index=False, escape=True)
        return f"<p>{html.escape(self.header())}</p>\n{body}"

    def _shown(self, metrics: Sequence[str] | None) -> pd.DataFrame:
        if metrics is None:
            return self.frame
        unknown = [m for m in metrics if m not in set(self.frame["metric"])]
        if unknown:
            raise ConfigError(f"no metric {unknown[0]!r} in this comparison")
        return self.frame[self.frame["metric"].isin(list(metrics))]

    def __repr__(self) -> str:
        counts = self.frame["verdict"].value_counts()
        tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
        return f"<Comparison {self.kind} A={self.a} B={self.b}: {len(self.frame)} rows ({tally})>"


def _n_text(ns: pd.Series) -> str:
    lo, hi = int(ns.min()), int(ns.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _num(v: float, sign: bool = False) -> str:
    """About 4 significant digits, without exponents for the magnitudes of these metrics."""
    if not math.isfinite(v):
        return "nan"
    plus = "+" if sign else ""
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1:
        return f"{v:{plus}.{max(0, 3 - math.floor(math.log10(a)))}f}"
    return f"{v:{plus}.3g}"


def _interval(mean: float, lo: float, hi: float, suffix: str = "") -> str:
    if math.isnan(lo):
        return f"{_num(mean, True)}{suffix}"
    return f"{_num(mean, True)}{suffix} [{_num(lo, True)}, {_num(hi, True)}]"


def _unbounded(rel: float, lo: float, n: int) -> bool:
    """A relative difference whose interval exists (2 pairs) but is unbounded (Fieller)."""
    return n >= 2 and math.isfinite(rel) and math.isnan(lo)


def _display_rows(t: pd.DataFrame) -> list[list[str]]:
    out = [["metric", "A", "B", "B - A [CI]", "(B - A) / A [CI]", "verdict"]]
    for r in t.itertuples(index=False):
        out.append(
            [
                str(r.metric),
                _num(float(r.a_mean)),
                _num(float(r.b_mean)),
                _interval(float(r.diff), float(r.diff_lo), float(r.diff_hi)),
                _interval(float(r.rel_pct), float(r.rel_lo_pct), float(r.rel_hi_pct), " %")
                + (" [unbounded]" if _unbounded(r.rel_pct, r.rel_lo_pct, int(r.n)) else ""),
                str(r.verdict),
            ]
        )
    return out


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:-1], widths[1:-1], strict=True)
        ]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
    return lines


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return _plain(v)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _plain(v) for k, v in r.items()} for r in df.to_dict("records")]


def _pairs_table(
    groups: Iterable[_Group],
    point_columns: Sequence[str],
    labels: tuple[str, str],
    confidence: float,
) -> pd.DataFrame:
    """The tidy table from (point, dir, {metric: (A's values, B's values)}) in order."""
    rows = []
    for point, d, values in groups:
        for metric, (va, vb) in values.items():
            stats = paired_difference(va, vb, confidence)
            rows.append(
                {**point, "dir": d, "metric": metric, "a": labels[0], "b": labels[1], **stats}
            )
    out = pd.DataFrame(rows, columns=[*point_columns, *COLUMNS])
    out["n"] = out["n"].astype(np.int64)
    return out


# --------------------------------------------------------------------------- simulated


def compare(
    a: str | Design | Scenario,
    b: str | Design | Scenario,
    *,
    workload: Workload | None = None,
    profile: str | Path | None = None,
    reps: int = 10,
    seed: int = 1,
    number_ios: int | None = None,
    runtime: float | None = None,
    precision: float | None = None,
    max_ios: int = DEFAULT_MAX_IOS,
    percentiles: Sequence[float] | None = None,
    confidence: float = CONFIDENCE,
    jobs: int = 1,
    scheduler: str | None = None,
    guest_vcpus: int | None = None,
) -> Comparison:
    """Simulate ``reps`` paired replications of A and B and compare every metric.

    ``a`` and ``b`` are design names (vsim.scenario.DESIGNS), Designs, or whole Scenarios.
    Designs run on ``workload`` (default: Workload(), randread 4k iodepth 1), ``profile``
    (default DEFAULT_PROFILE) and ``guest_vcpus``; a Scenario brings its own, and a design
    given beside a Scenario runs in that Scenario's workload, profile and vCPUs (so
    ``compare(scenario, "vhost-blk")`` swaps the design only); workload, profile and
    guest_vcpus cannot be given with a Scenario. ``number_ios`` / ``runtime`` set the run
    length of both sides (over the workload's); without any run length each run goes on until
    ``precision`` (vsim.engine.simulate). Replication r of A and of B both run with ``seed``
    and rep r; the metrics are the numeric columns of Result.rows(percentiles) that
    :func:`is_metric` accepts, per direction. ``jobs`` worker processes or a Dask
    ``scheduler`` run the replications; the result does not depend on where they ran.
    """
    _check_confidence(confidence)
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 2:
        raise ConfigError(f"reps must be a whole number >= 2 (a CI needs 2 pairs), got {reps!r}")
    check_run_options(seed, precision, max_ios)
    pcts = check_percentiles(ROW_PERCENTILES if percentiles is None else percentiles)
    sa, sb = _scenarios(a, b, workload, profile, guest_vcpus, number_ios, runtime)
    if sa == sb:
        raise ConfigError(
            f"A and B are the same scenario (design {sa.design.name}): nothing to compare"
        )
    profiles = {p: load_profile(p) for p in dict.fromkeys((sa.profile, sb.profile))}
    work = [
        (s, seed, r, profiles[s.profile], precision, max_ios, pcts)
        for r in range(reps)
        for s in (sa, sb)
    ]
    rows: dict[int, list[dict[str, Any]]] = dict(
        run_unordered(_run_rep, work, jobs=jobs, scheduler=scheduler)
    )
    per_side = ([rows[2 * r] for r in range(reps)], [rows[2 * r + 1] for r in range(reps)])
    labels = _labels(sa, sb)
    settings = {
        "seed": seed,
        "reps": reps,
        "percentiles": list(pcts),
        "precision": precision,
        "max_ios": max_ios,
        "scenarios": {"a": asdict(sa), "b": asdict(sb)},
    }
    return _simulated(per_side, labels, confidence, settings)


def _run_rep(
    args: tuple[Scenario, int, int, Profile, float | None, int, tuple[float, ...]],
) -> list[dict[str, Any]]:
    """The tidy rows of one replication (run on a worker)."""
    scenario, seed, rep, prof, precision, max_ios, pcts = args
    res = simulate(scenario, seed, profile=prof, rep=rep, precision=precision, max_ios=max_ios)
    return res.rows(pcts)


def _as_design(x: str | Design) -> Design:
    if isinstance(x, Design):
        return x
    if isinstance(x, str):
        return design(x)
    raise ConfigError(f"A and B must be design names, Designs or Scenarios, got {x!r}")


def _scenarios(
    a: str | Design | Scenario,
    b: str | Design | Scenario,
    workload: Workload | None,
    profile: str | Path | None,
    guest_vcpus: int | None,
    number_ios: int | None,
    runtime: float | None,
) -> tuple[Scenario, Scenario]:
    """The two scenarios compared (see compare), with the run length set."""
    given = [s for s in (a, b) if isinstance(s, Scenario)]
    if given:
        extra = [
            k
            for k, v in (("workload", workload), ("profile", profile), ("guest_vcpus", guest_vcpus))
            if v is not None
        ]
        if extra:
            raise ConfigError(
                f"{extra[0]} goes with design names or Designs; a Scenario brings its own"
            )
        base = given[0]
    else:
        if workload is not None and not isinstance(workload, Workload):
            raise ConfigError(f"workload must be a Workload, got {workload!r}")
        prof = str(profile) if profile is not None else DEFAULT_PROFILE
        base = Scenario(workload=workload or Workload(), profile=prof, guest_vcpus=guest_vcpus)
    out = []
    for s in (a, b):
        scen = s if isinstance(s, Scenario) else replace(base, design=_as_design(s))
        run: dict[str, Any] = {}
        if number_ios is not None:
            run["number_ios"] = number_ios
        if runtime is not None:
            run["runtime"] = runtime
        if run:
            scen = replace(scen, workload=replace(scen.workload, **run))
        out.append(scen)
    return out[0], out[1]


def _labels(sa: Scenario, sb: Scenario) -> tuple[str, str]:
    na, nb = sa.design.name, sb.design.name
    return (na, nb) if na != nb else (f"{na} (A)", f"{nb} (B)")


def _simulated(
    per_side: tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]]],
    labels: tuple[str, str],
    confidence: float,
    settings: dict[str, Any],
) -> Comparison:
    """The comparison of the replications' rows (per side: per rep, its rows by direction)."""
    by_dir = [[{r["dir"]: r for r in rows} for rows in side] for side in per_side]
    present = [{d for reps in side for d in reps} for side in by_dir]
    dirs = [d for d in DIRECTIONS if d in present[0] and d in present[1]]
    if not dirs:
        raise ConfigError(f"A ({labels[0]}) and B ({labels[1]}) share no data direction")
    first = {d: [_first(side, d) for side in by_dir] for d in dirs}
    metrics = _sim_metrics(by_dir, dirs)
    point_columns = [c for c in first[dirs[0]][0] if c not in _NOT_POINT and c not in metrics]
    groups: list[_Group] = []
    for d in dirs:
        fa, fb = first[d]
        point = {c: _param(fa.get(c), fb.get(c)) for c in point_columns}
        values = {m: (_column(by_dir[0], d, m), _column(by_dir[1], d, m)) for m in metrics}
        groups.append((point, d, values))
    table = _pairs_table(groups, point_columns, labels, confidence)
    runs, unpaired = _sim_runs(by_dir, dirs)
    return Comparison(
        a=labels[0],
        b=labels[1],
        kind="simulated",
        confidence=confidence,
        frame=table,
        point_columns=tuple(point_columns),
        runs=runs,
        unpaired=unpaired,
        settings=settings,
    )


def _column(side: list[dict[str, dict[str, Any]]], d: str, m: str) -> NDArray[np.float64]:
    """One metric of one side over the replications (NaN where a rep lacks the direction)."""
    return np.array([float(reps[d][m]) if d in reps else math.nan for reps in side])


def _first(side: list[dict[str, dict[str, Any]]], d: str) -> dict[str, Any]:
    return next(reps[d] for reps in side if d in reps)


def _param(va: Any, vb: Any) -> Any:
    """A point parameter: its value, or "A's vs B's" when the two scenarios differ in it."""
    return va if va == vb else f"{va} vs {vb}"


def _sim_metrics(by_dir: list[list[dict[str, dict[str, Any]]]], dirs: list[str]) -> list[str]:
    """The metric columns (is_metric) of every row of both sides, in row order."""
    rows = [reps[d] for side in by_dir for reps in side for d in dirs if d in reps]
    return [c for c, v in rows[0].items() if all(is_metric(c, r.get(c, v)) for r in rows)]


def _sim_runs(
    by_dir: list[list[dict[str, dict[str, Any]]]], dirs: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paired runs' rows (side, rep, then the row) and those left without a partner."""
    paired: list[dict[str, Any]] = []
    lone: list[dict[str, Any]] = []
    for k, side in enumerate(by_dir):
        for rep, reps in enumerate(side):
            for d, row in reps.items():
                other = by_dir[1 - k][rep]
                target = paired if d in dirs and d in other else lone
                target.append({"side": "AB"[k], "rep": rep, **row})
    return pd.DataFrame(paired), pd.DataFrame(lone, columns=["side", "rep", "design", "dir"])


# --------------------------------------------------------------------------- measured


def compare_measured(
    dataset: str | Path | MeasuredSet,
    a: str | Design,
    b: str | Design,
    *,
    metrics: Sequence[str] | None = None,
    confidence: float = CONFIDENCE,
) -> Comparison:
    """Compare designs A and B in a measured dataset, pairing their runs.

    ``dataset`` is a dataset directory (vsim.measure.dataset.load_measured: ``manifest.csv``
    and its fio runs), the name of a bundled one, or a loaded MeasuredSet. A run of A pairs
    with the run of B at the same point (every point field equal: rw, dir, bs, iodepth,
    numjobs, rwmixread, placement, and guest_vcpus when recorded) and the same repeat index:
    ``vsim measure`` runs the designs of a point back to back within each round, so slow
    drift of the machine is common to a pair. Runs without a partner are listed in
    ``Comparison.unpaired``; published summaries (points.csv) are not runs and never pair.
    ``metrics``: the measured metric columns compared (default vsim.measure.dataset.METRICS:
    IOPS and the latency means and percentiles; metrics no pair measured are left out). A's
    and B's means are the plain means of the paired runs' values, so that diff = b_mean -
    a_mean (summary.csv weights the latency means of its runs by their I/O counts instead).
    """
    _check_confidence(confidence)
    ms = dataset if isinstance(dataset, MeasuredSet) else load_measured(dataset)
    na, nb = _measured_name(a), _measured_name(b)
    if na == nb:
        raise ConfigError(f"A and B are the same design ({na}): nothing to compare")
    pts = ms.points
    runs = pts[pts["source"] == "fio"]
    if runs.empty:
        raise ConfigError(
            f"dataset {ms.name} has no fio runs (published summaries have no paired repeats)"
        )
    have = sorted(set(runs["design"]))
    for name in (na, nb):
        if name not in have:
            raise ConfigError(f"dataset {ms.name} has no runs of {name} (it has {', '.join(have)})")
    point_columns = [*_MEASURED_POINT, *(["guest_vcpus"] if "guest_vcpus" in pts else [])]
    keys = [*point_columns, "dir"]
    chosen = _measured_metrics(pts, metrics, keys)
    sides = runs[runs["design"].isin([na, nb])].copy()
    for m in chosen:
        sides[m] = pd.to_numeric(sides[m], errors="coerce")
    _check_unique(sides, keys)
    a_runs = sides[sides["design"] == na]
    b_runs = sides[sides["design"] == nb]
    merged = a_runs.merge(
        b_runs, on=[*keys, "repeat"], how="outer", suffixes=("_a", "_b"), indicator=True
    )
    both = merged[merged["_merge"] == "both"].sort_values([*keys, "repeat"], kind="stable")
    if both.empty:
        raise ConfigError(
            f"dataset {ms.name}: no run of {na} pairs with a run of {nb} at the same point "
            "and repeat"
        )
    groups: list[_Group] = []
    for key, grp in both.groupby(keys, sort=False):
        values = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        d = str(values.pop("dir"))
        pair = {
            m: (grp[f"{m}_a"].to_numpy(np.float64), grp[f"{m}_b"].to_numpy(np.float64))
            for m in chosen
        }
        pair = {m: v for m, v in pair.items() if _any_pair(v)}
        groups.append((values, d, pair))
    table = _pairs_table(groups, point_columns, (na, nb), confidence)
    if table.empty:
        raise ConfigError(f"dataset {ms.name}: no paired run measured {', '.join(chosen)}")
    return Comparison(
        a=na,
        b=nb,
        kind="measured",
        confidence=confidence,
        frame=table,
        point_columns=tuple(point_columns),
        runs=_measured_runs(both, keys, chosen),
        unpaired=_unpaired(merged, keys, na, nb),
        settings={"dataset": ms.name, "metrics": list(chosen)},
    )


def _measured_name(x: str | Design) -> str:
    return _as_design(x).name


def _measured_metrics(
    pts: pd.DataFrame, metrics: Sequence[str] | None, keys: list[str]
) -> list[str]:
    """The metric columns to compare: METRICS, or the ones asked for (checked)."""
    if metrics is None:
        return list(METRICS)
    chosen = list(dict.fromkeys(metrics))
    if not chosen:
        raise ConfigError("metrics: give at least one metric")
    for m in chosen:
        if m not in pts.columns:
            raise ConfigError(f"no metric {m!r} in the dataset (it has {', '.join(METRICS)})")
        if m in keys or m in NOT_METRICS or m in ("design", "file", "job", "source", "note"):
            raise ConfigError(f"{m} is not a metric (it identifies or counts the run)")
        if pd.to_numeric(pts[m], errors="coerce").isna().all():
            raise ConfigError(f"metric {m} has no numbers in the dataset")
    return chosen


def _check_unique(runs: pd.DataFrame, keys: list[str]) -> None:
    """One run per design, point and repeat (several jobs of one file would pair ambiguously)."""
    cols = ["design", *keys, "repeat"]
    dup = runs[runs.duplicated(cols, keep=False)]
    if len(dup):
        first = dup.iloc[0]
        count = int((dup[cols] == first[cols]).all(axis=1).sum())
        raise ConfigError(
            f"{first['file']}: design {first['design']} has {count} runs at one point and "
            f"repeat {first['repeat']} (several jobs?): they would pair ambiguously"
        )


def _any_pair(v: tuple[NDArray[np.float64], NDArray[np.float64]]) -> bool:
    return bool((np.isfinite(v[0]) & np.isfinite(v[1])).any())


def _measured_runs(both: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """The paired runs, one row per side: side, design, repeat, the point, file, metrics."""
    parts = []
    for side, suffix in (("A", "_a"), ("B", "_b")):
        part = pd.DataFrame({"side": side, "design": both[f"design{suffix}"]})
        part["rep"] = both["repeat"]
        for k in keys:
            part[k] = both[k]
        part["file"] = both[f"file{suffix}"]
        for m in metrics:
            part[m] = both[f"{m}{suffix}"]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _unpaired(merged: pd.DataFrame, keys: list[str], na: str, nb: str) -> pd.DataFrame:
    """The runs of A or B without a partner: design, point, repeat and file."""
    rows = []
    for which, name, suffix in (("left_only", na, "_a"), ("right_only", nb, "_b")):
        lone = merged[merged["_merge"] == which]
        for _, r in lone.iterrows():
            rows.append(
                {
                    "design": name,
                    **{k: r[k] for k in keys},
                    "repeat": r["repeat"],
                    "file": r[f"file{suffix}"],
                }
            )
    return pd.DataFrame(rows, columns=["design", *keys, "repeat", "file"])
