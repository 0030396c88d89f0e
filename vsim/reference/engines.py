"""The I/O engines by name: Linux native AIO, io_uring and a thread pool (one factory)."""

from __future__ import annotations

from vsim.errors import ConfigError
from vsim.reference.aio import AioEngine
from vsim.reference.engine import IoEngine
from vsim.reference.threadpool import ThreadPoolEngine
from vsim.reference.uring import UringEngine

__all__ = ["ALIASES", "ENGINES", "engine_name", "open_engine"]

ENGINES = ("native", "io_uring", "threads")
# fio's and the kernel's names for the same engines
ALIASES = {"libaio": "native", "aio": "native", "uring": "io_uring", "psync": "threads"}
_CLASSES: dict[str, type[IoEngine]] = {
    "native": AioEngine,
    "io_uring": UringEngine,
    "threads": ThreadPoolEngine,
}


def engine_name(name: str) -> str:
    """The engine's canonical name (an alias resolved), or ConfigError."""
    canonical = ALIASES.get(name, name)
    if canonical not in _CLASSES:
        raise ConfigError(f"unknown engine {name!r} (choose from {', '.join(ENGINES)})")
    return canonical


def open_engine(
    name: str, fd: int, depth: int, sqpoll: bool = False, sq_cpu: int | None = None
) -> IoEngine:
    """An engine by name ("native" Linux AIO, "io_uring", "threads"); UnavailableError if absent.

    sqpoll: io_uring with a kernel SQ thread, pinned to sq_cpu if given (ConfigError for
    another engine)."""
    canonical = engine_name(name)
    if sqpoll:
        if canonical != "io_uring":
            raise ConfigError(f"sqpoll needs the io_uring engine, not {canonical}")
        return UringEngine(fd, depth, sqpoll=True, sq_cpu=sq_cpu)
    return _CLASSES[canonical](fd, depth)
