"""Print the CPU instructions per simulated I/O (valgrind's callgrind), a figure this shared
machine's noise cannot move, next to the same count for the two-station SimPy loop.

Run from the repository root:
    python benchmarks/instructions.py [--design D] [--iodepth N] [--profile P]
Each figure is the difference of a 12,000- and a 2,000-I/O run divided by 10,000, so start-up
(imports, profile loading) cancels. PYTHONHASHSEED=0 and OPENBLAS_NUM_THREADS=1 make the count
repeatable (OpenBLAS's idle threads spin otherwise). The build is this install's (compiled, or
VSIM_PURE=1 in the environment for the pure one). Needs valgrind (Debian: valgrind).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys

RUN = """
import sys
from vsim import Scenario, Workload, design, load_profile, simulate
w = Workload(rw="randread", bs=4096, iodepth={qd}, number_ios=int(sys.argv[1]))
simulate(Scenario(workload=w, design=design("{design}")), 1, profile=load_profile("{profile}"))
"""
BASELINE = """
import sys
from benchmarks.sim_speed import two_station
two_station({qd}, int(sys.argv[1]))
"""
SMALL, LARGE = 2_000, 12_000


def instructions(code: str, n: int) -> int:
    """Instructions callgrind counts for `python -c code n`."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1"}
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    done = subprocess.run([*cmd, "-c", code, str(n)], env=env, capture_output=True, text=True)
    m = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or m is None:
        sys.exit(f"instructions.py: the run failed: {done.stderr.strip()[-300:]}")
    return int(m.group(1))


def per_io(code: str) -> float:
    """Instructions per I/O (or customer): the difference of a large and a small run."""
    return (instructions(code, LARGE) - instructions(code, SMALL)) / (LARGE - SMALL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--design", default="virtio-blk")
    ap.add_argument("--iodepth", type=int, default=8)
    ap.add_argument("--profile", default="seed-2011")
    a = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("instructions.py: valgrind is not installed (Debian: apt-get install valgrind)")
    from vsim.models.build import BUILD

    sim = per_io(RUN.format(qd=a.iodepth, design=a.design, profile=a.profile))
    base = per_io(BASELINE.format(qd=a.iodepth))
    print(
        f"{a.design}, iodepth {a.iodepth}, {a.profile} ({BUILD}): {sim:,.0f} instructions per "
        f"simulated I/O; the two-station SimPy loop: {base:,.0f} per customer "
        f"(ratio {base / sim:.2f})"
    )


if __name__ == "__main__":
    main()
