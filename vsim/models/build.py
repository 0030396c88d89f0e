"""Which build of the hot model modules runs: mypyc's extensions, or their pure-Python sources."""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "BUILD",
    "COMPILED",
    "FORCED",
    "MANIFEST",
    "PURE",
    "STALE",
    "Choice",
    "SourceFinder",
    "StaleBuildWarning",
    "choose",
    "describe",
    "stale_reason",
]

COMPILED = "compiled (mypyc)"
PURE = "pure Python"
STALE = "pure Python (stale compiled modules ignored)"
FORCED = "pure Python (VSIM_PURE=1)"
MANIFEST = "_compiled.json"  # written by setup.py beside the extensions it built
HERE = Path(__file__).resolve().parent
PACKAGE = __name__.rpartition(".")[0]  # vsim.models
REBUILD = "re-run `pip install -e .` (or `pip install .`) to rebuild them"


class StaleBuildWarning(UserWarning):
    """The compiled models do not match their sources: every one of them runs as pure Python."""


@dataclass(frozen=True)
class Choice:
    """The build that runs, the modules to load from their .py (name -> path), and why."""

    build: str
    sources: dict[str, Path] = field(default_factory=dict)
    reason: str = ""  # stale: the first difference between the build and the sources
    manifest: dict[str, Any] = field(default_factory=dict)


class SourceFinder(importlib.abc.MetaPathFinder):
    """Finds exactly the given modules at their .py, ahead of the extension beside them."""

    def __init__(self, sources: Mapping[str, Path]) -> None:
        self.sources = dict(sources)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        """The source spec of a compiled module, None for every other module."""
        source = self.sources.get(fullname)
        return None if source is None else importlib.util.spec_from_file_location(fullname, source)


def compiled_modules(directory: Path) -> dict[str, Path]:
    """The modules with an extension module beside their .py, in the package directory and
    in its parent package (vsim.kernel is compiled too): name -> the .py."""
    found: dict[str, Path] = {}
    parent = PACKAGE.rpartition(".")[0]
    for where, package in ((directory.parent, parent), (directory, PACKAGE)):
        names = {p.name for p in where.iterdir()}
        found.update(
            (f"{package}.{py[:-3]}", where / py)
            for py in sorted(names)
            if py.endswith(".py")
            and any(py[:-3] + s in names for s in importlib.machinery.EXTENSION_SUFFIXES)
        )
    return found


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """setup.py's record of the build (None when missing or unreadable)."""
    try:
        doc = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(doc, dict) and isinstance(doc.get("modules"), dict)
    return doc if ok else None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shared_missing(shared: object) -> bool:
    """Whether the shared library the manifest names cannot be imported (its file is absent, or
    an editable install's finder does not map it)."""
    return isinstance(shared, str) and importlib.util.find_spec(shared) is None


def stale_reason(
    directory: Path, compiled: Mapping[str, Path], manifest: Mapping[str, Any] | None
) -> str | None:
    """Why the extensions in directory cannot run with their sources (None: they can)."""
    if manifest is None:
        return f"the build manifest {directory / MANIFEST} is missing or unreadable"
    recorded = manifest["modules"]
    for name in sorted({*compiled, *recorded}):
        source = compiled.get(name)
        if source is None:
            return f"the compiled module {name} is missing"
        if name not in recorded:
            return f"{source} was not compiled with the others"
        if _sha256(source) != recorded[name]:
            return f"{source} changed since it was compiled"
    if _shared_missing(manifest.get("shared")):
        return f"the shared library {manifest['shared']} cannot be imported"
    return None


def choose(directory: Path, environ: Mapping[str, str]) -> Choice:
    """The build to run from the package directory's extensions, manifest and sources."""
    compiled = compiled_modules(directory)
    if environ.get("VSIM_PURE") == "1":
        return Choice(FORCED, compiled)
    if not compiled:
        return Choice(PURE)
    manifest = read_manifest(directory)
    reason = stale_reason(directory, compiled, manifest)
    if reason is None:
        return Choice(COMPILED, manifest=dict(manifest or {}))
    return Choice(STALE, compiled, reason)


def _apply(choice: Choice) -> str:
    """Load the chosen modules from their .py (mypyc compiled them as one group that uses each
    other's native classes: all or none), warn once when stale; the build's name."""
    if choice.sources:
        sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "SourceFinder"]
        sys.meta_path.insert(0, SourceFinder(choice.sources))
    if choice.build == STALE:
        warnings.warn(
            f"vsim: {choice.reason}: all the compiled models run as pure Python (2-3x "
            f"slower); {REBUILD}, or set VSIM_PURE=1",
            StaleBuildWarning,
            stacklevel=2,
        )
    return choice.build


def describe() -> str:
    """One line on the build that runs and where its modules are."""
    if CHOICE.build == COMPILED:
        m = CHOICE.manifest
        return (
            f"{COMPILED}: {len(m['modules'])} model modules built by mypy {m.get('mypy', '?')} "
            f"for Python {m.get('python', '?')}, in {HERE}"
        )
    if CHOICE.build == STALE:
        return f"{STALE}: {CHOICE.reason}; {REBUILD}"
    if CHOICE.build == FORCED:
        return f"{FORCED}: the model sources in {HERE}"
    return f"{PURE}: no compiled models in {HERE} (an install with a C compiler builds them)"


CHOICE = choose(HERE, os.environ)
BUILD = _apply(CHOICE)
