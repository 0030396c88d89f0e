"""Calibration from the reference backend: traces, microbenchmarks and fio baselines -> Profile."""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomli_w
from scipy import stats

from vsim.errors import ConfigError
from vsim.fio import read_fio_json, sample_from_bins
from vsim.models.dists import dist_from_dict
from vsim.outputs import write_atomic
from vsim.profile import SCHEMA, Profile
from vsim.reference.trace import RunRecord

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
    (the mean over runs of its share of the run's traced I/Os) per backend thread count, and
    the epoch between redraws that gives the traced rate of pattern changes. None when the
    traces show no change (the epoch cannot be told): the model then places threads freely."""
    from vsim.scenario import DESIGNS

    shares: dict[int, dict[tuple[int, ...], float]] = {}
    n_runs: dict[int, int] = {}
    changes = 0
    span_us = 0.0
    for row, r in runs:
        n = DESIGNS[str(row["design"])].threads if str(row["design"]) in DESIGNS else 0
        if n not in (1, 2) or len(r.guest_cpu) < 2:
            continue
        pats = _patterns(r, n)
        n_runs[n] = n_runs.get(n, 0) + 1
        mine = shares.setdefault(n, {})
        for p in pats:
            mine[p] = mine.get(p, 0.0) + 1 / len(pats)
        changes += sum(a != b for a, b in itertools.pairwise(pats))
        sub = r.stages["submit_ns"]
        span_us += float(sub.max() - sub.min()) / 1e3
    if not shares or changes == 0:
        return None
    patterns = {
        str(n): {",".join(map(str, k)): round(v / n_runs[n], 4) for k, v in sorted(ps.items())}
        for n, ps in sorted(shares.items())
    }
    # A redraw keeps the pattern with probability sum(p^2): stretch the epoch to match.
    stay = sum(
        n_runs[n] * sum((v / n_runs[n]) ** 2 for v in shares[n].values()) for n in n_runs
    ) / sum(n_runs.values())  # per run, averaged over the runs
    epoch = span_us / changes * (1 - stay)
    return {
        "epoch_us": round(epoch, 1),
        "patterns": patterns,
        "provenance": "measured",
        "source": f"{src}; the CPU columns (guest, submitter, completer) of every traced I/O: "
        f"pattern shares averaged over {sum(n_runs.values())} runs, {changes} pattern changes "
        f"in {span_us / 1e3:.0f} ms of traces, epoch = time per change x (1 - sum of squared "
        f"shares)",
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


MIN_QUIET = 200  # suppressed-kick submissions needed to price guest_submit without the kick


def _runs(dataset: Path, use: Any) -> list[tuple[dict[str, Any], RunRecord]]:
    """Calibration runs with traces: (manifest row + workload, trace)."""
    from vsim.calibrate import calibration_subset
    from vsim.measured import load_measured

    ms = calibration_subset(load_measured(dataset), use)
    out = []
    for _, row in ms.points.drop_duplicates("file").iterrows():
        trace = dataset / "traces" / (Path(str(row["file"])).stem + ".npz")
        if trace.exists():
            out.append((dict(row), RunRecord.load(trace)))
    if not out:
        raise ConfigError(f"{dataset}: no traces for the calibration points (traces/*.npz)")
    return out


def _gap(r: RunRecord, a: str, b: str) -> np.ndarray:
    s = r.stages
    ok = (s[a] > 0) & (s[b] > 0) & (s[b] >= s[a])
    return np.asarray((s[b][ok] - s[a][ok]) / 1e3, dtype=float)


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
    "aio_submit_per_iocb",
    "aio_getevents_per_event",
    "aio_getevents",
)


def _provenance(dataset: Path) -> dict[str, Any]:
    """The dataset's provenance.toml (vsim measure writes it with the first run)."""
    path = dataset / "provenance.toml"
    if not dataset.is_dir():
        raise ConfigError(f"{dataset}: not a directory (give a vsim measure --out dataset)")
    try:
        prov = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{dataset}: no provenance.toml: not a vsim measure dataset (vsim measure --out)"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    cores = prov.get("cores")
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ConfigError(f"{path}: cores: expected a whole number >= 1, got {cores!r}")
    return prov


def _microbench(dataset: Path) -> dict[str, np.ndarray]:
    d = dataset / "microbench"
    out = {}
    for p in sorted(d.glob("*.npy")):
        try:
            with open(p, "rb") as fh:
                out[p.stem] = np.load(fh, allow_pickle=False).astype(float) / 1e3
        except (OSError, ValueError, EOFError) as e:
            raise ConfigError(f"{p}: not a readable microbenchmark sample ({e})") from None
    missing = [n for n in NEEDED_MICROBENCH if n not in out or out[n].size == 0]
    if missing:
        raise ConfigError(
            f"{dataset}: microbenchmark {missing[0]} missing ({len(missing)} of "
            f"{len(NEEDED_MICROBENCH)} needed); run vsim measure --microbench --bench "
            f"{','.join(missing)} --out {dataset}"
        )
    return out


def _fio(dataset: Path) -> pd.DataFrame:
    from vsim.measure import fio_rows

    rows = [
        r
        for f in sorted((dataset / "fio").glob("*.json"))
        for r in fio_rows(read_fio_json(f)[0], str(f))
    ]
    if not rows:
        raise ConfigError(f"{dataset}: no fio baselines (run vsim measure --fio)")
    return pd.DataFrame(rows)


def calibrate_from_runs(datasets: list[Path], *, use: Any = None, name: str) -> TraceCalibration:
    """Fit every number of a profile from `vsim measure` datasets (calibration points only).

    CPU latencies come from the wake-up microbenchmarks (one-way = half a round trip); guest
    and backend costs from the gaps between trace stages at the calibration points, minus the
    components the microbenchmarks price; the disk from the real-fio baseline: the service-time
    distribution per direction and block size from fio's clat at iodepth 1, and the number of
    channels from the IOPS fio sustains at its highest iodepth.
    """
    ds = datasets[0]
    if len(datasets) > 1:
        raise ConfigError("calibrate: give one dataset directory")
    prov = _provenance(ds)
    all_runs = _runs(ds, use)
    # Costs come from the lowest calibration iodepth: there a stage gap is service, not queueing.
    qd = min(int(row["iodepth"]) for row, _ in all_runs)
    runs = [(row, r) for row, r in all_runs if int(row["iodepth"]) == qd]
    mb = _microbench(ds)
    fio = _fio(ds)
    points = f"points: {use or 'dataset marks'}"
    where = f"{ds} (calibration runs at iodepth {qd}; {points})"
    where_all = f"{ds} (calibration runs at every calibration iodepth; {points})"
    notes: list[str] = []

    def m(src: str, method: str) -> dict[str, str]:
        return {"provenance": "measured", "source": f"{src}; {method}"}

    def cat(a: str, b: str) -> np.ndarray:
        return np.concatenate([_gap(r, a, b) for _, r in runs])

    half = {k: v / 2 for k, v in mb.items()}
    eventfd = float(np.median(half["eventfd"]))  # one write or one read
    wake_idle = half["wakeup_cross_cpu_blocking"]
    wake_busy = half["wakeup_same_cpu_blocking"]
    poll = half["wakeup_cross_cpu_polling"]
    mbsrc = f"vsim measure --microbench in {ds}"
    cpu: dict[str, Any] = {
        "host_cpus": {"value": int(prov["cores"]), **m(f"{ds}/provenance.toml", "cores")},
        "guest_vcpus": {"value": 1, **m("the reference guest", "one process, one thread")},
        "wakeup_idle": {
            **fit_dist(wake_idle, "wakeup_idle"),
            **m(mbsrc, "half the cross-CPU blocking eventfd round trip"),
        },
        "wakeup_busy": {
            **fit_dist(wake_busy, "wakeup_busy"),
            **m(mbsrc, "half the same-CPU blocking eventfd round trip"),
        },
        "poll_detect": {
            **fit_dist(poll, "poll_detect"),
            **m(mbsrc, "half the cross-CPU polling round trip"),
        },
        "backend_lock": {
            "value": 1,
            "provenance": "derived",
            "source": "the reference backend's threads are Python threads of one process: "
            "they hold CPython's global interpreter lock to run and drop it when they block",
        },
        "wake_preempt": _wake_preempt(mb, mbsrc),
    }
    wake_mean = float(np.mean(wake_idle))
    submit_iocb = float(np.median(mb["aio_submit_per_iocb"]))
    reap_event = float(np.median(mb["aio_getevents_per_event"]))
    reap_call = max(float(np.median(mb["aio_getevents"])) - reap_event, 0.0)
    tsrc = f"stage gaps of the reference traces in {where}"
    all_src = f"stage gaps of the reference traces in {where_all}"
    placement = _placement(all_runs, f"the reference traces in {where_all}")
    if placement is None:
        notes.append("no CPU placement change in the traces: threads are placed freely")
    else:
        cpu["placement"] = placement

    def fixed(v: float, src: str, method: str) -> dict[str, Any]:
        return {"dist": "fixed", "value_us": round(v, 3), **m(src, method)}

    # Trace gaps at the calibration points (microseconds).
    kicked = np.concatenate([_submit_gaps(r, kicked=True) for _, r in runs])
    quiet = np.concatenate([_submit_gaps(r, kicked=False) for _, r in all_runs])
    if len(quiet) >= MIN_QUIET:
        # Submissions whose kick was suppressed price the guest's own work; a kick that wakes
        # the sleeping backend costs the guest the difference of the medians (the eventfd
        # write and the waker's share of the wake-up). The tails are left to guest_submit:
        # there they are preemption and host noise, which the model produces or samples.
        guest_submit = quiet
        kick = max(float(np.median(kicked) - np.median(quiet)), 0.0)
        kick_spec = fixed(
            kick,
            all_src,
            f"median submit -> kick returned of kicked submissions at iodepth {qd} "
            f"(n={len(kicked)}) minus that of submissions with the kick suppressed "
            f"(n={len(quiet)}): the eventfd write and the waker's share of waking the backend",
        )
        submit_src = (all_src, "submit -> kick returned of submissions with the kick suppressed")
    else:  # no suppressed kicks (iodepth 1 only): the eventfd write alone
        kick = float(np.median(half["eventfd"]))
        guest_submit = np.clip(kicked - kick, 0, None)
        kick_spec = fixed(kick, mbsrc, "one eventfd write: half the eventfd write+read")
        submit_src = (tsrc, "submit -> kick returned (backend popped later), minus kick")
    # fio's loop: from one reap to the next submission (iodepth 1: one I/O at a time).
    loop_gaps = []
    for _, r in runs:
        sub, reap = np.sort(r.stages["submit_ns"]), np.sort(r.stages["reap_ns"])
        g = (sub[1:] - reap[:-1]) / 1e3
        loop_gaps.append(g[g >= 0])
    guest_loop = np.concatenate(loop_gaps)
    kick_to_pop = cat("kick_ns", "pop_ns")
    pop = np.clip(kick_to_pop - wake_mean - eventfd, 0, None)
    submit_call = np.clip(cat("pop_ns", "io_submit_ns") - submit_iocb, 0, None)
    push = np.clip(cat("io_complete_ns", "used_push_ns") - reap_event, 0, None)
    signal = cat("used_push_ns", "signal_ns")
    guest_complete = np.clip(cat("irq_ns", "reap_ns") - eventfd, 0, None)

    def both(spec: dict[str, Any]) -> dict[str, Any]:
        return {"user": spec, "kernel": dict(spec)}

    costs: dict[str, Any] = {
        "guest_submit": {
            **fit_dist(guest_submit, "guest_submit"),
            **m(*submit_src),
        },
        "guest_loop": {
            **fit_dist(guest_loop, "guest_loop"),
            **m(tsrc, "one I/O reaped -> the next submitted (iodepth 1, consecutive I/Os)"),
        },
        "kick": kick_spec,
        "guest_irq": fixed(eventfd, mbsrc, "one eventfd read"),
        "guest_complete": {
            **fit_dist(guest_complete, "guest_complete"),
            **m(tsrc, "irq wait returned -> reaped, minus one eventfd read"),
        },
        "wait_return": both(fixed(0.0, tsrc, "not separable in the trace: included in pop")),
        "notify_read": both(fixed(eventfd, mbsrc, "one eventfd read")),
        "pop": both(
            {
                **fit_dist(pop, "pop"),
                **m(tsrc, "kick -> popped, minus a mean idle wake-up and an eventfd read"),
            }
        ),
        "submit_call": both(
            {
                **fit_dist(submit_call, "submit_call"),
                **m(tsrc, "popped -> io_submit returned, minus one iocb"),
            }
        ),
        "submit_iocb": both(fixed(submit_iocb, mbsrc, "io_submit per iocb in a batch of 8")),
        "reap_call": both(fixed(reap_call, mbsrc, "io_getevents of one event minus one event")),
        "reap_event": both(fixed(reap_event, mbsrc, "io_getevents per event in a batch")),
        "push": both(
            {
                **fit_dist(push, "push"),
                **m(tsrc, "reaped -> used index published, minus one reaped event"),
            }
        ),
        "signal": both(
            {**fit_dist(signal, "signal"), **m(tsrc, "used index published -> irq eventfd written")}
        ),
    }
    notes.append(
        "both designs run as user-space threads in the reference backend, so the "
        "user and kernel variants of every host cost are the same measurement"
    )
    disk = _disk(fio, ds)
    disk["completion"] = _completion(
        runs, disk["service"], wake_mean + eventfd + reap_call + reap_event, f"{tsrc} and {ds}/fio"
    )
    queue = sorted({int(r.meta.get("queue_size", 0)) for _, r in runs})
    doc = {
        "schema": SCHEMA,
        "name": name,
        "description": (
            f"calibrated by vsim calibrate from {ds} on {prov.get('cpu_model', '?')}, "
            f"{prov.get('cores', '?')} cores, Linux {prov.get('kernel', '?')}, "
            f"{prov.get('date', '?')}"
        ),
        "cpu": cpu,
        "device": {"queue_size": {"value": queue[-1], **m(tsrc, "the reference ring's size")}},
        "costs": costs,
        "disk": disk,
    }
    return TraceCalibration(_strip_notes(doc), notes)


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


def _disk(fio: pd.DataFrame, ds: Path) -> dict[str, Any]:
    """A `parallel` disk: per rw/bs service from fio's QD1 clat, channels from fio's peak IOPS."""
    service: dict[str, Any] = {}
    channels = []
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
        channels.append(peak * float(np.mean(samples)) / 1e6)
    k = max(1, round(float(np.median(channels))))
    return {
        "model": "parallel",
        "channels": {
            "value": k,
            "provenance": "measured",
            "source": f"peak fio IOPS x mean QD1 service time (median over rw/bs: "
            f"{np.median(channels):.2f}) in {ds}/fio",
        },
        "service": service,
    }
