"""Safety: read-only files, refused writes, cleanup on every exit path, verify catches bugs."""

from __future__ import annotations

import hashlib
import mmap
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from vsim.errors import ConfigError, UnavailableError, VsimError
from vsim.reference import backend as backend_mod
from vsim.reference import guest as guest_mod
from vsim.reference import run
from vsim.reference import runner as runner_mod
from vsim.reference.engines import open_engine
from vsim.reference.guestmem import (
    OUTHDR,
    VIRTIO_BLK_S_IOERR,
    VIRTIO_BLK_S_OK,
    VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_IN,
    GuestMemory,
    MemoryLayout,
)
from vsim.reference.linux import new_eventfd
from vsim.reference.ring import Buffer, Driver
from vsim.reference.storage import bad_sectors, create_scratch, stamp
from vsim.scenario import Workload, design

READ = Workload(rw="randread", bs=4096, iodepth=2, number_ios=50)
WRITE = Workload(rw="randwrite", bs=4096, iodepth=2, number_ios=50)


def existing_file(directory: Path, size: int = 1 << 20) -> tuple[Path, str, float]:
    path = directory / "precious.img"
    path.write_bytes(os.urandom(size))
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime


@pytest.fixture
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


def test_existing_file_is_read_only(data_dir: Path, leak_check: Path) -> None:
    path, digest, mtime = existing_file(data_dir)
    r = run(READ, "vhost-blk", file=path)
    assert r.total_ios == 50 and r.errors == 0
    assert r.meta["file"] == str(path) and not r.meta["scratch"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert path.stat().st_mtime == mtime


@pytest.mark.parametrize("wl", [WRITE, Workload(rw="randrw", bs=4096, number_ios=10)])
def test_write_job_on_existing_file_is_refused(wl: Workload, data_dir: Path) -> None:
    path, digest, mtime = existing_file(data_dir)
    with pytest.raises(ConfigError, match="allow_overwrite"):
        run(wl, "virtio-blk", file=path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert path.stat().st_mtime == mtime


def test_verify_on_existing_file_needs_allow_overwrite(data_dir: Path) -> None:
    path, digest, _ = existing_file(data_dir)
    with pytest.raises(ConfigError, match="allow_overwrite"):
        run(READ, "virtio-blk", file=path, verify=True)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_allow_overwrite_writes_and_keeps_the_file(data_dir: Path) -> None:
    path, digest, _ = existing_file(data_dir)
    r = run(WRITE, "virtio-blk", file=path, allow_overwrite=True, verify=True)
    assert r.total_ios == 50 and r.counters["verify_bad_written_sectors"] == 0
    assert path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() != digest


def test_block_devices_are_refused_for_writes() -> None:
    with os.scandir("/dev") as entries:
        devs = [e.path for e in entries if stat.S_ISBLK(os.stat(e.path).st_mode)]
    dev = devs[0] if devs else None
    if dev is None:
        pytest.skip("no block device node in /dev")
    with pytest.raises(ConfigError, match="block device"):
        run(WRITE, "virtio-blk", file=dev, allow_overwrite=True)


def test_missing_file_and_bad_config(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="cannot use"):
        run(READ, "virtio-blk", file=data_dir / "nope")
    with pytest.raises(ConfigError, match="exceeds the largest virtqueue"):
        run(Workload(numjobs=64, iodepth=256, number_ios=1), "virtio-blk", directory=data_dir)
    with pytest.raises(ConfigError, match="cpu"):
        run(READ, "virtio-blk", directory=data_dir, guest_cpu=4096)
    with pytest.raises(ConfigError, match="one entry per backend thread"):
        run(READ, "vhost-blk", directory=data_dir, cpus=(0,))
    with pytest.raises(ConfigError, match="unknown design"):
        run(READ, "no-such-design", directory=data_dir)
    with pytest.raises(ConfigError, match="unknown engine"):
        run(READ, "virtio-blk", directory=data_dir, engine="spdk")
    assert list(data_dir.iterdir()) == []


def test_tmpfs_directory_is_unavailable() -> None:
    from vsim.reference.linux import memory_filesystem

    if not os.path.isdir("/dev/shm") or memory_filesystem("/dev/shm") != "tmpfs":
        pytest.skip("/dev/shm is not a tmpfs here")
    with pytest.raises(UnavailableError, match="tmpfs"):
        run(READ, "virtio-blk", directory="/dev/shm")


def test_cleanup_after_a_normal_run(leak_check: Path) -> None:
    r = run(READ, "vhost-blk", directory=leak_check, scratch_size=1 << 20)
    assert r.total_ios == 50


def test_cleanup_after_a_multiqueue_backend_error(
    leak_check: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two guest processes, two queues, four workers: a failure leaves no process or file."""

    def broken(self: object, *args: object) -> None:
        raise RuntimeError("injected backend failure")

    monkeypatch.setattr(backend_mod.Backend, "_parse", broken)
    wl = Workload(rw="randread", bs=4096, iodepth=2, number_ios=50, numjobs=2)
    with pytest.raises(VsimError, match="injected backend failure"):
        run(wl, "vhost-blk-mq", guest_vcpus=2, directory=leak_check, scratch_size=1 << 20)


def test_cleanup_after_a_backend_error(leak_check: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object, *args: object) -> None:
        raise RuntimeError("injected backend failure")

    monkeypatch.setattr(backend_mod.Backend, "_parse", broken)
    with pytest.raises(VsimError, match="injected backend failure"):
        run(READ, "vhost-blk", directory=leak_check, scratch_size=1 << 20)


def test_cleanup_after_a_guest_error(leak_check: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object) -> None:
        raise RuntimeError("injected guest failure")

    monkeypatch.setattr(guest_mod.GuestJob, "run", broken)  # the forked guest inherits it
    with pytest.raises(VsimError, match="guest: RuntimeError: injected guest failure"):
        run(READ, "virtio-blk", directory=leak_check, scratch_size=1 << 20)


def test_cleanup_after_keyboard_interrupt(
    leak_check: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = runner_mod._await_guests

    def interrupted(*args: object) -> object:
        time.sleep(0.05)  # the guest and backend are mid-run
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_mod, "_await_guests", interrupted)
    wl = Workload(rw="randread", bs=4096, iodepth=2, runtime=5.0)
    with pytest.raises(KeyboardInterrupt):
        run(wl, "vhost-blk", directory=leak_check, scratch_size=1 << 20)
    assert real is not interrupted


def test_cleanup_when_the_engine_is_unavailable(
    leak_check: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*args: object) -> object:
        raise UnavailableError("io_uring unavailable: injected")

    monkeypatch.setattr(runner_mod, "open_engine", unavailable)
    with pytest.raises(UnavailableError, match="injected"):
        run(READ, "virtio-blk", directory=leak_check, scratch_size=1 << 20)


def test_verify_catches_a_wrong_offset(leak_check: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = backend_mod.Backend._parse

    def off_by_one_block(self: backend_mod.Backend, *args: object) -> object:
        parsed = real(self, *args)  # type: ignore[arg-type]
        if parsed is None:
            return None
        req, rec = parsed
        return req._replace(offset=(req.offset + 4096) % self.region), rec

    monkeypatch.setattr(backend_mod.Backend, "_parse", off_by_one_block)
    with pytest.raises(VsimError, match="verify failed"):
        run(READ, "virtio-blk", directory=leak_check, scratch_size=1 << 20, verify=True)


def test_bad_sectors_detects_corruption() -> None:
    data = stamp(8192, 4096, 0)
    assert bad_sectors(data, 8192, (0,)) == 0
    assert bad_sectors(data, 8192 + 512, (0,)) == 8  # every sector names the wrong offset
    assert bad_sectors(data, 8192, (5,)) == 8  # wrong writer
    data[70] ^= 1  # flip one bit in the second sector
    assert bad_sectors(data, 8192, (0,)) == 1


def test_backend_answers_bad_requests_with_an_error_status(disk_dir: Path) -> None:
    """Drive the backend in-process with a hand-made driver: malformed requests get a status."""
    target = create_scratch(str(disk_dir), 1 << 20)
    layout = MemoryLayout(128, 4, 4096)
    mem = GuestMemory(layout)
    kick, irq = new_eventfd(), new_eventfd()
    eng = open_engine("native", target.fd, 4)
    be = backend_mod.Backend(
        design("virtio-blk"),
        [backend_mod.QueueIo(mem, kick, irq)],
        {0: eng},
        region=target.region,
    )
    drv: Driver[int] = Driver(mem.mm, layout.ring)
    try:
        be.start()
        cases = [
            (VIRTIO_BLK_T_IN, 0, True, VIRTIO_BLK_S_OK),  # a good read
            (VIRTIO_BLK_T_IN, target.region // 512, True, VIRTIO_BLK_S_IOERR),  # past the end
            (7, 0, True, VIRTIO_BLK_S_UNSUPP),  # unknown request type
            (VIRTIO_BLK_T_IN, 0, False, VIRTIO_BLK_S_IOERR),  # read into a read-only buffer
        ]
        for slot, (kind, sector, writable, _) in enumerate(cases):
            OUTHDR.pack_into(mem.mm, layout.header_addr(slot), kind, 0, sector)
            mem.mm[layout.status_addr(slot)] = 0xFF
            bufs = [
                Buffer(layout.header_addr(slot), 16, False),
                Buffer(layout.data_addr(slot), 4096, writable),
                Buffer(layout.status_addr(slot), 1, True),
            ]
            drv.add(bufs, slot)
        if drv.kick_prepare():
            os.eventfd_write(kick, 1)
        got: dict[int, int] = {}
        deadline = time.monotonic() + 5
        while len(got) < len(cases) and time.monotonic() < deadline:
            while (u := drv.get_used()) is not None:
                got[u[0]] = u[1]
            time.sleep(0.001)
        assert len(got) == len(cases)
        for slot, (*_, expected) in enumerate(cases):
            assert mem.mm[layout.status_addr(slot)] == expected, slot
        assert got[0] == 4097  # data + status byte written by the device
        data = np.frombuffer(mem.mm, dtype=np.uint64, count=512, offset=layout.data_addr(0))
        assert bad_sectors(data, 0, (0,)) == 0
        del data
    finally:
        be.stop()
        drv.release()
        eng.close()
        for fd in (kick, irq):
            os.close(fd)
        mem.close()
        target.close()
    assert be.error is None
    assert be.counters["bad_requests"] == 3 and be.counters["requests"] == 4


def test_mmap_buffers_are_page_aligned() -> None:
    layout = MemoryLayout(128, 8, 512)
    assert layout.data % mmap.PAGESIZE == 0
    assert all(layout.data_addr(s) % mmap.PAGESIZE == 0 for s in range(8))
    assert layout.size >= layout.data_addr(7) + 512
