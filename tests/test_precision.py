"""Run-length control: MSER-5 warm-up detection, batch means, adaptive runs against the oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vsim import Scenario, Workload, design, simulate
from vsim.analytic import Station, mva
from vsim.errors import ConfigError
from vsim.precision import batch_means, mean_ci, mser5, rate_interval, weighted_mean_ci
from vsim.profile import Profile, derived, load_profile, synthetic_profile


def test_mser5_cuts_the_transient():
    rng = np.random.default_rng(1)
    x = np.concatenate([np.linspace(20, 1, 300), rng.exponential(1.0, 6000)])
    d = mser5(x)
    assert 250 <= d <= 400


def test_mser5_keeps_a_stationary_series():
    x = np.random.default_rng(2).exponential(1.0, 5000)
    assert mser5(x) < 250  # at most a few percent truncated by chance


def test_batch_means_halfwidth_for_iid_data():
    rng = np.random.default_rng(3)
    x = rng.normal(10.0, 2.0, 30_000)
    iv = batch_means(x)
    expected = 2.045 * 2.0 / math.sqrt(30_000) / 10.0  # t(29, 0.975) sigma / sqrt(n) / mean
    assert iv.mean == pytest.approx(10.0, rel=0.01)
    assert iv.rel_halfwidth == pytest.approx(expected, rel=0.3)


def test_rate_interval_of_a_poisson_process():
    t = np.cumsum(np.random.default_rng(4).exponential(2.0, 60_000))
    iv = rate_interval(t, 0.0)
    assert iv.mean == pytest.approx(0.5, rel=0.02)
    assert iv.rel_halfwidth == pytest.approx(2.045 / math.sqrt(60_000), rel=0.35)


@pytest.fixture(scope="module")
def oracle_profile() -> Profile:
    disk = {
        "model": "empirical",
        "channels": derived({"value": 1}),
        "service": {"read": derived({"dist": "exponential", "mean_us": 100.0})},
    }
    doc = synthetic_profile(
        costs={"submit_iocb": {"dist": "exponential", "mean_us": 40.0}}, disk=disk
    )
    return Profile.from_dict(doc, "oracle")


@pytest.mark.parametrize("n", [1, 4])
def test_adaptive_run_reaches_precision_and_covers_the_truth(n, oracle_profile):  # type: ignore[no-untyped-def]
    exact = mva([Station("s", 40.0), Station("d", 100.0)], n)
    s = Scenario(
        workload=Workload(rw="randread", iodepth=n), design=design("vhost-blk"), profile="oracle"
    )
    r = simulate(s, seed=5, profile=oracle_profile, precision=0.02)
    assert r.iops_rel_hw <= 0.02 and r.lat_rel_hw <= 0.02
    # The stated interval covers the analytic truth (2.5 half-widths: a loose coverage check).
    x = exact.throughput[-1] * 1e6
    assert abs(r.iops / x - 1) <= 2.5 * r.iops_rel_hw
    assert abs(r.lat_ns.mean() / 1e3 / exact.response[-1] - 1) <= 2.5 * r.lat_rel_hw
    row = r.rows()[0]
    assert row["iops_hw_pct"] == pytest.approx(100 * r.iops_rel_hw)
    assert row["ios"] == r.ios


def test_cap_on_ios(oracle_profile):  # type: ignore[no-untyped-def]
    s = Scenario(
        workload=Workload(rw="randread", iodepth=2), design=design("vhost-blk"), profile="oracle"
    )
    r = simulate(s, seed=1, profile=oracle_profile, precision=0.0001, max_ios=5000)
    assert 5000 <= r.ios < 5100
    assert r.iops_rel_hw > 0.0001  # the cap stopped it, and the row says how far it got


def test_adaptive_runs_are_deterministic():
    p = load_profile("seed-2011")
    s = Scenario(workload=Workload(rw="randread", bs=4096, iodepth=2))
    a = simulate(s, seed=3, profile=p, precision=0.05)
    b = simulate(s, seed=3, profile=p, precision=0.05)
    assert a.rows() == b.rows() and np.array_equal(a.clat_ns, b.clat_ns)


def test_run_length_arguments_conflict():
    s = Scenario(workload=Workload(number_ios=100))
    with pytest.raises(ConfigError, match="not both"):
        simulate(s, precision=0.01)
    with pytest.raises(ConfigError, match="precision"):
        simulate(Scenario(), precision=1.5)


# -- a point's mean latency over runs of different speed ------------------------------------


def test_io_weighted_mean_latency_keeps_littles_law_over_runs_of_different_speed():
    # Ten 1-second runs of a closed loop with 8 I/Os in flight, each run at its own speed: the
    # runs' mean IOPS times the I/O-weighted mean latency is the iodepth; the plain mean of the
    # runs' mean latencies is high by about the square of the run-to-run CV.
    rng = np.random.default_rng(3)
    iops = 10_000 * rng.lognormal(0.0, 0.2, 10)
    lat_us = 8 / iops * 1e6
    w = weighted_mean_ci(lat_us, iops * 1.0)
    assert iops.mean() * w.mean / 1e6 == pytest.approx(8.0, rel=1e-12)
    plain = mean_ci(lat_us)
    cv = iops.std(ddof=0) / iops.mean()
    assert plain.mean / w.mean - 1 == pytest.approx(cv**2, rel=0.5)
    assert w.low < w.mean < w.high and w.n == 10


def test_io_weighted_mean_with_equal_weights_is_the_plain_mean_and_interval():
    x = np.array([210.0, 190.0, 250.0, 205.0, np.nan])
    w = weighted_mean_ci(x, np.full(5, 7.0))
    p = mean_ci(x)
    assert (w.mean, w.low, w.high, w.n) == pytest.approx((p.mean, p.low, p.high, p.n))
    # without I/O counts for every run (a published summary): the plain mean
    z = weighted_mean_ci(x, np.array([1.0, 0.0, 1.0, 1.0, 1.0]))
    assert (z.mean, z.low, z.high) == pytest.approx((p.mean, p.low, p.high))


def test_io_weighted_mean_interval_covers_at_its_level():
    # Runs whose speed and latency noise vary: the 95 % interval holds the true I/O-weighted
    # mean in about 95 % of 2000 campaigns of 12 runs.
    rng = np.random.default_rng(4)
    sigma, hits = 0.25, 0
    # each run's mean latency is 500 us / its speed, plus noise; its I/O count is proportional
    # to its speed, so the population's weighted mean E[ios lat] / E[ios] is 500 / E[speed]
    truth = 500.0 / math.exp(sigma**2 / 2)
    for _ in range(2000):
        speed = rng.lognormal(0.0, sigma, 12)
        ci = weighted_mean_ci(500.0 / speed + rng.normal(0, 20, 12), 1000 * speed)
        hits += ci.low <= truth <= ci.high
    assert 0.93 <= hits / 2000 <= 0.975
