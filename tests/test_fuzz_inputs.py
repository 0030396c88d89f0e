"""Fuzz-style: malformed profiles, fio JSON, manifests and CSV tables through the CLI.

Each case mutates a valid file (seeded, so the cases are the same on every run): cut it short,
drop, duplicate or swap lines, replace a value by a word, a negative, a huge or a non-finite
number, misspell a key, flip bytes. Whatever the mutation, `vsim` either runs (and writes its
output) or says one line and exits 2, leaving no output behind; a traceback fails the test.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vsim.cli import main

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "calibration" / "profiles" / "seed-2011.toml"
RUN = ROOT / "validation" / "local" / "runs" / "virtio-blk-randread-bs4096-qd1-r0.json"
POINTS = ROOT / "validation" / "seed-2011" / "points.csv"
CASES = 16  # per kind of file
_VALUE = re.compile(r"(?<=[=:,\s\[])(-?\d+(\.\d+)?(e[+-]?\d+)?|true|false|\"[^\"\n]*\")")
_KEY = re.compile(r"[A-Za-z_]{3,}")
_REPLACEMENTS = ("-1", "0", "1e308", "nan", "inf", '"x"', "[]", "{}", "99999999999999999999")


def mutate(text: str, rng: np.random.Generator) -> str:
    """One random corruption of `text` (a line-based or a token-based edit)."""
    lines = text.splitlines(keepends=True)
    kind = int(rng.integers(7))
    if kind == 0:  # cut short anywhere
        return text[: int(rng.integers(len(text)))]
    if kind == 1 and len(lines) > 1:  # drop a line
        del lines[int(rng.integers(len(lines)))]
        return "".join(lines)
    if kind == 2 and lines:  # duplicate a line
        i = int(rng.integers(len(lines)))
        lines.insert(i, lines[i])
        return "".join(lines)
    if kind == 3 and len(lines) > 2:  # swap two lines
        i, j = (int(x) for x in rng.choice(len(lines), 2, replace=False))
        lines[i], lines[j] = lines[j], lines[i]
        return "".join(lines)
    if kind == 4:  # misspell a key
        keys = list(_KEY.finditer(text))
        if keys:
            m = keys[int(rng.integers(len(keys)))]
            k = m.group()
            pos = int(rng.integers(len(k) - 1))
            typo = k[:pos] + k[pos + 1] + k[pos] + k[pos + 2 :]
            return text[: m.start()] + typo + text[m.end() :]
    if kind == 5:  # flip a few bytes
        data = bytearray(text.encode())
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        return data.decode("utf-8", errors="replace")
    values = list(_VALUE.finditer(text))  # replace a value by something out of range
    m = values[int(rng.integers(len(values)))]
    new = _REPLACEMENTS[int(rng.integers(len(_REPLACEMENTS)))]
    return text[: m.start()] + new + text[m.end() :]


def check(capsys: pytest.CaptureFixture[str], argv: list[str], output: Path) -> None:
    """vsim runs and writes `output`, or exits 2 with one line and leaves no `output`."""
    code = main(argv)
    err = capsys.readouterr().err
    if code == 0:
        assert output.exists(), err
        return
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if not ln.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("vsim: error: "), err
    assert not output.exists(), f"{output} left behind after: {err}"


def _rng(kind: str, case: int) -> np.random.Generator:
    return np.random.default_rng([case, sum(kind.encode())])


@pytest.mark.parametrize("case", range(CASES))
def test_malformed_profile(case: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prof = tmp_path / "p.toml"
    prof.write_text(mutate(PROFILE.read_text(), _rng("profile", case)))
    out = tmp_path / "out.csv"
    argv = ["run", "--profile", str(prof), "--rw", "rw", "--iodepth", "2", "--ios", "40"]
    check(capsys, [*argv, "--out", str(out)], out)


def _dataset(tmp_path: Path, edit: Callable[[Path], None]) -> Path:
    ds = tmp_path / "ds"
    (ds / "runs").mkdir(parents=True)
    shutil.copy(RUN, ds / "runs" / RUN.name)
    (ds / "manifest.csv").write_text(
        f"file,design,repeat,calibration,note\nruns/{RUN.name},virtio-blk,0,false,native\n"
    )
    edit(ds)
    return ds


def _validate(capsys: pytest.CaptureFixture[str], ds: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    argv = ["validate", "--profile", "seed-2011", "--measured", str(ds), "--ios", "60"]
    check(capsys, [*argv, "--report", str(report)], report)


@pytest.mark.parametrize("case", range(CASES))
def test_malformed_fio_json(case: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def edit(ds: Path) -> None:
        f = ds / "runs" / RUN.name
        f.write_text(mutate(f.read_text(), _rng("fio", case)))

    _validate(capsys, _dataset(tmp_path, edit), tmp_path)


@pytest.mark.parametrize("case", range(CASES))
def test_malformed_manifest(case: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def edit(ds: Path) -> None:
        m = ds / "manifest.csv"
        m.write_text(mutate(m.read_text(), _rng("manifest", case)))

    _validate(capsys, _dataset(tmp_path, edit), tmp_path)


@pytest.mark.parametrize("case", range(CASES))
def test_malformed_points_csv(
    case: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = tmp_path / "pub"
    ds.mkdir()
    (ds / "points.csv").write_text(mutate(POINTS.read_text(), _rng("points", case)))
    _validate(capsys, ds, tmp_path)


@pytest.fixture(scope="module")
def sweep_table(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("sweep") / "seed.csv"
    assert main(["sweep", "--ios", "200", "--jobs", "1", "--out", str(out)]) == 0
    return out.read_text()


@pytest.mark.parametrize("case", range(CASES))
def test_malformed_sweep_table(
    case: int, sweep_table: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "t.csv"
    table.write_text(mutate(sweep_table, _rng("table", case)))
    check(capsys, ["plot", str(table), "--out", str(tmp_path / "p.png")], tmp_path / "p.png")
    page = tmp_path / "page.md"
    check(capsys, ["report", str(table), "--no-resimulate", "--out", str(page)], page)
