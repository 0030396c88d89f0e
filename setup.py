"""The hot model modules compiled with mypyc by default, or pure Python when that cannot be done.

Everything else (metadata, dependencies) is in pyproject.toml. `pip install .` (or `-e .`)
compiles the modules of HOT with mypyc: the same model code runs 2-3x faster with
identical results. Without a working C compiler (or when mypyc fails) the install still succeeds,
pure Python, and says so in one line. VSIM_COMPILE=0: pure Python, mypyc not run at all.
VSIM_COMPILE=1: compile, and fail the install if that cannot be done (CI). A compiled build
records the sha256 of each compiled source in vsim/models/_compiled.json, which
vsim/models/build.py checks at import (a changed source: the pure-Python modules run).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterator
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

# The modules every simulated event goes through (the event kernel's run loop among them).
# dists.py's frozen dataclass must stay picklable across process pools: it stays interpreted.
HOT = [
    "vsim/kernel.py",
    "vsim/recorder.py",
    "vsim/models/backends.py",
    "vsim/models/cpu.py",
    "vsim/models/disk.py",
    "vsim/models/guest.py",
    "vsim/models/monitor.py",
    "vsim/models/polling.py",
    "vsim/models/queue.py",
    "vsim/models/service_times.py",
    "vsim/models/syscalls.py",
    "vsim/models/virtqueue.py",
]
PACKAGE = "vsim.models"
MANIFEST = "_compiled.json"  # beside the extensions; read by vsim/models/build.py
MODE = os.environ.get("VSIM_COMPILE", "")  # "0": never compile, "1": must compile, "": try
# Type-check only what is compiled, without the project's strict settings: the isolated build
# environment has mypy but not vsim's dependencies (their types are Any here).
MYPY_FLAGS = ["--config-file", os.devnull, "--ignore-missing-imports", "--follow-imports=silent"]
# Whatever stops the compiled build: the compiler's CompileError, LinkError (CCompilerError),
# DistutilsExecError, DistutilsPlatformError, OSError, ...; mypy's errors exit (SystemExit).
FAILURES = (Exception, SystemExit)
# setup.py runs that only list the sources (egg_info's SOURCES.txt lists the extensions'): no mypyc
METADATA_COMMANDS = {"egg_info", "dist_info", "sdist"}
FAILED_COMMAND = r"Command '\[.([^'\"]+).*?\]' returned non-zero exit status (\d+)\.?"  # spawn's
PROBE_C = "#include <Python.h>\nint vsim_probe(void) { return Py_IsInitialized(); }\n"


def module_name(path: str) -> str:
    """vsim/models/cpu.py -> vsim.models.cpu."""
    return path.removesuffix(".py").replace("/", ".")


def sha256(path: str) -> str:
    """The hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def one_line(e: BaseException, detail: str = "") -> str:
    """A short one-line reason for a failure: the compiler's first error message (or its last
    message) when it said something, else the exception."""
    lines = [line for line in detail.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    text = (errors or lines or [f"{type(e).__name__}: {e}"])[0 if errors else -1]
    text = re.sub(FAILED_COMMAND, r"\1 exited with status \2", " ".join(text.split()))
    return text if len(text) <= 200 else text[:197] + "..."


def announce(line: str) -> None:
    """Print the one fallback line: on stderr, and on the terminal when pip captures stderr."""
    print(line, file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        return
    with contextlib.suppress(OSError), open("/dev/tty", "w") as tty:
        tty.write(f"\n{line}\n")


def remove_compiled(root: Path) -> None:
    """Remove the compiled models (the shared mypyc library, every module's extension and the
    manifest) under root, a build directory or the source tree: all or nothing."""
    models = root.joinpath(*PACKAGE.split("."))
    doomed = [models / MANIFEST]
    for suffix in EXTENSION_SUFFIXES:
        doomed += root.glob(f"*__mypyc{suffix}")
        doomed += [root / Path(p).with_suffix(suffix) for p in HOT]
    for path in doomed:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def captured_stderr(text: list[str]) -> Iterator[None]:
    """File descriptor 2 (the compiler's messages) appended to text, without the distutils log
    (its commands): quiet, and the compiler's last message names what is missing."""
    with tempfile.TemporaryFile("w+") as f:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        logging.disable(logging.INFO)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            text.append(f.read())


def probe_compiler(compiler: str | None) -> None:
    """Compile and link a tiny extension, raising the compiler's error when that fails (a
    second, before mypyc spends a minute generating C)."""
    from distutils.ccompiler import new_compiler
    from distutils.sysconfig import customize_compiler, get_python_inc

    cc: Any = new_compiler(compiler=compiler)
    customize_compiler(cc)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "vsim_probe.c")
        src.write_text(PROBE_C)
        incs = [get_python_inc(), get_python_inc(plat_specific=True)]
        objs = cc.compile([str(src)], output_dir=tmp, include_dirs=incs)
        cc.link_shared_object(objs, str(Path(tmp, "vsim_probe" + EXTENSION_SUFFIXES[0])))


def compiler_problem(compiler: str | None) -> tuple[BaseException, str] | None:
    """None when the C compiler works, else its error and why (one line)."""
    text: list[str] = []
    try:
        with captured_stderr(text):
            probe_compiler(compiler)
    except FAILURES as e:
        return e, one_line(e, "".join(text))
    return None


def mypyc_extensions() -> list[Extension]:
    """The mypyc extensions of HOT (mypy type-checks and generates their C here)."""
    from mypyc.build import mypycify

    extensions = list(mypycify([*MYPY_FLAGS, *HOT], opt_level="3"))
    gc.freeze()  # mypy's millions of objects: else collecting them costs ~15 s at exit
    return extensions


def manifest(hashes: dict[str, str], extensions: list[Extension]) -> dict[str, Any]:
    """What was compiled: each module's source sha256, the shared library, mypy and Python."""
    import mypy.version

    shared = [e.name for e in extensions if e.name.endswith("__mypyc")]
    return {
        "modules": hashes,
        "shared": shared[0] if shared else None,
        "mypy": mypy.version.__version__,
        "python": platform.python_version(),
    }


class BuildExt(build_ext):
    """build_ext of the mypyc extensions, falling back to pure Python unless VSIM_COMPILE=1."""

    def initialize_options(self) -> None:
        """setuptools' options, and no fallback yet."""
        super().initialize_options()
        self.fallback: str | None = None  # why the compiled build was given up: the line to say
        self.hashes: dict[str, str] = {}  # the sources' sha256, as mypyc read them

    def finalize_options(self) -> None:
        """Probe the compiler, then let mypyc make the real extensions of the placeholders (given
        up: the placeholders stay, so that run() still runs, to clean up and say so)."""
        if not set(self.distribution.commands) <= METADATA_COMMANDS:
            extensions = self._extensions()
            if self.fallback is None:
                self.distribution.ext_modules = extensions
        super().finalize_options()
        if self.fallback is not None:
            self.extensions = []

    def _extensions(self) -> list[Extension]:
        """The mypyc extensions, or none when they cannot be made."""
        problem = compiler_problem(self.compiler)
        if problem is not None:
            self._give_up("no working C compiler", *problem)
            return []
        try:
            self.hashes = {module_name(p): sha256(p) for p in HOT}
            return mypyc_extensions()
        except FAILURES as e:
            self._give_up("mypyc failed", e, one_line(e))
            return []

    def _give_up(self, what: str, error: BaseException, why: str) -> None:
        """Note the fallback line; with VSIM_COMPILE=1 print it and fail instead."""
        if MODE == "1":
            announce(f"vsim: {what} ({why}) and VSIM_COMPILE=1: the install fails")
            raise error
        self.fallback = f"vsim: {what} ({why}); installing the pure-Python models (2-3x slower)"

    def run(self) -> None:
        """Build (and copy in place) all the extensions and the manifest, or none of them."""
        inplace = self.inplace  # (setuptools' run() clears it while it builds)
        if self.fallback is None:
            try:
                super().run()
                self._write_manifest()
                return
            except FAILURES as e:
                self.inplace = inplace
                self._give_up("compiling the models failed", e, one_line(e))
        for root in self._roots():
            remove_compiled(root)
        announce(str(self.fallback))

    def _roots(self) -> list[Path]:
        """Where the extensions go: the build directory, and the source tree when in place."""
        roots = [Path(self.build_lib)]
        if self.inplace:
            roots.append(Path(self.get_finalized_command("build_py").get_package_dir("") or "."))
        return roots

    def _write_manifest(self) -> None:
        """The manifest beside the extensions, in every root."""
        text = json.dumps(manifest(self.hashes, self.extensions), indent=2, sort_keys=True) + "\n"
        for root in self._roots():
            path = root.joinpath(*PACKAGE.split("."), MANIFEST)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


class BuildPy(build_py):
    """build_py that, with VSIM_COMPILE=0, removes compiled models left by an earlier build."""

    def run(self) -> None:
        """Copy the sources; pure by request: no stale extension in the build or source tree."""
        super().run()
        if MODE == "0":
            remove_compiled(Path(self.build_lib))
            if self.editable_mode:
                remove_compiled(Path(self.get_package_dir("") or "."))


# Placeholders: they make the distribution (and its wheel) platform-specific; BuildExt replaces
# them with mypyc's extensions when it is finalized for a build (metadata-only runs skip mypyc).
placeholders = [] if MODE == "0" else [Extension(module_name(p), [p]) for p in HOT]
setup(ext_modules=placeholders, cmdclass={"build_ext": BuildExt, "build_py": BuildPy})
