"""The `vsim` command: argument parsing and printing only; the work lives in the library."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shlex
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from vsim.__version__ import __version__
from vsim.calibrate import Fit, calibrate_from_runs, fit_profile, residual_params
from vsim.calibrate.machine import MachinePlan, recalibrate
from vsim.engine import DEFAULT_MAX_IOS, simulate
from vsim.errors import ConfigError, VsimError
from vsim.fio import FIO_PERCENTILES, parse_percentiles
from vsim.fio.jobfile import JobSpec, read_job_file, translate
from vsim.measure import (
    Campaign,
    load_measured,
    measure,
    measure_fio,
    measure_microbench,
)
from vsim.measure.layout import utc_stamp
from vsim.measure.placement import FREE
from vsim.measure.protocol import DEFAULT_MAX_ROUNDS, PRECISION_RUNTIME, parse_duration
from vsim.measure.rules import parse_rule
from vsim.models.build import BUILD
from vsim.outputs import check_dir, check_file, write_atomic
from vsim.processes import Terminated, sigterm_raises
from vsim.progress import Progress
from vsim.reference.microbench import check_names
from vsim.reference.storage import check_directory
from vsim.results import LATENCY_METRICS, ROW_PERCENTILES
from vsim.scenario import DESIGNS, Scenario, Workload, design, parse_size
from vsim.studies import compare, compare_measured, search
from vsim.studies.search import OVER
from vsim.sweep import SEED_GRID, grid, load_table, matching_measured, resimulate, run_points
from vsim.sweep.executors import default_jobs
from vsim.validate import validate

__all__ = ["FLAGS", "build_parser", "flagged", "main"]

FORMATS = ("table", "csv", "json")
TABLE_COLUMNS = (
    "profile",
    "design",
    "rw",
    "dir",
    "bs",
    "iodepth",
    "numjobs",
    "seed",
    "ios",
    "iops",
    "bw_kib_s",
    *LATENCY_METRICS,
    "host_cpu_us_per_io",
    "guest_cpu_us_per_io",
    "iops_hw_pct",
    "lat_hw_pct",
)


# The library names its parameters; the command line has flags. A message that starts with a
# parameter (`runtime must be ...`, `out DIR already holds ...`) is shown with its flag, and
# `append=True` / `resume=True` become --append / --resume.
FLAGS = {
    "number_ios": "--ios",
    "runtime": "--runtime",
    "ramp_time": "--ramp-time",
    "precision": "--precision",
    "max_ios": "--max-ios",
    "seed": "--seed",
    "iodepth": "--iodepth",
    "numjobs": "--numjobs",
    "guest_vcpus": "--guest-vcpus",
    "rwmixread": "--rwmixread",
    "iodepth_batch_submit": "--iodepth-batch-submit",
    "iodepth_batch_complete_min": "--iodepth-batch-complete-min",
    "iodepth_batch_complete_max": "--iodepth-batch-complete-max",
    "rate_iops": "--rate-iops",
    "rate_process": "--rate-process",
    "thinktime": "--thinktime",
    "thinktime_spin": "--thinktime-spin",
    "thinktime_blocks": "--thinktime-blocks",
    "percentiles": "--percentiles",
    "reps": "--reps",
    "confidence": "--confidence",
    "bs": "--bs",
    "size": "--size",
    "poll_us": "--poll-us",
    "jobs": "--jobs",
    "scheduler": "--scheduler",
    "kind": "--kind",
    "out": "--out",
    "use": "--use",
    "repeat": "--repeat",
    "trace_ios": "--trace-ios",
    "bench": "--bench",
    "report": "--report",
    "directory": "--dir",
    "budget": "--budget",
    "max_repeat": "--max-repeat",
    "placement": "--placement",
    "placements": "--placement",
}
_LEADING = re.compile(r"^([a-z_]+)\b")
_PERCENTILE_COLUMN = re.compile(r"^c?lat_p[0-9.]+_us$")


def flagged(message: str) -> str:
    """A library error message in the command line's words (its flags for its parameters)."""
    m = _LEADING.match(message)
    if m and m.group(1) in FLAGS and message[m.end() : m.end() + 1] in (" ", ":", ""):
        message = FLAGS[m.group(1)] + message[m.end() :]
    return message.replace("append=True", "--append").replace("resume=True", "--resume")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _ints(text: str) -> list[int]:
    """ "1,2,3", "1-32" (every integer) or a mix, for --iodepth."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                out += range(lo, hi + 1)
            else:
                out.append(int(part))
        except ValueError:
            raise ConfigError(f"cannot read {part!r} (expected N, N,M or N-M)") from None
    return out


def _sizes(text: str) -> list[int]:
    return [parse_size(p) for p in text.split(",")]


def _names(text: str, what: str) -> list[str]:
    """A comma list of names; an empty one is an error naming its option."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise ConfigError(f"{what}: no value given (expected a comma list, e.g. {what} A,B)")
    return names


def _job_arguments(p: argparse.ArgumentParser) -> None:
    """A fio job file as the base of the workload; the flags given override its options."""
    p.add_argument(
        "job",
        nargs="?",
        help="a fio job file (JOB.fio): its options set the workload; flags given override them",
    )
    p.add_argument("--section", help="the job file's job to use (when it has several)")


def _load_arguments(p: argparse.ArgumentParser) -> None:
    """fio's options for how a job issues and reaps (every point; default: the job file's)."""
    p.add_argument("--numjobs", help="fio jobs in the guest (sweep: a list, 1,2,4 or 1-4)")
    p.add_argument("--rwmixread", type=int, help="read percentage of rw/randrw (default 50)")
    p.add_argument(
        "--iodepth-batch-submit",
        type=int,
        help="I/Os per guest io_submit, one kick each (fio's iodepth_batch_submit; 0: iodepth; "
        "default 1)",
    )
    p.add_argument(
        "--iodepth-batch-complete-min",
        type=int,
        help="at a full queue, reap once this many completed (fio's; default 1)",
    )
    p.add_argument(
        "--iodepth-batch-complete-max",
        type=int,
        help="the most I/Os one reap takes (fio's; default: every completed one)",
    )
    p.add_argument(
        "--rate-iops",
        help="open-loop rate, fio's rate_iops: R (every direction), R,W, R, or ,W "
        "(sweep: a list of R, one point each)",
    )
    p.add_argument("--rate-process", help="linear (default) or poisson (fio's rate_process)")
    p.add_argument(
        "--thinktime", help="stall after thinktime_blocks I/Os complete (fio's; 500 = 500us, 1ms)"
    )
    p.add_argument("--thinktime-spin", help="the part of --thinktime the vCPU spins")
    p.add_argument("--thinktime-blocks", type=int, help="I/Os between stalls (default 1)")
    p.add_argument(
        "--percentiles",
        help="clat/lat percentiles in tables and JSON, as fio's percentile_list: 50,99,99.9 "
        "(default 50,99 in tables, fio's list in JSON)",
    )


def _point_arguments(p: argparse.ArgumentParser, iodepth: str = "I/Os in flight") -> None:
    """One point's rw, bs and iodepth (vsim run, search, compare)."""
    p.add_argument("--rw", help="fio rw mode (default: the job file's, else read)")
    p.add_argument("--bs", help="block size (512, 4k, ...; default: the job file's, else 512)")
    p.add_argument("--iodepth", type=int, help=f"{iodepth} (default: the job file's, else 1)")


def _common(p: argparse.ArgumentParser) -> None:
    _job_arguments(p)
    p.add_argument("--profile", default="seed-2011", help="bundled profile name or a file path")
    p.add_argument("--seed", type=int, default=1, help="root random seed >= 0 (default 1)")
    p.add_argument(
        "--ios",
        type=int,
        help="I/Os per point after warm-up (fixed run length; with --runtime, whichever "
        "comes first, as in fio)",
    )
    p.add_argument(
        "--precision",
        type=float,
        help="run each point until the 95%% CI half-width of IOPS and mean latency is "
        "within this fraction (default 0.01 when neither --ios nor --runtime, nor a job "
        "file's run length)",
    )
    p.add_argument(
        "--max-ios",
        type=int,
        default=DEFAULT_MAX_IOS,
        help=f"cap on measured I/Os per point (default {DEFAULT_MAX_IOS})",
    )
    p.add_argument("--runtime", type=float, help="simulated seconds per point after warm-up")
    p.add_argument("--ramp-time", type=float, help="warm-up seconds, not counted (default 0)")
    p.add_argument(
        "--guest-vcpus",
        help="the guest's vCPUs (default: the profile's; sweep: a list); the guest uses "
        "min(queues, vCPUs) of a design's virtqueues",
    )
    _load_arguments(p)
    p.add_argument("--format", choices=FORMATS, help="output format (default: table)")
    p.add_argument(
        "--out",
        help="write the result to FILE (.csv, .json or .parquet); for "
        "sweep, a DIR keeps every finished point (resumable) and DIR/results.csv",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `vsim` command."""
    top = _Parser(
        prog="vsim",
        description="Simulate virtualized block I/O: virtio-blk (one thread) vs vhost-blk.",
        epilog="example: vsim sweep --design virtio-blk,vhost-blk --iodepth 1-8 --format csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    version = f"vsim {__version__} (models: {BUILD})"
    top.add_argument("--version", action="version", version=version)
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(sub)
    _add_sweep(sub)
    _add_search(sub)
    _add_compare(sub)
    _add_measure(sub)
    _add_plot(sub)
    _add_report(sub)
    _add_calibrate(sub)
    _add_validate(sub)
    return top


def _add_run(sub: Any) -> None:
    """`vsim run`."""
    p = sub.add_parser(
        "run",
        help="simulate one point",
        epilog="example: vsim run --design vhost-blk --rw randread --bs 4k --iodepth 8 "
        "--format json",
    )
    p.add_argument("--design", default="virtio-blk", help=f"one of {', '.join(DESIGNS)}")
    _point_arguments(p)
    p.add_argument("--poll-us", type=float, help="busy-poll before blocking (overrides design)")
    p.add_argument(
        "--engine",
        help="the host engine, native or io_uring (overrides design; io_uring needs "
        "a profile with its costs)",
    )
    _common(p)
    p.set_defaults(func=cmd_run)


def _add_sweep(sub: Any) -> None:
    """`vsim sweep`."""
    p = sub.add_parser(
        "sweep",
        help="simulate a grid (default: the seed's table)",
        epilog="example: vsim sweep --rw randread --bs 4k --iodepth 1-32 --method mva",
    )
    p.add_argument("--design", default=",".join(SEED_GRID["design"]), help="comma list")
    p.add_argument("--rw", help="comma list (default: the job file's, else read,rw)")
    p.add_argument("--bs", help="comma list of block sizes (default: the job file's, else 512)")
    p.add_argument("--iodepth", help="1,2,3 or 1-32 (default: the job file's, else 1-3)")
    p.add_argument(
        "--method",
        choices=("des", "mva"),
        default="des",
        help="des = simulate; mva = instant analytic estimate",
    )
    p.add_argument(
        "--jobs", type=int, default=default_jobs(), help="worker processes (default: all cores)"
    )
    p.add_argument("--scheduler", help="run points on a Dask scheduler (tcp://host:8786)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="with --out DIR: run only the points not already in DIR",
    )
    _common(p)
    p.set_defaults(func=cmd_sweep)


def _add_search(sub: Any) -> None:
    """`vsim search`."""
    p = sub.add_parser(
        "search",
        help="the most IOPS that meets a latency target (bisection over the simulation)",
        epilog="example: vsim search --design vhost-blk --rw randread --bs 4k "
        "--target 'lat_p99_us<=500'   (or a job file with fio's latency_target)",
    )
    p.add_argument("--design", default="virtio-blk", help=f"one of {', '.join(DESIGNS)}")
    _point_arguments(p, iodepth="with --over rate_iops: the job's iodepth")
    p.add_argument(
        "--target",
        help="METRIC<=VALUE[,...], every one to hold: lat_p99_us<=500, lat_mean_us<=200 "
        "(default: the job file's latency_target at its latency_percentile)",
    )
    p.add_argument("--over", choices=OVER, default="iodepth", help="what to vary (default iodepth)")
    p.add_argument("--lo", type=int, help="lowest step (default 1, or 1 %% of the capacity)")
    p.add_argument(
        "--hi",
        type=int,
        help="highest step (default: where the MVA estimate passes the target; the job "
        "file's iodepth with its latency_target)",
    )
    p.add_argument("--step", type=int, help="--over rate_iops: IOPS per step (default 1 %%)")
    _common(p)
    p.set_defaults(func=cmd_search)


def _add_compare(sub: Any) -> None:
    """`vsim compare`."""
    p = sub.add_parser(
        "compare",
        help="A/B: the difference of every metric with a 95%% CI, and a verdict",
        epilog="example: vsim compare --design virtio-blk,vhost-blk --rw read --iodepth 1 "
        "--reps 10 --ios 5000   (or --measured DIR for a measured dataset)",
    )
    p.add_argument("--design", required=True, help="A,B: the two designs to compare")
    _point_arguments(p)
    p.add_argument(
        "--reps", type=int, default=10, help="paired replications (common random numbers)"
    )
    p.add_argument("--confidence", type=float, default=0.95, help="CI level (default 0.95)")
    p.add_argument("--metrics", help="only these metrics (comma list), e.g. iops,lat_p99_us")
    p.add_argument(
        "--measured",
        help="compare two designs of a measured dataset (pairs by point and repeat) instead",
    )
    p.add_argument(
        "--jobs", type=int, default=default_jobs(), help="worker processes (default: all cores)"
    )
    p.add_argument("--scheduler", help="run on a Dask scheduler (tcp://host:8786)")
    _common(p)
    p.set_defaults(func=cmd_compare)


def _add_measure(sub: Any) -> None:
    """`vsim measure`."""
    p = sub.add_parser(
        "measure",
        help="measure on the real reference backend (or real fio, or microbenchmarks)",
        epilog="example: vsim measure --design virtio-blk,vhost-blk --rw randread --bs 4k "
        "--iodepth 1,2,4,8,16,32 --runtime 5 --repeat 3 --out runs/local",
    )
    _job_arguments(p)
    p.add_argument("--design", default="virtio-blk,vhost-blk", help="comma list")
    p.add_argument("--rw", help="comma list (default: the job file's, else randread)")
    p.add_argument("--bs", help="comma list of block sizes (default: the job file's, else 4k)")
    p.add_argument("--iodepth", help="1,2,4 or 1-32 (default: the job file's, else 1,2,4,8,16,32)")
    p.add_argument(
        "--numjobs", help="fio jobs in the guest, a point factor: 1,2,4 (default: the job file's)"
    )
    p.add_argument(
        "--rate-iops", help="open-loop rate of every point, fio's rate_iops (default: none)"
    )
    p.add_argument("--rate-process", help="linear (default) or poisson (fio's rate_process)")
    p.add_argument(
        "--guest-vcpus",
        type=int,
        default=1,
        help="the reference guest's vCPUs (a multiqueue design uses min(queues, vCPUs) queues, "
        "one guest process each; job i on vCPU i mod vCPUs); default 1",
    )
    p.add_argument(
        "--iodepth-batch-submit",
        type=int,
        help="the guest's I/Os per io_submit, one kick check each (fio's iodepth_batch_submit; "
        "0: iodepth); every point (default: the job file's, else 1)",
    )
    p.add_argument(
        "--runtime",
        type=float,
        help=f"seconds per run (default: the job file's, else 5; with --precision "
        f"{PRECISION_RUNTIME:g}: the CI is over runs, and the scheduler's placement regimes, "
        "tens of ms each, average out across many short runs better than across a few long "
        "ones)",
    )
    p.add_argument(
        "--ramp-time", type=float, help="warm-up seconds per run (default: the job file's, else 0)"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="interleaved repeats of every point (with --precision: the minimum number of "
        "rounds, at least 2)",
    )
    p.add_argument(
        "--precision",
        type=float,
        help="run rounds (every open point once, its designs back to back, A B then B A) "
        "until every point's IOPS 95%% CI half-width over its runs is within this fraction "
        "of its mean (e.g. 0.03), --budget is spent or --max-repeat rounds have run; a point "
        "whose designs all converged leaves the later rounds",
    )
    p.add_argument(
        "--budget",
        help="with --precision: wall time for the rounds (SECONDS, 90s, 5m, 1h); no round "
        "starts that the last one's pace says would overrun it (a started round finishes; "
        "this may stop before --repeat rounds)",
    )
    p.add_argument(
        "--max-repeat",
        type=int,
        help=f"with --precision: at most this many rounds (default {DEFAULT_MAX_ROUNDS})",
    )
    p.add_argument(
        "--placement",
        help="CPU placements, a point factor: comma list of free (the scheduler places the "
        "threads) or G:B1[:B2...] (the guest on CPU G, the backend's first thread on B1, its "
        "second on B2; fewer threads ignore extra entries, more repeat the last), e.g. "
        "free,0:1,0:0,0:1:0 (default free)",
    )
    p.add_argument(
        "--engine",
        help="native (Linux AIO), io_uring or threads (default: each design's own: native, "
        "io_uring for qemu-iothread-uring)",
    )
    p.add_argument(
        "--cpus",
        help="G,B[,B...]: the guest on CPU G, backend threads on B... (the same as "
        "--placement G:B...); default: the scheduler places them",
    )
    p.add_argument(
        "--dir", help="directory for the (nameless) scratch file (default: the current one)"
    )
    p.add_argument("--file", help="run on this existing file instead (reads only)")
    p.add_argument(
        "--allow-overwrite",
        action="store_true",
        help="allow write jobs on --file (its data is destroyed)",
    )
    p.add_argument("--size", default="64m", help="scratch file size (default 64m)")
    p.add_argument("--verify", action="store_true", help="check every byte read and written")
    p.add_argument(
        "--trace-ios",
        type=int,
        help="keep only the first N I/Os of each trace (0: no traces; default all)",
    )
    p.add_argument("--fio", action="store_true", help="run the real fio instead (host baseline)")
    p.add_argument("--microbench", action="store_true", help="run the microbenchmarks instead")
    p.add_argument(
        "--bench",
        help="with --microbench: only these (comma list), added to an existing dataset "
        "(implies --append)",
    )
    p.add_argument("--out", help="dataset directory (default: vsim-measure-<UTC time>)")
    p.add_argument(
        "--append",
        action="store_true",
        help="add the runs to the existing dataset --out (earlier runs and provenance stay)",
    )
    p.set_defaults(func=cmd_measure)


def _add_plot(sub: Any) -> None:
    """`vsim plot`."""
    p = sub.add_parser(
        "plot",
        help="draw a figure of a sweep table",
        epilog="example: vsim sweep --out seed.csv && vsim plot seed.csv --kind latency",
    )
    p.add_argument("results", help="a sweep table (.csv, .json or .parquet from vsim sweep)")
    p.add_argument("--kind", default="iops", choices=("iops", "latency", "cpu", "cdf", "breakdown"))
    p.add_argument("--out", help="FILE.png or FILE.svg (default: RESULTS-KIND.png)")
    p.add_argument("--measured", help="a measured dataset to draw beside the prediction")
    p.add_argument("--title", help="figure title")
    p.set_defaults(func=cmd_plot)


def _add_report(sub: Any) -> None:
    """`vsim report`."""
    p = sub.add_parser(
        "report",
        help="one page with the tables and plots of a sweep",
        epilog="example: vsim sweep --out seed.csv && vsim report seed.csv --out seed.html",
    )
    p.add_argument("results", help="a sweep table (.csv, .json or .parquet from vsim sweep)")
    p.add_argument("--out", required=True, help="report.html (self-contained) or report.md")
    p.add_argument("--measured", help="a measured dataset to draw beside the prediction")
    p.add_argument("--title", default="vsim report", help="page title")
    p.add_argument(
        "--no-resimulate",
        action="store_true",
        help="skip re-running the points (no CDF or breakdown)",
    )
    p.set_defaults(func=cmd_report)


def _add_calibrate(sub: Any) -> None:
    """`vsim calibrate`."""
    p = sub.add_parser(
        "calibrate",
        help="fit a profile to measurements",
        epilog="examples: vsim calibrate runs/local --out calibration/profiles/local.toml "
        "--use iodepth=1,8\n  vsim calibrate --fit --base calibration/seed-2011/base.toml "
        "validation/seed-2011 --out calibration/profiles/seed-2011.toml\n"
        "  vsim calibrate --measure --dir /var/tmp --out here.toml   # this machine, ~3 min",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="*", help="measured dataset directories (vsim measure --out)")
    p.add_argument(
        "--measure",
        action="store_true",
        help="re-calibrate this machine in one go: measure the calibration points (both "
        "designs, 4k randread/randwrite, iodepth 1 and 8, to --precision within --budget), the "
        "disk with fio across block sizes and the microbenchmarks into --dataset, then "
        "calibrate and fit (about 3 minutes)",
    )
    p.add_argument(
        "--dataset", help="--measure: the dataset to write (default: vsim-calibration-<UTC>)"
    )
    p.add_argument("--dir", help="--measure: scratch directory (default: the current one)")
    p.add_argument(
        "--precision", type=float, default=0.03, help="--measure: IOPS CI target (0.03 = 3 %%)"
    )
    p.add_argument(
        "--budget",
        default="90s",
        help="--measure: wall time for the calibration points' rounds (90s, 2m)",
    )
    p.add_argument("--out", required=True, help="the profile file to write (.toml)")
    p.add_argument(
        "--use",
        help="calibration points: iodepth=1,8 (or a query); the rest is "
        "held out (default: the dataset's own marks)",
    )
    p.add_argument(
        "--fit",
        action="store_true",
        help="least-squares fit to the calibration points: of the free parameters declared in "
        "--base, or (without --base) of the numbers a trace calibration reads least directly "
        "(the kick, the completion path, the backend's submission cost)",
    )
    p.add_argument("--base", help="base profile with [fit.*] free parameters (for --fit)")
    p.add_argument("--name", help="name of the new profile (default: the --out file's stem)")
    p.add_argument("--ios", type=int, default=10_000, help="--fit: simulated I/Os per point")
    p.add_argument("--seed", type=int, default=1, help="--fit: root random seed")
    p.set_defaults(func=cmd_calibrate)


def _add_validate(sub: Any) -> None:
    """`vsim validate`."""
    p = sub.add_parser(
        "validate",
        help="predict measured runs and report the errors",
        epilog="example: vsim validate --profile seed-2011 --measured validation/seed-2011 "
        "--report out/seed-report",
    )
    p.add_argument("--profile", required=True, help="bundled profile name or a file path")
    p.add_argument(
        "--measured",
        required=True,
        nargs="+",
        help="a dataset directory (manifest.csv or points.csv) or fio JSON files",
    )
    p.add_argument("--manifest", help="manifest.csv for fio JSON files given one by one")
    p.add_argument("--report", help="write report.md, CSV tables and PNG plots to DIR")
    p.add_argument(
        "--use",
        help='calibration points, a query: "iodepth in [1, 8]" (default: the dataset\'s own marks)',
    )
    p.add_argument("--ios", type=int, default=20_000, help="simulated I/Os per point")
    p.add_argument("--seed", type=int, default=1, help="root random seed")
    p.set_defaults(func=cmd_validate)


def _one_int(text: str, flag: str) -> int:
    """A single whole number of an option that sweep reads as a list."""
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag}: cannot read {text!r} (expected one whole number)") from None


# What a point is when neither a flag nor the job file says: vsim run's one point and vsim
# sweep's grid (the seed's table).
RUN_POINT: dict[str, Any] = {"rw": "read", "bs": 512, "iodepth": 1}
SWEEP_POINTS: dict[str, list[Any]] = {k: SEED_GRID[k] for k in ("rw", "bs", "iodepth")}


def _job_spec(a: argparse.Namespace) -> JobSpec | None:
    """The job of the job file given (the one, or --section's); says what it ignores."""
    if a.job is None:
        if a.section is not None:
            raise ConfigError("--section needs a job file (vsim run JOB.fio --section NAME)")
        return None
    spec = read_job_file(a.job).job(a.section)
    if spec.translation.ignored:
        print(
            f"note: {a.job} [{spec.name}]: vsim does not model "
            f"{', '.join(spec.translation.ignored)}: ignored",
            file=sys.stderr,
        )
    return spec


def _flag_fields(a: argparse.Namespace) -> dict[str, Any]:
    """The load flags given, as Workload fields; those with fio's units (thinktime) are read
    as fio reads its options (one vocabulary with job files)."""
    direct = {
        "rwmixread": a.rwmixread,
        "iodepth_batch_submit": a.iodepth_batch_submit,
        "iodepth_batch_complete_min": a.iodepth_batch_complete_min,
        "iodepth_batch_complete_max": a.iodepth_batch_complete_max,
        "thinktime_blocks": a.thinktime_blocks,
        "ramp_time": a.ramp_time,
    }
    fields = {k: v for k, v in direct.items() if v is not None}
    for name, value in (
        ("rate_process", a.rate_process),
        ("thinktime", a.thinktime),
        ("thinktime_spin", a.thinktime_spin),
    ):
        if value is not None:
            flag = "--" + name.replace("_", "-")
            fields.update(translate({name: str(value)}, flag, run_length=False).fields)
    return fields


def _overrides(a: argparse.Namespace, **point: Any) -> dict[str, Any]:
    """Workload fields the command line sets: the load flags given, its run length (which
    replaces a job file's), and the point's own (None: not given)."""
    fields = _flag_fields(a)
    if a.ios is not None or a.runtime is not None or a.precision is not None:
        fields.update(number_ios=a.ios, runtime=a.runtime)
    if a.rate_iops is not None and "rate_iops" not in point:
        fields["rate_iops"] = _rate(a.rate_iops)
    fields.update({k: v for k, v in point.items() if v is not None})
    return fields


def _rate(text: str) -> tuple[int, int]:
    """--rate-iops as fio reads rate_iops (reads, writes)."""
    rate: tuple[int, int] = translate({"rate_iops": text}, "--rate-iops", run_length=False).fields[
        "rate_iops"
    ]
    return rate


def _workload(a: argparse.Namespace, spec: JobSpec | None, **point: Any) -> Workload:
    """One point's workload (vsim run, search, compare): the job file's options (fio's
    defaults for what it leaves out), or vsim run's point, with the command line's over it."""
    over = _overrides(a, **point)
    if a.numjobs is not None:
        over["numjobs"] = _one_int(a.numjobs, "--numjobs")
    if spec is None:
        return Workload(**{**RUN_POINT, **over})
    return spec.workload(**over)


def _point_workload(a: argparse.Namespace, spec: JobSpec | None) -> Workload:
    """The workload of _point_arguments' flags over the job file."""
    bs = parse_size(a.bs) if a.bs is not None else None
    return _workload(a, spec, rw=a.rw, bs=bs, iodepth=a.iodepth)


def _percentiles(a: argparse.Namespace) -> tuple[float, ...] | None:
    return parse_percentiles(a.percentiles) if a.percentiles is not None else None


def _format(a: argparse.Namespace) -> str:
    if a.format:
        return str(a.format)
    if a.out:
        ext = Path(a.out).suffix.lower()
        fmt = {".csv": "csv", ".json": "json", ".parquet": "parquet"}.get(ext, "table")
        if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
            raise ConfigError(f"--out {a.out}: Parquet needs pyarrow: pip install 'vsim[parquet]'")
        return fmt
    return "table"


def _check_writable(path: str | None) -> None:
    """Fail before any work when --out cannot be written (nothing is created)."""
    if path is not None:
        check_file(path)


def _render(df: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return str(df.to_csv(index=False, float_format="%.6g"))
    if fmt == "json":
        return json.dumps(df.to_dict(orient="records"), indent=2) + "\n"
    cols = [c for c in TABLE_COLUMNS if c in df.columns]
    if "rate_iops" in df.columns and (df["rate_iops"].fillna(0) > 0).any():
        cols.insert(cols.index("numjobs") + 1, "rate_iops")  # an open-loop table
    pct = [c for c in df.columns if _PERCENTILE_COLUMN.match(str(c))]
    if pct:  # the percentiles the rows carry (--percentiles), after slat: clat's, then lat's
        rest = [c for c in cols if c not in ("clat_mean_us", "lat_mean_us", *pct)]
        rest = [c for c in rest if not _PERCENTILE_COLUMN.match(c)]
        at = rest.index("slat_mean_us") + 1 if "slat_mean_us" in rest else len(rest)
        latency = ["clat_mean_us", *(c for c in pct if c.startswith("clat_"))]
        latency += ["lat_mean_us", *(c for c in pct if c.startswith("lat_"))]
        cols = [c for c in (*rest[:at], *latency, *rest[at:]) if c in df.columns]
    return str(df[cols].to_string(index=False, float_format=lambda v: f"{v:.1f}")) + "\n"


def _emit(text: str | None, df: pd.DataFrame | None, a: argparse.Namespace, fmt: str) -> None:
    """Print or write the result; if writing fails, print it so nothing computed is lost."""
    if a.out is None:
        sys.stdout.write(text or "")
        return
    try:
        if fmt == "parquet":
            assert df is not None
            frame = df
            write_atomic(a.out, lambda tmp: frame.to_parquet(tmp, index=False))
        else:
            write_atomic(a.out, text or "")
    except (OSError, ImportError, ValueError) as e:
        sys.stdout.write(text if text is not None else _render(df, "csv") if df is not None else "")
        raise ConfigError(f"--out {a.out}: cannot write ({e}); result printed instead") from None
    print(f"wrote {a.out}", file=sys.stderr)


def cmd_run(a: argparse.Namespace) -> None:
    """`vsim run`: one point."""
    fmt = _format(a)
    _check_writable(a.out)
    overrides: dict[str, object] = {}
    if a.poll_us is not None:
        overrides["poll_us"] = a.poll_us
    if a.engine is not None:
        overrides["engine"] = a.engine
    d = design(a.design, **overrides)
    pcts = _percentiles(a)
    spec = _job_spec(a)
    w = _point_workload(a, spec)
    vcpus = None if a.guest_vcpus is None else _one_int(a.guest_vcpus, "--guest-vcpus")
    _note_run_length(w, a)
    res = simulate(
        Scenario(workload=w, design=d, profile=a.profile, guest_vcpus=vcpus),
        a.seed,
        precision=a.precision,
        max_ios=a.max_ios,
    )
    df = pd.DataFrame(res.rows(pcts or ROW_PERCENTILES))
    json_text = res.fio_json_text(pcts or FIO_PERCENTILES) + "\n" if fmt == "json" else None
    text = json_text if json_text is not None else _render(df, fmt)
    _emit(text if fmt != "parquet" else None, df, a, fmt)
    _notes(df)


def _note_run_length(w: Workload, a: argparse.Namespace) -> None:
    """Say when a job file's own run length (fio's: size / bs I/Os, or its runtime) is run."""
    if a.job is None or a.ios is not None or a.runtime is not None or a.precision is not None:
        return
    what = []
    if w.number_ios is not None:
        what.append(f"{w.number_ios:,} I/Os per job")
    if w.runtime is not None:
        what.append(f"{w.runtime:g} s")
    if what:
        print(
            f"note: running the job file's length, {' or '.join(what)} (fio's rule); "
            "--precision 0.01 runs until the CIs are within 1 %, --ios N runs N",
            file=sys.stderr,
        )


def _notes(df: pd.DataFrame) -> None:
    """Say what a table's columns flag: tag waits, and block sizes outside the measured ones."""
    _note_tag_wait(df)
    if "extrapolated" in df.columns and df["extrapolated"].fillna(False).astype(bool).any():
        sizes = sorted(
            {int(b) for b in df.loc[df["extrapolated"].fillna(False).astype(bool), "bs"]}
        )
        print(
            f"note: bs {', '.join(map(str, sizes))} lies outside the block sizes the profile's "
            "disk was measured at: its service time is extrapolated (column extrapolated; "
            "measure those sizes with vsim measure --fio --bs ...)",
            file=sys.stderr,
        )


def _note_tag_wait(df: pd.DataFrame) -> None:
    """Say when I/Os waited in the guest for a tag (iodepth x numjobs above the queue)."""
    if "tag_wait_mean_us" in df.columns and (df["tag_wait_mean_us"] > 0).any():
        print(
            "note: iodepth x numjobs exceeds the virtqueue's size in some points: the I/Os "
            "beyond it waited in the guest for a tag (io_submit sleeps; column "
            "tag_wait_mean_us, counted in slat)",
            file=sys.stderr,
        )


def _is_table_file(path: str) -> bool:
    return Path(path).suffix.lower() in (".csv", ".json", ".parquet")


def cmd_sweep(a: argparse.Namespace) -> None:
    """`vsim sweep`: a grid of points."""
    workspace = a.out if a.out is not None and not _is_table_file(a.out) else None
    if a.resume and workspace is None:
        raise ConfigError("--resume needs --out DIR (a directory, not a .csv/.json file)")
    if workspace is not None:
        a.out = None  # the table goes to stdout and DIR/results.csv
    fmt = _format(a)
    _check_writable(a.out)
    if a.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {a.jobs}")
    spec = _job_spec(a)
    given = {
        "rw": _names(a.rw, "--rw") if a.rw is not None else None,
        "bs": _sizes(a.bs) if a.bs is not None else None,
        "iodepth": _ints(a.iodepth) if a.iodepth is not None else None,
        "numjobs": _ints(a.numjobs) if a.numjobs is not None else None,
        "rate_iops": [_rate(r) for r in a.rate_iops.split(",")]
        if a.rate_iops is not None
        else None,
    }
    job = spec.translation.fields if spec is not None else {}
    factors: dict[str, list[Any]] = {"design": _names(a.design, "--design")}
    for k, values in given.items():
        if values is not None:
            factors[k] = values
        elif k in ("rw", "bs", "iodepth"):
            factors[k] = [job[k]] if k in job else SWEEP_POINTS[k]
    point = {k: v[0] for k, v in factors.items() if k != "design"}
    over = _overrides(a, **point)
    w = spec.workload(**over) if spec is not None else Workload(**over)
    base = Scenario(workload=w, profile=a.profile)
    _note_run_length(base.workload, a)
    if a.guest_vcpus is not None:
        factors["guest_vcpus"] = _ints(a.guest_vcpus)
    for name in factors["design"]:
        design(name)  # unknown names fail before any work
    base = replace(base, workload=replace(base.workload, bs=factors["bs"][0]))
    points = grid(base, factors)
    with Progress(len(points), "vsim sweep") as bar:
        res = run_points(
            points,
            seed=a.seed,
            method=a.method,
            jobs=a.jobs,
            scheduler=a.scheduler,
            precision=a.precision,
            max_ios=a.max_ios,
            out=workspace,
            resume=a.resume,
            progress=bar.for_points,
            percentiles=_percentiles(a) or ROW_PERCENTILES,
        )
    df = res.to_dataframe()
    if workspace is not None:
        write_atomic(Path(workspace) / "results.csv", _render(df, "csv"))
        print(
            f"wrote {workspace}/results.csv ({res.resumed} of {len(points)} points resumed)",
            file=sys.stderr,
        )
    _emit(_render(df, fmt) if fmt != "parquet" else None, df, a, fmt)
    _notes(df)


def cmd_search(a: argparse.Namespace) -> None:
    """`vsim search`: the best point under a latency target."""
    fmt = _format(a)
    _check_writable(a.out)
    spec = _job_spec(a)
    w = _point_workload(a, spec)
    _note_run_length(w, a)
    target, hi = a.target, a.hi
    lt = spec.translation.latency_target if spec is not None else None
    if target is None:
        if lt is None:
            raise ConfigError(
                "--target: give one (e.g. 'lat_p99_us<=500'), or a job file with latency_target"
            )
        target = f"lat_p{lt.percentile:g}_us<={lt.target_us:g}"
        if a.over == "iodepth" and hi is None and a.iodepth is None:
            hi = max(w.iodepth, 2)  # fio's latency_target: queue depths up to iodepth
        print(f"note: {a.job}: fio's latency_target is the target {target}", file=sys.stderr)
    vcpus = None if a.guest_vcpus is None else _one_int(a.guest_vcpus, "--guest-vcpus")
    scenario = Scenario(workload=w, design=design(a.design), profile=a.profile, guest_vcpus=vcpus)

    def step(point: dict[str, Any]) -> None:
        verdict = "meets" if point["meets"] else "misses"
        print(
            f"  {a.over} {point[a.over]:g}: {point['iops']:,.0f} IOPS, {verdict}", file=sys.stderr
        )

    res = search(
        scenario,
        target,
        over=a.over,
        seed=a.seed,
        precision=a.precision,
        max_ios=a.max_ios,
        lo=a.lo,
        hi=hi,
        step=a.step,
        progress=step,
    )
    df = res.to_dataframe()
    print(res.summary(), file=sys.stderr)
    if fmt == "json":
        doc = {
            "target": [str(t) for t in res.targets],
            "over": res.over,
            "best": res.best,
            "next_up": res.next_up,
            "bracket": list(res.bracket),
            "steps": res.steps,
        }
        text: str | None = json.dumps(doc, indent=2) + "\n"
    elif fmt == "table":
        text = str(df.to_string(index=False, float_format=lambda v: f"{v:.1f}")) + "\n"
    else:
        text = _render(df, fmt) if fmt != "parquet" else None
    _emit(text, df, a, fmt)


def cmd_compare(a: argparse.Namespace) -> None:
    """`vsim compare`: design B against design A, every metric with its CI."""
    fmt = _format(a)
    _check_writable(a.out)
    names = _names(a.design, "--design")
    if len(names) != 2:
        raise ConfigError(f"--design: give two designs, A,B (got {len(names)})")
    metrics = _names(a.metrics, "--metrics") if a.metrics is not None else None
    if a.measured is not None:
        given = [
            flag
            for flag, v in (
                ("a job file", a.job),
                ("--rw", a.rw),
                ("--bs", a.bs),
                ("--iodepth", a.iodepth),
                ("--numjobs", a.numjobs),
                ("--rate-iops", a.rate_iops),
                ("--ios", a.ios),
                ("--runtime", a.runtime),
                ("--precision", a.precision),
            )
            if v is not None
        ]
        if given:
            raise ConfigError(
                f"{given[0]} applies to simulated comparisons: --measured compares the "
                "dataset's own points"
            )
        comp = compare_measured(
            a.measured, names[0], names[1], metrics=metrics, confidence=a.confidence
        )
    else:
        spec = _job_spec(a)
        w = _point_workload(a, spec)
        vcpus = None if a.guest_vcpus is None else _one_int(a.guest_vcpus, "--guest-vcpus")
        _note_run_length(w, a)
        comp = compare(
            names[0],
            names[1],
            workload=w,
            profile=a.profile,
            reps=a.reps,
            seed=a.seed,
            precision=a.precision,
            max_ios=a.max_ios,
            percentiles=_percentiles(a),
            confidence=a.confidence,
            jobs=a.jobs,
            scheduler=a.scheduler,
            guest_vcpus=vcpus,
        )
    df = comp.to_dataframe()
    if metrics is not None:
        df = df[df["metric"].isin(metrics)]
    if fmt == "table":
        text: str | None = comp.table(metrics)
    elif fmt == "json":
        text = comp.to_json() + "\n"
    else:
        text = _render(df, fmt) if fmt != "parquet" else None
    _emit(text, df, a, fmt)


def _placements(a: argparse.Namespace) -> tuple[str, ...]:
    """The campaign's placement labels, from --placement or (one pinning) --cpus."""
    if a.cpus is not None and a.placement is not None:
        raise ConfigError("give --cpus or --placement, not both (--cpus G,B is --placement G:B)")
    if a.cpus is not None:
        cpus = _ints(a.cpus)
        if len(cpus) < 2:
            raise ConfigError(f"--cpus {a.cpus}: expected G,B[,B...] (a guest and a backend CPU)")
        return (":".join(str(c) for c in cpus),)
    if a.placement is not None:
        return tuple(_names(a.placement, "--placement"))
    return (FREE,)


def cmd_measure(a: argparse.Namespace) -> None:
    """`vsim measure`: a campaign on the real path."""
    placements = _placements(a)
    if a.fio or a.microbench:
        what = "--fio" if a.fio else "--microbench"
        for flag, given in (
            ("--precision", a.precision is not None),
            ("--budget", a.budget is not None),
            ("--max-repeat", a.max_repeat is not None),
            ("--placement", placements != (FREE,)),
        ):
            if given:
                raise ConfigError(f"{flag} applies to the reference backend, not {what}")
    if a.precision is None:
        for flag, given in (("--budget", a.budget), ("--max-repeat", a.max_repeat)):
            if given is not None:
                raise ConfigError(f"{flag} needs --precision (without it, --repeat is fixed)")
    budget = parse_duration(a.budget) if a.budget is not None else None
    if a.file is not None and a.dir is not None:
        raise ConfigError("give --dir (scratch file) or --file (existing file), not both")
    if a.dir is not None:
        check_directory(a.dir)
    if a.file is not None and not Path(a.file).exists():
        raise ConfigError(f"--file {a.file}: does not exist")
    spec = _job_spec(a)
    job = _measure_job(a, spec)
    jf = spec.translation.given if spec is not None else {}
    c = Campaign(
        designs=tuple(_names(a.design, "--design")),
        rws=tuple(_names(a.rw, "--rw")) if a.rw is not None else (job.rw,),
        bss=tuple(_sizes(a.bs)) if a.bs is not None else (job.bs,),
        iodepths=tuple(_ints(a.iodepth))
        if a.iodepth is not None
        else ((job.iodepth,) if spec is not None else (1, 2, 4, 8, 16, 32)),
        numjobs=tuple(_ints(a.numjobs)) if a.numjobs is not None else (job.numjobs,),
        guest_vcpus=a.guest_vcpus,
        iodepth_batch_submit=job.iodepth_batch_submit,
        placements=placements,
        runtime=a.runtime if a.runtime is not None else jf.get("runtime"),
        ramp_time=job.ramp_time,
        job=job,
        repeat=a.repeat,
        precision=a.precision,
        budget=budget,
        max_repeat=a.max_repeat if a.max_repeat is not None else DEFAULT_MAX_ROUNDS,
        engine=a.engine,
        directory=a.dir,
        file=a.file,
        allow_overwrite=a.allow_overwrite,
        verify=a.verify,
        size=parse_size(a.size),
        trace_ios=a.trace_ios,
    )
    c.workloads()  # bad rw / bs / iodepth fail before any run
    if a.bench is not None and not a.microbench:
        raise ConfigError("--bench needs --microbench")
    benches = _names(a.bench, "--bench") if a.bench is not None else None
    if benches is not None:  # before any directory is made
        check_names(benches)
    out = Path(a.out or f"vsim-measure-{utc_stamp()}")
    check_dir(out)

    if a.fio:
        runs = c.repeat * len(c.workloads())  # fio: no designs
    elif c.precision is None:
        runs = len(c.plan())
    else:  # a bound: the rounds say how many runs it takes
        runs = c.max_repeat * len(c.points()) * len(c.designs)
    with Progress(runs, "vsim measure", enabled=None if not a.microbench else False) as progress:
        if a.microbench:
            df = measure_microbench(c, out, names=benches, append=a.append)
        elif a.fio:
            df = measure_fio(c, out, progress=progress, append=a.append)
        else:
            df = measure(c, out, progress=progress, append=a.append)
    sys.stdout.write(df.to_string(index=False, float_format=lambda v: f"{v:.1f}") + "\n")
    if "campaign" in df.attrs:
        print(_campaign_line(df, c.precision), file=sys.stderr)
    print(f"wrote {out}", file=sys.stderr)


def _measure_job(a: argparse.Namespace, spec: JobSpec | None) -> Workload:
    """The job every point of a campaign runs (its grid factors aside): the job file's, or
    vsim measure's defaults (4k randread), with the flags given over it."""
    over: dict[str, Any] = {}
    if a.iodepth_batch_submit is not None:
        over["iodepth_batch_submit"] = a.iodepth_batch_submit
    if a.ramp_time is not None:
        over["ramp_time"] = a.ramp_time
    if a.rate_iops is not None:
        over["rate_iops"] = _rate(a.rate_iops)
    if a.rate_process is not None:
        over.update(translate({"rate_process": a.rate_process}, "--rate-process").given)
    if spec is None:
        return Workload(**{"rw": "randread", "bs": 4096, **over})
    named = {k: v for k, v in spec.translation.metadata.items() if k in ("filename", "directory")}
    if named:  # a job file's target is never taken: user data is only touched when asked
        print(
            f"note: {a.job} names {', '.join(f'{k}={v}' for k, v in named.items())}: vsim "
            "measure runs on its own scratch file (--dir), or on --file (reads only unless "
            "--allow-overwrite)",
            file=sys.stderr,
        )
    if spec.translation.given.get("number_ios") or "runtime" not in spec.translation.given:
        print(
            f"note: {a.job}: vsim measure runs every point for --runtime (default 5 s), "
            "not for the job's size or number_ios",
            file=sys.stderr,
        )
    return spec.workload(**over, number_ios=None, runtime=None)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


def _campaign_line(summary: pd.DataFrame, precision: float | None) -> str:
    """The end of a campaign in one line: rounds, wall time, points converged, the worst CI."""
    info = summary.attrs["campaign"]
    parts = [f"vsim measure: {info['rounds']} rounds in {_duration(info['wall_s'])}"]
    if precision is not None:
        parts.append(
            f"{info['converged']}/{info['points']} points converged within "
            f"{100 * precision:g} % ({info['stopped']})"
        )
    ci = summary["iops_ci_pct"].astype(float)
    if len(ci) and np.isfinite(ci).all():
        r = summary.loc[ci.idxmax()]
        where = f"{r['design']} {r['rw']} bs={r['bs']} iodepth={r['iodepth']}"
        where += f" placement={r['placement']}" if r["placement"] != FREE else ""
        parts.append(f"worst IOPS CI +-{ci.max():.1f} % ({where})")
    elif len(ci):
        parts.append("worst IOPS CI: none (a point with a single run)")
    steal = summary.get("steal_pct", pd.Series(dtype=float)).astype(float)
    if steal.notna().any():
        parts.append(
            f"the hypervisor stole {steal.mean():.1f} % of the CPU time (up to {steal.max():.1f} "
            "% over one point's runs: slower runs)"
        )
    return "; ".join(parts)


def cmd_plot(a: argparse.Namespace) -> None:
    """`vsim plot`: one figure of a sweep table."""
    from vsim.plots import plot_kind, save  # matplotlib: only for the commands that draw

    out = a.out or f"{Path(a.results).with_suffix('')}-{a.kind}.png"
    if Path(out).suffix.lower() not in (".png", ".svg"):
        raise ConfigError(f"--out {out}: a plot is a .png or .svg file")
    _check_writable(out)
    df = load_table(a.results)
    measured = _measured_points(a.measured, df)
    results = resimulate(df) if a.kind in ("cdf", "breakdown") else None
    fig = plot_kind(a.kind, df, results=results, measured=measured, title=a.title)
    save(fig, out)
    print(f"wrote {out}", file=sys.stderr)


def cmd_report(a: argparse.Namespace) -> None:
    """`vsim report`: a self-contained page of a sweep."""
    from vsim.plots import write_report  # matplotlib

    if Path(a.out).suffix.lower() not in (".html", ".md"):
        raise ConfigError(f"--out {a.out}: a report is a .html or .md file")
    _check_writable(a.out)
    df = load_table(a.results)
    measured = _measured_points(a.measured, df)
    results = None if a.no_resimulate else resimulate(df)
    write_report(df, a.out, results=results, measured=measured, title=a.title)
    print(f"wrote {a.out}", file=sys.stderr)


def _measured_points(path: str | None, df: pd.DataFrame) -> Any:
    if path is None:
        return None
    return matching_measured(df, load_measured(path).points, f"--measured {path}")


def cmd_calibrate(a: argparse.Namespace) -> None:
    """`vsim calibrate`: measurements -> profile."""
    out = Path(a.out)
    if out.suffix != ".toml":
        raise ConfigError(f"--out {a.out}: a profile is a .toml file")
    _check_writable(a.out)
    name = a.name or out.stem
    source = shlex.join(["vsim", *sys.argv[1:]])
    if a.measure:
        _calibrate_here(a, out, name, source)
        return
    if not a.runs:
        raise ConfigError("give a measured dataset directory, or --measure to measure this machine")
    src = a.runs[0] if len(a.runs) == 1 else a.runs
    use = parse_rule(a.use)
    if a.fit and a.base is not None:  # the free numbers a base profile declares
        try:
            base = tomllib.loads(Path(a.base).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"--base {a.base}: {e}") from None
        base["name"] = name
        _write_fit(
            fit_profile(base, load_measured(src), use=use, ios=a.ios, seed=a.seed, source=source),
            out,
        )
    else:
        cal = calibrate_from_runs([Path(p) for p in a.runs], use=use, name=name)
        sys.stdout.write(cal.summary())
        if not a.fit:
            cal.write(out)
        else:  # then the numbers the traces read least directly, fitted to the same points
            doc = {**cal.document, "fit": residual_params(cal.document)}
            _write_fit(
                fit_profile(
                    doc, load_measured(src), use=use, ios=a.ios, seed=a.seed, source=source
                ),
                out,
            )
    print(f"wrote {out}", file=sys.stderr)


def _calibrate_here(a: argparse.Namespace, out: Path, name: str, source: str) -> None:
    """`vsim calibrate --measure`: measure this machine, then calibrate and fit."""
    if a.runs or a.base is not None or a.use is not None:
        raise ConfigError("--measure measures its own dataset: give no dataset, --base or --use")
    if a.dir is not None:
        check_directory(a.dir)
    dataset = Path(a.dataset or f"vsim-calibration-{utc_stamp()}")
    check_dir(dataset)
    plan = MachinePlan(
        precision=a.precision, budget_s=parse_duration(a.budget), ios=a.ios, seed=a.seed
    )

    def say(msg: str) -> None:
        print(f"vsim calibrate: {msg}", file=sys.stderr)

    with Progress(0, "vsim calibrate", enabled=None) as progress:
        fit = recalibrate(
            dataset,
            name=name,
            plan=plan,
            directory=a.dir,
            say=say,
            progress=progress,
            source=source,
        )
    _write_fit(fit, out)
    print(f"wrote {dataset} (the measurements)", file=sys.stderr)


def _write_fit(fit: Fit, out: Path) -> None:
    sys.stdout.write(fit.summary())
    for note in fit.notes:
        print(f"note: {note}", file=sys.stderr)
    fit.write(out)


def cmd_validate(a: argparse.Namespace) -> None:
    """`vsim validate`: measured against predicted."""
    if a.report is not None:
        check_dir(a.report, "report")
    src = a.measured[0] if len(a.measured) == 1 else a.measured
    measured = load_measured(src, manifest=a.manifest)
    v = validate(a.profile, measured, seed=a.seed, ios=a.ios, use=parse_rule(a.use))
    sys.stdout.write(v.summary().rstrip("\n") + "\n")
    if a.report is not None:
        try:
            written = v.write_report(a.report)
        except OSError as e:
            raise ConfigError(f"--report {a.report}: cannot write ({e.strerror})") from None
        print(f"wrote {len(written)} files to {a.report}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit code (2 for bad input, with one line on stderr)."""
    try:
        with sigterm_raises():
            return _main(argv)
    except Terminated:
        print("vsim: terminated", file=sys.stderr)
        return 143


def _main(argv: Sequence[str] | None) -> int:
    try:
        a = build_parser().parse_args(argv)
        a.func(a)
    except VsimError as e:
        print(f"vsim: error: {flagged(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vsim: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
