"""Profile numbers: a value or a distribution with its provenance (measured, fitted, cited...)."""

from __future__ import annotations

import math
from typing import Any

from vsim.errors import ProfileError
from vsim.models.dists import PROVENANCE_KEYS, Dist, check_keys, dist_from_dict

__all__ = ["PROVENANCE_KINDS", "dist", "record_provenance", "scalar"]

PROVENANCE_KINDS = ("measured", "fitted", "cited", "derived")


def record_provenance(table: dict[str, Any], where: str, out: dict[str, str]) -> None:
    """Check a table's provenance and source, and record them in `out` under `where`."""
    kind = table.get("provenance")
    if kind not in PROVENANCE_KINDS:
        raise ProfileError(f"{where}.provenance: expected one of {', '.join(PROVENANCE_KINDS)}")
    src = table.get("source")
    if not isinstance(src, str) or not src.strip():
        raise ProfileError(f"{where}.source: every number needs a source")
    out[where] = f"{kind}: {src}"


def scalar(data: dict[str, Any], key: str, where: str, prov: dict[str, str]) -> float:
    """A number stored as {value, provenance, source}; records its provenance."""
    path = f"{where}.{key}"
    t = data.get(key)
    if not isinstance(t, dict) or "value" not in t:
        raise ProfileError(f"{path}: expected a table with value, provenance and source")
    check_keys(t, ("value", *PROVENANCE_KEYS), path)
    v = t["value"]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ProfileError(f"{path}.value: expected a number, got {v!r}")
    record_provenance(t, path, prov)
    return float(v)


def dist(data: dict[str, Any], key: str, where: str, prov: dict[str, str]) -> Dist:
    """A distribution table with provenance; records its provenance."""
    path = f"{where}.{key}"
    t = data.get(key)
    d = dist_from_dict(t, path)
    assert isinstance(t, dict)
    record_provenance(t, path, prov)
    return d
