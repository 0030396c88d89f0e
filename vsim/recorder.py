"""Per-I/O records kept as compact numpy columns, and the run's stopping condition."""

from __future__ import annotations

from itertools import chain
from operator import attrgetter

import numpy as np
import simpy

from vsim.models.guest import IO

__all__ = [
    "BYTES_PER_IO",
    "CHUNK",
    "Recorder",
]

CHUNK = 1 << 16  # I/O objects buffered before they are packed into columns
# The columns' bytes per recorded I/O: write (1), slat_ns and clat_ns (8 + 8), six float32
# stage offsets (24), t_done (8), the fio job (2).
BYTES_PER_IO = 1 + 8 + 8 + 6 * 4 + 8 + 2
_ROW = attrgetter("t_start", "t_issue", "t_pop", "t_sub", "t_dd", "t_push", "t_done", "write")


class Recorder:
    """Collects the I/Os completed in the measured window; memory is BYTES_PER_IO per I/O.

    Columns: write (bool), slat_ns and clat_ns (int64), stage offsets (float32 us since the I/O's
    start at issue, pop, sub, dd, push, done), t_done (float64 us, for batch means) and job
    (uint16: the fio job's index; MAX_JOBS fits).
    """

    def __init__(self, env: simpy.Environment, warm_end: float, capacity: int) -> None:
        self.env = env
        self.warm_end = warm_end
        self.target: int | None = None
        self.stop = env.event()
        self._pending: list[IO] = []
        self.n = 0
        self._left = CHUNK  # records until the next flush or stop check
        self._alloc(max(capacity, 1024))

    def _alloc(self, cap: int) -> None:
        self.write = np.zeros(cap, dtype=bool)
        self.slat_ns = np.zeros(cap, dtype=np.int64)
        self.clat_ns = np.zeros(cap, dtype=np.int64)
        self.stages = np.zeros((cap, 6), dtype=np.float32)
        self.t_done = np.zeros(cap, dtype=np.float64)
        self.job = np.zeros(cap, dtype=np.uint16)

    @property
    def count(self) -> int:
        """I/Os recorded so far."""
        return self.n + len(self._pending)

    def record(self, io: IO) -> None:
        """Called by the guest when fio reaps an I/O."""
        if io.t_done < self.warm_end:
            return
        self._pending.append(io)
        self._left -= 1
        if self._left <= 0:
            self._check()

    def _check(self) -> None:
        if len(self._pending) >= CHUNK:
            self.flush()
        if self.target is not None and self.count >= self.target and not self.stop.triggered:
            self.stop.succeed()
        self._arm()

    def _arm(self) -> None:
        left = CHUNK - len(self._pending)
        if self.target is not None and not self.stop.triggered:
            left = min(left, self.target - self.count)
        self._left = max(left, 1)

    def flush(self) -> None:
        """Pack buffered I/Os into the columns."""
        ios = self._pending
        if not ios:
            return
        k = len(ios)
        need = self.n + k
        if need > len(self.write):
            cap = max(need, 2 * len(self.write))
            for name in ("write", "slat_ns", "clat_ns", "stages", "t_done", "job"):
                old = getattr(self, name)
                new = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
                new[: self.n] = old[: self.n]
                setattr(self, name, new)
        flat = np.fromiter(chain.from_iterable(map(_ROW, ios)), dtype=np.float64, count=8 * k)
        tab = flat.reshape(k, 8)
        sl = slice(self.n, need)
        start = tab[:, 0]
        self.write[sl] = tab[:, 7] != 0
        self.slat_ns[sl] = np.rint((tab[:, 1] - start) * 1000)
        self.clat_ns[sl] = np.rint((tab[:, 6] - tab[:, 1]) * 1000)
        self.stages[sl] = tab[:, 1:7] - start[:, None]
        self.t_done[sl] = tab[:, 6]
        self.job[sl] = np.fromiter((io.job.index for io in ios), dtype=np.uint16, count=k)
        self.n = need
        self._pending = []
        self._arm()

    def clear(self) -> None:
        """Forget everything recorded (the end of a detected warm-up)."""
        self._pending = []
        self.n = 0
        self._arm()

    def rearm(self, target: int) -> None:
        """Stop again when `target` I/Os are recorded."""
        self.target = target
        if self.stop.triggered:
            self.stop = self.env.event()
        if self.count >= target:
            self.stop.succeed()
        self._arm()

    def finish(self) -> None:
        """Stop now (runtime reached)."""
        if not self.stop.triggered:
            self.stop.succeed()
        self._arm()

    def columns(self, start: int = 0) -> dict[str, np.ndarray]:
        """Views of the recorded columns from record `start` on (no copy: a 10-million-I/O run
        must not hold its records twice). Later records never overwrite them; `clear` does."""
        self.flush()
        sl = slice(start, self.n)
        return {
            "write": self.write[sl],
            "slat_ns": self.slat_ns[sl],
            "clat_ns": self.clat_ns[sl],
            "stages": self.stages[sl],
            "t_done": self.t_done[sl],
            "job": self.job[sl],
        }
