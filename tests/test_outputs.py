"""Output files and directories: nothing is created before the work, writes are whole or absent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from vsim.errors import ConfigError
from vsim.outputs import check_dir, check_file, made_dirs, remove_stale_tmp, write_atomic


def test_checks_create_nothing(tmp_path: Path) -> None:
    check_file(tmp_path / "new.csv")
    check_dir(tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="does not exist"):
        check_file(tmp_path / "missing" / "x.csv")
    with pytest.raises(ConfigError, match="is a directory"):
        check_file(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is not a directory"):
        check_dir(tmp_path / "f")


def test_write_atomic_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    p = tmp_path / "result.csv"
    p.write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise KeyboardInterrupt  # Ctrl-C in the middle of a write

    with pytest.raises(KeyboardInterrupt):
        write_atomic(p, broken)
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["result.csv"]  # no temporary left
    write_atomic(p, "new")
    assert p.read_text() == "new"


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale = tmp_path / f".p.json.vsim-{dead}.tmp.json"
    mine = tmp_path / f".q.json.vsim-{os.getpid()}.tmp.json"  # a live writer's: kept
    other = tmp_path / "keep.tmp"
    for f in (stale, mine, other):
        f.write_text("x")
    assert remove_stale_tmp(tmp_path) == 1
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted([mine.name, other.name])


def test_made_dirs_removes_only_what_it_created_and_left_empty(tmp_path: Path) -> None:
    (tmp_path / "ds" / "old").mkdir(parents=True)  # there before: kept even when empty
    with pytest.raises(RuntimeError), made_dirs(tmp_path / "ds"):
        (tmp_path / "ds" / "runs").mkdir()
        raise RuntimeError
    assert sorted(x.name for x in (tmp_path / "ds").iterdir()) == ["old"]
    with pytest.raises(RuntimeError), made_dirs(tmp_path / "new" / "ds") as d:
        (d / "runs").mkdir()
        raise RuntimeError
    assert not (tmp_path / "new").exists()
    with pytest.raises(RuntimeError), made_dirs(tmp_path / "kept") as d:
        (d / "run-0.json").write_text("{}")  # something computed: never removed
        raise RuntimeError
    assert (tmp_path / "kept" / "run-0.json").exists()


def _dead_pid() -> int:
    """A PID that no process has (a child that already exited and was reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
