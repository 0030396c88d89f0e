"""The real reference backend: a guest process, a shared-memory virtqueue and both host designs."""

from __future__ import annotations

from vsim.reference.engine import Completion, IoEngine, IoRequest
from vsim.reference.engines import ENGINES, open_engine
from vsim.reference.microbench import BENCHMARKS, Distribution, MicrobenchResult, microbench
from vsim.reference.ring import (
    Buffer,
    Chain,
    Descriptor,
    Device,
    Driver,
    RingError,
    RingFull,
    RingLayout,
    vring_need_event,
)
from vsim.reference.runner import run
from vsim.reference.storage import DEFAULT_SCRATCH_SIZE
from vsim.reference.trace import STAGES, RunRecord

__all__ = [
    "BENCHMARKS",
    "DEFAULT_SCRATCH_SIZE",
    "ENGINES",
    "STAGES",
    "Buffer",
    "Chain",
    "Completion",
    "Descriptor",
    "Device",
    "Distribution",
    "Driver",
    "IoEngine",
    "IoRequest",
    "MicrobenchResult",
    "RingError",
    "RingFull",
    "RingLayout",
    "RunRecord",
    "microbench",
    "open_engine",
    "run",
    "vring_need_event",
]
