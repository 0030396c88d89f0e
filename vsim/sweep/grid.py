"""Sweep grids: factorial grids of scenarios, per-point seeding, the run of every point."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from vsim.demands import mva_point
from vsim.engine import DEFAULT_MAX_IOS, check_run_options, simulate
from vsim.errors import ConfigError
from vsim.fio import check_percentiles
from vsim.profile import Profile, load_profile, profile_digest
from vsim.progress import Progress
from vsim.results import ROW_PERCENTILES
from vsim.scenario import Scenario, Workload, design
from vsim.sweep.executors import run_unordered
from vsim.sweep.table import resimulate
from vsim.sweep.workspace import Workspace, point_id

__all__ = [
    "SEED_GRID",
    "WORKLOAD_FACTORS",
    "SweepResult",
    "grid",
    "run_points",
    "sweep",
]

# With no options, `vsim sweep` predicts the seed's table: both designs, sequential read and the
# write table's rw=rw job, bs 512, iodepth 1-3, on the seed-2011 profile.
SEED_GRID: dict[str, Any] = {
    "design": ["virtio-blk", "vhost-blk"],
    "rw": ["read", "rw"],
    "bs": [512],
    "iodepth": [1, 2, 3],
}
WORKLOAD_FACTORS = ("rw", "bs", "iodepth", "numjobs", "rwmixread", "rate_iops")
SCENARIO_FACTORS = ("guest_vcpus",)


def grid(base: Scenario, factors: Mapping[str, Sequence[Any]]) -> list[Scenario]:
    """Every combination of factors applied to base, in the order the factors are given.

    Factors are `design` (preset names), workload fields (rw, bs, iodepth, numjobs, rwmixread,
    rate_iops as (reads, writes) tuples) and scenario fields (guest_vcpus).
    """
    names = list(factors)
    out = []
    for combo in itertools.product(*(factors[n] for n in names)):
        s = base
        wl = {n: v for n, v in zip(names, combo, strict=True) if n in WORKLOAD_FACTORS}
        if wl:
            s = replace(s, workload=replace(s.workload, **wl))
        sc = {n: v for n, v in zip(names, combo, strict=True) if n in SCENARIO_FACTORS}
        if sc:
            s = replace(s, **sc)
        if "design" in names:
            s = replace(s, design=design(combo[names.index("design")]))
        out.append(s)
    return out


def _run_point(
    args: tuple[Scenario, int, str, Profile, dict[str, Any], tuple[float, ...]],
) -> list[dict[str, Any]]:
    scenario, seed, method, profile, run_opts, percentiles = args
    if method == "mva":
        w = scenario.workload
        row: dict[str, Any] = {
            "profile": scenario.profile,
            "design": scenario.design.name,
            "rw": w.rw,
            "dir": "+".join(w.directions),
            "bs": w.bs,
            "iodepth": w.iodepth,
            "numjobs": w.numjobs,
            "guest_vcpus": scenario.guest_vcpus or profile.guest_vcpus,
            "seed": seed,
            "method": "mva",
        }
        m = mva_point(profile, scenario)
        row.update(iops=m["iops"], bw_kib_s=m["iops"] * w.bs / 1024)
        row.update({k: v for k, v in m.items() if k != "iops"})
        row["extrapolated"] = profile.disk.extrapolated(w.bs, w.directions)
        return [row]
    res = simulate(scenario, seed, profile=profile, **run_opts)
    return [{**r, "method": "des"} for r in res.rows(percentiles)]


@dataclass
class SweepResult:
    """The tidy table of a sweep: one row per point and direction."""

    rows: list[dict[str, Any]]
    resumed: int = 0  # points taken from a workspace instead of being run

    def to_dataframe(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame."""
        return pd.DataFrame(self.rows)

    def plot(self, kind: str = "iops", **kw: Any) -> Any:
        """A matplotlib Figure of the sweep (kind: iops, latency, cdf or breakdown)."""
        from vsim.plots import plot_kind  # matplotlib: only when a figure is asked for

        df = self.to_dataframe()
        if kind in ("cdf", "breakdown") and "results" not in kw:
            kw["results"] = resimulate(df)
        return plot_kind(kind, df, **kw)

    def _repr_html_(self) -> str:
        return str(self.to_dataframe().to_html(index=False, float_format=lambda v: f"{v:.1f}"))


def run_points(
    scenarios: Sequence[Scenario],
    *,
    seed: int = 1,
    method: str = "des",
    jobs: int = 1,
    scheduler: str | None = None,
    precision: float | None = None,
    max_ios: int = DEFAULT_MAX_IOS,
    out: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[int, int, Scenario], None] | None = None,
    percentiles: Sequence[float] = ROW_PERCENTILES,
) -> SweepResult:
    """Run every scenario; rows come back in scenario order whatever the executor.

    percentiles: the clat / lat percentile columns of each row (vsim.results.Result.rows).

    precision / max_ios: run-length control for points without number_ios or runtime (see
    vsim.engine.simulate). jobs: worker processes; scheduler: a Dask scheduler address.
    out: a workspace directory that receives each point as it finishes; with resume, points
    already there (and intact) are not run again.
    """
    if method not in ("des", "mva"):
        raise ConfigError(f"unknown method {method!r} (des or mva)")
    check_run_options(seed, precision, max_ios)  # before any worker starts
    profiles: dict[str, Profile] = {}
    digests: dict[str, str] = {}
    for s in scenarios:
        if s.profile not in profiles:
            profiles[s.profile] = load_profile(s.profile)
            digests[s.profile] = profile_digest(profiles[s.profile])
    opts = {"precision": precision, "max_ios": max_ios}
    pcts = check_percentiles(percentiles)
    ws = Workspace(out, resume=resume) if out is not None else None
    keyed: dict[str, Any] = {**opts, "method": method}
    if pcts != ROW_PERCENTILES:  # (a point at the default keeps its id from before)
        keyed["percentiles"] = list(pcts)
    ids = [point_id(s, seed, keyed, digests[s.profile]) for s in scenarios]
    done: dict[int, list[dict[str, Any]]] = {}
    if ws is not None:
        for i, pid in enumerate(ids):
            rows = ws.load(pid)
            if rows is not None:
                done[i] = rows
    todo = [i for i in range(len(scenarios)) if i not in done]
    work = [(scenarios[i], seed, method, profiles[scenarios[i].profile], opts, pcts) for i in todo]
    finished = len(done)
    for k, rows in run_unordered(_run_point, work, jobs=jobs, scheduler=scheduler):
        i = todo[k]
        done[i] = rows
        if ws is not None:
            ws.save(ids[i], rows)
        finished += 1
        if progress:
            progress(finished, len(scenarios), scenarios[i])
    result = SweepResult([r for i in range(len(scenarios)) for r in done[i]])
    result.resumed = len(scenarios) - len(todo)
    return result


def sweep(
    *,
    design: Sequence[str] = SEED_GRID["design"],
    rw: Sequence[str] = SEED_GRID["rw"],
    bs: Sequence[int] = SEED_GRID["bs"],
    iodepth: Sequence[int] = SEED_GRID["iodepth"],
    profile: str = "seed-2011",
    seed: int = 1,
    number_ios: int | None = None,
    runtime: float | None = None,
    ramp_time: float = 0.0,
    method: str = "des",
    jobs: int = 1,
    scheduler: str | None = None,
    precision: float | None = None,
    max_ios: int = DEFAULT_MAX_IOS,
    out: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[int, int, Scenario], None] | bool | None = None,
    workload: Workload | None = None,
    rate_iops: Sequence[int] | None = None,
    percentiles: Sequence[float] = ROW_PERCENTILES,
) -> SweepResult:
    """Expand a grid (default: the seed's table) and run it; see `grid` and `run_points`.

    workload: the base job (e.g. ``JobSpec.workload()`` of a fio job file, or one with
    thinktime) whose rw, bs and iodepth the grid replaces; its run length gives way to
    number_ios / runtime when those are given. rate_iops: a factor of open-loop rates, each
    applied to every direction the job issues (fio's single-value rate_iops).
    """
    w = workload if workload is not None else Workload(ramp_time=ramp_time)
    if workload is None or number_ios is not None or runtime is not None:
        w = replace(w, number_ios=number_ios, runtime=runtime)
    base = Scenario(workload=w, profile=profile)
    factors: dict[str, list[Any]] = {
        "design": list(design),
        "rw": list(rw),
        "bs": list(bs),
        "iodepth": list(iodepth),
    }
    if rate_iops is not None:
        factors["rate_iops"] = [(int(r), int(r)) for r in rate_iops]
    points = grid(base, factors)
    bar = None
    if progress is None or isinstance(progress, bool):
        bar = Progress(len(points), "vsim sweep", enabled=progress)
        progress = bar.for_points
    try:
        return run_points(
            points,
            seed=seed,
            method=method,
            jobs=jobs,
            scheduler=scheduler,
            precision=precision,
            max_ios=max_ios,
            out=out,
            resume=resume,
            progress=progress,
            percentiles=percentiles,
        )
    finally:
        if bar is not None:
            bar.close()
