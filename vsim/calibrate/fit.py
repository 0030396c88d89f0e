"""Calibration by fitting: least squares of a profile's declared free numbers to measured points."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import tomli_w

from vsim.errors import ConfigError, ProfileError
from vsim.measure.dataset import MeasuredSet
from vsim.measure.rules import CalibrationRule, calibration_subset
from vsim.outputs import write_atomic
from vsim.profile import Profile
from vsim.validate.compare import validate

__all__ = [
    "FIT_METRICS",
    "Fit",
    "FreeParam",
    "apply",
    "fit_profile",
    "free_params",
]

FIT_METRICS = ("iops", "clat_mean_us", "lat_mean_us")


@dataclass(frozen=True)
class FreeParam:
    """A number the fit may move: it sets (or scales) one or more leaves of the profile.

    Declared in the base profile as ``[fit.NAME]`` with ``paths`` (dotted paths to numeric
    leaves, e.g. ``"costs.pop.user.value_us"``), ``mode`` ("set" or "scale") and ``bounds``.
    """

    name: str
    paths: tuple[str, ...]
    mode: Literal["set", "scale"]
    low: float
    high: float
    start: float


def _leaf(doc: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    parts = path.split(".")
    node: Any = doc
    for p in parts[:-1]:
        if not isinstance(node, dict) or p not in node:
            raise ProfileError(f"fit: no profile key {path!r}")
        node = node[p]
    if not isinstance(node, dict) or not isinstance(node.get(parts[-1]), int | float):
        raise ProfileError(f"fit: {path!r} is not a number in the profile")
    return node, parts[-1]


def free_params(doc: dict[str, Any]) -> list[FreeParam]:
    """The free parameters a base profile declares in its [fit] table."""
    fit = doc.get("fit")
    if not isinstance(fit, dict) or not fit:
        raise ProfileError("fit: the base profile declares no free parameters ([fit.NAME] tables)")
    out = []
    for name, t in fit.items():
        where = f"fit.{name}"
        if not isinstance(t, dict):
            raise ProfileError(f"{where}: expected a table with paths, mode and bounds")
        paths, mode, bounds = t.get("paths"), t.get("mode", "set"), t.get("bounds")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise ProfileError(f"{where}.paths: expected a list of dotted profile keys")
        if mode not in ("set", "scale"):
            raise ProfileError(f"{where}.mode: expected set or scale")
        if not (isinstance(bounds, list) and len(bounds) == 2 and bounds[0] < bounds[1]):
            raise ProfileError(f"{where}.bounds: expected [low, high] with low < high")
        for p in paths:
            _leaf(doc, p)
        if mode == "scale":
            start = 1.0
        else:
            node, key = _leaf(doc, paths[0])
            start = float(node[key])
        lo, hi = float(bounds[0]), float(bounds[1])
        out.append(FreeParam(name, tuple(paths), mode, lo, hi, min(max(start, lo), hi)))
    return out


def apply(doc: dict[str, Any], params: list[FreeParam], values: np.ndarray) -> dict[str, Any]:
    """A copy of the profile document with the free parameters set to values."""
    new = copy.deepcopy(doc)
    for p, v in zip(params, values, strict=True):
        for path in p.paths:
            node, key = _leaf(new, path)
            base_node, _ = _leaf(doc, path)
            node[key] = float(v) if p.mode == "set" else float(base_node[key]) * float(v)
    return new


@dataclass
class Fit:
    """The outcome of a fit: values with standard errors, residuals, and the fitted document."""

    params: list[FreeParam]
    values: np.ndarray
    stderr: np.ndarray
    residuals: pd.DataFrame
    rms_pct: float
    document: dict[str, Any]
    evaluations: int
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The fitted values and residuals as text."""
        lines = ["fitted parameters (value +- standard error):"]
        for p, v, se in zip(self.params, self.values, self.stderr, strict=True):
            unit = "x" if p.mode == "scale" else ""
            lines.append(f"  {p.name:16s} {v:10.4g}{unit} +- {se:.3g}   [{p.low:g}, {p.high:g}]")
        lines.append(f"residuals (predicted vs measured, %), rms {self.rms_pct:.2f} %:")
        lines.append(self.residuals.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> None:
        """Write the fitted profile as TOML."""
        write_atomic(path, tomli_w.dumps(self.document))


def _residuals(doc: dict[str, Any], measured: MeasuredSet, ios: int, seed: int) -> pd.DataFrame:
    prof = Profile.from_dict(doc, "fit")
    t = validate(prof, measured, seed=seed, ios=ios).table
    rows = []
    for _, r in t.iterrows():
        for m in FIT_METRICS:
            meas = r.get(f"{m}_meas")
            if meas is None or not math.isfinite(meas):
                continue
            rows.append(
                {
                    "design": r["design"],
                    "rw": r["rw"],
                    "dir": r["dir"],
                    "bs": r["bs"],
                    "iodepth": r["iodepth"],
                    "metric": m,
                    "measured": meas,
                    "predicted": r[f"{m}_pred"],
                    "error_pct": 100 * (r[f"{m}_pred"] / meas - 1),
                }
            )
    if not rows:
        raise ConfigError("fit: no calibration points with IOPS or latency to fit to")
    return pd.DataFrame(rows)


def fit_profile(
    base: dict[str, Any],
    measured: MeasuredSet,
    *,
    use: CalibrationRule | None = None,
    ios: int = 10_000,
    seed: int = 1,
    source: str = "",
) -> Fit:
    """Least-squares fit (scipy.optimize.least_squares, trust region) of the free parameters.

    Residuals are relative errors of IOPS and mean latencies at the calibration points (`use`, or
    the dataset's own marks). Every evaluation simulates those points with common random numbers
    (the same seed), so the objective is deterministic; finite differences use a 2 % step, larger
    than the simulation's noise. Standard errors come from the Jacobian at the optimum:
    cov = s^2 (J^T J)^-1 with s^2 = SSR / (m - n).
    """
    params = free_params(base)
    subset = calibration_subset(measured, use)
    n_eval = 0

    def f(x: np.ndarray) -> np.ndarray:
        nonlocal n_eval
        n_eval += 1
        res = _residuals(apply(base, params, x), subset, ios, seed)
        return np.asarray(res["error_pct"], dtype=float) / 100

    x0 = np.array([p.start for p in params])
    lo = np.array([p.low for p in params])
    hi = np.array([p.high for p in params])
    from scipy.optimize import least_squares  # heavy: loaded when a fit runs

    sol = least_squares(f, x0, bounds=(lo, hi), diff_step=0.02, x_scale="jac", max_nfev=60)
    m, n = len(sol.fun), len(x0)
    notes = []
    if m > n:
        s2 = float(sol.fun @ sol.fun) / (m - n)
        try:
            cov = np.linalg.inv(sol.jac.T @ sol.jac) * s2
            stderr = np.sqrt(np.clip(np.diag(cov), 0, None))
        except np.linalg.LinAlgError:
            stderr = np.full(n, math.inf)
            notes.append("the Jacobian is singular: some parameters are not identifiable")
    else:
        stderr = np.full(n, math.inf)
        notes.append("no more residuals than parameters: no uncertainty estimate")
    doc = apply(base, params, sol.x)
    residuals = _residuals(doc, subset, ios, seed)
    rms = float(np.sqrt(np.mean(residuals["error_pct"] ** 2)))
    _record_provenance(doc, base, params, sol.x, stderr, rms, source or measured.name)
    doc.pop("fit", None)
    doc["fit_report"] = {
        "method": "scipy.optimize.least_squares (trf), relative errors of IOPS and mean latency",
        "dataset": measured.name,
        "calibration_points": str(use) if use is not None else "the dataset's calibration marks",
        "rms_error_pct": rms,
        "evaluations": n_eval,
        "ios": ios,  # simulated I/Os per point and root seed: the fit depends on both (and
        "seed": seed,  # on the profile's name, which keys the random streams)
        "parameters": {
            p.name: {"value": float(v), "stderr": float(se), "mode": p.mode}
            for p, v, se in zip(params, sol.x, stderr, strict=True)
        },
    }
    return Fit(params, sol.x, stderr, residuals, rms, doc, n_eval, notes)


def _record_provenance(
    doc: dict[str, Any],
    base: dict[str, Any],
    params: list[FreeParam],
    values: np.ndarray,
    stderr: np.ndarray,
    rms: float,
    dataset: str,
) -> None:
    for p, v, se in zip(params, values, stderr, strict=True):
        what = f"{v:.4g} +- {se:.2g}" if p.mode == "set" else f"x{v:.4g} +- {se:.2g}"
        for path in p.paths:
            node, _ = _leaf(doc, path)
            old = node.get("source", "")
            node["provenance"] = "fitted"
            node["source"] = (
                f"vsim calibrate --fit on {dataset}: {p.name} = {what} (rms residual "
                f"{rms:.2f} %); before the fit: {old}"
            )
