"""The disk: a FCFS device with k channels, and its models behind one protocol, by name.

A disk model is one class, registered by its name (the profile's `disk.model`): it parses its
[disk] table, builds the per-request service-time function, and states its mean service and
channels (for `--method mva`) and whether a block size is extrapolated. The built-in models
(fixed, empirical, parallel in `service.py`, hdd in `hdd.py`) register when `vsim.models` is
imported; a new one is one class in one file, decorated with `register_disk_model`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

from vsim.errors import ProfileError
from vsim.kernel import Kernel
from vsim.models.dists import Dist, Sampler, check_keys, sampler
from vsim.models.monitor import Registry
from vsim.models.params import dist

__all__ = [
    "DISK_MODELS",
    "DISK_PARAMS",
    "Disk",
    "DiskModel",
    "DiskRequest",
    "DiskSpec",
    "Done",
    "Request",
    "ServiceFn",
    "build_disk",
    "parse_disk",
    "register_disk_model",
]


@dataclass(frozen=True)
class Request:
    """What the disk needs to know about one I/O."""

    write: bool
    offset: int
    size: int


class DiskRequest(Protocol):
    """What the disk reads from a request (a Request, or the simulator's IO itself)."""

    write: bool
    offset: int
    size: int


ServiceFn = Callable[[DiskRequest], float]  # a request's service time (us), drawn at its start


class DiskModel(Protocol):
    """What every disk model is: one class, registered by `name` (see register_disk_model).

    `params` documents its [disk] keys (a key's first word, up to a dot, is the key the table
    may hold: "service.read / service.write" allows `service`); any other key is an error.
    """

    name: ClassVar[str]
    params: ClassVar[dict[str, str]]

    @classmethod
    def parse(cls, t: dict[str, Any], prov: dict[str, str]) -> DiskModel:
        """The model of a [disk] table; ProfileError messages start with the key path
        (`disk.service.read_512: ...`); every number's provenance is recorded in prov."""
        ...

    @property
    def channels(self) -> int:
        """Requests served at once."""
        ...

    def service(self, rng: np.random.Generator, span: int) -> ServiceFn:
        """The per-request service time, drawing from rng (span: the workload's extent)."""
        ...

    def mean_us(self, write: bool, bs: int, random: bool) -> float:
        """The mean service time of a read or write of bs bytes (random or sequential offsets)."""
        ...

    def extrapolated(self, write: bool, bs: int) -> bool:
        """True when bs lies outside the sizes the model's data covers for this direction; a
        ProfileError (one line, naming what the profile covers) when it cannot serve it."""
        ...


DISK_MODELS: dict[str, type[DiskModel]] = {}  # the registry: disk.model name -> its class
_M = TypeVar("_M")


def register_disk_model(cls: _M) -> _M:
    """Register a disk model class under its `name` (a class decorator); a name taken by
    another class is an error. `DISK_MODELS.pop(name)` unregisters it."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls!r}: a disk model needs a class attribute `name`")
    if DISK_MODELS.get(name, cls) is not cls:
        raise ValueError(f"disk model {name!r} is already registered")
    DISK_MODELS[name] = cls  # type: ignore[assignment]
    return cls


class _Params(Mapping[str, dict[str, str]]):
    """DISK_PARAMS: each registered model's parameters (key -> meaning), read from the registry."""

    def __getitem__(self, name: str) -> dict[str, str]:
        return DISK_MODELS[name].params

    def __iter__(self) -> Iterator[str]:
        return iter(DISK_MODELS)

    def __len__(self) -> int:
        return len(DISK_MODELS)


DISK_PARAMS: Mapping[str, dict[str, str]] = _Params()


def _table_keys(model: type[DiskModel]) -> list[str]:
    """The [disk] keys a model's table may hold beside `model` and `completion`."""
    return list(dict.fromkeys(p.split(" ")[0].split(".")[0] for p in model.params))


@dataclass(eq=False)  # not frozen: this module is compiled (setup.py), and a compiled frozen
class DiskSpec:  # dataclass cannot be unpickled in a pool worker (a Profile travels there)
    """A profile's [disk]: its model, and the host's optional completion path (a delay between
    the device finishing a request and its AIO completion, off the device)."""

    model: DiskModel
    completion: Dist | None = None

    @property
    def name(self) -> str:
        """The model's registered name."""
        return self.model.name

    def extrapolated(self, bs: int, directions: Iterable[str]) -> bool:
        """True when bs is extrapolated for any of the directions ("read", "write"); every
        direction is checked, so one the profile cannot serve fails here, before a run."""
        return any([self.model.extrapolated(d == "write", bs) for d in directions])

    def __getitem__(self, key: str) -> Any:
        """The dict view older callers read: ["model"] (the name), ["completion"] (its Dist)."""
        if key == "model":
            return self.name
        if key == "completion" and self.completion is not None:
            return self.completion
        raise KeyError(key)


def parse_disk(t: dict[str, Any], prov: dict[str, str]) -> DiskSpec:
    """Validate the profile's [disk] table into its model; errors name the key."""
    name = t.get("model")
    if not isinstance(name, str) or name not in DISK_MODELS:
        known = ", ".join(sorted(DISK_MODELS))
        raise ProfileError(f"disk.model: expected one of {known}, got {name!r}")
    cls = DISK_MODELS[name]
    check_keys(t, ("model", "completion", *_table_keys(cls)), "disk")
    model = cls.parse(t, prov)
    completion = dist(t, "completion", "disk", prov) if "completion" in t else None
    return DiskSpec(model, completion)


Done = Callable[[Any], None]  # called with the request when it completes


class Disk:
    """A FCFS device with `channels` servers; `service` computes a request's time at its start."""

    def __init__(
        self,
        env: Kernel,
        channels: int,
        service: ServiceFn,
        stats: Registry,
        completion: Sampler | None = None,
    ) -> None:
        self.env = env
        self.channels = channels
        self._completion = completion
        self._service = service
        self._free = channels
        self._queue: deque[tuple[DiskRequest, Done]] = deque()
        self.busy = stats.level("disk.busy")  # busy channels / channels
        self.inflight = stats.level("disk.queue")  # queued + in service
        self.served = 0

    def submit(self, req: DiskRequest, done: Done) -> None:
        """Queue a request; done(req) is called when it completes."""
        self.inflight.add(1, self.env.now)
        if self._free:
            self._start(req, done)
        else:
            self._queue.append((req, done))

    def _start(self, req: DiskRequest, done: Done) -> None:
        env = self.env
        self._free -= 1
        self.busy.set((self.channels - self._free) / self.channels, env.now)
        env.call_in(self._service(req), self._finish, (req, done))

    def _finish(self, job: tuple[DiskRequest, Done]) -> None:
        now = self.env.now
        self._free += 1
        self.served += 1
        self.inflight.add(-1, now)
        if self._queue:
            self._start(*self._queue.popleft())
        else:
            self.busy.set((self.channels - self._free) / self.channels, now)
        if self._completion is not None:  # the host's completion path, off the device
            self.env.call_in(self._completion(), _deliver, job)
        else:
            _deliver(job)


def _deliver(job: tuple[DiskRequest, Done]) -> None:
    """Call a finished request's done(req)."""
    req, done = job
    done(req)


def build_disk(
    env: Kernel,
    spec: DiskSpec,
    span: int,
    rng: np.random.Generator,
    stats: Registry,
    completion_rng: np.random.Generator | None = None,
) -> tuple[Disk, ServiceFn]:
    """The Disk for a profile's disk spec, and its service-time function.

    The optional completion path draws from its own stream (completion_rng), so adding it
    leaves every service time unchanged.
    """
    service = spec.model.service(rng, span)
    completion = None
    if spec.completion is not None:
        if completion_rng is None:
            raise ValueError("build_disk: the profile's disk.completion needs completion_rng")
        completion = sampler(spec.completion, completion_rng)
    return Disk(env, spec.model.channels, service, stats, completion), service
