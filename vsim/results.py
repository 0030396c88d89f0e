"""Result of one simulated point: per-I/O latencies, fio summaries, utilisation, tidy rows."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vsim.fio import (
    FIO_PERCENTILES,
    check_percentiles,
    fio_json,
    latency_summary,
    percentile_column,
    percentile_key,
)
from vsim.fio.jobfile import job_options
from vsim.models.queue import indexed, irq_vcpu
from vsim.scenario import Scenario

__all__ = [
    "CPU_METRICS",
    "DIRECTIONS",
    "LATENCY_METRICS",
    "ROW_PERCENTILES",
    "STAGES",
    "Result",
]

ROW_PERCENTILES = (50.0, 99.0)  # the clat / lat percentiles of a tidy row unless asked
# Stage timestamps kept per I/O (us, float32 offsets from the I/O's start), in path order.
STAGES = ("issue", "pop", "sub", "dd", "push", "done")
DIRECTIONS = ("read", "write")
# The CPU columns of a tidy row (Result.cpu), per I/O over the point's measured window.
CPU_METRICS = (
    "host_cpu_us_per_io",
    "host_useful_us_per_io",
    "host_poll_us_per_io",
    "host_wakeup_us_per_io",
    "guest_cpu_us_per_io",
    "guest_poll_us_per_io",
    "iops_per_host_core",
)
# The latency columns of a tidy row (fio's slat/clat/lat), in the order tables show them.
LATENCY_METRICS = (
    "slat_mean_us",
    "clat_mean_us",
    "clat_p50_us",
    "clat_p99_us",
    "lat_mean_us",
    "lat_p50_us",
    "lat_p99_us",
)


@dataclass
class Result:
    """One simulated point.

    Per-I/O arrays (one entry per I/O completed in the measured window, in completion order):
    `write` (bool), `slat_ns` and `clat_ns` (int64; lat = slat + clat), `stages` (float32 us
    since the I/O's start at each stage of STAGES) and `job` (uint16: the fio job).
    `elapsed_s` is the measured window; `levels` holds time-averaged utilisation / queue length
    of every thread, CPU and the disk, and each job's I/Os in flight (`job{i}.active`, summed in
    `guest.active`); `counters` holds event counts over the measured window (kicks, interrupts,
    wake-ups, ...). `wall_s` is the only non-deterministic field and is left out of every
    serialised form. `build` names the build of the models that ran (vsim.models.build.BUILD:
    compiled or pure Python, whose results are identical): in the fio JSON ("vsim build"), not
    in the rows. `extrapolated` is True
    when the disk's service at the point's bs is extrapolated beyond the sizes the profile
    measured, for a direction the point uses (see vsim.models.size_curve).
    """

    scenario: Scenario
    seed: int
    write: np.ndarray
    slat_ns: np.ndarray
    clat_ns: np.ndarray
    stages: np.ndarray
    job: np.ndarray
    elapsed_s: float
    levels: dict[str, float]
    counters: dict[str, int]
    events: int
    iops_rel_hw: float = float("nan")
    lat_rel_hw: float = float("nan")
    extrapolated: bool = False
    wall_s: float = field(default=0.0, compare=False)
    build: str = field(default="", compare=False)

    # -- basic figures -----------------------------------------------------------------------
    @property
    def ios(self) -> int:
        """I/Os completed in the measured window."""
        return int(self.write.size)

    @property
    def lat_ns(self) -> np.ndarray:
        """Total latency (slat + clat) per I/O in ns."""
        lat: np.ndarray = self.slat_ns + self.clat_ns
        return lat

    @property
    def iops(self) -> float:
        """I/Os per second over the measured window (all directions)."""
        return self.ios / self.elapsed_s

    def direction(self, d: str) -> np.ndarray:
        """Mask of the I/Os of direction d ("read" or "write")."""
        return self.write if d == "write" else ~self.write

    def present_directions(self) -> list[str]:
        """The directions with at least one I/O."""
        return [d for d in DIRECTIONS if self.direction(d).any()]

    # -- fio's formats -----------------------------------------------------------------------
    def job_options(self) -> dict[str, object]:
        """The fio job options this point stands for (fio's names: vsim.fio.jobfile.job_options,
        with the guest's libaio and O_DIRECT)."""
        return job_options(self.scenario.workload, ioengine="libaio", direct=True)

    def to_fio_json(self, percentiles: Sequence[float] = FIO_PERCENTILES) -> dict[str, Any]:
        """fio's --output-format=json+ document for this point (group_reporting: one job);
        percentiles as fio's percentile_list (default: fio's)."""
        samples: dict[str, Any] = {}
        for d in self.present_directions():
            m = self.direction(d)
            samples[d] = {"slat_ns": self.slat_ns[m], "clat_ns": self.clat_ns[m]}
        job: dict[str, Any] = {
            "jobname": f"vsim-{self.scenario.design.name}",
            "elapsed_s": self.elapsed_s,
            "options": self.job_options(),
            **samples,
        }
        doc = fio_json(
            [job],
            global_options={"profile": self.scenario.profile},
            percentiles=check_percentiles(percentiles),
        )
        doc["fio version"] = "vsim"
        doc = {"fio version": "vsim", "vsim build": self.build, **doc}  # the build next to it
        doc["vsim"] = {"seed": self.seed, "design": asdict(self.scenario.design)}
        return doc

    def fio_json_text(self, percentiles: Sequence[float] = FIO_PERCENTILES) -> str:
        """to_fio_json() as deterministic text."""
        return json.dumps(self.to_fio_json(percentiles), indent=2, sort_keys=False)

    # -- tidy rows ---------------------------------------------------------------------------
    def rows(self, percentiles: Sequence[float] = ROW_PERCENTILES) -> list[dict[str, Any]]:
        """Tidy rows: one per direction present, parameters first, then metrics with units.

        percentiles: the clat and lat percentiles given as columns (``lat_p99.9_us``, ...),
        computed as fio does (vsim.fio.percentiles_from_bins); default p50 and p99.
        """
        pcts = check_percentiles(percentiles)
        s = self.scenario
        w = s.workload
        # Little's law on the guest's tag wait (I/Os beyond the queue's tags wait in io_submit)
        tag_wait_us = (
            self.levels.get("guest.tag_wait", 0.0) * self.elapsed_s * 1e6 / len(self.write)
        )
        cpu = self.cpu()  # per point: every direction's row carries the same figures
        fairness = self.job_iops_min_pct()
        out = []
        for d in self.present_directions():
            m = self.direction(d)
            n = int(m.sum())
            row: dict[str, Any] = {
                "profile": s.profile,
                "design": s.design.name,
                "rw": w.rw,
                "dir": d,
                "bs": w.bs,
                "iodepth": w.iodepth,
                "numjobs": w.numjobs,
                "iodepth_batch_submit": w.iodepth_batch_submit,
                "rate_iops": w.rate_iops[d == "write"],  # this direction's (0: no limit)
                "guest_vcpus": self.guest_vcpus,
                "seed": self.seed,
                "ios": n,
                "iops": n / self.elapsed_s,
                "bw_kib_s": n * w.bs / 1024 / self.elapsed_s,
            }
            for name, arr in (
                ("slat", self.slat_ns[m]),
                ("clat", self.clat_ns[m]),
                ("lat", self.lat_ns[m]),
            ):
                summ = latency_summary(
                    arr, with_bins=False, percentiles=pcts if name != "slat" else None
                )
                row[f"{name}_mean_us"] = summ["mean"] / 1000
                if name != "slat":
                    for p in pcts:
                        value = summ["percentile"][percentile_key(p)]
                        row[percentile_column(name, p)] = value / 1000
            row["lat_stddev_us"] = float(np.std(self.lat_ns[m])) / 1000
            row["job_iops_min_pct"] = fairness
            row.update(cpu)
            row["tag_wait_mean_us"] = tag_wait_us
            row["iops_hw_pct"] = 100 * self.iops_rel_hw
            row["lat_hw_pct"] = 100 * self.lat_rel_hw
            row["events"] = self.events
            row["extrapolated"] = self.extrapolated
            out.append({k: v.item() if isinstance(v, np.generic) else v for k, v in row.items()})
        return out

    def utilisation(self) -> dict[str, float]:
        """Time-averaged busy fraction of every thread, CPU and the disk."""
        return {k[: -len(".busy")]: v for k, v in self.levels.items() if k.endswith(".busy")}

    def queues(self) -> dict[str, float]:
        """Time-averaged number of requests waiting for each thread and in the disk.

        A backend thread's queue is the work only it can do: the available rings (requests not
        yet popped) of the queues it submits for, reaped-but-unhandled AIO completions of the
        context it completes on (an IOThread has both); an SQ thread's the SQEs queued on its
        ring and not yet taken; a vCPU's is the used rings of the queues whose interrupts it
        takes.
        """
        lv = self.levels
        d = self.scenario.design
        served = d.served()
        names = d.thread_names
        reapers = d.completers
        out = {"disk": lv["disk.queue"]}
        vcpus, used = self.guest_vcpus, self.counters.get("queues_used", 1)
        for q, (s, _) in enumerate(served):
            vq = indexed("virtqueue", q, d.queues)
            out[names[s]] = out.get(names[s], 0.0) + lv[f"{vq}.avail"]
            if q < used:
                out[f"vcpu{irq_vcpu(q, vcpus, used)}"] = lv[f"{vq}.used"]
        for i, c in enumerate(reapers):
            out[names[c]] = (
                out.get(names[c], 0.0) + lv[indexed("aio", i, len(reapers)) + ".completed"]
            )
        sqs = d.sq_threads
        for i, k in enumerate(sqs.values()):
            out[names[k]] = lv[indexed("sq", i, len(sqs)) + ".pending"]
        return out

    def job_iops_min_pct(self) -> float:
        """The slowest fio job's I/Os as % of the mean job's over the measured window (100:
        every job got the same; fio reports each job apart without group_reporting)."""
        n = self.scenario.workload.numjobs
        if n == 1 or not self.ios:
            return 100.0
        counts = np.bincount(self.job, minlength=n)
        return float(100.0 * counts.min() / counts.mean())

    @property
    def guest_vcpus(self) -> int:
        """The guest's vCPUs in this point (the scenario's, or its profile's)."""
        return sum(1 for k in self.levels if k.startswith("vcpu") and k.endswith(".busy"))

    def cpu(self) -> dict[str, float]:
        """CPU cost per I/O (us) and efficiency, over the measured window.

        host_cpu_us_per_io: the backend threads' CPU time, the sum of host_useful (running
        costs), host_poll (spinning: busy polling before blocking, or a poll-mode thread's
        whole idle time) and host_wakeup (waking: from the signal until the thread runs, the
        CPU leaving its idle state or switching to it). guest_cpu_us_per_io: the vCPU threads'
        busy time (halt polling included, guest_poll_us_per_io apart). iops_per_host_core:
        IOPS per fully busy host core of backend CPU time (IOPS / host CPU cores used).
        """
        lv = self.levels
        span_us = self.elapsed_s * 1e6
        per_io = span_us / self.ios if self.ios else math.nan
        host = self.scenario.design.thread_names
        vcpus = sorted(
            {k.split(".")[0] for k in lv if k.startswith("vcpu") and k.endswith(".busy")}
        )
        busy = sum(lv[f"{t}.busy"] for t in host)
        poll = sum(lv[f"{t}.poll"] for t in host)
        wake = sum(lv[f"{t}.wake"] for t in host)
        out = {
            "host_cpu_us_per_io": (busy + wake) * per_io,
            "host_useful_us_per_io": (busy - poll) * per_io,
            "host_poll_us_per_io": poll * per_io,
            "host_wakeup_us_per_io": wake * per_io,
            "guest_cpu_us_per_io": sum(lv[f"{v}.busy"] for v in vcpus) * per_io,
            "guest_poll_us_per_io": sum(lv[f"{v}.poll"] for v in vcpus) * per_io,
        }
        cores = busy + wake
        out["iops_per_host_core"] = self.iops / cores if cores > 0 else math.nan
        return out

    def __repr__(self) -> str:
        d = self.scenario.design.name
        w = self.scenario.workload
        lat = float(self.lat_ns.mean()) / 1000 if self.ios else float("nan")
        return (
            f"<Result {d} {w.rw} bs={w.bs} iodepth={w.iodepth}: {self.iops:,.0f} IOPS, "
            f"lat {lat:.1f} us over {self.ios} I/Os>"
        )
