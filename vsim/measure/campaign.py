"""Measurement campaigns on the reference backend: interleaved runs or rounds, microbenchmarks."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from vsim.__version__ import __version__
from vsim.errors import ConfigError
from vsim.fio import fio_json, read_fio_json
from vsim.fio.jobfile import job_options
from vsim.measure import layout
from vsim.measure.dataset import load_measured, point_ci
from vsim.measure.host import cpu_ticks, steal_pct
from vsim.measure.placement import (
    FREE,
    check_cpus,
    parse_placement,
    placement_tag,
    resolve_placement,
)
from vsim.measure.protocol import (
    DEFAULT_MAX_ROUNDS,
    PRECISION_RUNTIME,
    ROUND_KEYS,
    ci_pct,
    converged,
    cv_pct,
    drift_pct,
    open_points,
    round_order,
    stop_reason,
)
from vsim.outputs import made_dirs, write_atomic
from vsim.reference.microbench import microbench
from vsim.reference.runner import check_guest, engine_for, run
from vsim.scenario import Workload, design

__all__ = [
    "Campaign",
    "Point",
    "head",
    "measure",
    "measure_microbench",
    "provenance",
    "record_fio_json",
    "run_name",
    "summarise",
    "write_provenance",
]


class Point(NamedTuple):
    """One point of a campaign: a workload (without the design) at a CPU placement."""

    workload: Workload
    placement: str = FREE

    @property
    def key(self) -> tuple[Any, ...]:
        """The point's values of :data:`vsim.measure.protocol.ROUND_KEYS`."""
        w = self.workload
        return (w.rw, w.bs, w.iodepth, w.numjobs, w.rwmixread, self.placement)


@dataclass(frozen=True, kw_only=True)
class Campaign:
    """A measurement grid: every design x rw x bs x iodepth x numjobs x placement, interleaved.

    `guest_vcpus` is the reference guest's vCPU count for the whole campaign (see
    vsim.reference.run: a multiqueue design uses min(queues, guest_vcpus) queues).

    Without `precision`, every point runs `repeat` times (repeats outermost, see `plan`). With
    `precision`, the points run in rounds (see `round_plan`) until the IOPS CI of every design
    of every point is within `precision` x its mean (after `repeat` rounds at least), the
    `budget` of wall time (seconds) is spent, or `max_repeat` rounds have run. `runtime`
    defaults to 5 s, or to PRECISION_RUNTIME (1 s) with a precision; `budget` and `max_repeat`
    count only with one. `placements` are labels of vsim.measure.placement (``free``: the
    scheduler places the threads).
    """

    designs: tuple[str, ...] = ("virtio-blk", "vhost-blk")
    rws: tuple[str, ...] = ("randread",)
    bss: tuple[int, ...] = (4096,)
    iodepths: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    numjobs: tuple[int, ...] = (1,)
    guest_vcpus: int = 1
    iodepth_batch_submit: int = 1  # the guest's I/Os per io_submit (fio's option), every point
    placements: tuple[str, ...] = (FREE,)
    runtime: float | None = None
    ramp_time: float = 0.0
    repeat: int = 3
    precision: float | None = None
    budget: float | None = None
    max_repeat: int = DEFAULT_MAX_ROUNDS
    engine: str | None = None  # None: each design's own (Design.engine)
    directory: str | None = None
    file: str | None = None
    allow_overwrite: bool = False
    verify: bool = False
    size: int = 64 << 20
    trace_ios: int | None = None  # keep the first N I/Os of each trace (None: all)
    # A fio job (e.g. a job file's) whose options beyond the grid's every point takes:
    # rate_iops, rate_process, thinktime, iodepth_batch_complete_min/max.
    job: Workload | None = None

    def __post_init__(self) -> None:
        for d in self.designs:
            design(d)  # unknown names fail before any run
        if not self.designs or not self.rws or not self.bss or not self.iodepths:
            raise ConfigError("a campaign needs at least one design, rw, bs and iodepth")
        if not self.numjobs:
            raise ConfigError("a campaign needs at least one numjobs")
        if not self.placements:
            raise ConfigError("placements: none given (free lets the scheduler place threads)")
        labels = tuple(parse_placement(p) for p in self.placements)
        twice = sorted({p for p in labels if labels.count(p) > 1})
        if twice:
            raise ConfigError(f"placement {twice[0]} is given twice")
        object.__setattr__(self, "placements", labels)
        if self.runtime is None:
            short = self.precision is not None
            object.__setattr__(self, "runtime", PRECISION_RUNTIME if short else 5.0)
        if self.precision is None:
            if self.repeat < 1:
                raise ConfigError(f"repeat must be >= 1, got {self.repeat}")
            if self.budget is not None:
                raise ConfigError("budget needs a precision (the budget stops the rounds)")
        else:
            if not 0 < self.precision < math.inf:
                raise ConfigError(f"precision must be a finite number > 0, got {self.precision}")
            if self.repeat < 2:
                raise ConfigError(
                    f"repeat must be >= 2 with a precision (a CI needs 2 runs), got {self.repeat}"
                )
            if self.max_repeat < self.repeat:
                raise ConfigError(
                    f"max_repeat must be >= repeat ({self.repeat}), got {self.max_repeat}"
                )
            if self.budget is not None and not 0 < self.budget < math.inf:
                raise ConfigError(f"budget must be a finite number > 0 seconds, got {self.budget}")
        if not 0 < self.seconds < math.inf:
            raise ConfigError(f"runtime must be a finite number > 0 seconds, got {self.runtime}")
        if self.trace_ios is not None and self.trace_ios < 0:
            raise ConfigError(f"trace_ios must be >= 0 (0: no traces), got {self.trace_ios}")

        for d in self.designs:  # an engine that contradicts a design fails before any run
            engine_for(design(d), self.engine)
        for w in self.workloads():  # a guest the reference cannot run fails before any run
            for d in self.designs:
                check_guest(w, design(d), self.guest_vcpus)

    @property
    def seconds(self) -> float:
        """The run length (`runtime` with its default resolved)."""
        assert self.runtime is not None  # resolved in __post_init__
        return float(self.runtime)

    def workloads(self) -> list[Workload]:
        """The grid's workloads (without the design), in measurement order."""
        base = self.job if self.job is not None else Workload()
        return [
            replace(
                base,
                rw=rw,
                bs=bs,
                iodepth=qd,
                numjobs=jobs,
                number_ios=None,
                runtime=self.seconds,
                ramp_time=self.ramp_time,
                size=self.size,
                iodepth_batch_submit=self.iodepth_batch_submit,
            )
            for rw in self.rws
            for bs in self.bss
            for qd in self.iodepths
            for jobs in self.numjobs
        ]

    def points(self) -> list[Point]:
        """The grid's points: every workload at every placement (placements innermost)."""
        return [Point(w, p) for w in self.workloads() for p in self.placements]

    def plan(self) -> list[tuple[int, Point, str]]:
        """(repeat, point, design) in run order without a precision: repeats outermost,
        designs innermost.

        Designs alternate within a point (A B A B ...) and each point's repeats are spread over
        the whole campaign, so the machine's drift over minutes hits every design alike.
        """
        return [(r, p, d) for r in range(self.repeat) for p in self.points() for d in self.designs]

    def round_plan(self, index: int, open_keys: Collection[Any]) -> list[tuple[Point, str]]:
        """(point, design) of round `index` with a precision: the open points (their `key` in
        `open_keys`), each point's designs back to back, A B in even rounds, B A in odd ones."""
        return round_order(index, self.points(), self.designs, open_keys, key=lambda p: p.key)


def run_name(repeat: int, w: Workload, d: str, prefix: str = "", placement: str = FREE) -> str:
    """A file stem for one run (several jobs add ``-j<numjobs>``, a pinned placement
    ``-p<cpus>``: ``-p0.1.0``)."""
    tag = placement_tag(placement)
    jobs = f"-j{w.numjobs}" if w.numjobs > 1 else ""
    return f"{prefix}{d}-{w.rw}-bs{w.bs}-qd{w.iodepth}{jobs}{tag}-r{repeat}"


def provenance(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where and how a measurement was taken."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    doc: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_model": cpu,
        "cores": os.cpu_count() or 0,
        "python": platform.python_version(),
        "vsim": __version__,
        "command": shlex.join(["vsim", *sys.argv[1:]]) if sys.argv else "",
    }
    doc.update(extra or {})
    return doc


def record_fio_json(
    record: Any,
    w: Workload,
    design_name: str,
    engine: str,
    placement: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A reference RunRecord as fio's json+ document (the same reader takes fio's own); the
    `placement` (its label and the CPU of every thread) goes into the vsim block."""
    samples: dict[str, Any] = {}
    for d, code in (("read", 0), ("write", 1)):
        m = record.ddir == code
        if m.any():
            samples[d] = {"slat_ns": record.slat_ns[m], "clat_ns": record.clat_ns[m]}
    # the reference runs for runtime over its region, as fio's time_based (vsim.fio.jobfile)
    opts = job_options(w, ioengine=f"vsim-reference-{engine}", direct=True, time_based=True)
    job = {"jobname": design_name, "elapsed_s": record.runtime_s, "options": opts, **samples}
    doc = fio_json([job], timestamp=int(record.meta.get("start_time", 0)))
    doc["fio version"] = "vsim-reference"
    doc["vsim"] = {
        "design": {"name": design_name},
        "engine": engine,
        "counters": {k: int(v) for k, v in record.counters.items()},
    }
    if placement is not None:
        doc["vsim"]["placement"] = placement
    vcpus = record.meta.get("guest_vcpus", 1)
    if vcpus != 1:
        doc["vsim"]["guest_vcpus"] = vcpus
    return doc


def head(record: Any, n: int | None) -> Any:
    """The record with only its first n I/Os (a sample of the trace); n=None keeps all."""
    if n is None or n >= record.total_ios:
        return record
    per_io = {f.name for f in fields(record)} - {
        "stages",
        "thread_names",
        "start_ns",
        "end_ns",
        "counters",
        "meta",
    }
    cut = {k: getattr(record, k)[:n] for k in per_io}
    stages = {k: v[:n] for k, v in record.stages.items()}
    meta = {**record.meta, "trace_sample": f"first {n} of {record.total_ios} I/Os"}
    return replace(record, **cut, stages=stages, meta=meta)


def summarise(dataset: Path, precision: float | None = None, *, min_runs: int = 2) -> pd.DataFrame:
    """Mean and 95 % CI over repeats of IOPS and latencies, per point of a measured dataset.

    Besides them: ``runs`` (the runs with an IOPS), ``iops_cv_pct`` (the run-to-run CV),
    ``iops_ci_pct`` (the CI half-width in % of the mean), ``iops_drift_pct`` (the least-squares
    slope of IOPS against the round index, times the rounds spanned, in % of the mean: how far
    the point moved over the campaign; the repeat number is the round), ``steal_pct`` (the
    mean share of the machine's CPU time its hypervisor stole during the point's runs, from
    /proc/stat; NaN when not recorded) and ``converged``
    (`min_runs` runs or more and the CI within `precision` x the mean; NA without a precision).
    """
    pts = load_measured(dataset).points
    keys = ["design", "rw", "dir", "bs", "iodepth", "numjobs", "placement"]
    rows = []
    for key, g in pts.groupby(keys, sort=False):
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["repeats"] = len(g)
        iops = g["iops"].to_numpy(dtype=float)
        row["runs"] = int((~np.isnan(iops)).sum())
        for m in ("iops", "lat_mean_us", "clat_mean_us", "slat_mean_us", "lat_p99_us"):
            ci = point_ci(g, m)
            row[m] = ci.mean
            row[f"{m}_ci95"] = (ci.high - ci.low) / 2
        row["iops_cv_pct"] = cv_pct(iops)
        row["iops_ci_pct"] = ci_pct(iops)
        row["iops_drift_pct"] = drift_pct(iops, g["repeat"].to_numpy(dtype=float))
        steal = pd.to_numeric(g.get("steal_pct", pd.Series(dtype=float)), errors="coerce")
        row["steal_pct"] = float(steal.mean()) if steal.notna().any() else math.nan
        row["converged"] = (
            pd.NA if precision is None else converged(iops, precision, min_runs=min_runs)
        )
        rows.append(row)
    out = pd.DataFrame(rows)
    out["converged"] = out["converged"].astype("boolean")
    return out


def _run_rows(doc: dict[str, Any], p: Point, design_name: str, repeat: int) -> list[dict[str, Any]]:
    """A run's rows for the stop rule (one per direction): its point, design and IOPS."""
    (job,) = read_fio_json(doc)
    w = p.workload
    return [
        {
            "design": design_name,
            "rw": w.rw,
            "dir": "total" if d == "mixed" else d,
            "bs": w.bs,
            "iodepth": w.iodepth,
            "numjobs": w.numjobs,
            "rwmixread": w.rwmixread,
            "placement": p.placement,
            "repeat": repeat,
            "iops": st.iops,
        }
        for d, st in job.directions.items()
    ]


def measure(
    c: Campaign,
    out: Path,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    append: bool = False,
) -> pd.DataFrame:
    """Run the campaign on the reference backend; write a dataset `vsim validate` reads.

    out/: one fio json+ file per run (runs/), its trace (traces/*.npz), manifest.csv,
    provenance.toml and summary.csv. Each run is written (atomically) as soon as it finishes, so
    an interrupted campaign keeps every finished run; a campaign that fails before its first run
    leaves nothing. An existing dataset is refused unless `append`: then its runs stay, the new
    ones take the next repeat numbers, and this campaign's provenance goes beside the earlier
    (with a precision, the earlier runs count in the stop rule too). Every placement's CPUs
    must exist on this machine. The summary's ``attrs["campaign"]`` tells the rounds run, the
    wall time (s), why it stopped (``repeat`` without a precision), the points and how many
    converged (with a precision).
    """
    allowed = os.sched_getaffinity(0)
    for label in c.placements:
        check_cpus(label, allowed, "this machine")
    layout.check_dataset(out, "runs", append=append)
    manifest = layout.manifest_rows(out / layout.MANIFEST)
    first: dict[tuple[Any, ...], int] = {}
    seen: list[dict[str, Any]] = []  # every run's IOPS so far, for the stop rule
    if manifest:
        pts = load_measured(out).points
        first = layout.first_repeats(pts, ["design", "rw", "bs", "iodepth", "placement"])
        seen = pts[["design", "dir", *ROUND_KEYS, "repeat", "iops"]].to_dict("records")
    prov = layout.provenance_name(out)
    runs_dir, traces = out / layout.RUNS, out / layout.TRACES
    done = 0
    n_open: int | None
    t0 = time.monotonic()
    with contextlib.ExitStack() as made:  # the dataset's directories come with its first run

        def one(rep: int, p: Point, dname: str, total: int, note: str) -> None:
            nonlocal done
            w = p.workload
            d = design(dname)
            guest, cpus = resolve_placement(p.placement, d.threads)
            eng = engine_for(d, c.engine)
            ticks = cpu_ticks()
            rec = run(
                w,
                d,
                engine=eng,
                directory=c.directory,
                file=c.file,
                allow_overwrite=c.allow_overwrite,
                cpus=cpus,
                guest_cpu=guest,
                guest_vcpus=c.guest_vcpus,
                verify=c.verify,
                scratch_size=c.size,
            )
            r = first.get((dname, w.rw, w.bs, w.iodepth, p.placement), 0) + rep
            name = run_name(r, w, dname, placement=p.placement)
            if done == 0:
                made.enter_context(made_dirs(runs_dir))
            placed = {
                "label": p.placement,
                "guest_cpu": guest,
                "backend_cpus": list(cpus) if cpus is not None else None,
                "threads": list(d.thread_names),
            }
            steal = steal_pct(ticks, cpu_ticks())
            doc = record_fio_json(rec, w, dname, eng, placed)
            doc["vsim"]["host"] = {"steal_pct": steal}
            write_atomic(runs_dir / f"{name}.json", json.dumps(doc, separators=(",", ":")))
            if c.trace_ios != 0:
                traces.mkdir(exist_ok=True)
                write_atomic(traces / f"{name}.npz", head(rec, c.trace_ios).save)
            manifest.append(
                layout.manifest_row(
                    f"{layout.RUNS}/{name}.json",
                    dname,
                    r,
                    note=eng,
                    placement=p.placement,
                    steal_pct=steal,
                )
            )
            layout.write_manifest(out / layout.MANIFEST, manifest)
            if done == 0:
                write_provenance(out, c, name=prov)
            seen.extend(_run_rows(doc, p, dname, r))
            done += 1
            if progress:
                progress(done, total, f"{note}{name}")

        if c.precision is None:
            plan = c.plan()
            for rep, p, dname in plan:
                one(rep, p, dname, len(plan), "")
            rounds, why, n_open = c.repeat, "repeat", None
        else:
            rounds, why, n_open = _rounds(c, c.precision, one, seen, t0)
    summary = summarise(out, c.precision, min_runs=c.repeat if c.precision else 2)
    summary = summary.sort_values(["rw", "bs", "iodepth", "placement", "dir", "design"])
    layout.write_csv(out / layout.SUMMARY, summary)
    n_points = len(c.points())
    summary.attrs["campaign"] = {
        "rounds": rounds,
        "wall_s": time.monotonic() - t0,
        "stopped": why,
        "points": n_points,
        "converged": None if n_open is None else n_points - n_open,
    }
    return summary


def _rounds(
    c: Campaign,
    precision: float,
    one: Callable[[int, Point, str, int, str], None],
    seen: list[dict[str, Any]],
    t0: float,
) -> tuple[int, str, int]:
    """Run rounds until the stop rule says stop: (rounds run, why, points still open)."""
    keys = {p.key for p in c.points()}

    def still_open() -> set[tuple[Any, ...]]:
        df = pd.DataFrame(seen, columns=["design", "dir", *ROUND_KEYS, "repeat", "iops"])
        found = open_points(df, precision, min_runs=c.repeat, designs=c.designs, universe=keys)
        return found & keys  # an appended dataset's other points are not this campaign's

    rounds, ran, last_s, last_runs = 0, 0, 0.0, 0
    open_keys = still_open()
    while True:
        # every point runs the minimum rounds (an appended dataset's runs may close it sooner)
        plan = c.round_plan(rounds, keys if rounds < c.repeat else open_keys)
        why = stop_reason(
            rounds=rounds,
            open_count=len(open_keys),
            min_rounds=c.repeat,
            max_rounds=c.max_repeat,
            elapsed_s=time.monotonic() - t0,
            budget_s=c.budget,
            last_round_s=last_s,
            last_round_runs=last_runs,
            next_round_runs=len(plan),
        )
        if why is not None:
            return rounds, why, len(open_keys)
        started = time.monotonic()
        # the progress bar's bound: this round, then as many rounds of its size as may follow
        bound = ran + len(plan) * (c.max_repeat - rounds)
        note = f"round {rounds + 1}, {len(open_keys)}/{len(keys)} points open: "
        for p, dname in plan:
            one(rounds, p, dname, bound, note)
        ran += len(plan)
        last_s, last_runs = time.monotonic() - started, len(plan)
        rounds += 1
        open_keys = still_open()


def write_provenance(
    out: Path, c: Campaign, *, name: str = layout.PROVENANCE, **extra: Any
) -> None:
    """Where and how the campaign `c` was measured, as out/NAME."""
    doc = provenance(
        {
            "campaign": {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in c.__dict__.items()
                if v is not None and k != "job"
            }
            | ({"job": job_options(c.job)} if c.job is not None else {}),
            **extra,
        }
    )
    layout.write_toml(out / name, doc)


def measure_microbench(
    c: Campaign,
    out: Path,
    *,
    n: int = 200,
    names: list[str] | None = None,
    append: bool = False,
) -> pd.DataFrame:
    """Run the microbenchmarks (all, or `names`); write out/microbench/<name>.npy samples and
    the summary CSV. An existing microbench/ part is refused unless `append` or `names` (which
    add to it): the other benchmarks' files and rows stay, a benchmark run again replaces its
    own samples, and this run's provenance goes beside the earlier (provenance-<names>.toml)."""

    mb_dir = out / layout.MICROBENCH
    layout.check_dataset(out, "microbench", append=append or names is not None)
    summary = mb_dir / layout.SUMMARY
    old = layout.read_microbench_summary(summary)
    res = microbench(names, directory=c.directory, n=n, bs=c.bss[0])
    rows = []
    with made_dirs(mb_dir):
        for name, dist in res.results.items():
            samples = np.asarray(dist.samples_ns, dtype=np.int64)
            write_atomic(mb_dir / f"{name}.npy", functools.partial(np.save, arr=samples))
            rows.append(
                {
                    "benchmark": name,
                    **{f"{k}_us": v / 1e3 for k, v in dist.summary().items() if k != "n"},
                    "n": len(dist.samples_ns),
                }
            )
        for name, why in res.skipped.items():
            rows.append({"benchmark": name, "skipped": why})
        df = pd.DataFrame(rows)
        if not old.empty:
            df = pd.concat([old[~old["benchmark"].isin(list(df["benchmark"]))], df])
        layout.write_csv(summary, df)
        stem = "provenance" if names is None else f"provenance-{'-'.join(names)}"
        write_provenance(mb_dir, c, name=layout.provenance_name(mb_dir, stem))
    return df
