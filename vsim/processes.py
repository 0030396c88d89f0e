"""Child processes that die with their parent: sweep workers, the reference guest, fio."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Iterator

__all__ = [
    "Terminated",
    "child_init",
    "die_with_parent",
    "pid_alive",
    "sigterm_raises",
]

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL the calling process when its parent dies (prctl PDEATHSIG);
    exit at once if the parent is already gone (it died before the request took effect).

    The kernel sends the signal when the parent *thread* that forked this process ends: fork
    children from a thread that lives as long as they should (vsim forks from the main thread).
    """
    parent = os.getppid()
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def child_init() -> None:
    """Set up a Python child process: it dies with its parent and leaves Ctrl-C to it (the
    parent stops its children, so they print no traceback of their own); SIGTERM ends it at
    once, whatever handler the parent had."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()


def pid_alive(pid: int) -> bool:
    """True while process `pid` exists (it may belong to someone else)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so that its cleanup runs as for Ctrl-C."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block (in the main thread), SIGTERM raises Terminated instead of ending the
    process on the spot: scratch files, children and half-made outputs are cleaned up."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
