"""Print simulated I/Os per second per core, for the compiled and the pure build, next to a
minimal two-station SimPy closed loop timed in the same run.

Run: python benchmarks/sim_speed.py [--ios N] [--repeat R] [--builds compiled,pure]
         [--presets all|a,b] [--iodepth 1,8,32] [--numjobs 1,4] [--profile P]

Each build runs in its own process (the pure one with VSIM_PURE=1, the same tree's sources).
For every point (preset x iodepth x numjobs) a repeat times one `simulate` of N I/Os and then
the baseline with as many customers (iodepth x numjobs): SimPy's own Environment, two FCFS
single servers (`simpy.Resource`) with exponential service (10 and 100 us) and one timeout per
visit, i.e. the least a closed CPU -> disk loop costs in SimPy. The ratio (vsim / baseline) is
the median of the per-repeat ratios, so it survives this machine's noise; the rates are
medians. The targets (issue 16) are read at iodepth 8, numjobs 1, for the seed's two designs
on the seed's profile (seed-2011), the figure the issue measured; the preset table runs on
--profile (default local-s9, which prices every preset's engine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import simpy

TARGETS = {"compiled": (50_000.0, 1.1), "pure": (30_000.0, 0.65)}  # (I/Os per s, x baseline)
SEED_DESIGNS = ("virtio-blk", "vhost-blk")


def two_station(customers: int, n: int) -> float:
    """Customers per wall second through a minimal two-station SimPy closed loop."""
    env = simpy.Environment()
    cpu, disk = simpy.Resource(env, 1), simpy.Resource(env, 1)
    rng = np.random.default_rng(1)
    done = [0]
    stop = env.event()

    def customer() -> Any:
        while True:
            with cpu.request() as req:
                yield req
                yield env.timeout(rng.exponential(10.0))
            with disk.request() as req:
                yield req
                yield env.timeout(rng.exponential(100.0))
            done[0] += 1
            if done[0] == n and not stop.triggered:
                stop.succeed()

    for _ in range(customers):
        env.process(customer())
    t0 = time.perf_counter()
    env.run(until=stop)
    return n / (time.perf_counter() - t0)


def measure(points: list[dict[str, Any]], ios: int, repeat: int) -> None:
    """The worker: time every point in this process's build, one JSON line per point."""
    from vsim import Scenario, Workload, design, load_profile, simulate
    from vsim.models.build import BUILD

    profiles: dict[str, Any] = {}
    for p in points:
        prof = profiles.setdefault(p["profile"], load_profile(p["profile"]))
        w = Workload(
            rw="randread", bs=4096, iodepth=p["iodepth"], numjobs=p["numjobs"], number_ios=ios
        )
        s = Scenario(workload=w, design=design(p["design"]))
        rates, bases, ratios = [], [], []
        events = 0.0
        for _ in range(repeat):
            t0 = time.perf_counter()
            r = simulate(s, 1, profile=prof)
            rate = r.ios / (time.perf_counter() - t0)
            base = two_station(p["iodepth"] * p["numjobs"], ios)
            rates.append(rate)
            bases.append(base)
            ratios.append(rate / base)
            events = r.events / r.ios
        row = {
            **p,
            "build": BUILD,
            "ios_per_s": statistics.median(rates),
            "baseline_per_s": statistics.median(bases),
            "ratio": statistics.median(ratios),
            "events_per_io": events,
        }
        print(json.dumps(row), flush=True)


def _points(a: argparse.Namespace) -> list[dict[str, Any]]:
    from vsim import DESIGNS

    presets = list(DESIGNS) if a.presets == "all" else a.presets.split(",")
    pts = [
        {"profile": "seed-2011", "design": d, "iodepth": 8, "numjobs": 1, "target": True}
        for d in SEED_DESIGNS
    ]
    for d in presets:
        for qd in a.iodepth:
            for nj in a.numjobs:
                pts.append(
                    {
                        "profile": a.profile,
                        "design": d,
                        "iodepth": qd,
                        "numjobs": nj,
                        "target": False,
                    }
                )
    return pts


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ios", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--builds", default="compiled,pure")
    ap.add_argument("--presets", default="all")
    ap.add_argument("--iodepth", type=_ints, default=[1, 8, 32])
    ap.add_argument("--numjobs", type=_ints, default=[1, 4])
    ap.add_argument("--profile", default="local-s9")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # the points, as JSON
    a = ap.parse_args()
    if a.worker:
        measure(json.loads(a.worker), a.ios, a.repeat)
        return
    points = _points(a)
    rows: list[dict[str, Any]] = []
    for build in a.builds.split(","):
        env = {**os.environ, "VSIM_PURE": "1" if build == "pure" else "0"}
        args = [sys.executable, __file__, "--ios", str(a.ios), "--repeat", str(a.repeat)]
        out = subprocess.run(
            [*args, "--worker", json.dumps(points)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        got = [json.loads(line) for line in out.splitlines()]
        for r in got:
            r["asked"] = build
        rows += got
    _report(rows, a)


def _report(rows: list[dict[str, Any]], a: argparse.Namespace) -> None:
    print(
        f"{a.ios} I/Os per point, medians of {a.repeat} repeats; baseline: a minimal "
        "two-station SimPy closed loop with iodepth x numjobs customers, timed after each run"
    )
    print(f"\npresets on {a.profile} (randread 4k):")
    print(
        f"{'build':8s} {'design':22s} {'qd':>3s} {'jobs':>4s} {'I/Os per s':>11s} "
        f"{'baseline':>9s} {'ratio':>6s} {'events/IO':>9s}"
    )
    for r in rows:
        if not r["target"]:
            print(
                f"{r['asked']:8s} {r['design']:22s} {r['iodepth']:3d} {r['numjobs']:4d} "
                f"{r['ios_per_s']:11,.0f} {r['baseline_per_s']:9,.0f} {r['ratio']:6.2f} "
                f"{r['events_per_io']:9.1f}"
            )
    print("\ntargets (seed-2011, randread 4k, iodepth 8, numjobs 1):")
    for r in rows:
        if r["target"]:
            rate_t, ratio_t = TARGETS[r["asked"]]
            ok = r["ios_per_s"] >= rate_t and r["ratio"] >= ratio_t
            print(
                f"{r['asked']:8s} {r['design']:10s} {r['ios_per_s']:9,.0f} I/Os per s "
                f"(target {rate_t:,.0f}), {r['ratio']:.2f}x the baseline (target "
                f"{ratio_t:.2f}x): {'met' if ok else 'MISSED'}  [build: {r['build']}]"
            )


if __name__ == "__main__":
    main()
