"""`vsim measure`: campaigns on the real path produce datasets the validator reads; safety."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from vsim.cli import main
from vsim.measure import Campaign, fio_command
from vsim.measure.dataset import load_measured
from vsim.reference.linux import memory_filesystem
from vsim.scenario import Workload
from vsim.validate import validate


def test_plan_interleaves_designs_and_spreads_repeats():
    c = Campaign(iodepths=(1, 4), repeat=2)
    plan = [(r, p.workload.iodepth, d) for r, p, d in c.plan()]
    assert plan == [
        (0, 1, "virtio-blk"), (0, 1, "vhost-blk"), (0, 4, "virtio-blk"), (0, 4, "vhost-blk"),
        (1, 1, "virtio-blk"), (1, 1, "vhost-blk"), (1, 4, "virtio-blk"), (1, 4, "vhost-blk"),
    ]  # fmt: skip


def test_campaign_end_to_end(disk_dir: Path, capsys):  # type: ignore[no-untyped-def]
    out = disk_dir / "ds"
    code = main(
        [
            "measure",
            "--iodepth",
            "1,2",
            "--runtime",
            "0.3",
            "--repeat",
            "2",
            "--dir",
            str(disk_dir),
            "--verify",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    ms = load_measured(out)
    pts = ms.points
    assert len(pts) == 2 * 2 * 2  # designs x iodepths x repeats
    assert set(pts.design) == {"virtio-blk", "vhost-blk"} and set(pts.iodepth) == {1, 2}
    assert (pts.iops > 0).all() and (pts.ios > 0).all()
    assert ms.samples(0) is not None  # json+ bins: per-I/O latencies for CDFs
    assert len(list((out / "traces").glob("*.npz"))) == 8
    prov = (out / "provenance.toml").read_text()
    for key in ("date", "kernel", "cpu_model", "cores", "python", "vsim", "command"):
        assert f"{key} =" in prov
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith(
        "design,rw,dir,bs,iodepth,numjobs,placement,repeats,runs,iops,iops_ci95"
    )
    assert len(summary) == 1 + 4
    # The run files are fio's format: vsim's fio reader takes them.
    doc = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert doc["jobs"][0]["read"]["clat_ns"]["bins"]
    assert abs(doc["timestamp"] - time.time()) < 600  # when the run started (fio's field)
    steal = doc["vsim"]["host"]["steal_pct"]  # the hypervisor's share of the CPU during it
    assert steal is None or 0.0 <= steal <= 100.0
    assert not list(disk_dir.glob(".vsim*"))  # no scratch file left


def test_multiqueue_campaign_records_jobs_and_vcpus(disk_dir: Path, capsys):  # type: ignore[no-untyped-def]
    """--numjobs is a point factor and --guest-vcpus goes into every run: the dataset holds
    both, and `vsim validate` predicts each point with the guest's vCPUs it recorded."""
    out = disk_dir / "mq"
    argv = ["measure", "--design", "iothread-vq-mapping,vhost-blk-mq", "--iodepth", "2"]
    argv += ["--numjobs", "2,4", "--guest-vcpus", "2", "--runtime", "0.3", "--repeat", "1"]
    code = main([*argv, "--dir", str(disk_dir), "--trace-ios", "0", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    pts = load_measured(out).points
    assert sorted(pts.numjobs.tolist()) == [2, 2, 4, 4]
    assert set(pts.guest_vcpus) == {"2"} and (pts.iops > 0).all()
    summary = pd.read_csv(out / "summary.csv")  # a point per numjobs, not the two merged
    assert sorted(summary.numjobs.tolist()) == [2, 2, 4, 4] and summary.repeats.eq(1).all()
    doc = json.loads(next((out / "runs").glob("*-j4-*.json")).read_text())
    assert doc["vsim"]["counters"]["queues_used"] == 2
    assert doc["jobs"][0]["job options"]["numjobs"] == "4"
    v = validate("local", load_measured(out), ios=400)
    assert len(v.table) == 4 and v.table["iops_pred"].gt(0).all()
    assert {r.guest_vcpus for r in v.predicted.values()} == {2}
    assert {r.counters["queues_used"] for r in v.predicted.values()} == {2}


def test_write_job_on_existing_file_is_refused(disk_dir: Path, capsys):  # type: ignore[no-untyped-def]
    f = disk_dir / "precious.img"
    f.write_bytes(b"x" * (1 << 20))
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    code = main(
        [
            "measure",
            "--rw",
            "randwrite",
            "--iodepth",
            "1",
            "--runtime",
            "0.2",
            "--repeat",
            "1",
            "--file",
            str(f),
            "--out",
            str(disk_dir / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "allow" in err.lower()
    assert hashlib.sha256(f.read_bytes()).hexdigest() == digest


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engine", "spdk"], "engine"),
        (["--design", "nvme"], "unknown design"),
        (["--dir", "/nonexistent-vsim-dir"], "does not exist"),
        (["--repeat", "0"], "--repeat"),
        (["--iodepth", "0"], "iodepth"),
        (["--trace-ios", "-1"], "--trace-ios must be >= 0"),
        (["--runtime", "inf"], "--runtime must be a finite number"),
        (["--ramp-time", "nan"], "--ramp-time must be a finite number"),
        (["--design", ","], "--design: no value given"),
        (["--dir", "README.md"], "README.md is not a directory"),
        (["--guest-vcpus", "2"], "may not exceed the queues it uses (1)"),
        (["--design", "vhost-blk-mq", "--guest-vcpus", "2"], "guest-vcpus (2) > numjobs (1)"),
        (["--numjobs", "0"], "numjobs must be within"),
        (["--design", "qemu-iothread-uring", "--engine", "native"], "contradicts it"),
    ],
)
def test_bad_measure_input(argv, message, tmp_path: Path, capsys):  # type: ignore[no-untyped-def]
    code = main(
        [
            "measure",
            "--runtime",
            "0.2",
            "--repeat",
            "1",
            "--iodepth",
            "1",
            "--out",
            str(tmp_path / "o"),
            *argv,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "o").exists()


def test_tmpfs_is_refused(capsys, tmp_path: Path):  # type: ignore[no-untyped-def]
    shm = Path("/dev/shm")
    if memory_filesystem(str(shm)) is None:
        pytest.skip("/dev/shm is not a memory file system here")
    code = main(
        [
            "measure",
            "--iodepth",
            "1",
            "--runtime",
            "0.2",
            "--repeat",
            "1",
            "--dir",
            str(shm),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "tmpfs" in err


@pytest.mark.skipif(
    shutil.which("fio") is None, reason="fio is not installed (apt-get install fio)"
)
def test_fio_baseline(disk_dir: Path):
    out = disk_dir / "ds"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vsim.cli",
            "measure",
            "--fio",
            "--iodepth",
            "1,4",
            "--runtime",
            "0.5",
            "--repeat",
            "1",
            "--size",
            "8m",
            "--dir",
            str(disk_dir),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    files = sorted((out / "fio").glob("*.json"))
    assert len(files) == 2
    from vsim.fio import read_fio_json

    (job,) = read_fio_json(files[0])
    assert job.iodepth == 1 and job.bs == 4096 and job.read.total_ios > 0
    assert job.read.clat.bins  # json+
    assert not list(disk_dir.glob(".vsim-fio-scratch*"))


def test_fio_command_speaks_fio():
    w = Workload(rw="randrw", bs=512, iodepth=3, rwmixread=70)
    cmd = fio_command(w, "/proc/self/fd/7", 2.0, 1 << 20)
    assert "--rw=randrw" in cmd and "--bs=512" in cmd and "--iodepth=3" in cmd
    assert "--rwmixread=70" in cmd and "--output-format=json+" in cmd and "--direct=1" in cmd
    assert "--filename=/proc/self/fd/7" in cmd and "--size=1048576" in cmd
    # fio may never create or lay out a file, runs as one thread, and guards reads itself
    assert "--allow_file_create=0" in cmd and "--thread" in cmd and "--readonly" not in cmd
    assert "--readonly" in fio_command(Workload(rw="randread"), "f", 1.0, 1 << 20)


def test_microbench_subset_joins_an_existing_dataset(tmp_path: Path, capsys):  # type: ignore[no-untyped-def]
    mb = tmp_path / "ds" / "microbench"
    mb.mkdir(parents=True)
    (mb / "summary.csv").write_text("benchmark,median_us,n\nodirect_read,55.5,200\neventfd,9.9,1\n")
    (mb / "provenance.toml").write_text('command = "the first campaign"\n')
    code = main(["measure", "--microbench", "--bench", "eventfd", "--out", str(tmp_path / "ds")])
    assert code == 0
    summary = (mb / "summary.csv").read_text().splitlines()
    assert summary[1].startswith("odirect_read,55.5")  # kept
    assert [r.split(",")[0] for r in summary[1:]] == ["odirect_read", "eventfd"]
    assert "eventfd,9.9," not in "\n".join(summary)  # replaced by the new samples
    assert (mb / "eventfd.npy").exists()
    assert (mb / "provenance.toml").read_text() == 'command = "the first campaign"\n'
    assert "date = " in (mb / "provenance-eventfd.toml").read_text()  # this run's own provenance


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bench", "eventfd"], "--bench needs --microbench"),
        (["--microbench", "--bench", "warp"], "unknown microbenchmark 'warp'"),
    ],
)
def test_bench_option_errors(tmp_path: Path, capsys, args, message):  # type: ignore[no-untyped-def]
    code = main(["measure", *args, "--out", str(tmp_path / "ds")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_a_job_file_drives_the_campaign(disk_dir: Path, capsys):  # type: ignore[no-untyped-def]
    """`vsim measure JOB.fio`: the job's rw, bs, iodepth and open-loop rate every point takes
    (a flag overrides one), written into every run's job options, so `vsim validate` predicts
    the same job; the job's filename is never the target."""
    job = disk_dir / "rated.fio"
    job.write_text(
        "[global]\nrw=randread\nbs=4k\niodepth=4\nrate_iops=400\nrate_process=poisson\n"
        "[dev]\nfilename=/dev/sda\n"
    )
    out = disk_dir / "ds"
    code = main(
        [
            "measure", str(job), "--design", "virtio-blk", "--iodepth", "2", "--runtime", "0.5",
            "--repeat", "1", "--dir", str(disk_dir), "--trace-ios", "0", "--out", str(out),
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "filename=/dev/sda" in captured.err and "scratch file" in captured.err
    run = load_measured(out).runs[0]
    w = run.workload
    assert (w.rw, w.bs, w.iodepth) == ("randread", 4096, 2)  # --iodepth over the file's 4
    assert w.rate_iops == (400, 400) and w.rate_process == "poisson"
    assert load_measured(out).points.iops.iloc[0] == pytest.approx(400, rel=0.35)
    assert not list(disk_dir.glob(".vsim*"))
