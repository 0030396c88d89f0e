"""Microbenchmarks of what the model prices: eventfds, wake-ups, AIO, io_uring, O_DIRECT I/O."""

from __future__ import annotations

import mmap
import multiprocessing
import os
import select
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from vsim.errors import ConfigError, UnavailableError
from vsim.processes import child_init
from vsim.reference.aio import AioEngine
from vsim.reference.engine import IoRequest
from vsim.reference.linux import (
    BufferAddress,
    eventfd_drain,
    new_eventfd,
    pin_thread,
)
from vsim.reference.storage import Target, create_scratch, stamp
from vsim.reference.uring import UringEngine

__all__ = [
    "BENCHMARKS",
    "PREEMPT_GAP_US",
    "Distribution",
    "MicrobenchResult",
    "check_names",
    "microbench",
]

BENCHMARKS = (
    "eventfd",
    "wakeup_same_cpu_blocking",
    "wakeup_cross_cpu_blocking",
    "wakeup_same_cpu_polling",
    "wakeup_cross_cpu_polling",
    "wakeup_preempt",
    "aio_submit",
    "aio_submit_batch",
    "aio_submit_per_iocb",
    "aio_getevents",
    "aio_getevents_per_event",
    "uring_enter_nop",
    "uring_submit",
    "uring_submit_batch",
    "uring_submit_per_sqe",
    "uring_reap",
    "uring_reap_per_cqe",
    "uring_sqpoll_submit",
    "uring_sqpoll_per_sqe",
    "odirect_read",
    "odirect_write",
)
_SCRATCH = 4 << 20
_U64 = struct.Struct("<Q")
_WARMUP = 5


@dataclass(frozen=True, eq=False)
class Distribution:
    """Samples (ns) of one operation, with what one sample covers."""

    name: str
    samples_ns: npt.NDArray[np.int64]
    note: str = ""

    def summary(self) -> dict[str, float]:
        """n, median, p10, p90 and mean, in ns."""
        x = self.samples_ns.astype(np.float64)
        p10, p50, p90 = np.percentile(x, [10, 50, 90])
        return {
            "n": float(x.size),
            "median": float(p50),
            "p10": float(p10),
            "p90": float(p90),
            "mean": float(x.mean()),
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"Distribution({self.name}: median {s['median'] / 1e3:.2f} us, "
            f"p10 {s['p10'] / 1e3:.2f}, p90 {s['p90'] / 1e3:.2f}, n={int(s['n'])})"
        )


@dataclass(frozen=True)
class MicrobenchResult:
    """Distributions by benchmark name, and the benchmarks skipped with the reason."""

    results: dict[str, Distribution] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, float]]:
        """Each distribution's summary by name."""
        return {name: d.summary() for name, d in self.results.items()}


def check_names(names: Iterable[str]) -> None:
    """ConfigError naming the first unknown microbenchmark, if any."""
    unknown = [x for x in names if x not in BENCHMARKS]
    if unknown:
        choices = ", ".join(BENCHMARKS)
        raise ConfigError(f"unknown microbenchmark {unknown[0]!r} (choose from {choices})")


def microbench(
    names: Iterable[str] | None = None,
    *,
    directory: str | os.PathLike[str] | None = None,
    n: int = 200,
    bs: int = 4096,
    batch: int = 8,
    cpus: tuple[int, int] | None = None,
) -> MicrobenchResult:
    """Run the named benchmarks (default: all) with ``n`` samples each.

    I/O benchmarks use a small scratch file in ``directory`` (removed afterwards). Wake-up round
    trips run between a thread of this process and a forked process, on ``cpus`` (default the
    first two CPUs this process may use). Unavailable facilities are skipped with the reason.
    """
    wanted = list(BENCHMARKS if names is None else names)
    check_names(wanted)
    if n < 1 or batch < 1 or bs < 512 or bs % 512:
        raise ConfigError("microbench needs n >= 1, batch >= 1 and bs a multiple of 512")
    allowed = sorted(os.sched_getaffinity(0))
    a, b = cpus if cpus is not None else (allowed[0], allowed[-1])
    out = MicrobenchResult()
    target: Target | None = None
    buf = mmap.mmap(-1, max(bs, mmap.PAGESIZE) * batch)
    try:
        for name in wanted:
            try:
                if name == "eventfd":
                    out.results[name] = _eventfd(n)
                elif name == "wakeup_preempt":
                    if a == b:
                        raise UnavailableError("only one CPU is available")
                    out.results[name] = _wakeup_preempt(n, a, b)
                elif name.startswith("wakeup_"):
                    same = "same_cpu" in name
                    if not same and a == b:
                        raise UnavailableError("only one CPU is available")
                    out.results[name] = _wakeup(name, n, a, a if same else b, "polling" in name)
                else:
                    if target is None:
                        dir_ = None if directory is None else os.fspath(directory)
                        target = create_scratch(dir_, _SCRATCH)
                    _io_bench(name, out, target, buf, n, bs, batch)
            except UnavailableError as e:
                out.skipped[name] = str(e)
    finally:
        if target is not None:
            target.close()
        buf.close()
    return out


def _timed(n: int, op: Callable[[], object], setup: Callable[[], object] | None = None) -> Any:
    now = time.monotonic_ns
    samples = np.empty(n, dtype=np.int64)
    for i in range(-_WARMUP, n):
        if setup is not None:
            setup()
        t0 = now()
        op()
        t1 = now()
        if i >= 0:
            samples[i] = t1 - t0
    return samples


def _eventfd(n: int) -> Distribution:
    fd = new_eventfd()
    try:

        def op() -> None:
            os.eventfd_write(fd, 1)
            os.eventfd_read(fd)

        return Distribution("eventfd", _timed(n, op), "one eventfd write + read, same thread")
    finally:
        os.close(fd)


def _echo(ping: int, pong: int, flags: mmap.mmap, cpu: int, polling: bool, same: bool) -> None:
    """The forked peer of a wake-up round trip: answer every ping until told to stop."""
    child_init()
    try:
        pin_thread(cpu)
        seq = 0
        while True:
            if polling:
                seq += 1
                while _U64.unpack_from(flags, 0)[0] < seq:
                    if same:
                        os.sched_yield()
                if _U64.unpack_from(flags, 16)[0]:
                    return
                _U64.pack_into(flags, 8, seq)
            else:
                os.eventfd_read(ping)
                if _U64.unpack_from(flags, 16)[0]:
                    return
                os.eventfd_write(pong, 1)
    finally:
        os.eventfd_write(pong, 1)


def _run_with_peers(
    peers: list[Any],
    driver: Callable[[], None],
    stop: Callable[[], None],
    fds: tuple[int, ...],
    shared: mmap.mmap,
) -> None:
    """Start the forked peers, run driver on a thread of its own, then stop and reap them and
    close the eventfds and the shared page they used. Interrupted (Ctrl-C, SIGTERM), the driver
    may be blocked on an answer no peer will give: it is answered (pong written, the polled
    answer set) until it ends, so the process can exit."""
    t = threading.Thread(target=driver, name="microbench-driver", daemon=True)
    try:
        for p in peers:
            p.start()
        t.start()
        t.join()
    finally:
        stop()
        for p in peers:
            p.join(2.0)
            if p.is_alive():
                p.kill()
                p.join()
            p.close()
        deadline = time.monotonic() + 10.0
        while t.is_alive() and time.monotonic() < deadline:
            os.eventfd_write(fds[1], 1)  # pong: a blocking read returns
            _U64.pack_into(shared, 8, 1 << 62)  # the polled answer: a spin ends
            t.join(0.01)
        for fd in fds:
            os.close(fd)
        shared.close()


def _wakeup(name: str, n: int, cpu_a: int, cpu_b: int, polling: bool) -> Distribution:
    ping, pong = new_eventfd(nonblocking=False), new_eventfd(nonblocking=False)
    flags = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_SHARED)  # ping seq, pong seq, stop
    ctx = multiprocessing.get_context("fork")
    same = cpu_a == cpu_b
    peer = ctx.Process(target=_echo, args=(ping, pong, flags, cpu_b, polling, same), daemon=True)
    result: list[Any] = []
    failure: list[BaseException] = []

    def driver() -> None:
        try:
            pin_thread(cpu_a)  # this thread only: the caller's affinity is untouched
            seq = [0]

            def op() -> None:
                if polling:
                    seq[0] += 1
                    _U64.pack_into(flags, 0, seq[0])
                    while _U64.unpack_from(flags, 8)[0] < seq[0]:
                        if same:
                            os.sched_yield()
                else:
                    os.eventfd_write(ping, 1)
                    os.eventfd_read(pong)

            result.append(_timed(n, op))
        except BaseException as e:
            failure.append(e)

    def stop() -> None:
        _U64.pack_into(flags, 16, 1)
        _U64.pack_into(flags, 0, 1 << 62)
        os.eventfd_write(ping, 1)

    _run_with_peers([peer], driver, stop, (ping, pong), flags)
    if failure:
        raise failure[0]
    how = (
        "spin (sched_yield) on shared memory"
        if polling and same
        else ("spin on shared memory" if polling else "eventfd write + blocking read")
    )
    return Distribution(name, result[0], f"round trip, CPU {cpu_a} <-> {cpu_b}, {how}")


PREEMPT_GAP_US = (500.0, 3000.0)  # how long the hog has run when the sleeper is woken


def _hog(flags: mmap.mmap, cpu: int) -> None:
    """Spin on `cpu` until told to stop: a CPU-bound task that never sleeps."""
    child_init()
    pin_thread(cpu)
    while not _U64.unpack_from(flags, 16)[0]:
        pass


def _stamp(ping: int, pong: int, flags: mmap.mmap, cpu: int) -> None:
    """Block on ping; on each wake-up record CLOCK_MONOTONIC (ns) and answer on pong."""
    child_init()
    try:
        pin_thread(cpu)
        while True:
            os.eventfd_read(ping)
            _U64.pack_into(flags, 0, time.monotonic_ns())
            if _U64.unpack_from(flags, 16)[0]:
                return
            os.eventfd_write(pong, 1)
    finally:
        os.eventfd_write(pong, 1)


def _wakeup_preempt(n: int, cpu_a: int, cpu_b: int) -> Distribution:
    """One-way wake-up latency onto a CPU that a CPU-bound process holds.

    A sleeper and a hog are pinned to cpu_a; this thread, on cpu_b, writes the sleeper's eventfd
    a uniformly drawn PREEMPT_GAP_US after the sleeper last blocked (so the hog has run that
    long), and the sample is the time until the sleeper runs. A scheduler that preempts the hog
    at once gives the cross-CPU wake-up cost; one that lets the hog finish a slice gives samples
    spread up to the slice.
    """
    ping, pong = new_eventfd(nonblocking=False), new_eventfd(nonblocking=False)
    flags = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_SHARED)  # wake stamp, -, stop
    ctx = multiprocessing.get_context("fork")
    peers = [
        ctx.Process(target=_stamp, args=(ping, pong, flags, cpu_a), daemon=True),
        ctx.Process(target=_hog, args=(flags, cpu_a), daemon=True),
    ]
    gaps = np.random.default_rng(0).uniform(*PREEMPT_GAP_US, size=n + _WARMUP) * 1e3
    result: list[Any] = []
    failure: list[BaseException] = []

    def driver() -> None:
        try:
            pin_thread(cpu_b)
            now = time.monotonic_ns
            samples = np.empty(n, dtype=np.int64)
            for i, gap in enumerate(gaps):
                until = now() + int(gap)
                while now() < until:  # spin on cpu_b: its own idle state stays out of it
                    pass
                t0 = now()
                os.eventfd_write(ping, 1)
                os.eventfd_read(pong)
                if i >= _WARMUP:
                    samples[i - _WARMUP] = _U64.unpack_from(flags, 0)[0] - t0
            result.append(samples)
        except BaseException as e:
            failure.append(e)

    def stop() -> None:
        _U64.pack_into(flags, 16, 1)
        os.eventfd_write(ping, 1)

    _run_with_peers(peers, driver, stop, (ping, pong), flags)
    if failure:
        raise failure[0]
    lo, hi = PREEMPT_GAP_US
    note = (
        f"one way, CPU {cpu_b} -> {cpu_a}, eventfd write to the sleeper running, with a "
        f"CPU-bound process on CPU {cpu_a} for {lo:g}-{hi:g} us since the sleeper blocked"
    )
    return Distribution("wakeup_preempt", result[0], note)


def _io_bench(
    name: str, out: MicrobenchResult, target: Target, buf: mmap.mmap, n: int, bs: int, batch: int
) -> None:
    rng = np.random.default_rng(0)
    blocks = target.region // bs
    page = max(bs, mmap.PAGESIZE)

    def offset() -> int:
        return int(rng.integers(0, blocks)) * bs

    if name == "odirect_read":
        view = memoryview(buf)[:bs]
        try:
            samples = _timed(n, lambda: os.preadv(target.fd, [view], offset()))
        finally:
            view.release()
        out.results[name] = Distribution(name, samples, f"os.preadv of {bs} B, O_DIRECT, random")
    elif name == "odirect_write":
        view = memoryview(buf)[:bs]
        data = np.frombuffer(buf, dtype=np.uint64, count=bs // 8)
        off = [0]

        def setup() -> None:
            off[0] = offset()
            data[:] = stamp(off[0], bs, 0)  # the scratch pattern: the file stays verifiable

        try:
            samples = _timed(n, lambda: os.pwritev(target.fd, [view], off[0]), setup)
        finally:
            view.release()
            del data
        out.results[name] = Distribution(name, samples, f"os.pwritev of {bs} B, O_DIRECT, random")
    elif name.startswith("aio_"):
        with _Mapped(buf) as base, AioEngine(target.fd, batch) as eng:
            _aio_bench(name, out, eng, base, page, n, bs, batch, offset)
    elif name.startswith("uring_"):
        sqpoll = name.startswith("uring_sqpoll")
        with _Mapped(buf) as base, UringEngine(target.fd, batch, sqpoll=sqpoll) as ring:
            if name == "uring_enter_nop":
                note = "io_uring_enter submitting and reaping a NOP"
                out.results[name] = Distribution(name, _timed(n, ring.nop_roundtrip), note)
            else:
                _uring_bench(name, out, ring, base, page, n, bs, batch, offset)


def _uring_bench(
    name: str,
    out: MicrobenchResult,
    ring: UringEngine,
    base: int,
    page: int,
    n: int,
    bs: int,
    batch: int,
    offset: Callable[[], int],
) -> None:
    """io_uring as _aio_bench prices Linux AIO: one io_uring_enter submitting one read or a
    batch, and reading ready completions off the CQ ring (no system call)."""
    batched = (
        "uring_submit_batch",
        "uring_submit_per_sqe",
        "uring_reap_per_cqe",
        "uring_sqpoll_per_sqe",
    )
    k = batch if name in batched else 1

    def submit() -> None:
        ring.submit([IoRequest(i, False, base + page * i, bs, offset()) for i in range(k)])

    def settle() -> None:
        got = 0
        while got < k:
            got += len(ring.reap())
            if got < k:
                select.select([ring.completion_fd], [], [], 1.0)
        eventfd_drain(ring.completion_fd)

    if name.startswith("uring_reap"):

        def ready() -> None:  # submit k reads and wait until all k completions are posted
            submit()
            while ring.posted() < k:
                select.select([ring.completion_fd], [], [], 1.0)
                eventfd_drain(ring.completion_fd)

        def reap() -> None:
            if len(ring.reap()) != k:
                raise RuntimeError("the CQ ring held fewer completions than were posted")

        samples = _timed(n, reap, ready)
        if k == 1:
            note = "reading one ready completion off the io_uring CQ ring"
        else:
            samples //= k
            note = f"reading {k} ready completions off the io_uring CQ ring, per completion"
        out.results[name] = Distribution(name, samples, note)
        return
    samples = _timed_pairs(n, submit, settle)
    if name == "uring_submit":
        note = f"io_uring_enter submitting one {bs} B read"
    elif name == "uring_submit_batch":
        note = f"io_uring_enter submitting {k} reads of {bs} B"
    elif name == "uring_sqpoll_submit":
        note = f"queueing one {bs} B read on an SQPOLL ring (no io_uring_enter)"
    elif name == "uring_sqpoll_per_sqe":
        samples, note = samples // k, f"queueing {k} reads on an SQPOLL ring, per SQE"
    else:
        samples, note = samples // k, f"io_uring_enter submitting {k} reads, per SQE"
    out.results[name] = Distribution(name, samples, note)


def _timed_pairs(n: int, op: Callable[[], object], after: Callable[[], object]) -> Any:
    """Time ``op`` only; run ``after`` (untimed) after each call."""
    now = time.monotonic_ns
    samples = np.empty(n, dtype=np.int64)
    for i in range(-_WARMUP, n):
        t0 = now()
        op()
        t1 = now()
        after()
        if i >= 0:
            samples[i] = t1 - t0
    return samples


def _aio_bench(
    name: str,
    out: MicrobenchResult,
    eng: Any,
    base: int,
    page: int,
    n: int,
    bs: int,
    batch: int,
    offset: Callable[[], int],
) -> None:
    batched = ("aio_submit_batch", "aio_submit_per_iocb", "aio_getevents_per_event")
    k = batch if name in batched else 1

    def submit() -> None:
        eng.submit([IoRequest(i, False, base + page * i, bs, offset()) for i in range(k)])

    def settle() -> None:
        got = 0
        while got < k:
            got += len(eng.wait(k - got))
        eventfd_drain(eng.completion_fd)

    if name.startswith("aio_getevents"):

        def ready() -> None:  # submit k reads and wait until all k completions are posted
            submit()
            posted = 0
            while posted < k:
                select.select([eng.completion_fd], [], [], 1.0)
                posted += eventfd_drain(eng.completion_fd)

        def reap() -> None:
            if len(eng.reap()) != k:
                raise RuntimeError("io_getevents returned fewer events than were posted")

        samples = _timed(n, reap, ready)
        if k == 1:
            note = "io_getevents reaping one ready event"
        else:
            samples //= k
            note = f"io_getevents reaping {k} ready events, per event"
        out.results[name] = Distribution(name, samples, note)
        return
    samples = _timed_pairs(n, submit, settle)
    if name == "aio_submit":
        out.results[name] = Distribution(name, samples, f"io_submit of one {bs} B O_DIRECT read")
    elif name == "aio_submit_batch":
        out.results[name] = Distribution(name, samples, f"io_submit of {k} reads of {bs} B")
    else:
        out.results[name] = Distribution(name, samples // k, f"io_submit of {k} reads, per iocb")


class _Mapped:
    """The address of an mmap for the duration of a with-block."""

    def __init__(self, buf: mmap.mmap) -> None:
        self._addr = BufferAddress(buf)

    def __enter__(self) -> int:
        return self._addr.address

    def __exit__(self, *exc: object) -> None:
        self._addr.release()
