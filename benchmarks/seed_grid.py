"""Print the wall time of the default seed-grid sweep at 1 % precision, and its speed-up.

Run: python benchmarks/seed_grid.py [--repeat R] [--jobs N]
The seed's table is 12 fio runs of 120 s (24 minutes of measurement); vsim predicts the same
grid with every point's 95 % CI half-width of IOPS and mean latency within 1 %. Each repeat runs
`vsim sweep --precision 0.01` in a fresh process, so start-up (imports) is included.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

FIO_SECONDS = 12 * 120  # the seed: 2 designs x 2 tables x 3 iodepths, runtime=120


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    cmd = [
        sys.executable,
        "-m",
        "vsim.cli",
        "sweep",
        "--precision",
        "0.01",
        "--jobs",
        str(a.jobs),
        "--format",
        "csv",
    ]
    walls = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    med = statistics.median(walls)
    print(
        f"seed grid, --precision 0.01, --jobs {a.jobs}: median wall {med:.2f} s over "
        f"{a.repeat} runs (min {min(walls):.2f}, max {max(walls):.2f})"
    )
    print(f"speed-up over {FIO_SECONDS // 60} min of fio: {FIO_SECONDS / med:.0f}x")


if __name__ == "__main__":
    main()
