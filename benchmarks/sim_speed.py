"""Print simulated I/Os per wall second for both designs, next to a minimal SimPy closed loop.

Run: python benchmarks/sim_speed.py [--ios N] [--repeat R]
The baseline (one exponential server, iodepth customers, SimPy Resource) runs in the same
process and time window, so the ratio survives this machine's noise; medians of R repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import simpy

from vsim import Scenario, Workload, design, load_profile, simulate


def baseline(n_customers: int, ios: int) -> float:
    """Customers per wall second of a minimal SimPy closed loop (one FCFS server)."""
    env = simpy.Environment()
    server = simpy.Resource(env, 1)
    rng = np.random.default_rng(1)
    done = [0]
    stop = env.event()

    def customer():  # type: ignore[no-untyped-def]
        while True:
            with server.request() as req:
                yield req
                yield env.timeout(rng.exponential(100.0))
            done[0] += 1
            if done[0] == ios and not stop.triggered:
                stop.succeed()

    for _ in range(n_customers):
        env.process(customer())
    t0 = time.perf_counter()
    env.run(until=stop)
    return ios / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ios", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    prof = load_profile("seed-2011")
    import vsim.models.cpu as cpu_module

    compiled = not cpu_module.__file__.endswith(".py")  # mypyc extension (VSIM_COMPILE=1)
    print(f"model modules: {'compiled (mypyc)' if compiled else 'pure Python'}")
    print("design       iodepth  sim_ios_per_s  baseline_per_s  ratio  events_per_io")
    for name in ("virtio-blk", "vhost-blk"):
        for qd in (1, 8, 32):
            rates, bases, ev = [], [], 0.0
            for _ in range(a.repeat):
                s = Scenario(
                    workload=Workload(rw="randread", bs=4096, iodepth=qd, number_ios=a.ios),
                    design=design(name),
                )
                t0 = time.perf_counter()
                r = simulate(s, 1, profile=prof)
                rates.append(r.ios / (time.perf_counter() - t0))
                bases.append(baseline(qd, a.ios))
                ev = r.events / r.ios
            rate, base = statistics.median(rates), statistics.median(bases)
            print(
                f"{name:12s} {qd:7d}  {rate:13,.0f}  {base:14,.0f}  {rate / base:5.2f}  {ev:13.1f}"
            )


if __name__ == "__main__":
    main()
