"""Thin Linux bindings: raw syscalls, eventfds, CPU placement, file-system type, memory barrier."""

from __future__ import annotations

import ctypes
import os
import platform
import threading
from typing import Any

from vsim.errors import ConfigError, UnavailableError

__all__ = [
    "RAMFS_MAGIC",
    "TMPFS_MAGIC",
    "BufferAddress",
    "check_cpu",
    "current_cpu",
    "eventfd_drain",
    "filesystem_type",
    "libc",
    "memory_barrier",
    "memory_filesystem",
    "new_eventfd",
    "pin_thread",
    "syscall",
    "syscall_number",
]

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.sched_getcpu.restype = ctypes.c_int
libc.sched_getcpu.argtypes = []

# Syscall numbers of the calls vsim needs, per machine (asm-generic numbers for arm64/riscv).
_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "io_setup": 206,
        "io_destroy": 207,
        "io_getevents": 208,
        "io_submit": 209,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
    },
    "aarch64": {
        "io_setup": 0,
        "io_destroy": 1,
        "io_submit": 2,
        "io_getevents": 4,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
    },
}
_SYSCALLS["riscv64"] = _SYSCALLS["aarch64"]

TMPFS_MAGIC = 0x01021994
RAMFS_MAGIC = 0x858458F6
_MEMORY_FILESYSTEMS = {TMPFS_MAGIC: "tmpfs", RAMFS_MAGIC: "ramfs"}

_barrier = threading.Lock()


def syscall_number(name: str) -> int:
    """The number of syscall ``name`` on this machine, or UnavailableError."""
    machine = platform.machine()
    try:
        return _SYSCALLS[machine][name]
    except KeyError:
        raise UnavailableError(f"{name}: syscall numbers unknown for machine {machine}") from None


def syscall(nr: int, *args: Any) -> int:
    """Call syscall ``nr``; return its result, or ``-errno`` on failure (kernel convention)."""
    ret = int(libc.syscall(ctypes.c_long(nr), *args))
    if ret == -1:
        return -ctypes.get_errno()
    return ret


def memory_barrier() -> None:
    """A full memory barrier (an uncontended lock: a locked instruction on x86)."""
    _barrier.acquire()
    _barrier.release()


def current_cpu() -> int:
    """The CPU the calling thread runs on (sched_getcpu, a vDSO call)."""
    return int(libc.sched_getcpu())


def pin_thread(cpu: int | None) -> None:
    """Pin the calling thread (not the whole process) to ``cpu``; None leaves it free."""
    if cpu is None:
        return
    allowed = os.sched_getaffinity(0)
    if cpu not in allowed:
        raise ConfigError(f"cpu {cpu} is not available (allowed: {sorted(allowed)})")
    os.sched_setaffinity(0, {cpu})


def check_cpu(cpu: int | None) -> None:
    """Raise ConfigError unless ``cpu`` is None or a CPU this process may run on."""
    allowed = os.sched_getaffinity(0)
    if cpu is not None and cpu not in allowed:
        raise ConfigError(f"cpu {cpu} is not available (allowed: {sorted(allowed)})")


def filesystem_type(path: str) -> int:
    """The statfs f_type magic number of the file system holding ``path``."""
    buf = ctypes.create_string_buffer(256)
    if libc.statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    # f_type is the first field of struct statfs (a long) on every Linux ABI.
    return int(ctypes.c_long.from_buffer(buf).value) & 0xFFFFFFFF


def memory_filesystem(path: str) -> str | None:
    """ "tmpfs"/"ramfs" if ``path`` lives in memory (no real direct I/O there), else None."""
    return _MEMORY_FILESYSTEMS.get(filesystem_type(path))


def new_eventfd(*, nonblocking: bool = True) -> int:
    """A fresh eventfd (close-on-exec; non-blocking unless asked)."""
    flags = os.EFD_CLOEXEC | (os.EFD_NONBLOCK if nonblocking else 0)
    return os.eventfd(0, flags)


def eventfd_drain(fd: int) -> int:
    """Read and reset a non-blocking eventfd's counter; 0 if it was not signalled."""
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


class BufferAddress:
    """The address of a writable buffer (e.g. an mmap), holding the export until ``release``."""

    def __init__(self, buffer: Any) -> None:
        self._anchor: ctypes.c_char | None = ctypes.c_char.from_buffer(buffer)
        self.address = ctypes.addressof(self._anchor)

    def release(self) -> None:
        """Drop the export so the buffer can be closed."""
        self._anchor = None
