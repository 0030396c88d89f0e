"""The package's shape: imports run one way, few modules at the top, every module says its API."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "vsim"
MAX_TOP_MODULES = 18
# Imports inside functions are for heavy optional dependencies only: the figures (matplotlib).
LAZY_ALLOWED = ("vsim.plots",)


def modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = f
    return out


def _resolve(target: str, mods: dict[str, Path]) -> str:
    while target and target not in mods:
        target = target.rpartition(".")[0]
    return target


def _imported(node: ast.AST, mods: dict[str, Path]) -> list[str]:
    """The vsim modules an import statement imports (none for other statements)."""
    targets: list[str] = []
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
        subs = [f"{node.module}.{a.name}" for a in node.names]
        targets = [t for t in subs if t in mods] or [node.module]
    return [_resolve(t, mods) for t in targets if t.startswith("vsim")]


def imports() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """vsim-internal imports of every module (TYPE_CHECKING blocks excluded), and those made
    inside functions: (module, imported, line)."""
    mods = modules()
    edges: dict[str, set[str]] = {name: set() for name in mods}
    lazy: list[tuple[str, str, int]] = []
    for name, path in mods.items():
        todo: list[tuple[ast.AST, bool]] = [(ast.parse(path.read_text()), False)]
        while todo:
            node, in_function = todo.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and getattr(child.test, "id", "") == "TYPE_CHECKING":
                    continue
                for r in _imported(child, mods):
                    if r and r != name:
                        edges[name].add(r)
                        if in_function:
                            lazy.append((name, r, getattr(child, "lineno", 0)))
                inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                todo.append((child, inner))
    return edges, lazy


def test_no_import_loop_among_vsim_modules() -> None:
    edges, _ = imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    loops: list[list[str]] = []

    def walk(v: str, path: list[str]) -> None:
        state[v] = 1
        for w in sorted(edges[v]):
            if state.get(w) == 1:
                loops.append([*path[path.index(w) :], w])
            elif w not in state:
                walk(w, [*path, w])
        state[v] = 2

    for v in sorted(edges):
        if v not in state:
            walk(v, [v])
    assert loops == []


def test_imports_inside_functions_only_for_the_figures() -> None:
    _, lazy = imports()
    wrong = [x for x in lazy if not x[1].startswith(LAZY_ALLOWED)]
    assert wrong == [], "a function-level import of a vsim module that is not a figure module"
    assert len(lazy) <= 6


def test_a_small_top_level() -> None:
    top = [p for p in PKG.glob("*.py")]
    assert len(top) <= MAX_TOP_MODULES, sorted(p.name for p in top)


def test_every_module_declares_its_api() -> None:
    for name in modules():
        mod = importlib.import_module(name)
        names = getattr(mod, "__all__", None)
        assert isinstance(names, list), f"{name} has no __all__"
        missing = [n for n in names if not hasattr(mod, n)]
        assert missing == [], f"{name}.__all__ names what it lacks: {missing}"


def test_pyproject_ships_every_package() -> None:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(doc["tool"]["setuptools"]["packages"])
    packages = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert packages <= listed, sorted(packages - listed)


def test_every_module_has_a_one_line_docstring() -> None:
    for name, path in modules().items():
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=False)
        assert doc, f"{name} has no docstring"
        assert len(doc.splitlines()[0]) <= 100, name
