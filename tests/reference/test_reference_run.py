"""Short real runs of both designs on every engine, with verify: counts, traces, data integrity."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from vsim.errors import ConfigError
from vsim.reference import STAGES, RunRecord, run
from vsim.scenario import DESIGNS, Workload, design

N = 300


def check_record(r: RunRecord, wl: Workload, n: int) -> None:
    """Invariants every run must satisfy, whatever the design or engine."""
    assert r.total_ios == n
    assert r.errors == 0
    assert r.counters["runner_nudges"] == 0, "a notification was lost"
    assert np.all(r.slat_ns >= 0) and np.all(r.clat_ns > 0)
    assert np.array_equal(r.lat_ns, r.slat_ns + r.clat_ns)
    assert np.all(r.offset % wl.bs == 0) and np.all(r.offset + wl.bs <= r.meta["region"])
    assert np.all(r.result == wl.bs)
    s = r.stages
    assert set(s) == set(STAGES)
    assert np.all(s["kick_ns"] == s["submit_ns"] + r.slat_ns)
    assert np.all(s["reap_ns"] == s["kick_ns"] + r.clat_ns)
    # Causal order (each stamp is taken after the event it names can have been seen).
    assert np.all(s["pop_ns"] >= s["submit_ns"])
    assert np.all(s["io_complete_ns"] >= s["pop_ns"])
    assert np.all(s["used_push_ns"] >= s["io_complete_ns"])
    assert np.all(s["reap_ns"] >= s["io_complete_ns"])
    assert np.all(s["io_submit_ns"] >= s["pop_ns"])
    waited = s["irq_ns"] > 0
    assert np.all(s["irq_ns"][waited] <= s["reap_ns"][waited])
    allowed = os.sched_getaffinity(0)
    for cpus in (r.submit_cpu, r.complete_cpu, r.guest_cpu):
        assert set(np.unique(cpus).tolist()) <= allowed
    c = r.counters
    total = n + r.meta["warmup_ios"]
    assert c["requests"] == total and c["bad_requests"] == 0
    assert c["kicks"] == c["guest_kicks"] >= 1
    assert c["kicks"] <= total and c["signals"] <= total
    assert c["signals"] >= 1 and c["guest_irq_waits"] <= c["signals"] + c["runner_nudges"]
    assert r.iops > 0 and r.end_ns > r.start_ns


@pytest.mark.parametrize("name", ["virtio-blk", "vhost-blk"])
def test_both_designs_verified(name: str, engine: str, disk_dir: Path) -> None:
    wl = Workload(rw="randrw", bs=4096, iodepth=4, number_ios=N, rwmixread=60)
    r = run(wl, name, engine=engine, directory=disk_dir, scratch_size=4 << 20, verify=True)
    check_record(r, wl, N)
    assert r.counters["verified_reads"] == int(np.count_nonzero(r.ddir == 0))
    assert r.counters["verify_bad_sectors"] == 0
    assert r.counters["verify_written_blocks"] >= 1
    assert r.counters["verify_bad_written_sectors"] == 0
    assert 0 < np.count_nonzero(r.ddir == 1) < N
    d = DESIGNS[name]
    assert r.thread_names == d.thread_names
    if d.threads == 1:
        assert set(r.submit_thread) == {0} and set(r.complete_thread) == {0}
    else:
        assert set(r.submit_thread) == {0} and set(r.complete_thread) == {1}
    assert r.meta["engine"] == engine and r.meta["design"] == name
    assert list(disk_dir.iterdir()) == []


def test_poll_mode_backend_runs_without_kicks(disk_dir: Path) -> None:
    """vhost-user-blk: one thread spins on the ring with kicks off, so the guest (almost)
    never kicks and the thread never waits on an eventfd."""
    wl = Workload(rw="randread", bs=4096, iodepth=4, number_ios=N)
    r = run(wl, "vhost-user-blk", directory=disk_dir, scratch_size=4 << 20, verify=True)
    c = r.counters
    assert r.total_ios == N and r.errors == 0 and c["verify_bad_sectors"] == 0
    assert c["kicks"] <= 1 and c["kick_wakeups"] == c["completion_wakeups"] == 0
    assert c["poll_hits"] > 0
    assert r.thread_names == ("poller",)
    assert set(r.submit_thread) == {0} and set(r.complete_thread) == {0}
    assert list(disk_dir.iterdir()) == []


def test_adaptive_polling_catches_events_at_depth(disk_dir: Path) -> None:
    """qemu-iothread: QEMU's adaptive polling; at iodepth 16 completions come closer together
    than its 32 us ceiling, so its polls catch some of them without a wake-up."""
    wl = Workload(rw="randread", bs=4096, iodepth=16, number_ios=2000)
    r = run(wl, "qemu-iothread", directory=disk_dir, scratch_size=8 << 20)
    check_record(r, wl, 2000)
    assert r.counters["poll_hits"] > 0
    off = run(wl, "virtio-blk-batched", directory=disk_dir, scratch_size=8 << 20)
    assert off.counters["poll_hits"] == 0


def check_jobs(r: RunRecord, wl: Workload) -> None:
    """Invariants of a run with several jobs or queues: the laws of check_record that hold in
    the window where every guest process ran."""
    assert r.errors == 0 and r.counters["runner_nudges"] == 0
    assert np.all(r.result == wl.bs)
    assert np.array_equal(r.lat_ns, r.slat_ns + r.clat_ns)
    s = r.stages
    assert np.all(s["pop_ns"] >= s["submit_ns"]) and np.all(s["reap_ns"] >= s["io_complete_ns"])
    assert np.all(s["submit_ns"] >= r.start_ns) and np.all(s["reap_ns"] <= r.end_ns)
    assert set(np.unique(r.job).tolist()) == set(range(wl.numjobs))


def test_jobs_share_one_queue(disk_dir: Path) -> None:
    """numjobs=3 on one virtqueue: one guest process runs the three closed loops, each keeps
    iodepth in flight, and each gets its share of the I/O."""
    wl = Workload(rw="randread", bs=4096, iodepth=2, number_ios=400, numjobs=3)
    r = run(wl, "virtio-blk", directory=disk_dir, scratch_size=4 << 20, verify=True)
    check_jobs(r, wl)
    assert set(r.queue.tolist()) == {0} and r.counters["queues_used"] == 1
    per_job = np.bincount(r.job, minlength=3)
    assert per_job.min() > 0.6 * per_job.max(), per_job
    assert r.counters["verify_bad_sectors"] == 0
    assert list(disk_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "numjobs", "threads_used"),
    [("iothread-vq-mapping", 2, {0, 1}), ("vhost-blk-mq", 4, {0, 1})],
)
def test_queues_are_served_by_their_mapped_threads(
    name: str, numjobs: int, threads_used: set[int], disk_dir: Path
) -> None:
    """Two vCPUs use two of the design's four queues; job i runs on vCPU i mod 2 and so goes
    through queue i mod 2, which the design maps to thread i mod 2 (round-robin)."""
    wl = Workload(rw="randrw", bs=4096, iodepth=2, number_ios=300, numjobs=numjobs)
    r = run(wl, name, guest_vcpus=2, directory=disk_dir, scratch_size=4 << 20, verify=True)
    check_jobs(r, wl)
    d = design(name)
    served = d.served()
    assert r.counters["queues_used"] == 2 and set(r.queue.tolist()) == {0, 1}
    assert np.array_equal(r.queue, r.job % 2)
    for q in (0, 1):
        mine = r.queue == q
        assert set(r.submit_thread[mine].tolist()) == {served[q][0]}
        assert set(r.complete_thread[mine].tolist()) == {served[q][1]}
    assert set(r.submit_thread.tolist()) == threads_used
    names = d.thread_names
    assert all(r.counters[f"{names[k]}.requests"] > 0 for k in threads_used)
    assert all(
        r.counters[f"{n}.requests"] == 0 for k, n in enumerate(names) if k not in threads_used
    )
    assert r.counters["verify_bad_written_sectors"] == 0
    assert r.meta["guest_vcpus"] == 2
    assert list(disk_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "vcpus", "numjobs", "message"),
    [
        ("virtio-blk", 2, 2, r"guest_vcpus \(2\) may not exceed the queues it uses \(1\)"),
        ("vhost-blk-mq", 3, 2, r"guest_vcpus \(3\) > numjobs \(2\)"),
        ("vhost-blk-mq", 0, 1, "guest_vcpus must be within"),
    ],
)
def test_guests_the_reference_cannot_run_are_refused_with_one_line(
    name: str, vcpus: int, numjobs: int, message: str, disk_dir: Path
) -> None:
    wl = Workload(rw="randread", bs=4096, iodepth=1, number_ios=10, numjobs=numjobs)
    with pytest.raises(ConfigError, match=message):
        run(wl, name, guest_vcpus=vcpus, directory=disk_dir, scratch_size=1 << 20)
    assert list(disk_dir.iterdir()) == []


@pytest.mark.parametrize("bs", [512, 65536])
def test_block_sizes_qd1(bs: int, disk_dir: Path) -> None:
    wl = Workload(rw="randread", bs=bs, iodepth=1, number_ios=100)
    r = run(wl, "virtio-blk", directory=disk_dir, scratch_size=2 << 20, verify=True)
    check_record(r, wl, 100)
    # At iodepth 1 every I/O is kicked and (with event_idx) signalled.
    assert r.kicked.all() and r.counters["signals"] == 100


def test_sequential_write_covers_the_region_in_order(disk_dir: Path) -> None:
    wl = Workload(rw="write", bs=4096, iodepth=2, size=64 << 10)
    r = run(wl, "vhost-blk", directory=disk_dir, verify=True, engine="threads")
    assert r.total_ios == 16  # one pass over size (fio's default run length)
    assert np.array_equal(np.sort(r.offset), np.arange(16) * 4096)
    assert np.all(r.ddir == 1)
    assert r.counters["verify_written_blocks"] == 16


def test_batched_design_and_polling(disk_dir: Path) -> None:
    # A poll window long enough that a loaded 2-core host still lands completions in it (at
    # 20 us a CI run with a busy neighbour counted no hit in 300 I/Os).
    d = design("virtio-blk-batched", poll_us=200.0)
    wl = Workload(rw="randread", bs=4096, iodepth=8, number_ios=N)
    r = run(wl, d, directory=disk_dir, scratch_size=4 << 20, verify=True)
    check_record(r, wl, N)
    assert r.counters["poll_hits"] > 0
    assert r.counters["io_submit_calls"] <= N


def test_two_thread_polling(disk_dir: Path) -> None:
    d = design("vhost-blk", poll_us=10.0)
    wl = Workload(rw="randread", bs=4096, iodepth=2, number_ios=100)
    r = run(wl, d, directory=disk_dir, scratch_size=2 << 20, verify=True)
    check_record(r, wl, 100)


def test_pinning(disk_dir: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    host, guest = cpus[0], cpus[-1]
    wl = Workload(rw="randread", bs=4096, iodepth=2, number_ios=100)
    r = run(
        wl,
        "vhost-blk",
        directory=disk_dir,
        cpus=(host, host),
        guest_cpu=guest,
        scratch_size=2 << 20,
    )
    check_record(r, wl, 100)
    assert set(r.submit_cpu.tolist()) == {host} and set(r.complete_cpu.tolist()) == {host}
    assert set(r.guest_cpu.tolist()) == {guest}
    assert os.sched_getaffinity(0) == set(cpus)  # the caller's affinity is untouched


def test_runtime_and_ramp(disk_dir: Path) -> None:
    wl = Workload(rw="randread", bs=4096, iodepth=2, runtime=0.2, ramp_time=0.1)
    r = run(wl, "virtio-blk", directory=disk_dir, scratch_size=2 << 20)
    assert r.total_ios > 0 and r.meta["warmup_ios"] > 0
    assert np.all(r.stages["submit_ns"] >= r.start_ns)
    assert np.all(r.stages["submit_ns"] < r.start_ns + 0.2e9)
    assert 0.1 < r.runtime_s < 1.0


def test_without_event_idx(disk_dir: Path) -> None:
    wl = Workload(rw="randread", bs=4096, iodepth=4, number_ios=200)
    r = run(wl, "vhost-blk", directory=disk_dir, scratch_size=2 << 20, event_idx=False, verify=True)
    check_record(r, wl, 200)


def test_same_seed_same_io_pattern(disk_dir: Path) -> None:
    wl = Workload(rw="randrw", bs=4096, iodepth=1, number_ios=50)
    a = run(wl, "virtio-blk", directory=disk_dir, scratch_size=2 << 20, seed=3)
    b = run(wl, "vhost-blk", directory=disk_dir, scratch_size=2 << 20, seed=3)
    c = run(wl, "virtio-blk", directory=disk_dir, scratch_size=2 << 20, seed=4)
    assert np.array_equal(a.offset, b.offset) and np.array_equal(a.ddir, b.ddir)
    assert not np.array_equal(a.offset, c.offset)


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_save_and_load(
    suffix: str, disk_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    wl = Workload(rw="randread", bs=4096, iodepth=2, number_ios=50)
    r = run(wl, "vhost-blk", directory=disk_dir, scratch_size=2 << 20)
    path = r.save(tmp_path_factory.mktemp("trace") / f"run{suffix}")
    back = RunRecord.load(path)
    for name, col in r.columns().items():
        assert np.array_equal(back.columns()[name], col), name
    assert back.counters == r.counters and back.thread_names == r.thread_names
    assert back.meta["design"] == "vhost-blk" and back.start_ns == r.start_ns
    assert back.summary() == r.summary()
    df = back.to_pandas()
    assert len(df) == 50 and "lat_ns" in df and "pop_ns" in df


def test_a_one_queue_trace_of_format_1_still_loads(
    disk_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Traces written before jobs and queues were recorded (format 1) load with every I/O on
    job 0 and queue 0."""
    wl = Workload(rw="randread", bs=4096, iodepth=2, number_ios=30)
    r = run(wl, "virtio-blk", directory=disk_dir, scratch_size=2 << 20)
    path = tmp_path_factory.mktemp("trace") / "old.npz"
    cols = {k: v for k, v in r.columns().items() if k not in ("job", "queue")}
    header = {**r._header(), "format": "vsim-reference-trace/1"}
    np.savez_compressed(path, __header__=np.array(json.dumps(header, default=str)), **cols)
    back = RunRecord.load(path)
    assert back.total_ios == 30 and not back.job.any() and not back.queue.any()
    assert np.array_equal(back.lat_ns, r.lat_ns)


def test_an_io_uring_design_runs_on_io_uring(disk_dir: Path) -> None:
    """qemu-iothread-uring brings its engine: the run uses io_uring without being told, its
    completions come off the CQ ring, and an engine that contradicts the design is refused."""
    wl = Workload(rw="randread", bs=4096, iodepth=4, number_ios=N)
    r = run(wl, "qemu-iothread-uring", directory=disk_dir, scratch_size=4 << 20, verify=True)
    check_record(r, wl, N)
    assert r.meta["engine"] == "io_uring" and r.counters["verify_bad_sectors"] == 0
    with pytest.raises(ConfigError, match="runs on io_uring; --engine native contradicts it"):
        run(wl, "qemu-iothread-uring", engine="native", directory=disk_dir)
    assert list(disk_dir.iterdir()) == []


def test_an_sqpoll_design_submits_without_system_calls(disk_dir: Path) -> None:
    """iothread-uring-sqpoll: the IOThread queues SQEs and the kernel's SQ thread (no Python
    thread of the backend) submits them: the run completes, verified, with no io_uring_enter
    beyond the ones that woke the SQ thread."""
    wl = Workload(rw="randread", bs=4096, iodepth=4, number_ios=N)
    r = run(wl, "iothread-uring-sqpoll", directory=disk_dir, scratch_size=4 << 20, verify=True)
    check_record(r, wl, N)
    c = r.counters
    assert r.meta["engine"] == "io_uring" and c["verify_bad_sectors"] == 0
    assert c["io_submit_calls"] == c["sq_wakeups"] <= 2
    assert c["iothread.requests"] >= N and c["sqpoll.requests"] == 0
    assert list(disk_dir.iterdir()) == []


def test_the_guest_submits_in_batches_with_one_kick_each(disk_dir: Path) -> None:
    """iodepth_batch_submit 4 at iodepth 4: the first fill is one io_submit, so its four I/Os
    return together (one kick_ns) and at most one of them carries a kick; the earlier ones
    waited for the later ones (slat falls along the batch)."""
    wl = Workload(rw="randread", bs=4096, iodepth=4, number_ios=N, iodepth_batch_submit=4)
    r = run(wl, "virtio-blk-batched", directory=disk_dir, scratch_size=4 << 20, verify=True)
    check_record(r, wl, N)
    first = slice(0, 4)
    assert len(set(r.stages["kick_ns"][first].tolist())) == 1
    assert int(r.kicked[first].sum()) <= 1
    assert r.slat_ns[0] > r.slat_ns[3]
    assert r.counters["guest_kicks"] < r.total_ios


def test_the_guest_keeps_a_linear_rate_and_quiesces_before_it_sleeps(disk_dir: Path) -> None:
    """rate_iops at iodepth 4 far below capacity: fio's linear schedule puts the k-th I/O at
    k / rate (none early, the late ones caught up), and a job ahead of it reaps all it has in
    flight before sleeping, so those I/Os do not overlap."""
    rate, n = 200, 100  # a gap of 5 ms, far above an I/O's latency and a late wake-up
    wl = Workload(rw="randread", bs=4096, iodepth=4, number_ios=n, rate_iops=(rate, 0))
    r = run(wl, "virtio-blk", directory=disk_dir, scratch_size=4 << 20, verify=True)
    check_record(r, wl, n)
    s = r.stages
    start = s["submit_ns"] - r.start_ns  # since the job began (fio's epoch; no ramp_time)
    due_ns = np.arange(n) * 1_000_000_000 // rate
    assert np.all(start >= due_ns - 1_000)  # never early (1 us of clock reads aside)
    # The schedule is absolute: an I/O starts at its due time (plus a late wake-up) or, when the
    # job fell behind (a stall of this shared host), right after the one before: it catches up
    # instead of spacing the late ones by the gap. Only the stalls themselves break this.
    allowed = np.maximum(due_ns[1:], start[:-1]) + 4_000_000  # wake-up and work, < the gap
    assert np.mean(start[1:] > allowed) <= 0.2
    # Ahead of its schedule when it checks (just after the previous submission), the job reaps
    # what it has in flight first: such an I/O starts after the one before completed.
    ahead = due_ns[1:] > start[:-1] + 1_000_000
    waited = s["submit_ns"][1:] >= s["reap_ns"][:-1]
    assert ahead.sum() >= n // 2 and np.mean(waited[ahead]) >= 0.9


def test_the_guest_thinks_after_each_block(disk_dir: Path) -> None:
    """thinktime after every completed I/O: the next one starts thinktime after the reap."""
    wl = Workload(rw="randread", bs=4096, iodepth=1, number_ios=N, thinktime=300.0)
    r = run(wl, "virtio-blk", directory=disk_dir, scratch_size=4 << 20)
    check_record(r, wl, N)
    s = r.stages
    gaps = s["submit_ns"][1:] - s["reap_ns"][:-1]
    assert np.median(gaps) >= 300_000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"iodepth_batch_complete_min": 2}, "iodepth_batch_complete_min/max"),
        ({"rw": "randrw", "rate_iops": (100, 100)}, "one-direction jobs"),
        ({"numjobs": 2, "thinktime": 10.0}, "numjobs = guest_vcpus"),
    ],
)
def test_the_guest_refuses_what_it_does_not_implement(
    disk_dir: Path, fields: dict, message: str
) -> None:
    wl = Workload(**{"rw": "randread", "bs": 4096, "number_ios": N, **fields})
    with pytest.raises(ConfigError, match=message):
        run(wl, "virtio-blk", directory=disk_dir, scratch_size=4 << 20)
