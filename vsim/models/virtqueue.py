"""A split virtqueue with VIRTIO_RING_F_EVENT_IDX notification and interrupt suppression."""

from __future__ import annotations

from collections import deque
from typing import Any

from vsim.models.monitor import Level

__all__ = [
    "U16",
    "Virtqueue",
    "need_event",
]

U16 = 0x10000


def need_event(event_idx: int, new_idx: int, old_idx: int) -> bool:
    """The virtio spec's vring_need_event: did [old, new) pass event_idx? (16-bit arithmetic)."""
    return (new_idx - event_idx - 1) % U16 < (new_idx - old_idx) % U16


class Virtqueue:
    """Descriptors, available and used rings of one split virtqueue, with event-index suppression.

    Only indices and request objects are modelled: each request takes `descs_per_request`
    descriptors (1 with indirect descriptors) until the driver reclaims it from the used ring.
    The device writes `avail_event` when it re-enables kicks; the driver kicks only when its new
    entries pass it. The driver writes `used_event` when it re-enables interrupts; the device
    signals only when its new used entries pass it.
    """

    def __init__(
        self,
        size: int,
        descs_per_request: int = 1,
        levels: tuple[Level, Level] | None = None,
        env: Any = None,
    ) -> None:
        if size < 1 or size & (size - 1):
            raise ValueError(f"virtqueue size must be a power of 2, got {size}")
        # Time-weighted occupancy of the available and used rings, and their clock (env.now).
        self._avail_level: Level | None = levels[0] if levels else None
        self._used_level: Level | None = levels[1] if levels else None
        self._env = env
        self.size = size
        self.descs_per_request = descs_per_request
        self.free = size
        self.avail: deque[Any] = deque()
        self.used: deque[Any] = deque()
        self.avail_idx = 0  # driver: entries made available so far
        self.kicked_idx = 0  # driver: avail_idx at the last kick decision
        self.avail_event = 0  # device: written when it re-enables notifications
        self.used_idx = 0  # device: entries pushed to the used ring so far
        self.signalled_idx = 0  # device: used_idx at the last signal decision
        self.used_event = 0  # driver: written when it re-enables interrupts
        self.kicks = 0
        self.kicks_suppressed = 0
        self.signals = 0
        self.signals_suppressed = 0

    # -- driver side -------------------------------------------------------------------------
    def can_add(self) -> bool:
        """True when a request's descriptors fit in the free descriptor table."""
        return self.free >= self.descs_per_request

    def add(self, req: Any) -> None:
        """Place a request on the available ring."""
        if not self.can_add():
            raise RuntimeError("virtqueue full")
        self.free -= self.descs_per_request
        self.avail.append(req)
        self.avail_idx = (self.avail_idx + 1) % U16
        if self._avail_level is not None:
            self._avail_level.add(1, self._env.now)

    def kick_prepare(self) -> bool:
        """After adding: must the driver notify the device? (virtqueue_kick_prepare)."""
        old, self.kicked_idx = self.kicked_idx, self.avail_idx
        if need_event(self.avail_event, self.avail_idx, old):
            self.kicks += 1
            return True
        self.kicks_suppressed += 1
        return False

    def get_used(self) -> Any:
        """Take one entry from the used ring (None when empty) and free its descriptors."""
        if not self.used:
            return None
        self.free += self.descs_per_request
        if self._used_level is not None:
            self._used_level.add(-1, self._env.now)
        return self.used.popleft()

    def enable_cb(self) -> bool:
        """Re-enable interrupts (used_event = what was consumed); False if entries are pending."""
        self.used_event = (self.used_idx - len(self.used)) % U16
        return not self.used

    # -- device side -------------------------------------------------------------------------
    def pop(self) -> Any:
        """Take one request from the available ring (None when empty)."""
        if not self.avail:
            return None
        if self._avail_level is not None:
            self._avail_level.add(-1, self._env.now)
        return self.avail.popleft()

    def enable_notify(self) -> bool:
        """Re-enable kicks (avail_event = avail_idx); False if requests are pending."""
        self.avail_event = self.avail_idx
        return not self.avail

    def push(self, req: Any) -> None:
        """Place a completed request on the used ring."""
        self.used.append(req)
        self.used_idx = (self.used_idx + 1) % U16
        if self._used_level is not None:
            self._used_level.add(1, self._env.now)

    def should_signal(self) -> bool:
        """After pushing: must the device interrupt the driver? (virtio_should_notify)."""
        old, self.signalled_idx = self.signalled_idx, self.used_idx
        if need_event(self.used_event, self.used_idx, old):
            self.signals += 1
            return True
        self.signals_suppressed += 1
        return False
