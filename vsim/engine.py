"""The engine: builds the SimPy model of a Scenario, runs it and returns a Result."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import simpy

from vsim.errors import ConfigError
from vsim.models.backends import Backend
from vsim.models.cpu import Cpu, Notifier, Thread
from vsim.models.disk import build_disk
from vsim.models.dists import Sampler
from vsim.models.guest import IO, FioJob, Vcpu
from vsim.models.monitor import Registry
from vsim.models.syscalls import Costs
from vsim.models.virtqueue import Virtqueue
from vsim.profile import CPU_LATENCIES, Profile, load_profile
from vsim.results import STAGES, Result
from vsim.scenario import Scenario

DEFAULT_IOS = 20_000  # I/Os per point when neither number_ios nor runtime is given


def point_key(scenario: Scenario) -> str:
    """The key that seeds a point's random streams: profile and workload, not the design.

    Leaving the design out gives every design the same offsets, disk service times and cost
    draws for the same seed (common random numbers), so design comparisons are sharper.
    """
    return f"{scenario.profile}|{sorted(asdict(scenario.workload).items())}"


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


class _Recorder:
    """Collects I/Os completed in the measured window and decides when the run stops."""

    def __init__(self, env: simpy.Environment, warm_end: float, target: int | None) -> None:
        self.env = env
        self.warm_end = warm_end
        self.target = target
        self.stop = env.event()
        self.ios: list[IO] = []

    def record(self, io: IO) -> None:
        if io.t_done < self.warm_end or self.stop.triggered:
            return
        self.ios.append(io)
        if self.target is not None and len(self.ios) >= self.target:
            self.stop.succeed()

    def finish(self) -> None:
        if not self.stop.triggered:
            self.stop.succeed()

    def running(self) -> bool:
        return not self.stop.triggered


def simulate(
    scenario: Scenario, seed: int = 1, *, profile: Profile | None = None, rep: int = 0
) -> Result:
    """Simulate one scenario; the same scenario, seed and rep give an identical Result."""
    wall0 = time.perf_counter()
    prof = profile if profile is not None else load_profile(scenario.profile)
    w = scenario.workload
    d = scenario.design
    key = point_key(scenario)

    def rng_for(name: str) -> np.random.Generator:
        return stream(seed, key, name, rep)

    env = simpy.Environment()
    stats = Registry()
    latency: dict[str, Callable[[], float]] = {
        k: Sampler(prof.cpu[k], rng_for(f"cpu.{k}")) for k in CPU_LATENCIES
    }
    cpus = [Cpu(i, stats) for i in range(prof.host_cpus)]
    guest_at = _placement(scenario.guest_cpus, prof.guest_vcpus, prof.host_cpus, "guest_cpus")
    backend_at = _placement(d.cpus, d.threads, prof.host_cpus, f"design {d.name} cpus")
    costs = Costs(prof, d.context, rng_for)
    vq = Virtqueue(
        prof.queue_size,
        levels=(stats.level("virtqueue.avail"), stats.level("virtqueue.used")),
        clock=lambda: env.now,
    )
    kick, irq = Notifier("kick"), Notifier("irq")
    disk, service = build_disk(env, prof.disk, w.size, rng_for("disk"), stats)

    warm_end = w.ramp_time * 1e6
    target = None
    if w.number_ios is not None:
        target = w.number_ios * w.numjobs
    elif w.runtime is None:
        target = DEFAULT_IOS
    rec = _Recorder(env, warm_end, target)

    threads = [
        Thread(env, name, cpus, at, d.poll_us, latency, stats)
        for name, at in zip(d.thread_names, backend_at, strict=True)
    ]
    backend = Backend(env, d, threads, vq, kick, irq, disk, costs, stats.level("aio.completed"))
    active = stats.level("guest.active")
    jobs = [FioJob(i, w, rng_for(f"job{i}"), active) for i in range(w.numjobs)]
    vcpus = []
    for i, at in enumerate(guest_at):
        t = Thread(env, f"vcpu{i}", cpus, at, prof.guest_halt_poll_us, latency, stats)
        mine = jobs[i :: prof.guest_vcpus]
        vcpus.append(Vcpu(t, mine, vq, kick, irq if i == 0 else None, costs, rec.record,
                          rec.running))  # fmt: skip
    for proc in backend.processes():
        env.process(proc)
    for v in vcpus:
        env.process(v.run())
    if warm_end > 0:
        env.timeout(warm_end).callbacks.append(lambda _e: stats.reset(env.now))
    if w.runtime is not None:
        end = env.timeout(warm_end + w.runtime * 1e6)
        end.callbacks.append(lambda _e: rec.finish())
    env.run(until=rec.stop)
    now = env.now
    levels = stats.means(now)

    ios = rec.ios
    n = len(ios)
    if n == 0:
        raise ConfigError("no I/O completed in the measured window (runtime too short?)")
    tab = np.empty((n, 8))
    for i, io in enumerate(ios):
        tab[i] = (io.t_start, io.t_issue, io.t_pop, io.t_sub, io.t_dd, io.t_push, io.t_done,
                io.write)  # fmt: skip
    write = tab[:, 7].astype(bool)
    start = tab[:, 0]
    stages = (tab[:, 1:7] - start[:, None]).astype(np.float32)
    slat_ns = np.rint((tab[:, 1] - start) * 1000).astype(np.int64)
    clat_ns = np.rint((tab[:, 6] - tab[:, 1]) * 1000).astype(np.int64)
    assert stages.shape[1] == len(STAGES)

    counters = {
        "kicks": vq.kicks,
        "kicks_suppressed": vq.kicks_suppressed,
        "signals": vq.signals,
        "signals_suppressed": vq.signals_suppressed,
        "interrupts": sum(v.irqs for v in vcpus),
        "submit_calls": backend.submit_calls,
        "reap_calls": backend.reap_calls,
        "disk_served": disk.served,
    }
    for hits in ("hits", "misses"):
        if hasattr(service, hits):
            counters[f"disk_{hits}"] = int(getattr(service, hits))
    for th in [*threads, *(v.thread for v in vcpus)]:
        for kind, count in th.wakeups.items():
            counters[f"{th.name}.wakeups_{kind}"] = count
    eid = getattr(env, "_eid", None)
    events = next(eid) if eid is not None else 0
    return Result(
        scenario=scenario,
        seed=seed,
        write=write,
        slat_ns=slat_ns,
        clat_ns=clat_ns,
        stages=stages,
        elapsed_s=(now - warm_end) / 1e6,
        levels=levels,
        counters=counters,
        events=events,
        wall_s=time.perf_counter() - wall0,
    )
