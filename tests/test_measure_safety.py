"""The one guard on every real I/O path (reference backend and real fio): user data untouched.

Block devices are exercised on a loop device over a scratch image (root and losetup needed,
else skipped with the reason); files on a scratch file of the test's own. Data and scratch
files live in `data` (a directory on a disk), datasets in `tmp_path / "out"`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vsim.cli import main
from vsim.reference.linux import memory_filesystem

needs_fio = pytest.mark.skipif(
    shutil.which("fio") is None, reason="fio is not installed (apt-get install fio)"
)
QUICK = ["--iodepth", "1", "--runtime", "0.2", "--repeat", "1"]


def fingerprint(path: Path) -> tuple[str, int, int, bool]:
    """Content hash, size, mtime and whether the path is a symlink."""
    st = os.stat(path)
    return (
        hashlib.sha256(path.read_bytes()).hexdigest(),
        st.st_size,
        st.st_mtime_ns,
        path.is_symlink(),
    )


@pytest.fixture
def data(disk_dir: Path) -> Path:
    """A directory on a disk for the user's files and the scratch files."""
    d = disk_dir / "data"
    d.mkdir()
    return d


@pytest.fixture
def loop_device(data: Path) -> Iterator[tuple[Path, Path]]:
    """A loop device over a 4 MiB image of random data: (device, image)."""
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("loop devices need root and losetup")
    image = data / "disk.img"
    image.write_bytes(os.urandom(4 << 20))
    r = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=False
    )
    if r.returncode != 0:
        pytest.skip(f"losetup failed here: {r.stderr.strip()}")
    dev = Path(r.stdout.strip())
    try:
        yield dev, image
    finally:
        subprocess.run(["losetup", "-d", str(dev)], check=False)


def _measure(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["measure", *argv])
    return code, capsys.readouterr().err


@needs_fio
@pytest.mark.parametrize("fio", [True, False], ids=["fio", "reference"])
def test_a_block_device_is_never_written(fio, loop_device, tmp_path, capsys):  # type: ignore[no-untyped-def]
    dev, image = loop_device
    before = fingerprint(image)
    args = ["--fio"] if fio else []
    code, err = _measure(
        capsys, *args, "--file", str(dev), "--rw", "randwrite", "--allow-overwrite", *QUICK,
        "--out", str(tmp_path / "out" / "ds"),
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "block device" in err
    assert fingerprint(image) == before
    assert not (tmp_path / "out" / "ds").exists()


@needs_fio
@pytest.mark.parametrize("fio", [True, False], ids=["fio", "reference"])
def test_a_block_device_can_be_read(fio, loop_device, tmp_path, capsys):  # type: ignore[no-untyped-def]
    dev, image = loop_device
    before = fingerprint(image)
    args = ["--fio"] if fio else ["--design", "virtio-blk"]
    out = tmp_path / "out" / "ds"
    code, err = _measure(capsys, *args, "--file", str(dev), *QUICK, "--out", str(out))
    assert code == 0, err
    assert "tmpfs" not in err and fingerprint(image) == before
    assert list((out / "fio").glob("*.json") if fio else (out / "runs").glob("*.json"))


@needs_fio
def test_a_read_job_never_changes_a_small_file_or_a_symlink(data, tmp_path, capsys):  # type: ignore[no-untyped-def]
    """fio lays out (unlinks and rewrites) a file smaller than --size: vsim gives fio only the
    region the file has, through the guard's descriptor, with fio's --readonly."""
    small = data / "small.img"
    small.write_bytes(os.urandom(1 << 20))  # 1 MiB < the default --size 64m
    link = data / "link.img"
    link.symlink_to(small)
    tiny = data / "tiny.img"
    tiny.write_bytes(b"x" * 1000)  # less than one 4k block
    prints = {p: fingerprint(p) for p in (small, link, tiny)}
    for i, target in enumerate((small, link)):
        out = tmp_path / "out" / f"ds{i}"
        code, err = _measure(capsys, "--fio", "--file", str(target), *QUICK, "--out", str(out))
        assert code == 0, err
    code, err = _measure(
        capsys, "--fio", "--file", str(tiny), *QUICK, "--out", str(tmp_path / "out" / "t")
    )
    assert code == 2 and "less than one block" in err and not (tmp_path / "out" / "t").exists()
    assert {p: fingerprint(p) for p in prints} == prints
    assert link.is_symlink() and os.readlink(link) == str(small)
    assert sorted(p.name for p in data.iterdir()) == ["link.img", "small.img", "tiny.img"]


@needs_fio
def test_fio_refuses_tmpfs(tmp_path, capsys):  # type: ignore[no-untyped-def]
    shm = Path("/dev/shm")
    if not shm.is_dir() or memory_filesystem(str(shm)) is None:
        pytest.skip("/dev/shm is not a memory file system here")
    before = set(os.listdir(shm))
    code, err = _measure(
        capsys, "--fio", "--dir", str(shm), *QUICK, "--out", str(tmp_path / "out" / "ds")
    )
    assert code == 2 and err.count("\n") == 1 and "tmpfs" in err
    assert set(os.listdir(shm)) == before and not (tmp_path / "out" / "ds").exists()


def test_an_existing_dataset_needs_append(data, tmp_path, capsys):  # type: ignore[no-untyped-def]
    out = tmp_path / "out" / "ds"
    args = ["--design", "virtio-blk", *QUICK, "--dir", str(data), "--out", str(out)]
    assert _measure(capsys, *args)[0] == 0
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, err = _measure(capsys, *args)
    assert code == 2 and "--append" in err and err.count("\n") == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files  # untouched
    code, err = _measure(capsys, *args, "--append")
    assert code == 0, err
    manifest = (out / "manifest.csv").read_text().splitlines()
    assert (
        len(manifest) == 1 + 2
        and manifest[1] == files[out / "manifest.csv"].decode().split("\n")[1]
    )
    assert [ln.split(",")[2] for ln in manifest[1:]] == ["0", "1"]  # the repeat numbers go on
    for p, content in files.items():  # every earlier run and the earlier provenance stay
        if p.name not in ("manifest.csv", "summary.csv"):
            assert p.read_bytes() == content, p
    assert len(list(out.glob("provenance-*.toml"))) == 1
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[1].split(",")[7] == "2"  # both runs in the point's summary (repeats)
    (data / "notes.txt").write_text("the user's")
    code, err = _measure(capsys, "--design", "virtio-blk", *QUICK, "--out", str(data))
    assert code == 2 and "not a vsim dataset" in err  # a non-empty directory of other things
    assert sorted(p.name for p in data.iterdir()) == ["notes.txt"]


@needs_fio
def test_fio_append_keeps_earlier_runs(data, tmp_path, capsys):  # type: ignore[no-untyped-def]
    out = tmp_path / "out" / "ds"
    args = ["--fio", *QUICK, "--size", "4m", "--dir", str(data), "--out", str(out)]
    assert _measure(capsys, *args)[0] == 0
    first = (out / "fio" / "runs.csv").read_text().splitlines()
    assert _measure(capsys, *args)[0] == 2
    assert _measure(capsys, *args, "--append")[0] == 0
    runs = (out / "fio" / "runs.csv").read_text().splitlines()
    assert runs[: len(first)] == first and len(runs) == len(first) + 1
    assert len(list((out / "fio").glob("*.json"))) == 2
    assert list(data.iterdir()) == []  # fio's scratch file never had a name


def test_fio_failure_is_one_clean_line(data, tmp_path, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    """fio's own error text is reduced to its reason, on one line with the job."""
    from vsim.measure import fio_error

    text = (
        "fio: pid=4242, err=22/file:filesetup.c:805, func=open(/x), error=Invalid argument\n"
        "fio: io_u error on file /x: Invalid argument: read offset=0, buflen=4096\n"
    )
    assert fio_error(text) == "Invalid argument"
    assert fio_error("fio: something odd\n") == "something odd"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "fio").write_text(
        '#!/bin/sh\n[ "$1" = --version ] && { echo fio-3.33; exit 0; }\n'
        "echo 'fio: pid=1, err=5/file:io_u.c:1, func=io_u error, error=Input/output error' >&2\n"
        "exit 1\n"
    )
    (fake / "fio").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    code, err = _measure(capsys, "--fio", *QUICK, "--size", "1m", "--dir", str(data),
                         "--out", str(tmp_path / "out" / "ds"))  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert err.strip().endswith(
        "fio failed on rw=randread bs=4096 iodepth=1 (exit 1): Input/output error"
    )
    assert not (tmp_path / "out" / "ds").exists() and list(data.iterdir()) == []


def test_scratch_file_has_no_name_while_it_is_open(data):  # type: ignore[no-untyped-def]
    from vsim.reference.storage import create_scratch

    t = create_scratch(str(data), 1 << 20)
    try:
        assert list(data.iterdir()) == []  # nothing to leave behind, even on kill -9
        assert os.fstat(t.fd).st_size == 1 << 20
    finally:
        t.close()


def test_stale_named_scratch_of_a_dead_process_is_removed(data):  # type: ignore[no-untyped-def]
    from vsim.reference.storage import create_scratch

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = data / f"vsim-scratch-{dead.pid}-deadbeef.dat"
    alive = data / f"vsim-scratch-{os.getpid()}-cafef00d.dat"  # a running process's
    for p in (stale, alive):
        p.write_bytes(b"x")
    create_scratch(str(data), 1 << 20).close()
    assert sorted(p.name for p in data.iterdir()) == [alive.name]
