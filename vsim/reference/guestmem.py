"""Guest memory: one shared anonymous mapping holding the virtqueue, request headers and data."""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

import numpy as np

from vsim.reference.ring import RingLayout

__all__ = [
    "CTL_ABORT",
    "CTL_COMPLETED",
    "CTL_GO",
    "CTL_WORDS",
    "OUTHDR",
    "PAGE",
    "SECTOR",
    "VIRTIO_BLK_S_IOERR",
    "VIRTIO_BLK_S_OK",
    "VIRTIO_BLK_S_UNSUPP",
    "VIRTIO_BLK_T_IN",
    "VIRTIO_BLK_T_OUT",
    "GuestMemory",
    "MemoryLayout",
    "queue_size_for",
]

PAGE = mmap.PAGESIZE
VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_S_OK = 0
VIRTIO_BLK_S_IOERR = 1
VIRTIO_BLK_S_UNSUPP = 2
OUTHDR = struct.Struct("<IIQ")  # struct virtio_blk_outhdr: type, reserved (ioprio), sector
SECTOR = 512
_HDR_STRIDE = 32  # outhdr (16 B) then the status byte, per slot

# Control words shared by guest and backend (u64 each), outside the virtio layout.
CTL_COMPLETED = 0  # I/Os the guest has reaped (watchdog progress)
CTL_ABORT = 1  # set by the runner: stop issuing and exit
CTL_GO = 2  # set by the runner when the backend is ready
CTL_WORDS = 8


def _round_up(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def queue_size_for(iodepth: int) -> int:
    """The smallest power-of-two queue (at least 128, like Linux) holding iodepth 3-desc chains."""
    num = 128
    while num < 3 * iodepth:
        num *= 2
    return num


@dataclass(frozen=True)
class MemoryLayout:
    """Offsets of everything in guest memory, in bytes from its start (= guest physical 0)."""

    num: int
    slots: int
    bs: int

    @property
    def ring(self) -> RingLayout:
        """The split virtqueue, at guest physical address 0."""
        return RingLayout(self.num)

    @property
    def tags(self) -> int:
        """A u64 per descriptor id: the guest's I/O number of the chain it heads (tracing only)."""
        return _round_up(self.ring.size, 64)

    @property
    def control(self) -> int:
        """CTL_WORDS u64 control words."""
        return self.tags + 8 * self.num

    @property
    def headers(self) -> int:
        """Per slot: virtio_blk_outhdr (16 B) then the status byte."""
        return _round_up(self.control + 8 * CTL_WORDS, 64)

    @property
    def data(self) -> int:
        """Per slot: a page-aligned data buffer of ``bs`` bytes."""
        return _round_up(self.headers + _HDR_STRIDE * self.slots, PAGE)

    @property
    def data_stride(self) -> int:
        """Distance between two slots' data buffers (bs rounded up to a page)."""
        return _round_up(self.bs, PAGE)

    @property
    def size(self) -> int:
        """Total bytes of guest memory."""
        return self.data + self.slots * self.data_stride

    def header_addr(self, slot: int) -> int:
        """Guest physical address of slot's virtio_blk_outhdr."""
        return self.headers + _HDR_STRIDE * slot

    def status_addr(self, slot: int) -> int:
        """Guest physical address of slot's status byte."""
        return self.headers + _HDR_STRIDE * slot + OUTHDR.size

    def data_addr(self, slot: int) -> int:
        """Guest physical address of slot's data buffer."""
        return self.data + self.data_stride * slot


class GuestMemory:
    """A MAP_SHARED anonymous mapping (inherited across fork): no name, nothing left on exit."""

    def __init__(self, layout: MemoryLayout) -> None:
        self.layout = layout
        self.mm = mmap.mmap(-1, layout.size, flags=mmap.MAP_SHARED)
        layout.ring.clear(self.mm)
        self.tags = np.frombuffer(self.mm, dtype=np.uint64, count=layout.num, offset=layout.tags)
        self.control = np.frombuffer(
            self.mm, dtype=np.uint64, count=CTL_WORDS, offset=layout.control
        )

    def data(self, slot: int) -> memoryview:
        """A view of slot's data buffer (length bs)."""
        start = self.layout.data_addr(slot)
        return memoryview(self.mm)[start : start + self.layout.bs]

    def close(self) -> None:
        """Unmap (drops the numpy views first)."""
        del self.tags, self.control
        self.mm.close()
