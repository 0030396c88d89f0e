"""Linux native AIO by raw syscalls (io_setup, io_submit, io_getevents), eventfd completions."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence

from vsim.errors import UnavailableError
from vsim.reference.engine import Completion, IoEngine, IoRequest
from vsim.reference.linux import syscall, syscall_number

__all__ = [
    "IOCB_CMD_NOOP",
    "IOCB_CMD_PREAD",
    "IOCB_CMD_PWRITE",
    "IOCB_FLAG_RESFD",
    "AioEngine",
    "IoEvent",
    "Iocb",
]

IOCB_CMD_PREAD = 0
IOCB_CMD_PWRITE = 1
IOCB_CMD_NOOP = 6
IOCB_FLAG_RESFD = 1
_AIO_RING_MAGIC = 0xA10A10A1


class Iocb(ctypes.Structure):
    """struct iocb (little-endian layout)."""

    _fields_ = [
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class IoEvent(ctypes.Structure):
    """struct io_event."""

    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class AioEngine(IoEngine):
    """Linux AIO: one io_submit per batch, completions posted to an eventfd (IOCB_FLAG_RESFD)."""

    name = "native"

    def __init__(self, fd: int, depth: int) -> None:
        super().__init__(fd, depth)
        self._nr_setup = syscall_number("io_setup")
        self._nr_destroy = syscall_number("io_destroy")
        self._nr_submit = syscall_number("io_submit")
        self._nr_getevents = syscall_number("io_getevents")
        self._ctx = ctypes.c_ulong(0)
        ret = syscall(self._nr_setup, ctypes.c_uint(depth), ctypes.byref(self._ctx))
        if ret < 0:
            os.close(self.completion_fd)
            self._closed = True
            hint = " (raise fs.aio-max-nr?)" if -ret == errno.EAGAIN else ""
            raise UnavailableError(f"Linux AIO unavailable: io_setup: {os.strerror(-ret)}{hint}")
        self._iocbs = (Iocb * depth)()
        self._ptrs = (ctypes.c_void_p * depth)()
        self._events = (IoEvent * depth)()
        self._base = ctypes.addressof(self._iocbs)
        self._free = list(range(depth - 1, -1, -1))
        self._zero = _Timespec(0, 0)
        # The kernel's completion ring is mapped at the context address: peek head/tail to poll.
        ring = self._ctx.value
        self._ring_head = ctypes.c_uint32.from_address(ring + 8)
        self._ring_tail = ctypes.c_uint32.from_address(ring + 12)
        self._peekable = ctypes.c_uint32.from_address(ring + 16).value == _AIO_RING_MAGIC
        for i in range(depth):
            iocb = self._iocbs[i]
            iocb.aio_fildes = fd
            iocb.aio_flags = IOCB_FLAG_RESFD
            iocb.aio_resfd = self.completion_fd

    def submit(self, requests: Sequence[IoRequest]) -> None:
        n = len(requests)
        if n == 0:
            return
        if n > len(self._free):
            raise RuntimeError(f"{n} requests exceed the free AIO slots ({len(self._free)})")
        iocbs, ptrs, size = self._iocbs, self._ptrs, ctypes.sizeof(Iocb)
        slots = []
        for k, r in enumerate(requests):
            i = self._free.pop()
            slots.append(i)
            iocb = iocbs[i]
            iocb.aio_data = r.tag
            iocb.aio_lio_opcode = IOCB_CMD_PWRITE if r.is_write else IOCB_CMD_PREAD
            iocb.aio_buf = r.addr
            iocb.aio_nbytes = r.length
            iocb.aio_offset = r.offset
            ptrs[k] = self._base + size * i
        done = 0
        while done < n:
            self.submit_calls += 1
            ret = syscall(
                self._nr_submit,
                self._ctx,
                ctypes.c_long(n - done),
                ctypes.byref(ptrs, ctypes.sizeof(ctypes.c_void_p) * done),
            )
            if ret in (-errno.EINTR, -errno.EAGAIN):
                continue
            if ret < 0:  # the first remaining iocb was refused: complete it with the error
                self._free.append(slots[done])
                self.fail(requests[done].tag, -ret)
                done += 1
            else:
                done += ret

    def reap(self) -> list[Completion]:
        out = self._take_failed()
        while True:
            self.reap_calls += 1
            ret = syscall(
                self._nr_getevents,
                self._ctx,
                ctypes.c_long(0),
                ctypes.c_long(self.depth),
                self._events,
                ctypes.byref(self._zero),
            )
            if ret == -errno.EINTR:
                continue
            if ret < 0:
                raise OSError(-ret, f"io_getevents: {os.strerror(-ret)}")
            break
        size, base = ctypes.sizeof(Iocb), self._base
        for k in range(ret):
            ev = self._events[k]
            self._free.append((ev.obj - base) // size)
            out.append(Completion(ev.data, ev.res))
        return out

    def pending(self) -> bool:
        if self._failed:
            return True
        if not self._peekable:
            return True
        return self._ring_head.value != self._ring_tail.value

    def wait(self, min_nr: int = 1) -> list[Completion]:
        """Block in io_getevents until ``min_nr`` completions (microbenchmarks only)."""
        self.reap_calls += 1
        ret = syscall(
            self._nr_getevents,
            self._ctx,
            ctypes.c_long(min_nr),
            ctypes.c_long(self.depth),
            self._events,
            None,
        )
        if ret < 0:
            raise OSError(-ret, f"io_getevents: {os.strerror(-ret)}")
        size, base = ctypes.sizeof(Iocb), self._base
        out = []
        for k in range(ret):
            ev = self._events[k]
            self._free.append((ev.obj - base) // size)
            out.append(Completion(ev.data, ev.res))
        return out

    def _release(self) -> None:
        syscall(self._nr_destroy, self._ctx)
