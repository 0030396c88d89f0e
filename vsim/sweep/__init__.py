"""Sweeps: factorial grids of scenarios run serially, in a process pool or on Dask, resumable."""

from vsim.sweep.executors import default_jobs, run_unordered
from vsim.sweep.grid import SEED_GRID, WORKLOAD_FACTORS, SweepResult, grid, run_points, sweep
from vsim.sweep.table import load_table, matching_measured, resimulate
from vsim.sweep.workspace import Workspace, point_id

__all__ = [
    "SEED_GRID",
    "WORKLOAD_FACTORS",
    "SweepResult",
    "Workspace",
    "default_jobs",
    "grid",
    "load_table",
    "matching_measured",
    "point_id",
    "resimulate",
    "run_points",
    "run_unordered",
    "sweep",
]
