"""Fixtures for the reference-backend tests: a directory on a real disk, available engines."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from vsim.errors import UnavailableError
from vsim.reference import ENGINES, open_engine
from vsim.reference.storage import create_scratch

_availability: dict[str, str | None] = {}


def engine_unavailable(name: str, directory: Path) -> str | None:
    """Why engine ``name`` cannot run here (None if it can); probed once per session."""
    if name not in _availability:
        try:
            target = create_scratch(str(directory), 1 << 20)
        except UnavailableError as e:
            _availability[name] = str(e)
            return _availability[name]
        try:
            open_engine(name, target.fd, 2).close()
            _availability[name] = None
        except UnavailableError as e:
            _availability[name] = str(e)
        finally:
            target.close()
    return _availability[name]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, disk_dir: Path) -> str:
    """Each I/O engine in turn, skipped with the reason when the machine lacks it."""
    name: str = request.param
    reason = engine_unavailable(name, disk_dir)
    if reason is not None:
        pytest.skip(f"engine {name} unavailable: {reason}")
    return name


def children() -> set[int]:
    """PIDs of this process's live child processes (from /proc)."""
    me = os.getpid()
    out = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            out.add(int(entry.name))
    return out


def open_fds() -> set[int]:
    """This process's open file descriptors."""
    return {int(x) for x in os.listdir("/proc/self/fd")}


@pytest.fixture
def leak_check(disk_dir: Path) -> Iterator[Path]:
    """Assert the test leaves no file in disk_dir, no /dev/shm entry, child process or fd."""
    shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    kids_before = children()
    fds_before = open_fds()
    yield disk_dir
    assert list(disk_dir.iterdir()) == []
    if os.path.isdir("/dev/shm"):
        assert {x for x in os.listdir("/dev/shm") if "vsim" in x} - shm_before == set()
    assert children() - kids_before == set()
    assert open_fds() - fds_before == set()
