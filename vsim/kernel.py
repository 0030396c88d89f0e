"""A lean SimPy event kernel: SimPy's Environment with a tighter run loop, timeout and resume."""

from __future__ import annotations

from collections.abc import Generator
from heapq import heappop, heappush
from operator import attrgetter
from typing import Any

import simpy
from simpy.core import StopSimulation
from simpy.events import NORMAL, URGENT, Event, Process, Timeout

__all__ = [
    "Kernel",
    "LeanProcess",
    "Proc",
]

# What a model process yields: a SimPy event, or a delay in microseconds (a timeout).
Proc = Generator[Event | float, Any, Any]


class Kernel(simpy.Environment):
    """simpy.Environment with the same semantics and event order, and less work per event.

    Events are SimPy events in SimPy's heap, ordered by (time, priority, event id), so a model
    runs exactly as on a plain Environment. What changes is overhead only:
    - `run(until=event)` inlines `step()`;
    - `timeout()` and `event()` skip argument checks (delays here are sums of non-negative
      costs);
    - `process()` starts a LeanProcess, which may also yield a bare delay: it is scheduled
      like a Timeout (same heap entry, same event id) without allocating one.
    """

    # The clock, read through a C-level getter (SimPy's property is a Python function).
    now = property(attrgetter("_now"), doc="The current simulation time.")

    def timeout(self, delay: float = 0, value: Any = None) -> Timeout:
        """A Timeout event `delay` from now."""
        ev = Timeout.__new__(Timeout)
        ev.env = self
        ev.callbacks = []
        ev._value = value
        ev._delay = delay
        ev._ok = True
        heappush(self._queue, (self._now + delay, NORMAL, next(self._eid), ev))
        return ev

    def event(self) -> Event:
        """A new untriggered Event."""
        ev = Event.__new__(Event)
        ev.env = self
        ev.callbacks = []
        return ev

    def process(self, generator: Proc) -> LeanProcess:
        """Start generator as a LeanProcess."""
        return LeanProcess(self, generator)

    def run(self, until: Any = None) -> Any:
        """Process events until the event `until` is processed (other forms: SimPy's run)."""
        if not isinstance(until, Event):
            return super().run(until)
        if until.callbacks is None:
            return until.value
        until.callbacks.append(StopSimulation.callback)
        queue = self._queue
        callback: Any = None
        event: Any = None
        try:
            while queue:
                self._now, _, _, event = heappop(queue)
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


class _Wake:
    """A process's reusable timeout: what the run loop needs of an event, and nothing else."""

    __slots__ = ("_ok", "_value", "callbacks")

    def __init__(self, callbacks: list[Any]) -> None:
        self._ok = True
        self._value = None
        self.callbacks: list[Any] | None = callbacks


class LeanProcess(Process):
    """A SimPy Process that also accepts a bare delay and resumes with less bookkeeping.

    Its pending bare delay can be suspended (`suspend`, `unsuspend`): the delay's clock stops
    meanwhile and the process resumes that much later (a preempted thread's CPU time).
    """

    def __init__(self, env: Kernel, generator: Proc) -> None:
        super().__init__(env, generator)  # type: ignore[arg-type]
        self._send = generator.send
        self._resume_cb = self._resume
        self._wake_cbs = [self._resume_cb]  # never mutated: the run loop only iterates it
        self._wake = _Wake(self._wake_cbs)
        self._wake.callbacks = None  # not pending: set by each bare-delay yield
        self._late_cbs: list[Any] = [self._late]  # the same, for a delay that was suspended
        self._cbs: list[Any] = self._wake_cbs  # what the next bare delay calls back
        self._since: float | None = None  # suspended since
        self._lag = 0.0  # suspended time not yet added to the pending delay
        self._left: float | None = None  # what was left when the delay ran out while suspended

    @property
    def in_delay(self) -> bool:
        """True while the process waits out a bare delay (not an event)."""
        return self._wake.callbacks is not None

    def suspend(self) -> bool:
        """Stop the clock of the pending bare delay, or of the next one when the process is the
        one running now; False (and no effect) when it waits on an event or is suspended."""
        if self._since is not None:
            return False
        wake = self._wake
        if wake.callbacks is not None:  # in a bare delay
            wake.callbacks = self._late_cbs
        elif self.env._active_proc is not self:  # waiting on an event
            return False
        self._cbs = self._late_cbs
        self._since = self.env._now
        return True

    def unsuspend(self) -> None:
        """Restart the clock: the delay ends as much later as it was suspended."""
        since = self._since
        assert since is not None, "unsuspend without suspend"
        self._since = None
        env = self.env
        left = self._left
        if left is None:
            self._lag += env._now - since
            if not self._lag and self._wake.callbacks is None:  # nothing left to stretch
                self._cbs = self._wake_cbs
            return
        self._left = None
        self._push_late(left)

    def _push_late(self, delay: float) -> None:
        """Schedule the (suspended) delay's end `delay` from now."""
        env = self.env
        wake = self._wake
        wake.callbacks = self._late_cbs
        queue: list[Any] = env._queue
        heappush(queue, (env._now + delay, NORMAL, next(env._eid), wake))

    def _late(self, wake: Any) -> None:
        """The end of a delay that was suspended: resume, or push it back by the lag."""
        env = self.env
        since = self._since
        if since is not None:  # still suspended: park what was left
            self._left = env._now - since + self._lag
            self._lag = 0.0
            return
        lag = self._lag
        if lag > 0:
            self._lag = 0.0
            self._push_late(lag)
            return
        self._cbs = self._wake_cbs
        self._resume(wake)

    def _resume(self, event: Event) -> None:
        if not event._ok:  # a failed event: SimPy's own handling
            super()._resume(event)
            return
        env = self.env
        env._active_proc = self
        nxt: Any
        try:
            nxt = self._send(event._value)
        except StopIteration as e:
            self._ok = True
            self._value = e.args[0] if e.args else None
            env.schedule(self)
            self._target = None  # type: ignore[assignment]
            return
        finally:
            env._active_proc = None
        if type(nxt) is float:
            wake = self._wake
            wake.callbacks = self._cbs
            queue: list[Any] = env._queue
            heappush(queue, (env._now + nxt, NORMAL, next(env._eid), wake))
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
