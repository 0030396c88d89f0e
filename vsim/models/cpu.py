"""Host CPUs and threads: placement, blocking, busy polling and the cost of waking up."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from heapq import heappush

from vsim.kernel import PRIORITY, Kernel, LeanProcess, Proc, Signal
from vsim.models.monitor import Busy, Level, Registry
from vsim.models.polling import adjust_poll_us

__all__ = [
    "Cpu",
    "Lock",
    "Notifier",
    "Thread",
]


class Cpu:
    """One host CPU: at most one thread runs on it; others wait in FIFO order.

    With wake-up preemption a woken thread may run at once while the holder is `preempted`
    (its cost suspended) until the woken thread gives the CPU back.
    """

    __slots__ = ("busy", "holder", "index", "preempted", "queue", "waiters")

    def __init__(self, index: int, stats: Registry) -> None:
        self.index = index
        self.holder: Thread | None = None
        self.preempted: Thread | None = None
        self.waiters: deque[Thread] = deque()
        self.busy = stats.busy(f"cpu{index}.busy")
        self.queue = stats.level(f"cpu{index}.queue")

    @property
    def idle(self) -> bool:
        """True when no thread runs on, waits for or is waking onto this CPU."""
        return self.holder is None


class Notifier:
    """An eventfd: a counter that signals and wakes the threads waiting on it."""

    __slots__ = ("count", "name", "waiters")

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.waiters: list[Thread] = []

    def signal(self) -> None:
        """Add one to the counter and wake every waiting thread."""
        self.count += 1
        for t in self.waiters:
            t.notify()

    def consume(self) -> int:
        """Read and reset the counter (the eventfd read)."""
        n, self.count = self.count, 0
        return n


# The host scheduler's time slice: EEVDF's base slice, 0.75 ms scaled by 1 + log2 of the CPUs
# (at most 8) as SCHED_TUNABLESCALING_LOG does (sysctl_sched_base_slice and
# get_update_sysctl_factor in kernel/sched/fair.c, Linux 6.6+; CFS's sched_min_granularity
# before it had the same 0.75 ms and scaling).
SCHED_BASE_SLICE_US = 750.0


def sched_slice_us(host_cpus: int) -> float:
    """How long a thread may hold a CPU others wait for before the scheduler switches."""
    return SCHED_BASE_SLICE_US * (1 + int(math.log2(min(max(host_cpus, 1), 8))))


# CPython's default switch interval (sys.getswitchinterval() = 0.005 s unless changed:
# docs.python.org/3/library/sys.html#sys.setswitchinterval; DEFAULT_INTERVAL in
# Python/ceval_gil.c).
SWITCH_INTERVAL_US = 5000.0


class Lock:
    """A lock threads must hold to run, taken after their CPU and dropped when they block.

    CPython's global interpreter lock is one: the reference backend's threads are Python
    threads of one process, so its two-thread design serialises on it. It behaves as
    Python/ceval_gil.c (CPython 3.2-3.12) implements it: dropping it (a system call, a block)
    wakes one waiter but does not hand it over; whoever asks first once it is free takes it. A
    holder back from a system call shorter than the waiter's wake-up takes it again before the
    waiter runs, and the waiter sleeps again (the GIL's convoy effect): beside a busy holder, a
    waiter runs when the holder blocks. A waiter left `switch_us` without a signal asks for the
    lock (gil_drop_request) and the holder hands it over at its next drop (FORCE_SWITCHING;
    CPython drops at its next eval-loop check, the model at the holder's next system call).
    """

    __slots__ = ("forced", "handoffs", "holder", "last", "switch_us", "waiters")

    def __init__(self, switch_us: float = SWITCH_INTERVAL_US) -> None:
        self.holder: Thread | None = None
        self.last: Thread | None = None  # the last holder: a change of holder is a handoff
        self.waiters: deque[Thread] = deque()
        self.switch_us = switch_us
        self.handoffs = 0
        self.forced = 0


class Thread:
    """A thread placed on a CPU (pinned or free) that runs costs and blocks on Notifiers.

    Waking a blocked thread costs `wakeup_idle` when its CPU is idle (the CPU leaves its idle
    state); on a busy CPU it waits its turn and then pays `wakeup_busy` (a context switch). A
    thread with poll_us > 0 spins on its CPU that long before blocking and notices a signal after
    `poll_detect`.

    With `preempts` (the host scheduler's wake-up preemption, as Linux's CFS and EEVDF do for a
    task that slept), a thread woken onto a CPU whose holder is running a cost takes the CPU at
    once, after `wakeup_busy`; the holder's cost is suspended until it gives the CPU back. This
    needs the thread's process (`proc`) to be a LeanProcess.

    `cold` says the thread last woke on an idle CPU (and nothing has spent it since): its
    first request then runs cold (costs.pop_cold and costs.submit_cold).
    """

    __slots__ = (
        "_ev",
        "_poll_detect",
        "_wakeup_busy",
        "_wakeup_idle",
        "busy",
        "cold",
        "cpu",
        "cpus",
        "env",
        "home",
        "lock",
        "lock_since",
        "name",
        "pinned",
        "poll_max_us",
        "poll_us",
        "polling",
        "preempts",
        "proc",
        "slice_us",
        "state",
        "wakeups",
        "waking",
    )

    def __init__(
        self,
        env: Kernel,
        name: str,
        cpus: Sequence[Cpu],
        cpu: int | None,
        poll_us: float,
        latency: dict[str, Callable[[], float]],
        stats: Registry,
    ) -> None:
        self.env = env
        self.name = name
        self.cpus = cpus
        self.pinned = cpu is not None
        self.cpu = cpus[cpu if cpu is not None else 0]
        self.home = self.cpu  # where a pinned thread runs after its next wake-up
        self.poll_us = poll_us  # inf: spins until signalled (a poll-mode thread)
        self.poll_max_us = 0.0  # > 0: adaptive polling with this ceiling (poll_us adapts)
        self._wakeup_idle = latency["wakeup_idle"]
        self._wakeup_busy = latency["wakeup_busy"]
        self._poll_detect = latency["poll_detect"]
        self.state = "new"
        self._ev: Signal | None = None
        self.busy: Busy = stats.busy(f"{name}.busy")
        self.polling: Level = stats.level(f"{name}.poll")
        # Waking up: from the signal (or its turn on a busy CPU) until it runs; the CPU leaving
        # its idle state or switching context, time no thread's work uses.
        self.waking: Busy = stats.busy(f"{name}.wake")
        self.wakeups = {"idle": 0, "busy": 0, "poll": 0, "none": 0}
        self.cold = False
        self.lock: Lock | None = None
        self.lock_since = 0.0  # when this thread last began to wait for the lock
        self.preempts = False
        self.proc: LeanProcess | None = None
        self.slice_us = sched_slice_us(len(cpus))

    def pin(self, cpu: Cpu) -> None:
        """Pin the thread to cpu from its next wake-up on (where a scheduler moves a thread)."""
        self.pinned = True
        self.home = cpu

    def enable_preemption(self, proc: LeanProcess) -> None:
        """Let this thread preempt a running holder when woken (`proc` runs the thread)."""
        self.preempts = True
        self.proc = proc
        self.wakeups["preempt"] = 0

    # -- running -----------------------------------------------------------------------------
    def start(self) -> Proc:
        """Take a CPU for the first time (a thread starts runnable)."""
        self.state = "blocked"
        self._ev = Signal(self.env)
        self.notify()
        yield self._ev
        self._running()
        if self.lock is not None:
            yield from self._take_lock()

    def _running(self) -> None:
        self.state = "running"
        now = self.env.now
        w = self.waking
        if w.on:
            w.total += now - w.since
            w.on = False
        b = self.busy
        b.on = True
        b.since = now
        if self.cpu.preempted is None:  # else the CPU is busy already
            c = self.cpu.busy
            c.on = True
            c.since = now

    def drop_lock(self) -> None:
        """Release the lock while still running: CPython drops the GIL around a system call,
        so another thread may run Python code meanwhile; `take_lock` reclaims it after. The
        first waiter is woken; it takes the lock only if it is still free when it runs, unless
        it has waited the switch interval (then the lock is handed to it)."""
        lock = self.lock
        if lock is not None and lock.holder is self:
            lock.holder = None
            if lock.waiters:
                nxt = lock.waiters.popleft()
                if self.env.now - nxt.lock_since >= lock.switch_us:
                    lock.holder = nxt  # the forced switch
                    lock.forced += 1
                nxt.notify()

    def take_lock(self) -> Proc:
        """Reclaim the lock after `drop_lock`, blocking (off the CPU) while another holds it."""
        if self.lock is not None:
            yield from self._take_lock()

    def syscall(self, held: float, inside: float) -> Proc:
        """With a lock: run `held` (us) holding it, then a system call of `inside` (us) with it
        dropped, and take it back. (Without one, callers yield held + inside: one timeout.)"""
        if held:
            yield held
        self.drop_lock()
        yield inside
        yield from self._take_lock()

    def _release(self) -> None:
        if self.lock is not None:
            self.drop_lock()
        cpu = self.cpu
        if cpu.preempted is self:  # preempted as it woke another, and blocks before its next
            cpu.preempted = None  # cost: the preemptor just keeps the CPU
            assert self.proc is not None
            self.proc.unsuspend()
            cpu.busy.stop(self.env.now)  # switching to the preemptor, which turns it on again
            return
        now = self.env.now
        b = self.busy
        b.total += now - b.since
        b.on = False
        held = cpu.preempted
        if held is not None:  # give the CPU back to the thread this one preempted
            cpu.preempted = None
            cpu.holder = held
            held._resume_preempted()
            return
        c = cpu.busy
        c.total += now - c.since
        c.on = False
        if cpu.waiters:
            nxt = cpu.waiters.popleft()
            cpu.queue.add(-1, now)
            cpu.holder = nxt
            assert nxt._ev is not None
            nxt._fire(nxt._ev, self._wakeup_busy())
        else:
            cpu.holder = None
            if self.preempts:
                self._pull(cpu)

    def _move(self, to: Cpu) -> None:
        """Move this running (or preempted) thread to the idle CPU `to`."""
        now = self.env.now
        frm = self.cpu
        if frm.holder is self:
            frm.busy.stop(now)
            frm.holder = None
        self.cpu = to
        to.holder = self
        to.busy.start(now)

    def _pull(self, idle: Cpu) -> None:
        """The now idle CPU takes a preempted thread that the scheduler placed on it."""
        for other in self.cpus:
            held = other.preempted
            if held is not None and held.pinned and held.home is idle:
                other.preempted = None
                held._move(idle)
                held._resume_preempted()
                return

    def _resume_preempted(self) -> None:
        """Run on after a preemption, on the CPU it now holds: its suspended cost continues."""
        self.busy.start(self.env.now)
        assert self.proc is not None
        self.proc.unsuspend()

    # -- blocking ----------------------------------------------------------------------------
    def should_yield(self) -> bool:
        """True when this thread has run a whole time slice on a CPU others wait for (queued,
        or preempted by it): the scheduler would switch to them now."""
        cpu = self.cpu
        return (
            (bool(cpu.waiters) or cpu.preempted is not None)
            and cpu.holder is self
            and self.env.now - self.busy.since >= self.slice_us
        )

    def yield_cpu(self) -> Proc:
        """Give the CPU to the threads waiting for it and queue for it again, still runnable
        (a time slice ended): it runs again after them, paying a context switch."""
        self._ev = ev = Signal(self.env)
        self.wakeups["slice"] = self.wakeups.get("slice", 0) + 1
        self.state = "blocked"
        self._release()
        # Runnable, not woken: no wake-up preemption; an idle CPU if one is free, else the
        # back of this CPU's queue.
        cpu = self.cpu
        if not self.pinned and cpu.holder is not None:
            cpu = next((c for c in self.cpus if c.holder is None), cpu)
        self.cpu = cpu
        self.state = "waking"
        if cpu.holder is None:
            cpu.holder = self
            self._fire(ev, 0.0)
        else:
            cpu.waiters.append(self)
            cpu.queue.add(1, self.env.now)
        yield ev
        self._running()
        if self.lock is not None:
            yield from self._take_lock()

    def wait(self, fds: Sequence[Notifier]) -> Proc:
        """Block (after polling, if configured) until one of fds has a pending count. An
        adaptive poller (poll_max_us > 0) then adjusts its poll time to how long it waited
        (vsim.models.polling). A thread whose time slice ended with others waiting for its
        CPU yields it first."""
        cpu = self.cpu
        if (cpu.waiters or cpu.preempted is not None) and self.should_yield():
            yield from self.yield_cpu()
        for fd in fds:
            if fd.count:
                self.wakeups["none"] += 1
                return
        env = self.env
        t0 = env.now
        self._ev = ev = Signal(env)
        for fd in fds:
            fd.waiters.append(self)
        poll_us = self.poll_us
        if poll_us > 0:
            self.state = "polling"
            self.polling.set(1, t0)
            if poll_us < math.inf:  # else it spins until a signal
                env.call_in(poll_us, self._poll_timeout, ev)
            got = yield ev
            if got != "timeout" or any(fd.count for fd in fds):
                for fd in fds:
                    fd.waiters.remove(self)
                self.state = "running"
                self.wakeups["poll"] += 1
                yield env.timeout(self._poll_detect())
                self.polling.set(0, env.now)  # spinning until it saw the event
                if self.poll_max_us:
                    self.poll_us = adjust_poll_us(self.poll_us, env.now - t0, self.poll_max_us)
                return
            self.polling.set(0, env.now)
            self._ev = ev = Signal(env)
        self.state = "blocked"
        self._release()
        yield ev
        for fd in fds:
            fd.waiters.remove(self)
        self._running()
        if self.lock is not None:
            yield from self._take_lock()
        if self.poll_max_us:
            self.poll_us = adjust_poll_us(self.poll_us, env.now - t0, self.poll_max_us)

    def _take_lock(self) -> Proc:
        lock = self.lock
        assert lock is not None
        while lock.holder is not None and lock.holder is not self:
            lock.waiters.append(self)
            self.lock_since = self.env.now
            self._ev = ev = Signal(self.env)
            self.state = "blocked"
            self._release()
            yield ev
            self._running()
        lock.holder = self
        if lock.last is not self:
            if lock.last is not None:
                lock.handoffs += 1
            lock.last = self

    def _poll_timeout(self, ev: Signal) -> None:
        if self.state == "polling" and not ev.triggered and self._ev is ev:
            self.state = "poll-expired"
            self._ev.succeed("timeout")

    def notify(self) -> None:
        """A Notifier this thread waits on was signalled."""
        state = self.state
        if state == "polling":
            self.cold = False
            self.state = "waking"
            assert self._ev is not None
            self._ev.succeed("signal")
            return
        if state != "blocked":
            return
        self.state = "waking"
        cpu = self.cpu
        if self.pinned:
            self.cpu = cpu = self.home
        elif cpu.holder is not None:
            self.cpu = cpu = self._choose_cpu()
        holder = cpu.holder
        self.cold = holder is None
        if holder is None:
            cpu.holder = self
            self.wakeups["idle"] += 1
            assert self._ev is not None
            self._fire(self._ev, self._wakeup_idle())
        elif self.preempts and self._preempt(cpu, holder):
            self.wakeups["preempt"] += 1
            assert self._ev is not None
            self._fire(self._ev, self._wakeup_busy())
        else:
            self.wakeups["busy"] += 1
            cpu.waiters.append(self)
            cpu.queue.add(1, self.env.now)

    def _preempt(self, cpu: Cpu, holder: Thread) -> bool:
        """Suspend holder's running cost and take its CPU; False if it cannot be."""
        if cpu.preempted is not None or cpu.waiters or holder.state != "running":
            return False
        home = holder.home
        if holder.pinned and home is not cpu and home.holder is None:
            # Placed elsewhere since it last woke, and that CPU is idle: the scheduler moves it
            # there rather than have it wait (idle balancing); it runs on without a pause.
            holder._move(home)
            cpu.holder = self
            return True
        proc = holder.proc
        if proc is None or not proc.suspend():
            return False
        holder.busy.stop(holder.env.now)
        cpu.preempted = holder
        cpu.holder = self
        return True

    def _fire(self, ev: Signal, delay: float) -> None:
        """Wake the thread `delay` from now (waking meanwhile): one scheduled event."""
        w = self.waking
        w.on = True
        env = self.env
        w.since = now = env._now
        ev.triggered = True  # (Signal.fire_in, inlined: one wake-up per block)
        ev.value = None
        heappush(env._queue, (now + delay, PRIORITY, next(env._eid), ev))

    def _choose_cpu(self) -> Cpu:
        """An idle CPU if there is one, else the current one, but never one a poll-mode
        thread spins on (it would never let go: such a thread has a core to itself, as SPDK's
        reactors do)."""
        cpu = self.cpu
        if self.pinned or cpu.holder is None:
            return cpu
        for other in self.cpus:
            if other.holder is None:
                return other
        if cpu.holder is not None and cpu.holder.poll_us == math.inf:
            for other in self.cpus:
                if other.holder is not None and other.holder.poll_us < math.inf:
                    return other
        return cpu
