"""Disk models chosen by the profile: fixed, empirical, parallel (k channels) and hdd."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import simpy

from vsim.errors import ProfileError
from vsim.models.dists import Dist, Sampler, check_keys, sampler
from vsim.models.monitor import Registry
from vsim.models.params import dist, scalar

__all__ = [
    "DISK_MODELS",
    "DISK_PARAMS",
    "OPTIONAL",
    "Disk",
    "DiskRequest",
    "Done",
    "HddTimes",
    "Request",
    "ServiceTimes",
    "build_disk",
    "parse_disk",
]

DISK_MODELS = ("fixed", "empirical", "parallel", "hdd")

# Parameters of each model (every value a {value, provenance, source} table or a distribution).
DISK_PARAMS: dict[str, dict[str, str]] = {
    "fixed": {
        "service_us": "constant service time of every request",
        "channels": "requests served at once (1 = a FCFS queue)",
    },
    "empirical": {
        "service.read / service.write": "service-time distribution per direction (a dist table;"
        " service.read_<bs> overrides for one block size)",
        "channels": "requests served at once",
    },
    "parallel": {
        "service.read / service.write": "as for empirical",
        "channels": "internal channels (an SSD's parallelism or a host page cache's)",
    },
    "hdd": {
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
    },
}
OPTIONAL = {"overhead_cv"}


@dataclass(frozen=True)
class Request:
    """What the disk needs to know about one I/O."""

    write: bool
    offset: int
    size: int


def parse_disk(t: dict[str, Any], prov: dict[str, str]) -> dict[str, Any]:
    """Validate the profile's [disk] table into {model, params...}; errors name the key."""
    model = t.get("model")
    if model not in DISK_MODELS:
        raise ProfileError(f"disk.model: expected one of {', '.join(DISK_MODELS)}, got {model!r}")
    params = [p.split(" ")[0].split(".")[0] for p in DISK_PARAMS[model]]
    check_keys(t, ("model", "completion", *params), "disk")
    out: dict[str, Any] = {"model": model, **_parse_model(model, t, prov)}
    if "completion" in t:
        out["completion"] = dist(t, "completion", "disk", prov)
    return out


def _parse_model(model: str, t: dict[str, Any], prov: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if model == "hdd":
        out["overhead_cv"] = 0.0
        for key in DISK_PARAMS["hdd"]:
            if key in OPTIONAL and key not in t:
                continue
            v = scalar(t, key, "disk", prov)
            if v < 0 or (v == 0 and key in ("rpm", "media_mib_s", "interface_mib_s")):
                raise ProfileError(f"disk.{key}.value: out of range ({v})")
            out[key] = v
        return out
    ch = scalar(t, "channels", "disk", prov)
    if ch < 1 or ch != int(ch):
        raise ProfileError(f"disk.channels.value: expected a whole number >= 1, got {ch}")
    out["channels"] = int(ch)
    if model == "fixed":
        out["service"] = {"any": Dist.fixed(scalar(t, "service_us", "disk", prov))}
        return out
    svc = t.get("service")
    if not isinstance(svc, dict) or not svc:
        raise ProfileError("disk.service: missing table of service-time distributions")
    out["service"] = {k: dist(svc, k, "disk.service", prov) for k in sorted(svc)}
    for k in out["service"]:
        if k.split("_")[0] not in ("read", "write", "any"):
            raise ProfileError(f"disk.service.{k}: expected read, write, read_<bs> or write_<bs>")
    return out


class DiskRequest(Protocol):
    """What the disk reads from a request (a Request, or the simulator's IO itself)."""

    write: bool
    offset: int
    size: int


Done = Callable[[Any], None]  # called with the request when it completes


class Disk:
    """A FCFS device with `channels` servers; `service` computes a request's time at its start."""

    def __init__(
        self,
        env: simpy.Environment,
        channels: int,
        service: Callable[[DiskRequest], float],
        stats: Registry,
        completion: Sampler | None = None,
    ) -> None:
        self.env = env
        self.channels = channels
        self._completion = completion
        self._service = service
        self._free = channels
        self._queue: deque[tuple[DiskRequest, Done]] = deque()
        self.busy = stats.level("disk.busy")  # busy channels / channels
        self.inflight = stats.level("disk.queue")  # queued + in service
        self.served = 0
        self._finish_cb = self._finish

    def submit(self, req: DiskRequest, done: Done) -> None:
        """Queue a request; done(req) is called when it completes."""
        self.inflight.add(1, self.env.now)
        if self._free:
            self._start(req, done)
        else:
            self._queue.append((req, done))

    def _start(self, req: DiskRequest, done: Done) -> None:
        env = self.env
        self._free -= 1
        self.busy.set((self.channels - self._free) / self.channels, env.now)
        env.timeout(self._service(req), (req, done)).callbacks.append(self._finish_cb)

    def _finish(self, ev: simpy.Event) -> None:
        now = self.env.now
        self._free += 1
        self.served += 1
        self.inflight.add(-1, now)
        if self._queue:
            self._start(*self._queue.popleft())
        else:
            self.busy.set((self.channels - self._free) / self.channels, now)
        if self._completion is not None:  # the host's completion path, off the device
            self.env.timeout(self._completion(), ev._value).callbacks.append(_deliver)
        else:
            _deliver(ev)


def _deliver(ev: simpy.Event) -> None:
    """Call a finished request's done(req); ev's value is (req, done)."""
    req, done = ev._value
    done(req)


class ServiceTimes:
    """Service times drawn per direction (and optionally per block size) from distributions."""

    def __init__(self, service: dict[str, Dist], rng: np.random.Generator) -> None:
        self._samplers = {k: sampler(d, rng) for k, d in service.items()}
        self._by_req: dict[tuple[bool, int], Sampler] = {}  # (write, size) -> its sampler

    def __call__(self, req: DiskRequest) -> float:
        """The service time of req in microseconds."""
        draw = self._by_req.get((req.write, req.size))
        if draw is None:
            draw = self._by_req[req.write, req.size] = self._lookup(req.write, req.size)
        return draw()

    def _lookup(self, write: bool, size: int) -> Sampler:
        d = "write" if write else "read"
        s = self._samplers
        for key in (f"{d}_{size}", d, "any"):
            if key in s:
                return s[key]
        raise ProfileError(
            f"disk.service has no distribution for {d}s of bs={size} (it has "
            f"{', '.join(sorted(s))}): calibrate at this block size, or add disk.service.{d}"
        )


class HddTimes:
    """A disk drive: seek + rotational latency + transfer, a track buffer and a write cache.

    A read is a buffer hit when it lies in the buffer or continues the last read-ahead
    sequentially (the drive keeps streaming); a miss seeks (seek_min + (seek_avg - seek_min) *
    sqrt(distance / (span / 3)), the square-root seek curve; span = the workload's extent),
    waits a uniform fraction of a revolution, transfers at the media rate and reads ahead
    `buffer_kib`. Every command pays `overhead_us` (gamma distributed with `overhead_cv` when
    given: firmware and interface time varies from command to command). With the write cache
    on, writes complete at interface speed. Command queueing (NCQ reordering) is not modelled:
    requests are served FCFS.
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
            return float(self._overhead() + xfer_if)
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


def build_disk(
    env: simpy.Environment,
    spec: dict[str, Any],
    span: int,
    rng: np.random.Generator,
    stats: Registry,
    completion_rng: np.random.Generator | None = None,
) -> tuple[Disk, Callable[[DiskRequest], float]]:
    """The Disk for a profile's disk spec, and its service-time function.

    The optional completion path draws from its own stream (completion_rng), so adding it
    leaves every service time unchanged.
    """
    service: Callable[[DiskRequest], float]
    if spec["model"] == "hdd":
        service = HddTimes(spec, span, rng)
        channels = 1
    else:
        service = ServiceTimes(spec["service"], rng)
        channels = spec["channels"]
    completion = None
    if "completion" in spec:
        if completion_rng is None:
            raise ValueError("build_disk: the profile's disk.completion needs completion_rng")
        completion = sampler(spec["completion"], completion_rng)
    return Disk(env, channels, service, stats, completion), service
