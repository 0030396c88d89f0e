"""The guest: fio jobs keeping iodepth I/Os in flight, and the vCPUs that run them."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from vsim.kernel import Proc
from vsim.models.cpu import Notifier, Thread
from vsim.models.dists import Dist, sampler
from vsim.models.monitor import Level
from vsim.models.queue import DeviceQueue
from vsim.models.syscalls import Costs
from vsim.scenario import Workload

__all__ = [
    "IO",
    "UNIT",
    "FioJob",
    "Vcpu",
    "rate_due",
]

UNIT = Dist("uniform", low_us=0.0, high_us=1.0)  # the unit interval (not a time)


def rate_due(iops: int, bs: int, issued: int, last: int, u: float) -> int:
    """When a rated direction may issue next, in whole us since the job began: fio's
    usec_for_io (backend.c) after `issued` I/Os. Linear (u < 0): the issued bytes over the
    rate in bytes/s, in fio's integer arithmetic; poisson (u: a U(0, 1) draw): the last due
    time plus int(1e6 // iops) * -log(u), truncated to whole us as fio does."""
    if u >= 0:
        return last + int((1_000_000 // iops) * -math.log(u if u > 0.0 else 1e-300))
    bps = iops * bs
    done = issued * bs
    return (done % bps) * 1_000_000 // bps + (done // bps) * 1_000_000


class IO:
    """One request on its way through the path, with a timestamp (us) at every stage."""

    __slots__ = (
        "job",
        "offset",
        "queue",
        "size",
        "t_dd",
        "t_done",
        "t_issue",
        "t_pop",
        "t_push",
        "t_start",
        "t_sub",
        "write",
    )

    def __init__(self, job: FioJob, write: bool, offset: int, size: int, t_start: float) -> None:
        self.job = job
        self.write = write
        self.offset = offset
        self.size = size
        self.queue: DeviceQueue | None = None  # the device queue it travels (set at submit)
        self.t_start = t_start  # fio starts io_submit
        self.t_issue = 0.0  # io_submit returned (slat end)
        self.t_pop = 0.0  # backend popped it from the available ring
        self.t_sub = 0.0  # backend handed it to the disk
        self.t_dd = 0.0  # disk completed it
        self.t_push = 0.0  # backend pushed it to the used ring
        self.t_done = 0.0  # fio reaped it (clat end; the handler completed it before)


class FioJob:
    """A fio job: rw/bs/iodepth/rwmixread offsets and directions, counted in and out.

    A gated job (rate_iops or thinktime, see Workload) may hold its next I/O back: `stall_us`
    >= 0 while it reaps everything in flight before sleeping that long (fio's io_u_quiesce),
    `sleep_until` while it sleeps, `due_write` the direction its last rate check chose.
    """

    def __init__(
        self,
        index: int,
        w: Workload,
        rng: np.random.Generator,
        active: Level,
        rate_rng: np.random.Generator | None = None,
    ) -> None:
        self.index = index
        self.active = active  # the job's I/Os between fio's submit start and its reap
        self.w = w
        self.iodepth = w.iodepth
        self.rng = rng
        self.inflight = 0  # submitted and not yet reaped (fio's cur_depth)
        self.done: deque[IO] = deque()
        self.blocked: IO | None = None  # inside io_submit, waiting for a free tag
        self.batch = w.submit_batch  # I/Os per io_submit (fio's iodepth_batch_submit)
        self.queued: list[IO] = []  # added to the ring in this io_submit, not yet notified
        self.vcpu: Vcpu | None = None
        self._blocks = w.size // w.bs
        self._next = [0, 0]  # sequential position per direction (fio's last_pos[ddir])
        self._read_fraction = w.read_fraction
        self._random = w.random
        self._bs = w.bs
        self._uniform = sampler(UNIT, rng)  # U(0, 1) draws for direction and offset
        self.gated = w.gated
        self.complete_min = max(w.iodepth_batch_complete_min, 1)  # 0 reaps 1 at a full queue
        self.complete_max = w.iodepth_batch_complete_max  # 0: every completed I/O
        self.batched_reaps = self.complete_min > 1 or self.complete_max > 0
        self.chained = True  # a reap may run into the next submission (set by the vCPU)
        self.stall_us = -1.0
        self.spin_us = 0.0  # thinktime_spin still to spin, after the quiesce
        self.sleep_until = -1.0
        self.alarm = -1.0  # the end of the sleep a timer is set for
        self.due_write = -1  # -1: no rate decision pending; else 0 read, 1 write
        self._think_mark = 0  # I/Os reaped at the last think time (fio's last_thinktime_blocks)
        self.thought = False  # a think time since the last issue
        self._rate = w.rate_iops
        self._poisson = w.rate_process == "poisson"
        self._issued = [0, 0]  # a gated job's I/Os per direction (fio's rate_io_issue_bytes / bs)
        self._due = [0, 0]  # fio's rate_next_io_time per direction, us since the job began
        self._gap = sampler(UNIT, rate_rng) if rate_rng is not None else None

    def new_io(self, now: float, track: bool = True) -> IO:
        """The job's next I/O: direction by rwmixread, offset sequential or uniform random.

        track=False: the caller knows another I/O of the job ends at `now` (no change in the
        number of active I/Os).
        """
        f = self._read_fraction
        write = f == 0.0 or (f < 1.0 and self._uniform() >= f)
        if self._random:
            block = int(self._uniform() * self._blocks)
        else:
            d = int(write)
            block = self._next[d]
            self._next[d] = (block + 1) % self._blocks
        if track:
            self.active.add(1, now)
        bs = self._bs
        return IO(self, write, block * bs, bs, now)

    def gated_io(self, now: float) -> IO:
        """The next I/O of a gated job, in the direction its rate check chose (or by rwmixread
        when no rate applies); counted for the rate's schedule."""
        d = self.due_write
        self.due_write = -1
        if d < 0:
            d = int(self._draw_write())
        write = bool(d)
        if self._random:
            block = int(self._uniform() * self._blocks)
        else:
            block = self._next[d]
            self._next[d] = (block + 1) % self._blocks
        self.active.add(1, now)
        self._issued[d] += 1
        self.thought = False
        if self._rate[d]:
            self._due[d] = self._next_due(d)
        bs = self._bs
        return IO(self, write, block * bs, bs, now)

    def _draw_write(self) -> bool:
        f = self._read_fraction
        return f == 0.0 or (f < 1.0 and self._uniform() >= f)

    def _next_due(self, d: int) -> int:
        u = -1.0
        if self._poisson:
            assert self._gap is not None
            u = self._gap()
        return rate_due(self._rate[d], self._bs, self._issued[d], self._due[d], u)

    def check(self, now: float) -> float:
        """fio's checks before the next I/O of a gated job: 0 to issue now; > 0 to spin that
        long first; -1 to hold it back (reaping, or asleep until `sleep_until`, when a timer
        wakes the vCPU)."""
        if self.sleep_until >= 0:
            if self.sleep_until > now:
                return -1.0
            self.sleep_until = -1.0
            if self.due_write >= 0:
                return 0.0  # a rate sleep ends in the I/O it was for (rate_ddir)
        if self.stall_us >= 0:  # io_u_quiesce: everything in flight is reaped first
            if self.inflight:
                return -1.0
            if self.spin_us:
                spin, self.spin_us = self.spin_us, 0.0
                return spin
            stall, self.stall_us = self.stall_us, -1.0
            if stall > 0:
                self.sleep_until = now + stall  # usec_sleep (the vCPU arms a timer)
                return -1.0
            if self.due_write >= 0:
                return 0.0
        w = self.w
        reaped = self._issued[0] + self._issued[1] - self.inflight  # fio's io_blocks
        thinks = w.thinktime and not self.thought  # fio checks after an issue, not after a stall
        if thinks and reaped >= self._think_mark + w.thinktime_blocks:
            self._think_mark = reaped  # handle_thinktime: quiesce, spin, sleep the rest
            self.spin_us = w.thinktime_spin
            self.stall_us = w.thinktime - w.thinktime_spin
            self.thought = True
            return self.check(now)
        if self._rate[0] or self._rate[1]:
            return self._rate_check(now)
        return 0.0

    def _rate_check(self, now: float) -> float:
        """fio's rate_ddir (io_u.c): issue when the drawn direction is behind its schedule;
        when it is ahead, take the other direction if that one is behind, else plan to sleep
        until the earlier of the two (after a quiesce) and issue in that direction."""
        d = int(self._draw_write())
        due = self._due
        if due[d] <= now:
            self.due_write = d
            return 0.0
        o = 1 - d
        mixed = 0.0 < self._read_fraction < 1.0
        if mixed:
            if due[o] <= now:
                self.due_write = o
                return 0.0
            if due[o] < due[d]:
                d = o
        self.due_write = d
        self.stall_us = due[d] - now
        return self.check(now)


def _reap_budget(job: FioJob, budget: int) -> int:
    """iodepth_batch_complete_min/max: a full queue waits until that many I/Os (at most those
    in flight) completed, and one reap takes at most max."""
    if job.complete_max:
        budget = min(budget, job.complete_max)
    full = job.inflight >= job.iodepth
    if full and len(job.done) < min(job.complete_min, job.inflight):
        return 0
    return budget


class Vcpu:
    """A guest vCPU: runs its fio jobs, submitting to its queue, and the virtio-blk interrupt
    handler of the queues whose interrupts it takes (`handles`).

    When nothing is runnable the vCPU halts: its host thread blocks until the device's interrupt
    (irqfd) or another vCPU's wake-up arrives.

    A job reaps when it has iodepth I/Os outstanding (fio's queue_full), everything that
    completed, each reap followed by a submission (fio reaps one event per io_getevents by
    default: iodepth_batch_complete_max = _min = 1). When the virtqueue has no free descriptor
    for a request (iodepth x numjobs above the queue size), the submission waits in the guest,
    as blk-mq's io_submit sleeps for a free tag (virtio_blk sizes its tag set to the queue):
    the job reaps one I/O, then blocks until the interrupt handler frees a tag, and the wait
    counts in slat (level ``guest.tag_wait``). fio keeps iodepth I/Os outstanding throughout,
    as it does on a real device with fewer tags than iodepth.
    """

    def __init__(
        self,
        thread: Thread,
        jobs: Sequence[FioJob],
        queue: DeviceQueue,
        handles: Sequence[DeviceQueue],
        costs: Costs,
        record: Callable[[IO], None],
    ) -> None:
        self.thread = thread
        self.queue = queue
        self.tags = queue.tags
        self.jobs = list(jobs)
        self.vq = queue.vq
        self.kick = queue.kick
        self.ring = queue.ring
        self.handles = list(handles)
        self.wake = Notifier(f"{thread.name}.wake")
        self.costs = costs
        self.record = record
        self.irqs = 0
        self.submits = 0  # io_submit calls (one per batch of iodepth_batch_submit)
        for j in self.jobs:
            j.vcpu = self
            j.chained = not (costs.has_loop or j.gated)

    def run(self) -> Proc:
        """The vCPU's loop (a SimPy process)."""
        t = self.thread
        env = t.env
        c = self.costs
        vq = self.vq
        fds = [self.wake] + [q.irq for q in self.handles]
        yield from t.start()
        while True:
            cpu = t.cpu  # a time slice ends here too: the wait below is skipped while busy
            if (cpu.waiters or cpu.preempted is not None) and t.should_yield():
                yield from t.yield_cpu()
            worked = False
            carry = 0.0
            for q in self.handles:
                irq = q.irq
                if not irq.count:
                    continue
                irq.consume()
                self.irqs += 1
                # The handler's entry runs before virtblk_done reads the used ring, each entry
                # is completed before the next is read, and used_event moves only at the
                # re-enable: entries the device pushes meanwhile are drained by this interrupt
                # with no interrupt of their own.
                yield c.guest_irq()
                used = q.vq
                while True:  # virtblk_done: drain the used ring, re-enable, re-check
                    while (io := used.get_used()) is not None:
                        yield c.guest_complete()
                        job = io.job
                        job.done.append(io)
                        if job.vcpu is not self:
                            assert job.vcpu is not None
                            job.vcpu.wake.signal()
                    if used.enable_cb():
                        break
                if q.tags.jobs:
                    q.tags.wake(self)  # freed tags wake the submissions waiting for them
                worked = True
            if self.wake.count:
                self.wake.consume()
            for job in self.jobs:
                if job.blocked is not None:
                    if not vq.can_add() or self.tags.jobs[0] is not job:
                        continue  # io_submit still sleeps for a tag: the job cannot reap
                    io = job.blocked
                    self.tags.release(job, env.now)
                    if self._add(job, io):
                        yield from self._flush(job)
                    worked = True
                # fio reaps when its queue is full (or all in flight, before a sleep) what
                # completed, each reap followed by a submission: once the free tags are used
                # up, the next submission sleeps and reaping stops with it. (Within the
                # queue's size there are always enough tags: no limit.)
                if job.inflight >= job.iodepth or job.stall_us >= 0:
                    budget = self.tags.free(vq) + 1
                    if job.batched_reaps:
                        budget = _reap_budget(job, budget)
                    while job.done and budget:
                        budget -= 1
                        io = job.done.popleft()
                        io.t_done = t_done = env.now + carry  # fio's reap: clat ends
                        carry = 0.0
                        job.inflight -= 1
                        worked = True
                        if job.done or not vq.can_add() or not job.chained:
                            if t_done > env.now:
                                yield t_done - env.now
                            job.active.add(-1, t_done)
                            self.record(io)
                            continue  # submissions follow below, each after fio's loop
                        # The last reap runs straight into the next submission (fio's loop): one
                        # timeout for both; one I/O ends as the next starts (`active` unchanged).
                        nxt = job.new_io(t_done, track=False)
                        job.inflight += 1
                        yield t_done - env.now + c.guest_submit()
                        self.record(io)
                        if self._add(job, nxt):
                            yield from self._flush(job)
                if carry:
                    yield carry
                    carry = 0.0
                gated = job.gated
                while job.inflight < job.iodepth:
                    if gated:  # rate_iops or thinktime may hold the I/O back
                        wait = job.check(env.now)
                        if wait > 0:  # thinktime_spin: the vCPU is busy meanwhile
                            yield wait
                            worked = True
                            continue
                        if wait < 0:
                            self._alarm(job)
                            break
                    if c.has_loop:  # fio's own loop before a submission: off the clock
                        yield c.guest_loop()
                    io = job.gated_io(env.now) if gated else job.new_io(env.now)
                    job.inflight += 1
                    yield c.guest_submit()
                    worked = True
                    # No free tag, or others wait for one first: io_submit sleeps until
                    # one frees (the job resumes above, after an interrupt).
                    if not vq.can_add() or self.tags.jobs:
                        yield from self._flush(job)  # (the batch so far is in the ring)
                        self.tags.wait(job, io, env.now)
                        break
                    if self._add(job, io):
                        yield from self._flush(job)
                if job.queued:  # the queue is full: fio commits what it queued
                    yield from self._flush(job)
            if carry:
                yield carry
            if not worked:
                yield from t.wait(fds)

    def _alarm(self, job: FioJob) -> None:
        """Wake the vCPU when a sleeping job's sleep ends (one timer per sleep)."""
        until = job.sleep_until
        if until > job.alarm:
            job.alarm = until
            env = self.thread.env
            env.call_in(until - env.now, self._ring, None)

    def _ring(self, _arg: object) -> None:
        self.wake.signal()

    def _add(self, job: FioJob, io: IO) -> bool:
        """Make io available to the device; True once the job's batch is complete (one request
        without iodepth_batch_submit): the caller then flushes it (`_flush`)."""
        self.vq.add(io)
        if self.ring is not None:
            self.ring.signal()
        job.queued.append(io)
        return len(job.queued) >= job.batch

    def _flush(self, job: FioJob) -> Proc:
        """The end of one io_submit: one kick for the requests it added (queue_rqs: one
        virtqueue_kick_prepare and notify per batch), which return from io_submit together."""
        if not job.queued:
            return
        self.submits += 1
        if self.vq.kick_prepare():
            yield self.costs.kick()
            self.kick.signal()
        now = self.thread.env.now
        for io in job.queued:
            io.t_issue = now
        job.queued.clear()
