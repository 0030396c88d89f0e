"""Validation: measured runs against the model's predictions, with errors, demerits and gains."""

from vsim.validate.compare import (
    BASELINE,
    COMPARED,
    CONCLUSIVE_PCT,
    DEFAULT_IOS,
    TARGETS,
    Validation,
    cdf_quantiles,
    demerit,
    demerit_pct,
    gain_ci,
    noise_floor,
    paired_gain_ci,
    quantile_levels,
    rel_err_pct,
    validate,
)
from vsim.validate.report import markdown, summary

__all__ = [
    "BASELINE",
    "COMPARED",
    "CONCLUSIVE_PCT",
    "DEFAULT_IOS",
    "TARGETS",
    "Validation",
    "cdf_quantiles",
    "demerit",
    "demerit_pct",
    "gain_ci",
    "markdown",
    "noise_floor",
    "paired_gain_ci",
    "quantile_levels",
    "rel_err_pct",
    "summary",
    "validate",
]
