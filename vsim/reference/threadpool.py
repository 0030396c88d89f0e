"""The "threads" engine: worker threads doing os.preadv/os.pwritev, eventfd completions."""

from __future__ import annotations

import ctypes
import os
import queue
import threading
from collections import deque
from collections.abc import Sequence

from vsim.reference.engine import Completion, IoEngine, IoRequest

__all__ = [
    "ThreadPoolEngine",
]

_STOP = IoRequest(-1, False, 0, 0, 0)


class ThreadPoolEngine(IoEngine):
    """Synchronous preadv/pwritev in ``depth`` worker threads (like QEMU aio=threads)."""

    name = "threads"

    def __init__(self, fd: int, depth: int) -> None:
        super().__init__(fd, depth)
        self._queue: queue.SimpleQueue[IoRequest] = queue.SimpleQueue()
        self._done: deque[Completion] = deque()
        self._workers = [
            threading.Thread(target=self._work, name=f"io-worker-{i}", daemon=True)
            for i in range(depth)
        ]
        for w in self._workers:
            w.start()

    def _work(self) -> None:
        get, done, efd, fd = self._queue.get, self._done, self.completion_fd, self.fd
        while True:
            r = get()
            if r.tag < 0:
                return
            buf = (ctypes.c_char * r.length).from_address(r.addr)
            try:
                if r.is_write:
                    n = os.pwritev(fd, [buf], r.offset)
                else:
                    n = os.preadv(fd, [buf], r.offset)
            except OSError as e:
                n = -(e.errno or 5)
            done.append(Completion(r.tag, n))
            os.eventfd_write(efd, 1)

    def submit(self, requests: Sequence[IoRequest]) -> None:
        self.submit_calls += 1
        for r in requests:
            self._queue.put(r)

    def reap(self) -> list[Completion]:
        self.reap_calls += 1
        out = self._take_failed()
        pop = self._done.popleft
        while self._done:
            out.append(pop())
        return out

    def pending(self) -> bool:
        return bool(self._done) or bool(self._failed)

    def _release(self) -> None:
        for _ in self._workers:
            self._queue.put(_STOP)
        for w in self._workers:
            w.join()
