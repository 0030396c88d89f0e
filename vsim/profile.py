"""Profiles: every calibrated number of a machine, with its provenance, loaded by name or path."""

from __future__ import annotations

import itertools
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from vsim.errors import ConfigError, ProfileError
from vsim.models.disk import DiskSpec, parse_disk
from vsim.models.dists import PROVENANCE_KEYS, Dist, check_keys
from vsim.models.params import dist, record_provenance, scalar
from vsim.models.placement import Placement, parse_pattern
from vsim.models.syscalls import (
    COST_DOCS,
    ENGINE_OPS,
    GUEST_OPS,
    HOST_OPS,
    OPTIONAL_HOST_OPS,
    OPTIONAL_OPS,
    engine_op,
)

__all__ = [
    "CPU_DOCS",
    "CPU_KEYS",
    "CPU_LATENCIES",
    "SCHEMA",
    "TOP_KEYS",
    "Profile",
    "bundled_profiles",
    "derived",
    "load_profile",
    "profile_digest",
    "synthetic_profile",
]

SCHEMA = "vsim-profile/1"

CPU_LATENCIES = ("wakeup_idle", "wakeup_busy", "poll_detect")
CPU_DOCS = {
    "wakeup_idle": "latency from an eventfd signal to a blocked thread running, its CPU idle",
    "wakeup_busy": "context switch for a thread woken onto a CPU that is running another thread",
    "poll_detect": "latency for a busy-polling thread to notice a notification",
}


@dataclass(frozen=True)
class Profile:
    """The calibrated numbers of one machine; `provenance` maps each key path to its source."""

    name: str
    description: str
    host_cpus: int
    guest_vcpus: int
    guest_halt_poll_us: float
    queue_size: int
    backend_lock: bool
    cpu: dict[str, Dist]
    costs: dict[str, dict[str, Dist]]
    disk: DiskSpec
    provenance: dict[str, str] = field(default_factory=dict)
    source: str = ""
    wake_preempt: bool = False
    placement: Placement | None = None

    def cost(self, op: str, context: str) -> Dist:
        """The cost of operation `op` in `context` ("guest", "user" or "kernel")."""
        variants = self.costs[op]
        return variants.get(context) or variants["any"]

    def prices(self, engine: str) -> bool:
        """Whether the profile has the costs of every operation of `engine`."""
        return all(k in self.costs for k in ENGINE_OPS[engine].values())

    def check_engine(self, engine: str, design: str) -> None:
        """ConfigError unless the profile prices every operation of `engine` (see
        vsim.models.syscalls.ENGINE_OPS), naming what is missing and how to measure it."""
        missing = [k for k in ENGINE_OPS[engine].values() if k not in self.costs]
        if missing:
            raise ConfigError(
                f"design {design} runs on {engine}, but profile {self.name} has no "
                f"costs.{missing[0]} (calibrate from a dataset whose microbenchmarks include "
                f"{engine}: vsim calibrate --measure)"
            )

    def host_cost(self, op: str, context: str, engine: str) -> Dist:
        """The cost of host operation `op` in `context` on `engine` (check_engine first)."""
        return self.cost(engine_op(op, engine), context)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "") -> Profile:
        """Validate a parsed profile document; errors name the offending key."""
        return _parse(data, source)

    @classmethod
    def from_file(cls, path: str | Path) -> Profile:
        """Load a profile from a TOML or JSON file."""
        p = Path(path)
        try:
            text = p.read_bytes()
        except OSError as e:
            raise ProfileError(f"cannot read profile {p}: {e.strerror}") from None
        try:
            data = json.loads(text) if p.suffix == ".json" else tomllib.loads(text.decode())
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
            kind = "JSON" if p.suffix == ".json" else "TOML"
            raise ProfileError(f"profile {p} is not valid {kind}: {e}") from None
        return _parse(data, str(p))


def profile_digest(profile: Profile) -> str:
    """A hash of a profile's content (its source file, or its parsed numbers)."""
    import hashlib

    if profile.source and Path(profile.source).is_file():
        data = Path(profile.source).read_bytes()
    else:
        data = repr(profile).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def bundled_profiles() -> dict[str, Path]:
    """The profiles shipped with vsim (calibration/profiles/), by name."""
    out: dict[str, Path] = {}
    root = resources.files("vsim.profiles")
    for entry in root.iterdir():
        if entry.name.endswith(".toml"):
            out[entry.name[: -len(".toml")]] = Path(str(entry))
    return dict(sorted(out.items()))


def load_profile(name_or_path: str | Path) -> Profile:
    """A bundled profile by name (``seed-2011``) or a profile file by path."""
    text = str(name_or_path)
    bundled = bundled_profiles()
    if text in bundled:
        return Profile.from_file(bundled[text])
    p = Path(text)
    if p.suffix in (".toml", ".json") or p.exists():
        return Profile.from_file(p)
    raise ProfileError(
        f"unknown profile {text!r} (bundled: {', '.join(bundled) or 'none'}; or give a path)"
    )


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = data.get(key)
    if not isinstance(v, dict):
        raise ProfileError(f"{where}{key}: missing table")
    return v


# The top-level keys and [cpu] entries a profile may hold ([fit] in a base profile for
# `vsim calibrate --fit`, [fit_report] in what it writes).
TOP_KEYS = ("schema", "name", "description", "cpu", "device", "costs", "disk", "fit", "fit_report")
CPU_KEYS = (
    "host_cpus",
    "guest_vcpus",
    "guest_halt_poll_us",
    "backend_lock",
    "wake_preempt",
    "placement",
    *CPU_LATENCIES,
)


def _parse(data: dict[str, Any], source: str) -> Profile:
    if data.get("schema") != SCHEMA:
        raise ProfileError(f"schema: expected {SCHEMA!r}, got {data.get('schema')!r}")
    check_keys(data, TOP_KEYS, "")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError("name: missing profile name")
    prov: dict[str, str] = {}
    cpu_t = _table(data, "cpu", "")
    check_keys(cpu_t, CPU_KEYS, "cpu")
    host_cpus = scalar(cpu_t, "host_cpus", "cpu", prov)
    vcpus = scalar(cpu_t, "guest_vcpus", "cpu", prov)
    for key, v in (("host_cpus", host_cpus), ("guest_vcpus", vcpus)):
        if v < 1 or v != int(v):
            raise ProfileError(f"cpu.{key}.value: expected a whole number >= 1, got {v}")
    halt_poll = 0.0  # absent: the host does not halt-poll (KVM before Linux 4.0)
    if "guest_halt_poll_us" in cpu_t:
        halt_poll = scalar(cpu_t, "guest_halt_poll_us", "cpu", prov)
        if halt_poll < 0:
            raise ProfileError(f"cpu.guest_halt_poll_us.value: must be >= 0, got {halt_poll}")
    # absent: backend threads run independently (kernel or C threads)
    backend_lock = _flag(cpu_t, "backend_lock", prov)
    # absent: a woken thread waits for a busy CPU's holder to block (no wake-up preemption)
    wake_preempt = _flag(cpu_t, "wake_preempt", prov)
    # absent: threads not pinned by the scenario go to an idle CPU when they wake
    placement = _placement(cpu_t, int(host_cpus), int(vcpus), prov)
    cpu = {k: dist(cpu_t, k, "cpu", prov) for k in CPU_LATENCIES}
    dev_t = _table(data, "device", "")
    check_keys(dev_t, ("queue_size",), "device")
    qsize = scalar(dev_t, "queue_size", "device", prov)
    if qsize < 1 or qsize != int(qsize) or int(qsize) & (int(qsize) - 1):
        raise ProfileError(f"device.queue_size.value: expected a power of 2, got {qsize}")
    costs_t = _table(data, "costs", "")
    costs: dict[str, dict[str, Dist]] = {}
    engine_ops = tuple(dict.fromkeys(k for ops in ENGINE_OPS.values() for k in ops.values()))
    for op in GUEST_OPS + HOST_OPS + OPTIONAL_OPS + OPTIONAL_HOST_OPS + engine_ops:
        t = costs_t.get(op)
        if t is None and op in engine_ops:
            continue  # an engine the profile was not calibrated for: its designs are refused
        if t is None and op in OPTIONAL_OPS + OPTIONAL_HOST_OPS:
            costs[op] = {"any": Dist.fixed(0.0)}
            continue
        if not isinstance(t, dict):
            raise ProfileError(f"costs.{op}: missing ({COST_DOCS[op]})")
        if "dist" in t:
            costs[op] = {"any": dist(costs_t, op, "costs", prov)}
        elif op in HOST_OPS + OPTIONAL_HOST_OPS + engine_ops and "user" in t and "kernel" in t:
            check_keys(t, ("user", "kernel"), f"costs.{op}")
            costs[op] = {c: dist(t, c, f"costs.{op}", prov) for c in ("user", "kernel")}
        else:
            raise ProfileError(f"costs.{op}: expected a distribution or user and kernel variants")
    unknown = set(costs_t) - set(costs)
    if unknown:
        raise ProfileError(f"costs.{sorted(unknown)[0]}: unknown operation")
    disk = parse_disk(_table(data, "disk", ""), prov)
    return Profile(
        name=name,
        description=str(data.get("description", "")),
        host_cpus=int(host_cpus),
        guest_vcpus=int(vcpus),
        guest_halt_poll_us=halt_poll,
        queue_size=int(qsize),
        backend_lock=backend_lock,
        cpu=cpu,
        costs=costs,
        disk=disk,
        provenance=prov,
        source=source,
        wake_preempt=wake_preempt,
        placement=placement,
    )


def _placement(
    cpu_t: dict[str, Any], host_cpus: int, vcpus: int, prov: dict[str, str]
) -> Placement | None:
    """The optional [cpu.placement] table: epoch_us, the iodepths its shares were read at, and
    the patterns by backend thread count (a weight, or one weight per iodepth)."""
    t = cpu_t.get("placement")
    if t is None:
        return None
    path = "cpu.placement"
    if not isinstance(t, dict):
        raise ProfileError(f"{path}: expected a table with epoch_us, patterns and provenance")
    check_keys(t, ("epoch_us", "iodepths", "patterns", *PROVENANCE_KEYS), path)
    epoch = t.get("epoch_us")
    if isinstance(epoch, bool) or not isinstance(epoch, int | float) or not epoch > 0:
        raise ProfileError(f"{path}.epoch_us: expected a number > 0, got {epoch!r}")
    qd = t.get("iodepths", [1])
    if (
        not isinstance(qd, list)
        or not qd
        or not all(isinstance(q, int) and not isinstance(q, bool) and q >= 1 for q in qd)
        or any(a >= b for a, b in itertools.pairwise(qd))
    ):
        raise ProfileError(f"{path}.iodepths: expected increasing iodepths >= 1, got {qd!r}")
    pats = t.get("patterns")
    if not isinstance(pats, dict) or not pats:
        raise ProfileError(f"{path}.patterns: expected a table of patterns by thread count")
    out: dict[int, dict[tuple[int, ...], tuple[float, ...]]] = {}
    for n_key, table in pats.items():
        where = f"{path}.patterns.{n_key}"
        if not n_key.isdigit() or int(n_key) < 1 or not isinstance(table, dict) or not table:
            raise ProfileError(f"{where}: expected a backend thread count and its patterns")
        n = int(n_key)
        out[n] = {}
        for key, w in table.items():
            try:
                pattern = parse_pattern(key)
            except ValueError:
                raise ProfileError(f"{where}: bad pattern {key!r} (CPU indices, 0,1,...)") from None
            if len(pattern) != vcpus + n or not all(0 <= c < host_cpus for c in pattern):
                raise ProfileError(
                    f"{where}: pattern {key!r} needs {vcpus + n} CPUs below {host_cpus}"
                )
            out[n][pattern] = _weights(w, len(qd), f"{where}.{key}")
        for i, q in enumerate(qd):
            if not sum(v[i] for v in out[n].values()) > 0:
                raise ProfileError(f"{where}: the weights sum to zero at iodepth {q}")
    record_provenance(t, path, prov)
    return Placement(float(epoch), out, tuple(qd))


def _weights(w: Any, n: int, where: str) -> tuple[float, ...]:
    """A pattern's weight: one number for every iodepth, or a list of one per iodepth."""
    ws = w if isinstance(w, list) else [w] * n
    if len(ws) != n or not all(
        not isinstance(x, bool) and isinstance(x, int | float) and x >= 0 for x in ws
    ):
        raise ProfileError(f"{where}: expected a weight >= 0 (or {n}, one per iodepth), got {w!r}")
    return tuple(float(x) for x in ws)


def _flag(cpu_t: dict[str, Any], key: str, prov: dict[str, str]) -> bool:
    """An optional 0/1 entry of [cpu]; False when absent."""
    if key not in cpu_t:
        return False
    v = scalar(cpu_t, key, "cpu", prov)
    if v not in (0, 1):
        raise ProfileError(f"cpu.{key}.value: expected 0 or 1, got {v}")
    return bool(v)


def derived(d: dict[str, Any], source: str = "a synthetic configuration") -> dict[str, Any]:
    """A number or distribution table with `derived` provenance (for a synthetic profile)."""
    return {**d, "provenance": "derived", "source": source}


def _zero() -> dict[str, Any]:
    return derived({"dist": "fixed", "value_us": 0.0})


def synthetic_profile(
    costs: dict[str, dict[str, Any]] | None = None,
    disk: dict[str, Any] | None = None,
    *,
    host_cpus: int = 4,
    vcpus: int = 1,
    wakeup_idle: dict[str, Any] | None = None,
    wakeup_busy: dict[str, Any] | None = None,
    queue_size: int = 128,
) -> dict[str, Any]:
    """A profile document for an exact, analysable configuration (oracles, what-ifs, tests):
    every cost zero unless given, the disk a fixed 100 us server; load it with
    Profile.from_dict."""
    engine_ops = list(dict.fromkeys(k for ops in ENGINE_OPS.values() for k in ops.values()))
    c: dict[str, Any] = {op: _zero() for op in [*GUEST_OPS, *HOST_OPS, *engine_ops]}
    for op, spec in (costs or {}).items():
        c[op] = derived(spec)
    return {
        "schema": SCHEMA,
        "name": "test",
        "cpu": {
            "host_cpus": derived({"value": host_cpus}),
            "guest_vcpus": derived({"value": vcpus}),
            "wakeup_idle": derived(wakeup_idle) if wakeup_idle else _zero(),
            "wakeup_busy": derived(wakeup_busy) if wakeup_busy else _zero(),
            "poll_detect": _zero(),
        },
        "device": {"queue_size": derived({"value": queue_size})},
        "costs": c,
        "disk": disk
        or {
            "model": "fixed",
            "service_us": derived({"value": 100.0}),
            "channels": derived({"value": 1}),
        },
    }
