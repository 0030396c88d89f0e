"""Tests of fio's JSON / json+ formats: histogram buckets, percentiles, reading and writing."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsim.errors import ConfigError, FioFormatError
from vsim.fio import (
    FIO_IO_U_PLAT_NR,
    FIO_PERCENTILES,
    FioJob,
    LatencySummary,
    bins_from_ns,
    fio_json,
    latency_summary,
    percentile_key,
    percentiles_from_bins,
    plat_idx_to_val,
    plat_idx_to_val_array,
    plat_val_to_idx,
    plat_val_to_idx_array,
    read_fio_json,
    sample_from_bins,
)

DATA = Path(__file__).parent / "data" / "fio"
FIXTURE = DATA / "libaio-randread-qd4.json"


def _log_ns(path: Path) -> np.ndarray:
    """Latencies (ns) from a fio per-I/O log: ``time ms, value ns, ddir, bs, offset[, prio]``."""
    return np.loadtxt(path, delimiter=",", usecols=1, dtype=np.int64, ndmin=1)


def _assert_summary_equal(ours: dict[str, Any], fio: LatencySummary) -> None:
    """A summary built by latency_summary() equals the one fio wrote (fio prints 6 decimals)."""
    assert (ours["min"], ours["max"], ours["N"]) == (fio.min, fio.max, fio.n)
    assert ours["mean"] == pytest.approx(fio.mean, abs=1e-6, rel=1e-12)
    assert ours["stddev"] == pytest.approx(fio.stddev, abs=1e-6, rel=1e-9)
    if fio.percentiles:
        assert {float(k): v for k, v in ours["percentile"].items()} == fio.percentiles
    if fio.bins is not None:
        assert {int(k): v for k, v in ours["bins"].items()} == fio.bins


# --------------------------------------------------------------------------- histogram buckets


def test_percentile_keys_and_default_list() -> None:
    assert [percentile_key(p) for p in (1, 99.5, 99.99)] == ["1.000000", "99.500000", "99.990000"]
    assert len(FIO_PERCENTILES) == 17
    assert tuple(sorted(FIO_PERCENTILES)) == FIO_PERCENTILES


def test_small_values_are_their_own_bucket() -> None:
    for v in range(128):
        assert plat_val_to_idx(v) == v
        assert plat_idx_to_val(v) == v


@pytest.mark.parametrize(
    ("ns", "idx"),
    [
        # msb 7 (error_bits 1, base 128): offset = (val >> 1) & 63
        (128, 128),
        (129, 128),
        (130, 129),
        (200, 164),
        (255, 191),
        # msb 8 (error_bits 2, base 192)
        (256, 192),
        (259, 192),
        (260, 193),
        (300, 203),
        (511, 255),
        (512, 256),
        (1023, 319),
        (1024, 320),
        # group boundaries 2^m land on (m - 5) * 64
        (1 << 20, 15 * 64),
        ((1 << 20) - 1, 15 * 64 - 1),
        # the last group (msb 33) ends at 1855; anything larger is clamped there
        ((1 << 33), 1792),
        ((1 << 34) - 1, 1855),
        (1 << 34, 1855),
        (1 << 62, 1855),
    ],
)
def test_val_to_idx_by_hand(ns: int, idx: int) -> None:
    assert plat_val_to_idx(ns) == idx
    assert plat_val_to_idx_array(np.array([ns]))[0] == idx


@pytest.mark.parametrize(
    ("idx", "ns"),
    [
        # base + (k + 0.5) * 2^error_bits, the middle of the bucket
        (128, 129),
        (129, 131),
        (164, 201),
        (191, 255),
        (192, 258),
        (203, 302),
        (255, 510),
        (256, 516),
        (1855, (1 << 33) + 127 * (1 << 26)),
    ],
)
def test_idx_to_val_by_hand(idx: int, ns: int) -> None:
    assert plat_idx_to_val(idx) == ns
    assert plat_idx_to_val_array(np.array([idx]))[0] == ns


def test_every_bucket_value_maps_back_to_its_bucket() -> None:
    idx = np.arange(FIO_IO_U_PLAT_NR)
    vals = plat_idx_to_val_array(idx)
    assert [plat_idx_to_val(i) for i in idx] == vals.tolist()
    np.testing.assert_array_equal(plat_val_to_idx_array(vals), idx)
    assert np.all(np.diff(vals) > 0)


def test_bucket_index_errors() -> None:
    with pytest.raises(ConfigError):
        plat_idx_to_val(FIO_IO_U_PLAT_NR)
    with pytest.raises(ConfigError):
        plat_idx_to_val(-1)
    with pytest.raises(ConfigError):
        plat_idx_to_val_array([0, FIO_IO_U_PLAT_NR])
    with pytest.raises(ConfigError, match=">= 0"):
        plat_val_to_idx(-5)
    with pytest.raises(ConfigError, match=">= 0"):
        plat_val_to_idx_array([3, -1])


ns_values = st.integers(min_value=0, max_value=(1 << 40))


@given(st.lists(ns_values, min_size=2, max_size=50))
def test_val_to_idx_is_monotone_and_vectorised(values: list[int]) -> None:
    values.sort()
    scalar = [plat_val_to_idx(v) for v in values]
    assert scalar == sorted(scalar)
    assert plat_val_to_idx_array(np.array(values, dtype=np.int64)).tolist() == scalar


@given(st.integers(min_value=0, max_value=(1 << 34) - 1))
def test_bucket_value_is_within_fio_error(ns: int) -> None:
    mid = plat_idx_to_val(plat_val_to_idx(ns))
    assert abs(mid - ns) <= max(ns, 128) / 128  # half a bucket: 1/128 of the value at most


# --------------------------------------------------------------------------- summaries


def test_latency_summary_of_a_known_sample() -> None:
    s = latency_summary(np.array([300, 100, 200]), with_bins=True)
    assert (s["min"], s["max"], s["mean"], s["stddev"], s["N"]) == (100, 300, 200.0, 100.0, 3)
    # buckets: 100 exact, 200 -> idx 164 -> 201, 300 -> idx 203 -> 302
    assert s["bins"] == {"100": 1, "201": 1, "302": 1}
    pct = s["percentile"]
    assert list(pct) == [percentile_key(p) for p in FIO_PERCENTILES]
    assert pct["1.000000"] == 100  # 1 % of 3 = 0.03: the first sample
    assert pct["30.000000"] == 100  # 0.9 samples
    assert pct["40.000000"] == 201  # 1.2 samples
    assert pct["70.000000"] == 302  # 2.1 samples
    assert pct["99.990000"] == 302
    json.dumps(s)  # JSON-ready


def test_latency_summary_edge_cases() -> None:
    assert latency_summary([], with_bins=True) == {
        "min": 0,
        "max": 0,
        "mean": 0.0,
        "stddev": 0.0,
        "N": 0,
    }
    one = latency_summary([5000], with_bins=False)
    assert one["stddev"] == 0.0 and one["N"] == 1 and "bins" not in one
    assert set(one["percentile"].values()) == {plat_idx_to_val(plat_val_to_idx(5000))}
    assert "percentile" not in latency_summary([1, 2], with_bins=True, percentiles=None)
    # floats are rounded to whole nanoseconds, as fio records them
    assert latency_summary([1.4, 2.6], with_bins=True)["bins"] == {"1": 1, "3": 1}
    with pytest.raises(ConfigError, match=">= 0"):
        latency_summary([-1.0, 2.0], with_bins=False)
    with pytest.raises(ConfigError, match="finite"):
        latency_summary([np.nan], with_bins=False)


def test_percentiles_from_bins_small_sample() -> None:
    bins = bins_from_ns(np.arange(1, 101))  # 1..100 ns: one exact bucket each
    pct = percentiles_from_bins(bins)
    # compiled fio: threshold (N * 0.01L) * p, so p=30 of N=100 needs exactly 30 samples
    assert pct[30.0] == 30 and pct[50.0] == 50 and pct[60.0] == 60 and pct[99.0] == 99
    assert pct[99.5] == 100 and pct[99.99] == 100
    assert percentiles_from_bins({}) == {}
    assert percentiles_from_bins({"7": 2}, [50]) == {50.0: 7}  # json string keys
    assert list(percentiles_from_bins(bins, [90, 10])) == [10.0, 90.0]  # sorted, like fio
    with pytest.raises(ConfigError, match="within"):
        percentiles_from_bins(bins, [0.0])
    with pytest.raises(ConfigError, match="within"):
        percentiles_from_bins(bins, [100.5])


def test_sample_from_bins_expands_counts() -> None:
    rng = np.random.default_rng(1)
    ns = rng.lognormal(11, 0.5, size=5000)
    sample = sample_from_bins(bins_from_ns(ns))
    assert sample.size == ns.size and np.all(np.diff(sample) >= 0)
    q = np.quantile(np.rint(ns), [0.1, 0.5, 0.9])
    np.testing.assert_allclose(np.quantile(sample, [0.1, 0.5, 0.9]), q, rtol=1 / 128)


# --------------------------------------------------------------------------- reading real output


@pytest.fixture(scope="module")
def fixture_jobs() -> list[FioJob]:
    return read_fio_json(FIXTURE)


def test_fixture_options_and_workload(fixture_jobs: list[FioJob]) -> None:
    small, large = fixture_jobs
    assert (small.jobname, large.jobname) == ("qd4-n100", "qd4-n2000")
    assert small.options["ioengine"] == "libaio" and small.options["lat_percentiles"] == "1"
    assert "lat_percentiles" not in large.options  # job options over global options only
    assert (small.rw, small.bs, small.iodepth, small.numjobs) == ("randread", 4096, 4, 1)
    assert (small.ioengine, small.direct, small.size) == ("libaio", True, 400 * 1024)
    assert small.runtime is None and small.ramp_time == 0.0 and small.number_ios is None
    assert list(small.directions) == ["read"] and small.write is None
    w = large.workload()
    assert (w.rw, w.bs, w.iodepth, w.size) == ("randread", 4096, 4, 8000 * 1024)
    assert large.workload(iodepth=8).iodepth == 8


def test_fixture_results(fixture_jobs: list[FioJob]) -> None:
    for job, n in zip(fixture_jobs, (100, 2000), strict=True):
        r = job.read
        assert r is not None
        assert r.total_ios == n == r.clat.n == r.lat.n == r.slat.n
        assert r.io_bytes == n * 4096 and r.bw == r.bw_bytes // 1024
        assert r.iops == pytest.approx(1000 * n / r.runtime_ms, rel=1e-6)
        assert job.iops == r.iops
        assert r.clat.bins is not None and sum(r.clat.bins.values()) == n
        assert r.slat.percentiles == {} and r.slat.bins is None  # fio's default
        assert r.clat.min <= r.clat.percentile(50) <= r.clat.max * 1.01
        assert r.clat.sample().size == n
        assert r.lat.mean == pytest.approx(r.slat.mean + r.clat.mean, abs=1.0)


def test_fixture_percentiles_are_reproduced_from_fio_bins(fixture_jobs: list[FioJob]) -> None:
    # Both jobs hit the cases where fio's arithmetic matters (N=100: p=30, 60; N=2000: 99.95)
    checked = 0
    for job in fixture_jobs:
        assert job.read is not None
        for summary in (job.read.clat, job.read.lat):
            if summary.bins is not None:
                assert percentiles_from_bins(summary.bins) == summary.percentiles
                checked += 1
    assert checked == 3


def test_fixture_summaries_are_reproduced_from_fio_logs(fixture_jobs: list[FioJob]) -> None:
    read = fixture_jobs[0].read
    assert read is not None
    for name, fio_summary in (("slat", read.slat), ("clat", read.clat), ("lat", read.lat)):
        ns = _log_ns(DATA / f"qd4-n100_{name}.1.log")
        with_pct = FIO_PERCENTILES if fio_summary.percentiles else None
        ours = latency_summary(ns, with_bins=True, percentiles=with_pct)
        _assert_summary_equal(ours, fio_summary)


def test_source_kinds_and_leading_noise() -> None:
    text = FIXTURE.read_text()
    noisy = "fio: this platform does not support process shared mutexes, forcing use of threads\n"
    expected = read_fio_json(FIXTURE)
    assert read_fio_json(str(FIXTURE)) == expected
    assert read_fio_json(text) == expected
    assert read_fio_json(noisy + text) == expected
    assert read_fio_json((noisy + text + "\nfio: trailing line\n").encode()) == expected
    assert read_fio_json(json.loads(text)) == expected


def _broken(edit: Any) -> str:
    doc = json.loads(FIXTURE.read_text())
    edit(doc)
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("hello, no json here\n{", "not fio JSON: Expecting"),
        ("just text", "cannot read fio output"),
        ("{\n", "not fio JSON"),
        (b"\xff\xfe{", "not UTF-8"),
        ('{"fio version": "fio-3.33"}', 'no "jobs"'),
        ('{"jobs": {}}', "jobs is not a list"),
        ('{"jobs": [{"read": {}}]}', "missing jobs[0].jobname"),
        (_broken(lambda d: d["jobs"][0]["read"].pop("clat_ns")), "missing jobs[0].read.clat_ns"),
        (
            _broken(lambda d: d["jobs"][1]["read"]["lat_ns"].pop("mean")),
            "missing jobs[1].read.lat_ns.mean",
        ),
        (_broken(lambda d: d["jobs"][0]["read"].update(iops="fast")), "jobs[0].read.iops is not"),
        (
            _broken(lambda d: d["jobs"][0]["read"]["clat_ns"]["bins"].update(x=1)),
            "jobs[0].read.clat_ns: bad percentile or bin key",
        ),
        (_broken(lambda d: d["jobs"][0].update(read=[])), "jobs[0].read is not a JSON object"),
        (
            _broken(lambda d: [d["jobs"][0].pop(k) for k in ("read", "write", "trim")]),
            "missing jobs[0].read (no read",
        ),
        (
            _broken(lambda d: d["jobs"][0]["job options"].update(iodepth="deep")),
            "jobs[0]: cannot read iodepth='deep'",
        ),
        (_broken(lambda d: d["global options"].update(bs="4q")), "jobs[0]: cannot read size"),
        (_broken(lambda d: d["global options"].update(runtime="1x")), "runtime='1x' as a time"),
        ("[1, 2]\n", "no line starts with '{'"),
    ],
)
def test_malformed_input_names_the_problem(source: str | bytes, message: str) -> None:
    with pytest.raises(FioFormatError) as info:
        read_fio_json(source)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_missing_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FioFormatError, match="cannot read fio output"):
        read_fio_json(tmp_path / "absent.json")


def test_option_parsing_variants() -> None:
    doc = json.loads(FIXTURE.read_text())
    doc["global options"] = {}
    doc["jobs"] = doc["jobs"][:1]
    doc["jobs"][0]["job options"] = {
        "readwrite": "randrw:8",
        "blocksize": ",8k",
        "rwmixwrite": "30",
        "runtime": "1500ms",
        "ramp_time": "2m",
        "size": "50%",
        "buffered": "0",
        "number_ios": "1000",
    }
    (job,) = read_fio_json(doc)
    assert (job.rw, job.bs, job.rwmixread) == ("randrw", 8192, 70)
    assert (job.runtime, job.ramp_time, job.size, job.direct) == (1.5, 120.0, None, True)
    assert job.number_ios == 1000 and job.ioengine is None and job.iodepth == 1
    doc["jobs"][0]["job options"] = {}
    (job,) = read_fio_json(doc)  # fio's defaults
    assert (job.rw, job.bs, job.rwmixread, job.direct, job.runtime) == (
        "read",
        4096,
        50,
        False,
        None,
    )


# --------------------------------------------------------------------------- writing


def _samples(seed: int, n: int, scale: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "slat_ns": rng.exponential(5_000.0, size=n),
        "clat_ns": rng.gamma(4.0, scale / 4.0, size=n),
    }


def test_fio_json_round_trip() -> None:
    read, write = _samples(1, 3000, 80_000.0), _samples(2, 1000, 30_000.0)
    doc = fio_json(
        [
            {
                "jobname": "vsim",
                "elapsed_s": 0.25,
                "options": {"rw": "randrw", "rwmixread": 75, "iodepth": 4},
                "read": read,
                "write": write,
            }
        ],
        global_options={"bs": "4k", "ioengine": "libaio", "direct": 1},
    )
    text = json.dumps(doc)
    assert json.dumps(fio_json([{"jobname": "x", "elapsed_s": 1.0}])) == json.dumps(
        fio_json([{"jobname": "x", "elapsed_s": 1.0}])
    )  # deterministic: no wall clock in the output
    assert doc["fio version"].startswith("vsim-") and doc["timestamp"] == 0
    assert doc["jobs"][0]["job options"]["iodepth"] == "4"  # strings, as fio writes them
    assert doc["jobs"][0]["trim"]["total_ios"] == 0

    (job,) = read_fio_json(text)
    assert (job.rw, job.bs, job.iodepth, job.rwmixread, job.direct) == ("randrw", 4096, 4, 75, True)
    assert list(job.directions) == ["read", "write"]
    for d, samples in (("read", read), ("write", write)):
        stats = job.directions[d]
        n = samples["clat_ns"].size
        assert stats.total_ios == n and stats.io_bytes == n * 4096
        assert stats.iops == pytest.approx(n / 0.25) and stats.runtime_ms == 250
        assert stats.bw_bytes == int(n * 4096 / 0.25) and stats.bw == stats.bw_bytes // 1024
        clat = np.rint(samples["clat_ns"]).astype(np.int64)
        lat = clat + np.rint(samples["slat_ns"]).astype(np.int64)
        for summary, ns in ((stats.clat, clat), (stats.lat, lat)):
            assert summary.n == n and summary.min == ns.min() and summary.max == ns.max()
            assert summary.mean == pytest.approx(ns.mean(), rel=1e-12)
            assert summary.stddev == pytest.approx(ns.std(ddof=1), rel=1e-12)
            assert summary.bins == bins_from_ns(ns)
            assert summary.percentiles == percentiles_from_bins(bins_from_ns(ns))
        assert stats.slat.n == n and stats.slat.percentiles  # vsim writes slat percentiles too
    assert job.iops == pytest.approx(4000 / 0.25)


def test_fio_json_options() -> None:
    clat = np.full(10, 50_000.0)
    doc = fio_json(
        [{"jobname": "j", "elapsed_s": 0.001, "read": {"clat_ns": clat, "bs": 512}}],
        json_plus=False,
        percentiles=[50, 99],
        timestamp=1_300_000_000,
    )
    read = doc["jobs"][0]["read"]
    assert "bins" not in read["clat_ns"] and list(read["clat_ns"]["percentile"]) == [
        "50.000000",
        "99.000000",
    ]
    assert read["slat_ns"]["N"] == 0 and read["lat_ns"] == read["clat_ns"]  # no slat: lat = clat
    assert read["io_bytes"] == 5120 and "global options" not in doc
    assert doc["time"] == "Sun Mar 13 07:06:40 2011"
    (job,) = read_fio_json(copy.deepcopy(doc))
    assert job.read is not None and job.read.clat.bins is None
    with pytest.raises(FioFormatError, match="no json\\+ bins"):
        job.read.clat.sample()


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"jobname": "j", "elapsed_s": 1.0, "read": {"clat_ns": [1.0]}}, "give bs"),
        (
            {"jobname": "j", "elapsed_s": 0.0, "read": {"clat_ns": [1.0], "bs": 4096}},
            "elapsed_s must be > 0",
        ),
        (
            {
                "jobname": "j",
                "elapsed_s": 1.0,
                "read": {"clat_ns": [1, 2], "slat_ns": [1], "bs": 512},
            },
            "jobs[0].read: slat_ns has 1 samples, clat_ns 2",
        ),
        ({"jobname": "j", "elapsed_s": 1.0, "read": {"clat_ns": [-3], "bs": 512}}, ">= 0"),
        ({"jobname": "j"}, "jobs[0]: missing 'elapsed_s'"),
        (
            {"jobname": "j", "elapsed_s": 1.0, "read": {"bs": 512}},
            "jobs[0].read: missing 'clat_ns'",
        ),
    ],
)
def test_fio_json_rejects_bad_input(job: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        fio_json([job])
    assert message in str(info.value)


# --------------------------------------------------------------------------- live fio


def _run_fio(tmp_path: Path, engine: str, direct: int) -> subprocess.CompletedProcess[str]:
    jobfile = tmp_path / "live.fio"
    jobfile.write_text(
        "[global]\n"
        f"ioengine={engine}\ndirect={direct}\nrw=randread\nbs=4k\niodepth=4\n"
        f"filename={tmp_path / 'data.bin'}\n"
        "[n100]\nsize=400k\nlat_percentiles=1\nwrite_lat_log=n100\n"
        "[n2000]\nstonewall\nsize=8000k\n"
    )
    return subprocess.run(
        ["fio", jobfile.name, "--output-format=json+"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed (apt install fio)")
def test_live_fio_is_reproduced(tmp_path: Path) -> None:
    proc = _run_fio(tmp_path, "libaio", 1)
    if proc.returncode != 0:  # no O_DIRECT or no libaio here: buffered synchronous I/O will do
        proc = _run_fio(tmp_path, "psync", 0)
    assert proc.returncode == 0, proc.stderr
    jobs = read_fio_json(proc.stdout)
    assert [j.jobname for j in jobs] == ["n100", "n2000"]
    for job, n in zip(jobs, (100, 2000), strict=True):
        r = job.read
        assert r is not None and r.total_ios == n
        assert r.clat.bins is not None and sum(r.clat.bins.values()) == r.total_ios
        assert percentiles_from_bins(r.clat.bins) == r.clat.percentiles
    small = jobs[0].read
    assert small is not None and small.lat.bins is not None
    assert percentiles_from_bins(small.lat.bins) == small.lat.percentiles
    # fio's own per-I/O logs, summarised by vsim, give fio's summary exactly
    for name, summary in (("clat", small.clat), ("lat", small.lat)):
        ours = latency_summary(_log_ns(tmp_path / f"n100_{name}.1.log"), with_bins=True)
        _assert_summary_equal(ours, summary)


def test_iodepth_batch_submit_round_trips_through_fio_json() -> None:
    """fio's iodepth_batch_submit (alias iodepth_batch) in job options sets the workload's;
    vsim's own fio JSON writes it when it is not fio's default."""
    from vsim import Scenario, Workload, design, simulate
    from vsim.profile import Profile, synthetic_profile

    w = Workload(iodepth=8, iodepth_batch_submit=4, number_ios=200)
    prof = Profile.from_dict(synthetic_profile(), "test")
    r = simulate(Scenario(workload=w, design=design("virtio-blk"), profile="test"), profile=prof)
    (job,) = read_fio_json(r.to_fio_json())
    assert job.options["iodepth_batch_submit"] == "4"
    assert job.workload().iodepth_batch_submit == 4
    doc = r.to_fio_json()
    doc = json.loads(doc) if isinstance(doc, str) else copy.deepcopy(doc)
    opts = doc["jobs"][0]["job options"]
    del opts["iodepth_batch_submit"]
    opts["iodepth_batch"] = "8"  # fio's older name
    assert read_fio_json(doc)[0].workload().iodepth_batch_submit == 8
