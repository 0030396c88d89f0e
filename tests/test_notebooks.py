"""Every notebook in notebooks/ runs top to bottom (nbclient), from the repo root as cwd."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300  # per cell: a guard against a hang, not a speed requirement
# Notebooks that measure this machine need these programs (skipped with the reason without).
NEEDS = {"03-calibrate-this-machine": ("fio",)}

_missing = [m for m in ("nbclient", "nbformat", "ipykernel") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(_missing),
    reason=f"executing notebooks needs {', '.join(_missing)} (pip install nbclient ipykernel)",
)


def test_notebooks_are_found() -> None:
    assert [p.name for p in NOTEBOOKS][:2] == ["01-quickstart.ipynb", "02-seed-2011.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    import nbformat

    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs"
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "IOS =" in first.source, f"{path.name}: the first code cell sets the budget IOS"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path) -> None:
    import nbformat

    absent = [prog for prog in NEEDS.get(path.stem, ()) if shutil.which(prog) is None]
    if absent:
        pytest.skip(f"{path.stem} measures this machine with {absent[0]}, not installed here")
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
        extra_arguments=["--HistoryManager.enabled=False"],
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
        mp.chdir(ROOT)
        client.execute()
    images = sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    errors = [
        out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
        if out.output_type == "error"
    ]  # fmt: skip
    assert not errors
    assert images >= 2, f"{path.name}: expected plots in the outputs, found {images}"
