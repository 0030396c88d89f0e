"""The hdd disk model: seek curve, rotational latency, media and interface rates, buffer, cache."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from vsim.errors import ProfileError
from vsim.models.disk import register_disk_model
from vsim.models.params import scalar
from vsim.models.service_times import HddTimes, write_overhead_us

__all__ = ["OPTIONAL", "Hdd", "HddTimes"]

OPTIONAL = {"overhead_cv", "write_overhead_us"}  # parameters that may be absent
# E[sqrt(|U1 - U2| * 3)] for independent uniform U1, U2 on [0, 1]: the mean of the square-root
# seek curve (seek_min + (seek_avg - seek_min) * sqrt(d / (span / 3))) over random offsets.
_RANDOM_SEEK_FRACTION = math.sqrt(3) * 8 / 15


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
            return write_overhead_us(p) + xfer_if
        if not random:
            return hit
        seek = 1000 * (
            p["seek_min_ms"] + (p["seek_avg_ms"] - p["seek_min_ms"]) * _RANDOM_SEEK_FRACTION
        )
        return p["overhead_us"] + seek + 30e6 / p["rpm"] + bs / (p["media_mib_s"] * 1.048576)

    def extrapolated(self, write: bool, bs: int) -> bool:
        """Never: the drive's mechanics hold at every size."""
        return False
