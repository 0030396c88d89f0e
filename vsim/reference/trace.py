"""RunRecord: the per-I/O trace of a reference run (fio latencies, stage times, threads, CPUs)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vsim.errors import ConfigError

__all__ = [
    "COLUMNS",
    "STAGES",
    "Array",
    "RunRecord",
]

# Stage timestamps (CLOCK_MONOTONIC ns), in path order; 0 where a stage did not happen
# (irq_ns: the I/O was reaped without waiting for an interrupt; signal_ns: no signal followed).
STAGES = (
    "submit_ns",  # guest: the job starts submitting the I/O
    "kick_ns",  # guest: the kick returned (or the entry was published when the kick was suppressed)
    "pop_ns",  # backend: the chain was popped from the available ring
    "io_submit_ns",  # backend: the engine submission call returned
    "io_complete_ns",  # backend: the engine reaped the completion
    "used_push_ns",  # backend: the used index was published
    "signal_ns",  # backend: the guest eventfd (irqfd) write that covers this entry returned
    "irq_ns",  # guest: the interrupt wait returned before this I/O was reaped
    "reap_ns",  # guest: the used entry was taken off the ring
)
COLUMNS = (
    "ddir",
    "offset",
    "slat_ns",
    "clat_ns",
    "lat_ns",
    "kicked",
    "status",
    "result",
    "submit_thread",
    "submit_cpu",
    "complete_thread",
    "complete_cpu",
    "guest_cpu",
    "job",
    "queue",
)
_FORMAT = "vsim-reference-trace/2"
_FORMAT_1 = "vsim-reference-trace/1"  # one job on one queue: no job and queue columns

Array = npt.NDArray[Any]


@dataclass(frozen=True, kw_only=True, eq=False)
class RunRecord:
    """Every measured I/O of one run (warm-up excluded) plus the run's metadata.

    ddir is fio's direction (0 read, 1 write); slat = submit -> kick returned, clat = kick
    returned -> reaped, lat = slat + clat, as fio reports them. ``thread_names[k]`` names thread
    code k of submit_thread / complete_thread; ``job`` is the fio job of each I/O and ``queue``
    the virtqueue it went through. ``counters`` holds event counts (kicks, signals,
    syscalls, wake-ups) and ``meta`` the configuration (workload, design, engine, file, ...).
    """

    ddir: Array
    offset: Array
    slat_ns: Array
    clat_ns: Array
    lat_ns: Array
    kicked: Array
    status: Array
    result: Array
    submit_thread: Array
    submit_cpu: Array
    complete_thread: Array
    complete_cpu: Array
    guest_cpu: Array
    job: Array
    queue: Array
    stages: dict[str, Array]
    thread_names: tuple[str, ...]
    start_ns: int
    end_ns: int
    counters: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"RunRecord({self.meta.get('design', '?')}, {self.meta.get('engine', '?')}, "
            f"ios={self.total_ios}, iops={self.iops:.0f}, lat_mean_us={self.lat_mean_us:.1f}, "
            f"errors={self.errors})"
        )

    @property
    def total_ios(self) -> int:
        """Number of measured I/Os."""
        return int(self.ddir.shape[0])

    @property
    def errors(self) -> int:
        """I/Os whose virtio status was not OK."""
        return int(np.count_nonzero(self.status))

    @property
    def runtime_s(self) -> float:
        """The measured window: end of warm-up to the last completion, in seconds."""
        return max(self.end_ns - self.start_ns, 1) / 1e9

    @property
    def iops(self) -> float:
        """Measured I/Os per second over the measured window."""
        return self.total_ios / self.runtime_s

    @property
    def lat_mean_us(self) -> float:
        """Mean total latency in microseconds (nan without I/O)."""
        return float(self.lat_ns.mean() / 1e3) if self.total_ios else float("nan")

    def summary(self) -> dict[str, dict[str, float]]:
        """Mean and percentiles (ns) of slat, clat and lat: fio's keys."""
        out = {}
        for name in ("slat_ns", "clat_ns", "lat_ns"):
            x = getattr(self, name).astype(np.float64)
            if x.size == 0:
                out[name] = {"mean": float("nan")}
                continue
            p = np.percentile(x, [1, 10, 50, 90, 99, 99.9])
            out[name] = {
                "min": float(x.min()),
                "max": float(x.max()),
                "mean": float(x.mean()),
                "stddev": float(x.std()),
                "p1": p[0],
                "p10": p[1],
                "p50": p[2],
                "p90": p[3],
                "p99": p[4],
                "p99.9": p[5],
            }
        return {k: {kk: float(vv) for kk, vv in v.items()} for k, v in out.items()}

    def columns(self) -> dict[str, Array]:
        """All per-I/O arrays by name (fio columns, then the stage timestamps)."""
        cols = {name: getattr(self, name) for name in COLUMNS}
        cols.update(self.stages)
        return cols

    def to_pandas(self) -> Any:
        """A pandas DataFrame, one row per measured I/O."""
        import pandas as pd

        return pd.DataFrame(self.columns())

    def _header(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "thread_names": list(self.thread_names),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "counters": self.counters,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        """Write NPZ (default) or Parquet (``.parquet``, needs pyarrow); returns the path."""
        path = Path(path)
        header = json.dumps(self._header(), default=str)
        if path.suffix == ".parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise ConfigError("saving Parquet needs pyarrow (pip install pyarrow)") from None
            table = pa.table(self.columns()).replace_schema_metadata({"vsim": header})
            pq.write_table(table, path)
        else:
            if path.suffix != ".npz":
                path = path.with_suffix(path.suffix + ".npz")
            arrays: dict[str, Any] = {"__header__": np.array(header), **self.columns()}
            np.savez_compressed(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        """Read a trace written by ``save``."""
        path = Path(path)
        try:
            if path.suffix == ".parquet":
                import pyarrow.parquet as pq

                table = pq.read_table(path)
                header = json.loads(table.schema.metadata[b"vsim"])
                cols = {name: table.column(name).to_numpy() for name in table.column_names}
            else:
                # our own file object: np.load leaks its own when the zip is damaged
                with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                    header = json.loads(str(z["__header__"]))
                    cols = {name: z[name] for name in z.files if name != "__header__"}
            if not isinstance(header, dict) or header.get("format") not in (_FORMAT, _FORMAT_1):
                raise ConfigError(f"{path} is not a vsim reference trace")
            if header["format"] == _FORMAT_1:
                n = cols["ddir"].shape[0]
                cols["job"] = cols["queue"] = np.zeros(n, dtype=np.int16)
            return cls(
                **{name: cols[name] for name in COLUMNS},
                stages={name: cols[name] for name in STAGES},
                thread_names=tuple(header["thread_names"]),
                start_ns=int(header["start_ns"]),
                end_ns=int(header["end_ns"]),
                counters=dict(header["counters"]),
                meta=dict(header["meta"]),
            )
        except ConfigError:
            raise
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
            raise ConfigError(
                f"{path}: not a readable vsim trace ({type(e).__name__}: {e})"
            ) from None
