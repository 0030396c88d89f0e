"""Print the parallel efficiency of a 24-point sweep with 1 and 2 worker processes.

Run: python benchmarks/parallel.py [--repeat R] [--ios N]
Efficiency = T(1 worker) / (2 x T(2 workers)), measured interleaved (1, 2, 1, 2, ...) in the same
run; the rows of both runs must be identical.
"""

from __future__ import annotations

import argparse
import statistics
import time

from vsim import Scenario, Workload
from vsim.sweep import grid, run_points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ios", type=int, default=10_000)
    a = ap.parse_args()
    pts = grid(
        Scenario(workload=Workload(rw="randread", bs=4096, number_ios=a.ios)),
        {
            "design": ["virtio-blk", "vhost-blk"],
            "iodepth": [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64],
        },
    )
    times: dict[int, list[float]] = {1: [], 2: []}
    rows: dict[int, list[object]] = {}
    for _ in range(a.repeat):
        for jobs in (1, 2):
            t0 = time.perf_counter()
            rows[jobs] = run_points(pts, jobs=jobs).rows
            times[jobs].append(time.perf_counter() - t0)
    t1, t2 = statistics.median(times[1]), statistics.median(times[2])
    print(
        f"24 points x {a.ios} I/Os: 1 worker {t1:.2f} s, 2 workers {t2:.2f} s "
        f"(medians of {a.repeat}); efficiency {100 * t1 / (2 * t2):.0f} %; "
        f"identical rows: {rows[1] == rows[2]}"
    )


if __name__ == "__main__":
    main()
