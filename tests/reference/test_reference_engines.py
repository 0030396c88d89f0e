"""The I/O engines on a stamped scratch file: right bytes at the right offsets, errors, eventfd."""

from __future__ import annotations

import mmap
import os
import select
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vsim.errors import ConfigError, UnavailableError
from vsim.reference import Completion, IoEngine, IoRequest, open_engine
from vsim.reference.linux import BufferAddress, eventfd_drain
from vsim.reference.storage import Target, bad_sectors, create_scratch, stamp

PAGE = mmap.PAGESIZE


@pytest.fixture
def scratch(disk_dir: Path) -> Iterator[Target]:
    target = create_scratch(str(disk_dir), 1 << 20)
    yield target
    target.close()
    assert list(disk_dir.iterdir()) == []


@pytest.fixture
def memory() -> Iterator[tuple[mmap.mmap, int]]:
    buf = mmap.mmap(-1, 16 * PAGE)
    addr = BufferAddress(buf)
    yield buf, addr.address
    addr.release()
    buf.close()


def wait_all(eng: IoEngine, n: int) -> list[Completion]:
    """Wait on the completion eventfd until n completions are reaped."""
    got: list[Completion] = []
    while len(got) < n:
        ready, _, _ = select.select([eng.completion_fd], [], [], 5.0)
        assert ready, "completion eventfd never became readable"
        eventfd_drain(eng.completion_fd)
        got += eng.reap()
    assert not eng.pending()
    return got


@pytest.mark.parametrize("bs", [512, 4096, 8192])
def test_reads_land_at_their_offsets(
    engine: str, scratch: Target, memory: tuple[mmap.mmap, int], bs: int
) -> None:
    buf, base = memory
    offsets = [0, 7 * bs, scratch.region - bs, 3 * bs]
    with open_engine(engine, scratch.fd, 4) as eng:
        reqs = [
            IoRequest(10 + i, False, base + i * 2 * PAGE, bs, off) for i, off in enumerate(offsets)
        ]
        eng.submit(reqs)
        got = wait_all(eng, len(reqs))
    assert sorted(got) == [Completion(10 + i, bs) for i in range(len(reqs))]
    data = np.frombuffer(buf, dtype=np.uint64)
    for i, off in enumerate(offsets):
        start = i * 2 * PAGE // 8
        assert bad_sectors(data[start : start + bs // 8], off, (0,)) == 0
    del data


def test_writes_then_read_back(engine: str, scratch: Target, memory: tuple[mmap.mmap, int]) -> None:
    buf, base = memory
    bs, tag = 4096, 0xABCDEF
    data = np.frombuffer(buf, dtype=np.uint64)
    offsets = [bs * k for k in (5, 1, 9)]
    for i, off in enumerate(offsets):
        data[i * bs // 8 : (i + 1) * bs // 8] = stamp(off, bs, tag)
    with open_engine(engine, scratch.fd, 4) as eng:
        eng.submit([IoRequest(i, True, base + i * bs, bs, off) for i, off in enumerate(offsets)])
        assert sorted(wait_all(eng, 3)) == [Completion(i, bs) for i in range(3)]
        data[:] = 0
        eng.submit([IoRequest(i, False, base + i * bs, bs, off) for i, off in enumerate(offsets)])
        wait_all(eng, 3)
    for i, off in enumerate(offsets):
        assert bad_sectors(data[i * bs // 8 : (i + 1) * bs // 8], off, (tag,)) == 0
    del data


def test_unaligned_io_completes_with_an_error(
    engine: str, scratch: Target, memory: tuple[mmap.mmap, int]
) -> None:
    _, base = memory
    with open_engine(engine, scratch.fd, 2) as eng:
        eng.submit([IoRequest(1, False, base + 1, 4096, 0), IoRequest(2, False, base, 4096, 100)])
        got = dict(wait_all(eng, 2))
    assert got[1] < 0 and got[2] < 0


def test_fail_injects_a_completion(engine: str, scratch: Target) -> None:
    with open_engine(engine, scratch.fd, 2) as eng:
        eng.fail(7, 22)
        assert eng.pending()
        assert wait_all(eng, 1) == [Completion(7, -22)]


def test_submit_and_reap_counters(
    engine: str, scratch: Target, memory: tuple[mmap.mmap, int]
) -> None:
    _, base = memory
    with open_engine(engine, scratch.fd, 4) as eng:
        eng.submit([IoRequest(i, False, base + i * PAGE, 4096, 0) for i in range(4)])
        wait_all(eng, 4)
        assert eng.submit_calls >= 1 and eng.reap_calls >= 1


def test_close_is_idempotent_and_frees_the_eventfd(engine: str, scratch: Target) -> None:
    eng = open_engine(engine, scratch.fd, 2)
    fd = eng.completion_fd
    eng.close()
    eng.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_unknown_engine() -> None:
    with pytest.raises(ConfigError, match="unknown engine"):
        open_engine("spdk", 0, 1)


def test_tmpfs_is_refused() -> None:
    from vsim.reference.linux import memory_filesystem

    if not os.path.isdir("/dev/shm") or memory_filesystem("/dev/shm") != "tmpfs":
        pytest.skip("/dev/shm is not a tmpfs here")
    before = set(os.listdir("/dev/shm"))
    with pytest.raises(UnavailableError, match="tmpfs"):
        create_scratch("/dev/shm", 1 << 20)
    assert set(os.listdir("/dev/shm")) == before


def _sq_threads() -> list[str]:
    """The io_uring SQ threads of this process (the kernel names them iou-sqp-PID)."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # the thread exited meanwhile
            continue
    return [n for n in names if n.startswith("iou-sqp")]


def test_sqpoll_submits_through_a_kernel_thread_without_io_uring_enter(
    scratch: Target, memory: tuple[mmap.mmap, int]
) -> None:
    """IORING_SETUP_SQPOLL: the kernel's SQ thread (a thread of this process) takes the SQEs
    off the ring: reads land with no io_uring_enter but the ones that woke it, and the
    thread is gone when the engine closes."""
    buf, base = memory
    before = _sq_threads()
    with open_engine("io_uring", scratch.fd, 4, sqpoll=True) as eng:
        deadline = time.monotonic() + 5.0  # the thread names itself once it runs
        while len(_sq_threads()) == len(before) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(_sq_threads()) == len(before) + 1
        for rnd in range(3):
            offsets = [4096 * (4 * rnd + k) for k in range(4)]
            eng.submit(
                [IoRequest(k, False, base + k * PAGE, 4096, o) for k, o in enumerate(offsets)]
            )
            assert sorted(wait_all(eng, 4)) == [Completion(k, 4096) for k in range(4)]
            data = np.frombuffer(buf, dtype=np.uint64)
            for k, o in enumerate(offsets):
                start = k * PAGE // 8
                assert bad_sectors(data[start : start + 4096 // 8], o, (0,)) == 0
            del data
        assert eng.submit_calls == eng.wakeups <= 3  # SQ thread asleep: woken by a call
    deadline = time.monotonic() + 5.0  # the kernel reaps it asynchronously (io_uring exit)
    while _sq_threads() != before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _sq_threads() == before
    with pytest.raises(ConfigError, match="sqpoll needs the io_uring engine"):
        open_engine("native", scratch.fd, 4, sqpoll=True)
