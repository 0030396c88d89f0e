"""Each design's IOPS over virtio-blk's at the same point (numjobs 2), measured and predicted.

The two campaigns of this dataset ran back to back (vcpus1, then vcpus2), so the measured ratio
is taken in one window and does not depend on the instance's speed, which the absolute figures
do (the profile, local-s6, was calibrated on an earlier instance). Run after the two reports:

    python validation/local-mq/ratios.py
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
BASELINE = "virtio-blk"


def main() -> None:
    t = pd.concat(
        [pd.read_csv(HERE / d / "report" / "table.csv") for d in ("vcpus1", "vcpus2")],
        ignore_index=True,
    )
    base = t[t.design == BASELINE].set_index("iodepth")
    rows = []
    for _, r in t[t.design != BASELINE].iterrows():
        b = base.loc[r.iodepth]
        meas = r.iops_meas / b.iops_meas
        pred = r.iops_pred / b.iops_pred
        ci = meas * math.hypot(r.iops_ci_pct, b.iops_ci_pct) / 100  # first-order, independent
        rows.append(
            {
                "design": r.design,
                "iodepth": r.iodepth,
                "ratio_meas": meas,
                "ratio_ci95": ci,
                "ratio_pred": pred,
                "err_pp": 100 * (pred - meas),
                "decisive": abs(meas - 1) > ci,
                "direction_right": (pred > 1) == (meas > 1),
            }
        )
    out = pd.DataFrame(rows)
    print(out.round(3).to_string(index=False))
    dec = out[out.decisive]
    print(
        f"direction right at {int(dec.direction_right.sum())} of {len(dec)} ratios whose CI "
        f"excludes 1; median |err| {out.err_pp.abs().median():.1f} pp over all {len(out)}"
    )


if __name__ == "__main__":
    main()
