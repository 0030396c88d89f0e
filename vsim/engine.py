"""The engine: builds the SimPy model of a Scenario, runs it and returns a Result."""

from __future__ import annotations

import math
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from vsim.errors import ConfigError
from vsim.kernel import Kernel
from vsim.models.backends import Backend
from vsim.models.build import BUILD
from vsim.models.cpu import Cpu, Lock, Thread
from vsim.models.disk import build_disk
from vsim.models.dists import sampler
from vsim.models.guest import FioJob, Vcpu
from vsim.models.monitor import Registry
from vsim.models.placement import placer
from vsim.models.queue import DeviceQueue, TagWait, indexed, irq_vcpu, queue_of, used_queues
from vsim.models.syscalls import Costs
from vsim.models.virtqueue import Virtqueue
from vsim.precision import BATCHES, batch_means, mser5, rate_interval
from vsim.profile import CPU_LATENCIES, Profile, load_profile
from vsim.recorder import BYTES_PER_IO, Recorder
from vsim.results import Result
from vsim.scenario import SPINNING_ROLES, Scenario, Workload

__all__ = [
    "DEFAULT_MAX_IOS",
    "DEFAULT_PRECISION",
    "MIN_IOS",
    "PILOT_IOS",
    "PILOT_PER_IO",
    "check_capacity",
    "check_run_options",
    "point_key",
    "simulate",
    "stable_fields",
    "stream",
]

DEFAULT_PRECISION = 0.01  # relative 95 % CI half-width of IOPS and mean latency
DEFAULT_MAX_IOS = 2_000_000  # cap on measured I/Os per point in adaptive runs
MIN_IOS = 3_000  # first checkpoint of an adaptive run
PILOT_IOS = 1_000  # warm-up pilot, at least
PILOT_PER_IO = 20  # ... and this many I/Os per I/O in flight
GROW_MARGIN, GROW_MIN, GROW_MAX = 1.1, 1.5, 10.0  # run-length growth between checkpoints


def point_key(scenario: Scenario) -> str:
    """The key that seeds a point's random streams: profile and workload, not the design.

    Leaving the design out gives every design the same offsets, disk service times and cost
    draws for the same seed (common random numbers), so design comparisons are sharper.
    """
    return f"{scenario.profile}|{sorted(stable_fields(scenario.workload).items())}"


def stable_fields(workload: Workload) -> dict[str, Any]:
    """The workload's fields, less those added later that are at their defaults: what keys a
    point (its random streams, its workspace id) so that it keeps the key it had before."""
    w = asdict(workload)
    for k in _LATER_FIELDS:
        if w[k] == _DEFAULTS[k]:
            del w[k]
    return w


# Workload fields added after results were published: a point at their defaults keeps the key
# (and so the random streams) it had before the fields existed.
_LATER_FIELDS = (
    "iodepth_batch_submit",
    "iodepth_batch_complete_min",
    "iodepth_batch_complete_max",
    "rate_iops",
    "rate_process",
    "thinktime",
    "thinktime_spin",
    "thinktime_blocks",
)
_DEFAULTS = asdict(Workload())


def stream(seed: int, key: str, name: str, rep: int = 0) -> np.random.Generator:
    """The random stream `name` of the point `key`, spawned from the root seed."""
    spawn = (zlib.crc32(key.encode()), zlib.crc32(name.encode()), rep)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=spawn)))


def _placement(
    cpus: tuple[int | None, ...] | None, n: int, host: int, what: str
) -> list[int | None]:
    if cpus is None:
        return [None] * n
    if len(cpus) != n:
        raise ConfigError(f"{what}: expected {n} CPU placements, got {len(cpus)}")
    for c in cpus:
        if c is not None and not 0 <= c < host:
            raise ConfigError(f"{what}: no host CPU {c} (the profile has {host})")
    return list(cpus)


def simulate(
    scenario: Scenario,
    seed: int = 1,
    *,
    profile: Profile | None = None,
    rep: int = 0,
    precision: float | None = None,
    max_ios: int = DEFAULT_MAX_IOS,
    min_ios: int = 0,
) -> Result:
    """Simulate one scenario; the same scenario, seed and rep give an identical Result.

    Run length: `workload.number_ios` (per job) or `workload.runtime` when given; otherwise the
    point runs until the 95 % batch-means CI half-widths of IOPS and of mean latency are within
    `precision` (relative; default DEFAULT_PRECISION) and at least `min_ios` I/Os are measured
    (e.g. enough for a tail percentile), or `max_ios` I/Os are measured. Warm-up:
    `workload.ramp_time` when given, else (adaptive runs only) a pilot whose length MSER-5
    confirms covers the start-up transient.
    """
    wall0 = time.perf_counter()
    w = scenario.workload
    check_run_options(seed, precision, max_ios)
    fixed = w.number_ios is not None or w.runtime is not None
    if fixed and precision is not None:
        raise ConfigError("give a run length (number_ios or runtime) or a precision, not both")
    if w.number_ios is not None:
        check_capacity(w.number_ios * w.numjobs, "number_ios x numjobs")
    if isinstance(min_ios, bool) or not isinstance(min_ios, int) or not 0 <= min_ios <= max_ios:
        raise ConfigError(f"min_ios must be within 0..max_ios ({max_ios}), got {min_ios!r}")
    m = _Model(scenario, seed, profile, rep)
    rec = m.rec
    population = w.iodepth * w.numjobs
    if fixed:  # number_ios, runtime, or both: whichever comes first (fio's rule)
        if w.runtime is not None:
            m.env.timeout(m.warm_end + w.runtime * 1e6).callbacks.append(lambda _e: rec.finish())
        if w.number_ios is not None:
            rec.rearm(w.number_ios * w.numjobs)
        m.env.run(until=rec.stop)
        measured = m.measured()
    else:
        goal = precision if precision is not None else DEFAULT_PRECISION
        if m.warm_end == 0:
            m.pilot(min(max(PILOT_IOS, PILOT_PER_IO * population), max_ios), max_ios)
        target = min(max(MIN_IOS, BATCHES * PILOT_PER_IO * population, min_ios), max_ios)
        while True:
            rec.rearm(target)
            m.env.run(until=rec.stop)
            measured = m.measured()
            worst = max(measured.iops_ci.rel_halfwidth, measured.lat_ci.rel_halfwidth)
            if (worst <= goal and rec.count >= min_ios) or rec.count >= max_ios:
                break
            # The half-width shrinks as 1/sqrt(n): aim a little past the goal, within bounds.
            grow = min(max((worst / goal) ** 2 * GROW_MARGIN, GROW_MIN), GROW_MAX)
            target = min(int(rec.count * grow), max_ios)
    return m.result(measured, time.perf_counter() - wall0)


def check_run_options(seed: int, precision: float | None, max_ios: int) -> None:
    """Raise ConfigError for a root seed, precision or I/O cap that no run can take."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a whole number >= 0, got {seed!r}")
    if precision is not None and not 0 < precision < 1:
        raise ConfigError(f"precision must be within (0, 1), got {precision}")
    if max_ios < 1:
        raise ConfigError(f"max_ios must be >= 1, got {max_ios}")
    check_capacity(max_ios, "max_ios")


def check_capacity(n_ios: int, what: str) -> None:
    """Raise ConfigError when the records of n_ios I/Os cannot fit in this machine's memory."""
    need = n_ios * BYTES_PER_IO
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise ConfigError(
            f"{what} = {n_ios} I/Os need {need / 2**30:.3g} GiB of per-I/O records "
            f"({BYTES_PER_IO} bytes each), more than this machine's {have / 2**30:.3g} GiB"
        )


class _Measured:
    """The measured window's columns and its batch-means intervals."""

    def __init__(self, cols: dict[str, np.ndarray], t0: float, t1: float) -> None:
        self.cols = cols
        self.t0 = t0
        self.t1 = t1
        lat = (cols["slat_ns"] + cols["clat_ns"]).astype(np.float64)
        self.lat_ci = batch_means(lat)
        self.iops_ci = rate_interval(cols["t_done"], t0)


class _Model:
    """The SimPy model of one scenario: built once, run in segments."""

    def __init__(self, scenario: Scenario, seed: int, profile: Profile | None, rep: int) -> None:
        prof = profile if profile is not None else load_profile(scenario.profile)
        w = scenario.workload
        d = scenario.design
        key = point_key(scenario)
        self.scenario = scenario
        self.seed = seed

        def rng_for(name: str) -> np.random.Generator:
            return stream(seed, key, name, rep)

        self.env = env = Kernel()
        self.stats = stats = Registry()
        latency: dict[str, Callable[[], float]] = {
            k: sampler(prof.cpu[k], rng_for(f"cpu.{k}")) for k in CPU_LATENCIES
        }
        cpus = [Cpu(i, stats) for i in range(prof.host_cpus)]
        vcpus = scenario.guest_vcpus or prof.guest_vcpus
        guest_at = _placement(scenario.guest_cpus, vcpus, prof.host_cpus, "guest_cpus")
        backend_at = _placement(d.cpus, d.threads, prof.host_cpus, f"design {d.name} cpus")
        prof.check_engine(d.pricing, d.name)
        costs = Costs(prof, d.context, rng_for, d.pricing)
        served = d.served()
        tags_level = stats.level("guest.tag_wait")
        self.queues: list[DeviceQueue] = []
        queues = self.queues
        for q, (s, _) in enumerate(served):
            vq = Virtqueue(
                prof.queue_size,
                levels=(
                    stats.level(indexed("virtqueue", q, d.queues) + ".avail"),
                    stats.level(indexed("virtqueue", q, d.queues) + ".used"),
                ),
                env=env,
            )
            polled = d.roles[s] == "poll"
            queues.append(DeviceQueue(q, vq, TagWait(tags_level), polled))
        # (checks first that the disk serves every direction of the workload at its bs)
        self.extrapolated = prof.disk.extrapolated(w.bs, w.directions)
        self.disk, self.service = build_disk(
            env, prof.disk, w.size, rng_for("disk"), stats, rng_for("disk.completion")
        )
        self.warm_end = w.ramp_time * 1e6
        capacity = (w.number_ios or 0) * w.numjobs or MIN_IOS
        self.rec = rec = Recorder(env, self.warm_end, capacity)
        self.threads = []
        for name, role, at in zip(d.thread_names, d.roles, backend_at, strict=True):
            spins = role in SPINNING_ROLES
            t = Thread(env, name, cpus, at, math.inf if spins else d.poll_us, latency, stats)
            t.poll_max_us = 0.0 if spins else d.poll_max_us
            self.threads.append(t)
        spinners = sum(d.roles.count(r) for r in SPINNING_ROLES)
        if spinners and spinners >= prof.host_cpus:
            raise ConfigError(
                f"design {d.name}: {spinners} poll-mode thread(s) need a host CPU each and one "
                f"left for the guest; the profile has {prof.host_cpus}"
            )
        if prof.backend_lock:  # the reference's GIL: a kernel SQ thread does not take it
            lock = Lock()
            for t, role in zip(self.threads, d.roles, strict=True):
                if role != "sqpoll":
                    t.lock = lock
        reapers, sqs = d.completers, d.sq_threads
        self.backend = Backend(
            env,
            d,
            self.threads,
            queues,
            self.disk,
            costs,
            [
                stats.level(indexed("aio", i, len(reapers)) + ".completed")
                for i in range(len(reapers))
            ],
            [stats.level(indexed("sq", i, len(sqs)) + ".pending") for i in range(len(sqs))],
        )
        # I/Os between fio's submit start and its reap, per job (guest.active: all of them)
        poisson = w.rated and w.rate_process == "poisson"  # its gaps: a stream of their own
        jobs = [
            FioJob(
                i,
                w,
                rng_for(f"job{i}"),
                stats.level(f"job{i}.active"),
                rng_for(f"job{i}.rate") if poisson else None,
            )
            for i in range(w.numjobs)
        ]
        # The guest's queues as Linux's virtio-blk and blk-mq map them (vsim.models.queue).
        self.used_queues = used = used_queues(d.queues, vcpus)
        takes = {irq_vcpu(q, vcpus, used): q for q in range(used)}
        self.vcpus = []
        for i, at in enumerate(guest_at):
            t = Thread(env, f"vcpu{i}", cpus, at, prof.guest_halt_poll_us, latency, stats)
            mine = jobs[i::vcpus]
            handles = [queues[takes[i]]] if i in takes else []
            own = queues[queue_of(i, vcpus, used)]
            self.vcpus.append(Vcpu(t, mine, own, handles, costs, rec.record))
        procs = list(zip(self.threads, self.backend.processes(), strict=True))
        procs += [(v.thread, v.run()) for v in self.vcpus]
        # The scheduler's placement, first: the threads start where its first pattern puts them.
        pl = prof.placement
        patterns = pl.for_threads(d.threads, w.iodepth * w.numjobs) if pl else None
        # (the patterns place the profile's vCPUs beside blocking threads: another vCPU count
        # or a poll-mode thread, which keeps a core to itself, is placed freely)
        free = d.cpus is None and scenario.guest_cpus is None and vcpus == prof.guest_vcpus
        free = free and not spinners
        if pl and patterns and free:
            placed = [v.thread for v in self.vcpus] + self.threads
            env.process(placer(placed, cpus, patterns, pl.epoch_us, rng_for("cpu.placement")))
        for t, gen in procs:
            proc = env.process(gen)
            if prof.wake_preempt:
                t.enable_preemption(proc)
        self.t0 = self.warm_end
        self.base_counts: dict[str, int] = {}
        if self.warm_end > 0:
            env.timeout(self.warm_end).callbacks.append(lambda _e: self._reset())

    def _reset(self) -> None:
        """The measured window starts: forget the levels and counts of the warm-up."""
        self.stats.reset(self.env.now)
        self.base_counts = self.counts()

    def pilot(self, n: int, max_ios: int) -> None:
        """Run a warm-up pilot of n I/Os, longer while MSER-5 finds the transient in its tail."""
        rec = self.rec
        while True:
            rec.rearm(n)
            self.env.run(until=rec.stop)
            cols = self.rec.columns()
            lat = cols["slat_ns"] + cols["clat_ns"]
            d = mser5(lat.astype(np.float64))
            if d < 0.4 * len(lat) or 2 * n > max_ios:
                break
            n *= 2
        self.t0 = self.env.now
        self.stats.reset(self.t0)
        self.base_counts = self.counts()
        rec.clear()

    def measured(self) -> _Measured:
        """The measured window so far."""
        cols = self.rec.columns()
        if len(cols["write"]) == 0:
            raise ConfigError("no I/O completed in the measured window (runtime too short?)")
        return _Measured(cols, self.t0, self.env.now)

    def counts(self) -> dict[str, int]:
        """Event counts since the model started (kicks, interrupts, calls, wake-ups, ...)."""
        backend, vcpus, vqs = self.backend, self.vcpus, [q.vq for q in self.queues]
        counters = {
            "kicks": sum(vq.kicks for vq in vqs),
            "kicks_suppressed": sum(vq.kicks_suppressed for vq in vqs),
            "signals": sum(vq.signals for vq in vqs),
            "signals_suppressed": sum(vq.signals_suppressed for vq in vqs),
            "interrupts": sum(v.irqs for v in vcpus),
            "guest_submits": sum(v.submits for v in vcpus),
            "submit_calls": backend.submit_calls,
            "sq_batches": backend.sq_batches,
            "reap_calls": backend.reap_calls,
            "disk_served": self.disk.served,
        }
        for hits in ("hits", "misses"):
            if hasattr(self.service, hits):
                counters[f"disk_{hits}"] = int(getattr(self.service, hits))
        for k, th in enumerate(self.threads):
            counters[f"{th.name}.requests"] = backend.requests[k]
            counters[f"{th.name}.drains"] = backend.drains[k]
        for th in [*self.threads, *(v.thread for v in vcpus)]:
            for kind, count in th.wakeups.items():
                counters[f"{th.name}.wakeups_{kind}"] = count
        return counters

    def result(self, m: _Measured, wall_s: float) -> Result:
        """The Result of the measured window."""
        base = self.base_counts
        counters = {k: v - base.get(k, 0) for k, v in self.counts().items()}
        counters["queues_used"] = self.used_queues
        counters["submit_batch_max"] = self.backend.largest_batch  # (the whole run's)
        levels = self.stats.means(m.t1)
        jobs = self.scenario.workload.numjobs
        levels["guest.active"] = sum(levels[f"job{i}.active"] for i in range(jobs))
        eid = getattr(self.env, "_eid", None)
        return Result(
            scenario=self.scenario,
            seed=self.seed,
            write=m.cols["write"],
            slat_ns=m.cols["slat_ns"],
            clat_ns=m.cols["clat_ns"],
            stages=m.cols["stages"],
            job=m.cols["job"],
            elapsed_s=(m.t1 - m.t0) / 1e6,
            levels=levels,
            counters=counters,
            events=next(eid) if eid is not None else 0,
            iops_rel_hw=m.iops_ci.rel_halfwidth,
            lat_rel_hw=m.lat_ci.rel_halfwidth,
            extrapolated=self.extrapolated,
            wall_s=wall_s,
            build=BUILD,
        )
