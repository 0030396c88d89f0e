"""The virtio 1.x split virtqueue laid out in a shared buffer, with its driver and device sides."""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar, cast

from vsim.reference.linux import BufferAddress, memory_barrier

__all__ = [
    "MAX_QUEUE_SIZE",
    "VIRTQ_AVAIL_F_NO_INTERRUPT",
    "VIRTQ_DESC_F_NEXT",
    "VIRTQ_DESC_F_WRITE",
    "VIRTQ_USED_F_NO_NOTIFY",
    "Buffer",
    "Chain",
    "Descriptor",
    "Device",
    "Driver",
    "RingError",
    "RingFull",
    "RingLayout",
    "T",
    "vring_need_event",
]

VIRTQ_DESC_F_NEXT = 1
VIRTQ_DESC_F_WRITE = 2
VIRTQ_AVAIL_F_NO_INTERRUPT = 1
VIRTQ_USED_F_NO_NOTIFY = 1
MAX_QUEUE_SIZE = 32768

_DESC = struct.Struct("<QIHH")  # addr, len, flags, next
_U16 = struct.Struct("<H")
_ELEM = struct.Struct("<II")  # used element: id, len

T = TypeVar("T")


class RingError(Exception):
    """The other side broke the virtqueue protocol (bad head, loop, too many entries)."""


class RingFull(Exception):
    """The driver has not enough free descriptors for the chain it wants to add."""


def vring_need_event(event_idx: int, new_idx: int, old_idx: int) -> bool:
    """True if moving an index from ``old_idx`` to ``new_idx`` passes ``event_idx`` (the spec's)."""
    return ((new_idx - event_idx - 1) & 0xFFFF) < ((new_idx - old_idx) & 0xFFFF)


class Buffer(NamedTuple):
    """One guest buffer of a request: guest-physical address, length, device-writable or not."""

    addr: int
    length: int
    writable: bool


class Descriptor(NamedTuple):
    """One descriptor as the device reads it."""

    addr: int
    length: int
    flags: int

    @property
    def writable(self) -> bool:
        """True if the device may write this buffer."""
        return bool(self.flags & VIRTQ_DESC_F_WRITE)


class Chain(NamedTuple):
    """A descriptor chain popped by the device: its head id and its descriptors in order."""

    head: int
    descriptors: tuple[Descriptor, ...]


@dataclass(frozen=True)
class RingLayout:
    """Where the three parts of a split virtqueue of ``num`` entries sit in the buffer."""

    num: int
    offset: int = 0
    align: int = 4096

    def __post_init__(self) -> None:
        if not 1 <= self.num <= MAX_QUEUE_SIZE or self.num & (self.num - 1):
            raise ValueError(f"queue size must be a power of 2 within 1..32768, got {self.num}")

    @property
    def desc(self) -> int:
        """Offset of the descriptor table (16 bytes per entry)."""
        return self.offset

    @property
    def avail(self) -> int:
        """Offset of the available ring: flags, idx, ring[num], used_event."""
        return self.offset + 16 * self.num

    @property
    def used(self) -> int:
        """Offset of the used ring (aligned): flags, idx, ring[num] of {id, len}, avail_event."""
        end = self.avail + 6 + 2 * self.num
        return self.offset + _round_up(end - self.offset, self.align)

    @property
    def size(self) -> int:
        """Bytes the whole ring occupies."""
        return self.used + 6 + 8 * self.num - self.offset

    def clear(self, buffer: Any, start_idx: int = 0) -> None:
        """Zero the ring and set both ring indices to ``start_idx`` (0 for a fresh virtqueue)."""
        memoryview(buffer).cast("B")[self.offset : self.offset + self.size] = bytes(self.size)
        _U16.pack_into(buffer, self.avail + 2, start_idx & 0xFFFF)
        _U16.pack_into(buffer, self.used + 2, start_idx & 0xFFFF)
        _U16.pack_into(buffer, self.avail + 4 + 2 * self.num, start_idx & 0xFFFF)
        _U16.pack_into(buffer, self.used + 4 + 8 * self.num, start_idx & 0xFFFF)


def _round_up(n: int, align: int) -> int:
    return (n + align - 1) // align * align


class _RingView:
    """Typed access to the shared fields of one split virtqueue.

    The indices and event fields are read and written as single aligned 16-bit loads and stores
    (ctypes), never with ``struct`` (which zeroes, then writes byte by byte: the other side could
    read a torn index). Descriptors and ring entries are written before the index that publishes
    them, so ``struct`` is fine for those.
    """

    def __init__(self, buffer: Any, layout: RingLayout, *, event_idx: bool, start_idx: int) -> None:
        self.buf = buffer
        self.layout = layout
        self.num = layout.num
        self.event_idx = event_idx
        self.start_idx = start_idx & 0xFFFF
        self._anchor = BufferAddress(buffer)
        base = self._anchor.address
        u16 = ctypes.c_uint16.from_address
        self._avail_flags = u16(base + layout.avail)
        self._avail_idx = u16(base + layout.avail + 2)
        self._avail_ring = layout.avail + 4
        self._used_event = u16(base + layout.avail + 4 + 2 * layout.num)
        self._used_flags = u16(base + layout.used)
        self._used_idx = u16(base + layout.used + 2)
        self._used_ring = layout.used + 4
        self._avail_event = u16(base + layout.used + 4 + 8 * layout.num)
        self._pack16: Callable[..., None] = _U16.pack_into
        self._unpack16: Callable[..., tuple[int]] = _U16.unpack_from

    def release(self) -> None:
        """Drop the hold on the buffer (call before closing it; the ring is unusable after)."""
        self._anchor.release()

    def read_avail_idx(self) -> int:
        """The driver's published available index."""
        return self._avail_idx.value

    def read_used_idx(self) -> int:
        """The device's published used index."""
        return self._used_idx.value

    def read_used_event(self) -> int:
        """used_event: the driver wants an interrupt once the used index passes it."""
        return self._used_event.value

    def read_avail_event(self) -> int:
        """avail_event: the device wants a kick once the available index passes it."""
        return self._avail_event.value


class Driver(_RingView, Generic[T]):
    """The guest side: adds descriptor chains, publishes them, kicks, reaps used entries."""

    def __init__(
        self, buffer: Any, layout: RingLayout, *, event_idx: bool = True, start_idx: int = 0
    ) -> None:
        super().__init__(buffer, layout, event_idx=event_idx, start_idx=start_idx)
        num = self.num
        self._next = [(i + 1) % num for i in range(num)]  # private shadow of desc.next
        self._chain_len = [0] * num
        self._tokens: list[T | None] = [None] * num
        self._free_head = 0
        self.num_free = num
        self._shadow_idx = self.start_idx  # avail idx including unpublished entries
        self._published_idx = self.start_idx
        self.last_used_idx = self.start_idx
        self._cb_enabled = True

    def add(self, buffers: Sequence[Buffer], token: T) -> int:
        """Place a chain (device-readable buffers first) in the available ring; return its head.

        The entry is visible to the device only after ``kick_prepare``.
        """
        n = len(buffers)
        if n == 0:
            raise ValueError("a request needs at least one buffer")
        if n > self.num_free:
            raise RingFull(f"{n} descriptors wanted, {self.num_free} free")
        seen_writable = False
        for b in buffers:
            if seen_writable and not b.writable:
                raise ValueError("device-readable buffers must precede device-writable ones")
            seen_writable = b.writable
        head = i = self._free_head
        pack = _DESC.pack_into
        base = self.layout.desc
        for k, b in enumerate(buffers):
            last = k == n - 1
            flags = (VIRTQ_DESC_F_WRITE if b.writable else 0) | (0 if last else VIRTQ_DESC_F_NEXT)
            nxt = self._next[i]
            pack(self.buf, base + 16 * i, b.addr, b.length, flags, nxt if not last else 0)
            if not last:
                i = nxt
        self._free_head = self._next[i]
        self.num_free -= n
        self._chain_len[head] = n
        self._tokens[head] = token
        self._pack16(self.buf, self._avail_ring + 2 * (self._shadow_idx % self.num), head)
        self._shadow_idx = (self._shadow_idx + 1) & 0xFFFF
        return head

    def kick_prepare(self) -> bool:
        """Publish the added entries; True if the device asked to be notified (kick needed)."""
        old, new = self._published_idx, self._shadow_idx
        self._avail_idx.value = new
        self._published_idx = new
        memory_barrier()  # publish idx before reading the device's suppression state
        if self.event_idx:
            return vring_need_event(self.read_avail_event(), new, old)
        if old == new:
            return False
        return not self._used_flags.value & VIRTQ_USED_F_NO_NOTIFY

    def has_used(self) -> bool:
        """True if the device has published used entries not yet reaped."""
        return self.read_used_idx() != self.last_used_idx

    def get_used(self) -> tuple[T, int] | None:
        """Reap one used entry: (token, bytes the device wrote), or None if there is none."""
        if self.read_used_idx() == self.last_used_idx:
            return None
        head, length = _ELEM.unpack_from(
            self.buf, self._used_ring + 8 * (self.last_used_idx % self.num)
        )
        n = self._chain_len[head] if head < self.num else 0
        if n == 0:
            raise RingError(f"device returned id {head}, which is not an outstanding head")
        token = self._tokens[head]
        self._tokens[head] = None
        self._chain_len[head] = 0
        tail = head
        for _ in range(n - 1):
            tail = self._next[tail]
        self._next[tail] = self._free_head
        self._free_head = head
        self.num_free += n
        self.last_used_idx = (self.last_used_idx + 1) & 0xFFFF
        if self.event_idx and self._cb_enabled:
            # Expecting an interrupt for the next entry: tell the device (Linux virtqueue_get_buf).
            self._used_event.value = self.last_used_idx
            memory_barrier()
        return cast(T, token), length

    def disable_cb(self) -> None:
        """Ask the device not to interrupt (event_idx: simply stop advancing used_event)."""
        self._cb_enabled = False
        if not self.event_idx:
            self._avail_flags.value = VIRTQ_AVAIL_F_NO_INTERRUPT

    def enable_cb(self) -> bool:
        """Ask for an interrupt on the next used entry; True if none is pending (safe to sleep)."""
        self._cb_enabled = True
        if self.event_idx:
            self._used_event.value = self.last_used_idx
        else:
            self._avail_flags.value = 0
        memory_barrier()  # expose used_event before re-reading the used index
        return self.read_used_idx() == self.last_used_idx


class Device(_RingView):
    """The host side: pops available chains, pushes used entries, decides kicks and interrupts.

    Popping (``pop_avail``, ``enable_notify``, ``disable_notify``) and completing (``push_used``,
    ``should_notify``) touch disjoint state, so one thread may do each.
    """

    def __init__(
        self, buffer: Any, layout: RingLayout, *, event_idx: bool = True, start_idx: int = 0
    ) -> None:
        super().__init__(buffer, layout, event_idx=event_idx, start_idx=start_idx)
        self.last_avail_idx = self.start_idx
        self.used_idx = self.start_idx
        self._signalled_used = self.start_idx
        self._signalled_valid = False

    def has_avail(self) -> bool:
        """True if the driver has published chains not yet popped (a polling check)."""
        return self.read_avail_idx() != self.last_avail_idx

    def pop_avail(self) -> Chain | None:
        """Take the next available chain, or None if the ring is empty."""
        avail = self.read_avail_idx()
        if avail == self.last_avail_idx:
            return None
        if (avail - self.last_avail_idx) & 0xFFFF > self.num:
            last = self.last_avail_idx
            raise RingError(f"avail idx jumped from {last} to {avail} (size {self.num})")
        head = self._unpack16(self.buf, self._avail_ring + 2 * (self.last_avail_idx % self.num))[0]
        self.last_avail_idx = (self.last_avail_idx + 1) & 0xFFFF
        descriptors: list[Descriptor] = []
        i = head
        unpack = _DESC.unpack_from
        base = self.layout.desc
        while True:
            if i >= self.num or len(descriptors) >= self.num:
                raise RingError(f"bad descriptor chain from head {head} (index {i})")
            addr, length, flags, nxt = unpack(self.buf, base + 16 * i)
            descriptors.append(Descriptor(addr, length, flags))
            if not flags & VIRTQ_DESC_F_NEXT:
                break
            i = nxt
        return Chain(head, tuple(descriptors))

    def disable_notify(self) -> None:
        """Suppress kicks (event_idx: move avail_event just behind the driver's reach)."""
        if self.event_idx:
            self._avail_event.value = (self.last_avail_idx - 1) & 0xFFFF
        else:
            self._used_flags.value = VIRTQ_USED_F_NO_NOTIFY

    def enable_notify(self) -> bool:
        """Ask for a kick on the next entry; True if none is pending (safe to sleep)."""
        if self.event_idx:
            self._avail_event.value = self.last_avail_idx
        else:
            self._used_flags.value = 0
        memory_barrier()  # expose avail_event before re-reading the available index
        return self.read_avail_idx() == self.last_avail_idx

    def push_used(self, entries: Sequence[tuple[int, int]]) -> None:
        """Write used elements (head, bytes written) and publish them with one index update."""
        idx = self.used_idx
        for head, length in entries:
            _ELEM.pack_into(self.buf, self._used_ring + 8 * (idx % self.num), head, length)
            idx = (idx + 1) & 0xFFFF
        self._used_idx.value = idx
        self.used_idx = idx

    def should_notify(self) -> bool:
        """True if the driver asked for an interrupt for the entries pushed since the last check."""
        memory_barrier()  # order the used index store before reading the driver's state
        if not self.event_idx:
            return not self._avail_flags.value & VIRTQ_AVAIL_F_NO_INTERRUPT
        old, valid = self._signalled_used, self._signalled_valid
        new = self._signalled_used = self.used_idx
        self._signalled_valid = True
        if not valid:
            return True
        return vring_need_event(self.read_used_event(), new, old)
