"""Re-calibrating the machine at hand in one command: measure, calibrate from traces, fit."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vsim.calibrate.fit import Fit, fit_profile, residual_params
from vsim.calibrate.traces import calibrate_from_runs
from vsim.measure.baseline import measure_fio
from vsim.measure.campaign import Campaign, measure, measure_microbench
from vsim.measure.dataset import load_measured
from vsim.measure.rules import parse_rule

__all__ = ["MachinePlan", "recalibrate"]

Say = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class MachinePlan:
    """What `vsim calibrate --measure` measures. The calibration points are those of the bundled
    `local` profile (both designs, 4k random reads and writes, iodepth 1 and 8: one point where
    every stage runs alone, one where the backend's threads are busy); the fio baseline adds the
    block sizes the disk's service curve is fitted across, at iodepth 1 (the service time) and
    32 (the channels: the IOPS the device sustains)."""

    designs: tuple[str, ...] = ("virtio-blk", "vhost-blk")
    rws: tuple[str, ...] = ("randread", "randwrite")
    bs: int = 4096
    iodepths: tuple[int, ...] = (1, 8)
    fio_bss: tuple[int, ...] = (512, 4096, 16384, 65536, 262144)
    fio_iodepths: tuple[int, ...] = (1, 32)
    fio_runtime: float = 1.0
    runtime: float | None = None  # seconds per run (None: the protocol's short default, 1 s)
    precision: float = 0.03
    budget_s: float = 90.0  # the rounds of the calibration points (the rest is about 90 s more)
    trace_ios: int = 500
    ios: int = 5000  # simulated I/Os per point and evaluation of the fit
    seed: int = 1

    @property
    def use(self) -> str:
        """The calibration rule (`--use`) selecting the calibration points."""
        return "iodepth=" + ",".join(str(q) for q in self.iodepths)


def recalibrate(
    dataset: Path,
    *,
    name: str,
    plan: MachinePlan | None = None,
    directory: str | None = None,
    say: Say | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    source: str = "",
) -> Fit:
    """Measure `plan` on this machine into `dataset` (a new `vsim measure` dataset: runs with
    traces, fio/ and microbench/), calibrate a profile from its traces, fit the numbers the
    traces read least directly to the calibration points, and return the fit (`Fit.write` writes
    the profile). Scratch I/O goes to `directory` (default: the current directory) through the
    one guard of every real I/O path."""
    p = plan or MachinePlan()
    tell = say or (lambda _msg: None)
    t0 = time.monotonic()
    runs = Campaign(
        designs=p.designs,
        rws=p.rws,
        bss=(p.bs,),
        iodepths=p.iodepths,
        runtime=p.runtime,
        precision=p.precision,
        budget=p.budget_s,
        trace_ios=p.trace_ios,
        directory=directory,
    )
    tell(
        f"1/4 calibration points: {len(p.designs)} designs x {len(p.rws)} rw x iodepth "
        f"{','.join(map(str, p.iodepths))}, rounds until every IOPS CI is within "
        f"{100 * p.precision:g} % or {p.budget_s:g} s"
    )
    measure(runs, dataset, progress=progress)
    fio = Campaign(
        designs=p.designs[:1],
        rws=p.rws,
        bss=p.fio_bss,
        iodepths=p.fio_iodepths,
        runtime=p.fio_runtime,
        repeat=1,
        directory=directory,
    )
    tell(
        f"2/4 the disk with the real fio: bs {','.join(map(str, p.fio_bss))} at iodepth "
        f"{','.join(map(str, p.fio_iodepths))} ({time.monotonic() - t0:.0f} s so far)"
    )
    measure_fio(fio, dataset, progress=progress)
    tell(f"3/4 microbenchmarks ({time.monotonic() - t0:.0f} s so far)")
    measure_microbench(Campaign(designs=p.designs[:1], bss=(p.bs,), directory=directory), dataset)
    tell(f"4/4 calibrating and fitting ({time.monotonic() - t0:.0f} s so far)")
    rule = parse_rule(p.use)
    cal = calibrate_from_runs([dataset], use=rule, name=name)
    doc = {**cal.document, "fit": residual_params(cal.document)}
    fit = fit_profile(
        doc, load_measured(dataset), use=rule, ios=p.ios, seed=p.seed, source=source or str(dataset)
    )
    fit.notes[:0] = cal.notes
    tell(f"done in {time.monotonic() - t0:.0f} s")
    return fit
