"""Sweep tables: read one back (checked), match measured points to it, run its points again."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from vsim.engine import simulate
from vsim.errors import ConfigError
from vsim.results import Result
from vsim.scenario import Scenario, Workload, design

__all__ = ["DEFAULT_IOS", "MATCH_KEYS", "load_table", "matching_measured", "resimulate"]

DEFAULT_IOS = 20_000  # I/Os per point when resimulating a table without an `ios` column
_POINT = ("profile", "design", "rw", "bs", "iodepth", "numjobs", "seed")


def load_table(path: str | Path) -> pd.DataFrame:
    """A sweep table written by `vsim sweep --out` (.csv, .parquet or .json records)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in (".csv", ".parquet", ".json"):
        raise ConfigError(f"cannot read {p.name!r}: use a .csv, .parquet or .json sweep table")
    try:
        if ext == ".csv":
            df = pd.read_csv(p)
        elif ext == ".parquet":
            df = pd.read_parquet(p)
        else:
            doc = json.loads(p.read_text())
            if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
                raise ConfigError(f"{p}: expected a JSON list of rows (vsim sweep --format json)")
            df = pd.DataFrame(doc)
    except FileNotFoundError:
        raise ConfigError(f"no such file {p}") from None
    except (OSError, ValueError, ImportError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"cannot read {p}: {e}") from None
    _check_table(df, p)
    return df


def _check_table(df: pd.DataFrame, p: Path) -> None:
    """A sweep table has rows, and numbers in its numeric columns."""
    if len(df) == 0:
        raise ConfigError(f"{p}: no rows (expected a sweep table from vsim sweep --out)")
    for col in df.columns:
        numeric = col in _NUMERIC or str(col).endswith(("_us", "_pct"))
        if not numeric or pd.api.types.is_numeric_dtype(df[col]):
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        bad = df[col][values.isna() & df[col].notna()]
        if len(bad):
            raise ConfigError(f"{p}: column {col} holds {bad.iloc[0]!r}, not a number")
        df[col] = values


_NUMERIC = ("bs", "iodepth", "numjobs", "seed", "ios", "iops", "bw_kib_s", "events")
MATCH_KEYS = ("design", "rw", "dir", "bs", "iodepth")


def matching_measured(sweep_df: pd.DataFrame, measured: pd.DataFrame, what: str) -> pd.DataFrame:
    """The measured points that share a point (design, rw, dir, bs, iodepth) with the sweep; a
    dataset that matches none is an error (it would be drawn nowhere, silently)."""
    keys = [k for k in MATCH_KEYS if k in sweep_df.columns and k in measured.columns]
    if not keys:
        return measured
    swept = set(sweep_df[keys].itertuples(index=False, name=None))
    hit = [tuple(r) in swept for r in measured[keys].itertuples(index=False, name=None)]
    if not any(hit):
        raise ConfigError(
            f"{what}: none of its {len(measured)} measured rows matches a point of the sweep "
            f"(compared on {', '.join(keys)})"
        )
    return measured


def resimulate(df: pd.DataFrame, *, number_ios: int | None = None) -> list[Result]:
    """Run again every point of a sweep table to get its per-I/O Results (for CDFs, breakdowns).

    Each simulated point (profile, design, rw, bs, iodepth, numjobs, seed) is run with its seed
    and the I/O count of its rows (or `number_ios`; DEFAULT_IOS when the table has no `ios`), so
    a DES sweep's numbers come back as they were. Analytic rows (method `mva`) are skipped.
    Designs are the presets of their name (a table does not record overrides such as poll_us).
    """
    missing = [c for c in ("design", "rw", "bs", "iodepth") if c not in df.columns]
    if missing:
        raise ConfigError(f"the table lacks column(s) {', '.join(missing)}")
    d = (df[df["method"] != "mva"] if "method" in df.columns else df).copy()
    for col, default in (("profile", "seed-2011"), ("numjobs", 1), ("seed", 1)):
        if col not in d.columns:
            d[col] = default
    out = []
    for key, g in d.groupby(list(_POINT), sort=False):
        row = dict(zip(_POINT, key, strict=True))
        n = number_ios
        if n is None:
            ios = g["ios"].sum() if "ios" in g.columns else math.nan
            n = int(ios) // int(row["numjobs"]) if ios > 0 else DEFAULT_IOS
        wl = Workload(
            rw=str(row["rw"]),
            bs=int(row["bs"]),
            iodepth=int(row["iodepth"]),
            numjobs=int(row["numjobs"]),
            number_ios=max(n, 1),
        )
        sc = Scenario(workload=wl, design=design(str(row["design"])), profile=str(row["profile"]))
        out.append(simulate(sc, int(row["seed"])))
    return out
