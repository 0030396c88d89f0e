"""The lean kernel runs models exactly as SimPy's Environment does, only faster."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import simpy

from vsim.kernel import Kernel


def _closed_loop(env: simpy.Environment, bare: bool) -> tuple[list[tuple[float, int, str]], Any]:
    """Three customers sharing a one-server FCFS queue; returns the trace and a stop event."""
    server = simpy.Resource(env, 1)
    rng = np.random.default_rng(7)
    trace: list[tuple[float, int, str]] = []
    stop = env.event()
    waker = env.event()

    def customer(i: int) -> Any:
        while True:
            with server.request() as req:
                yield req
                trace.append((env.now, i, "start"))
                d = float(rng.exponential(10.0))
                yield d if bare else env.timeout(d)
            trace.append((env.now, i, "done"))
            if i == 0 and len(trace) > 30 and not waker.triggered:
                waker.succeed("woken")
            if len(trace) >= 400 and not stop.triggered:
                stop.succeed(len(trace))

    def sleeper() -> Any:
        got = yield waker
        trace.append((env.now, 99, got))
        yield env.timeout(0)  # zero delay: same time, after what is already scheduled
        trace.append((env.now, 99, "after"))

    for i in range(3):
        env.process(customer(i))
    env.process(sleeper())
    return trace, stop


def test_same_trace_as_simpy() -> None:
    plain = simpy.Environment()
    ref, stop = _closed_loop(plain, bare=False)
    assert plain.run(until=stop) == 400
    events = next(plain._eid)
    for bare in (False, True):
        k = Kernel()
        got, stop = _closed_loop(k, bare=bare)
        k.run(until=stop)
        assert got[: len(ref)] == ref
        assert k.now == plain.now
        assert next(k._eid) == events  # the same number of events


def test_run_until_returns_value_and_resumes() -> None:
    k = Kernel()
    first = k.event()
    seen: list[float] = []

    def proc() -> Any:
        for _ in range(5):
            yield 2.0
            seen.append(k.now)
            if k.now == 4.0:
                first.succeed("half")

    k.process(proc())
    assert k.run(until=first) == "half"
    assert seen == [2.0, 4.0]
    k.run(until=20)  # a number: SimPy's own run
    assert seen == [2.0, 4.0, 6.0, 8.0, 10.0]


def test_other_number_types_are_timeouts() -> None:
    k = Kernel()
    seen: list[float] = []

    def proc() -> Any:
        yield 3  # an int
        seen.append(k.now)
        yield np.float64(1.5)
        seen.append(k.now)

    p = k.process(proc())
    k.run(until=p)
    assert seen == [3.0, 4.5]


@pytest.mark.parametrize("fail_how", ["raise", "failed_event"])
def test_failures_raise(fail_how: str) -> None:
    k = Kernel()

    def proc() -> Any:
        yield 1.0
        if fail_how == "raise":
            raise ValueError("model bug")
        ev = k.event()
        ev.fail(ValueError("model bug"))
        yield ev

    done = k.event()
    k.process(proc())
    with pytest.raises(ValueError, match="model bug"):
        k.run(until=done)


def test_stop_keeps_later_callbacks() -> None:
    """A callback queued after the stop (as in SimPy) runs when the simulation resumes."""
    k = Kernel()
    stop = k.timeout(5.0)
    calls: list[str] = []

    def proc() -> Any:
        yield 1.0  # run() has added its stop callback by now: this one comes after it
        stop.callbacks.append(lambda _e: calls.append("later"))

    k.process(proc())
    k.run(until=stop)
    assert calls == []
    k.run(until=6.0)
    assert calls == ["later"]


def test_run_out_of_events_is_an_error() -> None:
    k = Kernel()
    never = k.event()
    k.process(iter_once(k))
    with pytest.raises(RuntimeError, match="No scheduled events left"):
        k.run(until=never)


def iter_once(k: Kernel) -> Any:
    yield 1.0


def _sleeper(k: Kernel, delays: list[float], log: list[float]) -> Any:
    for d in delays:
        yield d
        log.append(k.now)


def _at(k: Kernel, t: float, fn: Any) -> None:
    k.timeout(t).callbacks.append(lambda _e: fn())


def test_suspended_delay_ends_that_much_later() -> None:
    k = Kernel()
    log: list[float] = []
    p = k.process(_sleeper(k, [100.0, 10.0], log))
    _at(k, 30, lambda: p.suspend())
    _at(k, 50, p.unsuspend)  # suspended 20 us: the delay ends at 120, not 100
    k.run(until=1000)
    assert log == [120.0, 130.0]


def test_delay_that_runs_out_while_suspended_resumes_with_what_was_left() -> None:
    k = Kernel()
    log: list[float] = []
    p = k.process(_sleeper(k, [100.0], log))
    _at(k, 40, lambda: p.suspend())
    _at(k, 300, p.unsuspend)  # 60 us were left at 40: the delay ends at 360
    k.run(until=1000)
    assert log == [360.0]


def test_suspensions_add_up() -> None:
    k = Kernel()
    log: list[float] = []
    p = k.process(_sleeper(k, [100.0], log))
    for start, end in ((10, 15), (20, 30), (90, 200)):
        _at(k, start, lambda: p.suspend())
        _at(k, end, p.unsuspend)
    k.run(until=1000)
    assert log == [100.0 + 5 + 10 + 110]


def test_suspend_needs_a_bare_delay() -> None:
    k = Kernel()
    ev = k.event()

    def waiter() -> Any:
        yield ev

    p = k.process(waiter())
    got: list[bool] = []
    _at(k, 5, lambda: got.append(p.suspend()))
    k.run(until=10)
    assert got == [False]  # waiting on an event: nothing to suspend
    assert not p.in_delay


def test_running_process_suspends_its_next_delay() -> None:
    """A process that suspends itself mid-step (it woke its preemptor) stretches its next delay."""
    k = Kernel()
    log: list[float] = []
    box: list[Any] = []

    def waker() -> Any:
        yield 10.0
        assert box[0].suspend()  # active now: the next delay is the one suspended
        yield 50.0  # from 10: ends at 60 plus the 25 suspended
        log.append(k.now)

    box.append(k.process(waker()))
    _at(k, 35, box[0].unsuspend)
    k.run(until=1000)
    assert log == [85.0]


def test_signal_and_call_in_keep_simpy_order() -> None:
    """A Signal fired, and a call scheduled, at the same time as SimPy events run in the order
    they were scheduled, as SimPy orders its own events (time, priority, id)."""
    k = Kernel()
    log: list[tuple[float, str]] = []
    sig = k.signal()

    def waiter() -> Any:
        got = yield sig
        log.append((k.now, f"signal {got}"))

    k.process(waiter())
    k.run(until=1.0)  # the waiter is parked on the signal; now = 1
    k.timeout(4.0).callbacks.append(lambda _e: log.append((k.now, "timeout")))
    k.call_in(4.0, lambda arg: log.append((k.now, f"call {arg}")), "x")
    sig.fire_in(4.0, "v")
    k.timeout(4.0).callbacks.append(lambda _e: log.append((k.now, "timeout 2")))
    k.run(until=10.0)
    assert log == [(5.0, "timeout"), (5.0, "call x"), (5.0, "signal v"), (5.0, "timeout 2")]


def test_a_signal_wakes_one_waiter_once() -> None:
    k = Kernel()
    early = k.signal()
    early.succeed()
    with pytest.raises(RuntimeError, match="before a process waited"):
        k.run(until=1.0)

    k = Kernel()
    shared = k.signal()

    def waiter() -> Any:
        yield shared

    k.process(waiter())
    k.process(waiter())
    with pytest.raises(RuntimeError, match="wakes one process"):
        k.run(until=1.0)


def test_a_delay_runs_on_at_once_only_before_every_scheduled_event() -> None:
    """A bare delay that ends before the next scheduled event continues without the heap; one
    that ends with it runs after it (the earlier id), exactly as SimPy's Timeouts order."""

    def model(env: simpy.Environment, bare: bool) -> list[object]:
        log: list[object] = []
        env.timeout(5.0).callbacks.append(lambda _e: log.append(("timeout", env.now)))

        def proc() -> Any:
            for d in (2.0, 3.0, 1.0):
                yield d if bare else env.timeout(d)
                log.append(("proc", env.now))

        env.process(proc())
        env.run(until=100.0)
        log.append(next(env._eid))  # the same event ids spent
        return log

    ref = model(simpy.Environment(), bare=False)
    assert ref[:4] == [("proc", 2.0), ("timeout", 5.0), ("proc", 5.0), ("proc", 6.0)]
    assert model(Kernel(), bare=True) == ref
