"""The engine against the analytic oracle: exact MVA, M/M/1 and M/D/1."""

from __future__ import annotations

import numpy as np
import pytest

from vsim import Scenario, Workload, design, simulate
from vsim.analytic import Station, md1_wait, mm1_wait, mva
from vsim.kernel import Kernel
from vsim.models.disk import Disk, Request
from vsim.models.dists import Dist
from vsim.models.monitor import Registry
from vsim.models.service import ServiceTable, ServiceTimes
from vsim.profile import derived

SUBMIT_US = 40.0
DISK_US = 100.0


@pytest.fixture(scope="module")
def product_form(request):  # type: ignore[no-untyped-def]
    """vhost-blk with two exponential FCFS stations (submitter, disk) and nothing else.

    Every other cost and every wake-up is zero, so the closed network is product form.
    """
    from vsim.profile import Profile, synthetic_profile

    disk = {
        "model": "empirical",
        "channels": derived({"value": 1}),
        "service": {"read": derived({"dist": "exponential", "mean_us": DISK_US})},
    }
    doc = synthetic_profile(
        costs={"submit_iocb": {"dist": "exponential", "mean_us": SUBMIT_US}}, disk=disk
    )
    return Profile.from_dict(doc, "test")


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32])
def test_closed_network_matches_mva(n, product_form):  # type: ignore[no-untyped-def]
    exact = mva([Station("submitter", SUBMIT_US), Station("disk", DISK_US)], n)
    w = Workload(rw="randread", iodepth=n, number_ios=20000)
    r = simulate(
        Scenario(workload=w, design=design("vhost-blk"), profile="test"),
        seed=11,
        profile=product_form,
    )
    x_sim = r.iops / 1e6  # per us
    assert x_sim == pytest.approx(exact.throughput[-1], rel=0.02)
    assert r.lat_ns.mean() / 1e3 == pytest.approx(exact.response[-1], rel=0.02)


def _open_queue(service: Dist, lam_per_us: float, n: int, seed: int) -> float:
    """Mean wait in queue of Poisson arrivals at the Disk component."""
    env = Kernel()
    rng = np.random.default_rng(seed)
    disk = Disk(env, 1, ServiceTimes(ServiceTable.of({"read": service}), rng), Registry())
    waits: list[float] = []
    gaps = rng.exponential(1 / lam_per_us, n)

    def source():  # type: ignore[no-untyped-def]
        for g in gaps:
            yield env.timeout(g)
            t0 = env.now
            disk.submit(Request(False, 0, 512), lambda _r, t0=t0: waits.append(env.now - t0))

    env.process(source())
    env.run()
    warm = n // 10
    return float(np.mean(waits[warm:])) - service.mean


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_disk_is_mm1(rho):  # type: ignore[no-untyped-def]
    mu = 1 / 50.0
    wq = _open_queue(Dist.exponential(50.0), rho * mu, 200_000, seed=1)
    assert wq == pytest.approx(mm1_wait(rho * mu, mu), rel=0.05)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_disk_is_md1(rho):  # type: ignore[no-untyped-def]
    mu = 1 / 50.0
    wq = _open_queue(Dist.fixed(50.0), rho * mu, 200_000, seed=2)
    assert wq == pytest.approx(md1_wait(rho * mu, mu), rel=0.05)


def test_mva_benchmark_runs_without_pytest() -> None:
    """benchmarks/mva_agreement.py runs in the README's first venv, which has no test extras."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = (
        "import runpy, sys; sys.modules['pytest'] = None; "
        "sys.argv = ['mva_agreement', '--ios', '300']; "
        "runpy.run_module('benchmarks.mva_agreement', run_name='__main__')"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "32" in r.stdout
