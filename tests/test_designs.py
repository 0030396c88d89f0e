"""Designs as thread roles over virtqueues: the structure's rules and each preset's defining
behaviour (one io_submit per drained batch, deferred signals, queues spread as mapped, a
poller without kicks, adaptive polling, the CPU columns)."""

from __future__ import annotations

import math

import pytest

import vsim
from vsim import ConfigError, Scenario, Workload, design, simulate
from vsim.demands import mva_point
from vsim.models.polling import POLL_START_US, adjust_poll_us
from vsim.profile import Profile, derived, load_profile, synthetic_profile
from vsim.results import CPU_METRICS
from vsim.scenario import Design


@pytest.fixture(scope="module")
def local():  # type: ignore[no-untyped-def]
    return load_profile("local")


def _run(name: str, profile: Profile, *, iodepth: int = 8, numjobs: int = 1, vcpus=None, **kw):  # type: ignore[no-untyped-def]
    # (a short warm-up: counters and levels then cover the measured window, not the start)
    w = Workload(
        rw="randread", bs=4096, iodepth=iodepth, numjobs=numjobs, number_ios=4000, ramp_time=0.002
    )
    d = design(name, **kw)
    s = Scenario(workload=w, design=d, profile=profile.name, guest_vcpus=vcpus)
    return simulate(s, seed=5, profile=profile)


# -- the structure ------------------------------------------------------------------------------


def test_default_mapping_is_round_robin_and_pairs_submitters_with_completers() -> None:
    d = Design(name="rr", roles=("both", "both"), queues=4)
    assert d.served() == ((0, 0), (1, 1), (0, 0), (1, 1))
    assert d.thread_names == ("iothread0", "iothread1")
    split = Design(name="split", roles=("submit", "complete", "submit", "complete"), queues=2)
    assert split.served() == ((0, 1), (2, 3))
    assert split.thread_names == ("submitter0", "completer0", "submitter1", "completer1")
    assert design("vhost-blk").thread_names == ("submitter", "completer")
    assert design("virtio-blk").thread_names == ("iothread",)
    mapped = Design(name="m", roles=("both", "poll"), queues=2, mapping=((1,), (0,)))
    assert mapped.served() == ((1, 1), (0, 0))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"roles": ("spin",)}, "unknown role"),
        ({"roles": ()}, "roles must be"),
        ({"roles": ("complete",)}, "no thread pops"),
        ({"queues": 0}, "queues must be"),
        ({"roles": ("both", "both"), "queues": 1}, "thread 1 .both. serves no queue"),
        ({"queues": 2, "mapping": ((0,),)}, "one entry per queue"),
        ({"mapping": ((3,),)}, "no such thread"),
        ({"roles": ("submit", "submit"), "mapping": ((0, 1),)}, "needs one both/poll"),
        ({"roles": ("submit",)}, "no completer"),
        ({"poll_us": 5.0, "poll_max_us": 32.0}, "not both"),
        ({"poll_max_us": math.nan}, "poll_max_us must be"),
        ({"engine": "spdk"}, "unknown engine 'spdk'"),
        ({"engine": "io_uring", "context": "kernel"}, "needs context user"),
        ({"roles": ("both", "sqpoll")}, "sqpoll thread needs engine io_uring"),
        (
            {"roles": ("both", "both", "sqpoll"), "queues": 2, "engine": "io_uring"},
            r"1 sqpoll thread\(s\) for 2 io_uring ring",
        ),
        ({"roles": ("sqpoll",), "engine": "io_uring"}, "no thread pops"),
        (
            {"roles": ("both", "sqpoll"), "engine": "io_uring", "mapping": ((1,),)},
            "needs one both/poll",
        ),
    ],
)
def test_impossible_designs_are_refused(kw, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=match):
        Design(name="bad", **kw)


def test_poll_mode_needs_a_core_of_its_own(make_profile) -> None:  # type: ignore[no-untyped-def]
    prof = make_profile(host_cpus=1)
    w = Workload(number_ios=100)
    with pytest.raises(ConfigError, match="need a host CPU each"):
        simulate(Scenario(workload=w, design=design("vhost-user-blk")), profile=prof)


def test_guest_vcpus_is_checked() -> None:
    with pytest.raises(ConfigError, match="guest_vcpus"):
        Scenario(guest_vcpus=0)


# -- the presets' defining behaviour -----------------------------------------------------------


def test_poll_mode_backend_takes_no_kicks_and_spins(local) -> None:  # type: ignore[no-untyped-def]
    r = _run("vhost-user-blk", local)
    # EVENT_IDX: the device never moves avail_event, so the driver kicks once, when its first
    # entry passes the initial avail_event, and never again (until the 16-bit index wraps).
    assert r.counters["kicks"] / r.ios < 0.001
    assert r.counters["poller.wakeups_idle"] + r.counters["poller.wakeups_busy"] == 0
    cpu = r.cpu()
    assert cpu["host_poll_us_per_io"] > 0 and cpu["host_wakeup_us_per_io"] == 0
    # A spinning thread is busy all the time: its CPU time per I/O is the whole window's.
    assert cpu["host_cpu_us_per_io"] == pytest.approx(1e6 / r.iops, rel=1e-6)
    blocking = _run("virtio-blk-batched", local)
    assert blocking.counters["kicks"] / blocking.ios > 0.1


def test_batched_submission_is_one_io_submit_per_drained_batch(local) -> None:  # type: ignore[no-untyped-def]
    per_request = _run("virtio-blk", local, iodepth=16)
    batched = _run("virtio-blk-batched", local, iodepth=16)
    # One call per request: as many calls as requests, more than the drains of the ring.
    p = per_request.counters
    assert p["submit_calls"] == pytest.approx(p["iothread.requests"], abs=1)  # (see below)
    assert p["submit_calls"] > 1.1 * p["iothread.drains"]
    # One call per drained ring: each handler pass pops until the ring is empty with kicks
    # re-enabled, then makes one call for all it popped: as many calls as drains, fewer than
    # requests.
    c = batched.counters
    # (counted from the warm-up's end: a pass may straddle it, so within one)
    assert c["submit_calls"] == pytest.approx(c["iothread.drains"], abs=1)
    assert c["submit_calls"] < 0.9 * c["iothread.requests"]


def test_linux_aio_submits_early_at_its_batch_cap(make_profile) -> None:  # type: ignore[no-untyped-def]
    """A slow pop (10 us) and a fast disk with a channel per request let the requests pile up
    in the ring: QEMU's linux-aio submits at 32 (aio-max-batch), so no call carries more than
    32."""
    disk = {
        "model": "fixed",
        "service_us": derived({"value": 20.0}),
        "channels": derived({"value": 64}),
    }
    prof = make_profile(costs={"pop": {"dist": "fixed", "value_us": 10.0}}, disk=disk)
    capped = _run("virtio-blk-batched", prof, iodepth=64)
    free = _run("virtio-blk-batched", prof, iodepth=64, submit_max=0)
    c, f = capped.counters, free.counters
    assert c["submit_batch_max"] == 32
    assert f["submit_batch_max"] > 32  # uncapped, batches pass 32
    assert f["submit_calls"] == pytest.approx(f["iothread.drains"], abs=1)


def test_deferred_signalling_interrupts_less_than_once_per_io(local) -> None:  # type: ignore[no-untyped-def]
    batched = _run("virtio-blk-batched", local, iodepth=16)
    assert batched.counters["signals"] / batched.ios < 1.0
    assert batched.counters["interrupts"] / batched.ios < 1.0
    assert batched.counters["signals"] <= batched.counters["reap_calls"]
    per = _run("virtio-blk", local, iodepth=16)
    assert per.counters["signals"] > batched.counters["signals"]


def test_queues_are_spread_over_the_threads_as_mapped(make_profile) -> None:  # type: ignore[no-untyped-def]
    """On a symmetric host (a CPU for every thread, equal costs) every job runs at the same
    pace, so each thread pops the share of the requests its queues carry."""
    prof = make_profile(
        costs={"submit_iocb": {"dist": "exponential", "mean_us": 10.0}}, host_cpus=8, vcpus=4
    )
    r = _run("iothread-vq-mapping", prof, numjobs=4)
    c = r.counters
    assert c["queues_used"] == 4
    # Queues 0 and 2 are IOThread 0's, 1 and 3 IOThread 1's; job i runs on vCPU i and submits
    # to queue i, so each thread pops the requests of two jobs: half of all.
    total = c["iothread0.requests"] + c["iothread1.requests"]
    assert total == pytest.approx(c["disk_served"], abs=4 * 8)  # up to the I/Os in flight
    assert c["iothread0.requests"] == pytest.approx(total / 2, rel=0.05)
    assert set(r.queues()) >= {"iothread0", "iothread1", "vcpu0", "vcpu3"}
    # Mapped by hand, three queues to thread 0: it pops three quarters.
    skew = _run("iothread-vq-mapping", prof, numjobs=4, mapping=((0,), (0,), (0,), (1,)))
    s = skew.counters
    assert s["iothread0.requests"] == pytest.approx(
        0.75 * (s["iothread0.requests"] + s["iothread1.requests"]), rel=0.05
    )
    # One vCPU uses one queue (Linux: min(queues, vCPUs)): thread 1 then has nothing to do.
    one = _run("iothread-vq-mapping", prof, numjobs=4, vcpus=1)
    assert one.counters["queues_used"] == 1 and one.counters["iothread1.requests"] == 0


def test_a_worker_per_queue_serves_only_its_queue(local) -> None:  # type: ignore[no-untyped-def]
    r = _run("vhost-blk-mq", local, numjobs=2, vcpus=2)
    c = r.counters
    assert c["queues_used"] == 2
    assert c["iothread0.requests"] > 0 and c["iothread1.requests"] > 0
    assert c["iothread2.requests"] == c["iothread3.requests"] == 0


def test_adaptive_polling_grows_from_4us_and_drops_past_the_ceiling() -> None:
    poll, seen = 0.0, []
    for block in (10.0, 10.0, 20.0, 30.0, 32.5):
        poll = adjust_poll_us(poll, block, 32.768)
        seen.append(poll)
    assert seen == [POLL_START_US, 8.0, 16.0, 32.0, 32.768]
    assert adjust_poll_us(32.768, 5.0, 32.768) == 32.768  # the sweet spot: unchanged
    assert adjust_poll_us(32.768, 40.0, 32.768) == 0.0  # past the ceiling: poll-shrink 0
    assert adjust_poll_us(8.0, 32.768, 32.768) == 8.0  # at the ceiling: neither rule applies


def test_adaptive_polling_trades_cpu_for_latency(make_profile) -> None:  # type: ignore[no-untyped-def]
    """A fast device (20 us) and a slow idle wake-up (10 us): events come within the poll
    ceiling, so adaptive polling catches them spinning, skips the wake-up, and pays in CPU."""
    prof = make_profile(
        costs={"guest_submit": {"dist": "fixed", "value_us": 5.0}},
        disk={
            "model": "fixed",
            "service_us": derived({"value": 20.0}),
            "channels": derived({"value": 1}),
        },
        wakeup_idle={"dist": "fixed", "value_us": 10.0},
    )
    off = _run("virtio-blk-batched", prof, iodepth=1)
    on = _run("qemu-iothread", prof, iodepth=1)
    assert off.cpu()["host_poll_us_per_io"] == 0 < on.cpu()["host_poll_us_per_io"]
    assert on.counters["iothread.wakeups_poll"] > 0.9 * on.ios
    assert on.lat_ns.mean() < off.lat_ns.mean() - 5_000  # two wake-ups of 10 us saved, about
    # Each poll is at most the ceiling: polling time per wait cannot exceed it.
    waits = sum(v for k, v in on.counters.items() if k.startswith("iothread.wakeups_"))
    assert on.cpu()["host_poll_us_per_io"] * on.ios <= 32.768 * waits * 1.001


@pytest.mark.parametrize("name", list(vsim.DESIGNS))
def test_every_row_has_the_cpu_columns(name, local, priced) -> None:  # type: ignore[no-untyped-def]
    r = _run(name, priced(local, vsim.design(name)), iodepth=4, numjobs=2, vcpus=2)
    for row in r.rows():
        for k in CPU_METRICS:
            assert math.isfinite(row[k]) and row[k] >= 0, k
        parts = row["host_useful_us_per_io"] + row["host_poll_us_per_io"]
        assert row["host_cpu_us_per_io"] == pytest.approx(parts + row["host_wakeup_us_per_io"])
        assert row["iops_per_host_core"] == pytest.approx(
            r.iops / (row["host_cpu_us_per_io"] * r.iops / 1e6)
        )
        assert row["guest_vcpus"] == 2


# -- the analytic oracle over several queues -------------------------------------------------


def test_independent_chains_match_exact_mva() -> None:
    """A worker per queue, a vCPU per queue and a disk that never queues: N independent
    closed chains, each product form (one exponential station and a delay)."""
    submit_us, disk_us, n_queues, iodepth = 40.0, 100.0, 4, 4
    disk = {
        "model": "empirical",
        "channels": derived({"value": n_queues * iodepth}),
        "service": {"read": derived({"dist": "exponential", "mean_us": disk_us})},
    }
    doc = synthetic_profile(
        costs={"submit_iocb": {"dist": "exponential", "mean_us": submit_us}},
        disk=disk,
        host_cpus=2 * n_queues,
        vcpus=n_queues,
    )
    prof = Profile.from_dict(doc, "test")
    w = Workload(rw="randread", iodepth=iodepth, numjobs=n_queues, number_ios=20000)
    s = Scenario(workload=w, design=design("vhost-blk-mq"), profile="test")
    predicted = mva_point(prof, s)
    r = simulate(s, seed=11, profile=prof)
    # The exact figure by hand: one chain is a queue of 40 us and a delay of 100 us with
    # iodepth customers, X(n) = n / (R_queue(n) + 100) with R_queue(n) = 40 (1 + Q(n-1)).
    q, x = 0.0, 0.0
    for n in range(1, iodepth + 1):
        rq = submit_us * (1 + q)
        x = n / (rq + disk_us)
        q = x * rq
    assert predicted["iops"] == pytest.approx(n_queues * x * 1e6, rel=1e-12)
    assert r.iops == pytest.approx(predicted["iops"], rel=0.02)
    assert r.lat_ns.mean() / 1e3 == pytest.approx(predicted["lat_mean_us"], rel=0.02)


# -- io_uring ---------------------------------------------------------------------------------


def test_an_io_uring_design_needs_a_profile_that_prices_it(local) -> None:  # type: ignore[no-untyped-def]
    """A profile calibrated without io_uring's microbenchmarks has no uring costs: the design is
    refused in one line (simulation and MVA), never priced silently as Linux AIO or as zero."""
    s = Scenario(workload=Workload(number_ios=100), design=design("qemu-iothread-uring"))
    with pytest.raises(ConfigError, match=r"has no costs\.uring_submit_call"):
        simulate(s, profile=local)
    with pytest.raises(ConfigError, match=r"has no costs\.uring_submit_call"):
        mva_point(local, s)


def test_io_uring_reads_completions_without_a_system_call(make_profile) -> None:  # type: ignore[no-untyped-def]
    """The same IOThread on io_uring: io_uring_enter and SQEs priced by their own costs, and
    the completions read off the CQ ring at uring_reap_call (no io_getevents): with a 10 us
    io_getevents and a free CQ look, the host's useful CPU per I/O falls by what the reaps
    cost, and the submissions are priced as io_uring's, not AIO's."""
    costs = {
        "submit_call": {"dist": "fixed", "value_us": 6.0},
        "submit_iocb": {"dist": "fixed", "value_us": 3.0},
        "reap_call": {"dist": "fixed", "value_us": 10.0},
        "reap_event": {"dist": "fixed", "value_us": 1.0},
        "uring_submit_call": {"dist": "fixed", "value_us": 6.0},
        "uring_submit_sqe": {"dist": "fixed", "value_us": 3.0},
        "uring_reap_call": {"dist": "fixed", "value_us": 0.0},
        "uring_reap_event": {"dist": "fixed", "value_us": 1.0},
    }
    prof = make_profile(costs=costs)
    aio = _run("virtio-blk-batched", prof, iodepth=4)
    uring = _run("virtio-blk-batched", prof, iodepth=4, engine="io_uring")
    per_io = lambda r: r.cpu()["host_useful_us_per_io"]  # noqa: E731
    reaps = aio.counters["reap_calls"] / aio.ios
    assert per_io(aio) - per_io(uring) == pytest.approx(10.0 * reaps, rel=0.15)
    pricier = dict(costs, uring_submit_sqe={"dist": "fixed", "value_us": 13.0})
    dear = _run("virtio-blk-batched", make_profile(costs=pricier), iodepth=4, engine="io_uring")
    assert per_io(dear) - per_io(uring) == pytest.approx(10.0, rel=0.05)  # one SQE per I/O


def test_qemu_io_uring_submits_up_to_its_ring_size(make_profile) -> None:  # type: ignore[no-untyped-def]
    """QEMU's io_uring submits a drained batch at once only when 128 are queued (linux-aio at
    32): at iodepth 64 one io_uring_enter carries more than linux-aio's cap."""
    prof = make_profile(
        costs={"pop": {"dist": "fixed", "value_us": 2.0}},
        queue_size=256,
    )
    uring = _run("qemu-iothread-uring", prof, iodepth=64)
    native = _run("qemu-iothread", prof, iodepth=64)
    assert native.counters["submit_batch_max"] <= 32 < uring.counters["submit_batch_max"]
    assert uring.counters["submit_batch_max"] <= 128


# -- SQPOLL ------------------------------------------------------------------------------------

_SQPOLL_COSTS = {
    "uring_submit_call": {"dist": "fixed", "value_us": 6.0},
    "uring_submit_sqe": {"dist": "fixed", "value_us": 3.0},
    "uring_sqpoll_call": {"dist": "fixed", "value_us": 0.5},
    "uring_sqpoll_sqe": {"dist": "fixed", "value_us": 1.0},
    "uring_sq_call": {"dist": "fixed", "value_us": 4.0},
    "uring_sq_sqe": {"dist": "fixed", "value_us": 2.0},
}


def test_sqpoll_submits_without_a_system_call_on_a_spinning_kernel_thread(make_profile) -> None:  # type: ignore[no-untyped-def]
    """With SQPOLL the IOThread only writes SQEs (no io_uring_enter: submit_calls 0) and the
    SQ thread takes each batch off the ring and submits it: its work per I/O is one SQE plus
    its share of a batch, and it spins the whole window, so host CPU per I/O is at least a
    core's time per I/O while the IOThread's useful work falls by what the calls cost."""
    prof = make_profile(costs=_SQPOLL_COSTS, host_cpus=4)
    sq = _run("iothread-uring-sqpoll", prof, iodepth=4)
    plain = _run("qemu-iothread-uring", prof, iodepth=4)
    c = sq.counters
    assert c["submit_calls"] == 0 < plain.counters["submit_calls"]
    assert c["sqpoll.wakeups_idle"] + c["sqpoll.wakeups_busy"] == 0  # it never blocks
    assert c["sqpoll.wakeups_poll"] > 0.5 * plain.counters["submit_calls"]
    # spinning or submitting: always on its CPU (but for its start)
    assert sq.utilisation()["sqpoll"] == pytest.approx(1.0, abs=1e-3)
    assert 0 <= sq.queues()["sqpoll"] < 4
    cpu = sq.cpu()
    assert cpu["host_cpu_us_per_io"] >= 1e6 / sq.iops
    assert cpu["host_poll_us_per_io"] > 0

    # Per I/O the IOThread pays sqpoll_sqe (1 us) for uring_submit_sqe (3 us), and a 0.5 us
    # queueing for each 6 us io_uring_enter; the SQ thread does 2 us per SQE.
    def it(r):  # type: ignore[no-untyped-def]  # the IOThread's useful CPU per I/O
        lv = r.levels
        return (lv["iothread.busy"] - lv["iothread.poll"]) * r.elapsed_s * 1e6 / r.ios

    saved = it(plain) - it(sq)
    calls = plain.counters["submit_calls"] / plain.ios
    assert saved == pytest.approx(2.0 + 5.5 * calls, rel=0.2)


def test_an_sqpoll_design_needs_a_profile_that_prices_it() -> None:
    """A profile calibrated before SQPOLL's microbenchmarks existed has io_uring's costs but
    not SQPOLL's: the design is refused in one line, io_uring without SQPOLL is not."""
    data = synthetic_profile()  # every cost zero: drop SQPOLL's
    for k in ("uring_sqpoll_call", "uring_sqpoll_sqe", "uring_sq_call", "uring_sq_sqe"):
        del data["costs"][k]
    prof = Profile.from_dict(data, "test")
    s = Scenario(workload=Workload(number_ios=100), design=design("iothread-uring-sqpoll"))
    with pytest.raises(ConfigError, match=r"runs on io_uring-sqpoll.*costs\.uring_sqpoll_call"):
        simulate(s, profile=prof)
    with pytest.raises(ConfigError, match=r"costs\.uring_sqpoll_call"):
        mva_point(prof, s)
    assert prof.prices("io_uring") and not prof.prices("io_uring-sqpoll")


# -- guest-side batching ---------------------------------------------------------------------


def test_guest_batches_kick_once_per_io_submit(local) -> None:  # type: ignore[no-untyped-def]
    """fio's iodepth_batch_submit: a job's I/Os go to the ring in batches, one io_submit and
    one notification check (virtio_queue_rqs) each, committed at the batch size or when the
    queue is full. With deferred interrupts several complete per reap, so refills batch."""

    def run(b: int):  # type: ignore[no-untyped-def]
        w = Workload(iodepth=16, iodepth_batch_submit=b, number_ios=4000, ramp_time=0.002)
        s = Scenario(workload=w, design=design("virtio-blk-batched"), profile="local")
        return simulate(s, seed=5, profile=local)

    one, four = run(1), run(4)
    c1, c4 = one.counters, four.counters
    prepares = lambda c: c["kicks"] + c["kicks_suppressed"]  # noqa: E731
    assert c1["guest_submits"] == pytest.approx(one.ios, abs=16)  # one call per I/O
    assert prepares(c1) == c1["guest_submits"] and prepares(c4) == c4["guest_submits"]
    assert four.ios / 4 <= c4["guest_submits"] < 0.8 * four.ios
    assert c4["kicks"] < c1["kicks"]
    # An I/O returns from io_submit with its batch: the first of a batch waits for the rest.
    assert four.slat_ns.mean() > one.slat_ns.mean()
    with pytest.raises(ConfigError, match="iodepth_batch_submit must be within"):
        Workload(iodepth_batch_submit=-1)
    assert Workload(iodepth=8, iodepth_batch_submit=0).submit_batch == 8  # 0: iodepth (fio)
    assert Workload(iodepth=8, iodepth_batch_submit=64).submit_batch == 8
