"""Frozen scenario objects: Workload (a fio job), Design (a host backend) and Scenario."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Literal

from vsim.errors import ConfigError

__all__ = [
    "DESIGNS",
    "MAX_IODEPTH",
    "MAX_JOBS",
    "RW_MODES",
    "SECTOR",
    "Context",
    "Design",
    "Scenario",
    "Signal",
    "Workload",
    "design",
    "parse_size",
]

RW_MODES = ("read", "write", "randread", "randwrite", "rw", "readwrite", "randrw")
SECTOR = 512
MAX_JOBS = 4096  # fio's FIO_MAX_JOBS (os/os.h): the most jobs one fio run may have
# Linux AIO's default event limit (fs/aio.c aio_max_nr = 0x10000): io_setup(2) refuses a larger
# context with EAGAIN, so fio's libaio engine cannot keep more I/Os in flight per job.
MAX_IODEPTH = 65536

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str | int) -> int:
    """Parse a fio-style size ("512", "4k", "1M", "2GiB") into bytes (fio's base-2 units)."""
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ConfigError(f"cannot read size {text!r} (expected e.g. 512, 4k, 1m)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


@dataclass(frozen=True, kw_only=True)
class Workload:
    """A fio job as the guest runs it; field names are fio's.

    Run length is ``number_ios`` (I/Os counted after warm-up, per job) or ``runtime`` (simulated
    seconds after warm-up), whichever comes first when both are given (as in fio);
    ``ramp_time`` (seconds) is excluded from statistics as in fio.
    """

    rw: str = "randread"
    bs: int = 4096
    iodepth: int = 1
    numjobs: int = 1
    rwmixread: int = 50
    number_ios: int | None = None
    runtime: float | None = None
    ramp_time: float = 0.0
    size: int = 1 << 30

    def __post_init__(self) -> None:
        if self.rw not in RW_MODES:
            raise ConfigError(f"unknown rw {self.rw!r} (choose from {', '.join(RW_MODES)})")
        if self.bs < SECTOR or self.bs % SECTOR:
            raise ConfigError(f"bs must be a positive multiple of {SECTOR} bytes, got {self.bs}")
        if self.iodepth < 1:
            raise ConfigError(f"iodepth must be >= 1, got {self.iodepth}")
        if self.iodepth > MAX_IODEPTH:
            raise ConfigError(
                f"iodepth must be <= {MAX_IODEPTH} (Linux AIO's default aio-max-nr: io_setup "
                f"refuses more), got {self.iodepth}"
            )
        if not 1 <= self.numjobs <= MAX_JOBS:
            raise ConfigError(
                f"numjobs must be within 1..{MAX_JOBS} (fio's limit), got {self.numjobs}"
            )
        if not 0 <= self.rwmixread <= 100:
            raise ConfigError(f"rwmixread must be within 0..100, got {self.rwmixread}")
        if self.number_ios is not None and self.number_ios < 1:
            raise ConfigError(f"number_ios must be >= 1, got {self.number_ios}")
        if self.runtime is not None and not 0 < self.runtime < math.inf:
            raise ConfigError(f"runtime must be a finite number > 0 seconds, got {self.runtime}")
        if not 0 <= self.ramp_time < math.inf:
            raise ConfigError(
                f"ramp_time must be a finite number >= 0 seconds, got {self.ramp_time}"
            )
        if self.size < self.bs or self.size % SECTOR:
            raise ConfigError(f"size must be a multiple of {SECTOR} and >= bs, got {self.size}")

    @property
    def random(self) -> bool:
        """True for random offsets (randread, randwrite, randrw)."""
        return self.rw.startswith("rand")

    @property
    def read_fraction(self) -> float:
        """The probability that an I/O is a read."""
        if self.rw in ("read", "randread"):
            return 1.0
        if self.rw in ("write", "randwrite"):
            return 0.0
        return self.rwmixread / 100.0

    @property
    def directions(self) -> tuple[str, ...]:
        """The data directions this job issues, in fio's order."""
        f = self.read_fraction
        return tuple(d for d, on in (("read", f > 0), ("write", f < 1)) if on)


Context = Literal["user", "kernel"]
Signal = Literal["per-completion", "batched"]


@dataclass(frozen=True, kw_only=True)
class Design:
    """A host backend as structure + policy.

    threads: 1 = one thread submits and completes; 2 = a submitter and a completer thread.
    context: "user" (a QEMU thread: operations are syscalls) or "kernel" (vhost: in-kernel calls).
    signal: "per-completion" (one notification per used entry) or "batched" (one per reaped batch).
    submit_batch: one io_submit call for all popped requests (True) or one call per request (False).
    poll_us: busy-poll this long before blocking (QEMU's poll-max-ns, in microseconds).
    cpus: host CPU of each backend thread, or None to let the scheduler place it.
    """

    name: str
    threads: int = 1
    context: Context = "user"
    signal: Signal = "per-completion"
    submit_batch: bool = False
    poll_us: float = 0.0
    cpus: tuple[int | None, ...] | None = None

    def __post_init__(self) -> None:
        if self.threads not in (1, 2):
            raise ConfigError(f"design {self.name!r}: threads must be 1 or 2, got {self.threads}")
        if self.context not in ("user", "kernel"):
            raise ConfigError(f"design {self.name!r}: context must be user or kernel")
        if self.signal not in ("per-completion", "batched"):
            raise ConfigError(f"design {self.name!r}: signal must be per-completion or batched")
        if not 0 <= self.poll_us < math.inf:
            raise ConfigError(
                f"poll_us must be a finite number >= 0, got {self.poll_us} (design {self.name!r})"
            )
        if self.cpus is not None and len(self.cpus) != self.threads:
            raise ConfigError(
                f"design {self.name!r}: cpus needs one entry per thread ({self.threads})"
            )

    @property
    def thread_names(self) -> tuple[str, ...]:
        """Names of the backend threads, as they appear in results."""
        return ("iothread",) if self.threads == 1 else ("submitter", "completer")


DESIGNS: dict[str, Design] = {
    # The seed's one-thread QEMU virtio-blk (aio=native): one userspace I/O thread, one io_submit
    # per request (QEMU 0.15 had no io_plug batching), one irqfd signal per completion.
    "virtio-blk": Design(name="virtio-blk", threads=1, context="user", signal="per-completion"),
    # The seed's vhost-blk: two in-kernel threads, completions signalled once per reaped batch.
    "vhost-blk": Design(name="vhost-blk", threads=2, context="kernel", signal="batched"),
    # Modern QEMU (2023): batched completion notification and io_submit batching.
    "virtio-blk-batched": Design(
        name="virtio-blk-batched", threads=1, context="user", signal="batched", submit_batch=True
    ),
}


def design(name: str, **overrides: object) -> Design:
    """A preset design by name, with fields replaced: ``design("virtio-blk", poll_us=32)``."""
    try:
        base = DESIGNS[name]
    except KeyError:
        raise ConfigError(f"unknown design {name!r} (choose from {', '.join(DESIGNS)})") from None
    return replace(base, **overrides) if overrides else base  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One simulated configuration: a workload on a design with a profile (by name or path).

    guest_cpus: host CPU of each guest vCPU thread, or None to let the scheduler place them.
    """

    workload: Workload = field(default_factory=Workload)
    design: Design = field(default_factory=lambda: DESIGNS["virtio-blk"])
    profile: str = "seed-2011"
    guest_cpus: tuple[int | None, ...] | None = None
