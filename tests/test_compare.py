"""A/B comparisons: CRN pairs, paired Student-t and Fieller intervals, measured pairs, errors."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vsim.engine import simulate
from vsim.errors import ConfigError
from vsim.measure.dataset import METRICS, MeasuredSet, load_measured
from vsim.scenario import Scenario, Workload, design
from vsim.studies.compare import VERDICTS, Comparison, compare, compare_measured, paired_difference

SEED_POINT = Workload(rw="read", bs=512, iodepth=1)  # the seed's qd1 sequential read
IOS, REPS = 500, 5
BATCH1 = "validation/local-batch/batch1"  # 2 designs x 2 iodepths x 6 interleaved repeats
BATCH_A, BATCH_B = "virtio-blk-batched", "qemu-iothread"


@pytest.fixture(scope="module")
def seed_ab() -> Comparison:
    return compare("virtio-blk", "vhost-blk", workload=SEED_POINT, number_ios=IOS, reps=REPS)


@pytest.fixture(scope="module")
def batch1() -> MeasuredSet:
    return load_measured(BATCH1)


def _per_rep(name: str, metric: str, reps: int = REPS) -> np.ndarray:
    """A metric of every replication, recomputed with simulate itself."""
    w = replace(SEED_POINT, number_ios=IOS)
    s = Scenario(workload=w, design=design(name))
    return np.array([simulate(s, 1, rep=r).rows()[0][metric] for r in range(reps)])


def _row(c: Comparison, metric: str, **where: Any) -> pd.Series:
    t = c.to_dataframe()
    sel = t["metric"] == metric
    for k, v in where.items():
        sel &= t[k] == v
    assert sel.sum() == 1
    return t[sel].iloc[0]


# --------------------------------------------------------------------------- (a) CRN


def test_a_renamed_copy_is_identical_in_every_metric() -> None:
    a = design("virtio-blk")
    copy = replace(a, name="virtio-blk-copy")
    c = compare(a, copy, workload=SEED_POINT, number_ios=300, reps=3)
    t = c.to_dataframe()
    assert (c.a, c.b) == ("virtio-blk", "virtio-blk-copy")
    assert len(t) > 15 and set(t["verdict"]) == {"identical"}
    assert (t["diff"] == 0).all() and (t["diff_lo"] == 0).all() and (t["diff_hi"] == 0).all()
    assert (t["rel_pct"] == 0).all() and (t["n"] == 3).all()
    # ... while the replications themselves differ: the pairs share their random numbers
    iops = c.runs[c.runs["side"] == "A"]["iops"]
    assert iops.nunique() == 3


# --------------------------------------------------------------------------- (b) the seed


def test_b_vhost_blk_is_faster_at_the_seeds_qd1_read(seed_ab: Comparison) -> None:
    seed = load_measured("validation/seed-2011").points
    pub = seed[(seed["rw"] == "read") & (seed["iodepth"] == 1)].set_index("design")["iops"]
    assert pub["vhost-blk"] > pub["virtio-blk"]  # the seed's own table: 4755 vs 4116
    iops = _row(seed_ab, "iops")
    assert (
        iops["verdict"] == "B higher" == seed_ab.verdict("iops") == seed_ab.verdict("iops", "read")
    )
    assert 0 < iops["diff_lo"] <= iops["diff"] <= iops["diff_hi"]
    assert 0 < iops["rel_lo_pct"] < iops["rel_pct"] < iops["rel_hi_pct"]
    assert iops["n"] == REPS and iops["a"] == "virtio-blk" and iops["b"] == "vhost-blk"
    assert seed_ab.verdict("lat_mean_us") == "B lower"
    assert seed_ab.verdict("host_cpu_us_per_io") == "B lower"
    text = seed_ab.table()
    assert text.splitlines()[0].startswith("A = virtio-blk, B = vhost-blk: 5 paired replications")
    line = next(ln for ln in text.splitlines() if ln.startswith("iops "))
    assert line.endswith("B higher") and "[+" in line


def test_metric_selection_leaves_parameters_out(seed_ab: Comparison) -> None:
    metrics = list(seed_ab.to_dataframe()["metric"])
    for m in ("iops", "bw_kib_s", "lat_mean_us", "clat_p99_us", "host_cpu_us_per_io"):
        assert m in metrics
    for p in ("seed", "ios", "events", "iodepth", "bs", "numjobs", "guest_vcpus", "iops_hw_pct"):
        assert p not in metrics
    assert {"profile", "rw", "bs", "iodepth"} <= set(seed_ab.point_columns)
    c = compare("virtio-blk", "vhost-blk", workload=SEED_POINT, number_ios=200, reps=2,
                percentiles=(50, 99.9))  # fmt: skip
    assert "lat_p99.9_us" in set(c.to_dataframe()["metric"])


# --------------------------------------------------------------------------- (c) by hand


def test_c_interval_matches_scipy_by_hand(seed_ab: Comparison) -> None:
    a, b = _per_rep("virtio-blk", "iops"), _per_rep("vhost-blk", "iops")
    d = b - a
    n = d.size
    t = stats.t.ppf(0.975, n - 1)
    hw = t * d.std(ddof=1) / math.sqrt(n)
    row = _row(seed_ab, "iops")
    assert row["a_mean"] == pytest.approx(a.mean(), rel=1e-12)
    assert row["b_mean"] == pytest.approx(b.mean(), rel=1e-12)
    assert row["diff"] == pytest.approx(d.mean(), rel=1e-12)
    assert row["diff_lo"] == pytest.approx(d.mean() - hw, rel=1e-12)
    assert row["diff_hi"] == pytest.approx(d.mean() + hw, rel=1e-12)
    assert row["rel_pct"] == pytest.approx(100 * d.mean() / a.mean(), rel=1e-12)
    # Fieller: at either bound R the paired t statistic of d - R a is exactly t
    for bound in (row["rel_lo_pct"], row["rel_hi_pct"]):
        z = d - bound / 100 * a
        assert abs(z.mean()) / (z.std(ddof=1) / math.sqrt(n)) == pytest.approx(t, rel=1e-9)
    # another level takes its own quantile
    p90 = paired_difference(a, b, confidence=0.90)
    hw90 = stats.t.ppf(0.95, n - 1) * d.std(ddof=1) / math.sqrt(n)
    assert p90["diff_hi"] - p90["diff"] == pytest.approx(hw90, rel=1e-12)


def test_paired_difference_edge_cases() -> None:
    same = paired_difference([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same["verdict"] == "identical" and same["diff_lo"] == same["diff_hi"] == 0
    zeros = paired_difference([0.0, 0.0], [0.0, 0.0])  # 0 / 0: still identical, 0 %
    assert zeros["verdict"] == "identical" and zeros["rel_pct"] == 0
    shift = paired_difference([1.0, 2.0, 3.0], [3.0, 4.0, 5.0])  # constant: CI of width 0
    assert shift["verdict"] == "B higher" and shift["diff_lo"] == shift["diff_hi"] == 2
    rounding = paired_difference([67.37, 67.38], [67.37 * (1 + 1e-14), 67.38])
    assert rounding["verdict"] == "identical"
    noisy = paired_difference([100.0, 101.0, 102.0], [101.0, 100.0, 103.0])
    assert noisy["verdict"] == "not distinguishable"
    assert noisy["rel_lo_pct"] < 0 < noisy["rel_hi_pct"]  # Fieller agrees with the verdict
    vague = paired_difference([10.0, 20.0, 30.0], [11.0, 21.1, 31.2])  # A's mean ~ 0 at 95 %
    assert vague["verdict"] == "B higher" and math.isnan(vague["rel_lo_pct"])  # unbounded
    gaps = paired_difference([1.0, math.nan, 3.0], [2.0, 5.0, 4.0])
    assert gaps["n"] == 2
    one = paired_difference([1.0], [2.0])
    assert one["verdict"] == "no interval" and math.isnan(one["diff_lo"])


# --------------------------------------------------------------------------- (d) Welch


def test_d_pairing_is_sharper_than_welch(seed_ab: Comparison) -> None:
    runs = seed_ab.runs
    assert list(runs[runs["side"] == "A"]["iops"]) == list(_per_rep("virtio-blk", "iops"))
    for metric in ("iops", "lat_mean_us", "clat_p99_us"):
        a = runs[runs["side"] == "A"].sort_values("rep")[metric].to_numpy()
        b = runs[runs["side"] == "B"].sort_values("rep")[metric].to_numpy()
        n = a.size
        va, vb = a.var(ddof=1) / n, b.var(ddof=1) / n
        df = (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (n - 1))
        welch = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
        row = _row(seed_ab, metric)
        paired = (row["diff_hi"] - row["diff_lo"]) / 2
        assert paired < 0.5 * welch, metric


# --------------------------------------------------------------------------- (e) measured


def test_e_measured_pairs_every_point(batch1: MeasuredSet) -> None:
    c = compare_measured(batch1, BATCH_A, BATCH_B)
    t = c.to_dataframe()
    pts = batch1.points
    both = set(pts[pts["design"] == BATCH_A]["iodepth"]) & set(
        pts[pts["design"] == BATCH_B]["iodepth"]
    )
    assert both == {8, 32} and set(t["iodepth"]) == both
    assert set(t["metric"]) == set(METRICS) and set(t["verdict"]) <= set(VERDICTS)
    assert (t["n"] == 6).all() and c.unpaired.empty and c.kind == "measured"
    # the difference is the mean over repeats of B's run minus A's run of the same repeat
    at = pts[pts["iodepth"] == 32].pivot(index="repeat", columns="design", values="iops")
    d = (at[BATCH_B] - at[BATCH_A]).to_numpy()
    row = _row(c, "iops", iodepth=32)
    assert row["diff"] == pytest.approx(d.mean(), rel=1e-12)
    hw = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    assert row["diff_hi"] == pytest.approx(d.mean() + hw, rel=1e-12)
    assert c.verdict("iops", iodepth=32) == row["verdict"]
    assert "iodepth=8" in c.table() and "iodepth=32" in c.table()
    assert compare_measured(BATCH1, BATCH_A, BATCH_B).to_dataframe().equals(t)  # by path


def test_measured_unpaired_runs_are_listed(batch1: MeasuredSet) -> None:
    pts = batch1.points
    drop = (pts["design"] == BATCH_B) & (pts["iodepth"] == 8) & (pts["repeat"] == 3)
    part = replace(batch1, points=pts[~drop].reset_index(drop=True))
    c = compare_measured(part, BATCH_A, BATCH_B, metrics=["iops"])
    assert list(c.to_dataframe()["n"]) == [5, 6]
    lone = c.unpaired
    assert len(lone) == 1 and lone.iloc[0]["design"] == BATCH_A and lone.iloc[0]["repeat"] == 3
    assert "1 unpaired runs left out" in c.table()
    apart = pts.copy()
    apart.loc[apart["design"] == BATCH_B, "repeat"] += 100
    with pytest.raises(ConfigError, match="no run of virtio-blk-batched pairs"):
        compare_measured(replace(batch1, points=apart), BATCH_A, BATCH_B)


# --------------------------------------------------------------------------- (f) errors


@pytest.mark.parametrize(
    ("a", "b", "kw", "match"),
    [
        ("virtio-blk", "vhost-blk", {"reps": 1}, "reps must be"),
        ("virtio-blk", "vhost-blk", {"reps": True}, "reps must be"),
        ("virtio-blk", "no-such-design", {}, "unknown design 'no-such-design'"),
        ("virtio-blk", "virtio-blk", {}, "same scenario"),
        ("virtio-blk", 42, {}, "design names, Designs or Scenarios"),
        ("virtio-blk", "vhost-blk", {"confidence": 1.0}, "confidence"),
        ("virtio-blk", "vhost-blk", {"seed": -1}, "seed"),
        ("virtio-blk", "vhost-blk", {"percentiles": (0,)}, "percentiles"),
        ("virtio-blk", "vhost-blk", {"jobs": 0}, "jobs"),
        (Scenario(), "vhost-blk", {"workload": Workload()}, "workload goes with design names"),
        (Scenario(), "vhost-blk", {"profile": "seed-2011"}, "profile goes with design names"),
    ],
)
def test_f_compare_errors(a: Any, b: Any, kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        compare(a, b, number_ios=100, **kw)


def test_f_measured_errors(batch1: MeasuredSet) -> None:
    with pytest.raises(ConfigError, match="has no runs of vhost-blk"):
        compare_measured(batch1, BATCH_A, "vhost-blk")
    with pytest.raises(ConfigError, match="same design"):
        compare_measured(batch1, BATCH_A, BATCH_A)
    with pytest.raises(ConfigError, match="unknown design"):
        compare_measured(batch1, BATCH_A, "nope")
    with pytest.raises(ConfigError, match="no metric 'nope'"):
        compare_measured(batch1, BATCH_A, BATCH_B, metrics=["nope"])
    with pytest.raises(ConfigError, match="iodepth is not a metric"):
        compare_measured(batch1, BATCH_A, BATCH_B, metrics=["iodepth"])
    with pytest.raises(ConfigError, match="no fio runs"):
        compare_measured("validation/seed-2011", "virtio-blk", "vhost-blk")
    c = compare_measured(batch1, BATCH_A, BATCH_B, metrics=["iops"])
    with pytest.raises(ConfigError, match="matches 2 rows"):
        c.verdict("iops")
    with pytest.raises(ConfigError, match="no metric 'lat_mean_us'"):
        c.verdict("lat_mean_us")


# --------------------------------------------------------------------------- (g) executors


def test_g_jobs_do_not_change_the_result() -> None:
    w = Workload(rw="rw", bs=512, iodepth=2)  # two directions
    kw: dict[str, Any] = {"workload": w, "number_ios": 200, "reps": 3}
    serial = compare("virtio-blk", "vhost-blk", **kw)
    pooled = compare("virtio-blk", "vhost-blk", jobs=2, **kw)
    assert serial.to_dataframe().to_csv() == pooled.to_dataframe().to_csv()
    assert serial.to_json() == pooled.to_json()
    assert set(serial.to_dataframe()["dir"]) == {"read", "write"}
    with pytest.raises(ConfigError, match="matches 2 rows"):
        serial.verdict("iops")
    assert serial.verdict("iops", "write") in VERDICTS
    # a Scenario on one side: the design on the other runs in its workload and profile
    scen = Scenario(workload=replace(w, number_ios=200), design=design("virtio-blk"))
    swapped = compare(scen, "vhost-blk", reps=3)
    assert swapped.to_dataframe().to_csv() == serial.to_dataframe().to_csv()


def test_outputs_are_json_and_html(seed_ab: Comparison) -> None:
    doc = json.loads(seed_ab.to_json())
    assert doc["a"] == "virtio-blk" and doc["settings"]["reps"] == REPS
    assert len(doc["rows"]) == len(seed_ab.to_dataframe())
    assert doc["rows"][0].keys() >= {"metric", "dir", "diff", "diff_lo", "verdict", "iodepth"}
    page = seed_ab._repr_html_()
    assert page.startswith("<p>A = virtio-blk, B = vhost-blk") and "<table" in page
    assert "B higher" in page
