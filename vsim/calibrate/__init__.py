"""Calibration: measurements become a profile (from reference traces, or by a least-squares fit)."""

from vsim.calibrate.fit import Fit, FreeParam, apply, fit_profile, free_params, residual_params
from vsim.calibrate.traces import TraceCalibration, calibrate_from_runs, fit_dist

__all__ = [
    "Fit",
    "FreeParam",
    "TraceCalibration",
    "apply",
    "calibrate_from_runs",
    "fit_dist",
    "fit_profile",
    "free_params",
    "residual_params",
]
