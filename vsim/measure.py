"""Measurement campaigns on the real path: interleaved runs, fio baselines, microbenchmarks."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomli_w

from vsim.errors import ConfigError, FioFormatError, UnavailableError
from vsim.fio import FioJob, fio_json, read_fio_json
from vsim.scenario import Workload, design

MANIFEST_HEADER = ["file", "design", "repeat", "calibration", "note"]


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
            raise ConfigError(f"--repeat must be >= 1, got {self.repeat}")
        if not self.runtime > 0:
            raise ConfigError(f"--runtime must be > 0 seconds, got {self.runtime}")

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
    from vsim import __version__

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


def _write_manifest(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(MANIFEST_HEADER)
        w.writerows(rows)


def summarise(dataset: Path) -> pd.DataFrame:
    """Mean and 95 % CI over repeats of IOPS and latencies, per point of a measured dataset."""
    from vsim.measured import load_measured
    from vsim.validate import mean_ci

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
) -> pd.DataFrame:
    """Run the campaign on the reference backend; write a dataset `vsim validate` reads.

    out/: one fio json+ file per run (runs/), its trace (traces/*.npz), manifest.csv,
    provenance.toml and summary.csv. Each run is written as soon as it finishes, so an
    interrupted campaign keeps every finished run.
    """
    from vsim.reference import run

    runs_dir, traces = out / "runs", out / "traces"
    for p in (runs_dir, traces):
        p.mkdir(parents=True, exist_ok=True)
    plan = c.plan()
    manifest: list[list[str]] = []
    _write_provenance(out, c)
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
        name = run_name(rep, w, dname)
        (runs_dir / f"{name}.json").write_text(
            json.dumps(record_fio_json(rec, w, dname, c.engine), indent=1)
        )
        if c.trace_ios != 0:
            head(rec, c.trace_ios).save(traces / f"{name}.npz")
        manifest.append([f"runs/{name}.json", dname, str(rep), "", c.engine])
        _write_manifest(out / "manifest.csv", manifest)
        if progress:
            progress(i + 1, len(plan), name)
    summary = summarise(out).sort_values(["rw", "bs", "iodepth", "dir", "design"])
    summary.to_csv(out / "summary.csv", index=False, lineterminator="\n", float_format="%.6g")
    return summary


def _write_provenance(
    out: Path, c: Campaign, *, name: str = "provenance.toml", **extra: Any
) -> None:
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
    with open(out / name, "wb") as f:
        tomli_w.dump(doc, f)


def fio_command(w: Workload, filename: Path, runtime: float) -> list[str]:
    """The real fio's command line for a workload (libaio, O_DIRECT, json+ with all latencies)."""
    cmd = [
        "fio",
        "--name=vsim-baseline",
        f"--filename={filename}",
        f"--size={w.size}",
        f"--rw={w.rw}",
        f"--bs={w.bs}",
        f"--iodepth={w.iodepth}",
        "--ioengine=libaio",
        "--direct=1",
        f"--runtime={runtime:g}",
        "--time_based",
        "--output-format=json+",
        "--lat_percentiles=1",
        "--slat_percentiles=1",
        "--randrepeat=1",
    ]
    if w.rw in ("rw", "readwrite", "randrw"):
        cmd.append(f"--rwmixread={w.rwmixread}")
    if w.ramp_time:
        cmd.append(f"--ramp_time={w.ramp_time:g}")
    return cmd


def fio_rows(job: FioJob, file: str) -> list[dict[str, Any]]:
    """One tidy row per direction of a real-fio job: its IOPS, mean latencies and clat bins."""
    rows = []
    for d in job.directions:
        st = getattr(job, d)
        rows.append(
            {
                "rw": job.rw,
                "dir": d,
                "bs": job.bs,
                "iodepth": job.iodepth,
                "iops": st.iops,
                "lat_mean_us": st.lat.mean / 1e3,
                "clat_mean_us": st.clat.mean / 1e3,
                "slat_mean_us": st.slat.mean / 1e3,
                "file": file,
                "bins": st.clat.bins,
            }
        )
    return rows


def fio_version() -> str:
    """The installed fio's version, or UnavailableError."""
    if shutil.which("fio") is None:
        raise UnavailableError("fio is not installed (Debian: apt-get install fio)")
    return subprocess.run(
        ["fio", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def measure_fio(
    c: Campaign,
    out: Path,
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """Run the real fio on the host with the campaign's jobs (design "host"): out/fio/*.json.

    fio writes to its own scratch file in the campaign's directory, removed afterwards; an
    existing --file is used only for read jobs unless writing was allowed.
    """
    version = fio_version()
    fio_dir = out / "fio"
    fio_dir.mkdir(parents=True, exist_ok=True)
    base = Path(c.directory or ".")
    scratch = c.file is None
    target = base / f".vsim-fio-scratch-{os.getpid()}" if scratch else Path(c.file or "")
    rows = []
    plan = [(r, w) for r in range(c.repeat) for w in c.workloads()]
    _write_provenance(fio_dir, c, fio=version)
    try:
        for i, (rep, w) in enumerate(plan):
            if not scratch and w.read_fraction < 1 and not c.allow_overwrite:
                raise ConfigError(
                    f"{target}: a write job needs --allow-overwrite on an existing file"
                )
            proc = subprocess.run(
                fio_command(w, target, c.runtime), capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                msg = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
                raise UnavailableError(f"fio failed: {msg}")
            name = run_name(rep, w, "host")
            (fio_dir / f"{name}.json").write_text(proc.stdout)
            jobs = read_fio_json(proc.stdout)
            if len(jobs) != 1:
                raise FioFormatError(f"fio printed {len(jobs)} jobs, expected 1")
            rows += [{**r, "repeat": rep} for r in fio_rows(jobs[0], f"fio/{name}.json")]
            if progress:
                progress(i + 1, len(plan), name)
    finally:
        if scratch:
            target.unlink(missing_ok=True)
    cols = [
        "rw",
        "dir",
        "bs",
        "iodepth",
        "repeat",
        "iops",
        "lat_mean_us",
        "clat_mean_us",
        "slat_mean_us",
        "file",
    ]
    df = pd.DataFrame(rows, columns=cols)
    df.to_csv(fio_dir / "runs.csv", index=False, lineterminator="\n", float_format="%.6g")
    keys = ["rw", "dir", "bs", "iodepth"]
    summary = df.groupby(keys, sort=False)[["iops", "lat_mean_us", "clat_mean_us"]].mean()
    return summary.reset_index()


def measure_microbench(
    c: Campaign, out: Path, *, n: int = 200, names: list[str] | None = None
) -> pd.DataFrame:
    """Run the microbenchmarks (all, or `names`); write out/microbench/<name>.npy samples and
    the summary CSV. With `names`, the other benchmarks' files stay: their rows are kept in the
    summary and the provenance goes to provenance-<names>.toml."""
    from vsim.reference import microbench

    mb_dir = out / "microbench"
    mb_dir.mkdir(parents=True, exist_ok=True)
    res = microbench(names, directory=c.directory, n=n, bs=c.bss[0])
    rows = []
    for name, dist in res.results.items():
        np.save(mb_dir / f"{name}.npy", np.asarray(dist.samples_ns, dtype=np.int64))
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
    summary = mb_dir / "summary.csv"
    if names is not None and summary.exists():
        old = pd.read_csv(summary)
        df = pd.concat([old[~old["benchmark"].isin(list(df["benchmark"]))], df])
    df.to_csv(summary, index=False, lineterminator="\n", float_format="%.6g")
    own = "provenance.toml" if names is None else f"provenance-{'-'.join(names)}.toml"
    _write_provenance(mb_dir, c, name=own)
    return df
