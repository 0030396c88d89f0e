"""The host's CPU time as /proc/stat counts it: how much the hypervisor stole during a run."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

__all__ = ["CpuTicks", "cpu_ticks", "steal_pct"]

_STAT = Path("/proc/stat")


class CpuTicks(NamedTuple):
    """The all-CPU counters of /proc/stat's first line, in USER_HZ ticks (proc(5))."""

    steal: int  # time this (virtual) machine's CPUs were runnable but the hypervisor ran others
    total: int  # user + nice + system + idle + iowait + irq + softirq + steal


def cpu_ticks(stat: Path = _STAT) -> CpuTicks | None:
    """The counters now, or None where /proc/stat cannot be read or has no steal column."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if len(first) < 9 or first[0] != "cpu":
        return None
    try:
        # user nice system idle iowait irq softirq steal (guest and guest_nice are in user)
        values = [int(x) for x in first[1:9]]
    except ValueError:
        return None
    return CpuTicks(steal=values[7], total=sum(values))


def steal_pct(before: CpuTicks | None, after: CpuTicks | None) -> float | None:
    """The share of the machine's CPU time stolen between two readings, in %; None when either
    reading is missing or no tick passed."""
    if before is None or after is None or after.total <= before.total:
        return None
    return 100.0 * (after.steal - before.steal) / (after.total - before.total)
