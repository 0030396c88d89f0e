"""Print a 1,000-point sweep's wall time on 1 and 2 worker processes and on a Dask LocalCluster
of 2 single-threaded workers, the parallel efficiency, and whether the rows are identical.

Run: python benchmarks/parallel.py [--repeat R] [--ios N] [--no-dask]
The grid: 2 designs x iodepth 1-50 x randread/randwrite x 5 block sizes (seed-2011), N I/Os a
point. Efficiency = T(1 worker) / (2 x T(2 workers)), the executors measured interleaved (1, 2,
dask, 1, 2, dask, ...) in the same run, medians of R. The Dask cluster is started once, before
the timings (its start-up is not a sweep's cost); its workers import vsim on their first task,
as the pool's workers do.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from vsim import Scenario, Workload
from vsim.sweep import grid, run_points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ios", type=int, default=5_000)
    ap.add_argument("--no-dask", action="store_true")
    a = ap.parse_args()
    pts = grid(
        Scenario(workload=Workload(bs=4096, number_ios=a.ios), profile="seed-2011"),
        {
            "design": ["virtio-blk", "vhost-blk"],
            "iodepth": list(range(1, 51)),
            "rw": ["randread", "randwrite"],
            "bs": [4096, 16384, 65536, 262144, 1048576],
        },
    )
    assert len(pts) == 1000, len(pts)
    executors: dict[str, dict[str, Any]] = {"1 worker": {"jobs": 1}, "2 workers": {"jobs": 2}}
    cluster = None
    if not a.no_dask:
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True)
        executors["dask (2 workers)"] = {"scheduler": cluster.scheduler_address}
    times: dict[str, list[float]] = {name: [] for name in executors}
    rows: dict[str, list[object]] = {}
    try:
        for _ in range(a.repeat):
            for name, how in executors.items():
                t0 = time.perf_counter()
                rows[name] = run_points(pts, **how).rows
                times[name].append(time.perf_counter() - t0)
    finally:
        if cluster is not None:
            cluster.close()
    med = {name: statistics.median(ts) for name, ts in times.items()}
    t1 = med["1 worker"]
    print(f"1000 points x {a.ios} I/Os, medians of {a.repeat} (interleaved):")
    for name, t in med.items():
        workers = 1 if name == "1 worker" else 2
        eff = 100 * t1 / (workers * t)
        print(f"  {name:17s} {t:7.2f} s  ({1000 / t:6.1f} points/s, efficiency {eff:3.0f} %)")
    same = all(r == rows["1 worker"] for r in rows.values())
    print(f"identical rows on every executor: {same}")


if __name__ == "__main__":
    main()
