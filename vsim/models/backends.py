"""Host backends as structure + policy: threads by role over virtqueues, signalling policy."""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import Any

from simpy.events import Event

from vsim.kernel import Kernel, Proc, Signal
from vsim.models.cpu import Notifier, Thread
from vsim.models.disk import Disk
from vsim.models.guest import IO
from vsim.models.monitor import Level
from vsim.models.queue import DeviceQueue
from vsim.models.syscalls import Costs
from vsim.scenario import Design

__all__ = [
    "Backend",
]


class _Reaper:
    """A completing thread's AIO context: its completion eventfd and what completed unreaped."""

    __slots__ = ("aio", "cq", "level")

    def __init__(self, name: str, level: Level) -> None:
        self.aio = Notifier(name)  # the AIO completion eventfd (IOCB_FLAG_RESFD)
        self.cq: deque[IO] = deque()  # completed, not yet reaped
        self.level = level


class _SqRing:
    """An io_uring's SQ ring under SQPOLL: what its owner queued and the kernel SQ thread has
    not yet taken, and the tail moves the SQ thread spins on."""

    __slots__ = ("level", "pending", "tail")

    def __init__(self, name: str, level: Level) -> None:
        self.pending: list[tuple[IO, DeviceQueue]] = []
        self.tail = Notifier(name)
        self.level = level  # SQEs queued and not yet taken


class Backend:
    """The device side of the virtqueues: pops requests, submits them to the disk (Linux AIO),
    reaps completions, pushes used entries and signals the guest.

    One loop per thread, by its role (Design.roles): a "both" thread (QEMU's IOThread) waits on
    the kicks of its queues and on its AIO completion eventfd together; a "submit" thread waits
    on kicks only and a "complete" thread on completions only (the seed's vhost-blk); a "poll"
    thread never blocks: it spins on its rings and its completions. Each queue's requests
    complete on the AIO context of the thread that serves its completions (Design.served).
    With SQPOLL, a thread queues its submissions on its io_uring's SQ ring and that ring's
    "sqpoll" thread, spinning, submits them (io_uring/sqpoll.c io_sq_thread).
    """

    def __init__(
        self,
        env: Kernel,
        design: Design,
        threads: list[Thread],
        queues: list[DeviceQueue],
        disk: Disk,
        costs: Costs,
        levels: list[Level],
        sq_levels: list[Level] | None = None,
    ) -> None:
        self.env = env
        self.design = design
        self.threads = threads
        self.disk = disk
        self.costs = costs
        self._submit_batch = design.submit_batch
        self._submit_max = design.submit_max
        self._per_completion = design.signal == "per-completion"
        served = design.served()
        self.reapers = {
            k: _Reaper(f"aio{i}", level)
            for i, (k, level) in enumerate(zip(design.completers, levels, strict=True))
        }
        # Per queue: the AIO context its requests complete on.
        self._reaper_of = [self.reapers[c] for _, c in served]
        self._submits = [
            [q for q, (s, _) in zip(queues, served, strict=True) if s == k]
            for k in range(len(threads))
        ]
        # Per queue, the SQ ring its submissions go to (SQPOLL: the ring of the thread that
        # reaps them), or None: the submitter submits itself.
        sq_of = design.sq_threads
        self._rings = {
            k: _SqRing(f"sq{i}", level)
            for i, (k, level) in enumerate(zip(sq_of.values(), sq_levels or [], strict=True))
        }
        self._sq_ring = [self._rings[sq_of[c]] if sq_of else None for _, c in served]
        self.submit_calls = 0
        self.sq_batches = 0  # batches the SQ threads took off their rings
        self.reap_calls = 0
        self.largest_batch = 0  # the most requests one io_submit carried
        self.requests = [0] * len(threads)  # per thread: requests it popped
        # per thread: passes that popped requests until the ring was empty
        self.drains = [0] * len(threads)

    def processes(self) -> list[Proc]:
        """The SimPy processes of the backend's threads, in thread order."""
        return [
            self._sq_loop(t, self._rings[k])
            if role == "sqpoll"
            else self._loop(k, t, role, self._submits[k], self.reapers.get(k))
            for k, (t, role) in enumerate(zip(self.threads, self.design.roles, strict=True))
        ]

    # -- thread loops ------------------------------------------------------------------------
    # Consecutive costs with nothing observable between them are charged as one timeout:
    # `carry` is CPU time already spent and not yet yielded.
    def _loop(
        self, k: int, t: Thread, role: str, mine: list[DeviceQueue], reaper: _Reaper | None
    ) -> Proc:
        """A thread's loop: wait on its queues' kicks (a poller: their rings) and its AIO
        completions, then serve what is pending, requests first."""
        c = self.costs
        poll = role == "poll"
        doors: list[tuple[DeviceQueue, Notifier]] = []  # each queue and what signals it
        for q in mine:
            ring = q.ring if poll else q.kick
            assert ring is not None
            doors.append((q, ring))
        fds = [ring for _, ring in doors] + ([reaper.aio] if reaper is not None else [])
        yield from t.start()
        while True:
            yield from t.wait(fds)
            # A poller did not block: nothing to return from, no eventfd to read.
            carry = 0.0 if poll else c.wait_return()
            for q, ring in doors:
                if ring.count:
                    ring.consume()
                    carry = yield from self._handle_avail(
                        k, t, q, carry + (0.0 if poll else c.notify_read()), poll
                    )
            if reaper is not None and reaper.aio.count:
                reaper.aio.consume()
                carry = yield from self._handle_completions(
                    t, reaper, carry + (0.0 if poll else c.notify_read())
                )
            if carry:
                yield carry

    def _sq_loop(self, t: Thread, ring: _SqRing) -> Proc:
        """A kernel SQ thread: spin on the SQ tail, take everything queued and submit it, the
        batch reaching the disk at once at the end (a plugged submission, as io_submit's)."""
        c = self.costs
        yield from t.start()
        while True:
            yield from t.wait([ring.tail])
            ring.tail.consume()
            while ring.pending:
                batch, ring.pending = ring.pending, []
                ring.level.set(0, self.env.now)
                yield c.sq_call() + sum(c.sq_sqe() for _ in batch)
                self.sq_batches += 1
                for io, q in batch:
                    self._to_disk(io, q)

    # -- request handling --------------------------------------------------------------------
    def _handle_avail(
        self, k: int, t: Thread, q: DeviceQueue, carry: float, poll: bool
    ) -> Generator[Event | Signal | float, Any, float]:
        """Pop and submit until the ring is empty with notifications re-enabled (a poller
        leaves them off: until it is empty); batched, one io_submit per drain, or per
        submit_max requests. The first pop and io_submit since the thread woke on an idle CPU
        run cold (pop_cold, submit_cold)."""
        c = self.costs
        env = self.env
        vq = q.vq
        cold, t.cold = t.cold, False
        ring = self._sq_ring[q.index]
        if self._submit_batch:
            # QEMU's virtio_blk_handle_vq inside defer_call_begin/end: pop until the ring is
            # empty with kicks re-enabled (a poller leaves them off), queueing the requests;
            # linux-aio submits them in one io_submit at defer_call_end, or early once
            # submit_max are queued (laio_do_submit).
            cap = self._submit_max or vq.size
            batch: list[IO] = []
            popped = False
            while True:
                io = vq.pop()
                if io is None:
                    if poll or vq.enable_notify():
                        break
                    continue
                yield carry + c.pop() + (c.pop_cold() if cold and not popped else 0.0)
                carry = 0.0
                popped = True
                io.t_pop = env.now
                batch.append(io)
                if len(batch) == cap:
                    yield from self._submit(k, t, q, batch, cold)
                    cold = False
                    batch = []
            if batch:
                yield from self._submit(k, t, q, batch, cold)
            if popped:
                self.drains[k] += 1
            return carry
        while True:
            popped_n = 0
            while (io := vq.pop()) is not None:
                popped_n += 1
                self.requests[k] += 1
                t_pop = env.now + carry + c.pop() + (c.pop_cold() if cold else 0.0)
                held = t_pop - env.now + c.submit_call()
                inside = c.submit_iocb() + (c.submit_cold() if cold else 0.0)
                cold = False
                if t.lock is None or ring is not None:  # (SQPOLL: no system call)
                    yield held + inside
                else:
                    yield from t.syscall(held, inside)
                carry = 0.0
                io.t_pop = t_pop
                self.largest_batch = 1
                self._hand_off([io], q)
            if popped_n:
                self.drains[k] += 1
            if (not vq.avail) if poll else vq.enable_notify():
                return carry

    def _submit(
        self, k: int, t: Thread, q: DeviceQueue, batch: list[IO], cold: bool
    ) -> Generator[Event | Signal | float, Any, None]:
        """One io_submit of `batch` (cold: the first since the thread woke on an idle CPU)."""
        c = self.costs
        held, inside = c.submit_call(), sum(c.submit_iocb() for _ in batch)
        inside += c.submit_cold() if cold else 0.0
        # (SQPOLL: SQE writes in user space, no system call to drop the lock in)
        if t.lock is None or self._sq_ring[q.index] is not None:
            yield held + inside
        else:
            yield from t.syscall(held, inside)
        self.requests[k] += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))
        self._hand_off(batch, q)

    def _hand_off(self, batch: list[IO], q: DeviceQueue) -> None:
        """The submitted requests go to the disk (one io_submit or io_uring_enter), or, under
        SQPOLL, onto the SQ ring for its kernel thread (no system call)."""
        ring = self._sq_ring[q.index]
        if ring is None:
            self.submit_calls += 1
            for io in batch:
                self._to_disk(io, q)
            return
        ring.pending.extend((io, q) for io in batch)
        ring.level.add(len(batch), self.env.now)
        ring.tail.signal()

    def _to_disk(self, io: IO, q: DeviceQueue) -> None:
        io.t_sub = self.env.now
        io.queue = q
        self.disk.submit(io, self._disk_done)

    def _disk_done(self, io: IO) -> None:
        io.t_dd = now = self.env.now
        assert io.queue is not None
        r = self._reaper_of[io.queue.index]
        r.cq.append(io)
        r.level.add(1, now)
        r.aio.signal()

    def _handle_completions(
        self, t: Thread, r: _Reaper, carry: float
    ) -> Generator[Event | Signal | float, Any, float]:
        """Reap every completed request, push it to its queue's used ring and signal the guest
        (batched: once per queue the batch touched, after its last entry)."""
        c = self.costs
        env = self.env
        per_completion = self._per_completion
        while r.cq:
            # io_getevents returns what has completed when it runs: the wake-up, the eventfd
            # read and the call's entry are spent first, and completions landing meanwhile are
            # in the same batch (the real completer reaps after all of them).
            if t.lock is None:
                carry += c.reap_call()
            if carry:
                yield carry
            carry = 0.0
            self.reap_calls += 1
            batch = list(r.cq)
            r.cq.clear()
            r.level.set(0, env.now)
            if t.lock is not None:  # io_getevents with the lock dropped, then the pushes
                yield from t.syscall(0.0, c.reap_call() + sum(c.reap_event() for _ in batch))
            touched: list[DeviceQueue] = []
            for io in batch:
                yield carry + (0.0 if t.lock is not None else c.reap_event()) + c.push()
                carry = 0.0
                q = io.queue
                assert q is not None
                q.vq.push(io)
                io.t_push = env.now
                if per_completion:
                    if q.vq.should_signal():
                        yield c.signal()
                        q.irq.signal()
                elif q not in touched:
                    touched.append(q)
            for q in touched:
                if q.vq.should_signal():
                    yield c.signal()
                    q.irq.signal()
        return carry
