"""run(): one real run of a workload on a backend design, from setup to a RunRecord and cleanup."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import secrets
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, cast

import numpy as np

from vsim.errors import ConfigError, VsimError
from vsim.models.queue import indexed, queue_of, used_queues
from vsim.reference.backend import Backend, QueueIo
from vsim.reference.engine import IoEngine
from vsim.reference.engines import engine_name, open_engine
from vsim.reference.guest import GuestConfig, guest_main
from vsim.reference.guestmem import (
    CTL_ABORT,
    CTL_COMPLETED,
    GuestMemory,
    MemoryLayout,
    queue_size_for,
)
from vsim.reference.linux import check_cpu, new_eventfd
from vsim.reference.ring import MAX_QUEUE_SIZE
from vsim.reference.storage import DEFAULT_SCRATCH_SIZE, Target, open_target, read_back
from vsim.reference.trace import COLUMNS, STAGES, RunRecord
from vsim.scenario import MAX_VCPUS, Design, Workload
from vsim.scenario import design as preset

__all__ = [
    "NUDGE_AFTER_S",
    "STALL_AFTER_S",
    "check_guest",
    "engine_for",
    "run",
]

NUDGE_AFTER_S = 2.0  # no guest progress this long: wake both sides (a lost notification?)
STALL_AFTER_S = 10.0  # no progress this long: give up
_POLL_SWITCH_INTERVAL = 50e-6


def run(
    workload: Workload,
    design: Design | str = "virtio-blk",
    *,
    engine: str | None = None,
    directory: str | os.PathLike[str] | None = None,
    file: str | os.PathLike[str] | None = None,
    allow_overwrite: bool = False,
    cpus: tuple[int | None, ...] | None = None,
    guest_cpu: int | None = None,
    guest_vcpus: int = 1,
    verify: bool = False,
    scratch_size: int = DEFAULT_SCRATCH_SIZE,
    seed: int = 0,
    event_idx: bool = True,
) -> RunRecord:
    """Run ``workload`` in a guest against the real ``design`` backend; return its trace.

    ``engine`` (native, io_uring, threads) defaults to the design's (Design.engine).

    The guest has ``guest_vcpus`` vCPUs and uses min(design.queues, guest_vcpus) virtqueues, as
    Linux's virtio-blk driver does; fio job i runs on vCPU i mod guest_vcpus and submits to its
    vCPU group's queue (vsim.models.queue). Each used queue is driven by one guest process
    running the jobs of its group, so guest_vcpus may not exceed the queues used. I/O goes to a
    nameless scratch file in ``directory`` (default: the current directory), or to an existing
    ``file`` (read-only unless ``allow_overwrite``; never writes to block devices; see
    vsim.reference.storage, the one guard of every real I/O path). Each job covers
    ``min(workload.size, file size)`` bytes and runs for ``number_ios`` I/Os, ``runtime``
    seconds, or one pass over that region. ``cpus`` pins the backend threads (overriding
    ``design.cpus``), ``guest_cpu`` the guest processes. ``verify`` checks every read against
    the stamped pattern and reads back every written block. Raises ConfigError for bad input,
    UnavailableError when the machine lacks O_DIRECT/AIO/io_uring, VsimError when a run fails.
    """
    d = preset(design) if isinstance(design, str) else design
    engine = engine_for(d, engine)
    cpus = cpus if cpus is not None else d.cpus
    _validate(workload, d, engine, cpus, guest_cpu, guest_vcpus, verify, file, allow_overwrite)
    needs_write = workload.read_fraction < 1.0
    n_queues = used_queues(d.queues, guest_vcpus)
    jobs_of = _jobs_by_queue(workload.numjobs, guest_vcpus, n_queues)
    served = d.served()[:n_queues]
    old_interval = sys.getswitchinterval()
    with ExitStack() as stack:
        target = open_target(
            workload,
            directory=directory,
            file=file,
            allow_overwrite=allow_overwrite,
            scratch_size=scratch_size,
            verify=verify,
        )
        stack.callback(target.close)  # a scratch file has no name: nothing is left on SIGKILL
        write_tag = secrets.randbits(63) | 1
        ctx = multiprocessing.get_context("fork")
        queues: list[QueueIo] = []
        guests: list[tuple[BaseProcess, Connection]] = []
        for jobs in jobs_of:
            depth = workload.iodepth * len(jobs)
            layout = MemoryLayout(queue_size_for(depth), depth, workload.bs)
            mem = GuestMemory(layout)
            stack.callback(mem.close)
            kick_fd = new_eventfd()
            stack.callback(os.close, kick_fd)
            irq_fd = new_eventfd(nonblocking=False)
            stack.callback(os.close, irq_fd)
            cfg = GuestConfig(
                workload=workload,
                region=target.region,
                n_ios=_n_ios(workload, target.region),
                kick_fd=kick_fd,
                irq_fd=irq_fd,
                seed=seed,
                verify=verify,
                write_tag=write_tag,
                cpu=guest_cpu,
                event_idx=event_idx,
                jobs=jobs,
            )
            conn, child_conn = ctx.Pipe()
            stack.callback(conn.close)
            name = indexed("vsim-guest", len(guests), len(jobs_of))
            guest = ctx.Process(
                target=guest_main, args=(cfg, mem, child_conn), name=name, daemon=True
            )
            guest.start()  # before any backend thread exists: fork a single-threaded process
            stack.callback(_reap, guest, conn, mem, irq_fd)
            child_conn.close()
            queues.append(QueueIo(mem, kick_fd, irq_fd))
            guests.append((guest, conn))
        engines: dict[int, IoEngine] = {}
        for c in sorted({c for _, c in served}):
            depth = workload.iodepth * sum(
                len(jobs_of[q]) for q, (_, cq) in enumerate(served) if cq == c
            )
            sq = d.sq_threads.get(c)
            sq_cpu = cpus[sq] if sq is not None and cpus is not None else None
            engines[c] = io = open_engine(engine, target.fd, depth, sq is not None, sq_cpu)
            stack.callback(io.close)
        backend = Backend(d, queues, engines, region=target.region, cpus=cpus, event_idx=event_idx)
        stack.callback(backend.stop)
        if d.poll_us > 0 or "poll" in d.roles:  # a spinning thread holds the GIL a whole interval
            sys.setswitchinterval(min(old_interval, _POLL_SWITCH_INTERVAL))
            stack.callback(sys.setswitchinterval, old_interval)
        backend.start()
        t_wall = time.time()
        for _, conn in guests:
            conn.send("go")
        results, nudges = _await_guests(guests, queues, backend)
        backend.stop()
        counters: dict[str, int] = {**backend.counters, "runner_nudges": nudges}
        for r in results:
            for k, v in r.pop("counters").items():
                counters[k] = counters.get(k, 0) + v
        record = _assemble(results, backend, workload, d, engine, target, counters, t_wall)
        if verify and needs_write:
            written = record.offset[record.ddir == 1]
            counters["verify_written_blocks"] = int(np.unique(written).size)
            counters["verify_bad_written_sectors"] = read_back(
                target, written, workload.bs, write_tag
            )
        record.meta.update(
            verify=verify,
            guest_cpu=guest_cpu,
            guest_vcpus=guest_vcpus,
            cpus=cpus,
            seed=seed,
            event_idx=event_idx,
            queue_size=max(q.mem.layout.num for q in queues),  # every queue's, when one
            queue_sizes=[q.mem.layout.num for q in queues],
        )
    if verify:
        _check_verify(record)
    return record


def engine_for(d: Design, engine: str | None) -> str:
    """The reference engine a run of `d` uses: `engine` if given (an alias resolved), else
    the design's; ConfigError when both are given and a non-native design's differs."""
    if engine is None:
        return d.engine
    name = engine_name(engine)
    if d.engine != "native" and name != d.engine:
        raise ConfigError(f"design {d.name} runs on {d.engine}; --engine {engine} contradicts it")
    return name


def _jobs_by_queue(numjobs: int, vcpus: int, used: int) -> list[tuple[int, ...]]:
    """Per used queue, the fio jobs that submit to it: job i runs on vCPU i mod vcpus, whose
    group's queue it uses (vsim.models.queue.queue_of, as the model maps them)."""
    out: list[list[int]] = [[] for _ in range(used)]
    for j in range(numjobs):
        out[queue_of(j % vcpus, vcpus, used)].append(j)
    return [tuple(jobs) for jobs in out]


def _validate(
    workload: Workload,
    d: Design,
    engine: str,
    cpus: tuple[int | None, ...] | None,
    guest_cpu: int | None,
    guest_vcpus: int,
    verify: bool,
    file: object,
    allow_overwrite: bool,
) -> None:
    check_guest(workload, d, guest_vcpus)
    engine_name(engine)
    if cpus is not None and len(cpus) != d.threads:
        raise ConfigError(f"cpus needs one entry per backend thread ({d.threads}), got {len(cpus)}")
    for cpu in (*(cpus or ()), guest_cpu):
        check_cpu(cpu)
    if verify and file is not None and not allow_overwrite:
        raise ConfigError("verify stamps a pattern first: an existing file needs allow_overwrite")


def check_guest(workload: Workload, d: Design, guest_vcpus: int) -> None:
    """ConfigError unless the reference guest can run `workload` with `guest_vcpus` vCPUs on
    design `d`: one guest process per used queue, each with a job, within the largest ring;
    rate_iops and thinktime for one-direction jobs, one per queue."""
    v = guest_vcpus
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_VCPUS:
        raise ConfigError(f"guest_vcpus must be within 1..{MAX_VCPUS}, got {v!r}")
    used = used_queues(d.queues, v)
    if v > used:
        raise ConfigError(
            f"design {d.name}: the reference guest runs one process per virtqueue, so "
            f"guest_vcpus ({v}) may not exceed the queues it uses ({used})"
        )
    if v > workload.numjobs:
        raise ConfigError(
            f"guest_vcpus ({v}) > numjobs ({workload.numjobs}): a queue would have no job"
        )
    jobs = max(len(j) for j in _jobs_by_queue(workload.numjobs, v, used))
    w = workload
    if w.iodepth_batch_complete_min != 1 or w.iodepth_batch_complete_max != 0:
        raise ConfigError(
            "the reference guest reaps each completion as its interrupt handler pops it: "
            "iodepth_batch_complete_min/max are not implemented there (vsim measure --fio "
            "runs them in fio)"
        )
    if w.gated and 0.0 < w.read_fraction < 1.0 and w.rated:
        raise ConfigError(
            "the reference guest rates one-direction jobs only (rate_iops with a read/write "
            "mix: vsim measure --fio runs it in fio)"
        )
    if w.gated and jobs > 1:
        raise ConfigError(
            f"rate_iops / thinktime: the reference guest runs a queue's {jobs} jobs in one "
            "process, so one job's stall would stall the others: give numjobs = guest_vcpus"
        )
    if workload.iodepth * jobs > MAX_QUEUE_SIZE // 3:
        limit = MAX_QUEUE_SIZE // 3
        raise ConfigError(
            f"iodepth {workload.iodepth} x {jobs} jobs on one queue exceeds the largest "
            f"virtqueue ({limit} requests)"
        )


def _n_ios(workload: Workload, region: int) -> int | None:
    if workload.number_ios is not None:
        return workload.number_ios
    if workload.runtime is not None:
        return None
    return max(region // workload.bs, 1)  # fio without runtime: one pass over the region


def _await_guests(
    guests: list[tuple[BaseProcess, Connection]],
    queues: list[QueueIo],
    backend: Backend,
) -> tuple[list[dict[str, Any]], int]:
    """Wait for every guest process's results, nudging and then failing if they stop making
    progress."""
    nudges = 0
    last, last_change = -1, time.monotonic()
    results: dict[int, dict[str, Any]] = {}
    while len(results) < len(guests):
        for i, (guest, conn) in enumerate(guests):
            if i not in results and conn.poll(0):
                results[i] = _receive(guest, conn, backend)
        if len(results) == len(guests):
            break
        waiting = next(conn for i, (_, conn) in enumerate(guests) if i not in results)
        if waiting.poll(0.1):
            continue
        if backend.error is not None:
            e = backend.error
            raise VsimError(f"backend failed: {type(e).__name__}: {e}")
        for i, (guest, conn) in enumerate(guests):
            if i not in results and not guest.is_alive() and not conn.poll(0):
                raise VsimError(f"guest process died (exit code {guest.exitcode})")
        done, now = sum(int(q.mem.control[CTL_COMPLETED]) for q in queues), time.monotonic()
        if done != last:
            last, last_change = done, now
        elif now - last_change > STALL_AFTER_S:
            raise VsimError(f"run stalled: no completion in {STALL_AFTER_S:.0f} s after {done} ios")
        elif now - last_change > NUDGE_AFTER_S * (nudges + 1):
            nudges += 1  # counted: a non-zero value in a trace means a lost notification
            for q in queues:
                os.eventfd_write(q.kick_fd, 1)
                os.eventfd_write(q.irq_fd, 1)
    return [results[i] for i in range(len(guests))], nudges


def _receive(guest: BaseProcess, conn: Connection, backend: Backend) -> dict[str, Any]:
    """One guest process's results, or VsimError naming why there are none."""
    try:
        status, payload = conn.recv()
    except EOFError:
        raise VsimError(f"guest process died (exit code {guest.exitcode})") from None
    if status != "ok":
        if backend.error is not None:
            e = backend.error
            raise VsimError(f"backend failed: {type(e).__name__}: {e}")
        raise VsimError(str(payload))
    return cast(dict[str, Any], payload)


def _reap(guest: BaseProcess, conn: Connection, mem: GuestMemory, irq_fd: int) -> None:
    """Make sure the guest process is gone: ask, then terminate, then kill."""
    if guest.is_alive():
        with contextlib.suppress(OSError):
            conn.send("abort")  # a guest still waiting for "go" returns at once
        mem.control[CTL_ABORT] = 1
        os.eventfd_write(irq_fd, 1)
        guest.join(1.0)
    if guest.is_alive():
        guest.terminate()
        guest.join(1.0)
    if guest.is_alive():
        guest.kill()
    guest.join()
    guest.close()


def _assemble(
    results: list[dict[str, Any]],
    backend: Backend,
    workload: Workload,
    d: Design,
    engine: str,
    target: Target,
    counters: dict[str, int],
    t_wall: float,
) -> RunRecord:
    """One record of every queue's I/Os in the window where all the guest processes ran:
    from the last end of warm-up to the first last completion, in submission order."""
    b = backend.trace()
    start = max(int(g["ramp_end"]) for g in results)
    end = min(int(g["t_last"]) for g in results)
    parts: list[dict[str, Any]] = []
    total = 0
    for q, g in enumerate(results):
        n = g["ddir"].shape[0]
        total += n
        mine = b["queue"] == q
        io = b["io"][mine]
        if io.shape[0] != n or not np.array_equal(np.sort(io), np.arange(n)):
            raise VsimError(f"backend saw {io.shape[0]} requests of queue {q} for {n} guest I/Os")

        def by_io(name: str, dtype: Any, io: Any = io, mine: Any = mine, n: int = n) -> Any:
            out = np.zeros(n, dtype=dtype)
            out[io] = b[name][mine]
            return out

        slat = g["kick_ns"] - g["submit_ns"]
        clat = g["reap_ns"] - g["kick_ns"]
        parts.append(
            {
                "ddir": g["ddir"],
                "offset": g["offset"],
                "slat_ns": slat,
                "clat_ns": clat,
                "lat_ns": slat + clat,
                "kicked": g["kicked"],
                "status": g["status"],
                "result": by_io("result", np.int64),
                "submit_thread": by_io("submit_thread", np.int8),
                "submit_cpu": by_io("submit_cpu", np.int16),
                "complete_thread": by_io("complete_thread", np.int8),
                "complete_cpu": by_io("complete_cpu", np.int16),
                "guest_cpu": g["guest_cpu"],
                "job": g["job"],
                "queue": np.full(n, q, dtype=np.int16),
                "submit_ns": g["submit_ns"],
                "kick_ns": g["kick_ns"],
                "pop_ns": by_io("pop_ns", np.int64),
                "io_submit_ns": by_io("io_submit_ns", np.int64),
                "io_complete_ns": by_io("io_complete_ns", np.int64),
                "used_push_ns": by_io("used_push_ns", np.int64),
                "signal_ns": by_io("signal_ns", np.int64),
                "irq_ns": g["irq_ns"],
                "reap_ns": g["reap_ns"],
            }
        )
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    keep = (cols["submit_ns"] >= start) & (cols["reap_ns"] <= end)
    order = np.argsort(cols["submit_ns"][keep], kind="stable")
    cols = {k: v[keep][order] for k, v in cols.items()}
    meta: dict[str, Any] = {
        "design": d.name,
        "design_config": asdict(d),
        "workload": asdict(workload),
        "engine": engine,
        "file": None if target.scratch else target.path,
        "scratch": target.scratch,
        "region": target.region,
        "warmup_ios": int(total - keep.sum()),
        "start_time": t_wall,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    return RunRecord(
        **{k: cols[k] for k in COLUMNS},
        stages={k: cols[k] for k in STAGES},
        thread_names=d.thread_names,
        start_ns=start,
        end_ns=end,
        counters=counters,
        meta=meta,
    )


def _check_verify(record: RunRecord) -> None:
    c = record.counters
    bad = c.get("verify_bad_sectors", 0) + c.get("verify_bad_written_sectors", 0)
    if bad or record.errors:
        raise VsimError(
            f"verify failed: {c.get('verify_bad_sectors', 0)} bad sectors in reads, "
            f"{c.get('verify_bad_written_sectors', 0)} in written blocks, "
            f"{record.errors} I/O errors"
        )
