"""Disk models: the registry, service across block sizes (exact, interpolated, extrapolated)."""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import tomli_w

from vsim import Scenario, Workload, simulate
from vsim.cli import main
from vsim.demands import disk_demand_us
from vsim.errors import ProfileError
from vsim.models.disk import DISK_MODELS, DISK_PARAMS, Request, register_disk_model
from vsim.models.dists import Dist, sampler
from vsim.models.params import scalar
from vsim.models.service import ServiceTable, ServiceTimes
from vsim.models.size_curve import SizeCurve, isotonic, per_byte_slope
from vsim.profile import Profile, bundled_profiles, derived, load_profile, synthetic_profile
from vsim.sweep import load_table

SIZES_512_TO_1M = [512 * k for k in range(1, 2049)]  # every 512-byte multiple up to 1 MiB


def _emp(*q: float) -> Dist:
    """An empirical distribution with quantiles q at evenly spaced levels."""
    lv = np.linspace(0.0, 1.0, len(q))
    return Dist("empirical", levels=tuple(lv.tolist()), quantiles_us=tuple(float(v) for v in q))


def _local_doc() -> dict[str, Any]:
    return tomllib.loads(bundled_profiles()["local"].read_text())


# -- the curve across block sizes ------------------------------------------------------------


def test_measured_sizes_draw_exactly_as_before():
    """At a measured size the request draws from the measured distribution itself, from the
    same stream in the same order as one sampler per profile entry did before the curve."""
    svc = load_profile("local").disk.model.table.entries
    reqs = [Request(i % 3 == 0, 0, (512, 4096)[i % 2]) for i in range(5000)]
    times = ServiceTimes(ServiceTable.of(svc), np.random.default_rng(7))
    got = [times(r) for r in reqs]
    rng = np.random.default_rng(7)
    before = {k: sampler(d, rng) for k, d in svc.items()}  # the model before size curves
    want = [before[f"{'write' if r.write else 'read'}_{r.size}"]() for r in reqs]
    assert got == want


def test_curve_is_exact_at_measured_sizes_and_monotone_between_and_beyond():
    """Measured means that fall with bs (noise): the measured sizes keep their distributions;
    every other size from 512 to 1 MiB follows the isotonic envelope, whose mean never falls."""
    measured = {512: _emp(10, 30, 50), 4096: _emp(5, 20, 35), 65536: _emp(40, 60, 80)}
    curve = SizeCurve.fit(measured)
    for bs, d in measured.items():
        assert curve.at(bs) is d and not curve.extrapolated(bs)
    # the envelope pools 512 and 4096 (means 30 and 20) at 25, keeps 65536's 60
    assert [e.mean for e in curve.envelope] == pytest.approx([25.0, 25.0, 60.0])
    means = [curve.at(bs).mean for bs in SIZES_512_TO_1M if bs not in measured]
    assert np.all(np.diff(means) >= -1e-9 * max(means))
    assert means[-1] > 60.0  # rises beyond the largest size with the fitted slope
    assert isotonic([1.0, 3.0, 2.0, 4.0]) == [1.0, 2.5, 2.5, 4.0]
    assert isotonic([1.0, 2.0]) == [1.0, 2.0]  # already monotone: unchanged


def test_interpolation_midpoint_of_two_fixed_distributions_is_their_average():
    curve = SizeCurve.fit({512: Dist.fixed(10.0), 4096: Dist.fixed(30.0)})
    mid = curve.at((512 + 4096) // 2)
    assert mid.mean == pytest.approx(20.0)
    draw = sampler(mid, np.random.default_rng(1))
    assert {draw() for _ in range(100)} == {20.0}
    # Two empirical shapes: the blend's quantile at every level is the average of theirs.
    a, b = _emp(10, 20, 40), _emp(20, 30, 60)
    half = SizeCurve.fit({4096: a, 8192: b}).at(6144)
    assert half.quantiles_us == pytest.approx([15.0, 25.0, 50.0])
    assert not SizeCurve.fit({4096: a, 8192: b}).extrapolated(6144)


def test_interpolated_draw_is_one_uniform_per_request_from_the_disk_stream():
    svc = {"read_512": _emp(10, 20, 40), "read_4096": _emp(20, 30, 60)}
    times = ServiceTimes(ServiceTable.of(svc), np.random.default_rng(3))
    got = [times(Request(False, 0, 2048)) for _ in range(3000)]
    d = ServiceTable.of(svc).curves["read"].at(2048)
    rng = np.random.default_rng(3)
    u = np.concatenate([rng.random(1024) for _ in range(3)])[:3000]
    assert got == pytest.approx(np.interp(u, d.levels, d.quantiles_us).tolist(), rel=1e-12)


def test_extrapolation_above_shifts_by_the_fitted_slope_and_is_flagged():
    curve = SizeCurve.fit({4096: Dist.fixed(10.0), 8192: Dist.fixed(20.0)})
    assert curve.slope_us_per_byte == pytest.approx(10 / 4096)
    assert curve.at(16384).mean == pytest.approx(40.0)
    assert curve.at(1024).mean == pytest.approx(10.0)  # below: the smallest size's
    assert curve.extrapolated(16384) and curve.extrapolated(1024)
    assert not curve.extrapolated(4096) and not curve.extrapolated(6144)
    assert per_byte_slope([512, 4096], [30.0, 20.0]) == 0.0  # non-negative
    assert per_byte_slope([4096], [20.0]) == 0.0  # one size: no slope


def test_parametric_distributions_blend_through_their_quantile_functions():
    for d in (Dist.exponential(50.0), Dist("lognormal", mean_us=50, cv=0.5)):
        assert d.quantile_function().mean == pytest.approx(d.mean, rel=0.01)
    g = Dist("gamma", mean_us=80, cv=0.5)
    curve = SizeCurve.fit({512: Dist.exponential(40.0), 4096: g})
    assert curve.at(2304).mean == pytest.approx(60.0, rel=0.01)


def test_local_profile_curve_and_mva_mean():
    """The local profile (reads 512 measured slower than 4096) is monotone off its sizes; writes
    rise beyond 4 KiB; --method mva uses the same curve."""
    prof = load_profile("local")
    model = prof.disk.model
    for write in (False, True):
        means = [model.mean_us(write, bs, True) for bs in SIZES_512_TO_1M if bs not in (512, 4096)]
        assert np.all(np.diff(means) >= -1e-9 * max(means))
    assert model.mean_us(True, 1 << 20, True) > model.mean_us(True, 65536, True)
    w = Workload(rw="randwrite", bs=65536, iodepth=1, number_ios=10)
    demand, channels = disk_demand_us(prof, Scenario(workload=w, profile="local"))
    assert demand == pytest.approx(model.mean_us(True, 65536, True)) and channels == 2


def test_service_keys_are_checked():
    doc = _local_doc()
    doc["disk"]["service"]["read_4k"] = doc["disk"]["service"]["read_512"]
    with pytest.raises(ProfileError, match=r"^disk\.service\.read_4k: expected read, write"):
        Profile.from_dict(doc)


# -- the flag, the missing direction, the sweep across sizes ---------------------------------


def test_extrapolated_flag_in_rows():
    prof = load_profile("local")
    for bs, flag in ((4096, False), (2048, False), (16384, False), (1 << 20, True)):
        w = Workload(rw="randrw", bs=bs, iodepth=1, number_ios=300)
        r = simulate(Scenario(workload=w, profile="local"), seed=1, profile=prof)
        assert [row["extrapolated"] for row in r.rows()] == [flag, flag]


def _run(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("method", ["des", "mva"])
def test_a_direction_without_data_is_one_line(capsys, tmp_path: Path, method: str):  # type: ignore[no-untyped-def]
    doc = _local_doc()
    for k in [k for k in doc["disk"]["service"] if k.startswith("write")]:
        del doc["disk"]["service"][k]
    p = tmp_path / "reads.toml"
    p.write_text(tomli_w.dumps(doc))
    argv = ["sweep", "--profile", str(p), "--rw", "randwrite", "--ios", "50", "--method", method]
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(
        "vsim: error: disk.service has no distribution for writes"
        " (it covers reads of bs 512-262144)"
    )


def test_local_sweep_across_block_sizes(capsys, tmp_path: Path):  # type: ignore[no-untyped-def]
    """512 to 1M on the local profile (fio measured 512 to 256k): IOPS falls and bandwidth rises
    with bs beyond 4 KiB (within the points' own CIs at and below it, where the measured means
    are level), and only 1M, beyond the measured sizes, is marked extrapolated."""
    out = tmp_path / "sizes.csv"
    sizes = "512,4k,16k,64k,256k,1m"
    argv = ["sweep", "--profile", "local", "--bs", sizes, "--rw", "randread,randwrite"]
    code, _, err = _run(capsys, *argv, "--iodepth", "1", "--ios", "2000", "--out", str(out))
    assert code == 0 and "bs 1048576 lies outside the block sizes" in err
    df = load_table(out)
    assert df["extrapolated"].dtype == bool
    for _, g in df.groupby(["design", "rw"]):
        g = g.sort_values("bs")
        assert g["extrapolated"].tolist() == [False] * 5 + [True]
        iops, hw = g["iops"].to_numpy(), g["iops_hw_pct"].to_numpy() / 100
        assert np.all(iops[1:] <= iops[:-1] * (1 + hw[1:] + hw[:-1]))
        assert np.all(np.diff(iops[1:]) < 0)  # beyond 4 KiB every step costs IOPS
        assert np.all(np.diff(g["bw_kib_s"].to_numpy()) > 0)


# -- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Toy:
    """A toy disk: every request takes latency_us, one at a time."""

    name: ClassVar[str] = "toy"
    params: ClassVar[dict[str, str]] = {"latency_us": "service time of every request"}
    latency_us: float

    @classmethod
    def parse(cls, t: dict[str, Any], prov: dict[str, str]) -> Toy:
        return cls(scalar(t, "latency_us", "disk", prov))

    @property
    def channels(self) -> int:
        return 1

    def service(self, rng: np.random.Generator, span: int) -> Any:
        return lambda req: self.latency_us

    def mean_us(self, write: bool, bs: int, random: bool) -> float:
        return self.latency_us

    def extrapolated(self, write: bool, bs: int) -> bool:
        return bs > 4096


def test_a_new_disk_model_is_one_registered_class():
    register_disk_model(Toy)
    try:
        assert DISK_MODELS["toy"] is Toy and "toy" in DISK_PARAMS
        doc = synthetic_profile(disk={"model": "toy", "latency_us": derived({"value": 500.0})})
        prof = Profile.from_dict(doc, "toy")
        w = Workload(rw="randread", bs=8192, iodepth=1, number_ios=200)
        r = simulate(Scenario(workload=w, profile="toy"), seed=1, profile=prof)
        assert r.lat_ns.mean() / 1e3 == pytest.approx(500.0, rel=0.01)
        assert r.rows()[0]["extrapolated"] is True
        assert disk_demand_us(prof, Scenario(workload=w, profile="toy")) == (500.0, 1)
        bad = copy.deepcopy(doc)
        bad["disk"]["latency"] = derived({"value": 1.0})
        with pytest.raises(ProfileError, match=r"^disk\.latency: unknown key"):
            Profile.from_dict(bad)
        with pytest.raises(ValueError, match="already registered"):
            register_disk_model(type("Other", (), {"name": "toy"}))
    finally:
        DISK_MODELS.pop("toy")
    assert "toy" not in DISK_PARAMS
    with pytest.raises(ProfileError, match=r"^disk\.model: expected one of empirical, fixed"):
        Profile.from_dict(doc)


# -- calibration across sizes ----------------------------------------------------------------


def _fio_rows(bs: int, service_us: float, peak_iops: float) -> list[dict[str, Any]]:
    """fio rows of one read size at iodepth 1 and 8: QD1 clat around service_us."""
    ns = int(service_us * 1000)
    bins = {ns - ns // 20: 10, ns: 20, ns + ns // 20: 10}
    qd1 = {"dir": "read", "bs": bs, "iodepth": 1, "iops": 1e6 / service_us, "bins": bins}
    return [qd1, {**qd1, "iodepth": 8, "iops": peak_iops, "bins": bins}]


def test_calibrated_channels_ignore_large_block_sizes():
    """Channels from the sizes <= 4096 (2 here), though bandwidth caps the large sizes' peak
    IOPS (an estimate of 1); the profile's curve runs through every measured size."""
    from vsim.calibrate.traces import _disk

    rows = _fio_rows(512, 100.0, 20000) + _fio_rows(4096, 100.0, 20000)
    for bs in (65536, 262144, 1048576):
        rows += _fio_rows(bs, 100.0 + bs / 1000, 1e6 / (100.0 + bs / 1000))
    small = _disk(pd.DataFrame(rows[:4]), Path("ds"))
    disk = _disk(pd.DataFrame(rows), Path("ds"))
    assert small["channels"]["value"] == disk["channels"]["value"] == 2
    src = disk["channels"]["source"]
    assert "at bs <= 4096" in src and "measured at bs read 512, 4096, 65536, 262144, 1048576" in src
    for spec in disk["service"].values():
        spec.pop("fit_note", None)
    prof = Profile.from_dict(synthetic_profile(disk=disk), "cal")
    curve = prof.disk.model.table.curves["read"]
    assert curve.sizes == (512, 4096, 65536, 262144, 1048576)
    assert curve.slope_us_per_byte == pytest.approx(1e-3, rel=0.05)
    model = prof.disk.model
    assert model.mean_us(False, 2 << 20, True) > model.mean_us(False, 1 << 20, True)
