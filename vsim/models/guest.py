"""The guest: fio jobs keeping iodepth I/Os in flight, and the vCPUs that run them."""

from __future__ import annotations

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
]

UNIT = Dist("uniform", low_us=0.0, high_us=1.0)  # the unit interval (not a time)


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
    """A fio job: rw/bs/iodepth/rwmixread offsets and directions, counted in and out."""

    def __init__(self, index: int, w: Workload, rng: np.random.Generator, active: Level) -> None:
        self.index = index
        self.active = active  # the job's I/Os between fio's submit start and its reap
        self.w = w
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
                    yield from self._add(job, io)
                    worked = True
                if job.inflight >= job.w.iodepth:  # fio reaps when its queue is full ...
                    # ... what completed, each reap followed by a submission: once the free
                    # tags are used up, the next submission sleeps and reaping stops with it.
                    # (Within the queue's size there are always enough tags: no limit.)
                    budget = self.tags.free(vq) + 1
                    while job.done and budget:
                        budget -= 1
                        io = job.done.popleft()
                        io.t_done = t_done = env.now + carry  # fio's reap: clat ends
                        carry = 0.0
                        job.inflight -= 1
                        worked = True
                        if job.done or not vq.can_add() or c.has_loop:
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
                        yield from self._add(job, nxt)
                if carry:
                    yield carry
                    carry = 0.0
                while job.inflight < job.w.iodepth:
                    if c.has_loop:  # fio's own loop before a submission: off the clock
                        yield c.guest_loop()
                    io = job.new_io(env.now)
                    job.inflight += 1
                    yield c.guest_submit()
                    worked = True
                    # No free tag, or others wait for one first: io_submit sleeps until
                    # one frees (the job resumes above, after an interrupt).
                    if not vq.can_add() or self.tags.jobs:
                        yield from self._flush(job)  # (the batch so far is in the ring)
                        self.tags.wait(job, io, env.now)
                        break
                    yield from self._add(job, io)
                yield from self._flush(job)  # the queue is full: fio commits what it queued
            if carry:
                yield carry
            if not worked:
                yield from t.wait(fds)

    def _add(self, job: FioJob, io: IO) -> Proc:
        """Make io available to the device; once the job's batch is complete (one request
        without iodepth_batch_submit), notify the device unless suppressed."""
        self.vq.add(io)
        if self.ring is not None:
            self.ring.signal()
        job.queued.append(io)
        if len(job.queued) >= job.batch:
            yield from self._flush(job)

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
