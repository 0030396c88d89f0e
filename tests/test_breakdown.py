"""Per-stage latency breakdown: segments chain, add up to the mean latency, read traces."""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import numpy as np
import pytest

from vsim import Scenario, Workload, design, simulate
from vsim.breakdown import (
    BOUNDARIES,
    BOUNDARY_ALIASES,
    COLUMNS,
    SEGMENT_NAMES,
    SEGMENTS,
    breakdown,
    breakdown_stages,
    breakdown_trace,
    segment_means,
)
from vsim.errors import ConfigError
from vsim.results import Result


def _sim(name: str, rw: str = "read", iodepth: int = 2, **over: Any) -> Result:
    wl = Workload(rw=rw, bs=512, iodepth=iodepth, number_ios=400)
    return simulate(Scenario(workload=wl, design=design(name, **over)), seed=3)


def test_segments_chain_from_start_to_done() -> None:
    assert SEGMENTS[0].start == "start" and SEGMENTS[-1].end == "done"
    for a, b in itertools.pairwise(SEGMENTS):
        assert a.end == b.start
    assert [s.start for s in SEGMENTS] + [SEGMENTS[-1].end] == list(BOUNDARIES)
    assert len(set(SEGMENT_NAMES)) == len(SEGMENTS)


@pytest.mark.parametrize(
    ("name", "rw", "over"),
    [
        ("virtio-blk", "read", {}),
        ("vhost-blk", "rw", {}),
        ("virtio-blk-batched", "read", {}),
        ("virtio-blk", "read", {"poll_us": 200.0}),
    ],
)
def test_segments_sum_to_mean_total_latency(name: str, rw: str, over: dict[str, Any]) -> None:
    res = _sim(name, rw, **over)
    bd = breakdown(res)
    assert list(bd.columns) == list(COLUMNS)
    assert list(bd["stage"]) == list(SEGMENT_NAMES)
    lat_us = float(res.lat_ns.mean()) / 1000
    assert bd["mean_us"].sum() == pytest.approx(lat_us, rel=1e-5, abs=1e-3)
    assert bd["share"].sum() == pytest.approx(1.0)
    # The first segment is fio's submission latency.
    guest = bd.set_index("stage").at["guest_submit", "mean_us"]
    assert guest == pytest.approx(float(res.slat_ns.mean()) / 1000, rel=1e-5, abs=1e-3)
    assert (bd["mean_us"] >= 0).all()


def test_breakdown_of_several_results_keeps_their_order() -> None:
    a, b = _sim("virtio-blk", iodepth=1), _sim("vhost-blk", iodepth=3)
    bd = breakdown([a, b])
    assert len(bd) == 2 * len(SEGMENTS)
    assert list(bd["design"].unique()) == ["virtio-blk", "vhost-blk"]
    assert list(bd["iodepth"].unique()) == [1, 3]
    assert (bd["source"] == "simulated").all()
    assert breakdown([]).empty


def _trace(n: int = 50) -> dict[str, np.ndarray]:
    """A synthetic reference trace: ns timestamps with known gaps per segment."""
    rng = np.random.default_rng(0)
    t0 = np.cumsum(rng.integers(10_000, 20_000, n)).astype(np.int64) + 10**12
    gaps = {"kick_ns": 30_000, "pop_ns": 10_000, "io_submit_ns": 2_000,
            "io_complete_ns": 100_000, "used_push_ns": 5_000, "reap_ns": 40_000}  # fmt: skip
    out = {"submit_ns": t0}
    t = t0
    for name, gap in gaps.items():
        t = t + gap
        out[name] = t
    out["signal_ns"] = np.zeros(n, dtype=np.int64)  # stages that may be 0 are ignored
    out["irq_ns"] = out["reap_ns"] - 1_000
    return out


def test_trace_stages_map_to_the_same_segments() -> None:
    means = segment_means(_trace(), unit="ns")
    assert means == pytest.approx({"guest_submit": 30.0, "kick_queue": 10.0,
                                   "backend_submit": 2.0, "disk": 100.0, "completion": 5.0,
                                   "signal_reap": 40.0})  # fmt: skip
    bd = breakdown_stages(_trace(), design="vhost-blk", rw="randread", bs=4096, iodepth=4)
    assert bd["mean_us"].sum() == pytest.approx(187.0)
    assert (bd["source"] == "measured").all()


def test_descriptive_names_and_offsets_in_us() -> None:
    stages = {"kick": [29.0], "backend pop": [40.0], "io submitted": [42.0],
              "io completed": [140.0], "used pushed": [150.0], "guest reaped": [200.0]}  # fmt: skip
    means = segment_means(stages, unit="us")
    assert means["guest_submit"] == pytest.approx(29.0)
    assert sum(means.values()) == pytest.approx(200.0)


def test_breakdown_trace_reads_run_metadata() -> None:
    class Record:
        stages = _trace()
        meta: ClassVar[dict[str, Any]] = {
            "design": "virtio-blk",
            "workload": {"rw": "randread", "bs": 4096, "iodepth": 8},
        }

    bd = breakdown_trace(Record())
    assert bd[["design", "rw", "bs", "iodepth"]].iloc[0].tolist() == [
        "virtio-blk", "randread", 4096, 8,
    ]  # fmt: skip
    Record.meta = {"design": "virtio-blk", "workload": {}}
    with pytest.raises(ConfigError, match="rw"):
        breakdown_trace(Record())


def test_bad_stage_dicts_are_reported() -> None:
    t = _trace()
    del t["pop_ns"]
    with pytest.raises(ConfigError, match="missing pop"):
        segment_means(t)
    t = _trace()
    t["pop"] = t["pop_ns"]
    with pytest.raises(ConfigError, match="given twice"):
        segment_means(t)
    t = _trace()
    t["reap_ns"] = t["reap_ns"][:-1]
    with pytest.raises(ConfigError, match="one length"):
        segment_means(t)
    empty = {k: np.zeros(0) for k in _trace()}
    with pytest.raises(ConfigError, match="no I/O"):
        segment_means(empty)


def test_reference_trace_stage_names_are_known() -> None:
    trace = pytest.importorskip("vsim.reference.trace")
    known = {a for aliases in BOUNDARY_ALIASES.values() for a in aliases}
    used = {aliases[1] for aliases in BOUNDARY_ALIASES.values()}
    assert used <= set(trace.STAGES)
    assert set(trace.STAGES) - known <= {"signal_ns", "irq_ns"}
