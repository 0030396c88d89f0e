"""Tidy tables as plots need them: panels, replicate summaries with CIs, direction totals."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from vsim.errors import ConfigError
from vsim.precision import ci_halfwidth

__all__ = [
    "METHODS",
    "MIXED",
    "PANEL_KEYS",
    "REPLICATE_KEYS",
    "ci95",
    "constants",
    "direction_totals",
    "panel_keys",
    "panel_title",
    "per_run",
    "require_columns",
    "size_label",
    "summarise",
    "unique",
]

# Columns that split a table into panels when they take more than one value.
PANEL_KEYS = ("profile", "method", "rw", "bs", "numjobs", "guest_vcpus")
REPLICATE_KEYS = ("seed", "repeat")


def unique(values: Iterable[Any]) -> list[Any]:
    """Distinct values in order of first appearance."""
    return list(dict.fromkeys(values))


# ------------------------------------------------------------------------------ tables


def require_columns(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ConfigError(f"{what}: missing column(s) {', '.join(missing)}")


def panel_keys(df: pd.DataFrame, always: Sequence[str] = ()) -> list[str]:
    keys = [k for k in PANEL_KEYS if k in df.columns and (k in always or df[k].nunique() > 1)]
    return keys


MIXED = ("rw", "readwrite", "randrw")


def panel_title(keys: Sequence[str], values: Sequence[Any]) -> str:
    parts = []
    rw = dict(zip(keys, values, strict=True)).get("rw")
    for k, v in zip(keys, values, strict=True):
        if k == "bs":
            parts.append(f"bs {size_label(int(v))}")
        elif k == "dir":
            if rw is None or rw in MIXED:
                names = {"total": "read + write", "read": "reads", "write": "writes"}
                parts.append(f"({names.get(str(v), v)})")
        elif k == "method":
            parts.append(METHODS.get(str(v), str(v)))
        else:
            parts.append(f"{k}={v}" if k in ("rw", "numjobs", "guest_vcpus") else str(v))
    return " ".join(parts)


def size_label(b: int) -> str:
    for unit, n in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= n and b % n == 0:
            return f"{b // n} {unit}"
    return f"{b} B"


METHODS = {"des": "simulated (DES)", "mva": "analytic (MVA)"}


def constants(df: pd.DataFrame) -> str:
    """What every row shares (profile, bs, ...), for a figure title."""
    parts = []
    for k in ("profile", "rw", "bs", "method"):
        if k in df.columns and df[k].nunique() == 1:
            v = df[k].iloc[0]
            if k == "bs":
                parts.append(f"bs {size_label(int(v))}")
            elif k == "rw":
                parts.append(f"rw={v}")
            elif k == "method":
                parts.append(METHODS.get(str(v), str(v)))
            else:
                parts.append(str(v))
    return ", ".join(parts)


def ci95(x: NDArray[np.float64]) -> float:
    """Half-width of the 95 % t confidence interval of the mean (0 for one value)."""
    hw = ci_halfwidth(x, 0.95)
    return 0.0 if math.isnan(hw) else hw


def per_run(df: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """One row per (keys, replicate) with `value` summed over directions (IOPS are additive).

    A run with a `total` direction row (a mixed job reported as one) uses that row alone.
    """
    reps = [k for k in REPLICATE_KEYS if k in df.columns]
    d = df.dropna(subset=[value])
    if "dir" in d.columns:
        grp = d.groupby([*keys, *reps], sort=False, dropna=False)
        has_total = grp["dir"].transform(lambda s: (s == "total").any())
        d = d[~has_total | (d["dir"] == "total")]
    out = d.groupby([*keys, *reps], sort=False, dropna=False)[value].sum().reset_index()
    return out


def summarise(df: pd.DataFrame, keys: list[str], cols: Sequence[str]) -> pd.DataFrame:
    """Mean and 95 % CI half-width (`<col>_ci`) of cols over the replicates of each key."""
    rows = []
    for key, g in df.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        for c in cols:
            x = g[c].to_numpy(dtype=np.float64)
            x = x[np.isfinite(x)]
            row[c] = float(x.mean()) if x.size else math.nan
            row[f"{c}_ci"] = ci95(x)
            row["n"] = int(x.size)
        rows.append(row)
    return pd.DataFrame(rows)


def direction_totals(df: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    """Latency rows of every direction of a run merged into one `total` row (I/O-weighted).

    The mean is exact; p50/p99 are I/O-weighted averages of the directions' percentiles (exact
    only when the directions have the same distribution).
    """
    reps = [k for k in REPLICATE_KEYS if k in df.columns]
    cols = [
        c for c in (f"{metric}_mean_us", f"{metric}_p50_us", f"{metric}_p99_us") if c in df.columns
    ]
    rows = []
    for key, g in df.groupby([*keys, *reps], sort=False, dropna=False):
        row = dict(zip([*keys, *reps], key, strict=True))
        if "dir" in g.columns and (g["dir"] == "total").any():
            g = g[g["dir"] == "total"]
        w = g["ios"].to_numpy(dtype=np.float64) if "ios" in g.columns else np.ones(len(g))
        if not np.all(w > 0):
            w = np.ones(len(g))
        for c in cols:
            x = g[c].to_numpy(dtype=np.float64)
            ok = np.isfinite(x)
            row[c] = float(np.average(x[ok], weights=w[ok])) if ok.any() else math.nan
        row["dir"] = "total"
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ axes helpers
