"""Latency-target search (vsim.studies.search): the answer meets the target, the next step up
misses it, over iodepth and over an open-loop rate; targets parse; bad input is one line."""

from __future__ import annotations

import pytest

from vsim import ConfigError, Scenario, Workload, search
from vsim.studies.search import TAIL_IOS, parse_targets

SEQ = Scenario(workload=Workload(rw="read", bs=512))  # the seed's sequential read


def test_over_iodepth_the_best_meets_and_the_next_step_misses() -> None:
    res = search(SEQ, "lat_mean_us<=330", precision=0.02)
    assert res.best is not None and res.next_up is not None
    assert res.best["meets"] and res.best["lat_mean_us"] <= 330
    assert not res.next_up["meets"] and res.next_up["lat_mean_us"] > 330
    assert res.next_up["iodepth"] == res.best["iodepth"] + 1
    met = [s for s in res.steps if s["meets"]]
    assert max(s["iops"] for s in met) == res.best["iops"]  # the most IOPS among those that meet


def test_a_percentile_target_samples_its_tail() -> None:
    res = search(SEQ, "lat_p99_us<=700", precision=0.02)
    assert all(s["ios"] >= TAIL_IOS / 0.01 for s in res.steps)  # 100 I/Os beyond p99
    assert res.best is not None and res.best["lat_p99_us"] <= 700
    assert res.next_up is not None and res.next_up["lat_p99_us"] > 700


def test_over_rate_the_answer_is_sustained_and_the_next_rate_misses() -> None:
    s = Scenario(workload=Workload(rw="read", bs=512, iodepth=4))
    res = search(s, "lat_p99_us<=650", over="rate_iops", precision=0.02)
    assert res.best is not None and res.next_up is not None
    assert res.best["sustained"] and res.best["lat_p99_us"] <= 650
    assert res.best["iops"] == pytest.approx(res.best["rate_iops"], rel=0.03)
    assert not res.next_up["meets"] and res.next_up["rate_iops"] > res.best["rate_iops"]
    assert res.next_up["rate_iops"] - res.best["rate_iops"] <= max(res.bracket[1] // 100, 1)


def test_a_loose_rate_target_stops_at_saturation() -> None:
    """Past the knee latency stops growing (fio times from the issue): the rate that is no
    longer sustained is what misses."""
    s = Scenario(workload=Workload(rw="read", bs=512, iodepth=2))
    res = search(s, "lat_mean_us<=100000", over="rate_iops", precision=0.02)
    assert res.next_up is not None and not res.next_up["sustained"]
    assert res.best is not None and res.best["sustained"]


def test_no_point_meets_an_impossible_target() -> None:
    res = search(SEQ, "lat_mean_us<=1", precision=0.05)
    assert res.best is None and res.next_up is not None and res.next_up["iodepth"] == 1
    assert "no point meets" in res.summary()


def test_targets_parse_and_bad_ones_are_one_line() -> None:
    t = parse_targets("lat_p99.9_us<=500, iops>=1000")
    assert [(x.metric, x.op, x.value) for x in t] == [
        ("lat_p99.9_us", "<=", 500.0),
        ("iops", ">=", 1000.0),
    ]
    for bad in ("lat<=", "p99 500", "lat_p99_us<=inf", "lat_p99_us=<5"):
        with pytest.raises(ConfigError):
            parse_targets(bad)
    with pytest.raises(ConfigError, match="unknown metric"):
        search(SEQ, "latency<=5")
    with pytest.raises(ConfigError, match="--over"):
        search(SEQ, "lat_mean_us<=5", over="bs")
