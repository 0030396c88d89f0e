"""The real fio on the host, the same jobs as a campaign: the disk baseline calibration uses."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from vsim.errors import FioFormatError, UnavailableError
from vsim.fio import FioJob, read_fio_json
from vsim.fio.jobfile import fio_arguments, job_options
from vsim.measure import layout
from vsim.measure.campaign import Campaign, run_name, write_provenance
from vsim.outputs import made_dirs, write_atomic
from vsim.processes import die_with_parent
from vsim.reference.storage import Target, create_scratch, open_existing
from vsim.scenario import Workload

__all__ = ["fio_command", "fio_error", "fio_rows", "fio_version", "measure_fio"]


def fio_command(w: Workload, filename: str | Path, runtime: float, size: int) -> list[str]:
    """The real fio's command line for a workload (libaio, O_DIRECT, json+ with all latencies).

    `size` bytes of `filename` (the region the guard opened: fio never has to lay out or extend
    the file); a read job runs with fio's own --readonly guard as well, and fio runs its job as
    a thread so that killing fio stops the I/O at once. The workload's options are
    vsim.fio.jobfile.job_options (one vocabulary with vsim's fio JSON), times written as fio reads
    them (``--runtime=300ms``), and ``--time_based=1`` so that fio's JSON records it.
    """
    opts = job_options(w, ioengine="libaio", direct=True)
    opts.pop("number_ios", None)  # the baseline runs for `runtime`
    opts.update(size=size, runtime=runtime, time_based=1)
    cmd = [
        "fio",
        "--name=vsim-baseline",
        f"--filename={filename}",
        *fio_arguments(opts),
        "--output-format=json+",
        "--lat_percentiles=1",
        "--slat_percentiles=1",
        "--randrepeat=1",
        "--allow_file_create=0",
        "--thread",
    ]
    if w.read_fraction == 1.0:
        cmd.append("--readonly")
    if w.numjobs > 1:
        cmd.append("--group_reporting")
    return cmd


def fio_rows(job: FioJob, file: str) -> list[dict[str, Any]]:
    """One tidy row per direction of a real-fio job: its IOPS, mean latencies and clat bins."""
    rows = []
    for d in job.directions:
        st = getattr(job, d)
        rows.append(
            {
                "rw": job.rw,
                "dir": d,
                "bs": job.bs,
                "iodepth": job.iodepth,
                "iops": st.iops,
                "lat_mean_us": st.lat.mean / 1e3,
                "clat_mean_us": st.clat.mean / 1e3,
                "slat_mean_us": st.slat.mean / 1e3,
                "file": file,
                "bins": st.clat.bins,
            }
        )
    return rows


def fio_version() -> str:
    """The installed fio's version, or UnavailableError."""
    if shutil.which("fio") is None:
        raise UnavailableError("fio is not installed (Debian: apt-get install fio)")
    return subprocess.run(
        ["fio", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def measure_fio(
    c: Campaign,
    out: Path,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    append: bool = False,
) -> pd.DataFrame:
    """Run the real fio on the host with the campaign's jobs (design "host"): out/fio/*.json.

    fio does its I/O on a file the guard (vsim.reference.storage) opened and hands it, by its
    descriptor: a nameless scratch file in the campaign's directory, or the existing --file
    (only read jobs unless writing was allowed; never a block device for writing). fio dies with
    vsim. An existing fio/ part is refused unless `append` (see `measure`).
    """

    version = fio_version()
    layout.check_dataset(out, "fio", append=append)
    fio_dir = out / layout.FIO
    plan = [(r, w) for r in range(c.repeat) for w in c.workloads()]

    def open_for(w: Workload) -> Target:
        assert c.file is not None
        return open_existing(
            c.file,
            bs=w.bs,
            size=c.size,
            needs_write=w.read_fraction < 1,
            allow_overwrite=c.allow_overwrite,
        )

    scratch = None
    if c.file is not None:  # every job's target passes the guard before any run
        for w in c.workloads():
            open_for(w).close()
    old = layout.read_fio_runs(fio_dir / layout.FIO_RUNS)
    first = layout.first_repeats(old, ["rw", "bs", "iodepth"])
    prov = layout.provenance_name(fio_dir)
    rows = old.to_dict("records")
    try:
        if c.file is None:
            scratch = create_scratch(c.directory, c.size)
        with contextlib.ExitStack() as made:  # fio/ comes with its first run
            for i, (rep, w) in enumerate(plan):
                target = scratch if scratch is not None else open_for(w)
                try:
                    size = min(c.size, target.region) // w.bs * w.bs
                    text = _run_fio(fio_command(w, target.proc_path, c.seconds, size), target, w)
                finally:
                    if target is not scratch:
                        target.close()
                r = first.get((w.rw, w.bs, w.iodepth), 0) + rep
                name = run_name(r, w, "host")
                jobs = read_fio_json(text)
                if len(jobs) != 1:
                    raise FioFormatError(f"fio printed {len(jobs)} jobs, expected 1")
                if i == 0:
                    made.enter_context(made_dirs(fio_dir))
                write_atomic(fio_dir / f"{name}.json", text)
                rows += [{**row, "repeat": r} for row in fio_rows(jobs[0], f"fio/{name}.json")]
                df = pd.DataFrame(rows, columns=layout.FIO_RUN_COLUMNS)
                layout.write_csv(fio_dir / layout.FIO_RUNS, df)
                if i == 0:
                    write_provenance(fio_dir, c, name=prov, fio=version)
                if progress:
                    progress(i + 1, len(plan), name)
    finally:
        if scratch is not None:
            scratch.close()
    df = pd.DataFrame(rows, columns=layout.FIO_RUN_COLUMNS)
    keys = ["rw", "dir", "bs", "iodepth"]
    summary = df.groupby(keys, sort=False)[["iops", "lat_mean_us", "clat_mean_us"]].mean()
    return summary.reset_index()


def _run_fio(cmd: list[str], target: Any, w: Workload) -> str:
    """Run fio on the open target (it inherits the descriptor); its JSON output, or one line."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=(target.fd,),
        preexec_fn=die_with_parent,  # fio dies with vsim, even on kill -9
    )
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0 or not stdout.strip():
        raise UnavailableError(
            f"fio failed on rw={w.rw} bs={w.bs} iodepth={w.iodepth} (exit {proc.returncode}): "
            f"{fio_error(stderr)}"
        )
    return stdout


def fio_error(stderr: str) -> str:
    """The reason in fio's error output, as one short line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:  # fio's own error lines first: "fio: ...", "... error=Reason"
        if "error=" in ln:
            return ln.rsplit("error=", 1)[1][:200]
    for ln in reversed(lines):
        if ln.startswith("fio:"):
            return ln[4:].strip()[:200]
    return (lines[-1] if lines else "no message")[:200]
