"""The hdd disk model: seek curve, rotational latency, media and interface rates, buffer, cache."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from vsim.errors import ProfileError
from vsim.models.disk import DiskRequest, register_disk_model
from vsim.models.dists import Dist, sampler
from vsim.models.params import scalar

__all__ = ["OPTIONAL", "Hdd", "HddTimes"]

OPTIONAL = {"overhead_cv", "write_overhead_us"}  # parameters that may be absent
# E[sqrt(|U1 - U2| * 3)] for independent uniform U1, U2 on [0, 1]: the mean of the square-root
# seek curve (seek_min + (seek_avg - seek_min) * sqrt(d / (span / 3))) over random offsets.
_RANDOM_SEEK_FRACTION = math.sqrt(3) * 8 / 15


def _write_overhead_us(p: dict[str, float]) -> float:
    """A cached write's command overhead: write_overhead_us, absent = overhead_us."""
    return p.get("write_overhead_us", p["overhead_us"])


@register_disk_model
@dataclass(frozen=True)
class Hdd:
    """A disk drive, one request at a time (see HddTimes); it models every block size."""

    name: ClassVar[str] = "hdd"
    params: ClassVar[dict[str, str]] = {
        "rpm": "spindle speed; rotational latency is uniform over one revolution",
        "seek_avg_ms": "average seek (a third of the full stroke)",
        "seek_min_ms": "track-to-track seek",
        "overhead_us": "command overhead of every request (controller, interface)",
        "media_mib_s": "media transfer rate",
        "interface_mib_s": "interface transfer rate (buffer hits and cached writes)",
        "buffer_kib": "track buffer: a read miss reads ahead this much; later reads in it hit",
        "write_cache": "1 = write-back cache (writes complete from the buffer), 0 = write-through",
        "overhead_cv": "optional: coefficient of variation of the command overhead (gamma"
        " distributed; absent = constant)",
        "write_overhead_us": "optional: command overhead of a write the write cache completes"
        " (it takes the data and acknowledges: no read-ahead to look up; absent = overhead_us)",
    }
    p: dict[str, float]  # every parameter by name (overhead_cv 0 when absent)

    @classmethod
    def parse(cls, t: dict[str, Any], prov: dict[str, str]) -> Hdd:
        """The model of a [disk] table."""
        out = {"overhead_cv": 0.0}
        for key in cls.params:
            if key in OPTIONAL and key not in t:
                continue
            v = scalar(t, key, "disk", prov)
            if v < 0 or (v == 0 and key in ("rpm", "media_mib_s", "interface_mib_s")):
                raise ProfileError(f"disk.{key}.value: out of range ({v})")
            out[key] = v
        return cls(out)

    @property
    def channels(self) -> int:
        """One: requests are served FCFS (no command queueing)."""
        return 1

    def service(self, rng: np.random.Generator, span: int) -> HddTimes:
        """The drive's per-request service time over a workload spanning `span` bytes."""
        return HddTimes(self.p, span, rng)

    def mean_us(self, write: bool, bs: int, random: bool) -> float:
        """A buffer hit (sequential reads, cached writes) or, for random offsets, a miss: the
        seek curve's mean over uniform offsets plus half a revolution plus the media transfer."""
        p = self.p
        xfer_if = bs / (p["interface_mib_s"] * 1.048576)
        hit = p["overhead_us"] + xfer_if
        if write and p["write_cache"]:
            return _write_overhead_us(p) + xfer_if
        if not random:
            return hit
        seek = 1000 * (
            p["seek_min_ms"] + (p["seek_avg_ms"] - p["seek_min_ms"]) * _RANDOM_SEEK_FRACTION
        )
        return p["overhead_us"] + seek + 30e6 / p["rpm"] + bs / (p["media_mib_s"] * 1.048576)

    def extrapolated(self, write: bool, bs: int) -> bool:
        """Never: the drive's mechanics hold at every size."""
        return False


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
        w_us = _write_overhead_us(p)
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
