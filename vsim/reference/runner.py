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
from typing import Any

import numpy as np

from vsim.errors import ConfigError, VsimError
from vsim.reference.backend import Backend
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
from vsim.reference.trace import STAGES, RunRecord
from vsim.scenario import Design, Workload
from vsim.scenario import design as preset

__all__ = [
    "NUDGE_AFTER_S",
    "STALL_AFTER_S",
    "run",
]

NUDGE_AFTER_S = 2.0  # no guest progress this long: wake both sides (a lost notification?)
STALL_AFTER_S = 10.0  # no progress this long: give up
_POLL_SWITCH_INTERVAL = 50e-6


def run(
    workload: Workload,
    design: Design | str = "virtio-blk",
    *,
    engine: str = "native",
    directory: str | os.PathLike[str] | None = None,
    file: str | os.PathLike[str] | None = None,
    allow_overwrite: bool = False,
    cpus: tuple[int | None, ...] | None = None,
    guest_cpu: int | None = None,
    verify: bool = False,
    scratch_size: int = DEFAULT_SCRATCH_SIZE,
    seed: int = 0,
    event_idx: bool = True,
) -> RunRecord:
    """Run ``workload`` in a guest process against the real ``design`` backend; return its trace.

    I/O goes to a nameless scratch file in ``directory`` (default: the current directory), or to
    an existing ``file`` (read-only unless ``allow_overwrite``; never writes to block devices;
    see vsim.reference.storage, the one guard of every real I/O path). The job covers
    ``min(workload.size, file size)`` bytes and runs for ``number_ios`` I/Os, ``runtime``
    seconds, or one pass over that region. ``cpus`` pins the backend threads (overriding
    ``design.cpus``), ``guest_cpu`` the guest. ``verify`` checks every read against the stamped
    pattern and reads back every written block. Raises ConfigError for bad input,
    UnavailableError when the machine lacks O_DIRECT/AIO/io_uring, VsimError when a run fails.
    """
    d = preset(design) if isinstance(design, str) else design
    cpus = cpus if cpus is not None else d.cpus
    _validate(workload, d, engine, cpus, guest_cpu, verify, file, allow_overwrite)
    needs_write = workload.read_fraction < 1.0
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
        layout = MemoryLayout(queue_size_for(workload.iodepth), workload.iodepth, workload.bs)
        mem = GuestMemory(layout)
        stack.callback(mem.close)
        kick_fd = new_eventfd()
        stack.callback(os.close, kick_fd)
        irq_fd = new_eventfd(nonblocking=False)
        stack.callback(os.close, irq_fd)
        write_tag = secrets.randbits(63) | 1
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
        )
        ctx = multiprocessing.get_context("fork")
        conn, child_conn = ctx.Pipe()
        stack.callback(conn.close)
        guest = ctx.Process(
            target=guest_main, args=(cfg, mem, child_conn), name="vsim-guest", daemon=True
        )
        guest.start()  # before any backend thread exists: fork a single-threaded process
        stack.callback(_reap, guest, conn, mem, irq_fd)
        child_conn.close()
        io = open_engine(engine, target.fd, workload.iodepth)
        stack.callback(io.close)
        backend = Backend(
            d,
            mem,
            io,
            kick_fd=kick_fd,
            irq_fd=irq_fd,
            region=target.region,
            cpus=cpus,
            event_idx=event_idx,
        )
        stack.callback(backend.stop)
        if d.poll_us > 0:  # a polling thread would hold the GIL for a whole switch interval
            sys.setswitchinterval(min(old_interval, _POLL_SWITCH_INTERVAL))
            stack.callback(sys.setswitchinterval, old_interval)
        backend.start()
        t_wall = time.time()
        conn.send("go")
        result, nudges = _await_guest(conn, guest, mem, backend, kick_fd, irq_fd)
        backend.stop()
        counters = {**backend.counters, **result.pop("counters"), "runner_nudges": nudges}
        if verify and needs_write:
            written = result["offset"][result["ddir"] == 1]
            counters["verify_written_blocks"] = int(np.unique(written).size)
            counters["verify_bad_written_sectors"] = read_back(
                target, written, workload.bs, write_tag
            )
        record = _assemble(result, backend, workload, d, engine, target, counters, t_wall)
        record.meta.update(
            verify=verify,
            guest_cpu=guest_cpu,
            cpus=cpus,
            seed=seed,
            event_idx=event_idx,
            queue_size=layout.num,
        )
    if verify:
        _check_verify(record)
    return record


def _validate(
    workload: Workload,
    d: Design,
    engine: str,
    cpus: tuple[int | None, ...] | None,
    guest_cpu: int | None,
    verify: bool,
    file: object,
    allow_overwrite: bool,
) -> None:
    if workload.numjobs != 1:
        raise ConfigError(f"the reference backend runs numjobs=1 (got {workload.numjobs})")
    if d.queues != 1:
        raise ConfigError(f"design {d.name}: the reference backend serves one virtqueue")
    if workload.iodepth > MAX_QUEUE_SIZE // 3:
        limit = MAX_QUEUE_SIZE // 3
        raise ConfigError(f"iodepth {workload.iodepth} exceeds the largest virtqueue ({limit})")
    engine_name(engine)
    if cpus is not None and len(cpus) != d.threads:
        raise ConfigError(f"cpus needs one entry per backend thread ({d.threads}), got {len(cpus)}")
    for cpu in (*(cpus or ()), guest_cpu):
        check_cpu(cpu)
    if verify and file is not None and not allow_overwrite:
        raise ConfigError("verify stamps a pattern first: an existing file needs allow_overwrite")


def _n_ios(workload: Workload, region: int) -> int | None:
    if workload.number_ios is not None:
        return workload.number_ios
    if workload.runtime is not None:
        return None
    return max(region // workload.bs, 1)  # fio without runtime: one pass over the region


def _await_guest(
    conn: Connection,
    guest: BaseProcess,
    mem: GuestMemory,
    backend: Backend,
    kick_fd: int,
    irq_fd: int,
) -> tuple[dict[str, Any], int]:
    """Wait for the guest's results, nudging and then failing if it stops making progress."""
    nudges = 0
    last, last_change = -1, time.monotonic()
    while not conn.poll(0.1):
        if backend.error is not None:
            e = backend.error
            raise VsimError(f"backend failed: {type(e).__name__}: {e}")
        if not guest.is_alive():
            if conn.poll(0):
                break
            raise VsimError(f"guest process died (exit code {guest.exitcode})")
        done, now = int(mem.control[CTL_COMPLETED]), time.monotonic()
        if done != last:
            last, last_change = done, now
        elif now - last_change > STALL_AFTER_S:
            raise VsimError(f"run stalled: no completion in {STALL_AFTER_S:.0f} s after {done} ios")
        elif now - last_change > NUDGE_AFTER_S * (nudges + 1):
            nudges += 1  # counted: a non-zero value in a trace means a lost notification
            os.eventfd_write(kick_fd, 1)
            os.eventfd_write(irq_fd, 1)
    try:
        status, payload = conn.recv()
    except EOFError:
        raise VsimError(f"guest process died (exit code {guest.exitcode})") from None
    if status != "ok":
        if backend.error is not None:
            e = backend.error
            raise VsimError(f"backend failed: {type(e).__name__}: {e}")
        raise VsimError(str(payload))
    return payload, nudges


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
    g: dict[str, Any],
    backend: Backend,
    workload: Workload,
    d: Design,
    engine: str,
    target: Target,
    counters: dict[str, int],
    t_wall: float,
) -> RunRecord:
    n = g["ddir"].shape[0]
    b = backend.trace()
    io = b["io"]
    if io.shape[0] != n or not np.array_equal(np.sort(io), np.arange(n)):
        raise VsimError(f"backend saw {io.shape[0]} requests for {n} guest I/Os")

    def by_io(name: str, dtype: Any) -> Any:
        out = np.zeros(n, dtype=dtype)
        out[io] = b[name]
        return out

    stages = {
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
    keep = g["submit_ns"] >= g["ramp_end"]
    slat = g["kick_ns"] - g["submit_ns"]
    clat = g["reap_ns"] - g["kick_ns"]
    meta: dict[str, Any] = {
        "design": d.name,
        "design_config": asdict(d),
        "workload": asdict(workload),
        "engine": engine,
        "file": None if target.scratch else target.path,
        "scratch": target.scratch,
        "region": target.region,
        "warmup_ios": int(n - keep.sum()),
        "start_time": t_wall,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    return RunRecord(
        ddir=g["ddir"][keep],
        offset=g["offset"][keep],
        slat_ns=slat[keep],
        clat_ns=clat[keep],
        lat_ns=(slat + clat)[keep],
        kicked=g["kicked"][keep],
        status=g["status"][keep],
        result=by_io("result", np.int64)[keep],
        submit_thread=by_io("submit_thread", np.int8)[keep],
        submit_cpu=by_io("submit_cpu", np.int16)[keep],
        complete_thread=by_io("complete_thread", np.int8)[keep],
        complete_cpu=by_io("complete_cpu", np.int16)[keep],
        guest_cpu=g["guest_cpu"][keep],
        stages={k: stages[k][keep] for k in STAGES},
        thread_names=d.thread_names,
        start_ns=int(g["ramp_end"]),
        end_ns=int(g["t_last"]),
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
