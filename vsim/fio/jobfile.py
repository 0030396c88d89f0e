"""fio job files: sections, includes, ${VAR} expansion, fio's option names and units -> Workload."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from vsim.errors import ConfigError, FioFormatError
from vsim.scenario import RATE_PROCESSES, RW_MODES, Workload

__all__ = [
    "FIO_RW",
    "METADATA_OPTIONS",
    "MODELLED_OPTIONS",
    "JobFile",
    "JobSpec",
    "LatencyTarget",
    "Translation",
    "fio_arguments",
    "fio_time",
    "job_options",
    "parse_job_text",
    "read_job_file",
    "translate",
]

# fio's rw values (options.c, "rw" posval): vsim models those of RW_MODES, not the trims.
FIO_RW = (*RW_MODES, "trim", "randtrim", "trimwrite", "randtrimwrite")
_MIXES = ("rw", "readwrite", "randrw")

#: Options that set Workload fields, vsim's run length or the latency target (aliases included).
MODELLED_OPTIONS = (
    "rw",
    "readwrite",
    "rwmixread",
    "rwmixwrite",
    "bs",
    "blocksize",
    "bsrange",
    "blocksize_range",
    "bssplit",
    "size",
    "io_size",
    "io_limit",
    "number_ios",
    "loops",
    "runtime",
    "timeout",
    "ramp_time",
    "time_based",
    "iodepth",
    "numjobs",
    "iodepth_batch",
    "iodepth_batch_submit",
    "iodepth_batch_complete_min",
    "iodepth_batch_complete",
    "iodepth_batch_complete_max",
    "rate_iops",
    "rate_process",
    "thinktime",
    "thinktime_spin",
    "thinktime_blocks",
    "latency_target",
    "latency_window",
    "latency_percentile",
    "kb_base",
)

#: Options that only name, place, guard or report the I/O: kept as strings in ``metadata``.
METADATA_OPTIONS = (
    "name",
    "description",
    "filename",
    "directory",
    "filename_format",
    "ioengine",
    "direct",
    "buffered",
    "time_based",
    "kb_base",
    "unit_base",
    "group_reporting",
    "new_group",
    "stonewall",
    "wait_for_previous",
    "thread",
    "allow_file_create",
    "allow_mounted_write",
    "lat_percentiles",
    "clat_percentiles",
    "slat_percentiles",
    "percentile_list",
    "unified_rw_reporting",
    "write_lat_log",
    "write_bw_log",
    "write_iops_log",
    "write_hist_log",
    "log_avg_msec",
    "log_hist_msec",
    "per_job_logs",
)

# One slot per thing an option sets: an alias and its option (options.c .alias), and options
# that set the same variable (rwmixread/rwmixwrite: str_rwmix_*_cb; direct/buffered: odirect),
# share a slot, and the one applied last wins, as fio applies options in order.
_SLOT = {
    "readwrite": "rw",
    "blocksize": "bs",
    "blocksize_range": "bsrange",
    "timeout": "runtime",
    "io_limit": "io_size",
    "iodepth_batch_submit": "iodepth_batch",
    "iodepth_batch_complete": "iodepth_batch_complete_min",
    "wait_for_previous": "stonewall",
    "rwmixread": "rwmix",
    "rwmixwrite": "rwmix",
    "direct": "odirect",
    "buffered": "odirect",
}
_CONSUMED = {_SLOT.get(n, n) for n in MODELLED_OPTIONS} | {"odirect"}
# fio's FIO_OPT_STR_SET options among them: bare means on (parse.c: il = 1)
_FLAGS = {"group_reporting", "new_group", "stonewall", "thread"}
_METADATA = {_SLOT.get(n, n) for n in METADATA_OPTIONS} - _CONSUMED

# fio's reserved keywords (options.c fio_keywords): the host's values, unknown to a model.
_KEYWORDS = ("$pagesize", "$mb_memory", "$ncpus")
_ENV_RE = re.compile(r"\$\{([^}]*)\}")
_NUMBER_RE = re.compile(r"^([+-]?)(?:0x([0-9a-f]+)|(\d+))([a-z%]*)$", re.IGNORECASE)
_UNIT_RE = re.compile(r"^([kmgtp])(i?)(b?)$")
_POW = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_TIME_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)([a-z]*)$", re.IGNORECASE)
# parse.c get_mult_time: us/usec, ms/msec, s, m, h, d (microseconds per unit)
_TIME_UNITS = {
    "us": 1,
    "usec": 1,
    "ms": 1000,
    "msec": 1000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
}
_SECONDS_OPTIONS = ("runtime", "timeout", "ramp_time")  # fio's is_seconds: no unit = seconds
_MICROSECOND_OPTIONS = ("thinktime", "thinktime_spin", "latency_target", "latency_window")


# --------------------------------------------------------------------------- values


class _Unreadable(Exception):
    """A value that is not of the option's type (the caller names file, line and option)."""


def _split_values(text: str) -> list[str]:
    """The values of a list option as fio's handle_option (parse.c) splits them: at the first
    ``,``, else the first ``:``, else the first ``-`` that is not a leading minus, again on
    the rest. An empty piece ("" of ``,8k``) sets nothing."""
    pieces = []
    rest = text
    while True:
        cut = rest.find(",")
        if cut < 0:
            cut = rest.find(":")
        if cut < 0:
            cut = rest.find("-", 1)
        if cut < 0:
            pieces.append(rest.strip())
            return pieces
        pieces.append(rest[:cut].strip())
        rest = rest[cut + 1 :]


def _multiplier(suffix: str, kb_base: int) -> int | None:
    """Bytes per unit of a size suffix, as parse.c __get_mult_bytes reads it: with the default
    kb_base=1024, k/kb/ki mean 1024 and kib means 1000 (fio's "compatibility" inversion; with
    kb_base=1000 the other way round); None for a suffix fio does not know (fio itself reads
    those as 1: vsim refuses them)."""
    s = suffix.lower()
    if s in ("", "b"):
        return 1
    m = _UNIT_RE.match(s)
    if m is None:
        return None
    base = kb_base
    if m.group(2) and m.group(3):  # "kib": the other base
        base = 1000 if kb_base == 1024 else 1024
    return int(base ** _POW[m.group(1)])


def _number(text: str, kb_base: int) -> int:
    """An integer with fio's optional size suffix (parse.c str_to_decimal with kilo): ``4k``,
    ``0x1000``, ``-1``."""
    m = _NUMBER_RE.match(text.strip())
    if m is None:
        raise _Unreadable
    sign, hexa, dec, suffix = m.groups()
    value = int(hexa, 16) if hexa is not None else int(dec)
    if hexa is not None and suffix:  # fio ignores a suffix after hex digits: refuse it
        raise _Unreadable
    mult = _multiplier(suffix, kb_base)
    if mult is None:
        raise _Unreadable
    return -value * mult if sign == "-" else value * mult


def _time(text: str, default_unit: str, unit: str) -> float:
    """A time as parse.c str_to_decimal/get_mult_time read it, in ``unit`` (s or us): a number
    and an optional unit (us, usec, ms, msec, s, m, h, d; case-insensitive), ``default_unit``
    without one (exact decimal arithmetic: ``1500ms`` is 1.5 s). fio reads digits only
    (``1.5s`` is 1 s to it); vsim keeps the fraction, as its own JSON writes fractional
    runtimes. A unit fio does not match (``sec``, ``min``: fio reads them as microseconds)
    is refused."""
    m = _TIME_RE.match(text.strip())
    if m is None:
        raise _Unreadable
    given = m.group(2).lower() or default_unit
    if given not in _TIME_UNITS:
        raise _Unreadable
    return float(Decimal(m.group(1)) * _TIME_UNITS[given] / _TIME_UNITS[unit])


def _boolean(text: str) -> bool:
    """fio's bool (parse.c check_int: ``%u``, or ``%x`` with 0x): a whole number, nonzero on."""
    t = text.strip()
    if re.fullmatch(r"\d+", t):
        return int(t) != 0
    if re.fullmatch(r"0x[0-9a-f]+", t, re.IGNORECASE):
        return int(t, 16) != 0
    raise _Unreadable


def fio_time(seconds: float) -> str:
    """A time in seconds written so that fio reads it exactly (it reads whole numbers only):
    ``2``, ``300ms``, ``1500us`` (rounded to fio's microsecond)."""
    us = round(seconds * 1e6)
    if us % 1_000_000 == 0:
        return str(us // 1_000_000)
    if us % 1000 == 0:
        return f"{us // 1000}ms"
    return f"{us}us"


# --------------------------------------------------------------------------- translation


@dataclass(frozen=True)
class LatencyTarget:
    """fio's latency_target profile (backend.c/io_u.c lat_target_*): find the highest queue
    depth up to iodepth at which ``percentile`` % of I/Os complete within ``target_us``,
    judged over windows of ``window_us``."""

    target_us: float
    window_us: float = 0.0
    percentile: float = 100.0  # fio's default latency_percentile


@dataclass(frozen=True)
class Translation:
    """What vsim makes of a set of fio options (see :func:`translate`).

    fields: Workload keyword arguments. given: those the options set themselves (before
    fio's defaults and its run-length rule). ignored: options vsim does not model, in order,
    once each. metadata: naming/engine/reporting options as strings (``direct`` and
    ``time_based`` as their effective 0/1). latency_target: fio's latency_target profile or
    None. problems: per Workload field, why vsim cannot model the job (one line each, with the
    option's location): :meth:`workload` raises the first. sources: per field, the location and
    option that gave it (for error messages). io_bytes_limit: the bytes a job does before fio
    stops it when it is not time_based (loops x io_size or size), None when unknown.
    """

    fields: dict[str, Any]
    given: dict[str, Any]
    ignored: tuple[str, ...]
    metadata: dict[str, str]
    latency_target: LatencyTarget | None
    problems: dict[str, str]
    sources: dict[str, str]
    where: str
    io_bytes_limit: int | None

    def check(self, overridden: Mapping[str, Any] | None = None) -> None:
        """Raise ConfigError for the first thing vsim cannot model (fields in ``overridden``
        excepted)."""
        for name, message in self.problems.items():
            if name not in (overridden or {}):
                raise ConfigError(message)

    def workload(self, **overrides: Any) -> Workload:
        """The Workload of these options, fields overridden; a value vsim rejects is one
        ConfigError line naming the option's location (``rw.fio:5: iodepth=-1: ...``)."""
        self.check(overrides)
        fields = {**self.fields, **overrides}
        try:
            return Workload(**fields)
        except ConfigError as exc:
            raise self._located(fields, overrides, exc) from None

    def _located(
        self, fields: Mapping[str, Any], overrides: Mapping[str, Any], exc: ConfigError
    ) -> ConfigError:
        """The error of the first field that makes the workload invalid (fields in order),
        named by the option that gave it."""
        so_far: dict[str, Any] = {}
        for name, value in fields.items():
            so_far[name] = value
            try:
                Workload(**so_far)
            except ConfigError as first:
                origin = self.where if name in overrides else self.sources.get(name, self.where)
                return ConfigError(f"{origin}: {first}")
        return ConfigError(f"{self.where}: {exc}")


class _Reader:
    """One translation: the options by slot (last applied wins), where each came from."""

    def __init__(self, options: Mapping[str, str], where: str, locations: Mapping[str, str]):
        self.where = where
        self.locations = locations
        self.slots: dict[str, tuple[str, str]] = {}
        for name, value in options.items():
            slot = _SLOT.get(name, name)
            self.slots.pop(slot, None)
            self.slots[slot] = (name, str(value))
        self.order = {slot: i for i, slot in enumerate(self.slots)}
        self.kb_base = 1024
        self.fields: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        self.problems: dict[str, str] = {}
        self.metadata: dict[str, str] = {}
        self.ignored: list[tuple[int, str]] = []

    def has(self, slot: str) -> bool:
        return slot in self.slots

    def origin(self, slot: str) -> str:
        """``file:line: name=value`` of the option in ``slot``."""
        name, value = self.slots[slot]
        return f"{self.locations.get(name, self.where)}: {name}={value}"

    def unreadable(self, slot: str, what: str) -> FioFormatError:
        name, value = self.slots[slot]
        return FioFormatError(
            f"{self.locations.get(name, self.where)}: cannot read {name}={value!r} as {what}"
        )

    def value(self, slot: str) -> str:
        """The option's text (an empty value, or a bare option that needs one: an error)."""
        name, value = self.slots[slot]
        if value.strip() == "":
            raise FioFormatError(f"{self.locations.get(name, self.where)}: {name} needs a value")
        return value.strip()

    def single(self, slot: str, what: str) -> str:
        text = self.value(slot)
        if len(_split_values(text)) > 1:
            raise self.unreadable(slot, f"{what} (one value expected)")
        return text

    def integer(self, slot: str) -> int:
        """fio's int (kilo suffixes allowed: ``iodepth=1k`` is 1024, as parse.c reads it)."""
        try:
            return _number(self.single(slot, "an integer"), self.kb_base)
        except _Unreadable:
            raise self.unreadable(slot, "an integer") from None

    def time(self, slot: str, default_unit: str, unit: str) -> float:
        """A time in ``unit`` (s or us), ``default_unit`` when the value has none."""
        try:
            return _time(self.single(slot, "a time"), default_unit, unit)
        except _Unreadable:
            raise self.unreadable(slot, "a time (fio's units: us, ms, s, m, h, d)") from None

    def size(self, slot: str) -> int | str:
        """Bytes, or the text of a ``NN%`` or ``NNz`` (zones) size, which vsim cannot resolve."""
        text = self.value(slot)
        if re.fullmatch(r"\d+[%zZ]", text):
            return text
        try:
            if len(_split_values(text)) > 1:
                raise _Unreadable
            return _number(text, self.kb_base)
        except _Unreadable:
            raise self.bad_size(slot, "512, 4k, 1m, 2g, 10%") from None

    def bad_size(self, slot: str, examples: str) -> FioFormatError:
        name, value = self.slots[slot]
        return FioFormatError(
            f"{self.locations.get(name, self.where)}: cannot read size {name}={value!r} "
            f"(fio's: {examples})"
        )

    def flag(self, slot: str) -> bool:
        """fio's bool, or a bare FIO_OPT_STR_SET option (``time_based``: on)."""
        value = self.slots[slot][1]
        if value.strip() == "":
            return True
        try:
            return _boolean(value)
        except _Unreadable:
            raise self.unreadable(slot, "0 or 1") from None

    def per_direction(
        self, slot: str, parse: Callable[[str], int], default: int, what: str | None
    ) -> tuple[list[int], list[bool]]:
        """(read, write, trim) values of a list option and which were given, filled as fio's
        __handle_option does: the last value given also sets the directions after it
        (``4k`` all three, ``4k,8k`` read 4k and write and trim 8k, ``,8k`` write and trim)."""
        pieces = _split_values(self.value(slot))
        if len(pieces) > 3:
            raise self.unreadable(slot, "at most 3 values (reads, writes, trims)")
        values, given = [default] * 3, [False] * 3
        for i, piece in enumerate(pieces):
            if piece == "":
                continue
            try:
                v = parse(piece)
            except _Unreadable:
                if what is None:  # sizes
                    raise self.bad_size(slot, "4k, 4k,8k") from None
                raise self.unreadable(slot, what) from None
            last = i == len(pieces) - 1
            for d in range(i, 3 if last else i + 1):
                values[d], given[d] = v, True
        return values, given

    def put(self, field: str, value: Any, slot: str) -> None:
        self.fields[field] = value
        self.sources[field] = self.origin(slot)

    def ignore(self, slot: str, text: str | None = None) -> None:
        name = self.slots[slot][0]
        self.ignored.append((self.order[slot], text or name))


def _read_units(r: _Reader) -> None:
    """kb_base first, as fio's sort_options puts it (options.c: .prio = 1)."""
    if r.has("kb_base"):
        text = r.value("kb_base")
        if text not in ("1024", "1000"):
            raise r.unreadable("kb_base", "1024 or 1000")
        r.kb_base = int(text)
        r.metadata["kb_base"] = text


def _read_rw(r: _Reader) -> tuple[bool, bool]:
    """rw (fio's default: read) and rwmixread/rwmixwrite; (reads issued, writes issued).

    A ``:N`` suffix (options.c str_rw_cb: an offset gap for sequential jobs, a new random
    offset every N I/Os for random ones) is not modelled: it is reported in ``ignored``."""
    rw = "read"
    if r.has("rw"):
        text = r.value("rw")
        rw, _, suffix = text.partition(":")
        if rw not in FIO_RW:
            raise r.unreadable("rw", f"an rw mode ({', '.join(FIO_RW)})")
        if suffix:
            try:
                _number(suffix, r.kb_base)
            except _Unreadable:
                raise r.unreadable("rw", "an rw mode with a :N suffix") from None
            r.ignore("rw", f"{r.slots['rw'][0]}:{suffix}")
        r.put("rw", rw, "rw")
        if rw not in RW_MODES:
            r.problems["rw"] = f"{r.origin('rw')}: vsim models reads and writes, not trims"
    if r.has("rwmix"):
        v = r.integer("rwmix")
        is_read = r.slots["rwmix"][0] == "rwmixread"
        r.put("rwmixread", v if is_read else 100 - v, "rwmix")
    if rw in ("read", "randread"):
        return True, False
    if rw in ("write", "randwrite", "trimwrite", "randtrimwrite"):
        return False, True
    if rw in _MIXES:
        mix = r.fields.get("rwmixread", 50)
        return mix > 0, mix < 100
    return False, False


def _split_sizes(part: str, kb_base: int) -> set[int]:
    """The block sizes of one direction's bssplit list (``4k/10:64k/50:32k/``; options.c
    bssplit_ddir): those with a share above 0."""
    out = set()
    for entry in part.split(":"):
        bs, _, pct = entry.strip().partition("/")
        if pct.strip() != "0":
            out.add(_number(bs, kb_base))
    return out


def _block_sizes(r: _Reader) -> tuple[list[set[int]], list[bool], str | None]:
    """Per direction, the block sizes it may issue; which were set; the slot that set them
    (bssplit over bsrange over bs, as fio's fixup_options fills min_bs/max_bs from bs only
    when neither set them)."""
    sizes: list[set[int]] = [{4096}, {4096}, {4096}]
    given = [False] * 3
    slot = None

    def size(piece: str) -> int:
        return _number(piece, r.kb_base)

    if r.has("bs"):
        values, given = r.per_direction("bs", size, 4096, None)
        sizes, slot = [{v} for v in values], "bs"
    if r.has("bsrange"):
        pieces = [p.strip() for p in r.value("bsrange").split(",")]
        if len(pieces) > 3:
            raise r.unreadable("bsrange", "at most 3 ranges")
        for i, piece in enumerate(pieces):
            if piece:
                lo, sep, hi = piece.replace(":", "-").partition("-")
                try:
                    pair = {size(lo), size(hi)} if sep else {size(lo)}
                except _Unreadable:
                    raise r.unreadable("bsrange", "size ranges (4k-16k)") from None
                for d in range(i, 3 if i == len(pieces) - 1 else i + 1):
                    sizes[d], given[d] = pair, True
        slot = "bsrange"
    if r.has("bssplit"):
        # options.c str_split_parse: one list for all, or read,write[,trim]
        parts = [p.strip() for p in r.value("bssplit").split(",")]
        if len(parts) > 3:
            raise r.unreadable("bssplit", "at most 3 lists (reads, writes, trims)")
        parts += [parts[-1]] * (3 - len(parts))
        for d, part in enumerate(parts):
            if part:
                try:
                    sizes[d] = _split_sizes(part, r.kb_base)
                except _Unreadable:
                    raise r.unreadable("bssplit", "block size splits (4k/50:8k/50)") from None
                given[d] = True
        slot = "bssplit"
    return sizes, given, slot


def _read_bs(r: _Reader, issued: tuple[bool, bool]) -> None:
    """One block size for the directions the job issues; a job whose directions differ, or
    that issues several sizes (bsrange, bssplit), is a problem: vsim models one bs."""
    sizes, given, slot = _block_sizes(r)
    if slot is None:
        return
    dirs = [d for d in (0, 1) if issued[d]] or [0]
    union = set().union(*(sizes[d] for d in dirs))
    explicit = [min(sizes[d]) for d in dirs if given[d]]
    r.put("bs", min(union) if len(union) == 1 else (explicit or [min(union)])[0], slot)
    if len(union) > 1:
        ordered = sorted(union)
        what = ", ".join(map(str, ordered))
        if len(ordered) > 3:
            what = f"{len(ordered)} sizes, {ordered[0]}..{ordered[-1]}"
        r.problems["bs"] = f"{r.origin(slot)}: vsim models one block size, this job issues {what}"


def _read_depths(r: _Reader, whole: bool) -> None:
    for slot, field in (
        ("iodepth", "iodepth"),
        ("numjobs", "numjobs"),
        ("iodepth_batch", "iodepth_batch_submit"),
        ("iodepth_batch_complete_min", "iodepth_batch_complete_min"),
        ("iodepth_batch_complete_max", "iodepth_batch_complete_max"),
        ("thinktime_blocks", "thinktime_blocks"),
    ):
        if r.has(slot):
            r.put(field, r.integer(slot), slot)
    # init.c fixup_options: "If max batch complete number isn't set or set incorrectly,
    # default to the same as iodepth_batch_complete_min"
    hi = r.fields.get("iodepth_batch_complete_max")
    lo = r.fields.get("iodepth_batch_complete_min", 1)
    if whole and hi is not None and lo > hi:
        r.fields["iodepth_batch_complete_max"] = lo


def _read_rate(r: _Reader) -> None:
    """rate_iops per direction (reads, writes); a trim rate changes nothing vsim runs."""
    if r.has("rate_iops"):
        values, _ = r.per_direction(
            "rate_iops", lambda p: _number(p, r.kb_base), 0, "I/Os per second (500, 500,200)"
        )
        r.put("rate_iops", (values[0], values[1]), "rate_iops")
    if r.has("rate_process"):
        text = r.value("rate_process")
        if text not in RATE_PROCESSES:
            raise r.unreadable("rate_process", " or ".join(RATE_PROCESSES))
        r.put("rate_process", text, "rate_process")


def _read_think(r: _Reader, whole: bool) -> None:
    """thinktime and thinktime_spin in microseconds (no unit: us); fio caps the spin at the
    think time (init.c fixup_options: "thinktime_spin must be less than thinktime")."""
    for slot in ("thinktime", "thinktime_spin"):
        if r.has(slot):
            r.put(slot, r.time(slot, "us", "us"), slot)
    spin = r.fields.get("thinktime_spin")
    if whole and spin is not None and spin > r.fields.get("thinktime", 0.0):
        r.fields["thinktime_spin"] = r.fields.get("thinktime", 0.0)


def _read_latency(r: _Reader) -> LatencyTarget | None:
    """latency_target/latency_window (us without a unit) and latency_percentile (default 100;
    options.c: a float within 0..100); without latency_target the others do nothing."""
    if not r.has("latency_target"):
        for slot in ("latency_window", "latency_percentile"):
            if r.has(slot):
                r.ignore(slot)
        return None
    target = r.time("latency_target", "us", "us")
    window = r.time("latency_window", "us", "us") if r.has("latency_window") else 0.0
    pct = 100.0
    if r.has("latency_percentile"):
        try:
            pct = float(r.value("latency_percentile"))
        except ValueError:
            raise r.unreadable("latency_percentile", "a percentage") from None
        if not 0.0 <= pct <= 100.0:
            raise r.unreadable("latency_percentile", "a percentage within 0..100")
    return LatencyTarget(target_us=target, window_us=window, percentile=pct)


def _read_times(r: _Reader) -> bool:
    """runtime (0: unlimited), ramp_time (seconds without a unit) and time_based, which fio
    drops without a runtime (init.c fixup_options: "time_based requires a runtime")."""
    runtime = r.time("runtime", "s", "s") if r.has("runtime") else 0.0
    if runtime > 0:
        r.put("runtime", runtime, "runtime")
    if r.has("ramp_time"):
        r.put("ramp_time", r.time("ramp_time", "s", "s"), "ramp_time")
    time_based = r.flag("time_based") if r.has("time_based") else False
    if r.has("time_based"):
        r.metadata["time_based"] = "1" if time_based and runtime > 0 else "0"
    return time_based and runtime > 0


def _read_sizes(r: _Reader) -> tuple[tuple[int, str] | None, int]:
    """size (the region: Workload.size), io_size/io_limit, number_ios and loops: (the bytes a
    pass does and the option that says so, or None; loops, 0 meaning 1 as init.c's
    td->loops). A ``NN%`` or zone size is kept in metadata only."""
    limit: tuple[int, str] | None = None
    for slot in ("size", "io_size"):
        if r.has(slot):
            v = r.size(slot)
            if isinstance(v, str):
                r.metadata[slot] = v
                continue
            if slot == "size":
                r.put("size", v, slot)
            limit = (v, slot)
    number = r.integer("number_ios") if r.has("number_ios") else 0
    if number:
        r.put("number_ios", number, "number_ios")
    loops = r.integer("loops") if r.has("loops") else 1
    return limit, max(loops, 1)


def _derive_run_length(
    r: _Reader, limit: tuple[int, str] | None, loops: int, time_based: bool
) -> None:
    """fio's run length as number_ios per job: backend.c io_bytes_exceeded and keep_running
    stop a job after loops x io_size (default size) bytes unless it is time_based, and after
    loops x number_ios I/Os (exceeds_number_ios) either way: whichever comes first."""
    runs: list[tuple[int, str]] = []
    if "number_ios" in r.fields:
        runs.append((r.fields["number_ios"] * loops, "number_ios"))
    bs = r.fields["bs"]
    if limit is not None and not time_based and isinstance(bs, int) and bs > 0:
        runs.append((loops * limit[0] // bs, limit[1]))
    if runs:
        n, slot = min(runs)
        r.put("number_ios", n, slot)


def _read_rest(r: _Reader) -> None:
    """direct/buffered as the effective O_DIRECT (buffered negates direct: options.c .neg),
    the other naming options as strings, and every other option as ignored."""
    if r.has("odirect"):
        on = r.flag("odirect")
        r.metadata["direct"] = "1" if on == (r.slots["odirect"][0] == "direct") else "0"
    for slot, (name, value) in r.slots.items():
        if slot in _METADATA:
            r.metadata[name] = "1" if value == "" and slot in _FLAGS else value
        elif slot not in _CONSUMED:
            r.ignore(slot)


def translate(
    options: Mapping[str, str],
    where: str,
    *,
    locations: Mapping[str, str] | None = None,
    run_length: bool = True,
) -> Translation:
    """fio's options (name -> value, in the order fio applies them) as vsim's Workload: the one
    translator, for job files (:class:`JobSpec`), fio's JSON ``job options``
    (:func:`vsim.fio.read_fio_json`) and the command line.

    ``where`` names the options in errors (``jobs[0]``, ``the command line``); ``locations``
    gives an option's own (``rw.fio:7``). An unreadable value raises FioFormatError at once,
    one line naming location and option (``rw.fio:7: cannot read size bs='4q' ...``); a value
    vsim cannot model is recorded in ``problems`` and raised, as ConfigError, by
    :meth:`Translation.workload`. ``run_length=False`` translates a partial set (flags laid
    over a job file): no fio defaults, fix-ups or run-length rule, only what the options say.

    Modelled (Workload fields; units and defaults as fio's options.c and parse.c):
      rw/readwrite (default read; ``:N`` suffix ignored; trims: a problem), rwmixread/
      rwmixwrite (the one given last wins), bs/blocksize (per direction, ``4k,8k``: the
      directions the job issues must agree), bsrange/blocksize_range and bssplit (only when
      they come down to one size: ``bsrange=4k-4k``), size (bytes; ``NN%`` or zones: metadata
      only), io_size/io_limit, number_ios, loops, runtime/timeout and ramp_time (seconds
      without a unit), time_based, iodepth, numjobs, iodepth_batch/iodepth_batch_submit,
      iodepth_batch_complete_min/iodepth_batch_complete, iodepth_batch_complete_max (fio's
      fix-up: at least the min), rate_iops (``500``, ``500,200``, ``,200``: reads, writes;
      0 no limit), rate_process, thinktime and thinktime_spin (microseconds without a unit;
      the spin capped at thinktime as fio does), thinktime_blocks, latency_target/
      latency_window (us) and latency_percentile (default 100) -> ``latency_target``, kb_base.
    Run length, as fio: a job stops after ``runtime`` seconds (after ramp_time); unless
      time_based it also stops after loops x io_size (default size) bytes, so ``number_ios``
      is ``loops * io_size // bs`` per job, or loops x the number_ios option when that is
      smaller (fio checks number_ios even when time_based). Without size or io_size (fio
      would use the file's size) nothing is derived.
    Metadata (strings, no effect on the model): name, description, filename, directory,
      filename_format, ioengine, direct/buffered (as ``direct`` 0/1), time_based (effective
      0/1), kb_base, unit_base, group_reporting, new_group, stonewall/wait_for_previous,
      thread, allow_file_create, allow_mounted_write, the latency percentile and
      log options (lat_percentiles, percentile_list, write_lat_log, log_avg_msec, ...).
    Ignored (reported in ``ignored``, in option order, once each): every other option, e.g.
      rate, io_submit_mode, iodepth_low, offset, norandommap, random_distribution, verify,
      zonemode, gtod_reduce, thinktime_blocks_type, and latency_window/latency_percentile
      without latency_target.
    Where fio differs: decimals are kept (fio reads ``1.5s`` as 1 s), unknown units and size
    suffixes are refused (fio reads ``4q`` as 4 bytes and ``10sec`` as 10 us), an option that
    takes one value refuses a list (fio would use its first), and kb_base applies to every
    size of the merged options (fio parses a [global] section's sizes with its own kb_base).
    """
    r = _Reader(options, where, locations or {})
    _read_units(r)
    issued = _read_rw(r)
    _read_bs(r, issued)
    _read_depths(r, run_length)
    _read_rate(r)
    _read_think(r, run_length)
    latency = _read_latency(r)
    time_based = _read_times(r)
    limit, loops = _read_sizes(r)
    given = dict(r.fields)
    if run_length:  # a whole job: fio's defaults (options.c .def) and its run length
        r.fields.setdefault("rw", "read")
        r.fields.setdefault("bs", 4096)
        _derive_run_length(r, limit, loops, time_based)
    _read_rest(r)
    seen: set[str] = set()
    ignored = []
    for _, name in sorted(r.ignored):
        if name not in seen:
            seen.add(name)
            ignored.append(name)
    return Translation(
        fields=_ordered(r.fields),
        given=given,
        ignored=tuple(ignored),
        metadata=r.metadata,
        latency_target=latency,
        problems=r.problems,
        sources=r.sources,
        where=where,
        io_bytes_limit=loops * limit[0] if limit is not None else None,
    )


# The order Translation.workload checks fields in when it names the one at fault: a field
# that is only valid with another (size >= bs, thinktime_spin <= thinktime) comes after it.
_FIELD_ORDER = (
    "rw",
    "bs",
    "size",
    "iodepth",
    "numjobs",
    "rwmixread",
    "iodepth_batch_submit",
    "iodepth_batch_complete_min",
    "iodepth_batch_complete_max",
    "rate_iops",
    "rate_process",
    "thinktime",
    "thinktime_spin",
    "thinktime_blocks",
    "ramp_time",
    "runtime",
    "number_ios",
)


def _ordered(fields: Mapping[str, Any]) -> dict[str, Any]:
    rank = {name: i for i, name in enumerate(_FIELD_ORDER)}
    return dict(sorted(fields.items(), key=lambda kv: rank.get(kv[0], len(rank))))


# --------------------------------------------------------------------------- the inverse


def job_options(
    w: Workload,
    *,
    ioengine: str | None = None,
    direct: bool | None = None,
    time_based: bool = False,
) -> dict[str, object]:
    """fio's options for a Workload (the inverse of :func:`translate`): rw, bs, iodepth,
    numjobs, [ioengine, direct,] size, then rwmixread for mixes, and iodepth_batch_submit,
    number_ios, runtime, ramp_time and the newer fields (iodepth_batch_complete_min/max,
    rate_iops as ``reads,writes``, rate_process, thinktime, thinktime_spin, thinktime_blocks)
    only when they differ from their defaults. Values are numbers (seconds, us, bytes), as
    vsim's JSON writes them; :func:`fio_arguments` writes them for fio itself.
    ``time_based`` adds ``time_based=1`` (a run that only ``runtime`` limits)."""
    opts: dict[str, object] = {"rw": w.rw, "bs": w.bs, "iodepth": w.iodepth, "numjobs": w.numjobs}
    if ioengine is not None:
        opts["ioengine"] = ioengine
    if direct is not None:
        opts["direct"] = int(direct)
    opts["size"] = w.size
    if w.rw in _MIXES:
        opts["rwmixread"] = w.rwmixread
    if w.iodepth_batch_submit != 1:
        opts["iodepth_batch_submit"] = w.iodepth_batch_submit
    if w.number_ios is not None:
        opts["number_ios"] = w.number_ios
    if w.runtime is not None:
        opts["runtime"] = w.runtime
    if time_based:
        opts["time_based"] = 1
    if w.ramp_time:
        opts["ramp_time"] = w.ramp_time
    newer: tuple[tuple[str, object, object], ...] = (
        ("iodepth_batch_complete_min", w.iodepth_batch_complete_min, 1),
        ("iodepth_batch_complete_max", w.iodepth_batch_complete_max, 0),
        ("rate_iops", w.rate_iops, (0, 0)),
        ("rate_process", w.rate_process, "linear"),
        ("thinktime", w.thinktime, 0.0),
        ("thinktime_spin", w.thinktime_spin, 0.0),
        ("thinktime_blocks", w.thinktime_blocks, 1),
    )
    for name, value, default in newer:
        if value != default:
            opts[name] = f"{w.rate_iops[0]},{w.rate_iops[1]}" if name == "rate_iops" else value
    return opts


def _fio_value(name: str, value: object) -> str:
    """One option's value as fio reads it exactly: times in its whole units."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float) and name in _SECONDS_OPTIONS:
        return fio_time(float(value))
    if isinstance(value, int | float) and name in _MICROSECOND_OPTIONS:
        return str(round(value))  # fio's unit without a suffix, whole microseconds
    return str(value)


def fio_arguments(options: Mapping[str, object]) -> list[str]:
    """fio command-line arguments (``--name=value``; ``--name`` for an empty value) for
    options such as :func:`job_options` gives, with times written as fio reads them
    (``--runtime=300ms``: fio would read ``0.3`` as 0)."""
    out = []
    for name, value in options.items():
        text = _fio_value(name, value)
        out.append(f"--{name}={text}" if text != "" else f"--{name}")
    return out


# --------------------------------------------------------------------------- job files


@dataclass(frozen=True)
class JobSpec:
    """One job of a job file: its section name, the options in effect (the [global] sections
    above it, then its own, in the order fio applies them), where each was set, and their
    translation (computed when the file is read: an unreadable value fails the file)."""

    name: str
    options: dict[str, str]
    file: str
    line: int  # the line of its [section] header
    locations: dict[str, str]  # option -> "file:line" that set it (an include's own line)
    translation: Translation

    @property
    def where(self) -> str:
        """``file:line`` of the job's section header."""
        return f"{self.file}:{self.line}"

    def workload(self, **overrides: Any) -> Workload:
        """The job's Workload (see :func:`translate`), fields overridden."""
        return self.translation.workload(**overrides)


@dataclass(frozen=True)
class JobFile:
    """A parsed fio job file: its jobs in file order."""

    name: str
    jobs: tuple[JobSpec, ...]

    @property
    def sections(self) -> tuple[str, ...]:
        """The jobs' section names, in file order."""
        return tuple(j.name for j in self.jobs)

    def job(self, section: str | None = None) -> JobSpec:
        """The job of ``section``, or the only one (ConfigError naming the choices)."""
        names = ", ".join(self.sections)
        if section is None:
            if len(self.jobs) == 1:
                return self.jobs[0]
            if not self.jobs:
                raise ConfigError(f"{self.name} has no job (only [global] sections)")
            raise ConfigError(f"{self.name} has jobs {names}: give --section NAME")
        found = [j for j in self.jobs if j.name == section]
        if len(found) != 1:
            what = "no job" if not found else f"{len(found)} jobs"
            raise ConfigError(f"{self.name} has {what} [{section}] (jobs: {names or 'none'})")
        return found[0]


@dataclass(frozen=True)
class _Line:
    """One meaningful line: a section header (``section`` set) or an option."""

    file: str
    number: int
    section: str | None = None
    name: str = ""
    value: str = ""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.number}"


def _strip(raw: str) -> str:
    """A line as fio's parser sees it (init.c __parse_jobs_ini, parse.c strip_blank_end): a
    line starting with ``;`` or ``#`` is a comment, and either character ends any line."""
    text = raw.strip()
    if text[:1] in (";", "#"):
        return ""
    for mark in (";", "#"):
        text = text.split(mark, 1)[0]
    return text.strip()


def _expand(text: str, where: str, env: Mapping[str, str]) -> str:
    """``${VAR}`` from the environment (options.c fio_option_dup_subs, on the whole option
    line). fio substitutes an empty string for an unset variable: vsim refuses it. fio's
    keywords ($pagesize, $mb_memory, $ncpus) are the host's: vsim refuses them too."""

    def sub(m: re.Match[str]) -> str:
        var = m.group(1)
        if var not in env:
            raise FioFormatError(f"{where}: ${{{var}}} is not set (fio would use '')")
        return env[var]

    out = _ENV_RE.sub(sub, text)
    for kw in _KEYWORDS:
        if kw in out:
            raise FioFormatError(f"{where}: {out}: fio's {kw} is the host's; give a number")
    return out


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FioFormatError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise FioFormatError(f"cannot read {what} {path}: not UTF-8 text") from None


def _lines(
    text: str,
    file: str,
    base_dir: Path,
    env: Mapping[str, str],
    stack: tuple[Path, ...],
    nested: bool,
) -> Iterator[_Line]:
    """The file's sections and options, includes expanded in place (init.c: ``include FILE``,
    relative to the including file's directory; included files may not hold sections; fio
    first tries the name as given from its working directory, vsim does not depend on one).
    ``stack``: the files being read, for include cycles."""
    for number, raw in enumerate(text.splitlines(), 1):
        p = _strip(raw)
        if not p:
            continue
        where = f"{file}:{number}"
        if p.startswith("["):
            if not p.endswith("]") or len(p) < 3:
                raise FioFormatError(f"{where}: cannot read section header {p!r} (expect [NAME])")
            if nested:
                raise FioFormatError(f"{where}: {p}: included files may not hold sections")
            yield _Line(file, number, section=p[1:-1])
            continue
        m = re.fullmatch(r"include\s+(.+)", p)
        if m:
            yield from _include(m.group(1).strip(), where, base_dir, env, stack)
            continue
        name, eq, value = _expand(p, where, env).partition("=")
        if not name.strip():
            raise FioFormatError(f"{where}: cannot read {p!r}: no option name before '='")
        yield _Line(file, number, name=name.strip(), value=value.strip() if eq else "")


def _include(
    name: str, where: str, base_dir: Path, env: Mapping[str, str], stack: tuple[Path, ...]
) -> Iterator[_Line]:
    path = Path(name) if Path(name).is_absolute() else base_dir / name
    key = path.resolve()
    if key in stack:
        chain = " -> ".join(p.name for p in (*stack[stack.index(key) :], key))
        raise FioFormatError(f"{where}: include {name}: include cycle ({chain})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise FioFormatError(f"{where}: include {name}: cannot read {path}: {reason}") from None
    yield from _lines(text, str(path), path.parent, env, (*stack, key), nested=True)


def _apply(options: dict[str, str], locations: dict[str, str], line: _Line) -> None:
    """Set an option last (fio applies them in order: the later one wins)."""
    options.pop(line.name, None)
    options[line.name] = line.value
    locations[line.name] = line.where


def parse_job_text(
    text: str,
    *,
    name: str = "<string>",
    base_dir: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> JobFile:
    """A job file's text as fio reads it (init.c __parse_jobs_ini): ``[name]`` sections, a
    section whose name starts with ``global`` sets defaults for the jobs after it (several
    may; a job's own options override them), ``;``/``#`` comments, bare options
    (``time_based``: value ``""``), ``include FILE`` (relative to ``base_dir``, default the
    working directory), ``${VAR}`` from ``env`` (default os.environ). ``name`` names the
    text in errors (``rw.fio:7: ...``)."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return _parse(text, name, base, os.environ if env is None else env, ())


def read_job_file(path: str | Path, *, env: Mapping[str, str] | None = None) -> JobFile:
    """Read a fio job file (see :func:`parse_job_text`); errors name ``path:line``."""
    p = Path(path)
    text = _read_text(p, "job file")
    return _parse(text, str(path), p.parent, os.environ if env is None else env, (p.resolve(),))


def _parse(
    text: str, name: str, base: Path, env: Mapping[str, str], stack: tuple[Path, ...]
) -> JobFile:
    glob: dict[str, str] = {}
    glob_at: dict[str, str] = {}
    sections: list[tuple[_Line, dict[str, str], dict[str, str]]] = []
    current: tuple[dict[str, str], dict[str, str]] | None = None
    for line in _lines(text, name, base, env, stack, nested=False):
        if line.section is not None:
            if line.section.startswith("global"):  # init.c: strncmp(name, "global", 6)
                current = (glob, glob_at)
            else:  # a job starts from the global options so far (init.c get_new_job)
                current = (dict(glob), dict(glob_at))
                sections.append((line, *current))
            continue
        if current is None:
            raise FioFormatError(
                f"{line.where}: option {line.name!r} outside of a [section] (fio: outside of "
                "[] job section)"
            )
        _apply(*current, line)
    if glob:
        translate(glob, name, locations=glob_at, run_length=False)  # unreadable values fail
    jobs = tuple(
        JobSpec(
            name=str(head.section),
            options=opts,
            file=name,
            line=head.number,
            locations=locs,
            translation=translate(opts, head.where, locations=locs),
        )
        for head, opts, locs in sections
    )
    return JobFile(name=name, jobs=jobs)
