"""Calibration rules: which measured points a profile is fitted to, and which are held out."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import pandas as pd

from vsim.errors import ConfigError
from vsim.measure.dataset import MeasuredSet

__all__ = ["CalibrationRule", "calibration_subset", "parse_rule", "rule_mask", "rule_text"]

# A pandas query over a table's columns ("iodepth in [1, 8]") or {column: values}.
CalibrationRule = str | Mapping[str, Collection[object]]


def parse_rule(text: str | None) -> CalibrationRule | None:
    """A rule as written on the command line: "iodepth=1,8" or "design=virtio-blk" (column=
    values, ';' between columns), or a pandas query ("iodepth in [1, 8]")."""
    if text is None:
        return None
    if "==" in text or "=" not in text:
        return text
    rule: dict[str, list[Any]] = {}
    for part in text.split(";"):
        col, _, vals = part.partition("=")
        if not col.strip() or not vals.strip():
            raise ConfigError(f"use {text!r}: expected column=value[,value...]")
        items: list[Any] = []
        for v in vals.split(","):
            v = v.strip()
            items.append(int(v) if v.lstrip("-").isdigit() else v)
        rule[col.strip()] = items
    return rule


def rule_text(rule: CalibrationRule) -> str:
    """A rule as the command line writes it (iodepth=1,8 or the query)."""
    if isinstance(rule, str):
        return repr(rule)
    return ";".join(f"{k}={','.join(str(v) for v in vals)}" for k, vals in rule.items())


def rule_mask(table: pd.DataFrame, rule: CalibrationRule) -> pd.Series:
    """Which rows of `table` the rule picks (a boolean Series on its index)."""
    if isinstance(rule, str):
        try:
            return pd.Series(table.eval(rule), index=table.index).astype(bool)
        except Exception as exc:  # pandas raises many kinds for a bad expression
            raise ConfigError(f"use {rule!r}: not a valid query ({exc})") from None
    mask = pd.Series(True, index=table.index)
    for col, values in rule.items():
        if col not in table.columns:
            raise ConfigError(f"use: no column {col!r} ({', '.join(map(str, table.columns))})")
        mask &= table[col].isin(list(values))
    return mask


def calibration_subset(measured: MeasuredSet, use: CalibrationRule | None) -> MeasuredSet:
    """The measured runs of the calibration points only (`use`, or the dataset's marks)."""
    pts = measured.points
    mask = pts["calibration"].astype(bool) if use is None else rule_mask(pts, use)
    if not mask.any():
        what = "the dataset marks no run" if use is None else f"use {rule_text(use)} matches none"
        raise ConfigError(f"{what}: no measured point is a calibration point")
    return MeasuredSet(f"{measured.name} (calibration points)", pts[mask], measured.runs)
