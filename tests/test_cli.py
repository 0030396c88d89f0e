"""The `vsim` command: outputs and error paths (one line, exit code 2, nothing lost)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vsim.cli import main
from vsim.fio import read_fio_json


def run(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sweep_default_is_seed_grid(capsys):  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "sweep", "--ios", "300", "--format", "csv")
    assert code == 0
    df = pd.read_csv(__import__("io").StringIO(out))
    required = [
        "profile",
        "design",
        "rw",
        "dir",
        "bs",
        "iodepth",
        "seed",
        "ios",
        "iops",
        "bw_kib_s",
        "slat_mean_us",
        "clat_mean_us",
        "clat_p50_us",
        "clat_p99_us",
        "lat_mean_us",
        "lat_p50_us",
        "lat_p99_us",
    ]
    assert set(required) <= set(df.columns)
    assert set(df.design) == {"virtio-blk", "vhost-blk"}
    assert set(df.rw) == {"read", "rw"} and set(df.iodepth) == {1, 2, 3}
    assert set(df[df.rw == "rw"].dir) == {"read", "write"}
    assert (df.profile == "seed-2011").all() and (df.bs == 512).all()


def test_run_json_is_fio_json(capsys):  # type: ignore[no-untyped-def]
    code, out, _ = run(
        capsys,
        "run",
        "--design",
        "vhost-blk",
        "--rw",
        "randread",
        "--bs",
        "4k",
        "--iodepth",
        "4",
        "--ios",
        "500",
        "--format",
        "json",
    )
    assert code == 0
    (job,) = read_fio_json(out)
    assert job.iodepth == 4 and job.bs == 4096
    assert job.read.total_ios == 500


def test_sweep_mva_and_out_file(capsys, tmp_path: Path):  # type: ignore[no-untyped-def]
    out = tmp_path / "grid.csv"
    code, _, err = run(capsys, "sweep", "--method", "mva", "--iodepth", "1-4", "--out", str(out))
    assert code == 0 and "wrote" in err
    df = pd.read_csv(out)
    assert len(df) == 2 * 2 * 4 and (df.method == "mva").all()


def test_sweep_numjobs_and_guest_vcpus_are_factors(capsys, tmp_path: Path):  # type: ignore[no-untyped-def]
    out = tmp_path / "grid.csv"
    code, _, err = run(
        capsys, "sweep", "--design", "iothread-vq-mapping", "--rw", "randread", "--bs", "4k",
        "--iodepth", "2", "--numjobs", "1,4", "--guest-vcpus", "1,4", "--ios", "300",
        "--profile", "local", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    df = pd.read_csv(out)
    assert sorted(zip(df.numjobs, df.guest_vcpus, strict=True)) == [(1, 1), (1, 4), (4, 1), (4, 4)]
    assert (df["host_cpu_us_per_io"] > 0).all()
    code, _, err = run(capsys, "run", "--numjobs", "1,4")
    assert code == 2 and "--numjobs: cannot read '1,4'" in err


def test_json_rows(capsys):  # type: ignore[no-untyped-def]
    code, out, _ = run(
        capsys,
        "sweep",
        "--design",
        "virtio-blk",
        "--rw",
        "read",
        "--iodepth",
        "1",
        "--ios",
        "200",
        "--format",
        "json",
    )
    assert code == 0
    rows = json.loads(out)
    assert rows[0]["design"] == "virtio-blk" and rows[0]["ios"] == 200


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--iodepth", "0"], "iodepth must be >= 1"),
        (["run", "--bs", "1000"], "multiple of 512"),
        (["run", "--design", "nvme-of"], "unknown design"),
        (["sweep", "--design", "virtio-blk,foo"], "unknown design 'foo'"),
        (["sweep", "--iodepth", "3-1"], "cannot read '3-1'"),
        (["run", "--profile", "nope"], "unknown profile"),
        (["run", "--rw", "trim"], "unknown rw"),
        (["run", "--frobnicate"], "unrecognized arguments"),
        (["explode"], "invalid choice"),
        (["run", "--out", "/nonexistent-dir/x.csv"], "does not exist"),
        (["run", "--seed", "-1"], "seed must be a whole number >= 0"),
        (["sweep", "--seed", "-1", "--ios", "10"], "seed must be a whole number >= 0"),
        (["run", "--ios", "99999999999999999999"], "GiB of per-I/O records"),
        (["run", "--runtime", "inf"], "runtime must be a finite number"),
        (["run", "--ramp-time", "inf", "--ios", "10"], "--ramp-time must be a finite number"),
        (["run", "--ramp-time", "nan", "--ios", "10"], "--ramp-time must be a finite number"),
        (["run", "--poll-us", "nan", "--ios", "10"], "--poll-us must be a finite number"),
        (["run", "--engine", "spdk", "--ios", "10"], "unknown engine 'spdk'"),
        (["run", "--engine", "io_uring", "--ios", "10"], "has no costs.uring_submit_call"),
        (["run", "--max-ios", "0"], "--max-ios must be >= 1"),
        (["sweep", "--design", ",", "--ios", "10"], "--design: no value given"),
        (["sweep", "--rw", "", "--ios", "10"], "--rw: no value given"),
    ],
)
def test_bad_input_one_line_exit_2(capsys, argv, message):  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("vsim: error:") and message in err
    assert out == ""


def test_malformed_profile_file(capsys, tmp_path: Path):  # type: ignore[no-untyped-def]
    p = tmp_path / "p.toml"
    p.write_text('schema = "vsim-profile/1"\nname = "x"\n[cpu]\n')
    code, _, err = run(capsys, "run", "--profile", str(p))
    assert code == 2 and "cpu.host_cpus" in err


def test_console_script_help():
    r = subprocess.run(
        [sys.executable, "-m", "vsim.cli", "sweep", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0 and "example:" in r.stdout


def test_progress_bar_only_when_asked(capsys):  # type: ignore[no-untyped-def]
    from vsim.progress import Progress

    with Progress(2, "quiet", enabled=False) as bar:
        bar(1, 2, "a")
    assert capsys.readouterr().err == ""
    with Progress(2, "shown", enabled=True) as bar:
        bar(1, 2, "point a")
    assert "shown" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--iodepth", "0", "--out", "new.csv"],
        ["run", "--seed", "-1", "--out", "new.parquet"],
        ["sweep", "--bs", "1000", "--out", "new.json"],
        ["sweep", "--runtime", "1e-9", "--jobs", "1", "--out", "ws"],  # fails in its first point
        ["calibrate", "empty", "--out", "p.toml"],
        ["plot", "header.csv", "--out", "p.png"],
        ["plot", "words.csv", "--out", "p.svg"],
        ["report", "header.csv", "--out", "page.html"],
        ["validate", "--profile", "nope", "--measured", "empty", "--report", "rep"],
        ["validate", "--profile", "seed-2011", "--measured", "empty", "--report", "rep/sub"],
        ["measure", "--iodepth", "0", "--out", "ds"],
        ["measure", "--microbench", "--bench", "warp", "--out", "ds"],
    ],
)
def test_an_error_leaves_no_output_behind(capsys, tmp_path: Path, monkeypatch, argv):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "header.csv").write_text("design,iodepth,iops\n")
    (tmp_path / "words.csv").write_text("design,iodepth,iops\nvirtio-blk,1,fast\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith("vsim: error:"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no empty file, no stub dir
    assert list((tmp_path / "empty").iterdir()) == []


def test_parquet_without_pyarrow_names_the_extra(capsys, tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a)
    )
    code, _, err = run(capsys, "run", "--ios", "10", "--out", str(tmp_path / "r.parquet"))
    assert code == 2 and "pip install 'vsim[parquet]'" in err
    assert not (tmp_path / "r.parquet").exists()


def test_version(capsys):  # type: ignore[no-untyped-def]
    import vsim
    from vsim.models.build import BUILD

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out == f"vsim {vsim.__version__} (models: {BUILD})\n"


def test_use_rule_that_matches_nothing_is_an_error(capsys):  # type: ignore[no-untyped-def]
    root = Path(__file__).resolve().parent.parent / "validation" / "local"
    code, _, err = run(
        capsys, "validate", "--profile", "local", "--measured", str(root), "--use", "iodepth=64"
    )
    assert code == 2 and "--use iodepth=64 matches no measured point" in err


def test_measured_dataset_that_matches_no_point_is_an_error(capsys, tmp_path: Path):  # type: ignore[no-untyped-def]
    table = tmp_path / "seed.csv"
    assert run(capsys, "sweep", "--ios", "200", "--out", str(table))[0] == 0
    local = Path(__file__).resolve().parent.parent / "validation" / "local"
    code, _, err = run(capsys, "plot", str(table), "--measured", str(local))
    assert code == 2 and "matches a point of the sweep" in err
    assert not (tmp_path / "seed-iops.png").exists()
