"""The host backends: threads by role over one or more virtqueues, each queue with its doorbells."""

from __future__ import annotations

import errno
import os
import select
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vsim.errors import ConfigError
from vsim.models.polling import adjust_poll_us
from vsim.reference.engine import Completion, IoEngine, IoRequest
from vsim.reference.guestmem import (
    CTL_ABORT,
    OUTHDR,
    SECTOR,
    VIRTIO_BLK_S_IOERR,
    VIRTIO_BLK_S_OK,
    VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
    GuestMemory,
)
from vsim.reference.linux import (
    BufferAddress,
    current_cpu,
    eventfd_drain,
    new_eventfd,
    pin_thread,
)
from vsim.reference.ring import MAX_QUEUE_SIZE, Chain, Device
from vsim.scenario import Design

__all__ = [
    "RECORD_FIELDS",
    "TAG_STRIDE",
    "Backend",
    "QueueIo",
]

# One backend trace row per request: fields of the lists in ``Backend.records``.
(
    R_IO,
    R_POP,
    R_SUBMIT,
    R_COMPLETE,
    R_PUSH,
    R_SIGNAL,
    R_SUB_THREAD,
    R_SUB_CPU,
    R_COMP_THREAD,
    R_COMP_CPU,
    R_RESULT,
    R_QUEUE,
) = range(12)
RECORD_FIELDS = (
    "io",
    "pop_ns",
    "io_submit_ns",
    "io_complete_ns",
    "used_push_ns",
    "signal_ns",
    "submit_thread",
    "submit_cpu",
    "complete_thread",
    "complete_cpu",
    "result",
    "queue",
)
TAG_STRIDE = MAX_QUEUE_SIZE  # an engine tag is queue * TAG_STRIDE + descriptor head


@dataclass(frozen=True)
class QueueIo:
    """One virtqueue as the runner sets it up: the guest memory holding its ring and buffers,
    its kick eventfd (ioeventfd) and its interrupt eventfd (irqfd)."""

    mem: GuestMemory
    kick_fd: int
    irq_fd: int


@dataclass
class _Inflight:
    io: int
    status_addr: int
    written: int  # bytes the device writes into guest buffers (data for reads, + status)
    record: list[int]


class _Queue:
    """The device side of one virtqueue: its ring, the guest memory mapped into the host, the
    requests in flight by head, and the threads and engine that serve it."""

    def __init__(
        self, index: int, io: QueueIo, submitter: int, completer: int, engine: IoEngine, ev: bool
    ) -> None:
        self.index = index
        self.mem = io.mem
        self.kick_fd = io.kick_fd
        self.irq_fd = io.irq_fd
        self.submitter = submitter
        self.completer = completer
        self.engine = engine
        self.device = Device(io.mem.mm, io.mem.layout.ring, event_idx=ev)
        self.host = BufferAddress(io.mem.mm)
        self.mem_size = io.mem.layout.size
        self.inflight: list[_Inflight | None] = [None] * io.mem.layout.num
        self.unsignalled: list[list[int]] = []

    def release(self) -> None:
        self.host.release()
        self.device.release()


class Backend:
    """Serves the device side of the virtqueues with I/O engines, as a ``Design`` prescribes.

    One thread per role (Design.roles), each serving the queues the design maps to it
    (Design.served): "both" waits on its queues' kick eventfds and its engine's completion
    eventfd and does everything; "submit" (kick -> pop -> submit) and "complete" (reap -> push
    -> signal) split it; "poll" spins on its rings and its engine with kicks off, never
    blocking. Each completing thread has its own engine (``engines[thread]``), which the
    submitter of each of its queues submits to, as each IOThread has its AioContext's AIO
    context. signal: "per-completion" pushes and checks for an interrupt per used entry,
    "batched" once per reaped batch and queue; submit_batch: one engine submission for all
    requests popped from a queue; poll_us: busy-poll this long before blocking; cpus: pin each
    thread. ``queues`` are the virtqueues the guest uses (the first len(queues) of the design's).
    """

    def __init__(
        self,
        design: Design,
        queues: Sequence[QueueIo],
        engines: dict[int, IoEngine],
        *,
        region: int,
        cpus: tuple[int | None, ...] | None = None,
        event_idx: bool = True,
    ) -> None:
        served = design.served()
        if not 1 <= len(queues) <= design.queues:
            raise ConfigError(
                f"design {design.name}: {len(queues)} queues given, it has {design.queues}"
            )
        self.design = design
        self.region = region
        self.cpus = cpus if cpus is not None else design.cpus
        self.queues = [
            _Queue(q, io, s, c, engines[c], event_idx)
            for q, (io, (s, c)) in enumerate(zip(queues, served, strict=False))
        ]
        self.engines = engines
        self.records: list[list[int]] = []
        self._poll_ns = int(design.poll_us * 1000)
        self._stop_fd = new_eventfd()
        self._stopping = False
        self.error: BaseException | None = None
        self.counters: dict[str, int] = {}
        # Per-thread counters (summed by ``stop``), so two threads never update the same dict.
        self._tc = [
            dict.fromkeys(
                (
                    "kicks",
                    "kick_wakeups",
                    "completion_wakeups",
                    "signals",
                    "signals_suppressed",
                    "poll_hits",
                    "requests",
                    "bad_requests",
                ),
                0,
            )
            for _ in range(design.threads)
        ]
        names = design.thread_names
        # (an "sqpoll" thread is the kernel's, started by its engine: io_uring_setup)
        self._threads = [
            threading.Thread(target=self._guard, args=(k,), name=names[k], daemon=True)
            for k, role in enumerate(design.roles)
            if role != "sqpoll"
        ]

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the backend threads."""
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop and join the threads, release guest memory (idempotent)."""
        self._stopping = True
        if self._stop_fd >= 0:
            os.eventfd_write(self._stop_fd, 1)
            for t in self._threads:
                if t.is_alive():
                    t.join()
            os.close(self._stop_fd)
            self._stop_fd = -1
        for q in self.queues:
            q.release()
        self.counters = {k: sum(tc[k] for tc in self._tc) for k in self._tc[0]}
        for name, tc in zip(self.design.thread_names, self._tc, strict=True):
            self.counters[f"{name}.requests"] = tc["requests"]
        self.counters["io_submit_calls"] = sum(e.submit_calls for e in self.engines.values())
        self.counters["io_reap_calls"] = sum(e.reap_calls for e in self.engines.values())
        if self.design.sq_threads:  # io_uring_enter calls that woke a sleeping SQ thread
            self.counters["sq_wakeups"] = sum(
                getattr(e, "wakeups", 0) for e in self.engines.values()
            )
        self.counters["queues_used"] = len(self.queues)

    def _guard(self, index: int) -> None:
        try:
            cpu = self.cpus[index] if self.cpus is not None else None
            pin_thread(cpu)
            avail = [q for q in self.queues if q.submitter == index]
            engine = self.engines.get(index)
            cq = (
                engine
                if engine is not None and any(q.completer == index for q in self.queues)
                else None
            )
            if self.design.roles[index] == "poll":
                self._run_poller(index, avail, cq)
            else:
                self._loop(index, avail, cq)
        except BaseException as e:  # surface to the runner, wake the guest
            if self.error is None:
                self.error = e
            for q in self.queues:
                q.mem.control[CTL_ABORT] = 1
                os.eventfd_write(q.irq_fd, 1)

    # -- thread bodies ---------------------------------------------------------------------

    def _run_poller(self, me: int, avail: list[_Queue], cq: IoEngine | None) -> None:
        """A poll-mode thread: kicks off for good, spins on its rings and its engine until
        stopped, never blocks (a vhost-user-blk backend in SPDK's style)."""
        for q in avail:
            q.device.disable_notify()
        while not self._stopping:
            self._spin_once(me, avail, cq)

    def _loop(self, me: int, avail: list[_Queue], cq: IoEngine | None) -> None:
        ep = select.epoll()
        try:
            ep.register(self._stop_fd, select.EPOLLIN)
            by_kick = {q.kick_fd: q for q in avail}
            for fd in by_kick:
                ep.register(fd, select.EPOLLIN)
            cq_fd = cq.completion_fd if cq is not None else -1
            if cq is not None:
                ep.register(cq_fd, select.EPOLLIN)
            stop_fd = self._stop_fd
            tc = self._tc[me]
            adaptive_max = self.design.poll_max_us
            poll_us = 0.0  # the adaptive poll time (QEMU's starts at 0)
            while not self._stopping:
                if self._poll_ns:
                    self._poll(me, avail, cq)
                    if self._stopping:
                        return
                if adaptive_max:
                    t0 = time.monotonic_ns()
                    caught = poll_us > 0 and self._poll_once(me, avail, cq, poll_us)
                    if self._stopping:
                        return
                    if caught:
                        block_us = (time.monotonic_ns() - t0) / 1000
                        poll_us = adjust_poll_us(poll_us, block_us, adaptive_max)
                        continue
                events = ep.poll()
                if adaptive_max:
                    block_us = (time.monotonic_ns() - t0) / 1000
                    poll_us = adjust_poll_us(poll_us, block_us, adaptive_max)
                for fd, _ in events:
                    if fd in by_kick:
                        tc["kicks"] += eventfd_drain(fd)
                        tc["kick_wakeups"] += 1
                        self._serve_avail(me, by_kick[fd], notify=True)
                    elif fd == cq_fd and cq is not None:
                        eventfd_drain(cq_fd)
                        tc["completion_wakeups"] += 1
                        self._serve_completions(me, cq)
                    elif fd == stop_fd:
                        return
        finally:
            ep.close()

    def _poll(self, me: int, avail: list[_Queue], cq: IoEngine | None) -> None:
        """Busy-poll the rings and the engine until ``poll_us`` passes without work."""
        now = time.monotonic_ns
        for q in avail:
            q.device.disable_notify()  # no kicks while we poll
        deadline = now() + self._poll_ns
        while not self._stopping:
            if self._spin_once(me, avail, cq):
                deadline = now() + self._poll_ns
            elif now() >= deadline and self._kicks_back_on(avail):
                return

    def _spin_once(self, me: int, avail: list[_Queue], cq: IoEngine | None) -> bool:
        """One look at the rings (kicks off) and the engine, serving what is there; True (a
        poll hit, counted) if there was work."""
        worked = False
        for q in avail:
            if q.device.has_avail():
                self._serve_avail(me, q, notify=False)
                worked = True
        if cq is not None and cq.pending():
            eventfd_drain(cq.completion_fd)
            self._serve_completions(me, cq)
            worked = True
        if worked:
            self._tc[me]["poll_hits"] += 1
        return worked

    def _kicks_back_on(self, avail: list[_Queue]) -> bool:
        """Re-enable kicks on every queue (True), or, when a request slipped into one, leave
        kicks off everywhere and return False: keep polling."""
        for q in avail:
            if not q.device.enable_notify():
                for other in avail:
                    other.device.disable_notify()
                return False
        return True

    def _poll_once(self, me: int, avail: list[_Queue], cq: IoEngine | None, poll_us: float) -> bool:
        """Spin up to ``poll_us`` for work and serve what it finds (True), or give up with
        kicks re-enabled (False): one poll of QEMU's adaptive polling (aio_poll)."""
        now = time.monotonic_ns
        for q in avail:
            q.device.disable_notify()  # no kicks while we poll
        deadline = now() + int(poll_us * 1000)
        while not self._stopping:
            ready = [q for q in avail if q.device.has_avail()]
            done = cq is not None and cq.pending()
            if ready or done:
                self._tc[me]["poll_hits"] += 1
                for q in avail:  # each re-enables its kicks when it drains
                    self._serve_avail(me, q, notify=True)
                if done and cq is not None:
                    eventfd_drain(cq.completion_fd)
                    self._serve_completions(me, cq)
                return True
            if now() >= deadline and self._kicks_back_on(avail):
                return False
        return False

    # -- the two halves of the device ------------------------------------------------------

    def _serve_avail(self, me: int, q: _Queue, *, notify: bool) -> None:
        """Pop every available chain of queue ``q`` and submit it (per request, or as one
        batch)."""
        device, now, engine = q.device, time.monotonic_ns, q.engine
        batch: list[IoRequest] = []
        batch_records: list[list[int]] = []
        cpu = current_cpu()
        if notify:
            device.disable_notify()
        while True:
            chain = device.pop_avail()
            if chain is None:
                if not notify or device.enable_notify():
                    break
                device.disable_notify()
                continue
            parsed = self._parse(q, chain, now(), me, cpu)
            if parsed is None:
                continue
            request, record = parsed
            if self.design.submit_batch:
                batch.append(request)
                batch_records.append(record)
            else:
                engine.submit((request,))
                record[R_SUBMIT] = now()  # the record survives even if already completed
        if batch:
            engine.submit(batch)
            t = now()
            for record in batch_records:
                record[R_SUBMIT] = t

    def _parse(
        self, q: _Queue, chain: Chain, t_pop: int, me: int, cpu: int
    ) -> tuple[IoRequest, list[int]] | None:
        """Turn a chain into an engine request; bad requests complete at once with an error."""
        tc = self._tc[me]
        tc["requests"] += 1
        d = chain.descriptors
        io = int(q.mem.tags[chain.head])
        record = [io, t_pop, 0, 0, 0, 0, me, cpu, -1, -1, 0, q.index]
        last = d[-1]
        ok_status = last.writable and last.length >= 1 and last.addr < q.mem_size
        entry = _Inflight(
            io=io, status_addr=last.addr if ok_status else -1, written=1, record=record
        )
        q.inflight[chain.head] = entry
        tag = q.index * TAG_STRIDE + chain.head
        problem, is_write, offset = self._check(q, chain)
        if problem:
            tc["bad_requests"] += 1
            q.engine.fail(tag, problem)
            return None
        data = d[1]
        if not is_write:
            entry.written = data.length + 1
        addr = q.host.address + data.addr
        return IoRequest(tag, is_write, addr, data.length, offset), record

    def _check(self, q: _Queue, chain: Chain) -> tuple[int, bool, int]:
        """(0, is_write, offset) for a well-formed read or write in the region, else an errno."""
        d = chain.descriptors
        if len(d) != 3 or d[0].writable or d[0].length < OUTHDR.size or not d[2].writable:
            return errno.ENOTSUP, False, 0
        if any(x.addr + x.length > q.mem_size for x in d):
            return errno.EFAULT, False, 0
        kind, _, sector = OUTHDR.unpack_from(q.mem.mm, d[0].addr)
        if kind not in (VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT):
            return errno.ENOTSUP, False, 0
        data = d[1]
        if data.writable != (kind == VIRTIO_BLK_T_IN) or data.length % SECTOR:
            return errno.EINVAL, False, 0
        if sector * SECTOR + data.length > self.region:
            return errno.EINVAL, False, 0
        return 0, kind == VIRTIO_BLK_T_OUT, sector * SECTOR

    def _serve_completions(self, me: int, engine: IoEngine) -> None:
        """Reap, write statuses, push used entries and signal the guest as the design says,
        queue by queue."""
        done = engine.reap()
        if not done:
            return
        now = time.monotonic_ns
        t = now()
        cpu = current_cpu()
        by_queue: dict[int, list[Completion]] = {}
        for c in done:
            by_queue.setdefault(c.tag // TAG_STRIDE, []).append(c)
        for qi, cs in by_queue.items():
            q = self.queues[qi]
            # Retire every entry before its used element is published: once the guest sees
            # it, the head may come straight back through the submitter.
            finished = [self._complete(q, c, t, me, cpu) for c in cs]
            if self.design.signal == "per-completion":
                for head, length, record in finished:
                    q.device.push_used(((head, length),))
                    record[R_PUSH] = now()
                    q.unsignalled.append(record)
                    self._maybe_signal(me, q, now)
            else:
                q.device.push_used([(head, length) for head, length, _ in finished])
                t_push = now()
                for _, _, record in finished:
                    record[R_PUSH] = t_push
                    q.unsignalled.append(record)
                self._maybe_signal(me, q, now)

    def _complete(
        self, q: _Queue, c: Completion, t: int, me: int, cpu: int
    ) -> tuple[int, int, list[int]]:
        """Write the status byte, retire the entry; return (head, used length, trace record)."""
        head = c.tag % TAG_STRIDE
        entry = q.inflight[head]
        if entry is None:
            raise RuntimeError(f"completion for head {head} of queue {q.index}, not in flight")
        q.inflight[head] = None
        rec = entry.record
        rec[R_COMPLETE], rec[R_COMP_THREAD], rec[R_COMP_CPU], rec[R_RESULT] = t, me, cpu, c.result
        if c.result == -errno.ENOTSUP:
            status = VIRTIO_BLK_S_UNSUPP
        elif c.result < 0 or (entry.written > 1 and c.result != entry.written - 1):
            status = VIRTIO_BLK_S_IOERR
        else:
            status = VIRTIO_BLK_S_OK
        if entry.status_addr >= 0:
            q.mem.mm[entry.status_addr] = status
        self.records.append(rec)
        return head, entry.written if status == VIRTIO_BLK_S_OK else 1, rec

    def _maybe_signal(self, me: int, q: _Queue, now: Callable[[], int]) -> None:
        if q.device.should_notify():
            os.eventfd_write(q.irq_fd, 1)
            t = now()
            for rec in q.unsignalled:
                rec[R_SIGNAL] = t
            q.unsignalled.clear()
            self._tc[me]["signals"] += 1
        else:
            self._tc[me]["signals_suppressed"] += 1

    def trace(self) -> dict[str, npt.NDArray[np.int64]]:
        """The backend's per-request records as arrays, one per RECORD_FIELDS name."""
        shape = (len(self.records), len(RECORD_FIELDS))
        table = np.array(self.records, dtype=np.int64).reshape(shape)
        return {name: table[:, k] for k, name in enumerate(RECORD_FIELDS)}
