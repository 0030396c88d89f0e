"""fio's open-loop load and think time in the guest model: rate_iops, rate_process, thinktime,
iodepth_batch_complete_min/max (vsim.models.guest, as fio's backend.c and io_u.c do them)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from vsim import ConfigError, Scenario, Workload, simulate
from vsim.engine import point_key

PROFILE = "local-s8b"  # a measured file on an SSD-backed disk, no rotation
BASE = Workload(rw="randread", bs=4096, iodepth=8)


def run(seed: int = 1, **fields: object):
    w = replace(BASE, **fields)
    return simulate(Scenario(workload=w, profile=PROFILE), seed)


@pytest.fixture(scope="module")
def closed():
    """The closed loop at iodepth 8: the capacity the rates are set against."""
    return run(number_ios=6000)


@pytest.mark.parametrize("process", ["linear", "poisson"])
@pytest.mark.parametrize("load", [0.3, 0.7])
def test_below_saturation_the_offered_rate_is_served_and_littles_law_holds(
    closed, process: str, load: float
) -> None:
    """Below the knee the achieved IOPS is the offered rate, and the mean number of I/Os in
    flight is offered rate x mean latency (Little's law, with the rate set, not measured)."""
    rate = int(load * closed.iops)
    res = run(number_ios=6000, rate_iops=(rate, 0), rate_process=process)
    row = res.rows()[0]
    counting = 3 / math.sqrt(res.ios)  # a Poisson count's 3-sigma error
    assert row["iops"] == pytest.approx(rate, rel=0.002 if process == "linear" else counting)
    in_flight = res.levels["guest.active"]  # time average of the job's I/Os in flight
    assert in_flight == pytest.approx(rate * row["lat_mean_us"] / 1e6, rel=2 * counting)
    assert in_flight < BASE.iodepth * 0.9  # open loop: the queue is not kept full


def test_above_saturation_iops_plateaus_at_the_closed_loop_and_latency_shows_the_knee(
    closed,
) -> None:
    cap = closed.iops
    low = run(number_ios=6000, rate_iops=(int(0.3 * cap), 0), rate_process="poisson")
    high = run(number_ios=6000, rate_iops=(int(2 * cap), 0), rate_process="poisson")
    assert high.iops == pytest.approx(cap, rel=0.03)  # what iodepth 8 can carry
    assert high.iops < 0.6 * 2 * cap  # far below what was offered
    lat = lambda r: r.rows()[0]["lat_mean_us"]  # noqa: E731
    assert lat(high) == pytest.approx(lat(closed), rel=0.05)  # the full queue's latency
    assert lat(high) > 1.5 * lat(low)  # the knee


def test_linear_rate_spaces_ios_by_the_schedule(closed) -> None:
    """fio's linear schedule issues the k-th I/O at k / rate: N I/Os take N / rate seconds."""
    rate = int(0.2 * closed.iops)
    res = run(number_ios=2000, rate_iops=(rate, 0))
    assert res.elapsed_s == pytest.approx(2000 / rate, rel=2e-3)


def test_ahead_of_schedule_fio_quiesces_before_it_sleeps(closed) -> None:
    """io_u_quiesce: at a rate far below capacity each I/O is reaped before the job sleeps,
    so the latency is iodepth 1's even at iodepth 8."""
    qd1 = run(number_ios=3000, iodepth=1).rows()[0]["lat_mean_us"]
    slow = run(number_ios=3000, rate_iops=(int(0.05 * closed.iops), 0)).rows()[0]
    assert slow["lat_mean_us"] == pytest.approx(qd1, rel=0.05)


def test_rate_limits_only_the_rated_direction() -> None:
    """rate_iops=(reads, 0) on a read/write mix: reads at their rate; writes are never
    ahead, and an ahead read yields to them (fio's rate_ddir)."""
    w = Workload(rw="randrw", bs=4096, iodepth=4, number_ios=4000, rate_iops=(300, 0))
    res = simulate(Scenario(workload=w, profile=PROFILE), 1)
    by_dir = {r["dir"]: r for r in res.rows()}
    assert by_dir["read"]["iops"] == pytest.approx(300, rel=0.02)
    assert by_dir["write"]["iops"] > 3 * by_dir["read"]["iops"]
    assert by_dir["read"]["rate_iops"] == 300 and by_dir["write"]["rate_iops"] == 0


def test_thinktime_after_each_block_adds_to_the_cycle() -> None:
    """thinktime T after every completed block at iodepth 1: each I/O's cycle grows by T."""
    plain = run(number_ios=2000, iodepth=1).rows()[0]
    think = run(number_ios=2000, iodepth=1, thinktime=500.0).rows()[0]
    assert 1e6 / think["iops"] == pytest.approx(1e6 / plain["iops"] + 500.0, rel=0.02)
    assert think["lat_mean_us"] == pytest.approx(plain["lat_mean_us"], rel=0.05)


def test_thinktime_spin_is_guest_cpu_and_sleep_is_not() -> None:
    slept = run(number_ios=2000, iodepth=1, thinktime=400.0).rows()[0]
    spun = run(number_ios=2000, iodepth=1, thinktime=400.0, thinktime_spin=300.0).rows()[0]
    extra = spun["guest_cpu_us_per_io"] - slept["guest_cpu_us_per_io"]
    assert extra == pytest.approx(300.0, rel=0.05)
    assert 1e6 / spun["iops"] == pytest.approx(1e6 / slept["iops"], rel=0.03)


def test_iodepth_batch_complete_min_waits_for_a_batch() -> None:
    """At a full queue the job reaps only once this many completed: with complete_min =
    iodepth it runs in waves, the device idles at each wave's tail and the throughput falls;
    submitted in one batch as well, every I/O waits for the wave's slowest (clat grows)."""
    one = run(number_ios=4000).rows()[0]
    wave = run(number_ios=4000, iodepth_batch_complete_min=8).rows()[0]
    assert wave["iops"] < 0.95 * one["iops"]
    batched = run(number_ios=4000, iodepth_batch_submit=8).rows()[0]
    both = run(number_ios=4000, iodepth_batch_submit=8, iodepth_batch_complete_min=8).rows()[0]
    assert both["clat_mean_us"] > 1.1 * batched["clat_mean_us"]
    assert both["iops"] < 0.9 * batched["iops"]


def test_iodepth_batch_complete_max_caps_one_reap() -> None:
    """Capping reaps at 1 changes when later completions are reaped, not how many finish."""
    capped = run(number_ios=3000, iodepth_batch_complete_max=1)
    assert capped.ios == 3000
    assert capped.rows()[0]["iops"] == pytest.approx(run(number_ios=3000).iops, rel=0.1)


def test_open_loop_runs_are_deterministic_and_leave_closed_loop_streams_alone() -> None:
    a = run(seed=3, number_ios=1500, rate_iops=(2000, 0), rate_process="poisson")
    b = run(seed=3, number_ios=1500, rate_iops=(2000, 0), rate_process="poisson")
    assert a.fio_json_text() == b.fio_json_text()
    plain = Scenario(workload=replace(BASE, number_ios=100), profile=PROFILE)
    assert "rate_iops" not in point_key(plain) and "thinktime" not in point_key(plain)
    rated = replace(plain, workload=replace(plain.workload, rate_iops=(5, 0)))
    assert "rate_iops" in point_key(rated)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rate_iops": (-1, 0)}, "rate_iops must be"),
        ({"rate_iops": (10,)}, "rate_iops must be"),
        ({"rate_process": "uniform"}, "unknown rate_process"),
        ({"thinktime": math.nan}, "thinktime must be"),
        ({"thinktime": 10.0, "thinktime_spin": 20.0}, "thinktime_spin"),
        ({"thinktime_blocks": 0}, "thinktime_blocks must be"),
        ({"iodepth_batch_complete_min": -1}, "iodepth_batch_complete_min must be"),
    ],
)
def test_bad_open_loop_fields_are_one_line_errors(fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Workload(**fields)


def test_thinktime_after_every_block_makes_the_depth_one() -> None:
    """fio checks its think time after each issue: with thinktime_blocks 1 every I/O is
    reaped (quiesce) and thought about before the next, whatever the iodepth (HOWTO:
    "effectively makes any queue depth setting redundant")."""
    deep = run(number_ios=2000, iodepth=4, thinktime=200.0).rows()[0]
    one = run(number_ios=2000, iodepth=1, thinktime=200.0).rows()[0]
    assert deep["iops"] == pytest.approx(one["iops"], rel=0.03)
    every4 = run(number_ios=2000, iodepth=4, thinktime=200.0, thinktime_blocks=4).rows()[0]
    assert every4["iops"] > 1.5 * deep["iops"]  # four I/Os between stalls, in flight together
