"""The measurement protocol of `vsim measure --precision`: rounds, the stop rule, run statistics.

A campaign with a precision runs in *rounds*: every open point once per round, the designs of
a point back to back in an order that alternates from round to round (A B, then B A), so slow
drift of the machine cancels in the gains. After each round, :func:`open_points` says which
points still need runs (a point: every design and direction of one workload and placement), and
:func:`stop_reason` says whether to start another round. Both are pure functions of the runs so
far, so the rule is tested without running anything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from vsim.errors import ConfigError
from vsim.precision import mean_ci

__all__ = [
    "DEFAULT_MAX_ROUNDS",
    "PRECISION_RUNTIME",
    "ROUND_KEYS",
    "ci_pct",
    "converged",
    "cv_pct",
    "drift_pct",
    "open_points",
    "parse_duration",
    "round_order",
    "stop_reason",
]

#: The columns of a point of the protocol: all designs (and directions) of one workload and
#: placement leave the rounds together.
ROUND_KEYS = ("rw", "bs", "iodepth", "numjobs", "rwmixread", "placement")
#: The most rounds a campaign with a precision runs (--max-repeat).
DEFAULT_MAX_ROUNDS = 50
#: Seconds per run with a precision unless given: the CI is over runs, and the host scheduler's
#: placement regimes (tens of milliseconds each) average out across many short runs better
#: than across a few long ones.
PRECISION_RUNTIME = 1.0

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$", re.IGNORECASE)
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}

P = TypeVar("P")
D = TypeVar("D")


def ci_pct(values: ArrayLike) -> float:
    """The half-width of the Student-t 95 % CI of the mean of `values`, in % of the mean (inf
    for fewer than 2 values or a zero mean)."""
    ci = mean_ci(values)
    return 100.0 * ci.rel_halfwidth if math.isfinite(ci.rel_halfwidth) else math.inf


def cv_pct(values: ArrayLike) -> float:
    """The run-to-run coefficient of variation in % (NaN for fewer than 2 values)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size < 2 or v.mean() == 0:
        return math.nan
    return float(100.0 * v.std(ddof=1) / abs(v.mean()))


def drift_pct(values: ArrayLike, rounds: ArrayLike) -> float:
    """How far a point moved from its first round to its last, in % of its mean: the
    least-squares slope of `values` against their round index, times the rounds spanned (the
    last index minus the first: rounds - 1 for consecutive rounds). NaN for fewer than two
    distinct rounds."""
    y = np.asarray(values, dtype=np.float64).ravel()
    x = np.asarray(rounds, dtype=np.float64).ravel()
    if x.size != y.size:
        raise ConfigError(f"drift: {y.size} values but {x.size} round indices")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size < 2 or np.ptp(x) == 0 or y.mean() == 0:
        return math.nan
    dx = x - x.mean()
    slope = float(np.dot(dx, y - y.mean()) / np.dot(dx, dx))  # ordinary least squares
    return 100.0 * slope * float(np.ptp(x)) / abs(float(y.mean()))


def converged(values: ArrayLike, precision: float, *, min_runs: int = 2) -> bool:
    """True when there are `min_runs` values or more and their CI half-width is within
    `precision` x their mean (one run is never enough: it has no CI)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    n = int((~np.isnan(v)).sum())
    return n >= max(min_runs, 2) and ci_pct(v) <= 100.0 * precision


def open_points(
    points: pd.DataFrame,
    precision: float,
    *,
    min_runs: int = 2,
    designs: Collection[str] | None = None,
    universe: Iterable[tuple[Any, ...]] | None = None,
) -> set[tuple[Any, ...]]:
    """The points (tuples of the :data:`ROUND_KEYS` columns) that need more runs.

    `points` holds one row per run and direction (columns ``design``, ``dir``, ``iops`` and the
    ROUND_KEYS; a tidy :attr:`MeasuredSet.points` will do). A point is closed when every design
    and direction of it has `min_runs` runs or more whose IOPS CI half-width (Student t, 95 %)
    is within `precision` x their mean. With `designs`, a point that lacks one of them is open;
    every key of `universe` without rows is open too.
    """
    if not 0 < precision < math.inf:
        raise ConfigError(f"precision must be a finite number > 0, got {precision}")
    out: set[tuple[Any, ...]] = set()
    seen: set[tuple[Any, ...]] = set()
    if len(points):
        for key, grp in points.groupby(list(ROUND_KEYS), sort=False):
            k = tuple(key)
            seen.add(k)
            have = set(grp["design"])
            if designs is not None and not set(designs) <= have:
                out.add(k)
                continue
            for _, sub in grp.groupby(["design", "dir"], sort=False):
                if not converged(sub["iops"].to_numpy(), precision, min_runs=min_runs):
                    out.add(k)
                    break
    out |= {tuple(k) for k in universe or ()} - seen
    return out


def round_order(
    index: int,
    points: Sequence[P],
    designs: Sequence[D],
    open_keys: Collection[Hashable],
    key: Callable[[P], Hashable] = lambda p: p,
) -> list[tuple[P, D]]:
    """The runs of round `index` (from 0): every point whose `key` is in `open_keys`, in
    order, its designs back to back, in their given order in even rounds and reversed in odd
    ones (A B, then B A: a drift that is linear over a pair of rounds hits both designs
    alike)."""
    ds = list(designs) if index % 2 == 0 else list(reversed(designs))
    return [(p, d) for p in points if key(p) in open_keys for d in ds]


def stop_reason(
    *,
    rounds: int,
    open_count: int,
    min_rounds: int,
    max_rounds: int,
    elapsed_s: float,
    budget_s: float | None,
    last_round_s: float,
    last_round_runs: int,
    next_round_runs: int,
) -> str | None:
    """Why a campaign stops after `rounds` rounds, or None to start another.

    ``"converged"`` when no point is open (after `min_rounds` at least); ``"max-repeat"`` after
    `max_rounds`; ``"budget"`` when the next round would overrun the budget of wall
    time: the last round's time per run, times the runs of the next round, added to the time
    spent exceeds `budget_s` (the first round always runs, a started round always finishes).
    """
    if open_count == 0 and rounds >= min_rounds:
        return "converged"
    if rounds >= max_rounds:
        return "max-repeat"
    if budget_s is not None and rounds > 0:
        per_run = last_round_s / last_round_runs if last_round_runs else 0.0
        if elapsed_s + per_run * max(next_round_runs, 1) > budget_s:
            return "budget"
    return None


def parse_duration(text: str | float) -> float:
    """Seconds from ``90``, ``90s``, ``5m`` or ``1.5h`` (a number alone is seconds)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        m = _DURATION.match(str(text))
        if not m:
            raise ConfigError(f"budget: cannot read {text!r} (expected SECONDS, e.g. 90, 5m, 1h)")
        value = float(m.group(1)) * _UNIT_S[m.group(2).lower()]
    if not 0 < value < math.inf:
        raise ConfigError(f"budget must be a finite duration > 0, got {text!r}")
    return value
