"""Unit tests of the models: virtqueue suppression, hdd buffer hits, CPU wake-ups, distributions."""

from __future__ import annotations

import numpy as np
import pytest

from vsim.kernel import Kernel
from vsim.models.cpu import Cpu, Notifier, Thread
from vsim.models.disk import Request
from vsim.models.dists import Dist, dist_from_dict
from vsim.models.hdd import Hdd, HddTimes
from vsim.models.monitor import Registry
from vsim.models.placement import placer
from vsim.models.virtqueue import Virtqueue, need_event

# -- virtqueue -------------------------------------------------------------------------------


def test_need_event_spec_cases():
    assert need_event(0, 1, 0)  # first entry after the event index
    assert not need_event(0, 2, 1)  # already passed: suppressed
    assert need_event(5, 8, 3)  # 5 lies in [3, 8)
    assert not need_event(8, 8, 3)  # 8 not yet reached
    assert need_event(0xFFFF, 0x0001, 0xFFFE)  # wrap-around of 16-bit indices


def test_kicks_suppressed_while_device_processes():
    vq = Virtqueue(8)
    vq.add("a")
    assert vq.kick_prepare()  # device idle with notifications on: kick
    vq.add("b")
    assert not vq.kick_prepare()  # device has not re-enabled notifications yet
    assert vq.pop() == "a" and vq.pop() == "b" and vq.pop() is None
    assert vq.enable_notify()  # nothing pending after re-enabling
    vq.add("c")
    assert vq.kick_prepare()
    assert (vq.kicks, vq.kicks_suppressed) == (2, 1)


def test_enable_notify_reports_race():
    vq = Virtqueue(8)
    vq.add("a")
    vq.kick_prepare()
    vq.add("b")  # arrives while the device processes
    assert vq.pop() == "a"
    assert not vq.enable_notify()  # device must re-check: "b" is pending


def test_interrupts_coalesce_until_driver_reenables():
    vq = Virtqueue(8)
    for r in "abc":
        vq.add(r)
    vq.push(vq.pop())
    assert vq.should_signal()
    vq.push(vq.pop())
    assert not vq.should_signal()  # driver has not consumed the first entry yet
    assert vq.get_used() == "a" and vq.get_used() == "b"
    assert vq.enable_cb()
    vq.push(vq.pop())
    assert vq.should_signal()
    assert (vq.signals, vq.signals_suppressed) == (2, 1)


def test_batched_signal_covers_batch():
    vq = Virtqueue(8)
    for r in "abcd":
        vq.add(r)
    for _ in range(4):
        vq.push(vq.pop())
    assert vq.should_signal()  # one signal for four used entries
    assert vq.signals == 1


def test_ring_full_and_wraparound():
    vq = Virtqueue(4)
    for i in range(4):
        vq.add(i)
    assert not vq.can_add()
    with pytest.raises(RuntimeError):
        vq.add(9)
    for _ in range(70000):  # indices wrap at 2^16
        vq.push(vq.pop())
        vq.get_used()
        vq.add(0)
    assert vq.avail_idx == (4 + 70000) % 0x10000
    assert not vq.can_add()


def test_queue_size_power_of_two():
    with pytest.raises(ValueError):
        Virtqueue(100)


# -- hdd ---------------------------------------------------------------------------------------

HDD = {
    "rpm": 7200.0,
    "seek_avg_ms": 10.0,
    "seek_min_ms": 1.0,
    "overhead_us": 100.0,
    "media_mib_s": 100.0,
    "interface_mib_s": 286.0,
    "buffer_kib": 64.0,
    "write_cache": 1.0,
}


def test_hdd_sequential_reads_hit_buffer():
    hdd = HddTimes(HDD, 1 << 30, np.random.default_rng(1))
    times = [hdd(Request(False, i * 512, 512)) for i in range(1000)]
    assert hdd.misses == 1 and hdd.hits == 999
    hit = 100.0 + 512 / (286.0 * 1.048576)
    assert times[1:] == pytest.approx([hit] * 999)
    assert times[0] > hit  # the first read seeks (or at least rotates)


def test_hdd_random_reads_miss_and_seek():
    hdd = HddTimes(HDD, 1 << 30, np.random.default_rng(2))
    rng = np.random.default_rng(3)
    times = [hdd(Request(False, int(o) * 4096, 4096)) for o in rng.integers(0, 1 << 18, 2000)]
    assert hdd.misses >= 1990
    # Mean: overhead + about the average seek + half a revolution (4.17 ms).
    assert 10_000 < np.mean(times) < 16_000


def test_hdd_write_cache():
    hdd = HddTimes(HDD, 1 << 30, np.random.default_rng(1))
    assert hdd(Request(True, 12345 * 512, 512)) == pytest.approx(100.0 + 512 / 299.89, rel=1e-3)
    through = HddTimes({**HDD, "write_cache": 0.0}, 1 << 30, np.random.default_rng(1))
    assert through(Request(True, 1 << 29, 512)) > 1000


def test_hdd_cached_write_overhead_scales_the_same_draw():
    # write_overhead_us prices a cached write apart from a read hit; absent, a write costs
    # what it did before the parameter existed (the same draws, byte for byte).
    cv = {**HDD, "overhead_cv": 0.5}
    plain = HddTimes(cv, 1 << 30, np.random.default_rng(4))
    fast = HddTimes({**cv, "write_overhead_us": 25.0}, 1 << 30, np.random.default_rng(4))
    xfer = 512 / (286.0 * 1.048576)
    a = np.array([plain(Request(True, i * 512, 512)) for i in range(2000)])
    b = np.array([fast(Request(True, i * 512, 512)) for i in range(2000)])
    assert b - xfer == pytest.approx((a - xfer) * 0.25)
    assert np.mean(b) == pytest.approx(25.0 + xfer, rel=0.05)
    reads = HddTimes({**HDD, "write_overhead_us": 25.0}, 1 << 30, np.random.default_rng(1))
    assert reads(Request(False, 0, 512)) > 100.0  # reads keep overhead_us (here: a miss)
    assert reads(Request(False, 512, 512)) == pytest.approx(100.0 + xfer)
    wo = {**HDD, "write_overhead_us": 25.0}
    assert Hdd.parse(
        {k: {"value": v, "provenance": "derived", "source": "test"} for k, v in wo.items()}, {}
    ).mean_us(True, 512, False) == pytest.approx(25.0 + xfer)


# -- CPU wake-ups ------------------------------------------------------------------------------


def _threads(n_cpus: int, pins: list[int | None], poll_us: float = 0.0):  # type: ignore[no-untyped-def]
    env = Kernel()
    stats = Registry()
    cpus = [Cpu(i, stats) for i in range(n_cpus)]
    lat = {"wakeup_idle": lambda: 50.0, "wakeup_busy": lambda: 2.0, "poll_detect": lambda: 0.5}
    ths = [Thread(env, f"t{i}", cpus, p, poll_us, lat, stats) for i, p in enumerate(pins)]
    return env, cpus, ths


def test_wakeup_on_idle_cpu_costs_idle_latency():
    env, _, (t,) = _threads(2, [1])
    fd = Notifier("fd")
    woke: list[float] = []

    def waiter():  # type: ignore[no-untyped-def]
        yield from t.start()
        yield from t.wait([fd])
        woke.append(env.now)

    env.process(waiter())
    env.timeout(100).callbacks.append(lambda _e: fd.signal())
    env.run()
    assert woke == [150.0]  # signalled at 100, idle CPU wakes in 50
    assert t.wakeups["idle"] == 2  # the start and the wake-up


def test_wakeup_on_busy_cpu_waits_then_switches():
    env, _, (busy, t) = _threads(1, [0, 0])
    fd = Notifier("fd")
    woke: list[float] = []

    def worker():  # type: ignore[no-untyped-def]
        yield from busy.start()
        yield env.timeout(300)  # holds the only CPU until 300
        yield from busy.wait([Notifier("never")])

    def waiter():  # type: ignore[no-untyped-def]
        yield from t.start()
        yield from t.wait([fd])
        woke.append(env.now)

    env.process(waiter())
    env.process(worker())
    env.timeout(100).callbacks.append(lambda _e: fd.signal())
    env.run()
    # The worker got the CPU at 52 (after the waiter's start: 50 idle wake-up + 2 switch) and
    # holds it until 352; the waiter, signalled at 100, then pays one context switch.
    assert woke == [354.0]
    assert t.wakeups["busy"] == 1


def test_free_thread_moves_to_an_idle_cpu():
    env, _, (busy, t) = _threads(2, [0, None])
    fd = Notifier("fd")
    where: list[int] = []

    def worker():  # type: ignore[no-untyped-def]
        yield from busy.start()
        yield env.timeout(1000)

    def waiter():  # type: ignore[no-untyped-def]
        yield from t.start()
        yield from t.wait([fd])
        where.append(t.cpu.index)

    env.process(worker())
    env.process(waiter())
    env.timeout(10).callbacks.append(lambda _e: fd.signal())
    env.run()
    assert where == [1]


def test_polling_thread_notices_quickly_and_keeps_cpu_busy():
    env, cpus, (t,) = _threads(1, [0], poll_us=100.0)
    fd = Notifier("fd")
    woke: list[float] = []

    def waiter():  # type: ignore[no-untyped-def]
        yield from t.start()
        yield from t.wait([fd])  # signalled at 100, within the poll window (50-150)
        woke.append(env.now)
        fd.consume()
        yield from t.wait([fd])  # never signalled again: polls 100 us, then blocks

    env.process(waiter())
    env.timeout(100).callbacks.append(lambda _e: fd.signal())
    env.run(until=1000)
    assert woke == [100.5]
    assert t.wakeups["poll"] == 1
    # Busy from 50 (start) to 200.5 (poll expired): 150.5 us of 1000.
    assert cpus[0].busy.mean(1000) == pytest.approx(150.5 / 1000)


def _lean(n_cpus: int, pins: list[int | None]):  # type: ignore[no-untyped-def]
    """Threads on the lean kernel, with wake-up preemption enabled once their process starts."""
    env = Kernel()
    stats = Registry()
    cpus = [Cpu(i, stats) for i in range(n_cpus)]
    lat = {"wakeup_idle": lambda: 50.0, "wakeup_busy": lambda: 2.0, "poll_detect": lambda: 0.5}
    ths = [Thread(env, f"t{i}", cpus, p, 0.0, lat, stats) for i, p in enumerate(pins)]
    return env, cpus, ths


def test_woken_thread_preempts_a_running_holder():
    env, cpus, (t, hog) = _lean(1, [0, 0])
    fd, never = Notifier("fd"), Notifier("never")
    log: list[tuple[str, float]] = []

    def waiter():  # type: ignore[no-untyped-def]
        yield from t.start()  # CPU 0 at 50
        yield from t.wait([fd])  # blocks at 50: the hog gets the CPU at 52
        log.append(("woke", env.now))
        yield 20.0
        yield from t.wait([never])  # blocks at 122: the hog resumes

    def worker():  # type: ignore[no-untyped-def]
        yield from hog.start()
        yield 300.0  # from 52: would end at 352, suspended 100 -> 122
        log.append(("hog done", env.now))
        yield from hog.wait([never])

    for th, gen in ((t, waiter()), (hog, worker())):
        th.enable_preemption(env.process(gen))
    env.timeout(100).callbacks.append(lambda _e: fd.signal())
    env.run(until=1000)
    assert log == [("woke", 102.0), ("hog done", 374.0)]
    assert t.wakeups["preempt"] == 1
    # The CPU is busy from 52 (the hog's start) to 374 without a gap, the preemption's context
    # switch included; the hog ran its 300 us, the waiter 20.
    assert cpus[0].busy.mean(1000) == pytest.approx((374 - 52) / 1000)
    assert hog.busy.mean(1000) == pytest.approx(300 / 1000)
    assert t.busy.mean(1000) == pytest.approx(20 / 1000)


def test_without_preemption_the_woken_thread_waits_for_the_holder():
    env, _, (t, hog) = _lean(1, [0, 0])
    fd, never = Notifier("fd"), Notifier("never")
    woke: list[float] = []

    def waiter():  # type: ignore[no-untyped-def]
        yield from t.start()
        yield from t.wait([fd])
        woke.append(env.now)

    def worker():  # type: ignore[no-untyped-def]
        yield from hog.start()
        yield 300.0
        yield from hog.wait([never])

    env.process(waiter())
    env.process(worker())
    env.timeout(100).callbacks.append(lambda _e: fd.signal())
    env.run(until=1000)
    assert woke == [354.0]  # after the hog blocks at 352, plus a context switch
    assert "preempt" not in t.wakeups


def test_pinned_thread_moves_at_its_next_wakeup():
    env, _, (t, _) = _lean(2, [0, None])
    fd = Notifier("fd")
    where: list[int] = []

    def waiter():  # type: ignore[no-untyped-def]
        yield from t.start()
        where.append(t.cpu.index)
        t.pin(env_cpus[1])  # while running: it stays on CPU 0 for now
        where.append(t.cpu.index)
        yield from t.wait([fd])
        where.append(t.cpu.index)

    env_cpus = t.cpus
    env.process(waiter())
    env.timeout(100).callbacks.append(lambda _e: fd.signal())
    env.run(until=1000)
    assert where == [0, 0, 1]


def test_preempted_thread_placed_on_an_idle_cpu_moves_there_and_runs_on():
    env, cpus, (t, hog) = _lean(2, [0, 0])
    fd, never = Notifier("fd"), Notifier("never")
    log: list[tuple[str, float, int]] = []

    def waiter():  # type: ignore[no-untyped-def]
        yield from t.start()
        yield from t.wait([fd])
        log.append(("woke", env.now, t.cpu.index))
        yield from t.wait([never])

    def worker():  # type: ignore[no-untyped-def]
        yield from hog.start()
        hog.pin(cpus[1])  # placed on CPU 1 while it runs on CPU 0
        yield 300.0  # from 52 to 352, without a pause
        log.append(("hog done", env.now, hog.cpu.index))

    for th, gen in ((t, waiter()), (hog, worker())):
        th.enable_preemption(env.process(gen))
    env.timeout(100).callbacks.append(lambda _e: fd.signal())
    env.run(until=1000)
    assert log == [("woke", 102.0, 0), ("hog done", 352.0, 1)]


def test_idle_cpu_pulls_a_preempted_thread_placed_on_it():
    env, cpus, (t, hog, other) = _lean(2, [0, 0, 1])
    fd, never = Notifier("fd"), Notifier("never")
    log: list[tuple[str, float, int]] = []

    def waiter():  # type: ignore[no-untyped-def]
        yield from t.start()
        yield from t.wait([fd])
        yield 1000.0  # holds CPU 0 long after the hog was pulled away
        yield from t.wait([never])

    def worker():  # type: ignore[no-untyped-def]
        yield from hog.start()
        hog.pin(cpus[1])  # placed on CPU 1, which is busy until 200
        yield 300.0  # from 52: suspended from 100 to 200, so it ends at 452
        log.append(("hog done", env.now, hog.cpu.index))
        yield from hog.wait([never])

    def busy():  # type: ignore[no-untyped-def]
        yield from other.start()
        yield 150.0  # CPU 1 from 50 to 200
        yield from other.wait([never])

    for th, gen in ((t, waiter()), (hog, worker()), (other, busy())):
        th.enable_preemption(env.process(gen))
    env.timeout(100).callbacks.append(lambda _e: fd.signal())
    env.run(until=2000)
    assert log == [("hog done", 452.0, 1)]
    assert cpus[1].busy.mean(2000) == pytest.approx((452 - 50) / 2000)


def test_placer_holds_each_pattern_its_share_of_time():
    env, cpus, ths = _lean(2, [None, None])
    shares = {(0, 0): 0.25, (0, 1): 0.75}
    env.process(placer(ths, cpus, shares, 100.0, np.random.default_rng(3)))
    seen: dict[tuple[int, ...], int] = {}

    def sample():  # type: ignore[no-untyped-def]
        while True:
            key = tuple(t.home.index for t in ths)
            seen[key] = seen.get(key, 0) + 1
            yield 7.0

    env.process(sample())
    env.run(until=2_000_000)
    n = sum(seen.values())
    assert set(seen) == set(shares)
    for k, p in shares.items():
        assert seen[k] / n == pytest.approx(p, abs=0.03)  # ~20k epochs: sd of a share ~0.005
    assert all(t.pinned for t in ths)


# -- distributions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"dist": "exponential", "mean_us": 5.0},
        {"dist": "uniform", "low_us": 1.0, "high_us": 3.0},
        {"dist": "lognormal", "mean_us": 10.0, "cv": 0.5},
        {"dist": "gamma", "mean_us": 10.0, "cv": 2.0},
        {"dist": "empirical", "levels": [0, 0.5, 1], "quantiles_us": [1, 2, 10]},
    ],
)
def test_dist_moments_match_samples(spec):  # type: ignore[no-untyped-def]
    d = dist_from_dict(spec, "x")
    s = d.sample(np.random.default_rng(0), 400_000)
    assert s.mean() == pytest.approx(d.mean, rel=0.01)
    assert s.var() == pytest.approx(d.variance, rel=0.05)


def test_fixed_dist():
    d = Dist.fixed(3.0)
    assert d.mean == 3.0 and d.variance == 0.0
    assert dist_from_dict(d.to_dict(), "x") == d


def _locked_pair(**lock_kw):  # type: ignore[no-untyped-def]
    """Two threads on CPUs 0 and 1 sharing one lock, and an eventfd for each to block on."""
    from vsim.models.cpu import Lock

    env, _, (a, b) = _threads(2, [0, 1])
    lock = Lock(**lock_kw)
    a.lock = b.lock = lock
    return env, a, b, lock, Notifier("a"), Notifier("b")


def test_lock_serialises_threads_and_hands_over_on_block():
    env, a, b, lock, fd_a, fd_b = _locked_pair()
    ran: list[tuple[str, float]] = []

    def worker(t, fd, name, work):  # type: ignore[no-untyped-def]
        yield from t.start()
        ran.append((name, env.now))
        yield env.timeout(work)
        yield from t.wait([fd])

    env.process(worker(a, fd_a, "a", 100.0))
    env.process(worker(b, fd_b, "b", 10.0))
    env.run(until=1000)
    # Both start at 50 (idle wake-ups on two CPUs); b finds the lock held by a, blocks, is woken
    # when a blocks at 150 and takes the lock 50 later (an idle wake-up): it runs at 200.
    assert ran == [("a", 50.0), ("b", 200.0)]
    assert lock.handoffs == 1 and lock.holder is None


def test_lock_dropped_around_a_syscall_lets_the_other_thread_run():
    env, a, b, lock, fd_a, fd_b = _locked_pair()
    ran: list[tuple[str, float]] = []

    def syscaller(t):  # type: ignore[no-untyped-def]
        yield from t.start()  # runs at 50 holding the lock
        yield env.timeout(10.0)  # Python code, lock held
        t.drop_lock()  # the system call: b is woken (an idle wake-up: 50)
        yield env.timeout(100.0)
        yield from t.take_lock()  # back at 160, while b holds the lock
        ran.append(("a", env.now))
        yield from t.wait([fd_a])

    def python(t):  # type: ignore[no-untyped-def]
        yield from t.start()
        ran.append(("b", env.now))
        yield env.timeout(60.0)
        yield from t.wait([fd_b])

    env.process(syscaller(a))
    env.process(python(b))
    env.run(until=1000)
    # b starts at 50, finds the lock held and blocks; a drops it at 60, b wakes at 110, finds it
    # free and runs to 170; a, back from its syscall at 160, blocks for the lock, is woken when b
    # blocks at 170 and takes it 50 later (its CPU went idle).
    assert ran == [("b", 110.0), ("a", 220.0)]
    assert lock.handoffs == 2


def test_lock_is_retaken_after_a_syscall_shorter_than_the_waiters_wake_up():
    env, a, b, lock, fd_a, fd_b = _locked_pair()
    ran: list[tuple[str, float]] = []

    def syscaller(t):  # type: ignore[no-untyped-def]
        yield from t.start()  # runs at 50 holding the lock
        for _ in range(5):  # Python code, then a 1 us system call with the lock dropped
            yield env.timeout(20.0)
            t.drop_lock()
            yield env.timeout(1.0)
            yield from t.take_lock()
        yield from t.wait([fd_a])  # blocks at 155, the lock free

    def waiter(t):  # type: ignore[no-untyped-def]
        yield from t.start()
        ran.append(("b", env.now))
        yield from t.wait([fd_b])

    env.process(syscaller(a))
    env.process(waiter(b))
    env.run(until=1000)
    # b finds the lock held at 50. A drop wakes it (50 us: an idle wake-up), but a takes the lock
    # back 1 us later: woken at 70, b runs at 120 and sleeps again; woken at 133, it runs at 183,
    # after a has blocked (155), and takes the lock. (Handed over at each drop, it ran at 120.)
    assert ran == [("b", 183.0)]
    assert lock.handoffs == 1 and lock.forced == 0


def test_lock_waiter_left_the_switch_interval_is_handed_the_lock():
    env, a, b, lock, fd_a, fd_b = _locked_pair(switch_us=100.0)
    ran: list[tuple[str, float]] = []

    def hog(t):  # type: ignore[no-untyped-def]
        yield from t.start()  # at 50, holding the lock
        yield env.timeout(150.0)  # Python code for longer than the switch interval
        t.drop_lock()  # a system call at 200: b has waited 150 >= 100
        yield env.timeout(1.0)
        yield from t.take_lock()
        ran.append(("a", env.now))
        yield from t.wait([fd_a])

    def waiter(t):  # type: ignore[no-untyped-def]
        yield from t.start()
        ran.append(("b", env.now))
        yield env.timeout(10.0)
        yield from t.wait([fd_b])

    env.process(hog(a))
    env.process(waiter(b))
    env.run(until=1000)
    # b waits from 50; at a's drop (200) the lock is handed to b, which runs at 250 (an idle
    # wake-up); a, back at 201, waits for it until b blocks at 260 and runs at 310.
    assert ran == [("b", 250.0), ("a", 310.0)]
    assert lock.forced == 1


def test_disk_completion_path_delays_done_not_the_device():
    import itertools

    from vsim.models.disk import Disk, Request
    from vsim.models.monitor import Registry

    env = Kernel()
    disk = Disk(env, 1, lambda _r: 5.0, Registry(), itertools.repeat(10.0).__next__)
    done: list[float] = []
    for i in range(2):
        disk.submit(Request(False, i * 512, 512), lambda _r: done.append(env.now))
    env.run()
    # Service 5 each, back to back (the channel is free at 5); each done 10 after its service.
    assert done == [15.0, 20.0]
    assert disk.served == 2


@pytest.mark.parametrize("name", ["virtio-blk", "vhost-blk"])
def test_a_reap_takes_the_completions_that_land_while_the_thread_starts_it(make_profile, name):  # type: ignore[no-untyped-def]
    from vsim import Scenario, Workload, design, simulate

    # The backend submits two requests 3 us apart (its io_submit cost) to a two-channel 100 us
    # disk, so they complete 3 us apart; the thread that reaps spends 5 us on its eventfd read
    # before its io_getevents, which therefore finds both: one reap (and one interrupt) per
    # pair. Read at the instant the thread was scheduled, each took a reap of its own.
    prof = make_profile(
        costs={
            "submit_call": {"dist": "fixed", "value_us": 3.0},
            "notify_read": {"dist": "fixed", "value_us": 5.0},
        },
        disk={
            "model": "fixed",
            "service_us": {"value": 100.0, "provenance": "derived", "source": "test"},
            "channels": {"value": 2, "provenance": "derived", "source": "test"},
        },
    )
    w = Workload(rw="randread", iodepth=2, number_ios=2000)
    r = simulate(Scenario(workload=w, design=design(name), profile="test"), seed=1, profile=prof)
    served, reaps = r.counters["disk_served"], r.counters["reap_calls"]
    assert abs(2 * reaps - served) <= 2, (reaps, served)
    assert abs(2 * r.counters["interrupts"] - served) <= 2


@pytest.mark.parametrize("name", ["virtio-blk", "vhost-blk"])
def test_a_backend_woken_on_an_idle_cpu_runs_its_first_request_cold(make_profile, name):  # type: ignore[no-untyped-def]
    from vsim import Scenario, Workload, design, simulate

    def run(cold: float, iodepth: int):  # type: ignore[no-untyped-def]
        prof = make_profile(
            costs={
                "pop_cold": {"dist": "fixed", "value_us": cold},
                "submit_cold": {"dist": "fixed", "value_us": cold},
            },
            disk={
                "model": "fixed",
                "service_us": {"value": 100.0, "provenance": "derived", "source": "test"},
                "channels": {"value": 64, "provenance": "derived", "source": "test"},
            },
        )
        w = Workload(rw="randread", iodepth=iodepth, number_ios=4000)
        return simulate(Scenario(workload=w, design=design(name), profile="t"), 1, profile=prof)

    # At iodepth 1 the backend sleeps before every request: each pays both cold costs once.
    warm, cold = run(0.0, 1), run(20.0, 1)
    lat = cold.lat_ns.mean() - warm.lat_ns.mean()
    assert lat / 1e3 == pytest.approx(40.0, abs=0.5)
    # Kept awake by load, it rarely wakes on an idle CPU: the cost per I/O falls with load.
    warm, cold = run(0.0, 32), run(20.0, 32)
    extra = 1e6 / cold.iops - 1e6 / warm.iops
    assert 0 <= extra < 10.0, extra
