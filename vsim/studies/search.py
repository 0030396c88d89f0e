"""Latency-target search: the most IOPS a scenario gives while a latency target holds."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from vsim.analytic import mva
from vsim.demands import mva_point, stations
from vsim.engine import DEFAULT_MAX_IOS, DEFAULT_PRECISION, check_run_options, simulate
from vsim.errors import ConfigError
from vsim.fio import check_percentiles
from vsim.profile import Profile, load_profile
from vsim.results import ROW_PERCENTILES
from vsim.scenario import MAX_IODEPTH, Scenario

__all__ = ["OVER", "SearchResult", "Target", "parse_targets", "search"]

OVER = ("iodepth", "rate_iops")  # what a search varies
# I/Os beyond a percentile target each step measures at least: 100 makes the tail count's
# Poisson error 10 % (1 / sqrt(100)), e.g. 10,000 I/Os per step for a p99 target.
TAIL_IOS = 100
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_TARGET_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")
_PCT_RE = re.compile(r"^(?:clat|lat)_p([0-9]+(?:\.[0-9]+)?)_us$")


@dataclass(frozen=True)
class Target:
    """One condition on a tidy row's column: ``lat_p99_us <= 500``."""

    metric: str
    op: str
    value: float

    def holds(self, rows: Sequence[dict[str, Any]]) -> bool:
        """True when every direction's row meets the condition."""
        return all(_OPS[self.op](float(r[self.metric]), self.value) for r in rows)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_targets(text: str) -> tuple[Target, ...]:
    """Targets as ``METRIC OP VALUE`` joined by commas (all must hold): ``lat_p99_us<=500``."""
    out = []
    for part in text.split(","):
        m = _TARGET_RE.match(part)
        if not m:
            raise ConfigError(
                f"--target: cannot read {part.strip()!r} (expected e.g. 'lat_p99_us<=500')"
            )
        try:
            value = float(m.group(3))
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ConfigError(f"--target: {part.strip()!r}: the value must be a finite number")
        out.append(Target(m.group(1), m.group(2), value))
    return tuple(out)


def _percentiles(targets: Sequence[Target]) -> tuple[float, ...]:
    """The row percentiles the targets need, beside the default ones."""
    extra = [float(m.group(1)) for t in targets if (m := _PCT_RE.match(t.metric))]
    return check_percentiles([*ROW_PERCENTILES, *extra])


@dataclass
class SearchResult:
    """A search's answer: the best point that meets the targets, the next step up (which
    misses them), and every point evaluated, in order (column ``meets``)."""

    targets: tuple[Target, ...]
    over: str
    best: dict[str, Any] | None  # None: not even the lowest step meets the targets
    next_up: dict[str, Any] | None  # None: the highest step allowed meets them
    steps: list[dict[str, Any]]
    bracket: tuple[float, float]  # the analytic (MVA) bracket the search started from

    def to_dataframe(self) -> pd.DataFrame:
        """Every point evaluated, one row per point (IOPS summed over directions)."""
        return pd.DataFrame(self.steps)

    def summary(self) -> str:
        """One line: the answer and the step that misses."""
        t = " and ".join(map(str, self.targets))
        if self.best is None:
            return f"no point meets {t}: the lowest {self.over} misses it"
        line = (
            f"highest IOPS with {t}: {self.best['iops']:,.0f} at {self.over} "
            f"{self.best[self.over]:g}"
        )
        if self.next_up is None:
            return line + f" (the highest {self.over} searched; it still meets the target)"
        return line + f"; {self.over} {self.next_up[self.over]:g} misses it"

    def _repr_html_(self) -> str:
        df = self.to_dataframe().to_html(index=False, float_format=lambda v: f"{v:.1f}")
        return f"<p>{self.summary()}</p>{df}"


def _point(
    rows: list[dict[str, Any]], over: str, value: float, targets: Sequence[Target]
) -> dict[str, Any]:
    """One evaluated step: the search variable, the targets' metrics (worst direction), IOPS
    summed over directions, and whether every target holds."""
    out: dict[str, Any] = {over: value, "iops": sum(float(r["iops"]) for r in rows)}
    for t in targets:
        worst = max if t.op in ("<=", "<") else min
        out[t.metric] = worst(float(r[t.metric]) for r in rows)
    for k in ("lat_mean_us", "lat_p99_us"):
        if k not in out:
            out[k] = max(float(r[k]) for r in rows)
    ios = sum(int(r["ios"]) for r in rows)
    out["ios"] = ios
    out["meets"] = all(t.holds(rows) for t in targets)
    if over == "rate_iops":
        # Sustained: the shortfall of the achieved IOPS is within the run's 95 % error (the
        # batch-means CI when the run was adaptive, the Poisson counting error 1.96/sqrt(n)).
        hw = float(rows[0].get("iops_hw_pct", math.nan)) / 100
        err = max(hw if math.isfinite(hw) else 0.0, 1.96 / math.sqrt(max(ios, 1)))
        out["sustained"] = out["iops"] >= value * (1 - err)
        out["meets"] = out["meets"] and out["sustained"]
    return out


def _mva_curve(profile: Profile, scenario: Scenario, top: int) -> list[float]:
    """Mean latency (us) at iodepth 1..top by MVA (one solve: MVA's recursion visits each)."""
    w = scenario.workload
    res = mva(
        stations(profile, replace(scenario, workload=replace(w, iodepth=top))), top * w.numjobs
    )
    return [float(res.response[n * w.numjobs - 1]) for n in range(1, top + 1)]


def search(
    scenario: Scenario,
    targets: str | Sequence[Target],
    *,
    over: str = "iodepth",
    seed: int = 1,
    precision: float | None = None,
    max_ios: int = DEFAULT_MAX_IOS,
    lo: int | None = None,
    hi: int | None = None,
    step: int | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> SearchResult:
    """The highest IOPS of `scenario` while every target holds, by bisection over the DES.

    over="iodepth": the answer is an iodepth (1..hi, whole steps; the MVA mean-latency curve
    gives the starting bracket: the first iodepth whose *mean* latency passes a latency
    target's value, which a percentile above the mean passes no later). over="rate_iops":
    an open-loop rate (fio's rate_iops for the directions the job issues, at its iodepth) in
    steps of `step` IOPS (default 1 % of the MVA capacity), bracketed by 0 and the MVA
    capacity at the job's iodepth. Each step is one DES run at `precision` (default 1 %), or
    the workload's own number_ios / runtime; for a percentile target an adaptive step also
    measures at least TAIL_IOS I/Os beyond the percentile. The bracket's ends are checked and
    widened by doubling when the DES disagrees with the MVA. The result holds the best step
    that meets the targets and the next step up, which misses them (bisection assumes the
    targets' metrics grow with load, as latency does). Over rate_iops a step also needs the
    rate to be sustained (column ``sustained``): past saturation fio's achieved IOPS falls
    short of the offered rate while its latency stops growing (fio measures from the issue,
    not from the schedule), so without that rule a loose target would be "met" at any rate.
    """
    if over not in OVER:
        raise ConfigError(f"--over: unknown {over!r} (choose from {', '.join(OVER)})")
    tgts = parse_targets(targets) if isinstance(targets, str) else tuple(targets)
    if not tgts:
        raise ConfigError("--target: give at least one target, e.g. 'lat_p99_us<=500'")
    w = scenario.workload
    fixed = w.number_ios is not None or w.runtime is not None
    if fixed and precision is not None:
        raise ConfigError("give a run length (number_ios or runtime) or a precision, not both")
    prec = None if fixed else (precision if precision is not None else DEFAULT_PRECISION)
    check_run_options(seed, prec, max_ios)
    profile = load_profile(scenario.profile)
    pcts = _percentiles(tgts)
    # A target's metric must be a numeric row column: a 10-I/O run says so before any step.
    probe = simulate(
        replace(scenario, workload=replace(w, number_ios=10, runtime=None)), seed, profile=profile
    ).rows(pcts)
    for t in tgts:
        if t.metric not in probe[0] or isinstance(probe[0][t.metric], bool | str):
            numeric = [k for k, v in probe[0].items() if isinstance(v, int | float)]
            raise ConfigError(
                f"--target: unknown metric {t.metric!r} (e.g. {', '.join(numeric[8:16])}, "
                "or any percentile: lat_p99.9_us)"
            )
    # A percentile target needs its tail sampled: at least TAIL_IOS I/Os beyond it per step.
    tail = max((TAIL_IOS / (1 - p / 100) for p in pcts if p < 100), default=0.0)
    min_ios = 0 if fixed else min(math.ceil(tail), max_ios)
    cache: dict[int, dict[str, Any]] = {}
    steps: list[dict[str, Any]] = []

    def at(value: int) -> dict[str, Any]:
        if value not in cache:
            s = _with(scenario, over, value)
            res = simulate(
                s, seed, profile=profile, precision=prec, max_ios=max_ios, min_ios=min_ios
            )
            cache[value] = _point(res.rows(pcts), over, value, tgts)
            steps.append(cache[value])
            if progress:
                progress(cache[value])
        return cache[value]

    if over == "iodepth":
        low, high, unit, bracket = _iodepth_bracket(profile, scenario, tgts, lo, hi)
    else:
        low, high, unit, bracket = _rate_bracket(profile, scenario, lo, hi, step)
    top = MAX_IODEPTH if over == "iodepth" else high * 64
    if not at(low)["meets"]:
        return SearchResult(tgts, over, None, at(low), steps, bracket)
    while at(high)["meets"]:  # the analytic bracket was too tight: widen it
        if high >= top or (hi is not None and high >= hi):
            return SearchResult(tgts, over, at(high), None, steps, bracket)
        low, high = high, min(high * 2, top if hi is None else hi)
    while high - low > unit:  # low meets, high misses
        mid = low + (high - low) // (2 * unit) * unit
        if at(mid)["meets"]:
            low = mid
        else:
            high = mid
    return SearchResult(tgts, over, at(low), at(high), steps, bracket)


def _with(scenario: Scenario, over: str, value: int) -> Scenario:
    w = scenario.workload
    if over == "iodepth":
        return replace(scenario, workload=replace(w, iodepth=value))
    reads = round(value * w.read_fraction)  # a mix's rate splits as rwmixread does
    return replace(scenario, workload=replace(w, rate_iops=(reads, value - reads)))


def _iodepth_bracket(
    profile: Profile,
    scenario: Scenario,
    targets: Sequence[Target],
    lo: int | None,
    hi: int | None,
) -> tuple[int, int, int, tuple[float, float]]:
    low = 1 if lo is None else lo
    if hi is not None:
        high = hi
    else:
        bounds = [
            t.value
            for t in targets
            if t.metric.startswith(("lat_", "clat_")) and t.op in ("<=", "<")
        ]
        curve = _mva_curve(profile, scenario, 256)
        limit = min(bounds) if bounds else math.inf
        first = next((n for n, r in enumerate(curve, 1) if r > limit), len(curve))
        high = max(first, low + 1)
    if not 1 <= low < high <= MAX_IODEPTH:
        raise ConfigError(f"--lo/--hi: need 1 <= lo < hi <= {MAX_IODEPTH}, got {low}, {high}")
    return low, high, 1, (float(low), float(high))


def _rate_bracket(
    profile: Profile, scenario: Scenario, lo: int | None, hi: int | None, step: int | None
) -> tuple[int, int, int, tuple[float, float]]:
    w = scenario.workload
    closed = replace(scenario, workload=replace(w, rate_iops=(0, 0)))
    capacity = mva_point(profile, closed)["iops"]
    unit = step if step is not None else max(int(capacity / 100), 1)
    if unit < 1:
        raise ConfigError(f"--step must be >= 1 IOPS, got {unit}")
    low = unit if lo is None else lo
    high = math.ceil(capacity / unit) * unit if hi is None else hi
    if not 1 <= low < high:
        raise ConfigError(f"--lo/--hi: need 1 <= lo < hi, got {low}, {high}")
    return low, high, unit, (float(low), float(high))
