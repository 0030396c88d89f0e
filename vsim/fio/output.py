"""fio's JSON and json+ formats: latency summaries, log-linear histogram bins, reading, writing."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

from vsim.__version__ import __version__
from vsim.errors import ConfigError, FioFormatError
from vsim.fio.jobfile import Translation, translate
from vsim.scenario import Workload, parse_size

__all__ = [
    "DIRECTIONS",
    "FIO_IO_U_PLAT_BITS",
    "FIO_IO_U_PLAT_GROUP_NR",
    "FIO_IO_U_PLAT_NR",
    "FIO_IO_U_PLAT_VAL",
    "FIO_PERCENTILES",
    "FIO_VERSION",
    "LATENCIES",
    "DirectionSamples",
    "DirectionStats",
    "FioJob",
    "JobSamples",
    "LatencySummary",
    "bins_from_ns",
    "check_percentiles",
    "fio_json",
    "latency_summary",
    "parse_percentiles",
    "percentile_column",
    "percentile_key",
    "percentiles_from_bins",
    "plat_idx_to_val",
    "plat_idx_to_val_array",
    "plat_val_to_idx",
    "plat_val_to_idx_array",
    "read_fio_document",
    "read_fio_json",
    "sample_from_bins",
]

# fio's latency histogram (stat.h): 29 groups of 64 buckets; values below 128 ns are exact, above
# that each power-of-two range [2^m, 2^(m+1)) is split into 64 equal buckets (error <= 1/128).
FIO_IO_U_PLAT_BITS = 6
FIO_IO_U_PLAT_VAL = 1 << FIO_IO_U_PLAT_BITS
FIO_IO_U_PLAT_GROUP_NR = 29
FIO_IO_U_PLAT_NR = FIO_IO_U_PLAT_GROUP_NR * FIO_IO_U_PLAT_VAL

FIO_PERCENTILES_MAX = 20  # FIO_IO_U_LIST_MAX_LEN (stat.h): the most percentiles fio reports
#: fio's default ``percentile_list``.
FIO_PERCENTILES: tuple[float, ...] = (
    1.0,
    5.0,
    10.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    70.0,
    80.0,
    90.0,
    95.0,
    99.0,
    99.5,
    99.9,
    99.95,
    99.99,
)

DIRECTIONS = ("read", "write", "trim")
LATENCIES = ("slat_ns", "clat_ns", "lat_ns")

FIO_VERSION = f"vsim-{__version__}"


def percentile_key(p: float) -> str:
    """The JSON key fio writes for percentile ``p`` (C's ``%f``: ``99.000000``)."""
    return f"{p:f}"


def percentile_column(latency: str, p: float) -> str:
    """The tidy-table column of percentile ``p`` of ``latency`` (clat, lat): ``lat_p99.9_us``."""
    return f"{latency}_p{float(p):g}_us"


def check_percentiles(percentiles: Sequence[float]) -> tuple[float, ...]:
    """A percentile list as fio's ``percentile_list`` takes it: numbers in (0, 100], at
    least one and at most fio's 20 (FIO_IO_U_LIST_MAX_LEN), ascending, duplicates dropped."""
    out: list[float] = []
    for p in percentiles:
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 < p <= 100.0:
            raise ConfigError(f"percentiles must be numbers within (0, 100], got {p!r}")
        out.append(float(p))
    pcts = tuple(sorted(set(out)))
    if not 1 <= len(pcts) <= FIO_PERCENTILES_MAX:
        raise ConfigError(
            f"percentiles: give 1 to {FIO_PERCENTILES_MAX} values (fio's limit), got {len(pcts)}"
        )
    return pcts


def parse_percentiles(text: str) -> tuple[float, ...]:
    """fio's ``percentile_list`` syntax (``99:99.9``, colon separated) or a comma list."""
    parts = [x.strip() for x in re.split(r"[,:]", text) if x.strip()]
    try:
        values = [float(x) for x in parts]
    except ValueError:
        raise ConfigError(f"percentiles: cannot read {text!r} (expected e.g. 50,99,99.9)") from None
    return check_percentiles(values)


# --------------------------------------------------------------------------- histogram


def plat_val_to_idx(ns: int | np.integer[Any]) -> int:
    """The histogram bucket of a latency in ns, as fio's ``plat_val_to_idx`` (stat.c)."""
    val = int(ns)
    if val < 0:
        raise ConfigError(f"latency must be >= 0 ns, got {val}")
    msb = val.bit_length() - 1 if val else 0
    if msb <= FIO_IO_U_PLAT_BITS:  # below 128 ns every value has its own bucket
        return val
    error_bits = msb - FIO_IO_U_PLAT_BITS
    base = (error_bits + 1) << FIO_IO_U_PLAT_BITS
    offset = (FIO_IO_U_PLAT_VAL - 1) & (val >> error_bits)
    return min(base + offset, FIO_IO_U_PLAT_NR - 1)


def plat_idx_to_val(idx: int | np.integer[Any]) -> int:
    """The value (ns) fio reports for bucket ``idx``: the middle of its range (stat.c)."""
    i = int(idx)
    if not 0 <= i < FIO_IO_U_PLAT_NR:
        raise ConfigError(f"histogram index must be within 0..{FIO_IO_U_PLAT_NR - 1}, got {i}")
    if i < (FIO_IO_U_PLAT_VAL << 1):
        return i
    error_bits = (i >> FIO_IO_U_PLAT_BITS) - 1
    base = 1 << (error_bits + FIO_IO_U_PLAT_BITS)
    k = i % FIO_IO_U_PLAT_VAL
    # fio computes base + (k + 0.5) * 2^error_bits in double; error_bits >= 1 makes it exact
    return base + ((2 * k + 1) << (error_bits - 1))


def _as_ns(ns: ArrayLike) -> NDArray[np.int64]:
    """Latencies as whole nanoseconds (fio records integers): floats are rounded to nearest."""
    arr = np.asarray(ns)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ConfigError("latency samples must be finite")
        arr = np.rint(arr)
    elif arr.dtype.kind not in "iub" and arr.size:
        raise ConfigError(f"latency samples must be numbers, got dtype {arr.dtype}")
    out = arr.astype(np.int64).ravel()
    if out.size and int(out.min()) < 0:
        raise ConfigError(f"latency samples must be >= 0 ns, got {int(out.min())}")
    return out


def plat_val_to_idx_array(ns: ArrayLike) -> NDArray[np.int64]:
    """Vectorised :func:`plat_val_to_idx` over integer nanoseconds (floats are rounded)."""
    v = _as_ns(ns)
    # frexp is exact below 2^53; anything from 2^40 up lands in the last bucket anyway
    _, exp = np.frexp(np.minimum(v, 1 << 40).astype(np.float64))
    msb = np.where(v > 0, exp.astype(np.int64) - 1, 0)
    error_bits = np.maximum(msb - FIO_IO_U_PLAT_BITS, 0)
    idx = ((error_bits + 1) << FIO_IO_U_PLAT_BITS) + ((FIO_IO_U_PLAT_VAL - 1) & (v >> error_bits))
    idx = np.minimum(idx, FIO_IO_U_PLAT_NR - 1)
    return np.where(msb <= FIO_IO_U_PLAT_BITS, v, idx).astype(np.int64)


def plat_idx_to_val_array(idx: ArrayLike) -> NDArray[np.int64]:
    """Vectorised :func:`plat_idx_to_val`."""
    i = np.asarray(idx, dtype=np.int64)
    if i.size and (int(i.min()) < 0 or int(i.max()) >= FIO_IO_U_PLAT_NR):
        raise ConfigError(f"histogram indices must be within 0..{FIO_IO_U_PLAT_NR - 1}")
    error_bits = np.maximum((i >> FIO_IO_U_PLAT_BITS) - 1, 1)
    base = np.left_shift(np.int64(1), error_bits + FIO_IO_U_PLAT_BITS)
    k = i % FIO_IO_U_PLAT_VAL
    val = base + ((2 * k + 1) << (error_bits - 1))
    return np.where(i < (FIO_IO_U_PLAT_VAL << 1), i, val).astype(np.int64)


def bins_from_ns(ns: ArrayLike) -> dict[int, int]:
    """json+ ``bins`` of a sample: ``{plat_idx_to_val(i): count}`` for the non-empty buckets."""
    counts = np.bincount(plat_val_to_idx_array(ns), minlength=FIO_IO_U_PLAT_NR)
    nonzero = np.flatnonzero(counts)
    values = plat_idx_to_val_array(nonzero)
    return {int(v): int(c) for v, c in zip(values, counts[nonzero], strict=True)}


def _sorted_bins(bins: Mapping[int, int] | Mapping[str, int]) -> tuple[NDArray[np.int64], ...]:
    values = np.array([int(v) for v in bins], dtype=np.int64)
    counts = np.array([int(c) for c in bins.values()], dtype=np.int64)
    order = np.argsort(values, kind="stable")
    return values[order], counts[order]


def percentiles_from_bins(
    bins: Mapping[int, int] | Mapping[str, int],
    percentiles: Sequence[float] = FIO_PERCENTILES,
) -> dict[float, int]:
    """Percentiles of a json+ histogram, computed exactly as fio's ``calc_clat_percentiles``.

    fio sorts the percentile list, walks the buckets in order accumulating counts and reports for
    percentile p the value of the first bucket where ``count_so_far >= threshold(p)``: a bucket
    middle, never an interpolated sample. The source writes the threshold as
    ``(long double) p / 100.0 * N`` (N: number of samples), but fio builds with ``-ffast-math``
    and the compiled fio 3.33 (Debian, x86-64) evaluates ``((long double) N * 0.01L) * p`` in x87
    extended precision; that is what is done here with ``numpy.longdouble``. The three forms
    (this one, the source's, plain double) differ only when ``p * N / 100`` is an integer, where
    they can pick adjacent buckets (e.g. N=100, p=30: the source form needs 31 samples, the
    binary 30; N=2000, p=99.95: double needs 1999, the binary 2000). This form reproduced fio's
    own percentiles in every run checked, including those cases.
    Returns ``{p: ns}`` in ascending p; empty when the histogram holds no samples.
    """
    for p in percentiles:
        if not 0.0 < float(p) <= 100.0:
            raise ConfigError(f"percentiles must be within (0, 100], got {p}")
    values, counts = _sorted_bins(bins)
    if (counts < 0).any():
        raise ConfigError("histogram counts must be >= 0")
    total = int(counts.sum())
    if total == 0:
        return {}
    plist = sorted(float(p) for p in percentiles)
    cum = np.cumsum(counts).astype(np.longdouble)
    ld = np.longdouble
    scale = ld(total) * (ld(1) / ld(100))  # N * 0.01L, as the compiled fio computes it
    thresholds = np.array([scale * ld(p) for p in plist], dtype=np.longdouble)
    pos = np.minimum(np.searchsorted(cum, thresholds, side="left"), values.size - 1)
    return {p: int(values[j]) for p, j in zip(plist, pos, strict=True)}


def sample_from_bins(bins: Mapping[int, int] | Mapping[str, int]) -> NDArray[np.int64]:
    """Expand a histogram back into a sorted sample of bucket values (for CDF comparisons).

    Each latency becomes the middle of its bucket, so quantiles are within fio's bucket error
    (1/128 of the value above 128 ns, exact below).
    """
    values, counts = _sorted_bins(bins)
    if (counts < 0).any():
        raise ConfigError("histogram counts must be >= 0")
    return np.repeat(values, counts)


def latency_summary(
    ns: ArrayLike,
    *,
    with_bins: bool,
    percentiles: Sequence[float] | None = FIO_PERCENTILES,
) -> dict[str, Any]:
    """fio's ``slat_ns`` / ``clat_ns`` / ``lat_ns`` object for a sample of latencies in ns.

    As fio does: samples are whole nanoseconds (floats are rounded to nearest); ``min``, ``max``,
    ``mean`` and ``stddev`` (sample standard deviation, n - 1, 0 for one sample) come from the exact
    samples; ``percentile`` is *not* taken from the samples but from the log-linear histogram
    (:func:`percentiles_from_bins`), so a simulated and a measured summary are produced by the same
    rule and agree bucket for bucket. ``percentiles=None`` omits percentiles (and bins), as fio
    does for ``slat`` by default; an empty sample gives zeros and ``N`` 0 like fio. ``bins`` (json+)
    is ``{"<bucket ns>": count}`` with string keys, ready for ``json.dumps``.
    """
    v = _as_ns(ns)
    n = int(v.size)
    if n == 0:
        return {"min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "N": 0}
    out: dict[str, Any] = {
        "min": int(v.min()),
        "max": int(v.max()),
        "mean": float(v.mean()),
        "stddev": float(v.std(ddof=1)) if n > 1 else 0.0,
        "N": n,
    }
    if percentiles:
        bins = bins_from_ns(v)
        pct = percentiles_from_bins(bins, percentiles)
        out["percentile"] = {percentile_key(p): val for p, val in pct.items()}
        if with_bins:
            out["bins"] = {str(val): count for val, count in bins.items()}
    return out


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class LatencySummary:
    """One of fio's ``slat_ns`` / ``clat_ns`` / ``lat_ns`` objects (all values in ns)."""

    min: int
    max: int
    mean: float
    stddev: float
    n: int
    percentiles: dict[float, int]  # {99.0: ns}; empty when fio did not compute them
    bins: dict[int, int] | None  # json+ only: {bucket ns: count}

    def percentile(self, p: float) -> int:
        """The reported value of percentile ``p`` (KeyError when fio did not report it)."""
        return self.percentiles[float(p)]

    def sample(self) -> NDArray[np.int64]:
        """The histogram expanded into a sample (json+ only), see :func:`sample_from_bins`."""
        if self.bins is None:
            raise FioFormatError("this latency summary has no json+ bins (run fio with json+)")
        return sample_from_bins(self.bins)


@dataclass(frozen=True)
class DirectionStats:
    """fio's results for one data direction (``read``, ``write``, ``trim`` or ``mixed``)."""

    iops: float
    bw: int  # KiB/s, as fio reports it
    bw_bytes: int  # bytes/s
    io_bytes: int
    total_ios: int
    runtime_ms: float
    slat: LatencySummary
    clat: LatencySummary
    lat: LatencySummary


@dataclass(frozen=True)
class FioJob:
    """One entry of fio's ``jobs`` list: options (job over global, as strings) and results.

    The fields below ``options`` are what vsim's one translator of fio options
    (:func:`vsim.fio.jobfile.translate`, kept in ``translation``) makes of them; ``number_ios``
    and ``size`` are the options' own (the run length fio derives is in ``workload()``).
    """

    jobname: str
    options: dict[str, str]
    rw: str
    bs: int
    iodepth: int
    numjobs: int
    rwmixread: int
    runtime: float | None  # seconds; None when unlimited
    ramp_time: float  # seconds
    size: int | None
    number_ios: int | None
    iodepth_batch_submit: int  # fio's iodepth_batch_submit (alias iodepth_batch), default 1
    ioengine: str | None  # None: fio's default engine
    direct: bool
    directions: dict[str, DirectionStats]  # only directions with total_ios > 0
    translation: Translation

    @property
    def read(self) -> DirectionStats | None:
        """Read results, or None when the job did no reads."""
        return self.directions.get("read")

    @property
    def write(self) -> DirectionStats | None:
        """Write results, or None when the job did no writes."""
        return self.directions.get("write")

    @property
    def iops(self) -> float:
        """IOPS summed over directions."""
        return sum(d.iops for d in self.directions.values())

    def workload(self, **overrides: Any) -> Workload:
        """The :class:`~vsim.scenario.Workload` this job describes (fields may be overridden),
        built as a job file's is (:meth:`vsim.fio.jobfile.Translation.workload`); a value vsim
        rejects is one ConfigError line naming ``jobs[i]`` and the option."""
        return self.translation.workload(**overrides)


_LINE_START_BRACE = re.compile(r"^\{", re.MULTILINE)


def _looks_like_text(source: str) -> bool:
    return "{" in source or "\n" in source


def read_fio_document(source: str | Path | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    """fio's JSON document from a path, the output itself (lines before the first line that
    starts with ``{``, such as fio's warnings, are skipped) or a parsed document: the one
    reader of fio output."""
    if isinstance(source, Mapping):
        return source
    if isinstance(source, Path) or (isinstance(source, str) and not _looks_like_text(source)):
        path = Path(source)
        try:
            source = path.read_bytes()
        except OSError as exc:
            raise FioFormatError(f"cannot read fio output {path}: {exc.strerror}") from None
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError:
            raise FioFormatError("fio output is not UTF-8 text") from None
    m = _LINE_START_BRACE.search(source)
    if m is None:  # fio may print warnings first, but its JSON starts a line with "{"
        raise FioFormatError("not fio JSON: no line starts with '{'")
    try:
        doc, _ = json.JSONDecoder().raw_decode(source, m.start())
    except json.JSONDecodeError as exc:
        raise FioFormatError(
            f"not fio JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(doc, Mapping):
        raise FioFormatError("not fio JSON: the top level is not an object")
    return doc


def _get(obj: Any, key: str, path: str) -> Any:
    if not isinstance(obj, Mapping):
        raise FioFormatError(f"{path} is not a JSON object")
    if key not in obj:
        raise FioFormatError(f"missing {path}.{key}")
    return obj[key]


def _number(obj: Any, key: str, path: str) -> float:
    val = _get(obj, key, path)
    if isinstance(val, bool) or not isinstance(val, int | float):
        raise FioFormatError(f"{path}.{key} is not a number: {val!r}")
    return float(val)


def _int(obj: Any, key: str, path: str) -> int:
    val = _get(obj, key, path)
    if isinstance(val, int) and not isinstance(val, bool):
        return val  # exact, even beyond 2^53
    return int(_number(obj, key, path))


def _int_map(obj: Any, path: str) -> dict[str, int]:
    if not isinstance(obj, Mapping):
        raise FioFormatError(f"{path} is not a JSON object")
    out: dict[str, int] = {}
    for key in obj:
        out[str(key)] = _int(obj, key, path)
    return out


def _latency(obj: Any, path: str) -> LatencySummary:
    if not isinstance(obj, Mapping):
        raise FioFormatError(f"{path} is not a JSON object")
    try:
        pct = {
            float(k): v
            for k, v in _int_map(obj.get("percentile", {}), f"{path}.percentile").items()
        }
        bins = None
        if "bins" in obj:
            bins = {int(k): v for k, v in _int_map(obj["bins"], f"{path}.bins").items()}
    except ValueError as exc:  # a key that is not a number
        raise FioFormatError(f"{path}: bad percentile or bin key ({exc})") from None
    return LatencySummary(
        min=_int(obj, "min", path),
        max=_int(obj, "max", path),
        mean=_number(obj, "mean", path),
        stddev=_number(obj, "stddev", path),
        n=_int(obj, "N", path),
        percentiles=pct,
        bins=bins,
    )


def _direction(obj: Any, path: str) -> DirectionStats:
    bw = _int(obj, "bw", path)
    slat, clat, lat = (_latency(_get(obj, name, path), f"{path}.{name}") for name in LATENCIES)
    return DirectionStats(
        iops=_number(obj, "iops", path),
        bw=bw,
        bw_bytes=_int(obj, "bw_bytes", path) if "bw_bytes" in obj else bw * 1024,
        io_bytes=_int(obj, "io_bytes", path),
        total_ios=_int(obj, "total_ios", path),
        runtime_ms=_number(obj, "runtime", path),
        slat=slat,
        clat=clat,
        lat=lat,
    )


def _io_bytes(obj: Mapping[str, Any]) -> int:
    """The bytes a job's results say it moved (0 where fio's numbers are missing)."""
    total = 0
    for d in DIRECTIONS:
        v = obj.get(d, {}).get("io_bytes") if isinstance(obj.get(d), Mapping) else None
        total += v if isinstance(v, int) and not isinstance(v, bool) else 0
    return total


def _translation(obj: Mapping[str, Any], opts: Mapping[str, str], path: str) -> Translation:
    """The job's options through vsim's translator. fio's JSON leaves out an option given
    without a value (stat.c json_add_job_opts writes a NULL value as nothing: a bare
    ``time_based``, ``--time_based`` on the command line), so a job whose results exceed what
    it may do unless time_based (loops x io_size bytes per job) is read as time_based."""
    tr = translate(opts, path)
    limit, jobs = tr.io_bytes_limit, tr.fields.get("numjobs", 1)
    if "time_based" in opts or limit is None or not isinstance(jobs, int):
        return tr
    if _io_bytes(obj) > limit * max(jobs, 1):
        return translate({**opts, "time_based": ""}, path)
    return tr


def _job(obj: Any, index: int, global_options: Mapping[str, str]) -> FioJob:
    path = f"jobs[{index}]"
    name = _get(obj, "jobname", path)
    raw = obj.get("job options", {})
    if not isinstance(raw, Mapping):
        raise FioFormatError(f"{path}.job options is not a JSON object")
    opts = dict(global_options)
    for k, v in raw.items():  # a job option is applied after the global ones: it wins
        opts.pop(str(k), None)
        opts[str(k)] = str(v)
    tr = _translation(obj, opts, path)

    directions = {}
    for d in (*DIRECTIONS, "mixed"):
        if d in obj and _int(obj[d], "total_ios", f"{path}.{d}") > 0:
            directions[d] = _direction(obj[d], f"{path}.{d}")
    if not any(d in obj for d in (*DIRECTIONS, "mixed")):
        raise FioFormatError(f"missing {path}.read (no read, write, trim or mixed results)")

    f = tr.fields
    return FioJob(
        jobname=str(name),
        options=opts,
        rw=f["rw"],
        bs=f["bs"],
        iodepth=f.get("iodepth", 1),
        numjobs=f.get("numjobs", 1),
        rwmixread=f.get("rwmixread", 50),
        runtime=tr.given.get("runtime"),
        ramp_time=tr.given.get("ramp_time", 0.0),
        size=tr.given.get("size"),
        number_ios=tr.given.get("number_ios"),
        iodepth_batch_submit=f.get("iodepth_batch_submit", 1),
        ioengine=tr.metadata.get("ioengine"),
        direct=tr.metadata.get("direct") == "1",
        directions=directions,
        translation=tr,
    )


def read_fio_json(source: str | Path | bytes | Mapping[str, Any]) -> list[FioJob]:
    """Read fio ``--output-format=json`` or ``json+`` output (or a document from :func:`fio_json`).

    ``source`` is a path (``Path``, or a one-line ``str`` without ``{``), the output itself
    (``bytes``, or a ``str`` holding ``{`` or a newline; lines before the first line that starts
    with ``{``, such as fio warnings, are skipped), or an already parsed document. Malformed
    input raises :class:`~vsim.errors.FioFormatError` naming the problem, e.g.
    ``missing jobs[0].read.clat_ns``.
    """
    doc = read_fio_document(source)
    jobs = doc.get("jobs")
    if not isinstance(jobs, list):
        raise FioFormatError(
            'not fio JSON: no "jobs" list' if jobs is None else "jobs is not a list"
        )
    glob = doc.get("global options", {})
    if not isinstance(glob, Mapping):
        raise FioFormatError("global options is not a JSON object")
    global_options = {str(k): str(v) for k, v in glob.items()}
    return [_job(job, i, global_options) for i, job in enumerate(jobs)]


# --------------------------------------------------------------------------- writing


class DirectionSamples(TypedDict):
    """Per-I/O latencies of one direction, in ns (int or float arrays of equal length)."""

    clat_ns: ArrayLike  # submission done -> completion seen by the application
    slat_ns: NotRequired[ArrayLike]  # submission latency; omitted: N 0 (as fio's sync engines)
    bs: NotRequired[int]  # bytes per I/O; default: the job's ``bs`` option


class JobSamples(TypedDict):
    """The input of one job for :func:`fio_json`."""

    jobname: str
    elapsed_s: float  # measured interval (after ramp_time), for iops, bw and runtime
    options: NotRequired[Mapping[str, object]]  # fio job options, written as strings
    read: NotRequired[DirectionSamples]
    write: NotRequired[DirectionSamples]
    trim: NotRequired[DirectionSamples]


def _empty_direction() -> dict[str, Any]:
    zero = latency_summary(np.zeros(0, dtype=np.int64), with_bins=False)
    return {
        "io_bytes": 0,
        "io_kbytes": 0,
        "bw_bytes": 0,
        "bw": 0,
        "iops": 0.0,
        "runtime": 0,
        "total_ios": 0,
        "short_ios": 0,
        "drop_ios": 0,
        "slat_ns": dict(zero),
        "clat_ns": dict(zero),
        "lat_ns": dict(zero),
    }


def _direction_json(
    samples: Mapping[str, Any],
    elapsed_s: float,
    default_bs: int | None,
    json_plus: bool,
    percentiles: Sequence[float],
    where: str,
) -> dict[str, Any]:
    if "clat_ns" not in samples:
        raise ConfigError(f"{where}: missing 'clat_ns'")
    clat = _as_ns(samples["clat_ns"])
    n = int(clat.size)
    if n == 0:
        return _empty_direction()
    if "slat_ns" in samples:
        slat = _as_ns(samples["slat_ns"])
        if slat.size != n:
            raise ConfigError(f"{where}: slat_ns has {slat.size} samples, clat_ns {n}")
    else:
        slat = np.zeros(0, dtype=np.int64)
    lat = clat + slat if slat.size else clat
    bs = samples.get("bs", default_bs)
    if bs is None:
        raise ConfigError(f"{where}: give bs (bytes per I/O) or a bs job option")
    if not elapsed_s > 0:
        raise ConfigError(f"{where}: elapsed_s must be > 0 seconds, got {elapsed_s}")
    io_bytes = n * int(bs)
    bw_bytes = int(io_bytes / elapsed_s)
    return {
        "io_bytes": io_bytes,
        "io_kbytes": io_bytes >> 10,
        "bw_bytes": bw_bytes,
        "bw": bw_bytes // 1024,
        "iops": n / elapsed_s,
        "runtime": round(elapsed_s * 1000),
        "total_ios": n,
        "short_ios": 0,
        "drop_ios": 0,
        "slat_ns": latency_summary(slat, with_bins=json_plus, percentiles=percentiles),
        "clat_ns": latency_summary(clat, with_bins=json_plus, percentiles=percentiles),
        "lat_ns": latency_summary(lat, with_bins=json_plus, percentiles=percentiles),
    }


def fio_json(
    jobs: Sequence[Mapping[str, Any]],
    *,
    global_options: Mapping[str, object] | None = None,
    timestamp: int = 0,
    json_plus: bool = True,
    percentiles: Sequence[float] = FIO_PERCENTILES,
) -> dict[str, Any]:
    """A fio-like ``json`` / ``json+`` document from per-I/O latencies.

    Each job is a mapping with the keys of :class:`JobSamples` (``jobname``, ``elapsed_s``,
    optional ``options`` and ``read`` / ``write`` / ``trim``, each a :class:`DirectionSamples`:
    ``clat_ns``, optional ``slat_ns`` and ``bs``). For each job and direction: ``total_ios`` is
    the number of samples, ``io_bytes`` is ``total_ios * bs``, ``lat_ns = slat_ns + clat_ns`` per
    I/O, and ``slat_ns``, ``clat_ns``, ``lat_ns`` are :func:`latency_summary` objects with
    percentiles (and bins when ``json_plus``), as fio writes them with ``slat_percentiles=1,
    lat_percentiles=1``. Unlike fio, whose ``runtime`` is whole milliseconds, ``iops`` and
    ``bw_bytes`` use the exact ``elapsed_s``; ``runtime`` is it rounded to ms. ``timestamp``
    (Unix seconds) defaults to 0 so that output is deterministic. The result round-trips through
    ``json.dumps`` and :func:`read_fio_json`.
    """
    out_jobs = []
    for i, job in enumerate(jobs):
        where = f"jobs[{i}]"
        for key in ("jobname", "elapsed_s"):
            if key not in job:
                raise ConfigError(f"{where}: missing {key!r}")
        options = {str(k): str(v) for k, v in job.get("options", {}).items()}
        merged = {**{str(k): str(v) for k, v in (global_options or {}).items()}, **options}
        bs_text = merged.get("bs")
        default_bs = parse_size(bs_text.split(",")[0]) if bs_text else None
        elapsed_s = float(job["elapsed_s"])
        entry: dict[str, Any] = {
            "jobname": job["jobname"],
            "groupid": 0,
            "error": 0,
            "elapsed": int(np.ceil(elapsed_s)) if elapsed_s > 0 else 0,
            "job options": options,
        }
        given = {"read": job.get("read"), "write": job.get("write"), "trim": job.get("trim")}
        for d, samples in given.items():
            entry[d] = (
                _direction_json(
                    samples, elapsed_s, default_bs, json_plus, percentiles, f"{where}.{d}"
                )
                if samples is not None
                else _empty_direction()
            )
        entry["job_runtime"] = round(elapsed_s * 1000)
        out_jobs.append(entry)
    doc: dict[str, Any] = {
        "fio version": FIO_VERSION,
        "timestamp": int(timestamp),
        "timestamp_ms": int(timestamp) * 1000,
        "time": time.asctime(time.gmtime(int(timestamp))),
    }
    if global_options:
        doc["global options"] = {str(k): str(v) for k, v in global_options.items()}
    doc["jobs"] = out_jobs
    return doc
