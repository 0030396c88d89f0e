"""A lean SimPy event kernel: SimPy's Environment with a tighter run loop and its own events."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from heapq import heappop, heappush
from operator import attrgetter
from typing import Any, Final

import simpy
from simpy.core import StopSimulation
from simpy.events import NORMAL, URGENT, Event, Process, Timeout

# The priority of every event the models schedule: SimPy's NORMAL, as a literal that compiled
# code inlines (a module global it would look up at every event).
PRIORITY: Final = 1
if NORMAL != PRIORITY:
    raise ImportError(f"vsim.kernel: simpy.events.NORMAL is {NORMAL}, expected {PRIORITY}")

__all__ = [
    "PRIORITY",
    "Kernel",
    "LeanProcess",
    "Proc",
    "Signal",
]


class Signal:
    """A one-shot wake-up for one LeanProcess: what a blocked model thread waits on.

    Lighter than a SimPy Event (no callback list, no instance dict): the process that yields
    it is resumed straight from the run loop, with the value it was triggered with, in the
    order a SimPy event would be (`fire_in` and `succeed` schedule it like env.schedule).
    """

    __slots__ = ("env", "proc", "triggered", "value")

    def __init__(self, env: Kernel) -> None:
        self.env = env
        self.proc: LeanProcess | None = None  # the process waiting on it
        self.triggered = False
        self.value: Any = None

    def fire_in(self, delay: float, value: Any = None) -> None:
        """Trigger it `delay` from now."""
        self.triggered = True
        self.value = value
        env = self.env
        heappush(env._queue, (env._now + delay, PRIORITY, next(env._eid), self))

    def succeed(self, value: Any = None) -> None:
        """Trigger it now (after what is already scheduled for now)."""
        self.fire_in(0.0, value)


class _Call:
    """A function call at a set time (Kernel.call_in): a timer without an Event."""

    __slots__ = ("arg", "fn")

    def __init__(self, fn: Callable[[Any], None], arg: Any) -> None:
        self.fn = fn
        self.arg = arg


# What a model process yields: a SimPy event, a Signal, or a delay in microseconds.
Proc = Generator[Event | Signal | float, Any, Any]


class Kernel(simpy.Environment):
    """simpy.Environment with the same semantics and event order, and less work per event.

    Every entry of SimPy's heap is ordered by (time, priority, event id), so a model runs
    exactly as on a plain Environment. What changes is overhead only:
    - `run(until=event)` inlines `step()`, and runs the kernel's own events itself, without
      SimPy's callback list: a LeanProcess's bare delay, a Signal (a blocked thread's wake-up)
      and a timed call (`call_in`), each scheduled where a SimPy event would be;
    - `timeout()` and `event()` skip argument checks (delays here are sums of non-negative
      costs);
    - `process()` starts a LeanProcess, which may also yield a bare delay: it is scheduled
      like a Timeout (same heap entry, same event id) without allocating one.
    The module is compiled with the models (setup.py); its classes are then native.
    """

    # Declared for the compiled build (mypyc keeps them in native slots).
    _now: float
    _queue: list[Any]
    _eid: Any
    _active_proc: Any

    @property
    def now(self) -> float:
        """The current simulation time."""
        return self._now

    def timeout(self, delay: float = 0, value: Any = None) -> Timeout:
        """A Timeout event `delay` from now."""
        ev = Timeout.__new__(Timeout)
        ev.env = self
        ev.callbacks = []
        ev._value = value
        ev._delay = delay
        ev._ok = True
        heappush(self._queue, (self._now + delay, PRIORITY, next(self._eid), ev))
        return ev

    def event(self) -> Event:
        """A new untriggered Event."""
        ev = Event.__new__(Event)
        ev.env = self
        ev.callbacks = []
        return ev

    def signal(self) -> Signal:
        """A new untriggered Signal."""
        return Signal(self)

    def call_in(self, delay: float, fn: Callable[[Any], None], arg: Any) -> None:
        """Call fn(arg) `delay` from now (ordered as a Timeout made now would be)."""
        heappush(self._queue, (self._now + delay, PRIORITY, next(self._eid), _Call(fn, arg)))

    def process(self, generator: Proc) -> LeanProcess:
        """Start generator as a LeanProcess."""
        return LeanProcess(self, generator)

    def step(self) -> None:
        """Process the next event (SimPy's step, which run(until=a time) calls)."""
        queue = self._queue
        if queue and isinstance(queue[0][3], _Wake | Signal | _Call):  # the kernel's own
            self._now, _, _, event = heappop(queue)
            _run_lean(event)
            return
        super().step()

    def run(self, until: Any = None) -> Any:
        """Process events until the event `until` is processed (other forms: SimPy's run)."""
        if not isinstance(until, Event):
            return super().run(until)
        if until.callbacks is None:
            return until.value
        until.callbacks.append(StopSimulation.callback)
        queue = self._queue
        callbacks: list[Any] = []
        callback: Any = None
        event: Any = None
        try:
            while queue:
                self._now, _, _, event = heappop(queue)
                # The kernel's own events first (isinstance: compiled, their fields are native).
                if isinstance(event, _Wake):  # a process's bare delay: no callback list
                    event.pending = False  # (LeanProcess._woken, inlined)
                    if event.late:
                        event.proc._late()
                    else:
                        event.proc._step(None)
                    continue
                if isinstance(event, Signal):
                    proc = event.proc
                    if proc is None:
                        raise RuntimeError("a Signal fired before a process waited on it")
                    proc._step(event.value)
                    continue
                if isinstance(event, _Call):
                    event.fn(event.arg)
                    continue
                callbacks, event.callbacks = event.callbacks, None
                for callback in callbacks:
                    callback(event)
                if not event._ok and not hasattr(event, "_defused"):
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    raise exc
        except StopSimulation as exc:
            # As in Environment.step: keep the stop event's other callbacks for later.
            event.callbacks = callbacks[callbacks.index(callback) + 1 :]
            self.schedule(event, URGENT)
            return exc.args[0]
        raise RuntimeError(f'No scheduled events left but "until" event was not triggered: {until}')


def _run_lean(event: Any) -> None:
    """Run one of the kernel's own events, as Kernel.run's loop does."""
    if isinstance(event, _Wake):
        event.proc._woken()
    elif isinstance(event, Signal):
        if event.proc is None:
            raise RuntimeError("a Signal fired before a process waited on it")
        event.proc._step(event.value)
    elif isinstance(event, _Call):
        event.fn(event.arg)


class _Wake:
    """A process's reusable timeout: the run loop resumes its process directly (no callbacks).

    `pending` while a bare delay is scheduled; `late` when that delay was suspended (its end
    goes through LeanProcess._late)."""

    __slots__ = ("late", "pending", "proc")

    def __init__(self, proc: LeanProcess) -> None:
        self.proc = proc
        self.pending = False
        self.late = False


class LeanProcess(Process):
    """A SimPy Process that also accepts a bare delay and resumes with less bookkeeping.

    Its pending bare delay can be suspended (`suspend`, `unsuspend`): the delay's clock stops
    meanwhile and the process resumes that much later (a preempted thread's CPU time).
    """

    # Declared for the compiled build (mypyc keeps them in native slots).
    _kernel: Kernel
    _send: Any
    _resume_cb: Any
    _wake: _Wake
    _late_next: bool
    _since: float
    _suspended: bool
    _lag: float
    _left: float
    _has_left: bool

    def __init__(self, env: Kernel, generator: Proc) -> None:
        super().__init__(env, generator)  # type: ignore[arg-type]
        self._kernel = env
        self._send = generator.send
        self._resume_cb = self._resume
        self._wake = _Wake(self)
        self._late_next = False  # the next bare delay ends through _late (it is suspended)
        self._suspended = False
        self._since = 0.0  # suspended since
        self._lag = 0.0  # suspended time not yet added to the pending delay
        self._has_left = False
        self._left = 0.0  # what was left when the delay ran out while suspended

    @property
    def in_delay(self) -> bool:
        """True while the process waits out a bare delay (not an event)."""
        return self._wake.pending

    def suspend(self) -> bool:
        """Stop the clock of the pending bare delay, or of the next one when the process is the
        one running now; False (and no effect) when it waits on an event or is suspended."""
        if self._suspended:
            return False
        wake = self._wake
        env = self._kernel
        if wake.pending:  # in a bare delay
            wake.late = True
        elif env._active_proc is not self:  # waiting on an event
            return False
        self._late_next = True
        self._suspended = True
        self._since = env._now
        return True

    def unsuspend(self) -> None:
        """Restart the clock: the delay ends as much later as it was suspended."""
        assert self._suspended, "unsuspend without suspend"
        self._suspended = False
        env = self._kernel
        if not self._has_left:
            self._lag += env._now - self._since
            if not self._lag and not self._wake.pending:  # nothing left to stretch
                self._late_next = False
            return
        self._has_left = False
        self._push_late(self._left)

    def _push_late(self, delay: float) -> None:
        """Schedule the (suspended) delay's end `delay` from now."""
        env = self._kernel
        wake = self._wake
        wake.pending = True
        wake.late = True
        heappush(env._queue, (env._now + delay, PRIORITY, next(env._eid), wake))

    def _woken(self) -> None:
        """The run loop: the pending bare delay ended."""
        wake = self._wake
        wake.pending = False
        if wake.late:
            self._late()
        else:
            self._step(None)

    def _late(self) -> None:
        """The end of a delay that was suspended: resume, or push it back by the lag."""
        env = self._kernel
        if self._suspended:  # still suspended: park what was left
            self._left = env._now - self._since + self._lag
            self._has_left = True
            self._lag = 0.0
            return
        lag = self._lag
        if lag > 0:
            self._lag = 0.0
            self._push_late(lag)
            return
        self._late_next = False
        self._wake.late = False
        self._step(None)

    def _resume(self, event: Event) -> None:
        if not event._ok:  # a failed event: SimPy's own handling
            super()._resume(event)
            return
        self._step(event._value)

    def _step(self, value: Any) -> None:
        """Send value into the generator and schedule what it yields next.

        A bare delay that ends before every scheduled event (strictly: an event at the same
        time has a smaller id and runs first) is nobody else's business: the process runs on
        at its end at once, the clock moved and the event id it would have taken spent, which
        is what popping it off the heap next would have done."""
        env = self._kernel
        queue = env._queue
        nxt: Any
        while True:
            env._active_proc = self
            try:
                nxt = self._send(value)
            except StopIteration as e:
                self._ok = True
                self._value = e.args[0] if e.args else None
                env.schedule(self)
                self._target = None  # type: ignore[assignment]
                return
            finally:
                env._active_proc = None
            if type(nxt) is not float:
                break
            end = env._now + nxt
            if self._late_next or (queue and queue[0][0] <= end):
                wake = self._wake
                wake.pending = True
                wake.late = self._late_next
                heappush(queue, (end, PRIORITY, next(env._eid), wake))
                return
            next(env._eid)
            env._now = end
            value = None
        kind = type(nxt)
        if kind is Signal:
            if nxt.proc is not None:
                raise RuntimeError("a Signal wakes one process, and it fires once")
            nxt.proc = self
            return
        try:
            cbs = nxt.callbacks
        except AttributeError:
            if not isinstance(nxt, int | float):
                raise
            env.timeout(float(nxt)).callbacks.append(self._resume_cb)  # another number type
            return
        if cbs is None:  # an event already processed: SimPy's own handling continues at once
            super()._resume(nxt)
            return
        cbs.append(self._resume_cb)
        self._target = nxt


# Python code reads the clock faster through a C-level getter than through the property's
# Python function (models read it several times per event); compiled (mypyc) callers call the
# native property directly, whatever the class dict holds.
with contextlib.suppress(AttributeError, TypeError):
    Kernel.now = property(attrgetter("_now"), doc="The current simulation time.")  # type: ignore[method-assign,assignment]
