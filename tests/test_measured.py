"""Measured datasets: fio JSON files with a manifest, published summaries, and their errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vsim import Scenario, Workload, design, simulate
from vsim.errors import ConfigError, FioFormatError
from vsim.fio import bins_from_ns, sample_from_bins
from vsim.measure.dataset import COLUMNS, POINT_KEYS, MeasuredSet, load_measured
from vsim.results import Result

ROOT = Path(__file__).resolve().parents[1]
SEED_DATASET = ROOT / "validation" / "seed-2011"
REAL_FIO = ROOT / "tests" / "data" / "fio" / "libaio-randread-qd4.json"

MIXED = Workload(rw="rw", bs=512, iodepth=2, number_ios=300)
READS = Workload(rw="randread", bs=4096, iodepth=1, number_ios=200)


def _run(d: str, w: Workload, seed: int) -> Result:
    return simulate(Scenario(workload=w, design=design(d)), seed=seed)


def _write(path: Path, res: Result, *, keep_vsim: bool = True) -> None:
    doc = res.to_fio_json()
    if not keep_vsim:
        del doc["vsim"]
    path.write_text(json.dumps(doc), encoding="utf-8")


@pytest.fixture(scope="module")
def results() -> dict[str, Result]:
    return {
        "virtio-0": _run("virtio-blk", MIXED, 11),
        "virtio-1": _run("virtio-blk", MIXED, 12),
        "vhost-0": _run("vhost-blk", MIXED, 11),
        "reads": _run("vhost-blk", READS, 13),
    }


@pytest.fixture
def dataset(tmp_path: Path, results: dict[str, Result]) -> Path:
    """Four vsim-made fio files (no vsim block) and a manifest with comments and an extra column."""
    for name, res in results.items():
        _write(tmp_path / f"{name}.json", res, keep_vsim=False)
    (tmp_path / "manifest.csv").write_text(
        "# a measured dataset\n"
        "file,design,repeat,calibration,note,host\n"
        "virtio-0.json,virtio-blk,0,true,first,hostA\n"
        "virtio-1.json,virtio-blk,1,yes,,hostB\n"
        "vhost-0.json,vhost-blk,0,false,,hostA\n"
        "reads.json,vhost-blk,0,,,\n",
        encoding="utf-8",
    )
    return tmp_path


def _row(m: MeasuredSet, file: str, d: str) -> int:
    sel = m.points[(m.points["file"] == file) & (m.points["dir"] == d)]
    assert len(sel) == 1
    return int(sel.index[0])


def test_directory_with_manifest(dataset: Path, results: dict[str, Result]) -> None:
    m = load_measured(dataset)
    assert m.name == dataset.name
    assert len(m.runs) == 4
    assert list(m.points.columns) == [*COLUMNS, "host"]
    assert len(m.points) == 3 * 2 + 1  # one row per file and direction
    pts = m.points.set_index(["file", "dir"])
    assert pts.loc[("virtio-1.json", "write"), "repeat"] == 1
    assert pts.loc[("virtio-0.json", "read"), "note"] == "first"
    assert pts.loc[("virtio-1.json", "read"), "host"] == "hostB"
    assert pts.loc[("reads.json", "read"), "host"] == ""
    assert bool(pts.loc[("virtio-1.json", "read"), "calibration"])
    assert not bool(pts.loc[("reads.json", "read"), "calibration"])
    assert m.points.groupby(list(POINT_KEYS)).ngroups == 5

    res = results["virtio-0"]
    want = {r["dir"]: r for r in res.rows()}
    for d in ("read", "write"):
        row = m.points.loc[_row(m, "virtio-0.json", d)]
        assert row["design"] == "virtio-blk"
        assert (row["rw"], row["bs"], row["iodepth"], row["numjobs"]) == ("rw", 512, 2, 1)
        assert row["ios"] == want[d]["ios"]
        assert row["iops"] == pytest.approx(want[d]["iops"], rel=1e-12)
        for col in (
            "clat_mean_us",
            "lat_mean_us",
            "slat_mean_us",
            "clat_p50_us",
            "clat_p99_us",
            "lat_p50_us",
            "lat_p99_us",
        ):
            assert row[col] == pytest.approx(want[d][col], rel=1e-9), col
        assert row["samples"]


def test_samples_and_workload(dataset: Path, results: dict[str, Result]) -> None:
    m = load_measured(dataset)
    res = results["virtio-0"]
    for d in ("read", "write"):
        i = _row(m, "virtio-0.json", d)
        mask = res.direction(d)
        clat = m.samples(i)
        assert clat is not None
        np.testing.assert_array_equal(clat, sample_from_bins(bins_from_ns(res.clat_ns[mask])))
        lat = m.samples(i, "lat")
        assert lat is not None and lat.size == int(mask.sum())
    assert m.workload(_row(m, "virtio-0.json", "read")) == MIXED
    with pytest.raises(ConfigError, match="kind"):
        m.samples(0, "slat")


def test_summary_points_of_the_seed() -> None:
    m = load_measured(SEED_DATASET)
    assert m.name == "seed-2011"
    p = m.points
    assert len(p) == 12 and len(m.runs) == 12
    assert set(p["design"]) == {"virtio-blk", "vhost-blk"}
    assert set(p["iodepth"]) == {1, 2, 3}
    assert (p["calibration"] == (p["design"] == "virtio-blk")).all()
    assert set(p.loc[p["rw"] == "rw", "dir"]) == {"total"}
    assert p["lat_mean_us"].isna().all() and p["clat_mean_us"].notna().all()
    assert not p["samples"].any()
    assert m.samples(0) is None
    first = p[(p["design"] == "virtio-blk") & (p["rw"] == "read") & (p["iodepth"] == 1)].iloc[0]
    assert (first["iops"], first["clat_mean_us"]) == (4116.0, 214.0)
    rw_row = int(p.index[p["rw"] == "rw"][0])
    assert m.workload(rw_row).size == 200 << 20
    assert m.workload(rw_row).rwmixread == 50


def test_files_with_vsim_block_need_no_manifest(tmp_path: Path, results: dict[str, Result]) -> None:
    for name in ("virtio-0", "virtio-1"):
        _write(tmp_path / f"{name}.json", results[name])
    m = load_measured(sorted(tmp_path.glob("*.json")))
    assert m.name == "measured"
    assert sorted(set(m.points["repeat"])) == [0, 1]  # numbered automatically, in file order
    assert set(m.points["design"]) == {"virtio-blk"}
    m2 = load_measured(tmp_path)  # a directory of such files works too
    assert len(m2.points) == 4


def test_list_of_files_with_explicit_manifest(dataset: Path) -> None:
    m = load_measured([dataset / "vhost-0.json"], manifest=dataset / "manifest.csv")
    assert len(m.runs) == 1 and m.runs[0].design == "vhost-blk"
    assert set(m.points["file"]) == {"vhost-0.json"}


def test_real_fio_json_plus(tmp_path: Path) -> None:
    shutil.copy(REAL_FIO, tmp_path / "real.json")
    (tmp_path / "manifest.csv").write_text("file,design,repeat\nreal.json,virtio-blk,0\n")
    m = load_measured(tmp_path)
    assert list(m.points["job"]) == ["qd4-n100", "qd4-n2000"]  # one run per job of the file
    assert set(m.points["rw"]) == {"randread"} and set(m.points["iodepth"]) == {4}
    assert m.points.loc[0, "clat_p50_us"] == pytest.approx(51.456)  # fio's own percentile
    s = m.samples(1)
    assert s is not None and s.size == 2000
    assert m.samples(0, "lat") is not None  # qd4-n100 ran with lat_percentiles=1
    assert m.samples(1, "lat") is None  # qd4-n2000 has no lat_ns bins


# --------------------------------------------------------------------------- errors


def _manifest(path: Path, text: str) -> None:
    (path / "manifest.csv").write_text(text, encoding="utf-8")


def test_file_missing_from_manifest(dataset: Path) -> None:
    _manifest(dataset, "file,design,repeat\nvirtio-0.json,virtio-blk,0\n")
    with pytest.raises(ConfigError, match=r"^reads\.json: not in manifest\.csv"):
        load_measured(dataset)


def test_manifest_row_without_file(dataset: Path) -> None:
    text = (dataset / "manifest.csv").read_text(encoding="utf-8")
    _manifest(dataset, text + "gone.json,virtio-blk,3\n")
    with pytest.raises(ConfigError, match=r"manifest\.csv line 7: no file 'gone\.json'"):
        load_measured(dataset)


def test_malformed_json(dataset: Path) -> None:
    (dataset / "virtio-1.json").write_text('{"jobs": [', encoding="utf-8")
    with pytest.raises(FioFormatError, match=r"^virtio-1\.json: not fio JSON"):
        load_measured(dataset)


def test_fio_file_missing_keys(dataset: Path, results: dict[str, Result]) -> None:
    doc: dict[str, Any] = results["virtio-1"].to_fio_json()
    del doc["jobs"][0]["read"]["clat_ns"]
    (dataset / "virtio-1.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(FioFormatError, match=r"^virtio-1\.json: missing jobs\[0\]\.read\.clat_ns"):
        load_measured(dataset)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,design,repeat\nvirtio-0.json,nvme,0\n", r"line 2: unknown design 'nvme'"),
        ("file,design,repeat\nvirtio-0.json,virtio-blk,x\n", r"line 2: repeat 'x' is not an int"),
        ("file,design,repeat\nvirtio-0.json,virtio-blk,-1\n", r"line 2: repeat must be >= 0"),
        ("file,design\nvirtio-0.json,virtio-blk\n", r"missing column 'repeat'"),
        ("file,design,repeat,calibration\nvirtio-0.json,virtio-blk,0,maybe\n", r"not true/false"),
        ("file,design,repeat\nvirtio-0.json,virtio-blk,0,extra\n", r"line 2: 4 fields"),
        ("file,design,repeat,iops\nvirtio-0.json,virtio-blk,0,5\n", r"column 'iops' is reserved"),
        ("file,design,repeat,bs\nvirtio-0.json,virtio-blk,0,5\n", r"column 'bs' is reserved"),
        (
            "file,design,repeat\nvirtio-0.json,virtio-blk,0\nvirtio-0.json,virtio-blk,1\n",
            r"line 3: 'virtio-0\.json' is listed twice",
        ),
        ("", r"empty"),
    ],
)
def test_bad_manifest(tmp_path: Path, results: dict[str, Result], text: str, message: str) -> None:
    _write(tmp_path / "virtio-0.json", results["virtio-0"], keep_vsim=False)
    _manifest(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_measured(tmp_path)
    assert "manifest.csv" in str(info.value)
    assert "\n" not in str(info.value)


def test_manifest_disagrees_with_vsim_block(tmp_path: Path, results: dict[str, Result]) -> None:
    _write(tmp_path / "a.json", results["virtio-0"])
    _manifest(tmp_path, "file,design,repeat\na.json,vhost-blk,0\n")
    with pytest.raises(ConfigError, match=r"^a\.json: .*says design vhost-blk but .* virtio-blk"):
        load_measured(tmp_path)


def test_duplicate_point_and_repeat(dataset: Path) -> None:
    _manifest(
        dataset,
        "file,design,repeat\nvirtio-0.json,virtio-blk,0\nvirtio-1.json,virtio-blk,0\n"
        "vhost-0.json,vhost-blk,0\nreads.json,vhost-blk,0\n",
    )
    with pytest.raises(ConfigError, match=r"virtio-0\.json and virtio-1\.json are the same point"):
        load_measured(dataset)


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no measured runs"):
        load_measured(tmp_path)
    with pytest.raises(ConfigError, match="no manifest"):
        load_measured(tmp_path, manifest=tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("virtio-blk,read,up,512,1,100", r"dir must be one of read, write, total"),
        ("virtio-blk,read,write,512,1,100", r"rw=read does no writes"),
        ("virtio-blk,read,read,500,1,100", r"bs must be a positive multiple of 512"),
        ("virtio-blk,read,read,512,0,100", r"iodepth must be >= 1"),
        ("virtio-blk,read,read,512,1,fast", r"iops 'fast' is not a number"),
        ("virtio-blk,read,read,512,1,", r"iops is empty"),
        ("nvme,read,read,512,1,100", r"unknown design 'nvme'"),
    ],
)
def test_bad_points(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "points.csv").write_text(f"design,rw,dir,bs,iodepth,iops\n{line}\n")
    with pytest.raises(ConfigError, match=r"points\.csv line 2: " + message) as info:
        load_measured(tmp_path)
    assert "\n" not in str(info.value)


def test_points_need_their_columns(tmp_path: Path) -> None:
    (tmp_path / "points.csv").write_text("design,rw,bs,iodepth,iops\nvirtio-blk,read,512,1,9\n")
    with pytest.raises(ConfigError, match=r"points\.csv: missing column 'dir'"):
        load_measured(tmp_path)
