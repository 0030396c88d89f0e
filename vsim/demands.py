"""Mapping a scenario to mean service demands: the instant analytic estimate (`--method mva`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vsim.analytic import Station, mva
from vsim.models.queue import irq_vcpu, queue_of, used_queues
from vsim.profile import Profile
from vsim.scenario import SPINNING_ROLES, Scenario

__all__ = [
    "Chains",
    "chain_demands",
    "disk_demand_us",
    "mva_point",
    "queue_shares",
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


@dataclass(frozen=True)
class Chains:
    """One scenario's network by chain (a chain: the I/Os of one used queue).

    per: per station, the mean demand of one I/O of each chain; channels: the disk's;
    share: each chain's share of the I/Os; jobs: the fio jobs on each chain; used: the queues
    the guest uses; on_vcpu: each vCPU's share of the submissions.
    """

    per: dict[str, list[float]]
    channels: int
    share: list[float]
    jobs: list[int]
    used: int
    on_vcpu: list[float]

    def demand(self, name: str) -> float:
        """Station `name`'s demand per I/O, its chains' weighted by their share."""
        return sum(self.share[q] * self.per[name][q] for q in range(self.used))


def queue_shares(scenario: Scenario, vcpus: int) -> tuple[list[float], list[int], list[float], int]:
    """(share of the I/Os each vCPU submits, jobs on each queue, share each queue carries,
    queues the guest uses): job i runs on vCPU i mod vcpus, the vCPUs map onto queues as
    vsim.models.queue says."""
    w = scenario.workload
    used = used_queues(scenario.design.queues, vcpus)
    on_vcpu = [0.0] * vcpus
    jobs = [0] * used
    for i in range(w.numjobs):
        on_vcpu[i % vcpus] += 1.0 / w.numjobs
        jobs[queue_of(i % vcpus, vcpus, used)] += 1
    return on_vcpu, jobs, [n / w.numjobs for n in jobs], used


def chain_demands(profile: Profile, scenario: Scenario) -> Chains:
    """Per station, the mean demand of one I/O of each used queue (its chain). The backend's
    stations are its threads, the guest's its vCPUs.

    What the mapping ignores: kick and interrupt suppression and batched signalling (it charges
    one kick, one interrupt and one wake-up per I/O, exact at iodepth 1 and pessimistic above),
    wake-ups onto busy CPUs (every wake-up pays the idle-CPU latency, as a delay), busy polling
    (a poll-mode thread pays poll_detect instead of a wake-up and no wait or eventfd read),
    CPU sharing between threads placed on the same CPU, and the shape of every distribution
    (product form treats each queueing station as exponential).
    """
    d = scenario.design
    ctx = d.context
    vcpus = scenario.guest_vcpus or profile.guest_vcpus

    profile.check_engine(d.pricing, d.name)

    def c(op: str, context: str = ctx) -> float:
        if context == "guest":
            return profile.cost(op, context).mean
        return profile.host_cost(op, context, d.pricing).mean

    submit_guest = c("guest_submit", "guest") + c("kick", "guest")
    complete_guest = c("guest_irq", "guest") + c("guest_complete", "guest")
    woken = c("wait_return") + c("notify_read")  # a blocking thread's return from its wait
    submit = c("pop") + c("submit_call") + c("submit_iocb")
    sq_of = d.sq_threads  # SQPOLL: the kernel SQ thread submits, spinning (no wake-up)
    sq = c("sq_call") + c("sq_sqe") if sq_of else 0.0
    cold = c("pop_cold") + c("submit_cold")  # every wake-up from an idle CPU, as below
    complete = c("reap_call") + c("reap_event") + c("push") + c("signal")
    disk, channels = disk_demand_us(profile, scenario)
    on_vcpu, jobs, share, used = queue_shares(scenario, vcpus)
    names = d.thread_names
    served = d.served()[:used]
    out: dict[str, list[float]] = {}
    for v in range(vcpus):
        per = [0.0] * used
        q = queue_of(v, vcpus, used)
        per[q] += submit_guest * (on_vcpu[v] / share[q] if share[q] else 0.0)
        if irq_vcpu(q, vcpus, used) == v:
            per[q] += complete_guest
        out[f"vcpu{v}" if vcpus > 1 else "vcpu"] = per
    wake = []
    idle = profile.cpu["wakeup_idle"].mean
    detect = profile.cpu["poll_detect"].mean
    for q, (s, k) in enumerate(served):
        poll = d.roles[s] == "poll"
        for thread, work in ((s, submit), (k, complete)):
            per = out.setdefault(names[thread], [0.0] * used)
            per[q] += work + (0.0 if poll else woken)
        if not poll:
            out[names[s]][q] += cold
        if sq_of:
            out.setdefault(names[sq_of[k]], [0.0] * used)[q] += sq
        # wake-ups: the backend on the kick and on the completion (a poller notices them
        # after poll_detect), the vCPU on the interrupt
        wake.append(idle + (2 * detect if poll else 2 * idle) + (detect if sq_of else 0.0))
    out["disk"] = [disk] * used
    out["wakeups"] = wake
    return Chains(out, channels, share, jobs, used, on_vcpu)


def stations(profile: Profile, scenario: Scenario) -> list[Station]:
    """The closed network for one scenario as one class, with one visit of every step per I/O:
    each station's demand is its chains' demands weighted by their share of the I/Os (exact
    for one queue; with several, an I/O may visit any queue's stations: see mva_point)."""
    return _stations(chain_demands(profile, scenario))


def _stations(ch: Chains) -> list[Station]:
    out = []
    for name in ch.per:
        if name == "wakeups":
            kind: Any = "delay"
        elif name == "disk":
            kind = "queue" if ch.channels == 1 else "multi"
        else:
            kind = "queue"
        servers = ch.channels if name == "disk" else 1
        out.append(Station(name, ch.demand(name), kind, servers=servers))
    return out


def mva_point(profile: Profile, scenario: Scenario) -> dict[str, float]:
    """Throughput (IOPS) and mean latencies (us) of one scenario by exact MVA.

    With several queues whose stations are their own (each thread and vCPU serves one used
    queue) and a disk that never queues (as many channels as I/Os in flight), the network is
    independent closed chains, one per queue with its jobs' I/Os, solved one by one: exact.
    Otherwise one class over the share-weighted stations (an approximation: it lets an I/O
    of one queue wait behind another queue's at a station neither shares).
    """
    w = scenario.workload
    n = w.iodepth * w.numjobs
    slat = profile.cost("guest_submit", "guest").mean + profile.cost("kick", "guest").mean
    ch = chain_demands(profile, scenario)
    own = all(
        sum(1 for d in ds if d > 0) <= 1
        for name, ds in ch.per.items()
        if name not in ("wakeups", "disk")
    )
    if ch.used > 1 and own and ch.channels >= n:
        x = 0.0
        for q in range(ch.used):
            if not ch.jobs[q]:
                continue
            chain = [
                Station(name, ds[q], "delay" if name in ("wakeups", "disk") else "queue")
                for name, ds in ch.per.items()
                if ds[q] > 0
            ]
            x += float(mva(chain, ch.jobs[q] * w.iodepth).throughput[-1])
        r = n / x
    else:
        res = mva(_stations(ch), n)
        x = float(res.throughput[-1])
        r = float(res.response[-1])
    out = {"iops": x * 1e6, "lat_mean_us": r, "slat_mean_us": slat, "clat_mean_us": r - slat}
    return out | _cpu(profile, scenario, ch, x)


def _cpu(profile: Profile, scenario: Scenario, ch: Chains, x: float) -> dict[str, float]:
    """The CPU columns of a tidy row (vsim.results.CPU_METRICS) by the same demands: a
    poll-mode thread is busy all the time (its idle time is polling), a blocking one pays
    wakeup_idle on every kick and completion; nothing else polls (MVA ignores polling)."""
    d = scenario.design
    names = d.thread_names
    useful = sum(ch.demand(t) for t in dict.fromkeys(names) if t in ch.per)
    pollers = [t for t, r in zip(names, d.roles, strict=True) if r in SPINNING_ROLES]
    poll = sum(max(1.0 / x - ch.demand(t), 0.0) if t in ch.per else 1.0 / x for t in pollers)
    idle = profile.cpu["wakeup_idle"].mean
    wake = sum(
        ch.share[q] * (0.0 if d.roles[s] == "poll" else 2 * idle)
        for q, (s, _) in enumerate(d.served()[: ch.used])
    )
    guest = sum(ch.demand(v) for v in ch.per if v.startswith("vcpu"))
    host = useful + poll + wake
    return {
        "host_cpu_us_per_io": host,
        "host_useful_us_per_io": useful,
        "host_poll_us_per_io": poll,
        "host_wakeup_us_per_io": wake,
        "guest_cpu_us_per_io": guest,
        "guest_poll_us_per_io": 0.0,
        "iops_per_host_core": 1e6 / host if host > 0 else math.nan,
    }
