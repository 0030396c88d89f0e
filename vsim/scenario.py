"""Frozen scenario objects: Workload (a fio job), Design (a host backend) and Scenario."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Literal

from vsim.errors import ConfigError

__all__ = [
    "DESIGNS",
    "ENGINES",
    "MAX_IODEPTH",
    "MAX_JOBS",
    "MAX_QUEUES",
    "RATE_PROCESSES",
    "ROLES",
    "RW_MODES",
    "SECTOR",
    "SPINNING_ROLES",
    "Context",
    "Design",
    "Role",
    "Scenario",
    "Signal",
    "Workload",
    "design",
    "parse_size",
]

RW_MODES = ("read", "write", "randread", "randwrite", "rw", "readwrite", "randrw")
RATE_PROCESSES = ("linear", "poisson")  # fio's rate_process
SECTOR = 512
MAX_JOBS = 4096  # fio's FIO_MAX_JOBS (os/os.h): the most jobs one fio run may have
# Linux AIO's default event limit (fs/aio.c aio_max_nr = 0x10000): io_setup(2) refuses a larger
# context with EAGAIN, so fio's libaio engine cannot keep more I/Os in flight per job.
MAX_IODEPTH = 65536

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str | int) -> int:
    """Parse a fio-style size ("512", "4k", "1M", "2GiB") into bytes (fio's base-2 units)."""
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ConfigError(f"cannot read size {text!r} (expected e.g. 512, 4k, 1m)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


@dataclass(frozen=True, kw_only=True)
class Workload:
    """A fio job as the guest runs it; field names are fio's.

    Run length is ``number_ios`` (I/Os counted after warm-up, per job) or ``runtime`` (simulated
    seconds after warm-up), whichever comes first when both are given (as in fio);
    ``ramp_time`` (seconds) is excluded from statistics as in fio. ``iodepth_batch_submit``:
    a job queues its I/Os and submits them in one io_submit when this many are queued, or when
    its queue is full (fio's td_io_queue and the commit before it waits); the guest's blk-mq
    then hands the plugged batch to virtio-blk's queue_rqs, which adds every request and kicks
    once (virtio_queue_rqs, drivers/block/virtio_blk.c).

    Open-loop load and think time, as fio's backend.c and io_u.c do them (inline submission,
    fio's default io_submit_mode): ``rate_iops`` (reads, writes; 0: no limit) schedules each
    direction's k-th I/O at k / rate (``rate_process="linear"``) or at the sum of k exponential
    gaps (``"poisson"``, fio's integer math: ``int(1e6 // iops) * -log(u)`` us, truncated).
    Before an I/O the job checks its schedule (fio's rate_ddir): when behind it issues at once
    (up to iodepth in flight, then it reaps as usual), when ahead it first reaps everything in
    flight (io_u_quiesce), then sleeps what it was ahead (measured before the quiesce), so an
    I/O is never issued early. With rw mixes an ahead direction yields to one that is behind.
    ``thinktime`` (us): once ``thinktime_blocks`` I/Os have completed since the last stall,
    the job reaps everything in flight, spins ``thinktime_spin`` us on its vCPU and sleeps the
    rest (handle_thinktime). ``iodepth_batch_complete_min``: at a full queue the job waits
    until this many I/Os (at most those in flight; 0 counts as 1) have completed before it
    reaps; ``iodepth_batch_complete_max`` caps the I/Os one reap takes (0, the default here:
    every completed one; fio's default reaps one per io_getevents, but a reap costs the model
    no guest CPU, so only the order of reaps and submissions differs).
    """

    rw: str = "randread"
    bs: int = 4096
    iodepth: int = 1
    numjobs: int = 1
    rwmixread: int = 50
    number_ios: int | None = None
    runtime: float | None = None
    ramp_time: float = 0.0
    size: int = 1 << 30
    iodepth_batch_submit: int = 1
    iodepth_batch_complete_min: int = 1
    iodepth_batch_complete_max: int = 0
    rate_iops: tuple[int, int] = (0, 0)
    rate_process: str = "linear"
    thinktime: float = 0.0
    thinktime_spin: float = 0.0
    thinktime_blocks: int = 1

    def __post_init__(self) -> None:
        if self.rw not in RW_MODES:
            raise ConfigError(f"unknown rw {self.rw!r} (choose from {', '.join(RW_MODES)})")
        if self.bs < SECTOR or self.bs % SECTOR:
            raise ConfigError(f"bs must be a positive multiple of {SECTOR} bytes, got {self.bs}")
        if self.iodepth < 1:
            raise ConfigError(f"iodepth must be >= 1, got {self.iodepth}")
        if self.iodepth > MAX_IODEPTH:
            raise ConfigError(
                f"iodepth must be <= {MAX_IODEPTH} (Linux AIO's default aio-max-nr: io_setup "
                f"refuses more), got {self.iodepth}"
            )
        if not 1 <= self.numjobs <= MAX_JOBS:
            raise ConfigError(
                f"numjobs must be within 1..{MAX_JOBS} (fio's limit), got {self.numjobs}"
            )
        if not 0 <= self.rwmixread <= 100:
            raise ConfigError(f"rwmixread must be within 0..100, got {self.rwmixread}")
        if self.number_ios is not None and self.number_ios < 1:
            raise ConfigError(f"number_ios must be >= 1, got {self.number_ios}")
        if self.runtime is not None and not 0 < self.runtime < math.inf:
            raise ConfigError(f"runtime must be a finite number > 0 seconds, got {self.runtime}")
        if not 0 <= self.ramp_time < math.inf:
            raise ConfigError(
                f"ramp_time must be a finite number >= 0 seconds, got {self.ramp_time}"
            )
        if self.size < self.bs or self.size % SECTOR:
            raise ConfigError(f"size must be a multiple of {SECTOR} and >= bs, got {self.size}")
        b = self.iodepth_batch_submit
        if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b <= MAX_IODEPTH:
            raise ConfigError(
                f"iodepth_batch_submit must be within 0..{MAX_IODEPTH} (0: iodepth), got {b!r}"
            )
        for name in ("iodepth_batch_complete_min", "iodepth_batch_complete_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_IODEPTH:
                raise ConfigError(f"{name} must be within 0..{MAX_IODEPTH}, got {v!r}")
        r = self.rate_iops
        if (
            not isinstance(r, tuple)
            or len(r) != 2
            or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in r)
        ):
            raise ConfigError(
                f"rate_iops must be (reads, writes) per second, whole numbers >= 0, got {r!r}"
            )
        if self.rate_process not in RATE_PROCESSES:
            raise ConfigError(
                f"unknown rate_process {self.rate_process!r} "
                f"(choose from {', '.join(RATE_PROCESSES)})"
            )
        for name in ("thinktime", "thinktime_spin"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < math.inf:
                raise ConfigError(f"{name} must be a finite number >= 0 us, got {v!r}")
        if self.thinktime_spin > self.thinktime:
            raise ConfigError(
                f"thinktime_spin ({self.thinktime_spin:g} us) exceeds thinktime "
                f"({self.thinktime:g} us): the spin is part of the think time"
            )
        tb = self.thinktime_blocks
        if isinstance(tb, bool) or not isinstance(tb, int) or tb < 1:
            raise ConfigError(f"thinktime_blocks must be >= 1, got {tb!r}")

    @property
    def submit_batch(self) -> int:
        """I/Os per io_submit (fio's iodepth_batch_submit; 0 means iodepth, and a batch never
        exceeds iodepth): the guest driver adds them all, then notifies the device once."""
        return min(self.iodepth_batch_submit or self.iodepth, self.iodepth)

    @property
    def rated(self) -> bool:
        """True when a rate_iops limit applies to a direction this job issues."""
        f = self.read_fraction
        return (f > 0 and self.rate_iops[0] > 0) or (f < 1 and self.rate_iops[1] > 0)

    @property
    def gated(self) -> bool:
        """True when the job may hold an I/O back (rate_iops or thinktime)."""
        return self.rated or self.thinktime > 0

    @property
    def random(self) -> bool:
        """True for random offsets (randread, randwrite, randrw)."""
        return self.rw.startswith("rand")

    @property
    def read_fraction(self) -> float:
        """The probability that an I/O is a read."""
        if self.rw in ("read", "randread"):
            return 1.0
        if self.rw in ("write", "randwrite"):
            return 0.0
        return self.rwmixread / 100.0

    @property
    def directions(self) -> tuple[str, ...]:
        """The data directions this job issues, in fio's order."""
        f = self.read_fraction
        return tuple(d for d, on in (("read", f > 0), ("write", f < 1)) if on)


Context = Literal["user", "kernel"]
Signal = Literal["per-completion", "batched"]
Role = Literal["both", "submit", "complete", "poll", "sqpoll"]
Engine = Literal["native", "io_uring"]
ENGINES = ("native", "io_uring")  # the host engines the model prices (vsim.models.syscalls)
ROLES: tuple[Role, ...] = ("both", "submit", "complete", "poll", "sqpoll")
SPINNING_ROLES: tuple[Role, ...] = ("poll", "sqpoll")  # threads that never block
# What a thread of each role is called in results (a role held by several threads is numbered).
_ROLE_NAMES = {
    "both": "iothread",
    "submit": "submitter",
    "complete": "completer",
    "poll": "poller",
    "sqpoll": "sqpoll",
}
MAX_QUEUES = 65535  # the virtio-pci common configuration's num_queues is a 16-bit field
MAX_BACKEND_THREADS = 1024  # a bound on the model's size, far beyond any real device's threads
MAX_VCPUS = 1024  # KVM_MAX_VCPUS on x86 (arch/x86/include/asm/kvm_host.h, Linux 5.15+)


@dataclass(frozen=True, kw_only=True)
class Design:
    """A host backend as structure + policy.

    roles: one entry per host thread, what it does: "both" waits on the kicks of its queues and
      on its completions (QEMU's IOThread); "submit" pops the available ring and submits (kick);
      "complete" reaps, pushes used entries and signals (AIO completion); "poll" does both
      without ever waiting: it spins on its rings and completions, and never re-enables kicks
      (a poll-mode vhost-user-blk backend); "sqpoll" is io_uring's kernel SQ thread
      (IORING_SETUP_SQPOLL): it spins on the SQ ring of a completing thread's io_uring and
      submits what the thread queued there, which then needs no io_uring_enter. The i-th
      "sqpoll" thread serves the ring of the i-th thread that reaps (see `completers`); with
      any, every ring has one.
    queues: virtqueues of the device (the guest uses at most one per vCPU, as Linux does).
    mapping: per queue, the threads serving it (indices into roles): one "both" or "poll"
      thread, or a "submit" and a "complete" thread; None spreads the queues round-robin over
      the threads that submit, each "submit" thread paired with the "complete" thread of the
      same rank (as QEMU's iothread-vq-mapping does with a list of IOThreads).
    context: "user" (a QEMU thread: operations are syscalls) or "kernel" (vhost: in-kernel calls).
    engine: the host's I/O engine for a "user" design: "native" (Linux AIO: io_submit,
      io_getevents) or "io_uring" (io_uring_enter submits, completions read off the CQ ring;
      QEMU's aio=io_uring); priced by the profile's costs of each (vsim.models.syscalls).
    signal: "per-completion" (one notification per used entry) or "batched" (one per reaped batch).
    submit_batch: one io_submit call for all popped requests (True) or one call per request (False).
    submit_max: with submit_batch, submit at once when this many are popped (0: no cap);
      QEMU's linux-aio submits early at aio-max-batch, default 32 (DEFAULT_MAX_BATCH in
      block/linux-aio.c, laio_do_submit).
    poll_us: busy-poll this long before blocking (a fixed poll time, in microseconds).
    poll_max_us: adaptive polling as QEMU's AioContext does it, with this ceiling (poll-max-ns
      / 1000): the poll time starts at 0, becomes 4 us and doubles while an event arrives within
      the ceiling, and drops to 0 when one takes longer (util/aio-posix.c adjust_polling_time).
    cpus: host CPU of each backend thread, or None to let the scheduler place it.
    """

    name: str
    roles: tuple[Role, ...] = ("both",)
    queues: int = 1
    mapping: tuple[tuple[int, ...], ...] | None = None
    context: Context = "user"
    engine: Engine = "native"
    signal: Signal = "per-completion"
    submit_batch: bool = False
    submit_max: int = 0
    poll_us: float = 0.0
    poll_max_us: float = 0.0
    cpus: tuple[int | None, ...] | None = None

    def __post_init__(self) -> None:
        where = f"design {self.name!r}"
        if not isinstance(self.roles, tuple) or not 1 <= len(self.roles) <= MAX_BACKEND_THREADS:
            raise ConfigError(
                f"{where}: roles must be 1..{MAX_BACKEND_THREADS} thread roles, got {self.roles!r}"
            )
        for r in self.roles:
            if r not in ROLES:
                raise ConfigError(f"{where}: unknown role {r!r} (choose from {', '.join(ROLES)})")
        if (
            isinstance(self.queues, bool)
            or not isinstance(self.queues, int)
            or not (1 <= self.queues <= MAX_QUEUES)
        ):
            raise ConfigError(f"{where}: queues must be within 1..{MAX_QUEUES}, got {self.queues}")
        if self.context not in ("user", "kernel"):
            raise ConfigError(f"{where}: context must be user or kernel")
        if self.engine not in ENGINES:
            raise ConfigError(
                f"{where}: unknown engine {self.engine!r} (choose from {', '.join(ENGINES)})"
            )
        if self.engine != "native" and self.context != "user":
            raise ConfigError(f"{where}: engine {self.engine} needs context user (a host thread)")
        if self.signal not in ("per-completion", "batched"):
            raise ConfigError(f"{where}: signal must be per-completion or batched")
        m = self.submit_max
        if isinstance(m, bool) or not isinstance(m, int) or not 0 <= m <= MAX_IODEPTH:
            raise ConfigError(f"{where}: submit_max must be within 0..{MAX_IODEPTH}, got {m!r}")
        for key in ("poll_us", "poll_max_us"):
            v = getattr(self, key)
            if not 0 <= v < math.inf:
                raise ConfigError(f"{key} must be a finite number >= 0, got {v} ({where})")
        if self.poll_us and self.poll_max_us:
            raise ConfigError(f"{where}: give poll_us (fixed) or poll_max_us (adaptive), not both")
        if self.cpus is not None and len(self.cpus) != self.threads:
            raise ConfigError(f"{where}: cpus needs one entry per thread ({self.threads})")
        served = self.served()
        for k, role in enumerate(self.roles):
            if role != "sqpoll" and not any(k in q for q in served):
                raise ConfigError(f"{where}: thread {k} ({role}) serves no queue")
        sq = self.roles.count("sqpoll")
        if sq and self.engine != "io_uring":
            raise ConfigError(f"{where}: an sqpoll thread needs engine io_uring")
        if sq and sq != len(self.completers):
            raise ConfigError(
                f"{where}: {sq} sqpoll thread(s) for {len(self.completers)} io_uring ring(s) "
                "(one per thread that reaps)"
            )

    @property
    def threads(self) -> int:
        """The number of host threads."""
        return len(self.roles)

    @property
    def thread_names(self) -> tuple[str, ...]:
        """Names of the backend threads, as they appear in results: iothread, submitter,
        completer, poller, numbered from 0 when a role has several threads."""
        bases = [_ROLE_NAMES[r] for r in self.roles]
        return tuple(
            f"{b}{bases[:k].count(b)}" if bases.count(b) > 1 else b for k, b in enumerate(bases)
        )

    @property
    def completers(self) -> tuple[int, ...]:
        """The threads that reap completions, in thread order (each has its own AIO context,
        numbered in this order: aio0, aio1, ...)."""
        return tuple(sorted({c for _, c in self.served()}))

    @property
    def sq_threads(self) -> dict[int, int]:
        """Per thread that reaps (its io_uring's owner), the sqpoll thread serving its SQ
        ring, paired by rank; empty without SQPOLL."""
        sq = [k for k, r in enumerate(self.roles) if r == "sqpoll"]
        return dict(zip(self.completers, sq, strict=False)) if sq else {}

    @property
    def pricing(self) -> str:
        """The key of the costs the design's host threads pay (vsim.models.syscalls.ENGINE_OPS):
        its engine, or io_uring-sqpoll with sqpoll threads."""
        return "io_uring-sqpoll" if "sqpoll" in self.roles else self.engine

    def served(self) -> tuple[tuple[int, int], ...]:
        """Per queue, (the thread that pops and submits, the thread that reaps and signals)."""
        where = f"design {self.name!r}"
        roles = self.roles
        submitters = [k for k, r in enumerate(roles) if r not in ("complete", "sqpoll")]
        completers = [k for k, r in enumerate(roles) if r == "complete"]
        if not submitters:
            raise ConfigError(f"{where}: no thread pops the available ring (roles {roles})")
        if self.mapping is None:
            pairs = []
            for q in range(self.queues):
                s = submitters[q % len(submitters)]
                if roles[s] != "submit":
                    pairs.append((s, s))
                    continue
                rank = [k for k in submitters if roles[k] == "submit"].index(s)
                if rank >= len(completers):
                    raise ConfigError(f"{where}: submitter {s} has no completer to pair with")
                pairs.append((s, completers[rank]))
            return tuple(pairs)
        if len(self.mapping) != self.queues:
            raise ConfigError(
                f"{where}: mapping needs one entry per queue ({self.queues}), got "
                f"{len(self.mapping)}"
            )
        out = []
        for q, ts in enumerate(self.mapping):
            if any(not isinstance(k, int) or not 0 <= k < len(roles) for k in ts):
                raise ConfigError(f"{where}: mapping of queue {q} names no such thread: {ts}")
            kinds = sorted(roles[k] for k in ts)
            if len(ts) == 1 and kinds[0] in ("both", "poll"):
                out.append((ts[0], ts[0]))
            elif kinds == ["complete", "submit"]:
                s, c = sorted(ts, key=lambda k: roles[k] != "submit")
                out.append((s, c))
            else:
                raise ConfigError(
                    f"{where}: queue {q} needs one both/poll thread or a submit and a complete "
                    f"thread, got roles {[roles[k] for k in ts]}"
                )
        return tuple(out)


# QEMU's defaults: linux-aio submits early at 32 queued requests (DEFAULT_MAX_BATCH,
# block/linux-aio.c); an IOThread polls adaptively up to 32768 ns (IOTHREAD_POLL_MAX_NS_DEFAULT,
# iothread.c).
LAIO_MAX_BATCH = 32
IOTHREAD_POLL_MAX_US = 32.768
# QEMU's io_uring submits at defer_call_end, or at once when its queue holds MAX_ENTRIES (the
# ring size, 128: block/io_uring.c, luring_do_submit).
LURING_MAX_ENTRIES = 128


def _round_robin(n: int, m: int) -> tuple[tuple[int, ...], ...]:
    return tuple((q % m,) for q in range(n))


# The QEMU presets' common base: today's IOThread (virtio-blk-batched, below).
_QEMU_IOTHREAD = Design(
    name="virtio-blk-batched",
    context="user",
    signal="batched",
    submit_batch=True,
    submit_max=LAIO_MAX_BATCH,
)

DESIGNS: dict[str, Design] = {
    # The seed's one-thread QEMU virtio-blk (aio=native): one userspace I/O thread, one io_submit
    # per request (QEMU 0.15 had no io_plug batching), one irqfd signal per completion.
    "virtio-blk": Design(name="virtio-blk", context="user", signal="per-completion"),
    # The seed's vhost-blk: two in-kernel threads, completions signalled once per reaped batch.
    "vhost-blk": Design(
        name="vhost-blk", roles=("submit", "complete"), context="kernel", signal="batched"
    ),
    # Today's QEMU IOThread without polling (poll-max-ns=0): the requests one handler run pops
    # are submitted in one io_submit (blk_io_plug/unplug, now defer_call_begin/end) and the
    # completions of one batch are notified once (defer_call around virtio_notify_irqfd, 8.2+).
    "virtio-blk-batched": _QEMU_IOTHREAD,
    # The same with the IOThread's default adaptive polling: poll-max-ns 32768 on x86
    # (IOTHREAD_POLL_MAX_NS_DEFAULT, iothread.c).
    "qemu-iothread": replace(
        _QEMU_IOTHREAD, name="qemu-iothread", poll_max_us=IOTHREAD_POLL_MAX_US
    ),
    # The same on aio=io_uring: one io_uring_enter per drained batch (up to 128 SQEs), and the
    # completions read off the CQ ring without a system call (block/io_uring.c).
    "qemu-iothread-uring": replace(
        _QEMU_IOTHREAD,
        name="qemu-iothread-uring",
        engine="io_uring",
        submit_max=LURING_MAX_ENTRIES,
        poll_max_us=IOTHREAD_POLL_MAX_US,
    ),
    # The same IOThread on an io_uring set up with SQPOLL (fio's sqthread_poll): a kernel SQ
    # thread spins on the SQ ring and submits (io_uring/sqpoll.c io_sq_thread), so the IOThread
    # queues SQEs without io_uring_enter. QEMU itself does not ask for it (block/io_uring.c
    # luring_init: io_uring_queue_init(MAX_ENTRIES, ring, 0)): this is what it would buy.
    "iothread-uring-sqpoll": replace(
        _QEMU_IOTHREAD,
        name="iothread-uring-sqpoll",
        roles=("both", "sqpoll"),
        engine="io_uring",
        submit_max=LURING_MAX_ENTRIES,
        poll_max_us=IOTHREAD_POLL_MAX_US,
    ),
    # QEMU 9.0's iothread-vq-mapping: 4 virtqueues round-robin over 2 IOThreads, each as above.
    "iothread-vq-mapping": replace(
        _QEMU_IOTHREAD,
        name="iothread-vq-mapping",
        roles=("both", "both"),
        queues=4,
        mapping=_round_robin(4, 2),
        poll_max_us=IOTHREAD_POLL_MAX_US,
    ),
    # vhost-blk with one kernel worker per virtqueue (the 2022 revival on the 2023 multi-worker
    # vhost: VHOST_NEW_WORKER / VHOST_ATTACH_VRING_WORKER), 4 queues.
    "vhost-blk-mq": Design(
        name="vhost-blk-mq", roles=("both",) * 4, queues=4, context="kernel", signal="batched"
    ),
    # A poll-mode vhost-user-blk backend (SPDK-style): one user-space thread spins on the ring
    # and on its completions, never re-enables kicks, and signals by an eventfd write.
    "vhost-user-blk": Design(
        name="vhost-user-blk", roles=("poll",), context="user", signal="batched"
    ),
}


def design(name: str, **overrides: object) -> Design:
    """A preset design by name, with fields replaced: ``design("virtio-blk", poll_us=32)``."""
    try:
        base = DESIGNS[name]
    except KeyError:
        raise ConfigError(f"unknown design {name!r} (choose from {', '.join(DESIGNS)})") from None
    return replace(base, **overrides) if overrides else base  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One simulated configuration: a workload on a design with a profile (by name or path).

    guest_cpus: host CPU of each guest vCPU thread, or None to let the scheduler place them.
    guest_vcpus: the guest's vCPUs, or None for the profile's. The guest's fio jobs run on them
      in turn (job i on vCPU i mod guest_vcpus) and, as Linux's virtio-blk driver and blk-mq
      map hardware queues, it uses min(queues, guest_vcpus) virtqueues, contiguous groups of
      vCPUs on each and the first vCPU of a group taking its queue's interrupts
      (vsim.models.queue).
    """

    workload: Workload = field(default_factory=Workload)
    design: Design = field(default_factory=lambda: DESIGNS["virtio-blk"])
    profile: str = "seed-2011"
    guest_cpus: tuple[int | None, ...] | None = None
    guest_vcpus: int | None = None

    def __post_init__(self) -> None:
        v = self.guest_vcpus
        bad = isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_VCPUS
        if v is not None and bad:
            raise ConfigError(f"guest_vcpus must be within 1..{MAX_VCPUS}, got {v!r}")
