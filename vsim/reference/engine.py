"""The I/O engine interface: submit a batch, reap completions, signal them on an eventfd."""

from __future__ import annotations

import abc
import os
from collections import deque
from collections.abc import Sequence
from typing import ClassVar, NamedTuple, Self

from vsim.errors import ConfigError
from vsim.reference.linux import new_eventfd

__all__ = [
    "Completion",
    "IoEngine",
    "IoRequest",
]


class IoRequest(NamedTuple):
    """One host I/O: an opaque tag, direction, buffer address and length, file offset."""

    tag: int
    is_write: bool
    addr: int
    length: int
    offset: int


class Completion(NamedTuple):
    """A finished host I/O: its tag and result (bytes transferred, or -errno)."""

    tag: int
    result: int


class IoEngine(abc.ABC):
    """Asynchronous I/O on one file descriptor, signalling completions on ``completion_fd``.

    ``completion_fd`` is a non-blocking eventfd that becomes readable when completions are
    ready; the caller drains it (``linux.eventfd_drain``) and then calls ``reap``.
    """

    name: ClassVar[str]

    def __init__(self, fd: int, depth: int) -> None:
        if depth < 1:
            raise ConfigError(f"engine depth must be >= 1, got {depth}")
        self.fd = fd
        self.depth = depth
        self.completion_fd = new_eventfd()
        self.submit_calls = 0
        self.reap_calls = 0
        self._failed: deque[Completion] = deque()  # rejected at submission time
        self._closed = False

    @abc.abstractmethod
    def submit(self, requests: Sequence[IoRequest]) -> None:
        """Start all ``requests`` (one system call when the engine allows)."""

    @abc.abstractmethod
    def reap(self) -> list[Completion]:
        """All completions available now, without blocking."""

    @abc.abstractmethod
    def pending(self) -> bool:
        """True if ``reap`` would return something (a cheap check for busy polling)."""

    def fail(self, tag: int, errno_: int) -> None:
        """Complete ``tag`` with ``-errno`` without doing I/O (a request refused before or at
        submission); it comes back through ``reap`` like any completion."""
        self._failed.append(Completion(tag, -errno_))
        os.eventfd_write(self.completion_fd, 1)

    def _take_failed(self) -> list[Completion]:
        out: list[Completion] = []
        while self._failed:  # popleft is atomic: safe against a concurrent submitter
            out.append(self._failed.popleft())
        return out

    def close(self) -> None:
        """Release kernel resources (idempotent)."""
        if not self._closed:
            self._closed = True
            self._release()
            os.close(self.completion_fd)

    @abc.abstractmethod
    def _release(self) -> None:
        """Engine-specific teardown."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
