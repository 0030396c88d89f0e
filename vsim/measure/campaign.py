"""Measurement campaigns on the reference backend: interleaved runs, traces, microbenchmarks."""

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
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vsim.__version__ import __version__
from vsim.errors import ConfigError
from vsim.fio import fio_json
from vsim.measure import layout
from vsim.measure.dataset import load_measured
from vsim.outputs import made_dirs, write_atomic
from vsim.precision import mean_ci
from vsim.reference.microbench import microbench
from vsim.reference.runner import run
from vsim.scenario import Workload, design

__all__ = [
    "Campaign",
    "head",
    "measure",
    "measure_microbench",
    "provenance",
    "record_fio_json",
    "run_name",
    "summarise",
    "write_provenance",
]


@dataclass(frozen=True, kw_only=True)
class Campaign:
    """A measurement grid: every design x rw x bs x iodepth, `repeat` times, interleaved."""

    designs: tuple[str, ...] = ("virtio-blk", "vhost-blk")
    rws: tuple[str, ...] = ("randread",)
    bss: tuple[int, ...] = (4096,)
    iodepths: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    runtime: float = 5.0
    ramp_time: float = 0.0
    repeat: int = 3
    engine: str = "native"
    guest_cpu: int | None = None
    backend_cpus: tuple[int, ...] | None = None
    directory: str | None = None
    file: str | None = None
    allow_overwrite: bool = False
    verify: bool = False
    size: int = 64 << 20
    trace_ios: int | None = None  # keep the first N I/Os of each trace (None: all)

    def __post_init__(self) -> None:
        for d in self.designs:
            design(d)  # unknown names fail before any run
        if self.repeat < 1:
            raise ConfigError(f"repeat must be >= 1, got {self.repeat}")
        if not 0 < self.runtime < math.inf:
            raise ConfigError(f"runtime must be a finite number > 0 seconds, got {self.runtime}")
        if self.trace_ios is not None and self.trace_ios < 0:
            raise ConfigError(f"trace_ios must be >= 0 (0: no traces), got {self.trace_ios}")
        if not self.designs or not self.rws or not self.bss or not self.iodepths:
            raise ConfigError("a campaign needs at least one design, rw, bs and iodepth")

    def workloads(self) -> list[Workload]:
        """The grid's workloads (without the design), in measurement order."""
        return [
            Workload(
                rw=rw,
                bs=bs,
                iodepth=qd,
                runtime=self.runtime,
                ramp_time=self.ramp_time,
                size=self.size,
            )
            for rw in self.rws
            for bs in self.bss
            for qd in self.iodepths
        ]

    def plan(self) -> list[tuple[int, Workload, str]]:
        """(repeat, workload, design) in run order: repeats outermost, designs innermost.

        Designs alternate within a point (A B A B ...) and each point's repeats are spread over
        the whole campaign, so the machine's drift over minutes hits every design alike.
        """
        return [
            (r, w, d) for r in range(self.repeat) for w in self.workloads() for d in self.designs
        ]


def run_name(repeat: int, w: Workload, d: str, prefix: str = "") -> str:
    """A file stem for one run."""
    return f"{prefix}{d}-{w.rw}-bs{w.bs}-qd{w.iodepth}-r{repeat}"


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


def record_fio_json(record: Any, w: Workload, design_name: str, engine: str) -> dict[str, Any]:
    """A reference RunRecord as fio's json+ document (the same reader takes fio's own)."""
    samples: dict[str, Any] = {}
    for d, code in (("read", 0), ("write", 1)):
        m = record.ddir == code
        if m.any():
            samples[d] = {"slat_ns": record.slat_ns[m], "clat_ns": record.clat_ns[m]}
    opts: dict[str, object] = {
        "rw": w.rw,
        "bs": w.bs,
        "iodepth": w.iodepth,
        "numjobs": 1,
        "size": w.size,
        "ioengine": f"vsim-reference-{engine}",
        "direct": 1,
        "runtime": w.runtime,
    }
    if w.ramp_time:
        opts["ramp_time"] = w.ramp_time
    job = {"jobname": design_name, "elapsed_s": record.runtime_s, "options": opts, **samples}
    doc = fio_json([job], timestamp=int(record.meta.get("wall_start", 0)))
    doc["fio version"] = "vsim-reference"
    doc["vsim"] = {
        "design": {"name": design_name},
        "engine": engine,
        "counters": {k: int(v) for k, v in record.counters.items()},
    }
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


def summarise(dataset: Path) -> pd.DataFrame:
    """Mean and 95 % CI over repeats of IOPS and latencies, per point of a measured dataset."""
    pts = load_measured(dataset).points
    keys = ["design", "rw", "dir", "bs", "iodepth"]
    rows = []
    for key, g in pts.groupby(keys, sort=False):
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["repeats"] = len(g)
        for m in ("iops", "lat_mean_us", "clat_mean_us", "slat_mean_us", "lat_p99_us"):
            ci = mean_ci(g[m].to_numpy(dtype=float))
            row[m] = ci.mean
            row[f"{m}_ci95"] = (ci.high - ci.low) / 2
        rows.append(row)
    return pd.DataFrame(rows)


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
    ones take the next repeat numbers, and this campaign's provenance goes beside the earlier.
    """

    layout.check_dataset(out, "runs", append=append)
    manifest = layout.manifest_rows(out / layout.MANIFEST)
    first: dict[tuple[Any, ...], int] = {}
    if manifest:
        pts = load_measured(out).points
        first = layout.first_repeats(pts, ["design", "rw", "bs", "iodepth"])
    plan = c.plan()
    prov = layout.provenance_name(out)
    runs_dir, traces = out / layout.RUNS, out / layout.TRACES
    with contextlib.ExitStack() as made:  # the dataset's directories come with its first run
        for i, (rep, w, dname) in enumerate(plan):
            d = design(dname)
            cpus = None
            if c.backend_cpus:
                cpus = tuple(c.backend_cpus[k % len(c.backend_cpus)] for k in range(d.threads))
            rec = run(
                w,
                d,
                engine=c.engine,
                directory=c.directory,
                file=c.file,
                allow_overwrite=c.allow_overwrite,
                cpus=cpus,
                guest_cpu=c.guest_cpu,
                verify=c.verify,
                scratch_size=c.size,
            )
            r = first.get((dname, w.rw, w.bs, w.iodepth), 0) + rep
            name = run_name(r, w, dname)
            if i == 0:
                made.enter_context(made_dirs(runs_dir))
            doc = record_fio_json(rec, w, dname, c.engine)
            write_atomic(runs_dir / f"{name}.json", json.dumps(doc, indent=1))
            if c.trace_ios != 0:
                traces.mkdir(exist_ok=True)
                write_atomic(traces / f"{name}.npz", head(rec, c.trace_ios).save)
            manifest.append([f"{layout.RUNS}/{name}.json", dname, str(r), "", c.engine])
            layout.write_manifest(out / layout.MANIFEST, manifest)
            if i == 0:
                write_provenance(out, c, name=prov)
            if progress:
                progress(i + 1, len(plan), name)
    summary = summarise(out).sort_values(["rw", "bs", "iodepth", "dir", "design"])
    layout.write_csv(out / layout.SUMMARY, summary)
    return summary


def write_provenance(
    out: Path, c: Campaign, *, name: str = layout.PROVENANCE, **extra: Any
) -> None:
    """Where and how the campaign `c` was measured, as out/NAME."""
    doc = provenance(
        {
            "campaign": {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in c.__dict__.items()
                if v is not None
            },
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
