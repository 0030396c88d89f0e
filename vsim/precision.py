"""Run-length control: MSER-5 warm-up detection and batch-means confidence intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import stdtrit

BATCHES = 30  # batch means: 30 batches (Law & Kelton's usual 10-30; more gives a tighter t)
CONFIDENCE = 0.95


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
class Interval:
    """A batch-means estimate: the mean and the 95 % CI half-width relative to it."""

    mean: float
    rel_halfwidth: float
    batches: int


def batch_means(x: np.ndarray, batches: int = BATCHES) -> Interval:
    """Mean of x with a batch-means CI half-width (relative), using equal-size batches."""
    n = len(x)
    k = n // batches
    if k < 1:
        return Interval(float(np.mean(x)) if n else math.nan, math.inf, 0)
    b = x[: k * batches].reshape(batches, k).mean(axis=1)
    mean = float(np.mean(x))
    sd = float(np.std(b, ddof=1))
    t = float(stdtrit(batches - 1, 0.5 + CONFIDENCE / 2))
    hw = t * sd / math.sqrt(batches)
    return Interval(mean, hw / abs(mean) if mean else math.inf, batches)


def rate_interval(t_done: np.ndarray, t0: float, batches: int = BATCHES) -> Interval:
    """Completions per unit time with a batch-means CI over equal-count batches.

    The rate is (count / span); its relative half-width is that of the mean batch duration
    (the delta method: X = k / mean(T_b)).
    """
    n = len(t_done)
    k = n // batches
    if k < 1:
        return Interval(n / (t_done[-1] - t0) if n else math.nan, math.inf, 0)
    ends = t_done[k - 1 :: k][:batches]
    durations = np.diff(np.concatenate(([t0], ends)))
    mean_d = float(np.mean(durations))
    sd = float(np.std(durations, ddof=1))
    t = float(stdtrit(batches - 1, 0.5 + CONFIDENCE / 2))
    rel = t * sd / math.sqrt(batches) / mean_d if mean_d > 0 else math.inf
    return Interval(n / (t_done[-1] - t0), rel, batches)
