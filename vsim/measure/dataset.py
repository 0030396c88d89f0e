"""Measured datasets: fio JSON / json+ runs with a manifest, or published summaries, as tidy points.

A dataset is a directory (or a list of files) holding one or both of:

**fio runs with a manifest.** Every ``*.json`` file directly in the directory (and every file the
manifest names, at any depth) is one run: fio's ``--output-format=json`` or ``json+`` output
(lines before the first line that starts with ``{``, such as fio's warnings, are skipped), or
vsim's own ``Result.to_fio_json()``. Job parameters (``rw``, ``bs``, ``iodepth``, ``numjobs``,
``rwmixread``, ``size``) come from fio's ``job options`` over ``global options``. A file may hold
several jobs (each becomes its own run) but not clones of one job: run fio with
``group_reporting`` when ``numjobs`` > 1. The design of each file comes from ``manifest.csv``::

    # comment lines start with '#'
    file,design,repeat,calibration,note
    qd1-a.json,virtio-blk,0,true,interleaved A B A B
    qd1-b.json,vhost-blk,0,true,
    runs/qd4-a.json,virtio-blk,1,false,

``file`` (relative to the manifest), ``design`` (a name of :data:`vsim.scenario.DESIGNS`) and
``repeat`` (an integer: the replication index of that point) are required; ``calibration``
(true/false, 1/0, yes/no; empty = false) marks runs that may feed calibration; ``note`` is free
text; ``placement`` is the run's CPU placement (``free``, the default when the column or the
cell is empty, or a pinning ``G:B1[:B2...]``, see :mod:`vsim.measure.placement`): a point
factor like iodepth; any other column is an extra field copied into every row of the file. A
file that the manifest does not name is an error, unless it carries vsim's ``vsim`` block
(``{"design": {"name": ...}}``), which then gives its design (and its placement, when the block
records one); its repeat is numbered automatically. When both exist they must agree.

**Published summaries.** ``points.csv`` holds one measured point per line, for datasets that
have only published numbers::

    design,rw,dir,bs,iodepth,iops,clat_mean_us,lat_mean_us,calibration,note
    virtio-blk,read,read,512,1,4116,214,,true,seed table

Required: ``design, rw, dir, bs, iodepth, iops``. Optional: ``numjobs`` (1), ``rwmixread`` (50),
``placement`` (``free``), ``size`` (fio sizes: ``200M``), ``repeat`` (numbered in file order
when absent), ``calibration``, ``note``, the metrics of :data:`METRICS` (an empty cell: not
measured) and extra columns.
``dir`` is ``read``, ``write`` or ``total`` (all I/Os of the job, e.g. a published figure for a
mixed ``rw=rw`` job).

The result is a :class:`MeasuredSet`: ``points`` is a tidy DataFrame with one row per run and
direction (columns :data:`COLUMNS`, then the extra fields), and :meth:`MeasuredSet.samples`
gives a run's per-I/O latencies rebuilt from its json+ bins for CDF comparisons. Problems raise
:class:`~vsim.errors.ConfigError` (manifest, points.csv) or :class:`~vsim.errors.FioFormatError`
(a fio file), with one line naming the file and the problem.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from vsim.errors import ConfigError, FioFormatError
from vsim.fio import (
    DirectionStats,
    FioJob,
    LatencySummary,
    percentiles_from_bins,
    read_fio_document,
    read_fio_json,
    sample_from_bins,
)
from vsim.measure.layout import MANIFEST, POINTS, find_dataset
from vsim.measure.placement import FREE, parse_placement
from vsim.precision import CI, CONFIDENCE, mean_ci, weighted_mean_ci
from vsim.results import LATENCY_METRICS
from vsim.scenario import MAX_VCPUS, Workload, design, parse_size

__all__ = [
    "COLUMNS",
    "DIRS",
    "LATENCY_KINDS",
    "METRICS",
    "POINT_KEYS",
    "MeasuredRun",
    "MeasuredSet",
    "load_measured",
    "point_ci",
]

#: The columns that identify a measured point (the repeats of a point share them).
POINT_KEYS = ("design", "rw", "dir", "bs", "iodepth", "numjobs", "rwmixread", "placement")
#: Measured metrics of a tidy row (NaN when not measured).
METRICS = ("iops", *LATENCY_METRICS)
#: The columns of :attr:`MeasuredSet.points`, in order (extra fields follow). ``run`` indexes
#: :attr:`MeasuredSet.runs`; ``ios`` is the direction's I/O count (0: unknown, a summary);
#: ``samples`` says whether json+ bins give per-I/O latencies.
COLUMNS = (
    "run",
    "source",
    "file",
    "job",
    "design",
    "repeat",
    "calibration",
    "rw",
    "dir",
    "bs",
    "iodepth",
    "numjobs",
    "rwmixread",
    "placement",
    "ios",
    *METRICS,
    "samples",
    "note",
)
DIRS = ("read", "write", "total")
LATENCY_KINDS = ("clat", "lat")
#: The per-I/O means among METRICS: a point's is the mean over the I/Os of all its runs.
IO_MEANS = ("slat_mean_us", "clat_mean_us", "lat_mean_us")

_MANIFEST_REQUIRED = ("file", "design", "repeat")
_POINTS_REQUIRED = ("design", "rw", "dir", "bs", "iodepth", "iops")
_KNOWN = {
    "design",
    "repeat",
    "calibration",
    "note",
    "rw",
    "dir",
    "bs",
    "iodepth",
    "numjobs",
    "rwmixread",
    "placement",
    "size",
    *METRICS,
}
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"", "0", "false", "no", "n"}


@dataclass(frozen=True, eq=False)
class MeasuredRun:
    """One measured run: one job of a fio file, or one line of points.csv."""

    source: str  # "fio" or "summary"
    file: str  # path relative to the dataset ("points.csv line 3" for summaries)
    job: str  # fio's jobname ("" for summaries)
    design: str
    repeat: int
    workload: Workload
    calibration: bool
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    fio: FioJob | None = None
    summary: dict[str, float] = field(default_factory=dict)  # points.csv metrics
    dirs: tuple[str, ...] = ()  # points.csv: the line's direction
    placement: str = FREE  # the CPU placement label (vsim.measure.placement)


@dataclass(frozen=True, eq=False)
class MeasuredSet:
    """A measured dataset: tidy ``points`` (one row per run and direction) and its runs."""

    name: str
    points: pd.DataFrame
    runs: tuple[MeasuredRun, ...]

    @classmethod
    def load(
        cls,
        source: str | Path | Sequence[str | Path],
        *,
        manifest: str | Path | None = None,
        name: str | None = None,
    ) -> MeasuredSet:
        """Load a dataset directory, or a list of fio JSON files (with an optional manifest)."""
        return load_measured(source, manifest=manifest, name=name)

    def samples(self, row: int, kind: str = "clat") -> NDArray[np.int64] | None:
        """Per-I/O latencies (ns) of tidy row ``row`` from json+ bins; None without bins.

        ``kind`` is ``"clat"`` or ``"lat"`` (fio writes ``lat_ns`` bins only with
        ``lat_percentiles=1``; vsim always does). Each latency is the middle of its fio bucket.
        """
        if kind not in LATENCY_KINDS:
            raise ConfigError(f"kind must be one of {', '.join(LATENCY_KINDS)}, got {kind!r}")
        run = self.runs[int(self.points.at[row, "run"])]
        if run.fio is None:
            return None
        stats = _fio_direction(run.fio, str(self.points.at[row, "dir"]))
        summ: LatencySummary = getattr(stats, kind)
        return None if summ.bins is None or summ.n == 0 else sample_from_bins(summ.bins)

    def workload(self, row: int) -> Workload:
        """The workload of tidy row ``row`` (as the run's job file describes it)."""
        return self.runs[int(self.points.at[row, "run"])].workload

    def __repr__(self) -> str:
        n_points = self.points.groupby(list(POINT_KEYS)).ngroups if len(self.points) else 0
        return f"<MeasuredSet {self.name!r}: {len(self.runs)} runs, {n_points} points>"


def load_measured(
    source: str | Path | Sequence[str | Path],
    *,
    manifest: str | Path | None = None,
    name: str | None = None,
) -> MeasuredSet:
    """Load a measured dataset (see the module docstring for the formats).

    ``source`` is a directory (its ``manifest.csv`` and ``points.csv`` are used when present),
    the name of a dataset shipped with vsim (``seed-2011``, also as ``validation/seed-2011``
    outside the checkout), a fio JSON file or a list of them; ``manifest`` names a manifest
    explicitly (its ``file`` entries are relative to it).
    """
    runs: list[MeasuredRun] = []
    if isinstance(source, str | Path):
        source = find_dataset(source)
    if isinstance(source, str | Path) and Path(source).is_dir():
        root = Path(source)
        mpath = Path(manifest) if manifest is not None else root / MANIFEST
        if manifest is not None and not mpath.is_file():
            raise ConfigError(f"no manifest {mpath}")
        entries = _read_manifest(mpath) if mpath.is_file() else {}
        found = {p.resolve() for p in root.glob("*.json") if p.is_file()}
        files = sorted(found | set(entries), key=lambda p: _label(p, root))
        if (root / POINTS).exists():
            runs += _read_points(root / POINTS, root)
        label_root = root
        default_name = root.resolve().name
    else:
        paths = [Path(source)] if isinstance(source, str | Path) else [Path(p) for p in source]
        if not paths:
            raise ConfigError("no measured files given")
        for p in paths:
            if not p.is_file():
                raise ConfigError(f"no measured file or directory {p}")
        if manifest is not None and not Path(manifest).is_file():
            raise ConfigError(f"no manifest {manifest}")
        entries = _read_manifest(Path(manifest)) if manifest is not None else {}
        files = paths
        label_root = Path(manifest).parent if manifest else _common_parent(paths)
        default_name = "measured"
    for path in files:
        runs += _read_fio_file(path, _label(path, label_root), entries.get(path.resolve()))
    if not runs:
        where = source if isinstance(source, str | Path) else "the given files"
        raise ConfigError(
            f"no measured runs in {where} (expected fio JSON files with {MANIFEST}, or {POINTS})"
        )
    runs = _number_repeats(runs)
    rows = [r for i, run in enumerate(runs) for r in _rows(i, run)]
    extras = sorted({k for run in runs for k in run.extra})
    points = pd.DataFrame(rows, columns=[*COLUMNS, *extras])
    points[extras] = points[extras].fillna("")
    _check_duplicates(points)
    return MeasuredSet(name=name or default_name, points=points, runs=tuple(runs))


# --------------------------------------------------------------------------- CSV files


def _label(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _common_parent(paths: Sequence[Path]) -> Path:
    parents = {p.resolve().parent for p in paths}
    return parents.pop() if len(parents) == 1 else Path.cwd()


def _read_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with a header as (line number, {column: stripped text})."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    # blank the comment lines so that the reader skips them and line numbers stay right
    text = "\n".join("" if ln.lstrip().startswith("#") else ln for ln in text.splitlines())
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    out: list[tuple[int, dict[str, str]]] = []
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip() for f in fields]
                dup = {h for h in header if header.count(h) > 1}
                if dup or "" in header:
                    bad = sorted(dup)[0] if dup else "(empty)"
                    raise ConfigError(f"{path}: header column {bad} is duplicated or empty")
                continue
            if len(fields) > len(header):
                raise ConfigError(
                    f"{path} line {reader.line_num}: {len(fields)} fields, the header has "
                    f"{len(header)}"
                )
            values = [f.strip() for f in fields] + [""] * (len(header) - len(fields))
            out.append((reader.line_num, dict(zip(header, values, strict=True))))
    except csv.Error as exc:
        raise ConfigError(f"{path} line {reader.line_num}: {exc}") from None
    if header is None:
        raise ConfigError(f"{path}: empty (expected a header line)")
    return out


def _require(path: Path, rows: list[tuple[int, dict[str, str]]], cols: Iterable[str]) -> None:
    if rows:
        missing = [c for c in cols if c not in rows[0][1]]
        if missing:
            raise ConfigError(f"{path}: missing column {missing[0]!r}")


def _int(text: str, what: str, where: str, minimum: int) -> int:
    try:
        val = int(text)
    except ValueError:
        raise ConfigError(f"{where}: {what} {text!r} is not an integer") from None
    if val < minimum:
        raise ConfigError(f"{where}: {what} must be >= {minimum}, got {val}")
    return val


def _float(text: str, what: str, where: str) -> float:
    try:
        val = float(text)
    except ValueError:
        raise ConfigError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(val) or val < 0:
        raise ConfigError(f"{where}: {what} must be a finite number >= 0, got {text}")
    return val


def _bool(text: str, what: str, where: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"{where}: {what} {text!r} is not true/false")


def _design(text: str, where: str) -> str:
    try:
        return design(text).name
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _placement(text: str, where: str) -> str:
    try:
        return parse_placement(text) if text else FREE
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _extra(row: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in row.items() if k not in _KNOWN}


@dataclass(frozen=True)
class _Entry:
    design: str
    repeat: int
    calibration: bool
    note: str
    extra: dict[str, str]
    where: str
    placement: str = FREE


def _read_manifest(path: Path) -> dict[Path, _Entry]:
    rows = _read_csv(path)
    root = path.parent
    _require(path, rows, _MANIFEST_REQUIRED)
    own = {*_MANIFEST_REQUIRED, "calibration", "note", "placement"}
    reserved = [c for c in rows[0][1] if c in {*COLUMNS, *_KNOWN} - own] if rows else []
    if reserved:
        raise ConfigError(f"{path}: column {reserved[0]!r} is reserved for measured data")
    out: dict[Path, _Entry] = {}
    for line, row in rows:
        where = f"{path} line {line}"
        if not row["file"]:
            raise ConfigError(f"{where}: empty file name")
        file = (root / row["file"]).resolve()
        if not file.is_file():
            raise ConfigError(f"{where}: no file {row['file']!r}")
        if file in out:
            raise ConfigError(f"{where}: {row['file']!r} is listed twice")
        out[file] = _Entry(
            design=_design(row["design"], where),
            repeat=_int(row["repeat"], "repeat", where, 0),
            calibration=_bool(row.get("calibration", ""), "calibration", where),
            note=row.get("note", ""),
            extra={k: v for k, v in row.items() if k not in own},
            where=where,
            placement=_placement(row.get("placement", ""), where),
        )
    return out


def _read_points(path: Path, root: Path) -> list[MeasuredRun]:
    rows = _read_csv(path)
    _require(path, rows, _POINTS_REQUIRED)
    reserved = [c for c in rows[0][1] if c in COLUMNS and c not in _KNOWN] if rows else []
    if reserved:
        raise ConfigError(f"{path}: column {reserved[0]!r} is reserved for measured data")
    label = _label(path, root)
    runs = []
    for line, row in rows:
        where = f"{path} line {line}"
        d = row["dir"]
        if d not in DIRS:
            raise ConfigError(f"{where}: dir must be one of {', '.join(DIRS)}, got {d!r}")
        params: dict[str, Any] = {
            "iodepth": _int(row["iodepth"], "iodepth", where, 1),
            "numjobs": _int(row.get("numjobs") or "1", "numjobs", where, 1),
            "rwmixread": _int(row.get("rwmixread") or "50", "rwmixread", where, 0),
        }
        try:
            params["bs"] = parse_size(row["bs"])
            if row.get("size"):
                params["size"] = parse_size(row["size"])
            w = Workload(rw=row["rw"], **params)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if d != "total" and d not in w.directions:
            raise ConfigError(f"{where}: rw={w.rw} does no {d}s")
        summary = {m: _float(row[m], m, where) for m in METRICS if row.get(m)}
        if "iops" not in summary:
            raise ConfigError(f"{where}: iops is empty")
        runs.append(
            MeasuredRun(
                source="summary",
                file=f"{label} line {line}",
                job="",
                design=_design(row["design"], where),
                repeat=_int(row["repeat"], "repeat", where, 0) if row.get("repeat") else -1,
                workload=w,
                calibration=_bool(row.get("calibration", ""), "calibration", where),
                note=row.get("note", ""),
                extra=_extra(row),
                summary=summary,
                dirs=(d,),
                placement=_placement(row.get("placement", ""), where),
            )
        )
    return runs


# --------------------------------------------------------------------------- fio files


def _read_document(path: Path, label: str) -> Mapping[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FioFormatError(f"{label}: cannot read ({exc.strerror})") from None
    try:
        return read_fio_document(data)
    except FioFormatError as exc:
        raise FioFormatError(f"{label}: {exc}") from None


def _vsim_design(doc: Mapping[str, Any], label: str) -> str | None:
    block = doc.get("vsim")
    if block is None:
        return None
    spec = block.get("design") if isinstance(block, Mapping) else None
    name = spec.get("name") if isinstance(spec, Mapping) else spec
    if not isinstance(name, str):
        raise FioFormatError(f"{label}: the vsim block has no design name")
    return name


def _vsim_placement(doc: Mapping[str, Any], label: str) -> str | None:
    """The placement label a vsim block records (None without one)."""
    block = doc.get("vsim")
    spec = block.get("placement") if isinstance(block, Mapping) else None
    if spec is None:
        return None
    text = spec.get("label") if isinstance(spec, Mapping) else spec
    if not isinstance(text, str):
        raise FioFormatError(f"{label}: the vsim block's placement has no label")
    return _placement(text, label)


def _vsim_guest_vcpus(doc: Mapping[str, Any], label: str) -> int | None:
    """The guest's vCPU count a vsim block records (None without one: the profile's)."""
    block = doc.get("vsim")
    v = block.get("guest_vcpus") if isinstance(block, Mapping) else None
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_VCPUS:
        raise FioFormatError(f"{label}: the vsim block's guest_vcpus must be 1..{MAX_VCPUS}")
    return v


def _read_fio_file(path: Path, label: str, entry: _Entry | None) -> list[MeasuredRun]:
    doc = _read_document(path, label)
    try:
        jobs = read_fio_json(doc)
    except FioFormatError as exc:
        raise FioFormatError(f"{label}: {exc}") from None
    embedded = _vsim_design(doc, label)
    if entry is None and embedded is None:
        raise ConfigError(f"{label}: not in {MANIFEST} (give its design and repeat there)")
    if entry is not None and embedded is not None and embedded != entry.design:
        raise ConfigError(
            f"{label}: {entry.where} says design {entry.design} but the file's vsim block "
            f"says {embedded}"
        )
    name = entry.design if entry is not None else _design(str(embedded), label)
    placed = _vsim_placement(doc, label)
    if entry is not None and placed is not None and placed != entry.placement:
        raise ConfigError(
            f"{label}: {entry.where} says placement {entry.placement} but the file's vsim "
            f"block says {placed}"
        )
    placement = entry.placement if entry is not None else placed or FREE
    extra = dict(entry.extra) if entry is not None else {}
    vcpus = _vsim_guest_vcpus(doc, label)
    if vcpus is not None:
        extra["guest_vcpus"] = str(vcpus)
    if not jobs:
        raise FioFormatError(f"{label}: no jobs")
    names = [j.jobname for j in jobs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FioFormatError(
            f"{label}: job {dup[0]!r} appears {names.count(dup[0])} times (numjobs without "
            "group_reporting); rerun fio with group_reporting"
        )
    runs = []
    for job in jobs:
        if not job.directions:
            raise FioFormatError(f"{label}: job {job.jobname!r} completed no I/O")
        try:
            w = job.workload()
        except ConfigError as exc:
            raise FioFormatError(f"{label}: job {job.jobname!r}: {exc}") from None
        runs.append(
            MeasuredRun(
                source="fio",
                file=label,
                job=job.jobname,
                design=name,
                repeat=entry.repeat if entry is not None else -1,
                workload=w,
                calibration=entry.calibration if entry is not None else False,
                note=entry.note if entry is not None else "",
                extra=extra,
                fio=job,
                dirs=tuple("total" if d == "mixed" else d for d in job.directions),
                placement=placement,
            )
        )
    return runs


def _fio_direction(job: FioJob, d: str) -> DirectionStats:
    return job.directions["mixed" if d == "total" else d]


def _us(summ: LatencySummary) -> float:
    return summ.mean / 1000 if summ.n > 0 else math.nan


def _pct_us(summ: LatencySummary, p: float) -> float:
    if summ.n == 0:
        return math.nan
    if p in summ.percentiles:
        return summ.percentiles[p] / 1000
    if summ.bins:
        return percentiles_from_bins(summ.bins, (p,))[p] / 1000
    return math.nan


def _rows(index: int, run: MeasuredRun) -> list[dict[str, Any]]:
    w = run.workload
    out = []
    for d in run.dirs:
        row: dict[str, Any] = {
            "run": index,
            "source": run.source,
            "file": run.file,
            "job": run.job,
            "design": run.design,
            "repeat": run.repeat,
            "calibration": run.calibration,
            "rw": w.rw,
            "dir": d,
            "bs": w.bs,
            "iodepth": w.iodepth,
            "numjobs": w.numjobs,
            "rwmixread": w.rwmixread,
            "placement": run.placement,
        }
        if run.fio is not None:
            st = _fio_direction(run.fio, d)
            row.update(ios=st.total_ios, iops=st.iops, slat_mean_us=_us(st.slat))
            for kind in LATENCY_KINDS:
                summ: LatencySummary = getattr(st, kind)
                row[f"{kind}_mean_us"] = _us(summ)
                row[f"{kind}_p50_us"] = _pct_us(summ, 50.0)
                row[f"{kind}_p99_us"] = _pct_us(summ, 99.0)
            row["samples"] = st.clat.bins is not None
        else:
            row.update({m: run.summary.get(m, math.nan) for m in METRICS}, ios=0, samples=False)
        row["note"] = run.note
        row.update(run.extra)
        out.append(row)
    return out


def point_ci(runs: pd.DataFrame, metric: str, level: float = CONFIDENCE) -> CI:
    """A point's measured `metric` with its CI over its runs (rows of MeasuredSet.points): a
    per-I/O mean (IO_MEANS) over all the runs' I/Os, each run weighted by its I/O count
    (weighted_mean_ci: consistent with the mean IOPS by Little's law); anything else, and runs
    without I/O counts (published summaries), the plain mean of the runs (mean_ci)."""
    v = runs[metric].to_numpy(dtype=np.float64)
    if metric in IO_MEANS and "ios" in runs:
        return weighted_mean_ci(v, runs["ios"].to_numpy(dtype=np.float64), level)
    return mean_ci(v, level)


def _number_repeats(runs: list[MeasuredRun]) -> list[MeasuredRun]:
    """Give runs without a repeat index the lowest free ones of their point, in file order."""
    used: dict[tuple[Any, ...], set[int]] = {}

    def key(run: MeasuredRun, d: str) -> tuple[Any, ...]:
        w = run.workload
        return (run.design, w.rw, d, w.bs, w.iodepth, w.numjobs, w.rwmixread, run.placement)

    for run in runs:
        if run.repeat >= 0:
            for d in run.dirs:
                used.setdefault(key(run, d), set()).add(run.repeat)
    out = []
    for run in runs:
        if run.repeat < 0:
            taken = set().union(*(used.setdefault(key(run, d), set()) for d in run.dirs))
            rep = next(i for i in range(len(taken) + 1) if i not in taken)
            for d in run.dirs:
                used[key(run, d)].add(rep)
            run = replace(run, repeat=rep)
        out.append(run)
    return out


def _check_duplicates(points: pd.DataFrame) -> None:
    """Two runs of one point need different repeats (or, within one file, different jobs)."""
    cols = [*POINT_KEYS, "repeat", "job"]
    dup = points[points.duplicated(cols, keep=False)]
    if len(dup):
        first = dup.iloc[0]
        same = dup[(dup[cols] == first[cols]).all(axis=1)]["file"].tolist()
        what = ", ".join(f"{k} {first[k]}" for k in cols if k != "job")
        raise ConfigError(f"{same[0]} and {same[1]} are the same point and repeat ({what})")
