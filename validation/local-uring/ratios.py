"""Paired ratios of IOPS between designs that differ in one thing, measured and predicted.

Within each round the designs ran back to back at every point, so the ratio of two designs'
IOPS in the same round is free of the instance's drift between rounds; its 95 % CI is the
Student-t interval of the per-round ratios (vsim.precision.mean_ci). The predictions are the
report's (vsim validate --report). Run after the report:

    python validation/local-uring/ratios.py [report-s8]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from vsim.measure import MeasuredSet
from vsim.precision import mean_ci

HERE = Path(__file__).parent
REPORT = sys.argv[1] if len(sys.argv) > 1 else "report"  # or report-s8: against local-s8
# (design, its baseline, what differs)
PAIRS = (
    ("virtio-blk-batched", "virtio-blk", "batched submission and signalling"),
    ("qemu-iothread", "virtio-blk-batched", "adaptive polling"),
    ("qemu-iothread-uring", "qemu-iothread", "io_uring for Linux AIO"),
    ("iothread-uring-sqpoll", "qemu-iothread-uring", "SQPOLL"),
)


def main() -> None:
    ds = MeasuredSet.load(HERE)
    p = ds.points
    iops = p.pivot_table(index=["design", "iodepth", "repeat"], values="iops", aggfunc="sum")
    pred = pd.read_csv(HERE / REPORT / "table.csv").set_index(["design", "iodepth"])
    rows = []
    for d, base, what in PAIRS:
        for qd in sorted(p.iodepth.unique()):
            a, b = iops.loc[(d, qd)].iops, iops.loc[(base, qd)].iops
            ci = mean_ci((a / b).dropna())
            r_pred = pred.loc[(d, qd)].iops_pred / pred.loc[(base, qd)].iops_pred
            rows.append(
                {
                    "design": d,
                    "over": base,
                    "what": what,
                    "iodepth": int(qd),
                    "ratio_meas": ci.mean,
                    "ci95": ci.high - ci.mean,
                    "rounds": ci.n,
                    "ratio_pred": r_pred,
                    "err_pp": 100 * (r_pred - ci.mean),
                    "decisive": not ci.low <= 1.0 <= ci.high,
                    "direction_right": (r_pred > 1) == (ci.mean > 1),
                    "inside_ci": ci.low <= r_pred <= ci.high,
                }
            )
    out = pd.DataFrame(rows)
    print(out.round(3).to_string(index=False))
    dec = out[out.decisive]
    print(
        f"direction right at {int(dec.direction_right.sum())} of {len(dec)} ratios whose CI "
        f"excludes 1; predicted ratio inside the measured CI at {int(out.inside_ci.sum())} of "
        f"{len(out)}; median |err| {out.err_pp.abs().median():.1f} pp"
    )


if __name__ == "__main__":
    main()
