"""Host backends as structure + policy: one or two threads, user or kernel, signalling policy."""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import Any

import simpy

from vsim.kernel import Proc
from vsim.models.cpu import Notifier, Thread
from vsim.models.disk import Disk
from vsim.models.guest import IO
from vsim.models.monitor import Level
from vsim.models.syscalls import Costs
from vsim.models.virtqueue import Virtqueue
from vsim.scenario import Design

__all__ = [
    "Backend",
]


class Backend:
    """The device side of the virtqueue: pops requests, submits them to the disk (Linux AIO),
    reaps completions, pushes used entries and signals the guest.

    One thread (QEMU's virtio-blk) waits on the kick and the AIO completion eventfd together;
    two threads (vhost-blk) split into a submitter (kick) and a completer (AIO completion).
    """

    def __init__(
        self,
        env: simpy.Environment,
        design: Design,
        threads: list[Thread],
        vq: Virtqueue,
        kick: Notifier,
        irq: Notifier,
        disk: Disk,
        costs: Costs,
        cq_level: Level,
    ) -> None:
        self.env = env
        self.design = design
        self.threads = threads
        self.vq = vq
        self.kick = kick
        self.irq = irq
        self.disk = disk
        self.costs = costs
        self.aio = Notifier("aio")  # the AIO completion eventfd (IOCB_FLAG_RESFD)
        self.cq: deque[IO] = deque()  # completed, not yet reaped
        self.cq_level = cq_level
        self.submit_calls = 0
        self.reap_calls = 0

    def processes(self) -> list[Proc]:
        """The SimPy processes of the backend's threads."""
        if self.design.threads == 1:
            return [self._one_thread(self.threads[0])]
        return [self._submitter(self.threads[0]), self._completer(self.threads[1])]

    # -- thread loops ------------------------------------------------------------------------
    # Consecutive costs with nothing observable between them are charged as one timeout:
    # `carry` is CPU time already spent and not yet yielded.
    def _one_thread(self, t: Thread) -> Proc:
        c = self.costs
        yield from t.start()
        while True:
            yield from t.wait((self.kick, self.aio))
            carry = c.wait_return()
            if self.kick.count:
                self.kick.consume()
                carry = yield from self._handle_avail(t, carry + c.notify_read())
            if self.aio.count:
                self.aio.consume()
                carry = yield from self._handle_completions(t, carry + c.notify_read())
            if carry:
                yield carry

    def _submitter(self, t: Thread) -> Proc:
        c = self.costs
        yield from t.start()
        while True:
            yield from t.wait((self.kick,))
            self.kick.consume()
            carry = yield from self._handle_avail(t, c.wait_return() + c.notify_read())
            if carry:
                yield carry

    def _completer(self, t: Thread) -> Proc:
        c = self.costs
        yield from t.start()
        while True:
            yield from t.wait((self.aio,))
            self.aio.consume()
            carry = yield from self._handle_completions(t, c.wait_return() + c.notify_read())
            if carry:
                yield carry

    # -- request handling --------------------------------------------------------------------
    def _handle_avail(self, t: Thread, carry: float) -> Generator[simpy.Event | float, Any, float]:
        """Pop and submit until the ring is empty with notifications re-enabled. The first pop
        and io_submit since the thread woke on an idle CPU run cold (pop_cold, submit_cold)."""
        c = self.costs
        env = self.env
        vq = self.vq
        cold, t.cold = t.cold, False
        while True:
            if self.design.submit_batch:
                batch: list[IO] = []
                while (io := vq.pop()) is not None:
                    yield carry + c.pop() + (c.pop_cold() if cold and not batch else 0.0)
                    carry = 0.0
                    io.t_pop = env.now
                    batch.append(io)
                if batch:
                    held, inside = c.submit_call(), sum(c.submit_iocb() for _ in batch)
                    inside += c.submit_cold() if cold else 0.0
                    cold = False
                    if t.lock is None:
                        yield held + inside
                    else:
                        yield from t.syscall(held, inside)
                    self.submit_calls += 1
                    for io in batch:
                        self._to_disk(io)
            else:
                while (io := vq.pop()) is not None:
                    t_pop = env.now + carry + c.pop() + (c.pop_cold() if cold else 0.0)
                    held = t_pop - env.now + c.submit_call()
                    inside = c.submit_iocb() + (c.submit_cold() if cold else 0.0)
                    cold = False
                    if t.lock is None:
                        yield held + inside
                    else:
                        yield from t.syscall(held, inside)
                    carry = 0.0
                    io.t_pop = t_pop
                    self.submit_calls += 1
                    self._to_disk(io)
            if vq.enable_notify():
                return carry

    def _to_disk(self, io: IO) -> None:
        io.t_sub = self.env.now
        self.disk.submit(io, self._disk_done)

    def _disk_done(self, io: IO) -> None:
        io.t_dd = self.env.now
        self.cq.append(io)
        self.cq_level.add(1, io.t_dd)
        self.aio.signal()

    def _handle_completions(
        self, t: Thread, carry: float
    ) -> Generator[simpy.Event | float, Any, float]:
        """Reap every completed request, push it to the used ring and signal the guest."""
        c = self.costs
        env = self.env
        vq = self.vq
        per_completion = self.design.signal == "per-completion"
        while self.cq:
            # io_getevents returns what has completed when it runs: the wake-up, the eventfd
            # read and the call's entry are spent first, and completions landing meanwhile are
            # in the same batch (the real completer reaps after all of them).
            if t.lock is None:
                carry += c.reap_call()
            if carry:
                yield carry
            carry = 0.0
            self.reap_calls += 1
            batch = list(self.cq)
            self.cq.clear()
            self.cq_level.set(0, env.now)
            if t.lock is not None:  # io_getevents with the lock dropped, then the pushes
                yield from t.syscall(0.0, c.reap_call() + sum(c.reap_event() for _ in batch))
            for io in batch:
                yield carry + (0.0 if t.lock is not None else c.reap_event()) + c.push()
                carry = 0.0
                vq.push(io)
                io.t_push = env.now
                if per_completion and vq.should_signal():
                    yield c.signal()
                    self.irq.signal()
            if not per_completion and vq.should_signal():
                yield c.signal()
                self.irq.signal()
        return carry
