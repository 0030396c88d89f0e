"""The guest: a process per virtqueue running its fio-like closed-loop jobs through the ring."""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from vsim.models.guest import rate_due
from vsim.processes import child_init
from vsim.reference.guestmem import (
    CTL_ABORT,
    CTL_COMPLETED,
    OUTHDR,
    SECTOR,
    VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
    GuestMemory,
)
from vsim.reference.linux import current_cpu, pin_thread
from vsim.reference.ring import Buffer, Driver
from vsim.reference.storage import bad_sectors, stamp
from vsim.scenario import Workload

__all__ = [
    "GuestConfig",
    "GuestJob",
    "guest_main",
    "io_pattern",
]

_CHUNK = 4096
_STATUS_PENDING = 0xFF


@dataclass(frozen=True)
class GuestConfig:
    """What the guest process needs besides its memory: the job, the region and the doorbells."""

    workload: Workload
    region: int
    n_ios: int | None  # measured I/Os to issue, or None to run for workload.runtime
    kick_fd: int
    irq_fd: int
    seed: int
    verify: bool
    write_tag: int
    cpu: int | None
    event_idx: bool = True
    jobs: tuple[int, ...] = (0,)  # the fio jobs (numbered over the whole guest) on this queue


def io_pattern(workload: Workload, region: int, seed: int) -> Iterator[tuple[bool, int]]:
    """The job's (is_write, offset) sequence: fio-like sequential or uniform random blocks."""
    rng = np.random.default_rng(seed)
    bs = workload.bs
    blocks = region // bs
    read_fraction = workload.read_fraction
    next_block = [0, 0]  # sequential position per direction, as fio keeps one per ddir
    while True:
        writes = rng.random(_CHUNK) >= read_fraction
        randoms = rng.integers(0, blocks, _CHUNK)
        for is_write, blk in zip(writes.tolist(), randoms.tolist(), strict=True):
            if not workload.random:
                blk = next_block[is_write]
                next_block[is_write] = (blk + 1) % blocks
            yield is_write, blk * bs


def sleep_granularity_ns() -> int:
    """How late a 1 us sleep returns, the worst of 10: fio's fio_init_ns_granularity
    (time.c), which usec_sleep then takes off every sleep."""
    worst = 0
    for _ in range(10):
        t = time.monotonic_ns()
        time.sleep(1e-6)
        worst = max(worst, time.monotonic_ns() - t)
    return worst


class _Gate:
    """fio's rate_iops and thinktime for the jobs of one queue, as the model has them
    (vsim.models.guest.FioJob.check): before an I/O, a job ahead of its rate schedule, or
    due a think time, reaps everything in flight (io_u_quiesce), then spins and sleeps.
    The reference runs one-direction jobs only (vsim.reference.runner.check_guest)."""

    def __init__(self, w: Workload, jobs: tuple[int, ...], seed: int, t_start: int) -> None:
        self.w = w
        self.t_start = t_start
        self.d = 1 if w.read_fraction == 0.0 else 0  # the jobs' one direction
        self.rate = w.rate_iops[self.d]
        n = len(jobs)
        self.due = [0] * n  # us since the start (fio's rate_next_io_time)
        self.count = [0] * n  # I/Os issued
        self.mark = [0] * n  # I/Os reaped at the last think time
        poisson = w.rate_process == "poisson" and self.rate > 0
        self.rngs = [np.random.default_rng((seed, 1, j)) for j in jobs] if poisson else None
        self.granularity = sleep_granularity_ns()

    def pause(self, k: int, t: int, in_flight: int) -> tuple[float, float] | None:
        """(spin_us, sleep_us) when job k must stall before its next I/O, else None."""
        w = self.w
        reaped = self.count[k] - in_flight
        if w.thinktime and reaped >= self.mark[k] + w.thinktime_blocks:
            self.mark[k] = reaped
            return (w.thinktime_spin, w.thinktime - w.thinktime_spin)
        if self.rate:
            ahead_us = self.due[k] - (t - self.t_start) / 1000
            if ahead_us > 0:  # measured before the quiesce, slept after it (rate_ddir)
                return (0.0, ahead_us)
        return None

    def stall(self, pause: tuple[float, float], t_end: int | None) -> None:
        """Spin, then sleep, neither past the end of the run."""
        spin_us, sleep_us = pause
        t = time.monotonic_ns()
        if spin_us:
            until = t + int(spin_us * 1000)
            if t_end is not None:
                until = min(until, t_end)
            while time.monotonic_ns() < until:
                pass
            t = time.monotonic_ns()
        wake = t + int(sleep_us * 1000)
        if t_end is not None:
            wake = min(wake, t_end)
        # fio's usec_sleep: a sleep shorter than the granularity is spun, a longer one asks
        # for that much less (the overshoot brings it back to the time asked)
        if wake - t > self.granularity:
            time.sleep((wake - t - self.granularity) / 1e9)
        while time.monotonic_ns() < wake:
            pass

    def issued(self, k: int) -> None:
        """Job k issued an I/O: its next due time, by fio's usec_for_io."""
        self.count[k] += 1
        if self.rate:
            u = float(self.rngs[k].random()) if self.rngs is not None else -1.0
            self.due[k] = rate_due(self.rate, self.w.bs, self.count[k], self.due[k], u)


def guest_main(cfg: GuestConfig, mem: GuestMemory, conn: Connection) -> None:
    """Process entry: wait for "go", run the job, send ("ok", results) or ("error", message)."""
    child_init()  # dies with the parent, which handles Ctrl-C and stops us
    try:
        pin_thread(cfg.cpu)
        if conn.recv() != "go":
            return
        conn.send(("ok", GuestJob(cfg, mem).run()))
    except BaseException as e:  # report everything to the parent, as one line
        last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
        where = f" at {os.path.basename(last[0].filename)}:{last[0].lineno}" if last else ""
        conn.send(("error", f"guest: {type(e).__name__}: {e}{where}"))
    finally:
        conn.close()


class GuestJob:
    """The fio jobs of one virtqueue (its vCPU group) driving it from one process, each a
    closed loop of ``iodepth`` slots with its own I/O pattern, with per-I/O slat/clat
    timestamps. Job k of the queue owns slots k*iodepth .. (k+1)*iodepth-1."""

    def __init__(self, cfg: GuestConfig, mem: GuestMemory) -> None:
        self.cfg = cfg
        self.mem = mem
        self.layout = mem.layout
        self.driver: Driver[int] = Driver(mem.mm, self.layout.ring, event_idx=cfg.event_idx)
        self.kicks = 0
        self.irq_waits = 0
        self.irq_spurious = 0
        self.verified_reads = 0
        self.bad_sectors = 0

    def run(self) -> dict[str, Any]:
        """Run the closed loops to the end and return the per-I/O records and counters."""
        cfg, wl, mem, layout = self.cfg, self.cfg.workload, self.mem, self.layout
        driver = self.driver
        now = time.monotonic_ns
        bs, depth, n_jobs = wl.bs, wl.iodepth, len(cfg.jobs)
        per_submit = wl.submit_batch  # I/Os per io_submit (fio's iodepth_batch_submit)
        batch: list[int] = []  # I/Os added to the ring since the last notification check
        patterns = [io_pattern(wl, cfg.region, cfg.seed + j) for j in cfg.jobs]
        # per job: free slots (popped from the end: lowest first), I/Os measured, more to issue
        free = [list(range((k + 1) * depth - 1, k * depth - 1, -1)) for k in range(n_jobs)]
        measured = [0] * n_jobs
        more = [True] * n_jobs
        slots = n_jobs * depth
        slot_io = [0] * slots
        data = [np.frombuffer(mem.data(s), dtype=np.uint64) for s in range(slots)]
        # is_write, offset, submit, kick, kicked, job
        issued: list[tuple[int, int, int, int, int, int]] = []
        done: list[tuple[int, int, int, int, int]] = []  # io, reap, irq, cpu, status
        t_start = now()
        ramp_end = t_start + int(wl.ramp_time * 1e9)
        t_end = ramp_end + int(wl.runtime * 1e9) if wl.runtime else None
        control = mem.control
        gate = _Gate(wl, cfg.jobs, cfg.seed, t_start) if wl.gated else None
        try:
            while True:
                for k in range(n_jobs):
                    job_free = free[k]
                    while job_free and more[k]:
                        if gate is not None:
                            pause = gate.pause(k, now(), depth - len(job_free))
                            if pause is not None:  # fio commits, reaps all, then stalls
                                if batch:
                                    self._commit(batch, issued)
                                while len(job_free) < depth:
                                    self._wait(done, free, slot_io, issued, data)
                                gate.stall(pause, t_end)
                        t_sub = now()
                        if t_end is not None and t_sub >= t_end:
                            more[k] = False
                            break
                        if t_sub >= ramp_end:
                            measured[k] += 1
                            if cfg.n_ios is not None and measured[k] >= cfg.n_ios:
                                more[k] = False
                        is_write, offset = next(patterns[k])
                        slot = job_free.pop()
                        io = len(issued)
                        slot_io[slot] = io
                        hdr = layout.header_addr(slot)
                        kind = VIRTIO_BLK_T_OUT if is_write else VIRTIO_BLK_T_IN
                        OUTHDR.pack_into(mem.mm, hdr, kind, 0, offset // SECTOR)
                        mem.mm[layout.status_addr(slot)] = _STATUS_PENDING
                        if is_write and cfg.verify:
                            data[slot][:] = stamp(offset, bs, cfg.write_tag)
                        head = driver.add(
                            (
                                Buffer(hdr, OUTHDR.size, False),
                                Buffer(layout.data_addr(slot), bs, not is_write),
                                Buffer(layout.status_addr(slot), 1, True),
                            ),
                            slot,
                        )
                        mem.tags[head] = io
                        if gate is not None:
                            gate.issued(k)
                        if per_submit == 1:  # (inline: the path calibration measures)
                            kicked = driver.kick_prepare()
                            if kicked:
                                os.eventfd_write(cfg.kick_fd, 1)
                                self.kicks += 1
                            issued.append((is_write, offset, t_sub, now(), kicked, cfg.jobs[k]))
                            continue
                        issued.append((is_write, offset, t_sub, 0, 0, cfg.jobs[k]))
                        batch.append(io)
                        if len(batch) >= per_submit:
                            self._commit(batch, issued)
                    if batch:  # the queue is full: fio commits the rest
                        self._commit(batch, issued)
                idle = all(len(f) == depth for f in free) and not any(more)
                if idle or control[CTL_ABORT]:
                    break
                # Wait for at least one completion (fio's iodepth_batch_complete_min=1).
                self._wait(done, free, slot_io, issued, data)
        finally:
            del data
        t_last = max((d[1] for d in done), default=now())
        return self._results(issued, done, t_start, ramp_end, t_last)

    def _wait(
        self,
        done: list[tuple[int, int, int, int, int]],
        free: list[list[int]],
        slot_io: list[int],
        issued: list[tuple[int, int, int, int, int, int]],
        data: list[Any],
    ) -> None:
        """Reap at least one completion, blocking on the interrupt when none is there."""
        t_irq = 0
        while not self._reap(done, free, slot_io, issued, data, t_irq):
            os.eventfd_read(self.cfg.irq_fd)  # blocks: the irqfd analogue
            t_irq = time.monotonic_ns()
            self.irq_waits += 1
            if self.mem.control[CTL_ABORT]:
                raise RuntimeError("aborted by the runner")
        self.mem.control[CTL_COMPLETED] = len(done)

    def _commit(self, batch: list[int], issued: list[tuple[int, int, int, int, int, int]]) -> None:
        """The end of one io_submit: one notification check for the I/Os it added (virtio-blk's
        queue_rqs), which all return then; the last carries the kick."""
        kicked = self.driver.kick_prepare()
        if kicked:
            os.eventfd_write(self.cfg.kick_fd, 1)
            self.kicks += 1
        t = time.monotonic_ns()
        for io in batch:
            w, off, t_sub, _, _, job = issued[io]
            issued[io] = (w, off, t_sub, t, kicked and io == batch[-1], job)
        batch.clear()

    def _reap(
        self,
        done: list[tuple[int, int, int, int, int]],
        free: list[list[int]],
        slot_io: list[int],
        issued: list[tuple[int, int, int, int, int, int]],
        data: list[Any],
        t_irq: int,
    ) -> int:
        """The interrupt handler: disable callbacks, reap all used entries, re-enable, recheck."""
        driver, mm, layout, now = self.driver, self.mem.mm, self.layout, time.monotonic_ns
        depth = self.cfg.workload.iodepth
        n = 0
        while True:
            driver.disable_cb()
            while (used := driver.get_used()) is not None:
                slot = used[0]
                t = now()
                io = slot_io[slot]
                status = mm[layout.status_addr(slot)]
                if self.cfg.verify and not issued[io][0] and status == 0:
                    bad = bad_sectors(data[slot], issued[io][1], (0, self.cfg.write_tag))
                    self.bad_sectors += bad
                    self.verified_reads += 1
                done.append((io, t, t_irq, current_cpu(), status))
                free[slot // depth].append(slot)
                n += 1
            if driver.enable_cb():
                break
        if n == 0 and t_irq:
            self.irq_spurious += 1
        return n

    def _results(
        self,
        issued: list[tuple[int, int, int, int, int, int]],
        done: list[tuple[int, int, int, int, int]],
        t_start: int,
        ramp_end: int,
        t_last: int,
    ) -> dict[str, Any]:
        n = len(issued)
        iss = np.array(issued, dtype=np.int64).reshape(n, 6)
        fin = np.array(done, dtype=np.int64).reshape(len(done), 5)
        order = np.argsort(fin[:, 0], kind="stable")
        fin = fin[order]
        if not np.array_equal(fin[:, 0], np.arange(n)):
            raise RuntimeError(f"{n} I/Os issued but {len(done)} completed")
        return {
            "ddir": iss[:, 0].astype(np.uint8),
            "offset": iss[:, 1].astype(np.uint64),
            "submit_ns": iss[:, 2],
            "kick_ns": iss[:, 3],
            "kicked": iss[:, 4].astype(bool),
            "job": iss[:, 5].astype(np.int16),
            "reap_ns": fin[:, 1],
            "irq_ns": fin[:, 2],
            "guest_cpu": fin[:, 3].astype(np.int16),
            "status": fin[:, 4].astype(np.uint8),
            "t_start": t_start,
            "ramp_end": ramp_end,
            "t_last": t_last,
            "counters": {
                "guest_kicks": self.kicks,
                "guest_irq_waits": self.irq_waits,
                "guest_irq_spurious": self.irq_spurious,
                "verified_reads": self.verified_reads,
                "verify_bad_sectors": self.bad_sectors,
            },
        }
