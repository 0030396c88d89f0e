"""Confidence intervals: of one run (MSER-5 warm-up, batch means) and of repeats (Student t)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import stdtrit

__all__ = [
    "BATCHES",
    "CI",
    "CONFIDENCE",
    "batch_means",
    "ci_halfwidth",
    "mean_ci",
    "mser5",
    "rate_interval",
    "weighted_mean_ci",
]

BATCHES = 30  # batch means: 30 batches (Law & Kelton's usual 10-30; more gives a tighter t)
CONFIDENCE = 0.95


def weighted_mean_ci(values: ArrayLike, weights: ArrayLike, level: float = CONFIDENCE) -> CI:
    """The weighted mean sum(w x) / sum(w) of repeated measurements, with a Student-t interval
    from the ratio estimator's linearised variance (W. G. Cochran, Sampling Techniques, 3rd
    ed., 1977, chapter 6): a point's mean latency over the I/Os of all its runs, each run's
    mean weighted by its I/O count. With runs of equal length that mean and the runs' mean IOPS
    satisfy Little's law together; the plain mean of the runs' means does not when the runs
    differ in speed (it gives the slow runs' few I/Os the weight of the fast runs' many: with a
    run-to-run CV of 20 % it is about 4 % high). NaN values are dropped; without positive
    finite weights for all the rest this is `mean_ci`."""
    v = np.asarray(values, dtype=np.float64).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != v.shape:
        raise ValueError(f"weighted_mean_ci: {v.size} values but {w.size} weights")
    keep = ~np.isnan(v)
    v, w = v[keep], w[keep]
    if v.size == 0 or not np.all(np.isfinite(w)) or not np.all(w > 0):
        return mean_ci(v, level)
    n = int(v.size)
    r = float(np.sum(w * v) / np.sum(w))
    if n < 2:
        return CI.none(r, n)
    # the linearised terms (they sum to zero): their mean's Student-t half-width is r's
    return CI.symmetric(r, ci_halfwidth(w / w.mean() * (v - r), level), n)


def mser5(x: np.ndarray) -> int:
    """Warm-up length (in observations) by MSER-5 (White 1997; White, Cobb & Spratt 2000).

    The series is averaged in batches of 5; the truncation point d minimises the squared
    standard error of the remaining batch means. Only the first half of the series is searched:
    a minimum beyond it means the series is too short to tell (MSER's authors advise running
    longer), which the caller detects as a result close to len(x) / 2.
    """
    n5 = len(x) // 5
    if n5 < 10:
        return 0
    b = x[: n5 * 5].reshape(n5, 5).mean(axis=1)
    # For each truncation d: variance of b[d:] / (n5 - d), computed with suffix sums.
    rev = b[::-1]
    cnt = np.arange(1, n5 + 1, dtype=float)
    s1 = np.cumsum(rev)[::-1]
    s2 = np.cumsum(rev * rev)[::-1]
    m = cnt[::-1]
    var = s2 / m - (s1 / m) ** 2
    mser = var / m
    half = n5 // 2
    d = int(np.argmin(mser[:half]))
    return d * 5


@dataclass(frozen=True)
class CI:
    """A point estimate with its confidence interval: `low`, `high` (NaN when it cannot be
    formed), the number of observations (repeats or batches) and the interval's half-width
    relative to the estimate, as its estimator computed it (inf when there is no interval)."""

    mean: float
    low: float
    high: float
    n: int
    rel_halfwidth: float

    @classmethod
    def symmetric(cls, mean: float, halfwidth: float, n: int) -> CI:
        """mean +- halfwidth."""
        rel = halfwidth / abs(mean) if mean else math.inf
        return cls(mean, mean - halfwidth, mean + halfwidth, n, rel)

    @classmethod
    def relative(cls, mean: float, rel_halfwidth: float, n: int) -> CI:
        """mean x (1 +- rel_halfwidth)."""
        hw = abs(mean) * rel_halfwidth
        return cls(mean, mean - hw, mean + hw, n, rel_halfwidth)

    @classmethod
    def none(cls, mean: float, n: int) -> CI:
        """An estimate without an interval (too few observations)."""
        return cls(mean, math.nan, math.nan, n, math.inf)


def batch_means(x: np.ndarray, batches: int = BATCHES) -> CI:
    """Mean of one run's x with a batch-means CI, using equal-size batches."""
    n = len(x)
    k = n // batches
    if k < 1:
        return CI.none(float(np.mean(x)) if n else math.nan, 0)
    b = x[: k * batches].reshape(batches, k).mean(axis=1)
    mean = float(np.mean(x))
    return CI.symmetric(mean, ci_halfwidth(b, CONFIDENCE), batches)


def rate_interval(t_done: np.ndarray, t0: float, batches: int = BATCHES) -> CI:
    """Completions per unit time with a batch-means CI over equal-count batches.

    The rate is (count / span); its relative half-width is that of the mean batch duration
    (the delta method: X = k / mean(T_b)).
    """
    n = len(t_done)
    k = n // batches
    if k < 1:
        return CI.none(n / (t_done[-1] - t0) if n else math.nan, 0)
    ends = t_done[k - 1 :: k][:batches]
    durations = np.diff(np.concatenate(([t0], ends)))
    mean_d = float(np.mean(durations))
    rel = ci_halfwidth(durations, CONFIDENCE) / mean_d if mean_d > 0 else math.inf
    return CI.relative(n / (t_done[-1] - t0), rel, batches)


def ci_halfwidth(x: ArrayLike, level: float = CONFIDENCE) -> float:
    """Half-width of the Student-t confidence interval of the mean of x (NaN for fewer than 2)."""
    v = np.asarray(x, dtype=np.float64)
    n = v.size
    if n < 2:
        return math.nan
    return float(stdtrit(n - 1, 0.5 + level / 2)) * float(np.std(v, ddof=1)) / math.sqrt(n)


def mean_ci(values: ArrayLike, level: float = CONFIDENCE) -> CI:
    """Mean and Student-t confidence interval of repeated measurements (NaNs are dropped): the
    one interval of repeats that datasets, validation and plots use."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    n = int(v.size)
    if n < 2:
        return CI.none(float(v.mean()) if n else math.nan, n)
    return CI.symmetric(float(v.mean()), ci_halfwidth(v, level), n)
