"""The host scheduler's placement of guest and backend threads: patterns redrawn every epoch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vsim.kernel import Proc
from vsim.models.cpu import Cpu, Thread

__all__ = [
    "Placement",
    "parse_pattern",
    "placer",
]


@dataclass(frozen=True)
class Placement:
    """Which threads share a CPU, and how long an arrangement lasts.

    `patterns` maps a pattern (the CPU index of every thread: guest vCPUs first, then the
    backend's threads in design order) to the fraction of time it holds at each of
    `iodepths` (the I/Os in flight the shares were read at; one share for all when there is
    one iodepth); `epoch_us` is the mean time between redraws (exponential). Linux places a
    woken thread on or near its waker's CPU (wake-affine) and balances load only now and then,
    so on a small host the guest and a backend thread often share a CPU for tens of
    milliseconds at a time, and how often depends on the load: the busier the threads, the
    more of their wake-ups land beside their wakers.
    """

    epoch_us: float
    patterns: dict[int, dict[tuple[int, ...], tuple[float, ...]]]  # by backend thread count
    iodepths: tuple[int, ...] = (1,)

    def for_threads(self, n: int, iodepth: int = 1) -> dict[tuple[int, ...], float] | None:
        """The pattern shares for a design with n backend threads at `iodepth` I/Os in flight
        (None: place freely): linear in log iodepth between the measured iodepths, held at the
        nearest beyond them."""
        table = self.patterns.get(n)
        if table is None:
            return None
        qd = self.iodepths
        if iodepth <= qd[0]:
            return {k: v[0] for k, v in table.items()}
        if iodepth >= qd[-1]:
            return {k: v[-1] for k, v in table.items()}
        j = next(i for i in range(1, len(qd)) if iodepth <= qd[i])
        f = (math.log(iodepth) - math.log(qd[j - 1])) / (math.log(qd[j]) - math.log(qd[j - 1]))
        return {k: (1 - f) * v[j - 1] + f * v[j] for k, v in table.items()}


def parse_pattern(key: str) -> tuple[int, ...]:
    """'0,1,1' -> (0, 1, 1)."""
    return tuple(int(x) for x in key.split(","))


def placer(
    threads: Sequence[Thread],
    cpus: Sequence[Cpu],
    patterns: dict[tuple[int, ...], float],
    epoch_us: float,
    rng: np.random.Generator,
) -> Proc:
    """A process that pins `threads` to a pattern anew every epoch (exponential, mean epoch_us).

    The next pattern is the one furthest behind its share of the time so far (systematic
    rather than independent draws), so the shares hold over any long run and a run's result
    does not hinge on how many epochs of each kind it happened to draw. A thread moves at its
    next wake-up (where Linux chooses a waking task's CPU), so one that is running or queued
    finishes where it is.
    """
    keys = list(patterns)
    total = sum(patterns.values())
    share = [patterns[k] / total for k in keys]
    spent = [0.0] * len(keys)
    elapsed = 0.0
    while True:
        # Furthest behind its share; on a tie (at the start) the largest share.
        k = max(range(len(keys)), key=lambda i: (share[i] * elapsed - spent[i], share[i]))
        for t, c in zip(threads, keys[k], strict=True):
            t.pin(cpus[c])
        epoch = float(rng.exponential(epoch_us))
        spent[k] += epoch
        elapsed += epoch
        yield epoch
