"""Print the peak memory (max RSS) of simulating one 10-million-I/O point.

Run: python benchmarks/memory.py [--ios N]
Runs the point in a child process and reads its maximum resident set size from getrusage.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

CHILD = """
import sys
from vsim import Scenario, Workload, design, simulate
n = int(sys.argv[1])
r = simulate(Scenario(workload=Workload(rw="randread", bs=4096, iodepth=8, number_ios=n),
                      design=design("vhost-blk"), profile="seed-2011"), 1)
print(r.ios, r.events)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ios", type=int, default=10_000_000)
    a = ap.parse_args()
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(a.ios)], check=True, capture_output=True, text=True
    ).stdout.split()
    wall = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"{int(out[0]):,} I/Os ({int(out[1]):,} events) in {wall:.0f} s: "
        f"peak RSS {peak_mib:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
