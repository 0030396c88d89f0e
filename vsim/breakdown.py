"""Where the time goes: per-stage latency breakdown of simulated and measured I/Os."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from vsim.errors import ConfigError
from vsim.results import STAGES, Result

__all__ = [
    "BOUNDARIES",
    "BOUNDARY_ALIASES",
    "COLUMNS",
    "OPTIONAL_STAGES",
    "SEGMENTS",
    "SEGMENT_LABELS",
    "SEGMENT_NAMES",
    "Segment",
    "StageTrace",
    "Unit",
    "breakdown",
    "breakdown_result",
    "breakdown_stages",
    "breakdown_trace",
    "result_stages",
    "segment_means",
]

#: The boundaries of an I/O's path, in order: its start (fio begins io_submit), then the
#: stages a Result records (vsim.results.STAGES).
BOUNDARIES: tuple[str, ...] = ("start", *STAGES)


@dataclass(frozen=True)
class Segment:
    """One segment of an I/O's path: the time from boundary `start` to boundary `end`."""

    name: str  # the id in tidy tables (the `stage` column)
    label: str  # legend text
    start: str
    end: str
    what: str  # what the segment contains


#: The one table of segments. Simulated Results and measured traces both map onto it.
SEGMENTS: tuple[Segment, ...] = (
    Segment(
        "guest_submit",
        "guest submit",
        "start",
        "issue",
        "guest: fio's io_submit through the driver up to the kick returning (slat)",
    ),
    Segment(
        "kick_queue",
        "kick + wake-up + queue",
        "issue",
        "pop",
        "notification to the backend, its wake-up and the wait until it pops the request",
    ),
    Segment(
        "backend_submit",
        "backend submit",
        "pop",
        "sub",
        "backend CPU: pop the request and io_submit it",
    ),
    Segment(
        "disk", "disk (incl. queue)", "sub", "dd", "the device, including the wait in its queue"
    ),
    Segment(
        "completion",
        "completion + push",
        "dd",
        "push",
        "completer wake-up, io_getevents and the push onto the used ring",
    ),
    Segment(
        "signal_reap",
        "signal + irq + guest reap",
        "push",
        "done",
        "irqfd signal, interrupt, and the guest (once its vCPU is free) reaping it",
    ),
)
SEGMENT_NAMES: tuple[str, ...] = tuple(s.name for s in SEGMENTS)
SEGMENT_LABELS: dict[str, str] = {s.name: s.label for s in SEGMENTS}

#: Names accepted for each boundary in a dict of stage arrays: the canonical name, the reference
#: backend's trace columns (vsim.reference.trace.STAGES) and descriptive names.
BOUNDARY_ALIASES: dict[str, tuple[str, ...]] = {
    "start": ("start", "submit_ns", "guest submit", "guest_submit"),
    "issue": ("issue", "kick_ns", "kick", "kicked"),
    "pop": ("pop", "pop_ns", "backend pop", "backend_pop"),
    "sub": ("sub", "io_submit_ns", "io submitted", "io_submitted"),
    "dd": ("dd", "io_complete_ns", "io completed", "io_completed"),
    "push": ("push", "used_push_ns", "used pushed", "used_pushed"),
    "done": ("done", "reap_ns", "guest reaped", "guest_reaped", "reaped"),
}
# Stages a trace may record that the segments do not use: the signal and the interrupt are 0
# when they did not happen for an I/O, so they cannot bound a segment of every I/O.
OPTIONAL_STAGES = ("signal_ns", "irq_ns", "guest signalled", "guest_signalled", "irq")

COLUMNS = ("source", "design", "rw", "bs", "iodepth", "stage", "mean_us", "share")

Unit = Literal["ns", "us"]


class StageTrace(Protocol):
    """A measured trace (vsim.reference.trace.RunRecord): stage timestamps and run metadata."""

    @property
    def stages(self) -> dict[str, NDArray[Any]]: ...

    @property
    def meta(self) -> dict[str, Any]: ...


def _boundary_arrays(stages: Mapping[str, ArrayLike], unit: Unit) -> dict[str, NDArray[np.float64]]:
    scale = 1e-3 if unit == "ns" else 1.0
    out: dict[str, NDArray[np.float64]] = {}
    for b, aliases in BOUNDARY_ALIASES.items():
        found = [a for a in aliases if a in stages]
        if len(found) > 1:
            raise ConfigError(f"stages: boundary {b!r} given twice ({', '.join(found)})")
        if found:
            out[b] = np.asarray(stages[found[0]], dtype=np.float64) * scale
    missing = [b for b in BOUNDARIES if b not in out and b != "start"]
    if missing:
        names = ", ".join(BOUNDARY_ALIASES[b][1] for b in missing)
        raise ConfigError(f"stages: missing {', '.join(missing)} (trace names: {names})")
    n = {a.shape for a in out.values()}
    if len(n) != 1 or len(next(iter(n))) != 1:
        raise ConfigError(f"stages: expected 1-d arrays of one length, got shapes {sorted(n)}")
    if "start" not in out:  # offsets since each I/O's start (a Result's layout)
        out["start"] = np.zeros_like(out["done"])
    return out


def segment_means(stages: Mapping[str, ArrayLike], *, unit: Unit = "ns") -> dict[str, float]:
    """Mean time (us) per segment of SEGMENTS over the I/Os of a dict of stage arrays.

    Keys are boundary names or their aliases (BOUNDARY_ALIASES: e.g. the reference trace's
    ``submit_ns``, ``kick_ns``, ``pop_ns``, ``io_submit_ns``, ``io_complete_ns``,
    ``used_push_ns``, ``reap_ns``); other keys (``signal_ns``, ``irq_ns``) are ignored. Values
    are timestamps in `unit`; without a ``start`` they are offsets from each I/O's start. The
    segment means add up to the mean of done - start (the mean total latency, fio's lat).
    """
    t = _boundary_arrays(stages, unit)
    if t["done"].size == 0:
        raise ConfigError("stages: no I/O to break down")
    return {s.name: float(np.mean(t[s.end] - t[s.start])) for s in SEGMENTS}


def _frame(key: dict[str, Any], means: Mapping[str, float]) -> pd.DataFrame:
    total = sum(means.values())
    rows = [
        {
            **key,
            "stage": name,
            "mean_us": means[name],
            "share": means[name] / total if total > 0 else float("nan"),
        }
        for name in SEGMENT_NAMES
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def breakdown_stages(
    stages: Mapping[str, ArrayLike],
    *,
    design: str,
    rw: str,
    bs: int,
    iodepth: int,
    unit: Unit = "ns",
    source: str = "measured",
) -> pd.DataFrame:
    """The tidy breakdown (COLUMNS: one row per segment) of a dict of stage arrays."""
    key = {"source": source, "design": design, "rw": rw, "bs": int(bs), "iodepth": int(iodepth)}
    return _frame(key, segment_means(stages, unit=unit))


def result_stages(result: Result) -> dict[str, NDArray[np.float32]]:
    """A Result's per-I/O stage offsets (us since each I/O's start) by boundary name."""
    return {name: result.stages[:, i] for i, name in enumerate(STAGES)}


def breakdown_result(result: Result) -> pd.DataFrame:
    """The tidy breakdown of one simulated Result (all its I/Os, every direction)."""
    w = result.scenario.workload
    return breakdown_stages(
        result_stages(result),
        design=result.scenario.design.name,
        rw=w.rw,
        bs=w.bs,
        iodepth=w.iodepth,
        unit="us",
        source="simulated",
    )


def breakdown_trace(record: StageTrace) -> pd.DataFrame:
    """The tidy breakdown of a measured reference-backend trace (a RunRecord)."""
    meta = record.meta
    w = meta.get("workload", {})
    try:
        design, rw = str(meta["design"]), str(w["rw"])
        bs, iodepth = int(w["bs"]), int(w["iodepth"])
    except KeyError as e:
        raise ConfigError(f"trace metadata lacks {e.args[0]!r}") from None
    return breakdown_stages(
        record.stages, design=design, rw=rw, bs=bs, iodepth=iodepth, unit="ns", source="measured"
    )


def breakdown(results: Result | Iterable[Result]) -> pd.DataFrame:
    """Tidy breakdown of one or more Results: one row per (point, segment), in input order.

    Columns: source, design, rw, bs, iodepth, stage (a SEGMENTS name), mean_us (mean time per
    I/O in the segment) and share (of the point's mean total latency).
    """
    items = [results] if isinstance(results, Result) else list(results)
    if not items:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.concat([breakdown_result(r) for r in items], ignore_index=True)
