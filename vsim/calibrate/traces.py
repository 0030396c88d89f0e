"""Calibration from the reference backend: traces, microbenchmarks and fio baselines -> Profile."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomli_w

from vsim.errors import ConfigError
from vsim.fio import read_fio_json, sample_from_bins
from vsim.measure import layout
from vsim.measure.baseline import fio_rows
from vsim.measure.dataset import load_measured
from vsim.measure.placement import FREE
from vsim.measure.rules import CalibrationRule, calibration_subset
from vsim.models.dists import dist_from_dict
from vsim.outputs import write_atomic
from vsim.profile import SCHEMA, Profile
from vsim.reference.trace import RunRecord
from vsim.scenario import DESIGNS

__all__ = [
    "KS_ALPHA",
    "KS_MAX_SAMPLES",
    "LEVELS",
    "MIN_QUIET",
    "NEEDED_MICROBENCH",
    "PREEMPT_P90_US",
    "WINSOR",
    "TraceCalibration",
    "calibrate_from_runs",
    "fit_dist",
]

LEVELS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)
WINSOR = 0.999  # samples above this quantile (GC pauses, preemption by other work) are clipped
KS_ALPHA = 0.05  # keep a parametric family only when the KS test does not reject it at 5 %
KS_MAX_SAMPLES = 2000  # KS on more samples rejects every family for tiny misfits


def fit_dist(x: np.ndarray, what: str) -> dict[str, Any]:
    """A profile distribution for samples x (us): lognormal or gamma if a KS test accepts it,
    else empirical quantiles. The table says which and how well it fits."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 20:
        raise ConfigError(f"calibrate: only {x.size} samples for {what}")
    x = np.minimum(x, np.quantile(x, WINSOR))
    sub = x[:: max(1, x.size // KS_MAX_SAMPLES)]
    best: tuple[float, str, dict[str, Any]] | None = None
    if np.all(x > 0) and np.std(x) > 0:
        from scipy import stats  # heavy: loaded when a calibration runs

        for name, family in (("lognormal", stats.lognorm), ("gamma", stats.gamma)):
            params = family.fit(sub, floc=0)
            ks = stats.kstest(sub, family.cdf, args=params)
            mean, var = family.stats(*params, moments="mv")
            if ks.pvalue > KS_ALPHA and (best is None or ks.pvalue > best[0]):
                spec = {"dist": name, "mean_us": float(mean), "cv": float(math.sqrt(var) / mean)}
                best = (
                    float(ks.pvalue),
                    f"{name} (KS D={ks.statistic:.3f}, p={ks.pvalue:.2f})",
                    spec,
                )
    if best is not None:
        spec, quality = best[2], best[1]
    else:
        q = np.quantile(np.clip(x, 0, None), LEVELS)
        spec = {
            "dist": "empirical",
            "levels": list(LEVELS),
            "quantiles_us": [float(v) for v in np.maximum.accumulate(q)],
        }
        quality = "empirical quantiles (lognormal and gamma rejected by KS at 5 %)"
    spec["fit_note"] = (
        f"{quality}; n={x.size} winsorised at p{100 * WINSOR:g}, median {np.median(x):.2f} us"
    )
    return spec


@dataclass
class TraceCalibration:
    """The calibrated profile document and how each number was obtained."""

    document: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Each calibrated number with its method."""
        lines = [f"profile {self.document['name']}:"]
        for table in ("cpu", "device", "costs", "disk"):
            for key, spec in self.document[table].items():
                if not isinstance(spec, dict):
                    continue
                variants = spec if "user" in spec else {"": spec}
                for ctx, s in variants.items():
                    if not isinstance(s, dict) or "provenance" not in s:
                        continue
                    val = s.get("value", s.get("value_us", s.get("mean_us", s.get("epoch_us"))))
                    if val is None and "quantiles_us" in s:
                        val = float(np.interp(0.5, s["levels"], s["quantiles_us"]))
                    name = f"{table}.{key}" + (f".{ctx}" if ctx else "")
                    lines.append(f"  {name:28s} {val!s:>10.8}  {s['source'][:90]}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> None:
        """Write the profile TOML (checked by loading it back)."""
        Profile.from_dict(self.document, str(path))
        write_atomic(path, tomli_w.dumps(self.document))


def _patterns(r: RunRecord, threads: int) -> list[tuple[int, ...]]:
    """Each I/O's placement pattern, in submission order: the CPU of the guest and of each
    backend thread, numbered by first appearance (the guest's CPU is 0)."""
    order = np.argsort(r.stages["submit_ns"], kind="stable")
    cols = [r.guest_cpu, r.submit_cpu] + ([r.complete_cpu] if threads == 2 else [])
    out = []
    for cpus in zip(*(np.asarray(c)[order].tolist() for c in cols), strict=True):
        seen: dict[int, int] = {}
        out.append(tuple(seen.setdefault(c, len(seen)) for c in cpus))
    return out


def _placement(runs: list[tuple[dict[str, Any], RunRecord]], src: str) -> dict[str, Any] | None:
    """[cpu.placement] from the traces' CPU columns: the fraction of time each pattern holds
    (the mean over runs of its share of the run's traced I/Os) per backend thread count and
    per iodepth (I/Os in flight), and the epoch between redraws that gives the traced rate of
    pattern changes. None when the traces show no change (the epoch cannot be told): the
    model then places threads freely."""
    shares: dict[tuple[int, int], dict[tuple[int, ...], float]] = {}  # by (threads, iodepth)
    n_runs: dict[tuple[int, int], int] = {}
    changes = 0
    span_us = 0.0
    for row, r in runs:
        n = DESIGNS[str(row["design"])].threads if str(row["design"]) in DESIGNS else 0
        if n not in (1, 2) or len(r.guest_cpu) < 2:
            continue
        if str(row.get("placement", FREE)) != FREE:  # pinned: the scheduler did not place it
            continue
        at = (n, int(row["iodepth"]) * int(row.get("numjobs", 1)))
        pats = _patterns(r, n)
        n_runs[at] = n_runs.get(at, 0) + 1
        mine = shares.setdefault(at, {})
        for p in pats:
            mine[p] = mine.get(p, 0.0) + 1 / len(pats)
        changes += sum(a != b for a, b in itertools.pairwise(pats))
        sub = r.stages["submit_ns"]
        span_us += float(sub.max() - sub.min()) / 1e3
    if not shares or changes == 0:
        return None
    mean = {at: {k: v / n_runs[at] for k, v in ps.items()} for at, ps in shares.items()}
    # The iodepths every traced thread count was traced at (else the lowest of each).
    counts = sorted({n for n, _ in mean})
    depths = sorted(set.intersection(*({q for m, q in mean if m == n} for n in counts)))
    if not depths:
        depths = [min(q for _, q in mean)]
        counts = [n for n in counts if (n, depths[0]) in mean]
    patterns = {}
    for n in counts:
        keys: set[tuple[int, ...]] = set().union(*(mean[n, q] for q in depths))
        patterns[str(n)] = {
            ",".join(map(str, k)): [round(mean[n, q].get(k, 0.0), 4) for q in depths]
            for k in sorted(keys)
        }
    # A redraw keeps the pattern with probability sum(p^2): stretch the epoch to match.
    stay = sum(n_runs[at] * sum(v**2 for v in m.values()) for at, m in mean.items()) / sum(
        n_runs.values()
    )  # per run, averaged over the runs
    epoch = span_us / changes * (1 - stay)
    return {
        "epoch_us": round(epoch, 1),
        "iodepths": depths,
        "patterns": patterns,
        "provenance": "measured",
        "source": f"{src}; the CPU columns (guest, submitter, completer) of every traced I/O: "
        f"pattern shares averaged over the runs at each iodepth ({sum(n_runs.values())} runs), "
        f"{changes} pattern changes in {span_us / 1e3:.0f} ms of traces, epoch = time per "
        f"change x (1 - sum of squared shares)",
    }


PREEMPT_P90_US = 200.0  # below any Linux scheduler slice (>= 750 us): the hog was preempted
_SCHED_DOCS = (
    "Linux's fair scheduler (CFS; EEVDF since 6.6) lets a task woken after sleeping preempt the "
    "running one: Documentation/scheduler/sched-eevdf.rst and kernel/sched/features.h "
    "(PLACE_LAG, RUN_TO_PARITY)"
)


def _wake_preempt(mb: dict[str, np.ndarray], src: str) -> dict[str, Any]:
    """[cpu.wake_preempt]: measured by the wakeup_preempt microbenchmark when the dataset has
    it (a woken thread that runs within PREEMPT_P90_US of its wake-up although a CPU-bound
    process has held its CPU for 0.5-3 ms was not made to wait for a slice), else cited."""
    x = mb.get("wakeup_preempt")
    if x is None:
        return {
            "value": 1,
            "provenance": "cited",
            "source": f"{_SCHED_DOCS}; modelled as always preempting",
        }
    p90 = float(np.percentile(x, 90))
    return {
        "value": int(p90 < PREEMPT_P90_US),
        "provenance": "measured",
        "source": f"{src}; wakeup_preempt: a sleeper woken onto a CPU that a CPU-bound process "
        f"had held for 0.5-3 ms ran after {np.median(x):.1f} us (median; p90 {p90:.1f} us, "
        f"n={x.size}), so the scheduler preempts at once if p90 < {PREEMPT_P90_US:g} us; "
        f"{_SCHED_DOCS}",
    }


MIN_QUIET = 200  # I/Os of a subset needed to price a cost from it (suppressed kicks, warm pops)


def _runs(dataset: Path, use: CalibrationRule | None) -> list[tuple[dict[str, Any], RunRecord]]:
    """Calibration runs with traces: (manifest row + workload, trace)."""
    ms = calibration_subset(load_measured(dataset), use)
    out = []
    for _, row in ms.points.drop_duplicates("file").iterrows():
        trace = layout.trace_path(dataset, str(row["file"]))
        if trace.exists():
            out.append((dict(row), RunRecord.load(trace)))
    if not out:
        raise ConfigError(f"{dataset}: no traces for the calibration points ({layout.TRACES}/)")
    return out


def _gap(r: RunRecord, a: str, b: str) -> np.ndarray:
    s = r.stages
    ok = (s[a] > 0) & (s[b] > 0) & (s[b] >= s[a])
    return np.asarray((s[b][ok] - s[a][ok]) / 1e3, dtype=float)


def _warm_pops(r: RunRecord) -> np.ndarray:
    """io_submit returned -> the next request popped (us), where that request was on the ring
    before the io_submit returned: the backend popped it straight away, warm."""
    s = r.stages
    o = np.argsort(s["pop_ns"], kind="stable")
    pop, sub, kick = s["pop_ns"][o], s["io_submit_ns"][o], s["kick_ns"][o]
    ok = (kick[1:] > 0) & (kick[1:] <= sub[:-1]) & (pop[1:] > sub[:-1])
    return np.asarray((pop[1:] - sub[:-1])[ok] / 1e3, dtype=float)


def _submit_gaps(r: RunRecord, *, kicked: bool) -> np.ndarray:
    """submit -> kick returned (us) of the I/Os whose kick was sent (or suppressed); kicked ones
    only when the backend popped the request after the kick (it was asleep, not polling)."""
    s = r.stages
    ok = (r.kicked == 1) & (s["pop_ns"] > s["kick_ns"]) if kicked else (r.kicked == 0)
    ok &= s["kick_ns"] >= s["submit_ns"]
    return np.asarray((s["kick_ns"][ok] - s["submit_ns"][ok]) / 1e3, dtype=float)


# The microbenchmarks calibration needs (wakeup_preempt is optional: cited when absent).
NEEDED_MICROBENCH = (
    "eventfd",
    "wakeup_cross_cpu_blocking",
    "wakeup_same_cpu_blocking",
    "wakeup_cross_cpu_polling",
    "aio_submit",
    "aio_submit_per_iocb",
    "aio_getevents_per_event",
    "aio_getevents",
)


def _microbench(dataset: Path) -> dict[str, np.ndarray]:
    """The microbenchmarks' samples in microseconds; every one calibration needs, or one line."""
    out = {k: v.astype(float) / 1e3 for k, v in layout.load_microbench(dataset).items()}
    missing = [n for n in NEEDED_MICROBENCH if n not in out or out[n].size == 0]
    if missing:
        raise ConfigError(
            f"{dataset}: microbenchmark {missing[0]} missing ({len(missing)} of "
            f"{len(NEEDED_MICROBENCH)} needed); run vsim measure --microbench --bench "
            f"{','.join(missing)} --out {dataset}"
        )
    return out


def _fio(dataset: Path) -> pd.DataFrame:
    rows = [r for f in layout.fio_files(dataset) for r in fio_rows(read_fio_json(f)[0], str(f))]
    if not rows:
        raise ConfigError(f"{dataset}: no fio baselines (run vsim measure --fio)")
    return pd.DataFrame(rows)


def _m(src: str, method: str) -> dict[str, str]:
    return {"provenance": "measured", "source": f"{src}; {method}"}


def _fixed(v: float, src: str, method: str) -> dict[str, Any]:
    return {"dist": "fixed", "value_us": round(v, 3), **_m(src, method)}


def _both(spec: dict[str, Any]) -> dict[str, Any]:
    """The same measurement for the user and kernel variants of a host cost."""
    return {"user": spec, "kernel": dict(spec)}


@dataclass(frozen=True)
class _Inputs:
    """What calibration reads from one dataset, and how its sources are named."""

    ds: Path
    use: CalibrationRule | None
    prov: dict[str, Any]
    all_runs: list[tuple[dict[str, Any], RunRecord]]  # every calibration iodepth
    runs: list[tuple[dict[str, Any], RunRecord]]  # the lowest one: gaps are service there
    qd: int
    mb: dict[str, np.ndarray]  # microbenchmark samples, us
    fio: pd.DataFrame

    @classmethod
    def read(cls, ds: Path, use: CalibrationRule | None) -> _Inputs:
        prov = layout.read_provenance(ds)
        all_runs = _runs(ds, use)
        qd = min(int(row["iodepth"]) for row, _ in all_runs)
        runs = [(row, r) for row, r in all_runs if int(row["iodepth"]) == qd]
        return cls(ds, use, prov, all_runs, runs, qd, _microbench(ds), _fio(ds))

    def _points(self) -> str:
        return f"points: {self.use or 'dataset marks'}"

    @property
    def tsrc(self) -> str:
        where = f"{self.ds} (calibration runs at iodepth {self.qd}; {self._points()})"
        return f"stage gaps of the reference traces in {where}"

    @property
    def all_src(self) -> str:
        return f"stage gaps of the reference traces in {self.where_all}"

    @property
    def where_all(self) -> str:
        return f"{self.ds} (calibration runs at every calibration iodepth; {self._points()})"

    @property
    def mbsrc(self) -> str:
        return f"vsim measure --microbench in {self.ds}"

    def half(self, name: str) -> np.ndarray:
        """One way of a microbenchmark's round trip."""
        return self.mb[name] / 2

    @property
    def eventfd(self) -> float:
        return float(np.median(self.half("eventfd")))  # one write or one read

    @property
    def wake_mean(self) -> float:
        return float(np.mean(self.half("wakeup_cross_cpu_blocking")))

    @property
    def reap_event(self) -> float:
        return float(np.median(self.mb["aio_getevents_per_event"]))

    @property
    def reap_call(self) -> float:
        return max(float(np.median(self.mb["aio_getevents"])) - self.reap_event, 0.0)

    def gaps(self, a: str, b: str) -> np.ndarray:
        """Stage a -> stage b of every I/O of the lowest-iodepth runs (us)."""
        return np.concatenate([_gap(r, a, b) for _, r in self.runs])


def calibrate_from_runs(
    datasets: list[Path], *, use: CalibrationRule | None = None, name: str
) -> TraceCalibration:
    """Fit every number of a profile from `vsim measure` datasets (calibration points only).

    CPU latencies come from the wake-up microbenchmarks (one-way = half a round trip); guest
    and backend costs from the gaps between trace stages at the calibration points, minus the
    components the microbenchmarks price; the disk from the real-fio baseline: the service-time
    distribution per direction and block size from fio's clat at iodepth 1, and the number of
    channels from the IOPS fio sustains at its highest iodepth.
    """
    if len(datasets) > 1:
        raise ConfigError("calibrate: give one dataset directory")
    inp = _Inputs.read(datasets[0], use)
    notes: list[str] = []
    prov = inp.prov
    queue = sorted({int(r.meta.get("queue_size", 0)) for _, r in inp.runs})
    doc = {
        "schema": SCHEMA,
        "name": name,
        "description": (
            f"calibrated by vsim calibrate from {inp.ds} on {prov.get('cpu_model', '?')}, "
            f"{prov.get('cores', '?')} cores, Linux {prov.get('kernel', '?')}, "
            f"{prov.get('date', '?')}"
        ),
        "cpu": _cpu_table(inp, notes),
        "device": {"queue_size": {"value": queue[-1], **_m(inp.tsrc, "the reference ring's size")}},
        "costs": _costs_table(inp, notes),
        "disk": _disk_table(inp),
    }
    return TraceCalibration(_strip_notes(doc), notes)


def _cpu_table(inp: _Inputs, notes: list[str]) -> dict[str, Any]:
    """[cpu]: the host's CPUs, wake-up latencies from the microbenchmarks, the scheduler's
    placement patterns from the traces' CPU columns."""
    mbsrc = inp.mbsrc
    cpu: dict[str, Any] = {
        "host_cpus": {
            "value": int(inp.prov["cores"]),
            **_m(f"{inp.ds}/{layout.PROVENANCE}", "cores"),
        },
        "guest_vcpus": {"value": 1, **_m("the reference guest", "one process, one thread")},
        "wakeup_idle": {
            **fit_dist(inp.half("wakeup_cross_cpu_blocking"), "wakeup_idle"),
            **_m(mbsrc, "half the cross-CPU blocking eventfd round trip"),
        },
        "wakeup_busy": {
            **fit_dist(inp.half("wakeup_same_cpu_blocking"), "wakeup_busy"),
            **_m(mbsrc, "half the same-CPU blocking eventfd round trip"),
        },
        "poll_detect": {
            **fit_dist(inp.half("wakeup_cross_cpu_polling"), "poll_detect"),
            **_m(mbsrc, "half the cross-CPU polling round trip"),
        },
        "backend_lock": {
            "value": 1,
            "provenance": "derived",
            "source": "the reference backend's threads are Python threads of one process: "
            "they hold CPython's global interpreter lock to run and drop it when they block",
        },
        "wake_preempt": _wake_preempt(inp.mb, mbsrc),
    }
    placement = _placement(inp.all_runs, f"the reference traces in {inp.where_all}")
    if placement is None:
        notes.append("no CPU placement change in the traces: threads are placed freely")
    else:
        cpu["placement"] = placement
    return cpu


def _guest_submit_and_kick(inp: _Inputs) -> tuple[np.ndarray, dict[str, Any], tuple[str, str]]:
    """The guest's submission (samples) and the kick (a fixed cost), with their sources."""
    kicked = np.concatenate([_submit_gaps(r, kicked=True) for _, r in inp.runs])
    quiet = np.concatenate([_submit_gaps(r, kicked=False) for _, r in inp.all_runs])
    if len(quiet) >= MIN_QUIET:
        # Submissions whose kick was suppressed price the guest's own work; a kick that wakes
        # the sleeping backend costs the guest the difference of the medians (the eventfd
        # write and the waker's share of the wake-up). The tails are left to guest_submit:
        # there they are preemption and host noise, which the model produces or samples.
        kick = max(float(np.median(kicked) - np.median(quiet)), 0.0)
        kick_spec = _fixed(
            kick,
            inp.all_src,
            f"median submit -> kick returned of kicked submissions at iodepth {inp.qd} "
            f"(n={len(kicked)}) minus that of submissions with the kick suppressed "
            f"(n={len(quiet)}): the eventfd write and the waker's share of waking the backend",
        )
        src = (inp.all_src, "submit -> kick returned of submissions with the kick suppressed")
        return quiet, kick_spec, src
    # no suppressed kicks (iodepth 1 only): the eventfd write alone
    kick = inp.eventfd
    kick_spec = _fixed(kick, inp.mbsrc, "one eventfd write: half the eventfd write+read")
    src = (inp.tsrc, "submit -> kick returned (backend popped later), minus kick")
    return np.clip(kicked - kick, 0, None), kick_spec, src


def _guest_loop(inp: _Inputs) -> np.ndarray:
    """fio's loop: from one reap to the next submission (iodepth 1: one I/O at a time)."""
    loop_gaps = []
    for _, r in inp.runs:
        sub, reap = np.sort(r.stages["submit_ns"]), np.sort(r.stages["reap_ns"])
        g = (sub[1:] - reap[:-1]) / 1e3
        loop_gaps.append(g[g >= 0])
    return np.concatenate(loop_gaps)


_POP_AT_LOW = "kick -> popped, minus a mean idle wake-up and an eventfd read"


def _costs_table(inp: _Inputs, notes: list[str]) -> dict[str, Any]:
    """[costs]: the trace gaps at the calibration points, less what the microbenchmarks price."""
    tsrc, mbsrc, eventfd = inp.tsrc, inp.mbsrc, inp.eventfd
    submit_iocb = float(np.median(inp.mb["aio_submit_per_iocb"]))
    guest_submit, kick_spec, submit_src = _guest_submit_and_kick(inp)
    # At the lowest calibration iodepth the backend sleeps before every request, so its pop
    # and io_submit there run cold. A warm pop is a back-to-back one at the higher iodepths
    # (where there are none, every pop is priced cold); a warm io_submit of one iocb is the
    # microbenchmark's tight loop. What the lowest iodepth takes beyond them is the cold start.
    kick_to_pop = inp.gaps("kick_ns", "pop_ns") - inp.wake_mean - eventfd
    pop_at_low = np.clip(kick_to_pop, 0, None)
    warm_pops = np.concatenate([_warm_pops(r) for _, r in inp.all_runs])
    if len(warm_pops) >= MIN_QUIET:
        pop = warm_pops
        pop_src = (
            inp.all_src,
            "io_submit returned -> the next request popped, where it was on the ring already",
        )
        # The mean difference, so that the model's mean pop at that iodepth is the measured
        # one (per I/O, the difference of two samples is mostly the wake-up's spread).
        pop_cold = _fixed(
            max(float(np.mean(kick_to_pop) - np.mean(warm_pops)), 0.0),
            f"{tsrc}; {inp.all_src}",
            f"the mean of ({_POP_AT_LOW}) minus the mean warm pop",
        )
    else:
        pop, pop_src = pop_at_low, (tsrc, _POP_AT_LOW)
        pop_cold = _fixed(0.0, tsrc, "no back-to-back pops in the traces: every pop priced cold")
    warm = float(np.median(inp.mb["aio_submit"]))
    submit_cold = np.clip(inp.gaps("pop_ns", "io_submit_ns") - warm, 0, None)
    push = np.clip(inp.gaps("io_complete_ns", "used_push_ns") - inp.reap_event, 0, None)
    signal = inp.gaps("used_push_ns", "signal_ns")
    guest_complete = np.clip(inp.gaps("irq_ns", "reap_ns") - eventfd, 0, None)
    costs: dict[str, Any] = {
        "guest_submit": {
            **fit_dist(guest_submit, "guest_submit"),
            **_m(*submit_src),
        },
        "guest_loop": {
            **fit_dist(_guest_loop(inp), "guest_loop"),
            **_m(tsrc, "one I/O reaped -> the next submitted (iodepth 1, consecutive I/Os)"),
        },
        "kick": kick_spec,
        "guest_irq": _fixed(eventfd, mbsrc, "one eventfd read"),
        "guest_complete": {
            **fit_dist(guest_complete, "guest_complete"),
            **_m(tsrc, "irq wait returned -> reaped, minus one eventfd read"),
        },
        "wait_return": _both(_fixed(0.0, tsrc, "not separable in the trace: included in pop")),
        "notify_read": _both(_fixed(eventfd, mbsrc, "one eventfd read")),
        "pop": _both({**fit_dist(pop, "pop"), **_m(*pop_src)}),
        "pop_cold": _both(pop_cold),
        "submit_call": _both(
            _fixed(warm - submit_iocb, mbsrc, "io_submit of one iocb minus one iocb in a batch")
        ),
        "submit_iocb": _both(_fixed(submit_iocb, mbsrc, "io_submit per iocb in a batch of 8")),
        "submit_cold": _both(
            {
                **fit_dist(submit_cold, "submit_cold"),
                **_m(
                    f"{tsrc} and {mbsrc}",
                    "popped -> io_submit returned (the backend woke on an idle CPU for each "
                    "request) minus the median io_submit of one iocb in a tight loop",
                ),
            }
        ),
        "reap_call": _both(
            _fixed(inp.reap_call, mbsrc, "io_getevents of one event minus one event")
        ),
        "reap_event": _both(_fixed(inp.reap_event, mbsrc, "io_getevents per event in a batch")),
        "push": _both(
            {
                **fit_dist(push, "push"),
                **_m(tsrc, "reaped -> used index published, minus one reaped event"),
            }
        ),
        "signal": _both(
            {
                **fit_dist(signal, "signal"),
                **_m(tsrc, "used index published -> irq eventfd written"),
            }
        ),
    }
    costs.update(_uring_costs(inp.mb, mbsrc, notes))
    notes.append(
        "both designs run as user-space threads in the reference backend, so the "
        "user and kernel variants of every host cost are the same measurement"
    )
    return costs


# The microbenchmarks that price io_uring (vsim.models.syscalls.ENGINE_OPS), as the aio_ ones
# price Linux AIO: a call of one request minus one request in a batch, and per request.
URING_MICROBENCH = ("uring_submit", "uring_submit_per_sqe", "uring_reap", "uring_reap_per_cqe")


def _measured(
    mb: dict[str, np.ndarray], names: tuple[str, ...], what: str, refused: str, notes: list[str]
) -> bool:
    """Whether every microbenchmark of `names` has samples; if not, a note says which is
    missing and that the profile will refuse the designs that need them."""
    missing = [n for n in names if n not in mb or mb[n].size == 0]
    if missing:
        notes.append(
            f"no {what} costs: microbenchmark {missing[0]} missing ({refused} are refused "
            "with this profile)"
        )
    return not missing


def _uring_costs(mb: dict[str, np.ndarray], mbsrc: str, notes: list[str]) -> dict[str, Any]:
    """The io_uring costs when the microbenchmarks have them, else none (and a note: the
    profile then refuses io_uring designs)."""
    if not _measured(mb, URING_MICROBENCH, "io_uring", "designs on io_uring", notes):
        return {}
    med = {n: float(np.median(mb[n])) for n in URING_MICROBENCH}
    sqe, cqe = med["uring_submit_per_sqe"], med["uring_reap_per_cqe"]
    return {
        "uring_submit_call": _both(
            _fixed(
                max(med["uring_submit"] - sqe, 0.0),
                mbsrc,
                "io_uring_enter of one read minus one SQE in a batch",
            )
        ),
        "uring_submit_sqe": _both(_fixed(sqe, mbsrc, "io_uring_enter per SQE in a batch of 8")),
        "uring_reap_call": _both(
            _fixed(
                max(med["uring_reap"] - cqe, 0.0),
                mbsrc,
                "reading one ready CQE off the ring minus one CQE in a batch",
            )
        ),
        "uring_reap_event": _both(_fixed(cqe, mbsrc, "per CQE read off the ring in a batch")),
    } | _sqpoll_costs(mb, med, mbsrc, notes)


SQPOLL_MICROBENCH = ("uring_sqpoll_submit", "uring_sqpoll_per_sqe")


def _sqpoll_costs(
    mb: dict[str, np.ndarray], med: dict[str, float], mbsrc: str, notes: list[str]
) -> dict[str, Any]:
    """SQPOLL's costs (vsim.models.syscalls.ENGINE_OPS["io_uring-sqpoll"]) when measured: the
    submitting thread's SQE writes and tail store as timed; the kernel SQ thread's share as
    what io_uring_enter costs beyond them, per call and per SQE (an upper bound: the system
    call's own entry and its Python wrapper count in it)."""
    if not _measured(mb, SQPOLL_MICROBENCH, "SQPOLL", "designs with an sqpoll thread", notes):
        return {}
    sqe = float(np.median(mb["uring_sqpoll_per_sqe"]))
    call = max(float(np.median(mb["uring_sqpoll_submit"])) - sqe, 0.0)
    enter_sqe = med["uring_submit_per_sqe"]
    enter_call = max(med["uring_submit"] - enter_sqe, 0.0)
    why = "io_uring_enter's cost beyond the SQPOLL ring's, "
    return {
        "uring_sqpoll_call": _both(
            _fixed(call, mbsrc, "queueing one read on an SQPOLL ring minus one SQE in a batch")
        ),
        "uring_sqpoll_sqe": _both(_fixed(sqe, mbsrc, "per SQE queued on an SQPOLL ring")),
        "uring_sq_call": _both(_fixed(max(enter_call - call, 0.0), mbsrc, why + "per call")),
        "uring_sq_sqe": _both(_fixed(max(enter_sqe - sqe, 0.0), mbsrc, why + "per SQE")),
    }


def _disk_table(inp: _Inputs) -> dict[str, Any]:
    """[disk]: the real-fio baseline's service and channels, and the host's completion path."""
    disk = _disk(inp.fio, inp.ds)
    modelled = inp.wake_mean + inp.eventfd + inp.reap_call + inp.reap_event
    disk["completion"] = _completion(
        inp.runs, disk["service"], modelled, f"{inp.tsrc} and {inp.ds}/{layout.FIO}"
    )
    return disk


def _strip_notes(doc: dict[str, Any]) -> dict[str, Any]:
    """Move each distribution's fit note into its source string."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            note = node.pop("fit_note", None)
            if note is not None:
                node["source"] = f"{node.get('source', '')}; fit: {note}"
            for v in node.values():
                walk(v)
        return node

    out: dict[str, Any] = walk(doc)
    return out


def _completion(
    runs: list[tuple[dict[str, Any], RunRecord]],
    service: dict[str, Any],
    modelled: float,
    src: str,
) -> dict[str, Any]:
    """The host's completion path: what the backend's io_submit -> reaped gap holds beyond the
    device (fio's service time) and the wake-up and reap the model already prices.

    Real fio waits in io_getevents; the reference backend waits for the AIO eventfd (epoll),
    so the interrupt, aio_complete and eventfd signal sit between the device and its wake-up.
    Per I/O: the gap minus the mean service of its rw/bs minus `modelled`; the mean of those
    residuals, kept as a fixed delay (their spread is the service's, already modelled).
    """
    resid = []
    for row, r in runs:
        spec = service.get(f"{row['dir']}_{row['bs']}")
        if spec is None:
            continue
        table = {k: v for k, v in spec.items() if k != "fit_note"}  # the fit's own remark
        mean = dist_from_dict(table, "disk.service").mean
        resid.append(_gap(r, "io_submit_ns", "io_complete_ns") - mean - modelled)
    if not resid:
        raise ConfigError("calibrate: no calibration run matches a fio baseline (rw/bs)")
    x = np.concatenate(resid)
    x = np.minimum(x, np.quantile(x, WINSOR))
    value = max(float(np.mean(x)), 0.0)
    return {
        "dist": "fixed",
        "value_us": round(value, 3),
        "provenance": "measured",
        "source": f"{src}; mean over {x.size} I/Os of (io_submit returned -> reaped) minus "
        f"the device's mean service (fio) and the modelled wake-up, eventfd read and reap "
        f"({modelled:.1f} us); winsorised at p{100 * WINSOR:g}",
    }


_CHANNELS_MAX_BS = 4096  # channels are estimated at the sizes up to this one (see _disk)


def _disk(fio: pd.DataFrame, ds: Path) -> dict[str, Any]:
    """A `parallel` disk: per rw/bs service from fio's QD1 clat, channels from fio's peak IOPS.

    One service entry per measured direction and size (`read_4096`, ...): the disk model draws
    the other sizes from its curve across them, computed when the profile loads (its per-byte
    slope and monotone envelope are the model's, not written here). Channels = peak IOPS x mean
    QD1 service, the median over rw/bs at the sizes <= _CHANNELS_MAX_BS when there are any: a
    large block's peak IOPS is capped by bandwidth, not by the device's parallelism, so adding
    large-bs fio data leaves the channel count of a calibration unchanged.
    """
    service: dict[str, Any] = {}
    channels: dict[tuple[str, int], float] = {}
    for (d, bs), g in fio.groupby(["dir", "bs"]):
        qd1 = g[g.iodepth == g.iodepth.min()]
        samples = np.concatenate([sample_from_bins(b) for b in qd1["bins"] if b]) / 1e3
        key = f"{d}_{bs}"
        spec = fit_dist(samples, f"disk {key}")
        spec.update(
            provenance="measured",
            source=f"real fio (libaio, O_DIRECT) clat at iodepth {qd1.iodepth.min()} in {ds}/fio",
        )
        service[key] = spec
        peak = g.groupby("iodepth")["iops"].mean().max()
        channels[str(d), int(bs)] = peak * float(np.mean(samples)) / 1e6
    small = [v for (_, bs), v in channels.items() if bs <= _CHANNELS_MAX_BS]
    estimates = small or list(channels.values())
    k = max(1, round(float(np.median(estimates))))
    over = f" at bs <= {_CHANNELS_MAX_BS}" if small and len(small) < len(channels) else ""
    measured: dict[str, list[str]] = {}  # direction -> its sizes (groupby sorts them)
    for d, bs in channels:
        measured.setdefault(d, []).append(str(bs))
    sizes = "; ".join(f"{d} {', '.join(b)}" for d, b in measured.items())
    return {
        "model": "parallel",
        "channels": {
            "value": k,
            "provenance": "measured",
            "source": f"peak fio IOPS x mean QD1 service time (median over rw/bs{over}: "
            f"{np.median(estimates):.2f}) in {ds}/fio; service measured at bs {sizes} (other "
            f"sizes: the disk model's curve)",
        },
        "service": service,
    }
