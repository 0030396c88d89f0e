"""The one owner of a `vsim measure` dataset's files: names, manifest, parts, provenance, samples.

A dataset directory holds, each part written by one kind of measurement:

    manifest.csv runs/*.json traces/*.npz summary.csv provenance.toml   vsim measure
    fio/*.json fio/runs.csv fio/provenance.toml                        vsim measure --fio
    microbench/*.npy microbench/summary.csv microbench/provenance.toml  vsim measure --microbench

(`points.csv` holds published summaries instead, see vsim.measure.dataset). Appending adds
provenance-<UTC time>.toml files beside the first one.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomli_w

from vsim.errors import ConfigError
from vsim.measure.placement import FREE
from vsim.outputs import write_atomic

__all__ = [
    "FIO",
    "FIO_RUNS",
    "FIO_RUN_COLUMNS",
    "MANIFEST",
    "MANIFEST_HEADER",
    "MICROBENCH",
    "PARTS",
    "POINTS",
    "PROVENANCE",
    "RUNS",
    "SUMMARY",
    "TRACES",
    "bundled_datasets",
    "check_dataset",
    "find_dataset",
    "fio_files",
    "first_repeats",
    "load_microbench",
    "manifest_row",
    "manifest_rows",
    "provenance_name",
    "read_fio_runs",
    "read_microbench_summary",
    "read_provenance",
    "trace_path",
    "utc_stamp",
    "write_csv",
    "write_manifest",
    "write_toml",
]

MANIFEST = "manifest.csv"
POINTS = "points.csv"
SUMMARY = "summary.csv"
PROVENANCE = "provenance.toml"
RUNS = "runs"
TRACES = "traces"
FIO = "fio"
FIO_RUNS = "runs.csv"  # in fio/
MICROBENCH = "microbench"
MANIFEST_HEADER = ["file", "design", "repeat", "calibration", "note", "placement", "steal_pct"]
# Older headers: before placements (read as free), and before the host's steal time (empty:
# not measured).
_MANIFEST_HEADER_V1 = MANIFEST_HEADER[:5]
_MANIFEST_HEADER_V2 = MANIFEST_HEADER[:6]


def write_manifest(path: Path, rows: list[list[str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(MANIFEST_HEADER)
    w.writerows(rows)
    write_atomic(path, buf.getvalue())


def manifest_rows(path: Path) -> list[list[str]]:
    """The rows of an existing manifest, verbatim (without its header); the rows of an older
    manifest without placements get the placement ``free``, and without steal time none."""
    if not path.exists():
        return []
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    if rows and rows[0] == _MANIFEST_HEADER_V1:
        return [[*r, FREE, ""] for r in rows[1:]]
    if rows and rows[0] == _MANIFEST_HEADER_V2:
        return [[*r, ""] for r in rows[1:]]
    if not rows or rows[0] != MANIFEST_HEADER:
        raise ConfigError(f"{path}: not a vsim measure manifest ({','.join(MANIFEST_HEADER)})")
    return rows[1:]


# The parts of a dataset each kind of measurement writes (beside the directory's own files).
PARTS = {
    "runs": (MANIFEST, RUNS, TRACES, SUMMARY, PROVENANCE),
    "fio": (FIO,),
    "microbench": (MICROBENCH,),
}


def check_dataset(out: Path, part: str, *, append: bool) -> None:
    """Refuse to overwrite: an existing dataset that holds this part already is taken only with
    `append` (which keeps every earlier run and provenance), and a non-empty directory that is
    not a vsim dataset never."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"out {out}: is not a directory")
    held = [x for x in PARTS[part] if (out / x).exists()]
    if held and not append:
        raise ConfigError(
            f"out {out} already holds {held[0]} of an earlier measurement: append=True adds "
            "the new runs to it (earlier runs and provenance are kept); or choose another"
        )
    known = {x for xs in PARTS.values() for x in xs}
    if any(out.iterdir()) and not any((out / x).exists() for x in known):
        raise ConfigError(f"out {out}: a non-empty directory that is not a vsim dataset")


def utc_stamp() -> str:
    """The time now as the names of datasets and provenance files carry it (20261201T224527Z)."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def manifest_row(
    file: str, design: str, repeat: int, *, note: str, placement: str, steal_pct: float | None
) -> list[str]:
    """One run's manifest line, in MANIFEST_HEADER's order (calibration marks are left empty:
    `vsim calibrate --use` or a later edit sets them)."""
    cells = {
        "file": file,
        "design": design,
        "repeat": str(repeat),
        "calibration": "",
        "note": note,
        "placement": placement,
        "steal_pct": "" if steal_pct is None else f"{steal_pct:.2f}",
    }
    return [cells[k] for k in MANIFEST_HEADER]


def provenance_name(directory: Path, stem: str = "provenance") -> str:
    """STEM.toml, or (appending) a new STEM-<UTC time>.toml beside the earlier one."""
    if not (directory / f"{stem}.toml").exists():
        return f"{stem}.toml"
    stamp = utc_stamp()
    name, k = f"{stem}-{stamp}.toml", 1
    while (directory / name).exists():
        name, k = f"{stem}-{stamp}-{k}.toml", k + 1
    return name


def first_repeats(keys: pd.DataFrame, cols: list[str]) -> dict[tuple[Any, ...], int]:
    """The first free repeat index per point of earlier runs (key columns `cols`)."""
    if keys.empty:
        return {}
    top = keys.groupby(cols)["repeat"].max()
    return {tuple(k if isinstance(k, tuple) else (k,)): int(v) + 1 for k, v in top.items()}


def write_csv(path: Path, df: pd.DataFrame) -> None:
    """A dataset table as CSV (six significant digits), written atomically."""
    write_atomic(path, str(df.to_csv(index=False, lineterminator="\n", float_format="%.6g")))


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


def read_fio_runs(path: Path) -> pd.DataFrame:
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


def read_microbench_summary(path: Path) -> pd.DataFrame:
    """An existing microbench/summary.csv (empty when there is none)."""
    if not path.exists():
        return pd.DataFrame()
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    if "benchmark" not in df.columns:
        raise ConfigError(f"{path}: missing column 'benchmark'")
    return df


def write_toml(path: Path, doc: dict[str, Any]) -> None:
    """A provenance (or profile) document as TOML, written atomically."""
    write_atomic(path, tomli_w.dumps(doc))


def read_provenance(dataset: Path) -> dict[str, Any]:
    """The dataset's provenance.toml (vsim measure writes it with the first run)."""
    path = dataset / PROVENANCE
    if not dataset.is_dir():
        raise ConfigError(f"{dataset}: not a directory (give a vsim measure --out dataset)")
    try:
        prov = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{dataset}: no {PROVENANCE}: not a vsim measure dataset (vsim measure --out)"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    cores = prov.get("cores")
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ConfigError(f"{path}: cores: expected a whole number >= 1, got {cores!r}")
    return prov


def bundled_datasets() -> dict[str, Path]:
    """The measured datasets shipped with vsim (validation/ in the checkout), by name."""
    try:
        root = resources.files("vsim.datasets")
    except ModuleNotFoundError:  # an install without them
        return {}
    out = {}
    for entry in root.iterdir():
        if entry.is_dir() and any((entry / f).is_file() for f in (MANIFEST, POINTS)):
            out[entry.name] = Path(str(entry))
    return dict(sorted(out.items()))


def find_dataset(source: str | Path) -> Path:
    """`source` itself when it exists, else the bundled dataset it names (``seed-2011`` or
    ``validation/seed-2011``, as in the checkout), else `source` (the reader then says it is
    missing)."""
    p = Path(source)
    if p.exists() or len(p.parts) > 2 or (len(p.parts) == 2 and p.parts[0] != "validation"):
        return p
    return bundled_datasets().get(p.name, p)


def trace_path(dataset: Path, run_file: str) -> Path:
    """The trace of the run whose fio file is `run_file` (runs/<name>.json -> traces/<name>.npz)."""
    return dataset / TRACES / (Path(run_file).stem + ".npz")


def load_microbench(dataset: Path) -> dict[str, np.ndarray]:
    """Every microbenchmark's samples (ns), by name."""
    out = {}
    for p in sorted((dataset / MICROBENCH).glob("*.npy")):
        try:
            with open(p, "rb") as fh:  # our own file object: np.load leaks its own on errors
                out[p.stem] = np.load(fh, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise ConfigError(f"{p}: not a readable microbenchmark sample ({e})") from None
    return out


def fio_files(dataset: Path) -> list[Path]:
    """The real-fio baseline runs (fio's JSON output), in name order."""
    return sorted((dataset / FIO).glob("*.json"))
