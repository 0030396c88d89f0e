"""The guest's batched submission (iodepth_batch_submit 8) over one I/O per io_submit (1):
IOPS, slat and kicks per I/O, measured and predicted.

The two campaigns ran alternately (batch 1, batch 8, batch 1, batch 8; 3 rounds each), so
round r of one is paired with round r of the other; the ratio's 95 % CI is the Student-t
interval of the per-round ratios (vsim.precision.mean_ci). The predictions are the reports'
(vsim validate --report). Run after the two reports:

    python validation/local-batch/ratios.py [report-s8]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from vsim.measure import MeasuredSet
from vsim.precision import mean_ci

HERE = Path(__file__).parent
REPORT = sys.argv[1] if len(sys.argv) > 1 else "report"  # or report-s8: against local-s8
KEY = ["design", "iodepth", "repeat"]


def _points(name: str) -> pd.DataFrame:
    return MeasuredSet.load(HERE / name).points.set_index(KEY).sort_index()


def _metric(t: pd.DataFrame, metric: str, suffix: str = "") -> pd.Series:
    """A metric's column; slat as lat - clat where the table has no slat (the reports)."""
    if f"{metric}{suffix}" in t:
        return t[f"{metric}{suffix}"]
    return t[f"lat_mean_us{suffix}"] - t[f"clat_mean_us{suffix}"]


def main() -> None:
    one, eight = _points("batch1"), _points("batch8")
    preds = [
        pd.read_csv(HERE / n / REPORT / "table.csv").set_index(["design", "iodepth"])
        for n in ("batch1", "batch8")
    ]
    rows = []
    for (d, qd), _ in one.groupby(level=["design", "iodepth"]):
        out: dict[str, object] = {"design": d, "iodepth": int(qd)}
        for metric in ("iops", "slat_mean_us", "lat_mean_us"):
            a = _metric(eight.loc[(d, qd)], metric)
            b = _metric(one.loc[(d, qd)], metric)
            ci = mean_ci((a / b).dropna())
            p8, p1 = (_metric(p.loc[[(d, qd)]], metric, "_pred").iloc[0] for p in preds[::-1])
            pred = p8 / p1
            out |= {
                f"{metric}_ratio": ci.mean,
                f"{metric}_ci95": ci.high - ci.mean,
                f"{metric}_pred": pred,
            }
        rows.append(out)
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
