"""Output files and directories: checked before any work, written atomically, never left empty."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from vsim.errors import ConfigError
from vsim.processes import pid_alive

__all__ = [
    "check_dir",
    "check_file",
    "made_dirs",
    "remove_stale",
    "remove_stale_tmp",
    "write_atomic",
]

_TMP = re.compile(r"^\..+\.vsim-(\d+)\.tmp(\.[A-Za-z0-9]+)?$")


def check_file(path: str | Path, what: str = "out") -> None:
    """Fail before any work when the file `path` cannot be written; creates nothing."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {path}: is a directory")
    parent = p.parent
    if not parent.exists():
        raise ConfigError(f"{what} {path}: directory {parent} does not exist")
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: cannot write in {parent}")
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"{what} {path}: cannot write (permission denied)")


def check_dir(path: str | Path, what: str = "out") -> None:
    """Fail before any work when the directory `path` cannot be created or written into;
    creates nothing."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"{what} {path}: is not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(f"{what} {path}: not a writable directory")
        return
    ancestor = p.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: cannot create it in {ancestor}")


def write_atomic(path: str | Path, data: str | bytes | Callable[[Path], object]) -> None:
    """Write `path` whole or not at all: a temporary file beside it, fsync, rename.

    `data` is the text or bytes, or a function that writes a given (temporary) path; the
    temporary file keeps the suffix of `path` for writers that choose a format by it. Any failure
    (or Ctrl-C) removes the temporary file and leaves an existing `path` as it was.
    """
    p = Path(path)
    tmp = p.with_name(f".{p.name}.vsim-{os.getpid()}.tmp{p.suffix}")
    try:
        if callable(data):
            data(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def remove_stale(directory: str | Path, pattern: re.Pattern[str]) -> list[str]:
    """Remove the regular files of `directory` whose name matches `pattern` (its first group a
    pid) and whose process no longer exists: what killed vsim processes left; their names."""
    gone = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            m = pattern.match(entry.name)
            if m and not pid_alive(int(m.group(1))) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    gone.append(entry.name)
    return gone


def remove_stale_tmp(directory: str | Path) -> int:
    """Remove the temporary files of write_atomic that killed vsim processes left."""
    return len(remove_stale(directory, _TMP))


@contextlib.contextmanager
def made_dirs(path: str | Path) -> Iterator[Path]:
    """Create the directory `path` (and its parents) for outputs; if the block fails, remove
    every directory that did not exist before it and is still empty (never a file, never a
    directory that was there before)."""
    p = Path(path)
    before = {d for d in p.rglob("*") if d.is_dir()} if p.is_dir() else set()
    created: list[Path] = []
    q = p
    while not q.exists():
        created.append(q)
        q = q.parent
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{path}: cannot create ({e.strerror})") from None
    try:
        yield p
    except BaseException:
        new = {d for d in p.rglob("*") if d.is_dir()} - before
        for d in [*sorted(new, reverse=True), *created]:  # deepest first
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
