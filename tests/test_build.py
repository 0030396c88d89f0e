"""The models' build: compiled by mypyc by default, pure Python without a compiler or when stale."""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from vsim.models import build
from vsim.models.build import COMPILED, FORCED, MANIFEST, PURE, STALE, Choice, StaleBuildWarning

ROOT = Path(__file__).resolve().parent.parent
SO = importlib.machinery.EXTENSION_SUFFIXES[0]
BUILD_TIMEOUT_S = 1200  # a compiled build takes about a minute on 2 cores
# What a run in a copy reports: the build, where two models came from, the warnings, a result.
PROBE = """
import hashlib, json, sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import vsim.models.cpu as cpu, vsim.models.guest as guest
    from vsim.models import build
out = {"build": build.BUILD, "cpu": cpu.__file__, "guest": guest.__file__,
       "stale": [str(w.message) for w in caught if w.category is build.StaleBuildWarning]}
if "simulate" in sys.argv:
    from vsim import Scenario, Workload, design, simulate
    r = simulate(Scenario(workload=Workload(number_ios=2000), design=design("vhost-blk")), 1)
    rows = json.dumps(r.rows(), sort_keys=True).encode()
    out |= {"ios": r.ios, "vsim build": r.to_fio_json()["vsim build"],
            "rows": hashlib.sha256(rows).hexdigest()}
print(json.dumps(out))
"""


def hot_modules() -> list[str]:
    """setup.py's HOT list, as module names."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    node = next(
        n
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "HOT"
    )
    paths: list[str] = ast.literal_eval(node.value)
    return [p.removesuffix(".py").replace("/", ".") for p in paths]


def need_setuptools() -> None:
    """Skip unless setup.py can run here (pyproject's PEP 639 license needs setuptools>=77)."""
    major = int(version("setuptools").split(".")[0])
    if major < 77:
        pytest.skip(f"setup.py needs setuptools>=77, this is {major} (pip install -e '.[test]')")


def source_copy(dest: Path) -> Path:
    """A copy of what setup.py builds from (no compiled file), runnable with PYTHONPATH=dest."""
    junk = shutil.ignore_patterns("__pycache__", f"*{SO}", "*.so", MANIFEST)
    shutil.copytree(ROOT / "vsim", dest / "vsim", ignore=junk)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "calibration" / "profiles", dest / "calibration" / "profiles")
    shutil.copytree(ROOT / "validation" / "seed-2011", dest / "validation" / "seed-2011")
    (dest / "vsim" / "profiles").symlink_to(dest / "calibration" / "profiles")  # (as installed)
    return dest


def environ(**extra: str) -> dict[str, str]:
    """This process's environment without the build's variables, plus extra."""
    env = {k: v for k, v in os.environ.items() if k not in {"VSIM_PURE", "VSIM_COMPILE", "CC"}}
    return env | extra


def setup_py(tree: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python setup.py build_ext --inplace` in tree (no terminal: its line goes to stderr only)."""
    return subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=tree,
        env=environ(**env),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        start_new_session=True,
    )


def probe(tree: Path, *args: str, **env: str) -> dict[str, Any]:
    """PROBE's report, run with PYTHONPATH=tree."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=tree.parent,
        env=environ(PYTHONPATH=str(tree), **env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def compiled_files(tree: Path) -> list[str]:
    """Every extension module and manifest under tree."""
    found = [p for p in tree.rglob("*") if p.name.endswith((".so", ".pyd")) or p.name == MANIFEST]
    return sorted(str(p.relative_to(tree)) for p in found)


@pytest.fixture(scope="session")
def compiled_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sources built in place by mypyc (VSIM_COMPILE=1: a failure fails), once."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc): the compiled build cannot be made here")
    need_setuptools()
    tree = source_copy(tmp_path_factory.mktemp("compiled"))
    done = setup_py(tree, VSIM_COMPILE="1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tree


@pytest.fixture
def tree_copy(compiled_tree: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the compiled tree (its build directory and mypy cache too) to change."""
    copy = tmp_path / "tree"
    shutil.copytree(compiled_tree, copy, symlinks=True)
    yield copy


# -- a real compiled build -------------------------------------------------------------------
def test_the_compiled_build_runs_its_extensions(compiled_tree: Path) -> None:
    manifest = json.loads((compiled_tree / "vsim" / "models" / MANIFEST).read_text())
    assert sorted(manifest["modules"]) == sorted(hot_modules())
    source = (compiled_tree / "vsim" / "models" / "cpu.py").read_bytes()
    assert manifest["modules"]["vsim.models.cpu"] == hashlib.sha256(source).hexdigest()
    report = probe(compiled_tree, "simulate")
    assert report["build"] == COMPILED and report["stale"] == []
    assert report["cpu"].endswith(SO) and report["guest"].endswith(SO)
    assert report["ios"] == 2000 and report["vsim build"] == COMPILED


def test_vsim_pure_runs_the_sources_without_a_warning(compiled_tree: Path) -> None:
    report = probe(compiled_tree, "simulate", VSIM_PURE="1")
    assert report["build"] == FORCED and report["stale"] == []
    assert report["cpu"].endswith("cpu.py") and report["guest"].endswith("guest.py")
    assert report["rows"] == probe(compiled_tree, "simulate")["rows"]  # identical results


def test_a_changed_source_runs_every_model_as_pure_python(tree_copy: Path) -> None:
    with (tree_copy / "vsim" / "models" / "cpu.py").open("a") as f:
        f.write("# an edit after the build\n")
    report = probe(tree_copy, "simulate")
    assert report["build"] == STALE
    (message,) = report["stale"]  # exactly one warning, one line, naming the file and the fix
    assert "cpu.py changed" in message and "pip install -e ." in message
    assert "\n" not in message
    assert report["cpu"].endswith("cpu.py") and report["guest"].endswith("guest.py")  # all
    assert report["ios"] == 2000 and report["vsim build"] == STALE


def test_vsim_version_names_the_build(compiled_tree: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from vsim.cli import main; main(['--version'])"],
        cwd=compiled_tree.parent,
        env=environ(PYTHONPATH=str(compiled_tree)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.endswith(f"(models: {COMPILED})\n"), done


def test_a_failed_build_leaves_no_extension(tree_copy: Path, tmp_path: Path) -> None:
    """All or nothing: a compiler that works (for setup.py's probe) but fails on the models,
    after an earlier build left its shared library and modules, leaves no compiled model."""
    for old in (tree_copy / "build").rglob(f"virtqueue{SO}"):
        old.unlink()  # to rebuild (and fail on); the others are up to date
    cc = tmp_path / "cc"
    cc.write_text(
        f'#!/bin/sh\ncase "$*" in *vsim_probe*) exec {shutil.which("cc")} "$@";; esac\n'
        'echo "error: this compiler only builds the probe" >&2; exit 1\n'
    )
    cc.chmod(0o755)
    done = setup_py(tree_copy, CC=str(cc))
    assert done.returncode == 0, done.stderr
    assert "this compiler only builds the probe" in done.stderr  # it got that far
    lines = [line for line in done.stderr.splitlines() if line.startswith("vsim:")]
    assert len(lines) == 1 and "compiling the models failed" in lines[0], done.stderr
    assert compiled_files(tree_copy) == []
    assert probe(tree_copy)["build"] == PURE


# -- no C compiler ---------------------------------------------------------------------------
@pytest.mark.parametrize("cc", ["false", "/nonexistent/cc"])
def test_without_a_compiler_the_install_is_pure_python(cc: str, tmp_path: Path) -> None:
    need_setuptools()
    tree = source_copy(tmp_path)
    done = setup_py(tree, CC=cc)
    assert done.returncode == 0, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "vsim:" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("vsim: no working C compiler (")
    assert lines[0].endswith("; installing the pure-Python models (2-3x slower)")
    assert compiled_files(tree) == []
    report = probe(tree)
    assert report["build"] == PURE and report["cpu"].endswith("cpu.py")


def test_without_a_compiler_vsim_compile_1_fails(tmp_path: Path) -> None:
    need_setuptools()
    done = setup_py(source_copy(tmp_path), CC="false", VSIM_COMPILE="1")
    assert done.returncode != 0
    assert "vsim: no working C compiler (" in done.stderr and "VSIM_COMPILE=1" in done.stderr
    assert compiled_files(tmp_path) == []


# -- the decision, on fake extensions --------------------------------------------------------
def fake_package(tmp_path: Path, compiled: list[str], extra: tuple[str, ...] = ("hdd",)) -> Path:
    """A package directory with sources, empty "extensions" of the compiled modules and their
    manifest (shared library: none)."""
    d = tmp_path / "vsim" / "models"
    d.mkdir(parents=True)
    for name in [*compiled, *extra]:
        (d / f"{name}.py").write_text(f"NAME = {name!r}\n")
    for name in compiled:
        (d / f"{name}{SO}").write_bytes(b"")
    hashes = {
        f"vsim.models.{n}": hashlib.sha256((d / f"{n}.py").read_bytes()).hexdigest()
        for n in compiled
    }
    (d / MANIFEST).write_text(json.dumps({"modules": hashes, "shared": None}))
    return d


def test_no_extension_is_pure_python(tmp_path: Path) -> None:
    d = fake_package(tmp_path, [])
    assert build.choose(d, {}) == Choice(PURE)


def test_matching_extensions_are_the_compiled_build(tmp_path: Path) -> None:
    d = fake_package(tmp_path, ["cpu", "guest"])
    choice = build.choose(d, {})
    assert choice.build == COMPILED and choice.sources == {}


def test_one_changed_source_makes_every_module_pure(tmp_path: Path) -> None:
    d = fake_package(tmp_path, ["cpu", "guest"])
    (d / "guest.py").write_text("NAME = 'edited'\n")
    choice = build.choose(d, {})
    assert choice.build == STALE and f"{d / 'guest.py'} changed" in choice.reason
    assert choice.sources == {"vsim.models.cpu": d / "cpu.py", "vsim.models.guest": d / "guest.py"}


@pytest.mark.parametrize("text", [None, "{not json", '{"modules": 3}', "[]"])
def test_a_missing_or_unreadable_manifest_is_stale(tmp_path: Path, text: str | None) -> None:
    d = fake_package(tmp_path, ["cpu"])
    if text is None:
        (d / MANIFEST).unlink()
    else:
        (d / MANIFEST).write_text(text)
    choice = build.choose(d, {})
    assert choice.build == STALE and "missing or unreadable" in choice.reason
    assert list(choice.sources) == ["vsim.models.cpu"]


def test_a_missing_extension_or_shared_library_is_stale(tmp_path: Path) -> None:
    d = fake_package(tmp_path, ["cpu", "guest"])
    (d / f"guest{SO}").unlink()
    assert "vsim.models.guest is missing" in build.choose(d, {}).reason
    (d / f"guest{SO}").write_bytes(b"")
    manifest = json.loads((d / MANIFEST).read_text())
    (d / MANIFEST).write_text(json.dumps(manifest | {"shared": "no_such__mypyc"}))
    assert "no_such__mypyc cannot be imported" in build.choose(d, {}).reason
    (d / MANIFEST).write_text(json.dumps(manifest | {"shared": "json"}))  # (one that imports)
    assert build.choose(d, {}).build == COMPILED


def test_an_extension_not_in_the_manifest_is_stale(tmp_path: Path) -> None:
    d = fake_package(tmp_path, ["cpu"])
    (d / f"hdd{SO}").write_bytes(b"")
    choice = build.choose(d, {})
    assert choice.build == STALE and "hdd.py was not compiled with the others" in choice.reason
    assert sorted(choice.sources) == ["vsim.models.cpu", "vsim.models.hdd"]


def test_vsim_pure_forces_the_sources(tmp_path: Path) -> None:
    d = fake_package(tmp_path, ["cpu"])
    (d / "cpu.py").write_text("NAME = 'edited'\n")  # stale too, but no warning is due
    choice = build.choose(d, {"VSIM_PURE": "1"})
    assert choice == Choice(FORCED, {"vsim.models.cpu": d / "cpu.py"})


def test_the_finder_serves_exactly_its_modules(tmp_path: Path) -> None:
    d = fake_package(tmp_path, ["cpu"])
    finder = build.SourceFinder({"vsim.models.cpu": d / "cpu.py"})
    spec = finder.find_spec("vsim.models.cpu", None)
    assert spec is not None and spec.origin == str(d / "cpu.py")
    assert finder.find_spec("vsim.models.guest", None) is None


def test_a_stale_choice_warns_once_and_goes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    d = fake_package(tmp_path, ["cpu"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        name = build._apply(Choice(STALE, {"vsim.models.cpu": d / "cpu.py"}, "x changed"))
    assert name == STALE and [w.category for w in caught] == [StaleBuildWarning]
    assert isinstance(sys.meta_path[0], build.SourceFinder)
    assert sum(type(f).__name__ == "SourceFinder" for f in sys.meta_path) == 1


def test_describe_names_the_build() -> None:
    assert build.describe().startswith(build.BUILD)
    assert build.BUILD in {COMPILED, PURE, STALE, FORCED}
