"""io_uring through raw syscalls: setup, mmap of the SQ/CQ rings, enter, a registered eventfd."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import threading
from collections.abc import Sequence

from vsim.errors import UnavailableError
from vsim.reference.engine import Completion, IoEngine, IoRequest
from vsim.reference.linux import BufferAddress, syscall, syscall_number

__all__ = [
    "IORING_ENTER_GETEVENTS",
    "IORING_ENTER_SQ_WAKEUP",
    "IORING_OFF_CQ_RING",
    "IORING_OFF_SQES",
    "IORING_OFF_SQ_RING",
    "IORING_OP_NOP",
    "IORING_OP_READV",
    "IORING_OP_WRITEV",
    "IORING_REGISTER_EVENTFD",
    "IORING_SETUP_SQPOLL",
    "IORING_SQ_NEED_WAKEUP",
    "Cqe",
    "Sqe",
    "UringEngine",
]

IORING_OP_NOP = 0
IORING_OP_READV = 1
IORING_OP_WRITEV = 2
IORING_ENTER_GETEVENTS = 1
IORING_ENTER_SQ_WAKEUP = 2
IORING_SETUP_SQPOLL = 2
IORING_SETUP_SQ_AFF = 4
IORING_SQ_NEED_WAKEUP = 1
IORING_REGISTER_EVENTFD = 4
IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000
_NOP_TAG = (1 << 64) - 1


class _SqOffsets(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_uint32)
        for n in ("head", "tail", "ring_mask", "ring_entries", "flags", "dropped", "array", "resv1")
    ] + [("user_addr", ctypes.c_uint64)]


class _CqOffsets(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_uint32)
        for n in ("head", "tail", "ring_mask", "ring_entries", "overflow", "cqes", "flags", "resv1")
    ] + [("user_addr", ctypes.c_uint64)]


class _Params(ctypes.Structure):
    _fields_ = [
        ("sq_entries", ctypes.c_uint32),
        ("cq_entries", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("sq_thread_cpu", ctypes.c_uint32),
        ("sq_thread_idle", ctypes.c_uint32),
        ("features", ctypes.c_uint32),
        ("wq_fd", ctypes.c_uint32),
        ("resv", ctypes.c_uint32 * 3),
        ("sq_off", _SqOffsets),
        ("cq_off", _CqOffsets),
    ]


class Sqe(ctypes.Structure):
    """struct io_uring_sqe (64 bytes)."""

    _fields_ = [
        ("opcode", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("ioprio", ctypes.c_uint16),
        ("fd", ctypes.c_int32),
        ("off", ctypes.c_uint64),
        ("addr", ctypes.c_uint64),
        ("len", ctypes.c_uint32),
        ("rw_flags", ctypes.c_uint32),
        ("user_data", ctypes.c_uint64),
        ("buf_index", ctypes.c_uint16),
        ("personality", ctypes.c_uint16),
        ("splice_fd_in", ctypes.c_int32),
        ("addr3", ctypes.c_uint64),
        ("pad", ctypes.c_uint64),
    ]


class Cqe(ctypes.Structure):
    """struct io_uring_cqe (16 bytes)."""

    _fields_ = [("user_data", ctypes.c_uint64), ("res", ctypes.c_int32), ("flags", ctypes.c_uint32)]


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class UringEngine(IoEngine):
    """io_uring with READV/WRITEV: one io_uring_enter per batch, CQEs signalled on an eventfd.

    sqpoll: the kernel's SQ thread (IORING_SETUP_SQPOLL, fio's sqthread_poll) picks the SQEs up
    from the ring: a submission is a tail store and no system call, unless the thread went to
    sleep after `sq_idle_ms` without work (IORING_SQ_NEED_WAKEUP: one io_uring_enter wakes it);
    sq_cpu pins it (IORING_SETUP_SQ_AFF).
    """

    name = "io_uring"

    def __init__(
        self,
        fd: int,
        depth: int,
        sqpoll: bool = False,
        sq_idle_ms: int = 0,
        sq_cpu: int | None = None,
    ) -> None:
        super().__init__(fd, depth)
        self.sqpoll = sqpoll
        self.wakeups = 0  # io_uring_enter calls that woke the SQ thread
        self._barrier = threading.Lock()
        self._nr_enter = syscall_number("io_uring_enter")
        self._maps: list[mmap.mmap] = []
        self._anchors: list[BufferAddress] = []
        params = _Params()
        if sqpoll:
            # 0: the kernel's default idle time, one second (io_sq_offload_create: HZ)
            params.flags, params.sq_thread_idle = IORING_SETUP_SQPOLL, sq_idle_ms
            if sq_cpu is not None:  # pin the SQ thread
                params.flags |= IORING_SETUP_SQ_AFF
                params.sq_thread_cpu = sq_cpu
        setup = syscall_number("io_uring_setup")
        ring_fd = syscall(setup, ctypes.c_uint(depth), ctypes.byref(params))
        if ring_fd < 0:
            os.close(self.completion_fd)
            self._closed = True
            reason = os.strerror(-ring_fd)
            if -ring_fd == errno.EPERM:
                reason += " (kernel.io_uring_disabled or a seccomp filter)"
            raise UnavailableError(f"io_uring unavailable: io_uring_setup: {reason}")
        self.ring_fd = ring_fd
        try:
            self._map_rings(params)
            efd = ctypes.c_int(self.completion_fd)
            ret = syscall(
                syscall_number("io_uring_register"),
                ring_fd,
                IORING_REGISTER_EVENTFD,
                ctypes.byref(efd),
                1,
            )
            if ret < 0:
                reason = os.strerror(-ret)
                raise UnavailableError(f"io_uring unavailable: register eventfd: {reason}")
        except BaseException:
            self.close()
            raise

    def _map(self, size: int, offset: int) -> int:
        m = mmap.mmap(
            self.ring_fd,
            size,
            flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
            prot=mmap.PROT_READ | mmap.PROT_WRITE,
            offset=offset,
        )
        self._maps.append(m)
        anchor = BufferAddress(m)
        self._anchors.append(anchor)
        return anchor.address

    def _map_rings(self, p: _Params) -> None:
        sq = self._map(p.sq_off.array + 4 * p.sq_entries, IORING_OFF_SQ_RING)
        cq = self._map(p.cq_off.cqes + ctypes.sizeof(Cqe) * p.cq_entries, IORING_OFF_CQ_RING)
        sqes = self._map(ctypes.sizeof(Sqe) * p.sq_entries, IORING_OFF_SQES)
        self._sq_tail = ctypes.c_uint32.from_address(sq + p.sq_off.tail)
        self._sq_flags = ctypes.c_uint32.from_address(sq + p.sq_off.flags)
        self._sq_mask = ctypes.c_uint32.from_address(sq + p.sq_off.ring_mask).value
        self._sq_entries = p.sq_entries
        array = (ctypes.c_uint32 * p.sq_entries).from_address(sq + p.sq_off.array)
        for i in range(p.sq_entries):
            array[i] = i
        self._sqes = (Sqe * p.sq_entries).from_address(sqes)
        self._cq_head = ctypes.c_uint32.from_address(cq + p.cq_off.head)
        self._cq_tail = ctypes.c_uint32.from_address(cq + p.cq_off.tail)
        self._cq_mask = ctypes.c_uint32.from_address(cq + p.cq_off.ring_mask).value
        self._cqes = (Cqe * p.cq_entries).from_address(cq + p.cq_off.cqes)
        self._iovecs = (_Iovec * p.sq_entries)()
        self._iov_base = ctypes.addressof(self._iovecs)
        self._tail = self._sq_tail.value
        self._submitted = 0  # written by the submitting thread only
        self._completed = 0  # written by the reaping thread only

    def _enter(self, to_submit: int, min_complete: int, flags: int) -> int:
        while True:
            self.submit_calls += 1
            ret = syscall(self._nr_enter, self.ring_fd, to_submit, min_complete, flags, None, 0)
            if ret not in (-errno.EINTR, -errno.EAGAIN):
                break
        if ret < 0:
            raise OSError(-ret, f"io_uring_enter: {os.strerror(-ret)}")
        return ret

    def submit(self, requests: Sequence[IoRequest]) -> None:
        n = len(requests)
        if n == 0:
            return
        if self._submitted - self._completed + n > self._sq_entries:
            raise RuntimeError(f"{n} requests exceed the free io_uring entries")
        tail = self._tail
        for r in requests:
            i = tail & self._sq_mask
            sqe = self._sqes[i]
            iov = self._iovecs[i]
            iov.base = r.addr
            iov.len = r.length
            sqe.opcode = IORING_OP_WRITEV if r.is_write else IORING_OP_READV
            sqe.flags = 0
            sqe.ioprio = 0
            sqe.fd = self.fd
            sqe.off = r.offset
            sqe.addr = self._iov_base + ctypes.sizeof(_Iovec) * i
            sqe.len = 1
            sqe.rw_flags = 0
            sqe.user_data = r.tag
            tail = (tail + 1) & 0xFFFFFFFF
        self._tail = tail
        self._sq_tail.value = tail  # x86 TSO: SQE stores are visible before the tail store
        self._submitted += n
        if not self.sqpoll:
            self._enter(n, 0, 0)
            return
        # The tail store must be visible before the flags are read (liburing's io_uring_smp_mb
        # in sq_ring_needs_enter): a lock's atomic exchange is a full barrier on x86.
        with self._barrier:
            pass
        if self._sq_flags.value & IORING_SQ_NEED_WAKEUP:
            self.wakeups += 1
            self._enter(0, 0, IORING_ENTER_SQ_WAKEUP)

    def reap(self) -> list[Completion]:
        out = self._take_failed()
        self.reap_calls += 1
        head = self._cq_head.value
        tail = self._cq_tail.value
        while head != tail:
            cqe = self._cqes[head & self._cq_mask]
            if cqe.user_data != _NOP_TAG:
                out.append(Completion(cqe.user_data, cqe.res))
            self._completed += 1
            head = (head + 1) & 0xFFFFFFFF
        self._cq_head.value = head
        return out

    def pending(self) -> bool:
        return bool(self._failed) or self._cq_head.value != self._cq_tail.value

    def posted(self) -> int:
        """Completions on the CQ ring not yet reaped."""
        return (self._cq_tail.value - self._cq_head.value) & 0xFFFFFFFF

    def nop_roundtrip(self) -> None:
        """Submit one NOP and wait for it in the same io_uring_enter (microbenchmarks only)."""
        i = self._tail & self._sq_mask
        sqe = self._sqes[i]
        ctypes.memset(ctypes.addressof(sqe), 0, ctypes.sizeof(Sqe))
        sqe.opcode = IORING_OP_NOP
        sqe.user_data = _NOP_TAG
        self._tail = (self._tail + 1) & 0xFFFFFFFF
        self._sq_tail.value = self._tail
        self._submitted += 1
        self._enter(1, 1, IORING_ENTER_GETEVENTS)
        self.reap()

    def _release(self) -> None:
        for anchor in self._anchors:
            anchor.release()
        for attr in ("_sq_tail", "_sq_flags", "_sqes", "_cq_head", "_cq_tail", "_cqes"):
            self.__dict__.pop(attr, None)
        for m in self._maps:
            with contextlib.suppress(BufferError):
                m.close()
        os.close(self.ring_fd)
