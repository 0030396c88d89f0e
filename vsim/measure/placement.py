"""CPU placement labels of a measured point: `free` or a pinning pattern G:B1[:B2...].

A placement is a point factor (like iodepth): ``free`` lets the host scheduler place the guest
and the backend's threads; ``G:B1[:B2...]`` pins the guest to CPU G, the backend's first thread
to B1, its second to B2, and so on. A design with fewer threads ignores the extra entries, one
with more threads repeats the last entry (virtio-blk has one thread; vhost-blk two: the
submitter, then the completer). The measurement (vsim.measure.campaign) and the prediction
(vsim.validate.compare) resolve a label with the one rule here, so a label means the same
pinning on both sides.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from vsim.errors import ConfigError

__all__ = [
    "FREE",
    "check_cpus",
    "label_cpus",
    "parse_placement",
    "placement_tag",
    "resolve_placement",
]

FREE = "free"
_PATTERN = re.compile(r"^\d+(:\d+)+$")


def parse_placement(label: str) -> str:
    """The canonical form of a placement label (``free``, or ``G:B1[:B2...]`` without leading
    zeros); ConfigError naming the label otherwise."""
    text = str(label).strip()
    if text.lower() == FREE:
        return FREE
    if not _PATTERN.match(text):
        raise ConfigError(
            f"placement {label!r}: expected free or G:B1[:B2...] (CPU numbers: the guest's, "
            "then each backend thread's, e.g. 0:1 or 0:1:0)"
        )
    return ":".join(str(int(c)) for c in text.split(":"))


def label_cpus(label: str) -> tuple[int, ...]:
    """Every CPU a label names, in its order (none for ``free``)."""
    text = parse_placement(label)
    return () if text == FREE else tuple(int(c) for c in text.split(":"))


def resolve_placement(label: str, threads: int) -> tuple[int | None, tuple[int, ...] | None]:
    """(guest CPU, one CPU per backend thread) of a label for a design with `threads` threads:
    (None, None) for ``free``; the entries after the guest's are cut to `threads`, or the last
    one repeated up to it."""
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    cpus = label_cpus(label)
    if not cpus:
        return None, None
    guest, backend = cpus[0], cpus[1:]
    return guest, tuple(backend[min(k, len(backend) - 1)] for k in range(threads))


def check_cpus(label: str, available: Collection[int], host: str) -> None:
    """ConfigError unless every CPU of `label` is in `available`, the CPUs of `host` (this
    machine, or a profile's host)."""
    missing = [c for c in label_cpus(label) if c not in available]
    if missing:
        raise ConfigError(
            f"placement {label}: CPU {missing[0]} does not exist on {host} "
            f"(CPUs: {', '.join(str(c) for c in sorted(available))})"
        )


def placement_tag(label: str) -> str:
    """The part of a run's file name that names its placement: empty for ``free`` (older
    datasets keep their names), else ``-p`` and the CPUs joined by dots (``-p0.1.0``)."""
    cpus = label_cpus(label)
    return "" if not cpus else "-p" + ".".join(str(c) for c in cpus)
