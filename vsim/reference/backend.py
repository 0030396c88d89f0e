"""The host backends: virtio-blk (one I/O thread), vhost-blk (submitter + completer), as policy."""

from __future__ import annotations

import errno
import os
import select
import threading
import time
from collections.abc import Callable
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
from vsim.reference.ring import Chain, Device
from vsim.scenario import Design

__all__ = [
    "RECORD_FIELDS",
    "Backend",
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
) = range(11)
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
)


@dataclass
class _Inflight:
    io: int
    status_addr: int
    written: int  # bytes the device writes into guest buffers (data for reads, + status)
    record: list[int]


class Backend:
    """Serves the device side of the virtqueue with an I/O engine, as a ``Design`` prescribes.

    One thread per role (Design.roles): "both" waits on the kick and completion eventfds and
    does everything; "submit" (kick -> pop -> submit) and "complete" (reap -> push -> signal)
    split it; "poll" spins on the ring and the engine with kicks off, never blocking.
    signal: "per-completion" pushes and checks for an interrupt per used entry, "batched" once per
    reaped batch; submit_batch: one engine submission for all popped requests; poll_us: busy-poll
    the ring and the engine this long before blocking; cpus: pin each thread.
    """

    def __init__(
        self,
        design: Design,
        mem: GuestMemory,
        engine: IoEngine,
        *,
        kick_fd: int,
        irq_fd: int,
        region: int,
        cpus: tuple[int | None, ...] | None = None,
        event_idx: bool = True,
    ) -> None:
        if design.queues != 1:
            raise ConfigError(
                f"design {design.name}: the reference backend serves one virtqueue "
                f"(got {design.queues})"
            )
        self.design = design
        self.mem = mem
        self.engine = engine
        self.kick_fd = kick_fd
        self.irq_fd = irq_fd
        self.region = region
        self.cpus = cpus if cpus is not None else design.cpus
        self.device = Device(mem.mm, mem.layout.ring, event_idx=event_idx)
        self._host = BufferAddress(mem.mm)
        self._mem_size = mem.layout.size
        self._inflight: list[_Inflight | None] = [None] * mem.layout.num
        self.records: list[list[int]] = []
        self._unsignalled: list[list[int]] = []
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
        bodies = {
            "both": self._run_iothread,
            "submit": self._run_submitter,
            "complete": self._run_completer,
            "poll": self._run_poller,
        }
        self._threads = [
            threading.Thread(target=self._guard, args=(bodies[r], k), name=names[k], daemon=True)
            for k, r in enumerate(design.roles)
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
        self._host.release()
        self.device.release()
        self.counters = {k: sum(tc[k] for tc in self._tc) for k in self._tc[0]}
        self.counters["io_submit_calls"] = self.engine.submit_calls
        self.counters["io_reap_calls"] = self.engine.reap_calls

    def _guard(self, body: Callable[[int], None], index: int) -> None:
        try:
            cpu = self.cpus[index] if self.cpus is not None else None
            pin_thread(cpu)
            body(index)
        except BaseException as e:  # surface to the runner, wake the guest
            if self.error is None:
                self.error = e
            self.mem.control[CTL_ABORT] = 1
            os.eventfd_write(self.irq_fd, 1)

    # -- thread bodies ---------------------------------------------------------------------

    def _run_iothread(self, me: int) -> None:
        self._loop(me, serve_avail=True, serve_cq=True)

    def _run_submitter(self, me: int) -> None:
        self._loop(me, serve_avail=True, serve_cq=False)

    def _run_completer(self, me: int) -> None:
        self._loop(me, serve_avail=False, serve_cq=True)

    def _run_poller(self, me: int) -> None:
        """A poll-mode thread: kicks off for good, spins on the ring and the engine until
        stopped, never blocks (a vhost-user-blk backend in SPDK's style)."""
        device, engine, tc = self.device, self.engine, self._tc[me]
        device.disable_notify()
        while not self._stopping:
            worked = False
            if device.has_avail():
                self._serve_avail(me, notify=False)
                worked = True
            if engine.pending():
                eventfd_drain(engine.completion_fd)
                self._serve_completions(me)
                worked = True
            if worked:
                tc["poll_hits"] += 1

    def _loop(self, me: int, *, serve_avail: bool, serve_cq: bool) -> None:
        ep = select.epoll()
        try:
            ep.register(self._stop_fd, select.EPOLLIN)
            if serve_avail:
                ep.register(self.kick_fd, select.EPOLLIN)
            if serve_cq:
                ep.register(self.engine.completion_fd, select.EPOLLIN)
            cq_fd, kick_fd, stop_fd = self.engine.completion_fd, self.kick_fd, self._stop_fd
            tc = self._tc[me]
            adaptive_max = self.design.poll_max_us
            poll_us = 0.0  # the adaptive poll time (QEMU's starts at 0)
            while not self._stopping:
                if self._poll_ns:
                    self._poll(me, serve_avail, serve_cq)
                    if self._stopping:
                        return
                if adaptive_max:
                    t0 = time.monotonic_ns()
                    caught = poll_us > 0 and self._poll_once(me, serve_avail, serve_cq, poll_us)
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
                    if fd == kick_fd:
                        tc["kicks"] += eventfd_drain(kick_fd)
                        tc["kick_wakeups"] += 1
                        self._serve_avail(me, notify=True)
                    elif fd == cq_fd:
                        eventfd_drain(cq_fd)
                        tc["completion_wakeups"] += 1
                        self._serve_completions(me)
                    elif fd == stop_fd:
                        return
        finally:
            ep.close()

    def _poll(self, me: int, serve_avail: bool, serve_cq: bool) -> None:
        """Busy-poll the ring and the engine until ``poll_us`` passes without work."""
        now, device, engine = time.monotonic_ns, self.device, self.engine
        if serve_avail:
            device.disable_notify()  # no kicks while we poll
        deadline = now() + self._poll_ns
        while not self._stopping:
            worked = False
            if serve_avail and device.has_avail():
                self._serve_avail(me, notify=False)
                worked = True
            if serve_cq and engine.pending():
                eventfd_drain(engine.completion_fd)
                self._serve_completions(me)
                worked = True
            if worked:
                self._tc[me]["poll_hits"] += 1
                deadline = now() + self._poll_ns
            elif now() >= deadline:
                if serve_avail and not device.enable_notify():
                    device.disable_notify()  # a request slipped in: keep polling
                    continue
                return

    def _poll_once(self, me: int, serve_avail: bool, serve_cq: bool, poll_us: float) -> bool:
        """Spin up to ``poll_us`` for work and serve what it finds (True), or give up with
        kicks re-enabled (False): one poll of QEMU's adaptive polling (aio_poll)."""
        now, device, engine = time.monotonic_ns, self.device, self.engine
        if serve_avail:
            device.disable_notify()  # no kicks while we poll
        deadline = now() + int(poll_us * 1000)
        while not self._stopping:
            avail = serve_avail and device.has_avail()
            done = serve_cq and engine.pending()
            if avail or done:
                self._tc[me]["poll_hits"] += 1
                if serve_avail:
                    self._serve_avail(me, notify=True)  # re-enables kicks when it drains
                if done:
                    eventfd_drain(engine.completion_fd)
                    self._serve_completions(me)
                return True
            if now() >= deadline:
                if serve_avail and not device.enable_notify():
                    device.disable_notify()  # a request slipped in: keep polling
                    continue
                return False
        return False

    # -- the two halves of the device ------------------------------------------------------

    def _serve_avail(self, me: int, *, notify: bool) -> None:
        """Pop every available chain and submit it (per request, or as one batch)."""
        device, now, engine = self.device, time.monotonic_ns, self.engine
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
            parsed = self._parse(chain, now(), me, cpu)
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
        self, chain: Chain, t_pop: int, me: int, cpu: int
    ) -> tuple[IoRequest, list[int]] | None:
        """Turn a chain into an engine request; bad requests complete at once with an error."""
        tc = self._tc[me]
        tc["requests"] += 1
        d = chain.descriptors
        io = int(self.mem.tags[chain.head])
        record = [io, t_pop, 0, 0, 0, 0, me, cpu, -1, -1, 0]
        last = d[-1]
        ok_status = last.writable and last.length >= 1 and last.addr < self._mem_size
        entry = _Inflight(
            io=io, status_addr=last.addr if ok_status else -1, written=1, record=record
        )
        self._inflight[chain.head] = entry
        problem, is_write, offset = self._check(chain)
        if problem:
            tc["bad_requests"] += 1
            self.engine.fail(chain.head, problem)
            return None
        data = d[1]
        if not is_write:
            entry.written = data.length + 1
        addr = self._host.address + data.addr
        return IoRequest(chain.head, is_write, addr, data.length, offset), record

    def _check(self, chain: Chain) -> tuple[int, bool, int]:
        """(0, is_write, offset) for a well-formed read or write in the region, else an errno."""
        d = chain.descriptors
        if len(d) != 3 or d[0].writable or d[0].length < OUTHDR.size or not d[2].writable:
            return errno.ENOTSUP, False, 0
        if any(x.addr + x.length > self._mem_size for x in d):
            return errno.EFAULT, False, 0
        kind, _, sector = OUTHDR.unpack_from(self.mem.mm, d[0].addr)
        if kind not in (VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT):
            return errno.ENOTSUP, False, 0
        data = d[1]
        if data.writable != (kind == VIRTIO_BLK_T_IN) or data.length % SECTOR:
            return errno.EINVAL, False, 0
        if sector * SECTOR + data.length > self.region:
            return errno.EINVAL, False, 0
        return 0, kind == VIRTIO_BLK_T_OUT, sector * SECTOR

    def _serve_completions(self, me: int) -> None:
        """Reap, write statuses, push used entries and signal the guest as the design says."""
        done = self.engine.reap()
        if not done:
            return
        now = time.monotonic_ns
        t = now()
        cpu = current_cpu()
        # Retire every entry before its used element is published: once the guest sees it, the
        # head may come straight back through the submitter.
        finished = [self._complete(c, t, me, cpu) for c in done]
        if self.design.signal == "per-completion":
            for head, length, record in finished:
                self.device.push_used(((head, length),))
                record[R_PUSH] = now()
                self._unsignalled.append(record)
                self._maybe_signal(me, now)
        else:
            self.device.push_used([(head, length) for head, length, _ in finished])
            t_push = now()
            for _, _, record in finished:
                record[R_PUSH] = t_push
                self._unsignalled.append(record)
            self._maybe_signal(me, now)

    def _complete(self, c: Completion, t: int, me: int, cpu: int) -> tuple[int, int, list[int]]:
        """Write the status byte, retire the entry; return (head, used length, trace record)."""
        entry = self._inflight[c.tag]
        if entry is None:
            raise RuntimeError(f"completion for head {c.tag}, which is not in flight")
        self._inflight[c.tag] = None
        rec = entry.record
        rec[R_COMPLETE], rec[R_COMP_THREAD], rec[R_COMP_CPU], rec[R_RESULT] = t, me, cpu, c.result
        if c.result == -errno.ENOTSUP:
            status = VIRTIO_BLK_S_UNSUPP
        elif c.result < 0 or (entry.written > 1 and c.result != entry.written - 1):
            status = VIRTIO_BLK_S_IOERR
        else:
            status = VIRTIO_BLK_S_OK
        if entry.status_addr >= 0:
            self.mem.mm[entry.status_addr] = status
        self.records.append(rec)
        return c.tag, entry.written if status == VIRTIO_BLK_S_OK else 1, rec

    def _maybe_signal(self, me: int, now: Callable[[], int]) -> None:
        if self.device.should_notify():
            os.eventfd_write(self.irq_fd, 1)
            t = now()
            for rec in self._unsignalled:
                rec[R_SIGNAL] = t
            self._unsignalled.clear()
            self._tc[me]["signals"] += 1
        else:
            self._tc[me]["signals_suppressed"] += 1

    def trace(self) -> dict[str, npt.NDArray[np.int64]]:
        """The backend's per-request records as arrays, one per RECORD_FIELDS name."""
        shape = (len(self.records), len(RECORD_FIELDS))
        table = np.array(self.records, dtype=np.int64).reshape(shape)
        return {name: table[:, k] for k, name in enumerate(RECORD_FIELDS)}
