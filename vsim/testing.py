"""Small profiles built in code for exact, analysable configurations (oracles, benchmarks)."""

from __future__ import annotations

from typing import Any

from vsim.models.syscalls import GUEST_OPS, HOST_OPS


def prov(d: dict[str, Any]) -> dict[str, Any]:
    """Add test provenance to a number or distribution table."""
    return {**d, "provenance": "derived", "source": "test configuration"}


def zero() -> dict[str, Any]:
    return prov({"dist": "fixed", "value_us": 0.0})


def profile_dict(
    costs: dict[str, dict[str, Any]] | None = None,
    disk: dict[str, Any] | None = None,
    *,
    host_cpus: int = 4,
    vcpus: int = 1,
    wakeup_idle: dict[str, Any] | None = None,
    wakeup_busy: dict[str, Any] | None = None,
    queue_size: int = 128,
) -> dict[str, Any]:
    """A profile document: every cost zero unless given, disk a fixed 100 us server."""
    c: dict[str, Any] = {op: zero() for op in GUEST_OPS + HOST_OPS}
    for op, spec in (costs or {}).items():
        c[op] = prov(spec)
    return {
        "schema": "vsim-profile/1",
        "name": "test",
        "cpu": {
            "host_cpus": prov({"value": host_cpus}),
            "guest_vcpus": prov({"value": vcpus}),
            "wakeup_idle": prov(wakeup_idle) if wakeup_idle else zero(),
            "wakeup_busy": prov(wakeup_busy) if wakeup_busy else zero(),
            "poll_detect": zero(),
        },
        "device": {"queue_size": prov({"value": queue_size})},
        "costs": c,
        "disk": disk
        or {
            "model": "fixed",
            "service_us": prov({"value": 100.0}),
            "channels": prov({"value": 1}),
        },
    }
