"""The guest: fio jobs keeping iodepth I/Os in flight, and the vCPUs that run them."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from vsim.kernel import Proc
from vsim.models.cpu import Notifier, Thread
from vsim.models.dists import Dist, sampler
from vsim.models.monitor import Level
from vsim.models.syscalls import Costs
from vsim.models.virtqueue import Virtqueue
from vsim.scenario import Workload

UNIT = Dist("uniform", low_us=0.0, high_us=1.0)  # the unit interval (not a time)


class IO:
    """One request on its way through the path, with a timestamp (us) at every stage."""

    __slots__ = (
        "job",
        "offset",
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
        self.t_start = t_start  # fio starts io_submit
        self.t_issue = 0.0  # io_submit returned (slat end)
        self.t_pop = 0.0  # backend popped it from the available ring
        self.t_sub = 0.0  # backend handed it to the disk
        self.t_dd = 0.0  # disk completed it
        self.t_push = 0.0  # backend pushed it to the used ring
        self.t_done = 0.0  # fio reaped it (clat end)


class FioJob:
    """A fio job: rw/bs/iodepth/rwmixread offsets and directions, counted in and out."""

    def __init__(self, index: int, w: Workload, rng: np.random.Generator, active: Level) -> None:
        self.index = index
        self.active = active  # I/Os between fio's submit start and its reap, all jobs
        self.w = w
        self.rng = rng
        self.inflight = 0
        self.done: deque[IO] = deque()
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
    """A guest vCPU: runs its fio jobs and, on vCPU 0, the virtio-blk interrupt handler.

    When nothing is runnable the vCPU halts: its host thread blocks until the device's interrupt
    (irqfd) or another vCPU's wake-up arrives.
    """

    def __init__(
        self,
        thread: Thread,
        jobs: Sequence[FioJob],
        vq: Virtqueue,
        kick: Notifier,
        irq: Notifier | None,
        costs: Costs,
        record: Callable[[IO], None],
    ) -> None:
        self.thread = thread
        self.jobs = list(jobs)
        self.vq = vq
        self.kick = kick
        self.irq = irq
        self.wake = Notifier(f"{thread.name}.wake")
        self.costs = costs
        self.record = record
        self.irqs = 0
        for j in self.jobs:
            j.vcpu = self

    def run(self) -> Proc:
        """The vCPU's loop (a SimPy process)."""
        t = self.thread
        env = t.env
        c = self.costs
        vq = self.vq
        fds = [self.wake] + ([self.irq] if self.irq else [])
        yield from t.start()
        while True:
            worked = False
            carry = 0.0
            irq = self.irq
            if irq is not None and irq.count:
                irq.consume()
                self.irqs += 1
                carry = c.guest_irq()  # charged with the first reap (or alone below)
                while True:  # virtblk_done: drain the used ring, re-enable, re-check
                    while (io := vq.get_used()) is not None:
                        job = io.job
                        job.done.append(io)
                        if job.vcpu is not self:
                            assert job.vcpu is not None
                            job.vcpu.wake.signal()
                    if vq.enable_cb():
                        break
                worked = True
            if self.wake.count:
                self.wake.consume()
            for job in self.jobs:
                while job.done:
                    io = job.done.popleft()
                    io.t_done = t_done = env.now + carry + c.guest_complete()
                    carry = 0.0
                    job.inflight -= 1
                    worked = True
                    if job.done or not vq.can_add() or c.has_loop:
                        yield t_done - env.now
                        job.active.add(-1, t_done)
                        self.record(io)
                        continue  # submissions follow below, each after fio's loop
                    # The last reap runs straight into the next submission (fio's loop): one
                    # timeout for both; one I/O ends as the next starts, so `active` is unchanged.
                    nxt = job.new_io(t_done, track=False)
                    job.inflight += 1
                    yield t_done - env.now + c.guest_submit()
                    self.record(io)
                    if self._add(nxt):
                        yield c.kick()
                        self.kick.signal()
                    nxt.t_issue = env.now
                if carry:
                    yield carry
                    carry = 0.0
                while job.inflight < job.w.iodepth and vq.can_add():
                    if c.has_loop:  # fio's own loop before a submission: off the clock
                        yield c.guest_loop()
                    io = job.new_io(env.now)
                    job.inflight += 1
                    yield c.guest_submit()
                    if self._add(io):
                        yield c.kick()
                        self.kick.signal()
                    io.t_issue = env.now
                    worked = True
            if carry:
                yield carry
            if not worked:
                yield from t.wait(fds)

    def _add(self, io: IO) -> bool:
        """Make io available to the device; True when the driver must kick (not suppressed)."""
        self.vq.add(io)
        return self.vq.kick_prepare()
