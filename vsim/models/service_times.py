"""The disk models' per-request service times (compiled: they run once per I/O)."""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from vsim.models.disk import DiskRequest
from vsim.models.dists import Dist, Sampler, sampler

__all__ = ["HddTimes", "ServiceTimes", "Table", "write_overhead_us"]


class Table(Protocol):
    """What ServiceTimes reads of a service table (vsim.models.service.ServiceTable)."""

    def lookup(self, write: bool, bs: int) -> tuple[str, Dist, bool]:
        """(the entry that serves it, its distribution, extrapolated) for a read or write."""
        ...


def write_overhead_us(p: dict[str, float]) -> float:
    """A cached write's command overhead: write_overhead_us, absent = overhead_us."""
    return p.get("write_overhead_us", p["overhead_us"])


class ServiceTimes:
    """Service times drawn from a service table, one sampler per entry (or per curve point)
    from the one random stream."""

    def __init__(self, table: Table, rng: np.random.Generator) -> None:
        self._table = table
        self._rng = rng
        self._samplers: dict[str, Sampler] = {}  # entry (or curve point) -> its sampler
        self._by_req: dict[tuple[bool, int], Sampler] = {}  # (write, size) -> its sampler

    def __call__(self, req: DiskRequest) -> float:
        """The service time of req in microseconds."""
        draw = self._by_req.get((req.write, req.size))
        if draw is None:
            draw = self._by_req[req.write, req.size] = self._lookup(req.write, req.size)
        return draw()

    def _lookup(self, write: bool, size: int) -> Sampler:
        key, d, _ = self._table.lookup(write, size)
        s = self._samplers.get(key)
        if s is None:  # samplers draw lazily: creating one takes nothing from the stream
            s = self._samplers[key] = sampler(d, self._rng)
        return s


class HddTimes:
    """A disk drive: seek + rotational latency + transfer, a track buffer and a write cache.

    A read is a buffer hit when it lies in the buffer or continues the last read-ahead
    sequentially (the drive keeps streaming); a miss seeks (seek_min + (seek_avg - seek_min) *
    sqrt(distance / (span / 3)), the square-root seek curve; span = the workload's extent),
    waits a uniform fraction of a revolution, transfers at the media rate and reads ahead
    `buffer_kib`. Every command pays `overhead_us` (gamma distributed with `overhead_cv` when
    given: firmware and interface time varies from command to command). With the write cache
    on, writes complete at interface speed after `write_overhead_us` (the same draw, scaled).
    Command queueing (NCQ reordering) is not modelled: requests are served FCFS.
    """

    __slots__ = (
        "_buffer",
        "_if_rate",
        "_media_rate",
        "_overhead",
        "_rot",
        "_seek_min",
        "_seek_span",
        "_third",
        "_write_cache",
        "_write_extra",
        "_write_scale",
        "buf_hi",
        "buf_lo",
        "head",
        "hits",
        "misses",
        "p",
        "rev_us",
        "rng",
        "span",
    )

    def __init__(self, p: dict[str, Any], span: int, rng: np.random.Generator) -> None:
        self.p = p
        self.span = max(span, 1)
        self.rng = rng
        self.rev_us = 60e6 / p["rpm"]
        self.head = 0
        self.buf_lo = -1
        self.buf_hi = -1  # empty buffer, no read-ahead stream
        self.hits = 0
        self.misses = 0
        self._rot = sampler(Dist("uniform", low_us=0.0, high_us=self.rev_us), rng)
        cv = p.get("overhead_cv", 0.0)
        over = Dist("gamma", mean_us=p["overhead_us"], cv=cv) if cv > 0 else None
        self._overhead = sampler(over or Dist.fixed(p["overhead_us"]), rng)
        # A cached write's overhead scales the same draw (one stream, the same cv): absent,
        # the scale is 1 and every draw is what it was without the parameter.
        over_us = p["overhead_us"]
        w_us = write_overhead_us(p)
        self._write_scale = w_us / over_us if over_us else 0.0
        self._write_extra = 0.0 if over_us else w_us
        # The per-request arithmetic's constants, computed once.
        self._if_rate = p["interface_mib_s"] * 1.048576  # MiB/s in bytes per us
        self._media_rate = p["media_mib_s"] * 1.048576
        self._write_cache = p["write_cache"]
        self._buffer = int(p["buffer_kib"] * 1024)
        self._third = self.span / 3
        self._seek_min = p["seek_min_ms"]
        self._seek_span = p["seek_avg_ms"] - p["seek_min_ms"]

    def __call__(self, req: DiskRequest) -> float:
        """The service time of req in microseconds; updates head and buffer state."""
        xfer_if = req.size / self._if_rate  # bytes / (MiB/s) in us
        if req.write and self._write_cache:
            self.hits += 1
            return float(self._overhead() * self._write_scale + self._write_extra + xfer_if)
        lo, hi = req.offset, req.offset + req.size
        if not req.write and ((self.buf_lo <= lo and hi <= self.buf_hi) or lo == self.buf_hi):
            self.hits += 1
            if lo == self.buf_hi:
                self.buf_lo, self.buf_hi = lo, lo + self._buffer
            return float(self._overhead() + xfer_if)
        self.misses += 1
        dist = abs(lo - self.head)
        seek = 0.0
        if dist:
            frac = math.sqrt(dist / self._third)
            seek = 1000 * (self._seek_min + self._seek_span * frac)
        xfer = req.size / self._media_rate
        self.head = hi
        if not req.write:
            self.buf_lo, self.buf_hi = lo, lo + self._buffer
        return float(self._overhead() + seek + self._rot() + xfer)
