"""Sweeps: identical results on every executor, and resuming a killed sweep loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vsim import Scenario, Workload
from vsim.sweep import grid, run_points

POINTS = grid(
    Scenario(workload=Workload(rw="randread", bs=4096)),
    {"design": ["virtio-blk", "vhost-blk"], "iodepth": [1, 2, 4]},
)


@pytest.fixture(scope="module")
def serial_rows():  # type: ignore[no-untyped-def]
    return run_points(POINTS, precision=0.05, max_ios=20_000).rows


def test_process_pool_identical(serial_rows):  # type: ignore[no-untyped-def]
    assert run_points(POINTS, precision=0.05, max_ios=20_000, jobs=2).rows == serial_rows


def test_dask_local_cluster_identical(serial_rows):  # type: ignore[no-untyped-def]
    distributed = pytest.importorskip("distributed", reason="dask.distributed not installed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
    ):
        rows = run_points(
            POINTS, precision=0.05, max_ios=20_000, scheduler=cluster.scheduler_address
        ).rows
    assert rows == serial_rows


def test_dask_tasks_carry_chunks_of_points_and_every_index_once() -> None:
    """Dask gets a few points per task (TASKS_PER_WORKER tasks a worker, here 3 points each),
    and every item still comes back once, under its own index."""
    distributed = pytest.importorskip("distributed", reason="dask.distributed not installed")
    from vsim.sweep.executors import TASKS_PER_WORKER, run_unordered

    items = list(range(3 * 2 * TASKS_PER_WORKER + 5))  # not a multiple of the chunk size
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        got = list(run_unordered(abs, [-i for i in items], scheduler=cluster.scheduler_address))
    assert sorted(got) == [(i, i) for i in items]  # chunks of 3: each result at its offset


def _sweep_cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vsim.cli",
        "sweep",
        "--rw",
        "randread",
        "--bs",
        "4k",
        "--iodepth",
        "1-6",
        "--ios",
        "2000",
        "--jobs",
        "1",
        "--format",
        "csv",
        "--out",
        str(out),
        *extra,
    ]


def test_resume_after_kill_9(tmp_path: Path):
    out = tmp_path / "ws"
    proc = subprocess.Popen(_sweep_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    points = out / "points"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if points.exists() and len(list(points.glob("*.json"))) >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = sorted(p.name for p in points.glob("*.json"))
    assert 3 <= len(kept) < 12, "the sweep should have been killed mid-way"
    before = {p: (points / p).read_bytes() for p in kept}
    # A partial write looks like this: detected and recomputed, never trusted.
    (points / kept[0]).write_text('{"id": "truncated')
    r = subprocess.run(_sweep_cmd(out, "--resume"), capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert f"({len(kept) - 1} of 12 points resumed)" in r.stderr
    for p in kept[1:]:
        assert (points / p).read_bytes() == before[p]  # finished points untouched
    # The resumed sweep equals a sweep run in one go.
    fresh = subprocess.run(
        _sweep_cmd(tmp_path / "fresh"), capture_output=True, text=True, check=False
    )
    assert fresh.returncode == 0
    assert r.stdout == fresh.stdout
    assert (out / "results.csv").read_text() == (tmp_path / "fresh" / "results.csv").read_text()


def test_existing_workspace_needs_resume(tmp_path: Path):
    out = tmp_path / "ws"
    (out / "points").mkdir(parents=True)
    (out / "points" / "x.json").write_text("{}")
    r = subprocess.run(_sweep_cmd(out), capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "--resume" in r.stderr and r.stderr.count("\n") == 1
