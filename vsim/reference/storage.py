"""The one I/O guard (scratch files, guarded existing files, O_DIRECT) and the verify pattern.

Every path that does real I/O (the reference backend, the microbenchmarks, the real fio) opens
its target here: a scratch file has no name from birth (``O_TMPFILE``, or unlinked the moment
it is open), so nothing is left even after ``kill -9``; an existing file is opened read-only
unless a writing job was explicitly allowed; a block device is never opened for writing; a
directory or file in memory (tmpfs, ramfs) is refused, because it has no direct I/O.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import secrets
import stat
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vsim.errors import ConfigError, UnavailableError
from vsim.outputs import remove_stale
from vsim.reference.linux import memory_filesystem
from vsim.scenario import Workload

__all__ = [
    "DEFAULT_SCRATCH_SIZE",
    "SCRATCH_PREFIX",
    "SECTOR",
    "Target",
    "U64Array",
    "bad_sectors",
    "check_directory",
    "create_scratch",
    "fill",
    "open_existing",
    "open_target",
    "read_back",
    "remove_stale_scratch",
    "stamp",
]

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


SCRATCH_PREFIX = "vsim-scratch-"  # named scratch files (no O_TMPFILE): vsim-scratch-<pid>-*.dat


@dataclass
class Target:
    """An open file the backend does I/O on, and the region (bytes from offset 0) it may use.

    ``path`` names it in messages; a scratch file has no name in the file system any more.
    """

    path: str
    fd: int
    region: int
    scratch: bool
    writable: bool

    def close(self) -> None:
        """Close the descriptor (idempotent); a scratch file's space is freed with it."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @property
    def proc_path(self) -> str:
        """A name another process can open it by while it inherits ``fd`` (for fio)."""
        return f"/proc/self/fd/{self.fd}"


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


def check_directory(directory: str) -> None:
    """Raise ConfigError unless ``directory`` is an existing directory (and says which)."""
    if not os.path.exists(directory):
        raise ConfigError(f"directory {directory} does not exist")
    if not os.path.isdir(directory):
        raise ConfigError(f"{directory} is not a directory")


def create_scratch(directory: str | None, size: int) -> Target:
    """Create, stamp (tag 0) and open a nameless scratch file of ``size`` bytes in ``directory``
    (default: the current directory)."""
    if size < SECTOR or size % SECTOR:
        raise ConfigError(f"scratch size must be a positive multiple of {SECTOR}, got {size}")
    directory = directory if directory is not None else os.curdir
    check_directory(directory)
    _refuse_memory_fs(directory)
    remove_stale_scratch(directory)
    fd, label = _open_nameless(directory)
    target = Target(path=label, fd=fd, region=size, scratch=True, writable=True)
    try:
        fill(target, size)
    except BaseException:
        target.close()
        raise
    return target


def _open_nameless(directory: str) -> tuple[int, str]:
    """An O_DIRECT file in ``directory`` that no name points to, and a label for messages.

    O_TMPFILE where the file system has it; else a uniquely named file, unlinked as soon as it is
    open (a ``kill -9`` inside that window leaves it for :func:`remove_stale_scratch`).
    """
    label = os.path.join(directory, "(vsim scratch file)")
    flags = os.O_TMPFILE | os.O_RDWR | os.O_DIRECT | os.O_CLOEXEC
    try:
        return os.open(directory, flags, 0o600), label
    except OSError as e:  # no O_TMPFILE here (EOPNOTSUPP; EISDIR on old kernels; EINVAL)
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise ConfigError(f"cannot create a file in {directory}: {e.strerror}") from None
    name = f"{SCRATCH_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.dat"
    path = os.path.join(directory, name)
    fd = _open_direct(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    os.unlink(path)
    return fd, label


def remove_stale_scratch(directory: str) -> list[str]:
    """Remove named scratch files of processes that no longer exist; return their names."""
    return remove_stale(directory, _SCRATCH_NAME)


_SCRATCH_NAME = re.compile(rf"^\.?{re.escape(SCRATCH_PREFIX)}(\d+)-[0-9a-f]+\.dat$")


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
    if not is_block:  # a device node lives on devtmpfs, its data on the device
        _refuse_memory_fs(path)
    fd = _open_direct(path, os.O_RDWR if needs_write else os.O_RDONLY)
    length = os.lseek(fd, 0, os.SEEK_END) if is_block else st.st_size
    region = min(size, length) // bs * bs
    if region < bs:
        os.close(fd)
        raise ConfigError(f"{path} holds {length} bytes, less than one block of {bs}")
    return Target(path=path, fd=fd, region=region, scratch=False, writable=needs_write)


def open_target(
    workload: Workload,
    *,
    directory: str | os.PathLike[str] | None = None,
    file: str | os.PathLike[str] | None = None,
    allow_overwrite: bool = False,
    scratch_size: int = DEFAULT_SCRATCH_SIZE,
    verify: bool = False,
) -> Target:
    """The target of a workload: a scratch file in ``directory`` (``min(size, scratch_size)``
    bytes) or the existing ``file``, opened for writing only when the job writes (or verify
    stamps it) and that was allowed."""
    if file is None:
        size = min(workload.size, scratch_size) // workload.bs * workload.bs
        if size < workload.bs:
            raise ConfigError(f"scratch_size {scratch_size} is smaller than bs {workload.bs}")
        return create_scratch(None if directory is None else os.fspath(directory), size)
    target = open_existing(
        os.fspath(file),
        bs=workload.bs,
        size=workload.size,
        needs_write=workload.read_fraction < 1.0 or verify,
        allow_overwrite=allow_overwrite,
    )
    if verify:
        try:
            fill(target, target.region)
        except BaseException:
            target.close()
            raise
    return target


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
