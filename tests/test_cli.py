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
