"""Child processes that die with their parent: sweep workers, the reference guest, fio."""

from __future__ import annotations

import ctypes
import os
import signal

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
    parent stops its children, so they print no traceback of their own)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
