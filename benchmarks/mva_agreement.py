"""Print the engine's agreement with exact MVA on a product-form configuration (iodepth 1..32).

Run from the repository root: python -m benchmarks.mva_agreement [--ios N]
The configuration is the one pinned by tests/test_oracle.py: vhost-blk with an exponential
submitter (40 us) and an exponential disk (100 us), every other cost and wake-up zero.
"""

from __future__ import annotations

import argparse

from vsim import Scenario, Workload, design, simulate
from vsim.analytic import Station, mva
from vsim.profile import Profile, derived, synthetic_profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ios", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    disk = {
        "model": "empirical",
        "channels": derived({"value": 1}),
        "service": {"read": derived({"dist": "exponential", "mean_us": 100.0})},
    }
    prof = Profile.from_dict(
        synthetic_profile(
            costs={"submit_iocb": {"dist": "exponential", "mean_us": 40.0}}, disk=disk
        ),
        "oracle",
    )
    exact = mva([Station("submitter", 40.0), Station("disk", 100.0)], 32)
    print("iodepth  X_mva(IOPS)  X_sim(IOPS)  err_X%   R_mva(us)  R_sim(us)  err_R%")
    for n in (1, 2, 4, 8, 16, 32):
        w = Workload(rw="randread", iodepth=n, number_ios=a.ios)
        r = simulate(
            Scenario(workload=w, design=design("vhost-blk"), profile="oracle"), a.seed, profile=prof
        )
        xm, rm = exact.throughput[n - 1] * 1e6, exact.response[n - 1]
        rs = r.lat_ns.mean() / 1e3
        print(
            f"{n:7d}  {xm:11.1f}  {r.iops:11.1f}  {100 * (r.iops / xm - 1):+6.2f}  "
            f"{rm:9.1f}  {rs:9.1f}  {100 * (rs / rm - 1):+6.2f}"
        )


if __name__ == "__main__":
    main()
