"""Mapping a scenario to mean service demands: the instant analytic estimate (`--method mva`)."""

from __future__ import annotations

from typing import Any

from vsim.analytic import Station, mva
from vsim.profile import Profile
from vsim.scenario import Scenario

__all__ = [
    "disk_demand_us",
    "mva_point",
    "stations",
]


def disk_demand_us(profile: Profile, scenario: Scenario) -> tuple[float, int]:
    """Mean disk service time per I/O (us) and the number of channels, as the disk model says
    (for the workload's bs: a calibrated disk's size curve, as the simulation uses)."""
    model = profile.disk.model
    w = scenario.workload
    f = w.read_fraction
    read = model.mean_us(False, w.bs, w.random) if f > 0 else 0.0
    write = model.mean_us(True, w.bs, w.random) if f < 1 else 0.0
    return f * read + (1 - f) * write, model.channels


def stations(profile: Profile, scenario: Scenario) -> list[Station]:
    """The closed network for one scenario, with one visit of every step per I/O.

    What the mapping ignores: kick and interrupt suppression and batched signalling (it charges
    one kick, one interrupt and one wake-up per I/O, exact at iodepth 1 and pessimistic above),
    wake-ups onto busy CPUs (every wake-up pays the idle-CPU latency, as a delay), busy polling,
    CPU sharing between threads placed on the same CPU, and the shape of every distribution
    (product form treats each queueing station as exponential).
    """
    d = scenario.design
    ctx = d.context

    def c(op: str, context: str = ctx) -> float:
        return profile.cost(op, context).mean

    guest = c("guest_submit", "guest") + c("kick", "guest") + c("guest_irq", "guest")
    guest += c("guest_complete", "guest")
    submit = c("wait_return") + c("notify_read") + c("pop") + c("submit_call") + c("submit_iocb")
    submit += c("pop_cold") + c("submit_cold")  # every wake-up from an idle CPU, as below
    complete = c("wait_return") + c("notify_read") + c("reap_call") + c("reap_event")
    complete += c("push") + c("signal")
    disk, channels = disk_demand_us(profile, scenario)
    wake = 3 * profile.cpu["wakeup_idle"].mean  # backend on kick, on completion; vCPU on irq
    out = [Station("vcpu", guest, "queue")]
    if d.threads == 1:
        out.append(Station("iothread", submit + complete, "queue"))
    else:
        out += [Station("submitter", submit, "queue"), Station("completer", complete, "queue")]
    kind: Any = "queue" if channels == 1 else "multi"
    out += [Station("disk", disk, kind, servers=channels), Station("wakeups", wake, "delay")]
    return out


def mva_point(profile: Profile, scenario: Scenario) -> dict[str, float]:
    """Throughput (IOPS) and mean latencies (us) of one scenario by exact MVA."""
    w = scenario.workload
    n = w.iodepth * w.numjobs
    st = stations(profile, scenario)
    res = mva(st, n)
    x = float(res.throughput[-1])
    r = float(res.response[-1])
    slat = profile.cost("guest_submit", "guest").mean + profile.cost("kick", "guest").mean
    return {"iops": x * 1e6, "lat_mean_us": r, "slat_mean_us": slat, "clat_mean_us": r - slat}
