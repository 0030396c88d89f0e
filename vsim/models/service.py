"""Disk models drawn from service-time distributions: fixed, empirical and parallel (k channels)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from vsim.errors import ProfileError
from vsim.models.disk import register_disk_model
from vsim.models.dists import Dist
from vsim.models.params import dist, scalar
from vsim.models.service_times import ServiceTimes
from vsim.models.size_curve import SizeCurve

__all__ = ["Empirical", "Fixed", "Parallel", "ServiceTable", "ServiceTimes"]

DIRECTIONS = ("read", "write")
_KEY = re.compile(r"^(?:any|read|write|(read|write)_([1-9][0-9]*))$")


@dataclass(frozen=True)
class ServiceTable:
    """A disk's service-time distributions, as the profile's disk.service holds them.

    Keys: `read`, `write`, `any`, and `read_<bs>` / `write_<bs>` for one block size. A request
    takes, in order, the entry of its direction and bs, of its direction, `any`; else, when its
    direction has per-bs entries, the direction's SizeCurve across them (the measured sizes
    exactly, a monotone curve between and beyond them: see SizeCurve). The curve is computed
    here, when the profile loads, from the per-bs entries.
    """

    entries: dict[str, Dist]
    curves: dict[str, SizeCurve]  # per direction that has per-bs entries

    @classmethod
    def of(cls, entries: dict[str, Dist]) -> ServiceTable:
        """The table of these entries, with a curve for each direction measured per bs."""
        sized: dict[str, dict[int, Dist]] = {}
        for k, d in entries.items():
            m = _KEY.match(k)
            if m is None:
                raise ProfileError(
                    f"disk.service.{k}: expected read, write, read_<bs> or write_<bs>"
                )
            if m.group(1):
                sized.setdefault(m.group(1), {})[int(m.group(2))] = d
        curves = {d: SizeCurve.fit(sized[d]) for d in DIRECTIONS if d in sized}
        return cls(dict(entries), curves)

    @classmethod
    def parse(cls, t: dict[str, Any], prov: dict[str, str]) -> ServiceTable:
        """The [disk.service] table of a profile (t: the [disk] table)."""
        svc = t.get("service")
        if not isinstance(svc, dict) or not svc:
            raise ProfileError("disk.service: missing table of service-time distributions")
        return cls.of({k: dist(svc, k, "disk.service", prov) for k in sorted(svc)})

    def lookup(self, write: bool, bs: int) -> tuple[str, Dist, bool]:
        """(the entry that serves it, its distribution, extrapolated) for a read or write of bs."""
        d = DIRECTIONS[write]
        e = self.entries
        for key in (f"{d}_{bs}", d, "any"):
            if key in e:
                return key, e[key], False
        curve = self.curves.get(d)
        if curve is None:
            covers = " and ".join(
                f"{o}s" if o in e else f"{o}s of {self.curves[o].describe()}"
                for o in DIRECTIONS
                if o in e or o in self.curves
            )
            raise ProfileError(
                f"disk.service has no distribution for {d}s (it covers {covers}): measure "
                f"{d}s (vsim measure --fio) and calibrate, or add disk.service.{d}"
            )
        return f"{d}@{bs}", curve.at(bs), curve.extrapolated(bs)


def _channels(t: dict[str, Any], prov: dict[str, str]) -> int:
    ch = scalar(t, "channels", "disk", prov)
    if ch < 1 or ch != int(ch):
        raise ProfileError(f"disk.channels.value: expected a whole number >= 1, got {ch}")
    return int(ch)


@register_disk_model
@dataclass(frozen=True)
class Fixed:
    """Every request takes service_us; `channels` requests at once."""

    name: ClassVar[str] = "fixed"
    params: ClassVar[dict[str, str]] = {
        "service_us": "constant service time of every request",
        "channels": "requests served at once (1 = a FCFS queue)",
    }
    channels: int
    service_us: float

    @classmethod
    def parse(cls, t: dict[str, Any], prov: dict[str, str]) -> Fixed:
        """The model of a [disk] table."""
        channels = _channels(t, prov)
        return cls(channels, scalar(t, "service_us", "disk", prov))

    def service(self, rng: np.random.Generator, span: int) -> ServiceTimes:
        """The per-request service time (a constant)."""
        return ServiceTimes(ServiceTable.of({"any": Dist.fixed(self.service_us)}), rng)

    def mean_us(self, write: bool, bs: int, random: bool) -> float:
        """service_us."""
        return self.service_us

    def extrapolated(self, write: bool, bs: int) -> bool:
        """Never: the constant holds for every size."""
        return False


@register_disk_model
@dataclass(frozen=True)
class Empirical:
    """A distribution per direction, optionally per block size (a ServiceTable); `channels`."""

    name: ClassVar[str] = "empirical"
    params: ClassVar[dict[str, str]] = {
        "service.read / service.write": "service-time distribution per direction (a dist table;"
        " service.read_<bs> for one block size: other sizes follow the curve across them)",
        "channels": "requests served at once",
    }
    channels: int
    table: ServiceTable

    @classmethod
    def parse(cls, t: dict[str, Any], prov: dict[str, str]) -> Empirical:
        """The model of a [disk] table."""
        channels = _channels(t, prov)
        return cls(channels, ServiceTable.parse(t, prov))

    def service(self, rng: np.random.Generator, span: int) -> ServiceTimes:
        """The per-request service time, drawn from the request's entry or curve point."""
        return ServiceTimes(self.table, rng)

    def mean_us(self, write: bool, bs: int, random: bool) -> float:
        """The mean of the distribution that serves a request of this direction and bs."""
        return float(self.table.lookup(write, bs)[1].mean)

    def extrapolated(self, write: bool, bs: int) -> bool:
        """True when bs lies outside the measured sizes of a direction served by its curve."""
        return self.table.lookup(write, bs)[2]


@register_disk_model
@dataclass(frozen=True)
class Parallel(Empirical):
    """Empirical with k internal channels: an SSD's parallelism or a host page cache's."""

    name: ClassVar[str] = "parallel"
    params: ClassVar[dict[str, str]] = {
        "service.read / service.write": "as for empirical",
        "channels": "internal channels (an SSD's parallelism or a host page cache's)",
    }
