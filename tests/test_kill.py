"""Killing vsim (kill -9, SIGTERM, Ctrl-C) leaves no process, no scratch file, no traceback.

Each test starts the `vsim` command, waits until the part under test is running (pool workers,
the reference guest, fio, a scratch fill, the microbenchmarks' peers), signals it, and checks
that every process it started is gone and nothing is left in its directories.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

VSIM = [sys.executable, "-m", "vsim.cli"]
WAIT_S = 60.0  # the most the part under test may take to start on a busy 2-core machine


def descendants(pid: int) -> set[int]:
    """Live (non-zombie) processes below `pid`, from /proc."""
    parent: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st[0] != "Z":
                parent[int(entry.name)] = st[1]
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parent.items() if pp == p}
        todo += sorted(kids - out)
        out |= kids
    return out


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def alive(pids: set[int]) -> set[int]:
    return {p for p in pids if (st := _stat(p)) is not None and st[0] != "Z"}


def wait_for(what: str, cond: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"vsim ended (exit {proc.returncode}) before {what}: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{what} did not happen within {WAIT_S:.0f} s")
        time.sleep(0.05)


def assert_gone(pids: set[int]) -> None:
    deadline = time.monotonic() + 10.0
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = alive(pids)
    assert not left, f"left running: {[(p, _comm(p)) for p in left]}"


def _as_from_a_terminal() -> None:
    # A shell without job control starts background jobs with SIGINT ignored, and a program
    # keeps an ignored SIGINT (Python then installs no KeyboardInterrupt handler): the test
    # suite run as `cmd &` would pass that on. vsim is started here as a user's terminal would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*argv: str, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*VSIM, *argv],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_as_from_a_terminal,
    )


def kill(proc: subprocess.Popen[bytes], sig: int) -> str:
    """Send `sig` and reap; the process's stderr."""
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=30)
    return err.decode()


def _open_in(pid: int, directory: Path) -> bool:
    """True when process `pid` has a file of `directory` open (a scratch file, named or not)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(f"{directory}/"):
                return True
        except OSError:
            continue
    return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_sweep_workers_die_with_the_sweep(sig: int, tmp_path: Path) -> None:
    proc = start(
        "sweep", "--rw", "randread", "--bs", "4k", "--iodepth", "1-8", "--ios", "200000",
        "--jobs", "2", "--out", str(tmp_path / "ws"), cwd=tmp_path,
    )  # fmt: skip
    workers: set[int] = set()

    def two_workers() -> bool:
        workers.update(descendants(proc.pid))
        return len(alive(workers)) >= 2

    wait_for("two pool workers", two_workers, proc)
    kill(proc, sig)
    assert_gone(workers)
    if sig == signal.SIGTERM:  # cleaned up on the way out: no temporary file in the workspace
        assert not list((tmp_path / "ws").rglob(".*.tmp*"))


def test_sweep_resume_cleans_a_killed_writers_temporary(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    args = ["sweep", "--iodepth", "1", "--ios", "200", "--jobs", "1", "--out", str(ws)]
    assert subprocess.run([*VSIM, *args], cwd=tmp_path, capture_output=True).returncode == 0
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = ws / "points" / f".abc.json.vsim-{dead.pid}.tmp.json"
    stale.write_text('{"id": "half')
    r = subprocess.run([*VSIM, *args, "--resume"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not stale.exists()


def _disk_dir(tmp_path: Path) -> Path:
    from vsim.reference.linux import memory_filesystem

    if memory_filesystem(str(tmp_path)) is not None:
        pytest.skip("tmp_path is on a memory file system: no direct I/O there")
    d = tmp_path / "scratch"
    d.mkdir()
    return d


# (iothread-uring-sqpoll: the backend's io_uring has a kernel SQ thread of its own)
@pytest.mark.parametrize("design", ["vhost-blk", "iothread-uring-sqpoll"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_measure_leaves_no_guest_and_no_scratch_file(sig: int, design: str, tmp_path: Path) -> None:
    scratch = _disk_dir(tmp_path)
    proc = start(
        "measure", "--design", design, "--iodepth", "4", "--runtime", "30", "--repeat",
        "1", "--size", "16m", "--dir", str(scratch), "--out", str(tmp_path / "ds"), cwd=tmp_path,
    )  # fmt: skip
    kids: set[int] = set()

    def guest_running() -> bool:
        kids.update(descendants(proc.pid))
        return bool(alive(kids)) and _open_in(proc.pid, scratch)

    wait_for("the reference guest", guest_running, proc)
    time.sleep(0.3)  # mid-run
    kill(proc, sig)
    assert_gone(kids)
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "ds").exists()  # no run had finished: no stub dataset


def test_kill_9_during_the_scratch_fill_leaves_nothing(tmp_path: Path) -> None:
    scratch = _disk_dir(tmp_path)
    proc = start(
        "measure", "--design", "virtio-blk", "--iodepth", "1", "--runtime", "1", "--repeat", "1",
        "--size", "1g", "--dir", str(scratch), "--out", str(tmp_path / "ds"), cwd=tmp_path,
    )  # fmt: skip
    wait_for("the scratch fill", lambda: _open_in(proc.pid, scratch), proc)
    assert list(scratch.iterdir()) == []  # the file being filled has no name
    kill(proc, signal.SIGKILL)
    assert list(scratch.iterdir()) == []


@pytest.mark.skipif(
    shutil.which("fio") is None, reason="fio is not installed (apt-get install fio)"
)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_measure_fio_takes_fio_down_with_it(sig: int, tmp_path: Path) -> None:
    scratch = _disk_dir(tmp_path)
    proc = start(
        "measure", "--fio", "--iodepth", "4", "--runtime", "30", "--repeat", "1", "--size", "16m",
        "--dir", str(scratch), "--out", str(tmp_path / "ds"), cwd=tmp_path,
    )  # fmt: skip
    fio: set[int] = set()

    def fio_running() -> bool:
        fio.update(p for p in descendants(proc.pid) if _comm(p) == "fio")
        return bool(alive(fio))

    wait_for("fio", fio_running, proc)
    time.sleep(0.5)
    kill(proc, sig)
    assert_gone(fio)
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_microbench_interrupted(sig: int, tmp_path: Path) -> None:
    scratch = _disk_dir(tmp_path)
    proc = start(
        "measure", "--microbench", "--dir", str(scratch), "--out", str(tmp_path / "ds"),
        cwd=tmp_path,
    )  # fmt: skip
    peers: set[int] = set()

    def peer_running() -> bool:
        peers.update(descendants(proc.pid))
        return bool(alive(peers))

    wait_for("a microbenchmark peer process", peer_running, proc)
    err = kill(proc, sig)
    assert_gone(peers)
    assert list(scratch.iterdir()) == []
    if sig == signal.SIGINT:
        assert "Traceback" not in err, err
        assert proc.returncode == 130 and err.strip().endswith("vsim: interrupted"), err
