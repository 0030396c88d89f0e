"""The I/O target (a scratch file or a guarded existing file, O_DIRECT) and the verify pattern."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vsim.errors import ConfigError, UnavailableError
from vsim.reference.linux import memory_filesystem

SECTOR = 512
DEFAULT_SCRATCH_SIZE = 64 << 20
_WORDS = SECTOR // 8
_K = np.arange(_WORDS, dtype=np.uint64)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xC2B2AE3D27D4EB4F)
_CHUNK = 1 << 20

U64Array = npt.NDArray[np.uint64]


def stamp(offset: int, nbytes: int, tag: int) -> U64Array:
    """The verify pattern of ``nbytes`` at ``offset``: each 512 B sector names its offset and tag.

    Word 0 of a sector is its byte offset, word 1 the writer's tag (0 = the initial fill), the
    other words a mix of both, so a sector read from the wrong place or a torn write shows.
    """
    offsets = np.arange(offset, offset + nbytes, SECTOR, dtype=np.uint64)
    tags = np.full(offsets.shape, tag, dtype=np.uint64)
    return _stamp_rows(offsets, tags).reshape(-1)


def _stamp_rows(offsets: U64Array, tags: U64Array) -> U64Array:
    rows = (offsets[:, None] * _GOLD) ^ (tags[:, None] * _MIX) ^ _K[None, :]
    rows[:, 0] = offsets
    rows[:, 1] = tags
    return rows


def bad_sectors(data: U64Array, offset: int, tags: tuple[int, ...]) -> int:
    """How many sectors of ``data`` (read at ``offset``) lack the pattern of all of ``tags``."""
    rows = data.reshape(-1, _WORDS)
    offsets = np.arange(offset, offset + rows.shape[0] * SECTOR, SECTOR, dtype=np.uint64)
    found = rows[:, 1].copy()
    good = np.isin(found, np.asarray(tags, dtype=np.uint64))
    good &= (rows == _stamp_rows(offsets, found)).all(axis=1)
    return int(rows.shape[0] - np.count_nonzero(good))


@dataclass
class Target:
    """An open file the backend does I/O on, and the region (bytes from offset 0) it may use."""

    path: str
    fd: int
    region: int
    scratch: bool
    writable: bool

    def close(self) -> None:
        """Close the descriptor and remove the file if it is a scratch file (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.scratch:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def _open_direct(path: str, flags: int, mode: int = 0o600) -> int:
    try:
        return os.open(path, flags | os.O_DIRECT | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise UnavailableError(f"{path}: the file system does not support O_DIRECT") from None
        raise ConfigError(f"cannot open {path}: {e.strerror}") from None


def _refuse_memory_fs(path: str) -> None:
    fs = memory_filesystem(path)
    if fs is not None:
        raise UnavailableError(
            f"{path} is on {fs}, which has no direct I/O (O_DIRECT is refused or is a page-cache "
            "copy there); choose a directory on a disk"
        )


def create_scratch(directory: str | None, size: int) -> Target:
    """Create, stamp (tag 0) and open a scratch file of ``size`` bytes in ``directory``."""
    if size < SECTOR or size % SECTOR:
        raise ConfigError(f"scratch size must be a positive multiple of {SECTOR}, got {size}")
    directory = directory if directory is not None else tempfile.gettempdir()
    if not os.path.isdir(directory):
        raise ConfigError(f"directory {directory} does not exist")
    _refuse_memory_fs(directory)
    path = os.path.join(directory, f"vsim-scratch-{os.getpid()}-{secrets.token_hex(4)}.dat")
    fd = _open_direct(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    target = Target(path=path, fd=fd, region=size, scratch=True, writable=True)
    try:
        fill(target, size)
    except BaseException:
        target.close()
        raise
    return target


def fill(target: Target, size: int, tag: int = 0) -> None:
    """Write the verify pattern over the first ``size`` bytes (O_DIRECT, 1 MiB at a time)."""
    buf = mmap.mmap(-1, _CHUNK)
    try:
        view = np.frombuffer(buf, dtype=np.uint64)
        for off in range(0, size, _CHUNK):
            n = min(_CHUNK, size - off)
            view[: n // 8] = stamp(off, n, tag)
            written = os.pwritev(target.fd, [memoryview(buf)[:n]], off)
            if written != n:
                raise OSError(errno.EIO, f"short write at {off}")
        del view
        os.fdatasync(target.fd)
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise UnavailableError(f"{target.path}: O_DIRECT write failed (EINVAL)") from None
        raise
    finally:
        _close_quietly(buf)


def open_existing(
    path: str, *, bs: int, size: int, needs_write: bool, allow_overwrite: bool
) -> Target:
    """Open an existing file or block device; refuse writes unless explicitly allowed."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ConfigError(f"cannot use {path}: {e.strerror}") from None
    is_block = stat.S_ISBLK(st.st_mode)
    if not (is_block or stat.S_ISREG(st.st_mode)):
        raise ConfigError(f"{path} is not a regular file or a block device")
    if needs_write and is_block:
        raise ConfigError(f"{path} is a block device: vsim never writes to one")
    if needs_write and not allow_overwrite:
        raise ConfigError(f"{path} exists: a job that writes needs allow_overwrite=True")
    _refuse_memory_fs(path)
    fd = _open_direct(path, os.O_RDWR if needs_write else os.O_RDONLY)
    length = os.lseek(fd, 0, os.SEEK_END) if is_block else st.st_size
    region = min(size, length) // bs * bs
    if region < bs:
        os.close(fd)
        raise ConfigError(f"{path} holds {length} bytes, less than one block of {bs}")
    return Target(path=path, fd=fd, region=region, scratch=False, writable=needs_write)


def read_back(target: Target, offsets: U64Array, bs: int, tag: int) -> int:
    """Read every block at ``offsets`` (O_DIRECT) and count sectors not stamped with ``tag``."""
    buf = mmap.mmap(-1, max(bs, mmap.PAGESIZE))
    bad = 0
    try:
        view = np.frombuffer(buf, dtype=np.uint64, count=bs // 8)
        for off in np.unique(offsets).tolist():
            if os.preadv(target.fd, [memoryview(buf)[:bs]], off) != bs:
                bad += bs // SECTOR
                continue
            bad += bad_sectors(view, off, (tag,))
        del view
    finally:
        _close_quietly(buf)
    return bad


def _close_quietly(buf: mmap.mmap) -> None:
    with contextlib.suppress(BufferError):  # a view alive in a traceback: the GC unmaps it
        buf.close()
