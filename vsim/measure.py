"""Measurement campaigns on the real path: interleaved runs, fio baselines, microbenchmarks."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import functools
import io
import json
import math
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

from vsim.__version__ import __version__
from vsim.errors import ConfigError, FioFormatError, UnavailableError
from vsim.fio import FioJob, fio_json, read_fio_json
from vsim.outputs import made_dirs, write_atomic
from vsim.processes import die_with_parent
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
        if not 0 < self.runtime < math.inf:
            raise ConfigError(f"--runtime must be a finite number > 0 seconds, got {self.runtime}")
        if self.trace_ios is not None and self.trace_ios < 0:
            raise ConfigError(f"--trace-ios must be >= 0 (0: no traces), got {self.trace_ios}")
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


def _write_manifest(path: Path, rows: list[list[str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(MANIFEST_HEADER)
    w.writerows(rows)
    write_atomic(path, buf.getvalue())


def _manifest_rows(path: Path) -> list[list[str]]:
    """The rows of an existing manifest, verbatim (without its header)."""
    if not path.exists():
        return []
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    if not rows or rows[0] != MANIFEST_HEADER:
        raise ConfigError(f"{path}: not a vsim measure manifest ({','.join(MANIFEST_HEADER)})")
    return rows[1:]


# The parts of a dataset each kind of measurement writes (beside the directory's own files).
PARTS = {
    "runs": ("manifest.csv", "runs", "traces", "summary.csv", "provenance.toml"),
    "fio": ("fio",),
    "microbench": ("microbench",),
}


def check_dataset(out: Path, part: str, *, append: bool) -> None:
    """Refuse to overwrite: an existing dataset that holds this part already is taken only with
    `append` (which keeps every earlier run and provenance), and a non-empty directory that is
    not a vsim dataset never."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out}: is not a directory")
    held = [x for x in PARTS[part] if (out / x).exists()]
    if held and not append:
        raise ConfigError(
            f"--out {out} already holds {held[0]} of an earlier measurement: add --append to "
            "add the new runs to it (earlier runs and provenance are kept), or choose another"
        )
    known = {x for xs in PARTS.values() for x in xs}
    if any(out.iterdir()) and not any((out / x).exists() for x in known):
        raise ConfigError(f"--out {out}: a non-empty directory that is not a vsim dataset")


def _provenance_name(directory: Path, stem: str = "provenance") -> str:
    """STEM.toml, or (appending) a new STEM-<UTC time>.toml beside the earlier one."""
    if not (directory / f"{stem}.toml").exists():
        return f"{stem}.toml"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name, k = f"{stem}-{stamp}.toml", 1
    while (directory / name).exists():
        name, k = f"{stem}-{stamp}-{k}.toml", k + 1
    return name


def _first_repeats(keys: pd.DataFrame, cols: list[str]) -> dict[tuple[Any, ...], int]:
    """The first free repeat index per point of earlier runs (key columns `cols`)."""
    if keys.empty:
        return {}
    top = keys.groupby(cols)["repeat"].max()
    return {tuple(k if isinstance(k, tuple) else (k,)): int(v) + 1 for k, v in top.items()}


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
    append: bool = False,
) -> pd.DataFrame:
    """Run the campaign on the reference backend; write a dataset `vsim validate` reads.

    out/: one fio json+ file per run (runs/), its trace (traces/*.npz), manifest.csv,
    provenance.toml and summary.csv. Each run is written (atomically) as soon as it finishes, so
    an interrupted campaign keeps every finished run; a campaign that fails before its first run
    leaves nothing. An existing dataset is refused unless `append`: then its runs stay, the new
    ones take the next repeat numbers, and this campaign's provenance goes beside the earlier.
    """
    from vsim.measured import load_measured
    from vsim.reference import run

    check_dataset(out, "runs", append=append)
    manifest = _manifest_rows(out / "manifest.csv")
    first: dict[tuple[Any, ...], int] = {}
    if manifest:
        pts = load_measured(out).points
        first = _first_repeats(pts, ["design", "rw", "bs", "iodepth"])
    plan = c.plan()
    prov = _provenance_name(out)
    runs_dir, traces = out / "runs", out / "traces"
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
            manifest.append([f"runs/{name}.json", dname, str(r), "", c.engine])
            _write_manifest(out / "manifest.csv", manifest)
            if i == 0:
                _write_provenance(out, c, name=prov)
            if progress:
                progress(i + 1, len(plan), name)
    summary = summarise(out).sort_values(["rw", "bs", "iodepth", "dir", "design"])
    write_atomic(out / "summary.csv", _csv(summary))
    return summary


def _csv(df: pd.DataFrame) -> str:
    return str(df.to_csv(index=False, lineterminator="\n", float_format="%.6g"))


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
    write_atomic(out / name, tomli_w.dumps(doc))


def fio_command(w: Workload, filename: str | Path, runtime: float, size: int) -> list[str]:
    """The real fio's command line for a workload (libaio, O_DIRECT, json+ with all latencies).

    `size` bytes of `filename` (the region the guard opened: fio never has to lay out or extend
    the file); a read job runs with fio's own --readonly guard as well, and fio runs its job as
    a thread so that killing fio stops the I/O at once.
    """
    cmd = [
        "fio",
        "--name=vsim-baseline",
        f"--filename={filename}",
        f"--size={size}",
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
        "--allow_file_create=0",
        "--thread",
    ]
    if w.read_fraction == 1.0:
        cmd.append("--readonly")
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


# The columns of a dataset's fio/runs.csv: one row per fio run and direction.
FIO_RUN_COLUMNS = [
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


def measure_fio(
    c: Campaign,
    out: Path,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    append: bool = False,
) -> pd.DataFrame:
    """Run the real fio on the host with the campaign's jobs (design "host"): out/fio/*.json.

    fio does its I/O on a file the guard (vsim.reference.storage) opened and hands it, by its
    descriptor: a nameless scratch file in the campaign's directory, or the existing --file
    (only read jobs unless writing was allowed; never a block device for writing). fio dies with
    vsim. An existing fio/ part is refused unless `append` (see `measure`).
    """
    from vsim.reference.storage import Target, create_scratch, open_existing

    version = fio_version()
    check_dataset(out, "fio", append=append)
    fio_dir = out / "fio"
    plan = [(r, w) for r in range(c.repeat) for w in c.workloads()]

    def open_for(w: Workload) -> Target:
        assert c.file is not None
        return open_existing(
            c.file,
            bs=w.bs,
            size=c.size,
            needs_write=w.read_fraction < 1,
            allow_overwrite=c.allow_overwrite,
        )

    scratch = None
    if c.file is not None:  # every job's target passes the guard before any run
        for w in c.workloads():
            open_for(w).close()
    old = _fio_runs(fio_dir / "runs.csv")
    first = _first_repeats(old, ["rw", "bs", "iodepth"])
    prov = _provenance_name(fio_dir)
    rows = old.to_dict("records")
    try:
        if c.file is None:
            scratch = create_scratch(c.directory, c.size)
        with contextlib.ExitStack() as made:  # fio/ comes with its first run
            for i, (rep, w) in enumerate(plan):
                target = scratch if scratch is not None else open_for(w)
                try:
                    size = min(c.size, target.region) // w.bs * w.bs
                    text = _run_fio(fio_command(w, target.proc_path, c.runtime, size), target, w)
                finally:
                    if target is not scratch:
                        target.close()
                r = first.get((w.rw, w.bs, w.iodepth), 0) + rep
                name = run_name(r, w, "host")
                jobs = read_fio_json(text)
                if len(jobs) != 1:
                    raise FioFormatError(f"fio printed {len(jobs)} jobs, expected 1")
                if i == 0:
                    made.enter_context(made_dirs(fio_dir))
                write_atomic(fio_dir / f"{name}.json", text)
                rows += [{**row, "repeat": r} for row in fio_rows(jobs[0], f"fio/{name}.json")]
                df = pd.DataFrame(rows, columns=FIO_RUN_COLUMNS)
                write_atomic(fio_dir / "runs.csv", _csv(df))
                if i == 0:
                    _write_provenance(fio_dir, c, name=prov, fio=version)
                if progress:
                    progress(i + 1, len(plan), name)
    finally:
        if scratch is not None:
            scratch.close()
    df = pd.DataFrame(rows, columns=FIO_RUN_COLUMNS)
    keys = ["rw", "dir", "bs", "iodepth"]
    summary = df.groupby(keys, sort=False)[["iops", "lat_mean_us", "clat_mean_us"]].mean()
    return summary.reset_index()


def _fio_runs(path: Path) -> pd.DataFrame:
    """The rows of an existing fio/runs.csv (empty when there is none)."""
    if not path.exists():
        return pd.DataFrame(columns=FIO_RUN_COLUMNS)
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    missing = [col for col in FIO_RUN_COLUMNS if col not in df.columns]
    if missing:
        raise ConfigError(f"{path}: missing column {missing[0]!r}")
    return df[FIO_RUN_COLUMNS]


def _run_fio(cmd: list[str], target: Any, w: Workload) -> str:
    """Run fio on the open target (it inherits the descriptor); its JSON output, or one line."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=(target.fd,),
        preexec_fn=die_with_parent,  # fio dies with vsim, even on kill -9
    )
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0 or not stdout.strip():
        raise UnavailableError(
            f"fio failed on rw={w.rw} bs={w.bs} iodepth={w.iodepth} (exit {proc.returncode}): "
            f"{fio_error(stderr)}"
        )
    return stdout


def fio_error(stderr: str) -> str:
    """The reason in fio's error output, as one short line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:  # fio's own error lines first: "fio: ...", "... error=Reason"
        if "error=" in ln:
            return ln.rsplit("error=", 1)[1][:200]
    for ln in reversed(lines):
        if ln.startswith("fio:"):
            return ln[4:].strip()[:200]
    return (lines[-1] if lines else "no message")[:200]


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
    from vsim.reference import microbench

    mb_dir = out / "microbench"
    check_dataset(out, "microbench", append=append or names is not None)
    summary = mb_dir / "summary.csv"
    old = _microbench_rows(summary)
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
        write_atomic(summary, _csv(df))
        stem = "provenance" if names is None else f"provenance-{'-'.join(names)}"
        _write_provenance(mb_dir, c, name=_provenance_name(mb_dir, stem))
    return df


def _microbench_rows(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame()
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    if "benchmark" not in df.columns:
        raise ConfigError(f"{path}: missing column 'benchmark'")
    return df
