"""Every backend design through the same invariants: Little's law, utilisation law, determinism."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import vsim
from vsim import Scenario, Workload, design, simulate
from vsim.profile import derived, load_profile
from vsim.results import STAGES
from vsim.sweep import grid, run_points

# Every preset (a new one is checked without anyone adding it here), and the polling, pinned
# and batched variants of the seed's two.
PRESETS = list(vsim.DESIGNS.values())
DESIGNS = [
    *PRESETS,
    design("virtio-blk", poll_us=50.0),
    design("vhost-blk", poll_us=20.0, cpus=(1, 2)),
]
IDS = [f"{d.name}-poll{d.poll_us:g}" + ("-pinned" if d.cpus else "") for d in DESIGNS]
WORKLOADS = [
    Workload(rw="read", bs=512, iodepth=1, number_ios=3000),
    Workload(rw="randread", bs=4096, iodepth=8, number_ios=3000),
    Workload(rw="rw", bs=512, iodepth=4, number_ios=3000),
    Workload(rw="randwrite", bs=4096, iodepth=32, numjobs=2, number_ios=6000),
    Workload(rw="randread", bs=4096, iodepth=16, iodepth_batch_submit=4, number_ios=3000),
]


@pytest.fixture(scope="module")
def seed_profile():  # type: ignore[no-untyped-def]
    return load_profile("seed-2011")


@pytest.mark.parametrize("d", DESIGNS, ids=IDS)
@pytest.mark.parametrize(
    "w", WORKLOADS, ids=lambda w: f"{w.rw}-qd{w.iodepth}x{w.numjobs}b{w.iodepth_batch_submit}"
)
def test_littles_law(d, w, seed_profile, priced):  # type: ignore[no-untyped-def]
    r = simulate(Scenario(workload=w, design=d), seed=3, profile=priced(seed_profile, d))
    # Little's law on fio's lat: L = X W, with L the time-average number of I/Os between fio's
    # submit start and its reap. L stays below iodepth by the reap-to-resubmit gap (as in fio,
    # where IOPS x lat is 0.87-0.90 x iodepth in the seed's table).
    population = w.iodepth * w.numjobs
    little = r.iops * r.lat_ns.mean() / 1e9
    assert little == pytest.approx(r.levels["guest.active"], rel=0.01)
    assert 0.9 * population <= little <= population * 1.001
    assert r.ios == (w.number_ios or 0) * w.numjobs
    # fio's three latencies are consistent per I/O.
    assert np.all(r.slat_ns > 0) and np.all(r.clat_ns > 0)
    assert np.array_equal(r.lat_ns, r.slat_ns + r.clat_ns)


@pytest.mark.parametrize("d", PRESETS, ids=IDS[: len(PRESETS)])
def test_littles_law_on_every_job_of_a_multi_vcpu_guest(d, make_profile):  # type: ignore[no-untyped-def]
    """Four jobs on four vCPUs (a queue each where the design has them), a CPU for every
    thread: L = X W for each job (its own time-average I/Os in flight, IOPS and latency), the
    jobs add up to the whole, and no job is starved."""
    prof = make_profile(
        costs={
            "guest_submit": {"dist": "exponential", "mean_us": 10.0},
            "pop": {"dist": "exponential", "mean_us": 5.0},
        },
        host_cpus=9,
        vcpus=4,
    )
    w = Workload(rw="randread", bs=4096, iodepth=4, numjobs=4, number_ios=2000)
    r = simulate(Scenario(workload=w, design=d, profile="test"), seed=3, profile=prof)
    assert r.counters["queues_used"] == min(d.queues, 4)
    for j in range(4):
        mine = r.job == j
        x = int(mine.sum()) / r.elapsed_s
        little = x * float(r.lat_ns[mine].mean()) / 1e9
        assert little == pytest.approx(r.levels[f"job{j}.active"], rel=0.02), j
    total = sum(r.levels[f"job{j}.active"] for j in range(4))
    assert total == pytest.approx(r.levels["guest.active"])
    assert r.ios == 4 * 2000 and r.rows()[0]["job_iops_min_pct"] > 90


@pytest.mark.parametrize("d", DESIGNS, ids=IDS)
def test_utilisation_law(d, make_profile):  # type: ignore[no-untyped-def]
    """Disk busy fraction = throughput x service time (fixed 100 us disk, one channel)."""
    prof = make_profile(
        costs={
            "guest_submit": {"dist": "exponential", "mean_us": 20.0},
            "pop": {"dist": "fixed", "value_us": 3.0},
        },
        wakeup_idle={"dist": "uniform", "low_us": 5.0, "high_us": 15.0},
    )
    w = Workload(rw="randread", iodepth=4, number_ios=4000)
    r = simulate(Scenario(workload=w, design=d, profile="test"), seed=2, profile=prof)
    assert r.levels["disk.busy"] == pytest.approx(r.iops * 100e-6, rel=0.01)
    # Every thread's busy fraction is a fraction, and the disk served what was measured.
    for name, u in r.utilisation().items():
        assert 0.0 <= u <= 1.0, name
    assert r.counters["disk_served"] >= r.ios
    # Little's law at the disk: mean number inside = throughput x mean time inside.
    sub, dd = STAGES.index("sub"), STAGES.index("dd")
    inside_us = float(np.mean(r.stages[:, dd] - r.stages[:, sub]))
    assert r.queues()["disk"] == pytest.approx(r.iops * inside_us / 1e6, rel=0.02)


@pytest.mark.parametrize("d", PRESETS, ids=IDS[: len(PRESETS)])
def test_determinism(d, seed_profile, priced):  # type: ignore[no-untyped-def]
    s = Scenario(workload=Workload(rw="randread", iodepth=4, number_ios=2000), design=d)
    prof = priced(seed_profile, d)
    a = simulate(s, seed=7, profile=prof)
    b = simulate(s, seed=7, profile=prof)
    c = simulate(s, seed=8, profile=prof)
    assert a.fio_json_text() == b.fio_json_text()
    assert a.rows() == b.rows()
    assert np.array_equal(a.stages, b.stages)
    assert not np.array_equal(a.clat_ns, c.clat_ns)


def test_sweep_order_irrelevant():
    base = Scenario(workload=Workload(number_ios=500))
    pts = grid(base, {"design": ["virtio-blk", "vhost-blk"], "iodepth": [1, 4], "rw": ["randread"]})
    fwd = run_points(pts).rows
    back = run_points(pts[::-1]).rows
    key = lambda r: (r["design"], r["iodepth"], r["dir"])  # noqa: E731
    assert sorted(fwd, key=key) == sorted(back, key=key)
    pooled = run_points(pts, jobs=2).rows
    assert pooled == fwd


def test_runtime_and_ramp_time(seed_profile):  # type: ignore[no-untyped-def]
    w = Workload(rw="read", bs=512, iodepth=2, runtime=0.2, ramp_time=0.05)
    r = simulate(Scenario(workload=w), seed=1, profile=seed_profile)
    assert r.elapsed_s == pytest.approx(0.2)
    # Only I/Os completed after the warm-up count: about iops x runtime of them.
    assert r.ios == pytest.approx(r.iops * 0.2)
    assert r.ios < 0.25 * r.iops


def test_replace_design_keeps_common_random_numbers(seed_profile):  # type: ignore[no-untyped-def]
    """Designs at the same seed see the same offsets (common random numbers)."""
    w = Workload(rw="randrw", iodepth=1, number_ios=200)
    a = simulate(Scenario(workload=w, design=design("virtio-blk")), 5, profile=seed_profile)
    b = simulate(Scenario(workload=w, design=design("vhost-blk")), 5, profile=seed_profile)
    assert np.array_equal(a.write, b.write)
    assert replace(design("vhost-blk"), poll_us=1.0).poll_us == 1.0


@pytest.mark.parametrize("d", ["virtio-blk", "vhost-blk"])
def test_guest_loop_is_off_the_latency_clock(d, make_profile):  # type: ignore[no-untyped-def]
    """fio's loop between a reap and the next submission lowers IOPS, not latency: at iodepth 1
    the cycle is lat + loop."""
    plain = make_profile(costs={"guest_submit": {"dist": "fixed", "value_us": 20.0}})
    looped = make_profile(
        costs={
            "guest_submit": {"dist": "fixed", "value_us": 20.0},
            "guest_loop": {"dist": "fixed", "value_us": 30.0},
        }
    )
    s = Scenario(workload=Workload(iodepth=1, number_ios=2000), design=design(d))
    a, b = simulate(s, 1, profile=plain), simulate(s, 1, profile=looped)
    lat = (b.slat_ns + b.clat_ns).mean() / 1e3
    assert lat == pytest.approx((a.slat_ns + a.clat_ns).mean() / 1e3)
    assert lat == pytest.approx(120.0)  # submit 20 + disk 100
    assert b.iops == pytest.approx(1e6 / (lat + 30.0), rel=1e-3)


@pytest.fixture(scope="module")
def local_profile():  # type: ignore[no-untyped-def]
    p = load_profile("local")
    assert p.wake_preempt and p.placement is not None  # what the tests below exercise
    return p


@pytest.mark.parametrize("d", ["virtio-blk", "vhost-blk"])
def test_scheduler_model_keeps_the_laws(d, local_profile):  # type: ignore[no-untyped-def]
    """With wake-up preemption and placement epochs (the local profile): Little's law, CPU time
    conserved, deterministic, and preemptions do happen."""
    s = Scenario(workload=Workload(iodepth=8, number_ios=4000), design=design(d), profile="local")
    r = simulate(s, 5, profile=local_profile)
    little = r.iops * r.lat_ns.mean() / 1e9
    assert little == pytest.approx(r.levels["guest.active"], rel=0.01)
    assert sum(v for k, v in r.counters.items() if k.endswith("wakeups_preempt")) > 0
    # A CPU is busy whenever one of its threads runs (and during a preemption's switch).
    names = [*design(d).thread_names, "vcpu0"]
    threads = sum(r.levels[f"{n}.busy"] for n in names)
    cpus = sum(v for k, v in r.levels.items() if k.startswith("cpu") and k.endswith(".busy"))
    assert threads <= cpus <= threads * 1.1
    again = simulate(s, 5, profile=local_profile)
    assert again.to_fio_json() == r.to_fio_json() and again.events == r.events


def test_explicit_pins_override_the_profiles_placement(local_profile):  # type: ignore[no-untyped-def]
    s = Scenario(
        workload=Workload(iodepth=4, number_ios=2000),
        design=design("vhost-blk", cpus=(1, 1)),
        guest_cpus=(0,),
        profile="local",
    )
    a = simulate(s, 2, profile=local_profile)
    b = simulate(s, 2, profile=replace(local_profile, placement=None))
    assert a.to_fio_json() == b.to_fio_json() and a.events == b.events


def test_runtime_and_number_ios_whichever_comes_first(seed_profile):  # type: ignore[no-untyped-def]
    """fio stops at number_ios or runtime, whichever comes first: so does the model."""
    few = Workload(rw="read", bs=512, iodepth=2, number_ios=300, runtime=10.0)
    r = simulate(Scenario(workload=few), seed=1, profile=seed_profile)
    assert r.ios == 300 and r.elapsed_s < 10.0
    short = Workload(rw="read", bs=512, iodepth=2, number_ios=10**6, runtime=0.05)
    r = simulate(Scenario(workload=short), seed=1, profile=seed_profile)
    assert r.elapsed_s == pytest.approx(0.05) and r.ios < 10**6


@pytest.mark.parametrize("d", PRESETS, ids=IDS[: len(PRESETS)])
@pytest.mark.parametrize(("iodepth", "numjobs"), [(16, 1), (6, 2)])
def test_iodepth_beyond_the_queue_waits_for_tags(d, iodepth, numjobs, make_profile):  # type: ignore[no-untyped-def]
    """More I/Os than the queue's 4 descriptors: the excess waits in the guest for a tag.

    A device-bound case (4 channels of 100 us, as many as tags): real fio on a loop device with
    nr_requests=4 (validation/tag-wait) keeps iodepth I/Os outstanding (IOPS x lat = iodepth
    within 0.1 %) and each submission waits for one completion (slat about 1/IOPS). The model
    must do the same, keep Little's law, and report the wait.
    """
    prof = make_profile(
        queue_size=4,
        disk={
            "model": "fixed",
            "service_us": {"value": 100.0, "provenance": "derived", "source": "test"},
            "channels": {"value": 4, "provenance": "derived", "source": "test"},
        },
    )
    w = Workload(rw="randread", iodepth=iodepth, numjobs=numjobs, number_ios=4000)
    r = simulate(Scenario(workload=w, design=d, profile="test"), seed=2, profile=prof)
    population = iodepth * numjobs
    little = r.iops * r.lat_ns.mean() / 1e9
    assert little == pytest.approx(r.levels["guest.active"], rel=0.01)
    assert 0.95 * population <= little <= population * 1.001
    assert r.iops == pytest.approx(4 / 100e-6, rel=0.02)  # the 4 tags keep 4 channels busy
    (row,) = r.rows()
    assert row["tag_wait_mean_us"] > 0
    assert row["slat_mean_us"] == pytest.approx(numjobs * 1e6 / r.iops, rel=0.25)


def test_no_tag_wait_within_the_queue(seed_profile):  # type: ignore[no-untyped-def]
    w = Workload(rw="randread", bs=4096, iodepth=seed_profile.queue_size, number_ios=3000)
    (row,) = simulate(Scenario(workload=w), seed=1, profile=seed_profile).rows()
    assert row["tag_wait_mean_us"] == 0.0


@pytest.mark.parametrize("iodepth", [8, 16, 32])
def test_tag_wait_matches_real_fio(iodepth, make_profile):  # type: ignore[no-untyped-def]
    """validation/tag-wait: real fio on a 4-tag device. Beyond the tags, IOPS x lat = iodepth and
    slat x IOPS = 1 (one completion per sleeping submission); the model's dimensionless figures
    agree within 5 % on a device-bound 4-tag configuration."""
    from vsim.fio import read_fio_json

    path = Path(__file__).resolve().parent.parent / "validation" / "tag-wait" / f"qd{iodepth}.json"
    (job,) = read_fio_json(path)
    st = job.read
    measured = (st.iops * st.lat.mean / 1e9 / iodepth, st.slat.mean / 1e9 * st.iops)
    prof = make_profile(
        queue_size=4,
        disk={
            "model": "empirical",
            "service": {"read": derived({"dist": "exponential", "mean_us": 300.0})},
            "channels": derived({"value": 4}),
        },
    )
    w = Workload(rw="randread", bs=4096, iodepth=iodepth, number_ios=6000)
    r = simulate(Scenario(workload=w, profile="test"), seed=1, profile=prof)
    model = (r.iops * r.lat_ns.mean() / 1e9 / iodepth, r.slat_ns.mean() / 1e9 * r.iops)
    assert model == pytest.approx(measured, rel=0.05)
