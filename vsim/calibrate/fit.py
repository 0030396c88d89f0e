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
    "residual_params",
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


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _leaf(doc: dict[str, Any], path: str, *, lists: bool = False) -> tuple[dict[str, Any], str]:
    """The table holding the numeric leaf at a dotted path, and its key; with `lists`, a list
    of numbers (an empirical distribution's quantiles) is a leaf too (for mode "scale")."""
    parts = path.split(".")
    node: Any = doc
    for p in parts[:-1]:
        if not isinstance(node, dict) or p not in node:
            raise ProfileError(f"fit: no profile key {path!r}")
        node = node[p]
    leaf = node.get(parts[-1]) if isinstance(node, dict) else None
    is_list = isinstance(leaf, list) and bool(leaf) and all(_is_number(x) for x in leaf)
    if not (_is_number(leaf) or (lists and is_list)):
        what = "a number or a list of numbers" if lists else "a number"
        raise ProfileError(f"fit: {path!r} is not {what} in the profile")
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
        unknown = sorted(set(t) - {"paths", "mode", "bounds", "why"})
        if unknown:
            raise ProfileError(f"{where}.{unknown[0]}: unknown key (expected paths, mode, bounds)")
        paths, mode, bounds = t.get("paths"), t.get("mode", "set"), t.get("bounds")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise ProfileError(f"{where}.paths: expected a list of dotted profile keys")
        if mode not in ("set", "scale"):
            raise ProfileError(f"{where}.mode: expected set or scale")
        if not (isinstance(bounds, list) and len(bounds) == 2 and bounds[0] < bounds[1]):
            raise ProfileError(f"{where}.bounds: expected [low, high] with low < high")
        for p in paths:
            _leaf(doc, p, lists=mode == "scale")
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
            node, key = _leaf(new, path, lists=p.mode == "scale")
            base = _leaf(doc, path, lists=p.mode == "scale")[0][key]
            if p.mode == "set":
                node[key] = float(v)
            elif isinstance(base, list):
                node[key] = [float(x) * float(v) for x in base]
            else:
                node[key] = float(base) * float(v)
    return new


# The backend's per-request operations (vsim.models.syscalls names) a residual fit scales.
# io_uring's submission costs (when the profile has them) scale with Linux AIO's: the factor is
# the reference backend's Python threads' overhead, not the engine's; SQPOLL's with them (the
# SQ thread's are differences of the scaled ones).
_BACKEND_OPS = (
    "pop",
    "pop_cold",
    "submit_call",
    "submit_iocb",
    "submit_cold",
    "push",
    "signal",
    "uring_submit_call",
    "uring_submit_sqe",
    "uring_sqpoll_call",
    "uring_sqpoll_sqe",
    "uring_sq_call",
    "uring_sq_sqe",
)
# The numbers of a trace calibration that its traces read least directly, freed for a fit to
# the calibration points (vsim calibrate DIR --fit). Each: (name, paths, mode, bounds, why).
_RESIDUALS: tuple[
    tuple[str, tuple[str, ...], Literal["set", "scale"], tuple[float, float], str], ...
] = (
    (
        "kick",
        ("costs.kick.value_us",),
        "set",
        (0.0, 200.0),
        "read as a difference of medians (kicked minus suppressed submissions): the mean "
        "keeps the tail, the guest preempted by the backend it woke",
    ),
    (
        "completion",
        ("disk.completion.value_us",),
        "set",
        (0.0, 200.0),
        "read as the mean residual of (io_submit returned -> reaped) beyond fio's service, "
        "with the wake-up and reap priced by microbenchmarks taken on other CPUs' time",
    ),
    (
        "user_backend",
        tuple(f"costs.{op}.user" for op in _BACKEND_OPS),
        "scale",
        (0.25, 4.0),
        "the one-thread backend's per-request costs (its user-context variants): read from gaps "
        "that also hold the interpreter lock's hand-overs and preemptions",
    ),
    (
        "kernel_backend",
        tuple(f"costs.{op}.kernel" for op in _BACKEND_OPS),
        "scale",
        (0.25, 4.0),
        "the two-thread backend's per-request costs (its kernel-context variants): as above, "
        "with two threads contending for the lock",
    ),
)


# The time-valued number(s) of a distribution table, in the order tried: scaling it scales the
# distribution (fixed, exponential, lognormal and gamma by their mean; empirical by its
# quantiles; uniform is not scaled by a residual fit).
_DIST_LEAVES = ("value_us", "mean_us", "quantiles_us")


def residual_params(doc: dict[str, Any]) -> dict[str, Any]:
    """[fit] tables freeing the trace-calibrated numbers the traces read least directly (those of
    _RESIDUALS that the profile has), for `fit_profile` to fit to the calibration points."""
    out: dict[str, Any] = {}
    for name, paths, mode, bounds, why in _RESIDUALS:
        have = []
        for p in paths:
            for leaf in (p, *(f"{p}.{k}" for k in _DIST_LEAVES)):
                try:
                    _leaf(doc, leaf, lists=mode == "scale")
                except ProfileError:
                    continue
                have.append(leaf)
                break
        if have:
            out[name] = {"paths": have, "mode": mode, "bounds": list(bounds), "why": why}
    if not out:
        raise ProfileError("fit: the profile has none of the numbers a residual fit frees")
    return out


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
    (the same seed), so the objective is deterministic; finite differences use a 5 % step,
    larger than the simulated objective's discrete jumps. Standard errors come from the
    Jacobian at the optimum: cov = s^2 (J^T J)^-1 with s^2 = SSR / (m - n).
    """
    params = free_params(base)
    subset = calibration_subset(measured, use)
    n_eval = 0

    metrics: list[str] = []  # of each residual (the same rows at every evaluation)

    def f(x: np.ndarray) -> np.ndarray:
        nonlocal n_eval
        n_eval += 1
        res = _residuals(apply(base, params, x), subset, ios, seed)
        metrics[:] = list(res["metric"])
        return np.asarray(res["error_pct"], dtype=float) / 100

    x0 = np.array([p.start for p in params])
    lo = np.array([p.low for p in params])
    hi = np.array([p.high for p in params])
    from scipy.optimize import least_squares  # heavy: loaded when a fit runs

    # A 5 % finite-difference step: a simulated objective moves in small discrete jumps (each
    # I/O's draws shift as a parameter moves), and with a 2 % step the trust region stalled on
    # them (the synthetic round trip in tests/test_calibrate.py ended at 3.4 % rms instead of
    # recovering the truth; with 5 % it does, to 0.03 %, from a start 17-33 % off; from farther
    # off it can stop in a local minimum: see test_residual_fit_round_trips_from_far_off).
    def solve(start: np.ndarray) -> Any:
        return least_squares(f, start, bounds=(lo, hi), diff_step=0.05, x_scale=1.0, max_nfev=60)

    sol = solve(x0)
    notes = []
    if _misses(sol.fun, metrics):
        # Perhaps a local minimum (parameters whose errors cancel at some points): screen a
        # Sobol set of starts over the bounds and solve again from the best of them.
        starts = _sobol_starts(params, RESTART_SCREEN)
        cost = [float(np.sum(f(x) ** 2)) for x in starts]
        again = solve(starts[int(np.argmin(cost))])
        # The restart stands only if it reaches the targets the first solution missed: a
        # slightly lower rms elsewhere in the bounds trades parameters the calibration points do
        # not identify (the first solution starts from measured or cited values).
        take = not _misses(again.fun, metrics)
        notes.append(
            f"a calibration point missed its target: restarted from the best of {len(starts)} "
            f"Sobol starts: rms {_rms_pct(sol.fun):.2f} % -> {_rms_pct(again.fun):.2f} %, "
            + ("which meets every target: kept" if take else "which misses too: not kept")
        )
        if take:
            sol = again
    m, n = len(sol.fun), len(x0)
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
        "notes": list(notes),
        "ios": ios,  # simulated I/Os per point and root seed: the fit depends on both (and
        "seed": seed,  # on the profile's name, which keys the random streams)
        "parameters": {
            p.name: {
                "value": float(v),
                "stderr": float(se),
                "mode": p.mode,
                "start": p.start,
                **({"why": base["fit"][p.name]["why"]} if "why" in base["fit"][p.name] else {}),
            }
            for p, v, se in zip(params, sol.x, stderr, strict=True)
        },
        "residuals": {
            "columns": list(residuals.columns),
            "rows": [
                [x if isinstance(x, str) else float(x) for x in r]
                for r in residuals.itertuples(index=False)
            ],
        },
    }
    return Fit(params, sol.x, stderr, residuals, rms, doc, n_eval, notes)


# The fit restarts when a calibration point misses issue 13's targets (IOPS within 3 %, mean
# latency within 5 %), from the best of this many quasi-random starts.
TARGET_PCT = {"iops": 3.0, "clat_mean_us": 5.0, "lat_mean_us": 5.0}
RESTART_SCREEN = 16


def _misses(fun: np.ndarray, metrics: list[str]) -> bool:
    """Whether any residual (a relative error) misses its metric's target."""
    return any(abs(100 * e) > TARGET_PCT[m] for e, m in zip(fun, metrics, strict=True))


def _rms_pct(fun: np.ndarray) -> float:
    return float(100 * np.sqrt(np.mean(np.asarray(fun) ** 2)))


def _sobol_starts(params: list[FreeParam], n: int) -> list[np.ndarray]:
    """n scrambled-Sobol points over the parameters' bounds (scale factors in log space), from a
    fixed seed so that a fit is repeatable."""
    from scipy.stats import qmc

    u = qmc.Sobol(d=len(params), scramble=True, seed=0).random(n)
    out = []
    for row in u:
        x = []
        for p, q in zip(params, row, strict=True):
            if p.mode == "scale" and p.low > 0:
                x.append(float(math.exp(math.log(p.low) + q * math.log(p.high / p.low))))
            else:
                x.append(float(p.low + q * (p.high - p.low)))
        out.append(np.array(x))
    return out


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
            node, _ = _leaf(doc, path, lists=p.mode == "scale")
            old = node.get("source", "")
            node["provenance"] = "fitted"
            node["source"] = (
                f"vsim calibrate --fit on {dataset}: {p.name} = {what} (rms residual "
                f"{rms:.2f} %); before the fit: {old}"
            )
