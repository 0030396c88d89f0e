"""One device queue: a virtqueue with its kick, its interrupt, a poller's view and its tags."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vsim.models.cpu import Notifier
from vsim.models.monitor import Level
from vsim.models.virtqueue import Virtqueue

if TYPE_CHECKING:
    from vsim.models.guest import IO, FioJob, Vcpu

__all__ = [
    "DeviceQueue",
    "TagWait",
    "indexed",
]


def indexed(name: str, i: int, n: int) -> str:
    """The name of the i-th of n like things: `name` alone when there is one ("virtqueue"),
    else numbered from 0 ("virtqueue0", "virtqueue1", ...)."""
    return name if n == 1 else f"{name}{i}"


class TagWait:
    """The guest's submissions waiting for a free tag of one queue (blk-mq's tag wait, per
    hardware queue), served in the order they came (a waiting job does not starve behind one
    that keeps barging in)."""

    def __init__(self, level: Level) -> None:
        self.level = level  # I/Os waiting, time-weighted (shared by every queue)
        self.jobs: list[FioJob] = []

    def wait(self, job: FioJob, io: IO, now: float) -> None:
        """`job` is inside io_submit for `io` until a tag frees."""
        job.blocked = io
        self.jobs.append(job)
        self.level.add(1, now)

    def release(self, job: FioJob, now: float) -> None:
        """`job` got its tag."""
        job.blocked = None
        self.jobs.remove(job)
        self.level.add(-1, now)

    def free(self, vq: Virtqueue) -> int:
        """Requests a new submission could place at once (none while others wait)."""
        return 0 if self.jobs else vq.free // vq.descs_per_request

    def wake(self, by: Vcpu) -> None:
        """Tags were freed on vCPU `by`: wake the other vCPUs whose jobs wait for one."""
        for job in self.jobs:
            if job.vcpu is not by and job.vcpu is not None:
                job.vcpu.wake.signal()


class DeviceQueue:
    """A virtqueue and what crosses it: the driver's kick (ioeventfd), the device's interrupt
    (irqfd), the guest's tag wait and, when a thread polls the queue, `ring`: the poller's view
    of the available ring, signalled by every new entry at no cost to the guest (the poller
    sees the index change in shared memory)."""

    __slots__ = ("index", "irq", "kick", "ring", "tags", "vq")

    def __init__(self, index: int, vq: Virtqueue, tags: TagWait, polled: bool) -> None:
        self.index = index
        self.vq = vq
        self.tags = tags
        self.kick = Notifier(f"kick{index}")
        self.irq = Notifier(f"irq{index}")
        self.ring: Notifier | None = Notifier(f"ring{index}") if polled else None
