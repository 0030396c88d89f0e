"""The fio-shaped questions on the command line: job files in, open-loop rates, `vsim search`,
`vsim compare` and `--percentiles` (outputs, precedence and the one-line error paths)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from vsim.cli import main
from vsim.fio import read_fio_json

JOBS = Path(__file__).resolve().parent / "data" / "jobs"


def run(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text))


def test_the_seeds_rw_fio_runs_as_a_job_file(capsys) -> None:  # type: ignore[no-untyped-def]
    """The seed's write job (rw=rw, bs=512, iodepth=1, size=200M) as `vsim run rw.fio`."""
    code, out, err = run(capsys, "run", str(JOBS / "rw.fio"), "--ios", "2000", "--format", "csv")
    assert code == 0, err
    df = csv(out)
    assert sorted(df["dir"]) == ["read", "write"]
    assert set(df["rw"]) == {"rw"} and set(df["bs"]) == {512} and set(df["iodepth"]) == {1}
    assert df["ios"].sum() == 2000  # --ios replaces the job's own length (size / bs)


def test_flags_override_the_job_file_and_unmodelled_options_are_reported_once(
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    job = JOBS / "latency-profile.fio"
    code, out, err = run(
        capsys, "run", str(job), "--iodepth", "4", "--ios", "500", "--format", "csv"
    )
    assert code == 0, err
    df = csv(out)
    assert df["iodepth"].tolist() == [4] and df["bs"].tolist() == [4096]  # bs from the file
    assert err.count("random_generator") == 1 and "ignored" in err


def test_a_job_file_drives_a_sweep(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(
        capsys,
        "sweep",
        str(JOBS / "rw.fio"),
        "--iodepth",
        "1,2",
        "--ios",
        "500",
        "--format",
        "csv",
        "--jobs",
        "1",
    )
    assert code == 0, err
    df = csv(out)
    assert sorted(set(df["iodepth"])) == [1, 2] and set(df["rw"]) == {"rw"}
    assert set(df["design"]) == {"virtio-blk", "vhost-blk"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[job]\nbs=4q\n", "bad.fio:2"),
        ("[job]\nrw=sideways\n", "bad.fio:2"),
        ("[job]\niodepth=-1\n", "iodepth"),
        ("[a]\n[b]\n", "give --section NAME"),
        ("[job]\nbs=${NO_SUCH_VARIABLE_HERE}\n", "NO_SUCH_VARIABLE_HERE"),
    ],
)
def test_a_bad_job_file_is_one_line_and_exit_2(  # type: ignore[no-untyped-def]
    capsys, tmp_path: Path, text: str, message: str
) -> None:
    job = tmp_path / "bad.fio"
    job.write_text(text)
    out_file = tmp_path / "out.csv"
    code, _, err = run(capsys, "run", str(job), "--ios", "10", "--out", str(out_file))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("vsim: error:") and message in err
    assert not out_file.exists()


def test_rate_runs_serve_the_offered_load_below_the_knee(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(
        capsys,
        "sweep",
        "--design",
        "virtio-blk",
        "--rw",
        "read",
        "--iodepth",
        "4",
        "--rate-iops",
        "500,1000",
        "--ios",
        "3000",
        "--format",
        "csv",
        "--jobs",
        "1",
    )
    assert code == 0, err
    df = csv(out)
    assert df["rate_iops"].tolist() == [500, 1000]
    assert df["iops"].to_numpy() == pytest.approx([500, 1000], rel=0.01)


def test_percentiles_reach_tables_and_json(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "run", "--ios", "2000", "--percentiles", "50,99.9,99.99")
    assert code == 0
    header = out.splitlines()[0].split()
    assert "lat_p99.9_us" in header and "clat_p99.99_us" in header and "lat_p99_us" not in header
    code, out, _ = run(capsys, "run", "--ios", "2000", "--percentiles", "99.9", "--format", "json")
    job = read_fio_json(out)[0]
    assert list(job.directions["read"].clat.percentiles) == [99.9]


def test_search_meets_its_target_and_the_next_step_misses(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(
        capsys,
        "search",
        "--rw",
        "read",
        "--target",
        "lat_mean_us<=330",
        "--precision",
        "0.02",
        "--format",
        "json",
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["best"]["meets"] and doc["best"]["lat_mean_us"] <= 330
    assert not doc["next_up"]["meets"] and doc["next_up"]["lat_mean_us"] > 330
    assert doc["next_up"]["iodepth"] == doc["best"]["iodepth"] + 1
    assert "highest IOPS with lat_mean_us<=330" in err


def test_fios_latency_target_in_a_job_file_is_the_search_target(  # type: ignore[no-untyped-def]
    capsys, tmp_path: Path
) -> None:
    job = tmp_path / "lt.fio"
    job.write_text(
        "[job]\nrw=read\nbs=512\niodepth=16\nlatency_target=330\nlatency_percentile=50\n"
    )
    code, out, err = run(capsys, "search", str(job), "--precision", "0.02", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["target"] == ["lat_p50_us<=330"]
    assert doc["best"]["lat_p50_us"] <= 330 and doc["best"]["iodepth"] <= 16


def test_compare_reports_cis_and_a_verdict(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(
        capsys,
        "compare",
        "--design",
        "virtio-blk,vhost-blk",
        "--ios",
        "1500",
        "--reps",
        "4",
        "--jobs",
        "1",
        "--format",
        "csv",
    )
    assert code == 0, err
    df = csv(out).set_index("metric")
    assert df.loc["iops", "verdict"] == "B higher" and df.loc["iops", "diff_lo"] > 0
    assert df.loc["slat_mean_us", "verdict"] == "identical"  # the same guest, the same draws
    code, out, _ = run(
        capsys,
        "compare",
        "--design",
        "virtio-blk,vhost-blk",
        "--ios",
        "1500",
        "--reps",
        "4",
        "--jobs",
        "1",
        "--metrics",
        "iops",
    )
    assert "B higher" in out and "95 % CI" in out and "lat_mean_us" not in out
