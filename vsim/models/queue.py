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
    "irq_vcpu",
    "queue_of",
    "used_queues",
]


def indexed(name: str, i: int, n: int) -> str:
    """The name of the i-th of n like things: `name` alone when there is one ("virtqueue"),
    else numbered from 0 ("virtqueue0", "virtqueue1", ...)."""
    return name if n == 1 else f"{name}{i}"


def used_queues(queues: int, vcpus: int) -> int:
    """The virtqueues the guest uses: Linux's virtio-blk asks for min(num_queues, nr_cpu_ids)
    (init_vq in drivers/block/virtio_blk.c)."""
    return min(queues, vcpus)


def queue_of(vcpu: int, vcpus: int, used: int) -> int:
    """The queue vCPU `vcpu` submits to: blk-mq spreads contiguous groups of CPUs evenly over
    the hardware queues (group_cpus_evenly, which the managed MSI-X affinity and, since Linux
    6.2, blk_mq_map_queues use): CPUs 0..V/Q-1 on queue 0, and so on."""
    return vcpu * used // vcpus


def irq_vcpu(queue: int, vcpus: int, used: int) -> int:
    """The vCPU that takes the queue's interrupts: the first of its group (the lowest CPU of
    the vector's affinity mask)."""
    return next(v for v in range(vcpus) if queue_of(v, vcpus, used) == queue)


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
