"""Property tests of the split virtqueue: need_event, wrap-around, full ring, notification model."""

from __future__ import annotations

import mmap
import multiprocessing
import os
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from vsim.reference.ring import (
    VIRTQ_DESC_F_NEXT,
    Buffer,
    Device,
    Driver,
    RingError,
    RingFull,
    RingLayout,
    vring_need_event,
)

u16 = st.integers(0, 0xFFFF)
START = st.one_of(st.sampled_from([0, 1, 0xFFFF, 0xFFFE, 0xFFF0]), u16)


def make_ring(num: int, start: int, event_idx: bool = True) -> tuple[Driver[int], Device]:
    layout = RingLayout(num)
    buf = bytearray(layout.size)
    layout.clear(buf, start)
    drv: Driver[int] = Driver(buf, layout, event_idx=event_idx, start_idx=start)
    dev = Device(buf, layout, event_idx=event_idx, start_idx=start)
    return drv, dev


def chain(k: int, n_out: int, base: int = 0x1000) -> list[Buffer]:
    return [Buffer(base + 0x100 * i, 16 + i, i >= n_out) for i in range(k)]


@given(u16, u16, u16)
def test_need_event_is_crossing_of_the_event_index(event: int, new: int, old: int) -> None:
    # The spec's test: does event lie in the half-open window [old, new) of 16-bit indices?
    crossed = (event - old) % 65536 < (new - old) % 65536
    assert vring_need_event(event, new, old) == crossed


@given(u16, st.integers(1, 100))
def test_need_event_fires_once_per_crossing(old: int, steps: int) -> None:
    event = (old + steps // 2) % 65536
    fired = [
        vring_need_event(event, (old + i + 1) % 65536, (old + i) % 65536) for i in range(steps)
    ]
    assert sum(fired) == 1


def test_need_event_known_values() -> None:
    assert vring_need_event(0, 1, 0)
    assert not vring_need_event(1, 1, 0)
    assert vring_need_event(0xFFFF, 0, 0xFFFF)  # wrap-around
    assert not vring_need_event(5, 5, 5)  # nothing new


def test_layout_matches_the_virtio_split_ring() -> None:
    lay = RingLayout(128)
    assert lay.desc == 0
    assert lay.avail == 16 * 128
    assert lay.used == 4096  # legacy alignment: avail ring (2310 B end) rounded up to a page
    assert lay.size == 4096 + 6 + 8 * 128
    with pytest.raises(ValueError):
        RingLayout(100)


@given(START, st.integers(1, 400), st.sampled_from([1, 2, 4, 8]))
@settings(max_examples=60, deadline=None)
def test_fifo_through_wraparound(start: int, rounds: int, num: int) -> None:
    drv, dev = make_ring(num, start)
    for i in range(rounds):
        head = drv.add([Buffer(i, 1, False)], i)
        drv.kick_prepare()
        got = dev.pop_avail()
        assert got is not None and got.head == head
        assert got.descriptors[0].addr == i
        dev.push_used([(got.head, 7)])
        assert drv.get_used() == (i, 7)
        assert drv.get_used() is None
    assert drv.last_used_idx == (start + rounds) % 65536
    assert dev.last_avail_idx == (start + rounds) % 65536


@given(START, st.sampled_from([2, 4, 8, 16]), st.integers(1, 3))
@settings(max_examples=40, deadline=None)
def test_full_ring(start: int, num: int, k: int) -> None:
    drv, dev = make_ring(num, start)
    tokens = []
    while drv.num_free >= k:
        tokens.append(drv.add(chain(k, 1), len(tokens)))
    with pytest.raises(RingFull):
        drv.add(chain(k, 1), -1)
    assert len(tokens) == num // k
    drv.kick_prepare()
    popped = []
    while (c := dev.pop_avail()) is not None:
        assert len(c.descriptors) == k
        popped.append(c.head)
    assert popped == tokens
    dev.push_used([(h, 0) for h in reversed(popped)])  # out of order completion
    got = []
    while (u := drv.get_used()) is not None:
        got.append(u[0])
    assert got == list(range(len(tokens)))[::-1]
    assert drv.num_free == num


def test_readable_buffers_must_come_first() -> None:
    drv, _ = make_ring(8, 0)
    with pytest.raises(ValueError):
        drv.add([Buffer(0, 1, True), Buffer(0, 1, False)], 0)


def test_device_rejects_a_descriptor_loop() -> None:
    drv, dev = make_ring(4, 0)
    head = drv.add(chain(2, 1), 0)
    drv.kick_prepare()
    # Corrupt the chain: the second descriptor points back at the head with NEXT set.
    second = drv._next[head]
    import struct

    struct.pack_into("<QIHH", dev.buf, 16 * second, 0, 1, VIRTQ_DESC_F_NEXT, head)
    with pytest.raises(RingError):
        dev.pop_avail()


def test_driver_rejects_an_unknown_used_id() -> None:
    drv, dev = make_ring(4, 0)
    dev.push_used([(3, 0)])
    with pytest.raises(RingError):
        drv.get_used()


def test_flag_mode_without_event_idx() -> None:
    drv, dev = make_ring(8, 0, event_idx=False)
    drv.add(chain(1, 1), 0)
    assert drv.kick_prepare()  # no NO_NOTIFY flag yet
    dev.disable_notify()
    drv.add(chain(1, 1), 1)
    assert not drv.kick_prepare()
    assert not dev.enable_notify()  # two entries waiting
    drv.disable_cb()
    dev.push_used([(0, 0)])
    assert not dev.should_notify()
    assert not drv.enable_cb()  # an entry is pending: do not sleep
    assert dev.should_notify()


class VirtqueueModel(RuleBasedStateMachine):
    """Driver and device operations in any order, against a model with unbounded indices.

    The model knows the event index each side last wrote (as an absolute count), so it predicts
    exactly when a kick or an interrupt is due; it also checks FIFO order, chain contents, free
    descriptor accounting and the absence of lost wake-ups.
    """

    @initialize(start=START, num=st.sampled_from([1, 2, 4, 8, 16]))
    def setup(self, start: int, num: int) -> None:
        self.num = num
        self.drv, self.dev = make_ring(num, start)
        self.start = start
        self.added = 0  # absolute count of chains added (driver shadow index)
        self.published = 0  # absolute avail idx published
        self.popped = 0
        self.pushed = 0  # absolute used idx
        self.reaped = 0
        self.signalled_check = 0  # used idx at the last should_notify
        self.checked_once = False
        self.avail_event = 0  # absolute index the device asked to be kicked at (fresh ring: 0)
        self.used_event = 0
        self.cb_enabled = True
        self.in_ring: deque[tuple[int, list[Buffer]]] = deque()  # added, not yet popped
        self.at_device: dict[int, tuple[int, list[Buffer]]] = {}  # head -> (token, chain)
        self.used_q: deque[tuple[int, int]] = deque()  # (token, len) pushed, not yet reaped
        self.heads: dict[int, int] = {}  # token -> head
        self.free = num
        self.lens: dict[int, int] = {}  # token -> chain length
        self.device_sleeping = False  # device enabled notifications and found nothing
        self.driver_sleeping = False
        self.pushed_at_sleep = 0

    @precondition(lambda self: self.free >= 1)
    @rule(k=st.integers(1, 3), n_out=st.integers(0, 3), data=st.data())
    def add(self, k: int, n_out: int, data: st.DataObject) -> None:
        k = min(k, self.free)
        bufs = chain(k, min(n_out, k), base=data.draw(st.integers(0, 1 << 40)))
        token = self.added
        self.heads[token] = self.drv.add(bufs, token)
        self.in_ring.append((token, bufs))
        self.lens[token] = k
        self.added += 1
        self.free -= k

    @rule()
    def kick_prepare(self) -> None:
        old, new = self.published, self.added
        kick = self.drv.kick_prepare()
        expected = old <= self.avail_event < new
        assert kick == expected
        if new > old and self.device_sleeping:
            assert kick, "lost kick: the device sleeps and new requests were published"
        if kick:
            self.device_sleeping = False
        self.published = new

    @rule()
    def pop(self) -> None:
        c = self.dev.pop_avail()
        if self.popped == self.published:
            assert c is None
            return
        assert c is not None
        token, bufs = self.in_ring.popleft()
        assert c.head == self.heads[token]
        assert [(d.addr, d.length, d.writable) for d in c.descriptors] == [tuple(b) for b in bufs]
        self.at_device[c.head] = (token, bufs)
        self.popped += 1
        self.device_sleeping = False  # it is popping: awake

    @rule()
    def disable_notify(self) -> None:
        self.dev.disable_notify()
        self.avail_event = self.popped - 1  # just behind the driver: never crossed
        self.device_sleeping = False

    @rule()
    def enable_notify(self) -> None:
        empty = self.dev.enable_notify()
        self.avail_event = self.popped
        assert empty == (self.popped == self.published)
        self.device_sleeping = empty

    @precondition(lambda self: bool(self.at_device))
    @rule(data=st.data(), n=st.integers(1, 4))
    def push(self, data: st.DataObject, n: int) -> None:
        heads = sorted(self.at_device)
        chosen = data.draw(st.permutations(heads))[:n]
        entries = []
        for head in chosen:
            token, bufs = self.at_device.pop(head)
            length = sum(b.length for b in bufs if b.writable)
            entries.append((head, length))
            self.used_q.append((token, length))
        self.dev.push_used(entries)
        self.pushed += len(entries)

    @rule()
    def should_notify(self) -> None:
        old, new = self.signalled_check, self.pushed
        notify = self.dev.should_notify()
        expected = (not self.checked_once) or old <= self.used_event < new
        assert notify == expected
        if self.driver_sleeping and new > self.pushed_at_sleep:
            assert notify, "lost interrupt: the driver sleeps and entries were pushed"
        if notify:
            self.driver_sleeping = False
        self.checked_once = True
        self.signalled_check = new

    @rule()
    def get_used(self) -> None:
        got = self.drv.get_used()
        if not self.used_q:
            assert got is None
            return
        token, length = self.used_q.popleft()
        assert got == (token, length)
        self.reaped += 1
        self.driver_sleeping = False  # it is reaping: awake
        self.free += self.lens.pop(token)
        if self.cb_enabled:
            self.used_event = self.reaped

    @rule()
    def disable_cb(self) -> None:
        self.drv.disable_cb()
        self.cb_enabled = False
        self.driver_sleeping = False

    @rule()
    def enable_cb(self) -> None:
        empty = self.drv.enable_cb()
        self.cb_enabled = True
        self.used_event = self.reaped
        assert empty == (not self.used_q)
        self.driver_sleeping = empty
        self.pushed_at_sleep = self.pushed

    @invariant()
    def accounting(self) -> None:
        if not hasattr(self, "drv"):
            return
        assert self.drv.num_free == self.free
        assert self.dev.last_avail_idx == (self.start + self.popped) % 65536
        assert self.dev.used_idx == (self.start + self.pushed) % 65536
        assert self.drv.last_used_idx == (self.start + self.reaped) % 65536


VirtqueueModel.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestVirtqueueModel = VirtqueueModel.TestCase


@given(st.integers(0, 0xFFFF), st.lists(st.integers(1, 3), min_size=1, max_size=300))
@settings(max_examples=30, deadline=None)
def test_suppression_counts_one_kick_per_sleep(start: int, bursts: list[int]) -> None:
    """A device that drains and re-enables gets exactly one kick per burst, whatever the index."""
    drv, dev = make_ring(8, start)
    kicks = 0
    for burst in bursts:
        for i in range(burst):
            drv.add([Buffer(i, 1, False)], i)
            kicks += drv.kick_prepare()
        while (c := dev.pop_avail()) is not None:
            dev.push_used([(c.head, 0)])
        assert dev.enable_notify()
        while drv.get_used() is not None:
            pass
    assert kicks == len(bursts)


def _driver_process(mm: mmap.mmap, num: int, total: int) -> None:
    """Child: add, publish and reap ``total`` chains as fast as possible (busy polling)."""
    drv: Driver[int] = Driver(mm, RingLayout(num))
    added = reaped = 0
    while reaped < total:
        while added < total and drv.num_free >= 1:
            drv.add([Buffer(added, 1, False)], added)
            added += 1
            drv.kick_prepare()
        while (u := drv.get_used()) is not None:
            if u[0] != reaped:
                os._exit(3)  # out of order
            reaped += 1
    os._exit(0)


def test_indices_are_never_torn_across_processes() -> None:
    """A device and a driver in two processes hammer the shared indices; nothing tears.

    (Packing an index with ``struct`` zeroes it before writing it byte by byte: the device then
    read an index of 0 about once in 5000 requests.)
    """
    num, total = 8, 30000
    layout = RingLayout(num)
    mm = mmap.mmap(-1, layout.size, flags=mmap.MAP_SHARED)
    layout.clear(mm)
    dev = Device(mm, layout)
    child = multiprocessing.get_context("fork").Process(
        target=_driver_process, args=(mm, num, total)
    )
    child.start()
    try:
        popped = 0
        while popped < total and child.exitcode is None:
            while (c := dev.pop_avail()) is not None:  # raises RingError on a torn index
                assert c.descriptors[0].addr == popped
                dev.push_used([(c.head, 0)])
                popped += 1
            if popped % 1000 == 0:
                child.join(0)
        child.join(10)
        assert popped == total and child.exitcode == 0
    finally:
        if child.exitcode is None:
            child.kill()
            child.join()
        child.close()
        dev.release()
        mm.close()
