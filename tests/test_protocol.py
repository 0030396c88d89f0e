"""`vsim measure --precision` and `--placement`: the stop rule, rounds, placements, the summary."""

from __future__ import annotations

import json
import math
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import vsim.measure.campaign as campaign
from vsim.cli import main
from vsim.errors import ConfigError
from vsim.measure import Campaign, layout, load_measured, measure, record_fio_json
from vsim.measure.dataset import POINT_KEYS
from vsim.measure.placement import check_cpus, parse_placement, placement_tag, resolve_placement
from vsim.measure.protocol import (
    ROUND_KEYS,
    ci_pct,
    converged,
    cv_pct,
    drift_pct,
    open_points,
    parse_duration,
    round_order,
    stop_reason,
)
from vsim.scenario import Workload
from vsim.validate import validate

# --------------------------------------------------------------------------- the stop rule


def _rows(label: str, design: str, iops: list[float], iodepth: int = 1) -> list[dict[str, Any]]:
    """Tidy rows of one design at one point: one run per value, in round order."""
    return [
        {
            "design": design,
            "rw": "randread",
            "dir": "read",
            "bs": 4096,
            "iodepth": iodepth,
            "numjobs": 1,
            "rwmixread": 50,
            "placement": label,
            "repeat": r,
            "iops": v,
        }
        for r, v in enumerate(iops)
    ]


def _key(label: str, iodepth: int = 1) -> tuple[Any, ...]:
    return ("randread", 4096, iodepth, 1, 50, label)


TIGHT = [1000.0, 1001.0, 999.0, 1000.5]  # CI +-0.1 %
WIDE = [800.0, 1200.0, 900.0, 1100.0]  # CI +-29 %


def test_a_tight_point_closes_and_a_wide_one_stays_open() -> None:
    df = pd.DataFrame(
        _rows("free", "virtio-blk", TIGHT)
        + _rows("free", "vhost-blk", TIGHT)
        + _rows("0:1", "virtio-blk", TIGHT)
        + _rows("0:1", "vhost-blk", WIDE)  # one wide design keeps its whole point open
    )
    assert open_points(df, 0.03) == {_key("0:1")}
    assert open_points(df, 0.3) == set()  # +-29 % is within 30 %
    assert ci_pct(TIGHT) < 0.2 and 28 < ci_pct(WIDE) < 30


def test_one_run_is_never_enough_and_min_runs_holds_points_open() -> None:
    one = pd.DataFrame(_rows("free", "virtio-blk", [1000.0]))
    assert open_points(one, 0.5) == {_key("free")}
    assert not converged([1000.0], 0.5) and not converged([1000.0, 1000.0], 0.5, min_runs=3)
    assert converged([1000.0, 1000.0], 0.01)  # a zero-width CI
    two = pd.DataFrame(_rows("free", "virtio-blk", TIGHT[:2]))
    assert open_points(two, 0.03) == set()
    assert open_points(two, 0.03, min_runs=3) == {_key("free")}


def test_a_point_lacking_a_design_or_without_rows_is_open() -> None:
    df = pd.DataFrame(_rows("free", "virtio-blk", TIGHT))
    assert open_points(df, 0.03) == set()
    assert open_points(df, 0.03, designs=("virtio-blk", "vhost-blk")) == {_key("free")}
    empty = pd.DataFrame(columns=["design", "dir", *ROUND_KEYS, "iops"])
    assert open_points(empty, 0.03, universe=[_key("free"), _key("0:1")]) == {
        _key("free"),
        _key("0:1"),
    }
    with pytest.raises(ConfigError, match="precision must be"):
        open_points(df, 0.0)


def _stop(**kw: Any) -> str | None:
    args = {
        "rounds": 3,
        "open_count": 1,
        "min_rounds": 3,
        "max_rounds": 50,
        "elapsed_s": 10.0,
        "budget_s": None,
        "last_round_s": 4.0,
        "last_round_runs": 4,
        "next_round_runs": 4,
    }
    return stop_reason(**{**args, **kw})


def test_stop_reason() -> None:
    assert _stop() is None  # a point is open: another round
    assert _stop(open_count=0) == "converged"  # all points closed: stop
    assert _stop(open_count=0, rounds=2) is None  # but never before the minimum rounds
    assert _stop(rounds=50) == "max-repeat"
    assert _stop(open_count=0, rounds=50) == "converged"
    # budget: 10 s spent + 4 runs at 1 s each = 14 s
    assert _stop(budget_s=14.5) is None
    assert _stop(budget_s=13.5) == "budget"
    assert _stop(budget_s=11.5, next_round_runs=1) is None  # a smaller next round still fits
    assert _stop(rounds=0, budget_s=0.001, last_round_runs=0) is None  # the first always runs


def test_rounds_alternate_the_designs_abba() -> None:
    points, designs = ["p1", "p2", "p3"], ["A", "B"]
    assert round_order(0, points, designs, {"p1", "p3"}) == [
        ("p1", "A"), ("p1", "B"), ("p3", "A"), ("p3", "B"),
    ]  # fmt: skip
    assert round_order(1, points, designs, {"p1", "p3"}) == [
        ("p1", "B"), ("p1", "A"), ("p3", "B"), ("p3", "A"),
    ]  # fmt: skip
    c = Campaign(iodepths=(1, 8), placements=("free", "0:1"), precision=0.03)
    keys = {p.key for p in c.points()}
    plan0 = [(p.workload.iodepth, p.placement, d) for p, d in c.round_plan(0, keys)]
    plan1 = [(p.workload.iodepth, p.placement, d) for p, d in c.round_plan(1, {_key("0:1", 8)})]
    assert plan0[:4] == [
        (1, "free", "virtio-blk"), (1, "free", "vhost-blk"),
        (1, "0:1", "virtio-blk"), (1, "0:1", "vhost-blk"),
    ]  # fmt: skip
    assert len(plan0) == 8 and plan1 == [(8, "0:1", "vhost-blk"), (8, "0:1", "virtio-blk")]


def test_drift_cv_and_duration() -> None:
    rounds = np.arange(10)
    values = 1000.0 + 10.0 * rounds  # +10 IOPS a round: +90 over the campaign, mean 1045
    assert drift_pct(values, rounds) == pytest.approx(100 * 90 / 1045)
    rng = np.random.default_rng(3)
    noisy = 1000.0 - 5.0 * rounds + rng.normal(0, 0.01, 10)
    assert drift_pct(noisy, rounds) == pytest.approx(100 * -45 / 977.5, rel=1e-3)
    assert drift_pct(np.full(10, 7.0), rounds) == 0.0
    assert math.isnan(drift_pct([5.0], [0])) and math.isnan(drift_pct([5.0, 6.0], [2, 2]))
    assert cv_pct([90.0, 110.0]) == pytest.approx(100 * np.std([90, 110], ddof=1) / 100)
    assert math.isnan(cv_pct([1.0]))
    assert [parse_duration(t) for t in ("90", "90s", "5m", "1.5h", " 2 m ")] == [
        90,
        90,
        300,
        5400,
        120,
    ]
    for bad in ("", "5d", "-1", "0", "m"):
        with pytest.raises(ConfigError, match="budget"):
            parse_duration(bad)


# --------------------------------------------------------------------------- placements


def test_placement_labels_resolve_per_design() -> None:
    assert resolve_placement("free", 1) == (None, None)
    assert resolve_placement("FREE", 2) == (None, None)
    assert resolve_placement("0:1", 1) == (0, (1,))
    assert resolve_placement("0:1", 2) == (0, (1, 1))  # more threads repeat the last entry
    assert resolve_placement("0:1:0", 1) == (0, (1,))  # fewer threads ignore the extra ones
    assert resolve_placement("0:1:0", 2) == (0, (1, 0))
    assert parse_placement("00:1") == "0:1"
    assert placement_tag("free") == "" and placement_tag("0:1:0") == "-p0.1.0"
    for bad in ("0", "", "a:b", "0:-1", "0:1:", "0,1", ":1"):
        with pytest.raises(ConfigError, match="expected free or G:B1"):
            parse_placement(bad)
    with pytest.raises(ConfigError, match="CPU 5 does not exist on this machine"):
        check_cpus("0:5", {0, 1}, "this machine")
    check_cpus("1:0:1", {0, 1}, "this machine")
    with pytest.raises(ConfigError, match="placement 0:1 is given twice"):
        Campaign(placements=("0:1", "free", "0:1"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--placement", "0:99"], "--placement 0:99: CPU 99 does not exist on this machine"),
        (["--placement", "free,zero"], "--placement 'zero': expected free or G:B1"),
        (["--placement", "0:1", "--cpus", "0,1"], "give --cpus or --placement, not both"),
        (["--cpus", "0"], "--cpus 0: expected G,B"),
        (["--budget", "5m"], "--budget needs --precision"),
        (["--max-repeat", "5"], "--max-repeat needs --precision"),
        (["--precision", "0.03", "--repeat", "1"], "--repeat must be >= 2 with a precision"),
        (["--precision", "0"], "--precision must be a finite number > 0"),
        (["--precision", "0.1", "--budget", "soon"], "--budget: cannot read 'soon'"),
        (["--precision", "0.1", "--max-repeat", "2"], "--max-repeat must be >= repeat (3)"),
        (["--fio", "--precision", "0.1"], "--precision applies to the reference backend"),
        (["--fio", "--placement", "0:1"], "--placement applies to the reference backend"),
    ],
)
def test_bad_protocol_input(argv, message, tmp_path: Path, capsys):  # type: ignore[no-untyped-def]
    code = main(["measure", "--iodepth", "1", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o").exists()


def _write_manifest(ds: Path, rows: list[str], header: str) -> None:
    (ds / "manifest.csv").write_text(header + "\n" + "\n".join(rows) + "\n")


def test_manifest_and_points_placement_column(tmp_path: Path) -> None:
    pts = tmp_path / "p"
    pts.mkdir()
    (pts / "points.csv").write_text(
        "design,rw,dir,bs,iodepth,placement,iops\n"
        "virtio-blk,randread,read,4k,1,,1000\n"
        "virtio-blk,randread,read,4k,1,0:1,900\n"
        "virtio-blk,randread,read,4k,1,free,1010\n"
    )
    ms = load_measured(pts)
    assert list(ms.points["placement"]) == ["free", "0:1", "free"]
    assert list(ms.points["repeat"]) == [0, 0, 1]  # free and 0:1 are different points
    (pts / "points.csv").write_text(
        "design,rw,dir,bs,iodepth,placement,iops\nvirtio-blk,randread,read,4k,1,0-1,1000\n"
    )
    with pytest.raises(ConfigError, match=r"points.csv line 2: placement '0-1': expected") as e:
        load_measured(pts)
    assert "\n" not in str(e.value)
    old = tmp_path / "old"
    old.mkdir()
    (old / "points.csv").write_text("design,rw,dir,bs,iodepth,iops\nvhost-blk,read,read,512,1,5\n")
    assert list(load_measured(old).points["placement"]) == ["free"]  # absent: free


def test_manifest_placement_column_and_older_manifests(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    (ds / "runs").mkdir(parents=True)
    w = Workload(runtime=1.0)
    for name in ("a", "b"):
        doc = record_fio_json(_fake_record(1000.0), w, "virtio-blk", "native")
        (ds / "runs" / f"{name}.json").write_text(json.dumps(doc))
    header = "file,design,repeat,calibration,note"
    _write_manifest(ds, ["runs/a.json,virtio-blk,0,,", "runs/b.json,virtio-blk,1,,"], header)
    assert layout.manifest_rows(ds / "manifest.csv")[0] == [
        "runs/a.json", "virtio-blk", "0", "", "", "free", "",
    ]  # fmt: skip
    assert list(load_measured(ds).points["placement"]) == ["free", "free"]
    rows = ["runs/a.json,virtio-blk,0,,,0:1,1.5", "runs/b.json,virtio-blk,0,,,free,"]
    _write_manifest(ds, rows, ",".join(layout.MANIFEST_HEADER))
    pts = load_measured(ds).points
    assert list(pts["placement"]) == ["0:1", "free"]  # one repeat index, two points
    assert pts.groupby(list(POINT_KEYS)).ngroups == 2
    _write_manifest(ds, ["runs/a.json,virtio-blk,0,,,0:1:x"], ",".join(layout.MANIFEST_HEADER))
    (ds / "runs" / "b.json").unlink()
    with pytest.raises(ConfigError, match=r"manifest.csv line 2: placement '0:1:x'") as e:
        load_measured(ds)
    assert "\n" not in str(e.value)


def _fake_record(iops: float, n: int = 100) -> Any:
    """What record_fio_json needs of a RunRecord: n reads at `iops`."""
    return types.SimpleNamespace(
        ddir=np.zeros(n, np.int8),
        slat_ns=np.full(n, 10_000),
        clat_ns=np.full(n, 90_000),
        runtime_s=n / iops,
        meta={},
        counters={},
    )


class FakeMachine:
    """Stands in for the reference backend: a clock that each run advances by one second, and
    IOPS per design and placement with a given run-to-run spread."""

    def __init__(self, spread: dict[str, float], seed: int = 5) -> None:
        self.now = 0.0
        self.calls: list[tuple[str, int, int | None, tuple[int, ...] | None]] = []
        self.spread = spread
        self.rng = np.random.default_rng(seed)

    def monotonic(self) -> float:
        return self.now

    def run(self, w: Any, d: Any, *, cpus: Any = None, guest_cpu: Any = None, **_: Any) -> Any:
        self.now += 1.0
        self.calls.append((d.name, w.iodepth, guest_cpu, cpus))
        label = "free" if cpus is None else "pinned"
        base = 1000.0 * w.iodepth * (1.2 if d.name == "vhost-blk" else 1.0)
        return _fake_record(base * (1 + self.rng.normal(0, self.spread[label])))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(spread: dict[str, float]) -> FakeMachine:
        m = FakeMachine(spread)
        monkeypatch.setattr(campaign, "run", m.run)
        monkeypatch.setattr(campaign, "time", types.SimpleNamespace(monotonic=m.monotonic))
        return m

    return install


def test_rounds_until_converged_points_leave_abba(tmp_path: Path, fake: Any) -> None:
    m = fake({"free": 0.001, "pinned": 0.06})  # free converges at once, pinned needs rounds
    c = Campaign(iodepths=(1,), placements=("free", "0:1"), precision=0.05, trace_ios=0)
    summary = measure(c, tmp_path / "ds", append=False)
    info = summary.attrs["campaign"]
    free = [x for x in m.calls if x[3] is None]
    pinned = [x for x in m.calls if x[3] is not None]
    assert len(free) == 2 * 3  # the minimum rounds, then it left
    assert info["rounds"] == len(pinned) // 2 > 3 and info["stopped"] == "converged"
    assert [x[0] for x in pinned[:4]] == ["virtio-blk", "vhost-blk", "vhost-blk", "virtio-blk"]
    assert pinned[0][2:] == (0, (1,)) and pinned[1][2:] == (0, (1, 1))  # resolved per design
    assert info["converged"] == info["points"] == 2
    assert summary["converged"].all() and (summary["iops_ci_pct"] <= 5).all()
    for col in ("runs", "iops_cv_pct", "iops_ci_pct", "iops_drift_pct", "converged"):
        assert col in summary.columns
    manifest = pd.read_csv(tmp_path / "ds" / "manifest.csv", keep_default_na=False)
    assert set(manifest["placement"]) == {"free", "0:1"}
    assert "runs/vhost-blk-randread-bs4096-qd1-p0.1-r0.json" in set(manifest["file"])
    assert "runs/vhost-blk-randread-bs4096-qd1-r0.json" in set(manifest["file"])


def test_budget_stops_before_a_round_that_would_overrun(tmp_path: Path, fake: Any) -> None:
    m = fake({"free": 0.3, "pinned": 0.3})  # never converges at 1 %
    c = Campaign(iodepths=(1, 2), precision=0.01, budget=10.0, trace_ios=0)  # 4 runs a round
    summary = measure(c, tmp_path / "ds", append=False)
    info = summary.attrs["campaign"]
    assert info["rounds"] == 2 and info["stopped"] == "budget" and m.now == 8.0  # 12 > 10
    assert info["converged"] == 0 and not summary["converged"].any()
    assert (summary["runs"] == 2).all()


def test_fixed_repeats_as_before(tmp_path: Path, fake: Any) -> None:
    m = fake({"free": 0.01, "pinned": 0.01})
    summary = measure(Campaign(iodepths=(1,), repeat=2, trace_ios=0), tmp_path / "ds")
    assert [x[0] for x in m.calls] == ["virtio-blk", "vhost-blk"] * 2  # A B A B
    assert summary["converged"].isna().all() and (summary["placement"] == "free").all()
    assert sorted(p.name for p in (tmp_path / "ds" / "runs").iterdir())[0] == (
        "vhost-blk-randread-bs4096-qd1-r0.json"
    )


def test_tiny_real_campaign_with_a_precision(disk_dir: Path, capsys):  # type: ignore[no-untyped-def]
    out = disk_dir / "ds"
    code = main(
        [
            "measure",
            "--precision",
            "0.5",
            "--runtime",
            "0.2",
            "--iodepth",
            "1",
            "--design",
            "virtio-blk,vhost-blk",
            "--placement",
            "free,0:1",
            "--max-repeat",
            "4",
            "--trace-ios",
            "0",
            "--dir",
            str(disk_dir),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "vsim measure: " in err and "rounds in" in err and "points converged" in err
    summary = pd.read_csv(out / "summary.csv")
    for col in ("placement", "runs", "iops_cv_pct", "iops_ci_pct", "iops_drift_pct", "converged"):
        assert col in summary.columns
    assert set(summary["placement"]) == {"free", "0:1"} and (summary["runs"] >= 3).all()
    assert (summary["runs"] <= 4).all()
    ms = load_measured(out)
    assert set(ms.points["placement"]) == {"free", "0:1"}
    pinned = ms.runs[int(ms.points.index[ms.points["placement"] == "0:1"][0])]
    assert "-p0.1-" in pinned.file


# --------------------------------------------------------------------------- validation


def test_validate_predicts_with_the_pinning(tmp_path: Path, make_profile: Any) -> None:
    ds = tmp_path / "p"
    ds.mkdir()
    rows = [
        f"{d},randread,read,4k,4,{pl},{iops}"
        for d in ("virtio-blk", "vhost-blk")
        for pl in ("free", "0:0")
        for iops in (5000, 5100)
    ]
    (ds / "points.csv").write_text("design,rw,dir,bs,iodepth,placement,iops\n" + "\n".join(rows))
    # CPU-bound: the guest and the backend each spend 20 us per I/O, the disk 1 us; pinned to
    # one CPU (0:0) they take turns, free they run on both
    ops = ("guest_submit", "guest_complete", "pop", "submit_call", "push")
    costs = {op: {"dist": "fixed", "value_us": 10.0} for op in ops}
    disk = {
        "model": "fixed",
        "service_us": {"value": 1.0, "provenance": "derived", "source": "test"},
        "channels": {"value": 8, "provenance": "derived", "source": "test"},
    }
    prof = make_profile(costs=costs, disk=disk, host_cpus=2)
    v = validate(prof, load_measured(ds), ios=400)
    t = v.table.set_index(["design", "placement"])
    for d in ("virtio-blk", "vhost-blk"):
        assert t.loc[(d, "0:0"), "iops_pred"] != t.loc[(d, "free"), "iops_pred"]
    assert list(v.gains["placement"]) == ["free", "0:0"]  # designs pair up at their label
    (ds / "points.csv").write_text(
        "design,rw,dir,bs,iodepth,placement,iops\nvirtio-blk,randread,read,4k,1,0:2,1\n"
    )
    with pytest.raises(ConfigError) as e:
        validate(prof, load_measured(ds), ios=100)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("points.csv line 2: placement 0:2: CPU 2 ")
    assert "the host of profile" in msg


def test_validate_cli_refuses_a_cpu_the_profile_lacks(tmp_path: Path, capsys):  # type: ignore[no-untyped-def]
    (tmp_path / "points.csv").write_text(
        "design,rw,dir,bs,iodepth,placement,iops\nvhost-blk,randread,read,4k,1,0:1:9,1\n"
    )
    code = main(["validate", "--profile", "seed-2011", "--measured", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "placement 0:1:9: CPU 9 does not exist on the host of profile seed-2011" in err


def test_steal_from_proc_stat(tmp_path: Path) -> None:
    """Steal time is /proc/stat's 8th counter over the sum of the first eight (proc(5))."""
    from vsim.measure.host import cpu_ticks, steal_pct

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    a = cpu_ticks(stat)
    assert a is not None and a.steal == 35 and a.total == 1000
    stat.write_text("cpu  200 0 100 1500 10 0 5 185 0 0\n")
    b = cpu_ticks(stat)
    assert steal_pct(a, b) == pytest.approx(100 * 150 / 1000)
    assert steal_pct(b, a) is None and steal_pct(None, b) is None
    stat.write_text("cpu  1 2 3\n")  # an old kernel without a steal column
    assert cpu_ticks(stat) is None
    assert cpu_ticks(tmp_path / "missing") is None
    assert cpu_ticks() is not None  # this machine's own /proc/stat reads


def test_manifest_without_steal_column_reads(tmp_path: Path) -> None:
    from vsim.measure import layout

    path = tmp_path / "manifest.csv"
    path.write_text(
        "file,design,repeat,calibration,note,placement\nruns/a.json,virtio-blk,0,,,0:1\n"
    )
    assert layout.manifest_rows(path) == [["runs/a.json", "virtio-blk", "0", "", "", "0:1", ""]]
