"""The cost table: named operations priced by the profile, each drawn from its own stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from vsim.models.dists import Sampler, sampler

if TYPE_CHECKING:  # the profile reads the operation names from here
    from vsim.profile import Profile

__all__ = [
    "COST_DOCS",
    "ENGINE_OPS",
    "GUEST_OPS",
    "HOST_OPS",
    "OPTIONAL_HOST_OPS",
    "OPTIONAL_OPS",
    "SQ_OPS",
    "Costs",
    "RngFor",
    "engine_op",
]

RngFor = Callable[[str], np.random.Generator]

# Operation costs (CPU time, microseconds) the engine charges. Host operations may have separate
# "user" (a QEMU thread: syscalls) and "kernel" (vhost: in-kernel calls) variants.
GUEST_OPS = ("guest_submit", "kick", "guest_irq", "guest_complete")
# Optional costs: absent means zero (profiles from before they existed keep their meaning).
OPTIONAL_OPS = ("guest_loop",)
# Optional host costs, with user and kernel variants like HOST_OPS.
OPTIONAL_HOST_OPS = ("pop_cold", "submit_cold")
HOST_OPS = (
    "wait_return",
    "notify_read",
    "pop",
    "submit_call",
    "submit_iocb",
    "reap_call",
    "reap_event",
    "push",
    "signal",
)
# The operations each host engine (vsim.scenario.ENGINES) prices by its own cost: io_uring's
# io_uring_enter and SQEs replace io_submit and its iocbs, and its completions are read off the
# CQ ring in user space (QEMU's block/io_uring.c, luring_process_completions: io_uring_peek_cqe,
# no system call) instead of by io_getevents. Linux AIO ("native") prices the HOST_OPS as
# named. These costs are optional in a profile: an io_uring design on a profile without them
# is refused.
#
# With SQPOLL ("io_uring-sqpoll", Design.pricing) the submitting thread only writes SQEs and
# moves the SQ tail (no system call: submit_call and submit_iocb price that), and the ring's
# kernel SQ thread pays the submission itself (SQ_OPS: per batch it finds and per SQE).
_URING = {
    "submit_call": "uring_submit_call",
    "submit_iocb": "uring_submit_sqe",
    "reap_call": "uring_reap_call",
    "reap_event": "uring_reap_event",
}
SQ_OPS = ("sq_call", "sq_sqe")
ENGINE_OPS: dict[str, dict[str, str]] = {
    "native": {},
    "io_uring": _URING,
    "io_uring-sqpoll": {
        **_URING,
        "submit_call": "uring_sqpoll_call",
        "submit_iocb": "uring_sqpoll_sqe",
        "sq_call": "uring_sq_call",
        "sq_sqe": "uring_sq_sqe",
    },
}
COST_DOCS = {
    "guest_submit": "guest io_submit path and virtio-blk driver, per I/O (without the kick)",
    "kick": "VM exit to notify the device through ioeventfd, per kick, on the vCPU",
    "guest_irq": "guest interrupt entry, handler and exit, per interrupt",
    "guest_complete": "guest completion of one used entry and fio reaping it, per I/O",
    "guest_loop": "optional: fio's own loop between reaping an I/O and starting the next one"
    " (off the latency clock: it lowers IOPS, not lat), per I/O",
    "wait_return": "return from the wait primitive (epoll/ppoll or the kernel's schedule)",
    "notify_read": "consuming an eventfd notification (read syscall or in-kernel)",
    "pop": "popping one request from the available ring (descriptors and header)",
    "submit_call": "one io_submit call (syscall entry/exit or in-kernel call)",
    "submit_iocb": "one iocb inside io_submit (AIO setup, block layer, driver)",
    "pop_cold": "optional: what the first pop after its thread woke on an idle CPU costs beyond"
    " a warm one (caches, TLB and predictors refilled after the CPU's idle state)",
    "submit_cold": "optional: what the first io_submit after its thread woke on an idle CPU costs"
    " beyond a warm one (as pop_cold)",
    "reap_call": "one io_getevents call",
    "reap_event": "one completion event reaped",
    "push": "pushing one entry to the used ring",
    "signal": "one guest notification through irqfd (write syscall or eventfd_signal)",
    "uring_submit_call": "io_uring only: one io_uring_enter submitting SQEs (as submit_call)",
    "uring_submit_sqe": "io_uring only: one SQE inside io_uring_enter (as submit_iocb)",
    "uring_reap_call": "io_uring only: one look at the CQ ring (no system call; as reap_call)",
    "uring_reap_event": "io_uring only: one CQE read off the CQ ring (as reap_event)",
    "uring_sqpoll_call": "io_uring SQPOLL only: queueing a batch on the SQ ring (tail store,"
    " barrier, wake-up flag check; no system call), per batch",
    "uring_sqpoll_sqe": "io_uring SQPOLL only: writing one SQE, per request",
    "uring_sq_call": "io_uring SQPOLL only: the kernel SQ thread taking a batch off the SQ ring",
    "uring_sq_sqe": "io_uring SQPOLL only: the kernel SQ thread submitting one SQE",
}


def engine_op(op: str, engine: str) -> str:
    """The cost key that prices host operation `op` on `engine` (see ENGINE_OPS)."""
    return ENGINE_OPS[engine].get(op, op)


class Costs:
    """Samplers of every operation cost for one backend context ("user" or "kernel").

    Attributes are named after the operations (see COST_DOCS); each is a callable
    returning microseconds.
    """

    def __init__(
        self, profile: Profile, context: str, rng_for: RngFor, engine: str = "native"
    ) -> None:
        self.context = context
        self.engine = engine
        for op in GUEST_OPS + OPTIONAL_OPS:
            setattr(self, op, sampler(profile.cost(op, "guest"), rng_for(f"cost.{op}")))
        loop = profile.cost("guest_loop", "guest")
        # Whether fio's loop costs anything: without it the reap runs straight into the next
        # submission (one timeout for both).
        self.has_loop = not (loop.kind == "fixed" and loop.mean_us == 0.0)
        for op in HOST_OPS + OPTIONAL_HOST_OPS:
            key = engine_op(op, engine)  # the stream keeps the operation's name
            setattr(self, op, sampler(profile.cost(key, context), rng_for(f"cost.{op}.{context}")))
        for op in SQ_OPS:  # the SQ thread's: only where the engine has one
            if op in ENGINE_OPS[engine]:
                key = engine_op(op, engine)
                setattr(self, op, sampler(profile.cost(key, context), rng_for(f"cost.{op}")))

    guest_submit: Sampler
    kick: Sampler
    guest_irq: Sampler
    guest_complete: Sampler
    guest_loop: Sampler
    wait_return: Sampler
    notify_read: Sampler
    pop: Sampler
    submit_call: Sampler
    submit_iocb: Sampler
    submit_cold: Sampler
    pop_cold: Sampler
    reap_call: Sampler
    reap_event: Sampler
    push: Sampler
    signal: Sampler
    sq_call: Sampler
    sq_sqe: Sampler
