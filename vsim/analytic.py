"""Exact Mean Value Analysis and open-queue formulas: the analytic oracle."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from vsim.errors import ConfigError

__all__ = [
    "STATION_KINDS",
    "MvaResult",
    "Station",
    "StationKind",
    "md1_response",
    "md1_wait",
    "mg1_response",
    "mg1_wait",
    "mm1_response",
    "mm1_wait",
    "mva",
]

StationKind = Literal["queue", "delay", "multi"]
STATION_KINDS: tuple[StationKind, ...] = ("queue", "delay", "multi")


@dataclass(frozen=True)
class Station:
    """A service centre of a closed product-form network.

    demand: total mean service demand of one cycle at this station (visits x mean service time
    per visit), in any time unit used consistently. kind: "queue" (one FCFS/PS server,
    load-independent), "delay" (infinite servers: no queueing, e.g. think time or a fixed
    latency), or "multi" (``servers`` identical FCFS servers with exponential service: a
    load-dependent station, e.g. a disk with several channels).
    """

    name: str
    demand: float
    kind: StationKind = "queue"
    servers: int = 1

    def __post_init__(self) -> None:
        if self.kind not in STATION_KINDS:
            raise ConfigError(
                f"station {self.name!r}: kind must be one of {', '.join(STATION_KINDS)}, "
                f"got {self.kind!r}"
            )
        if not (math.isfinite(self.demand) and self.demand >= 0):
            raise ConfigError(f"station {self.name!r}: demand must be >= 0, got {self.demand}")
        if isinstance(self.servers, bool) or not isinstance(self.servers, int):
            raise ConfigError(f"station {self.name!r}: servers must be an integer")
        if self.servers < 1:
            raise ConfigError(f"station {self.name!r}: servers must be >= 1, got {self.servers}")
        if self.kind != "multi" and self.servers != 1:
            raise ConfigError(f"station {self.name!r}: servers > 1 needs kind 'multi'")


@dataclass(frozen=True)
class MvaResult:
    """Exact MVA results for populations n = 1..n_max (row i holds n = i + 1).

    throughput: X(n), cycles per time unit. response: R(n) = sum of residence times (think time
    excluded), so Little's law reads ``n = X(n) (R(n) + think_time)``. residence, queue,
    utilization: one column per station; queue is the mean number present (waiting or in
    service); utilization is X D for "queue" stations, X D / servers (per server) for "multi",
    and X D (the mean number present) for "delay". marginals: for each "multi" station, the
    probabilities of 0..n_max customers present at n = n_max.
    """

    stations: tuple[Station, ...]
    think_time: float
    n: NDArray[np.int64]
    throughput: NDArray[np.float64]
    response: NDArray[np.float64]
    residence: NDArray[np.float64]
    queue: NDArray[np.float64]
    utilization: NDArray[np.float64]
    marginals: dict[str, NDArray[np.float64]] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """Station names, in column order."""
        return tuple(s.name for s in self.stations)

    def column(self, name: str) -> int:
        """The column index of a station."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ConfigError(f"no station named {name!r} (have {', '.join(self.names)})") from None


def _rates(servers: int, n: int) -> NDArray[np.float64]:
    """Service-rate multipliers alpha(j) = min(j, servers) for j = 1..n."""
    return np.minimum(np.arange(1, n + 1), servers).astype(np.float64)


def _validate(stations: tuple[Station, ...], n_max: int, think_time: float) -> None:
    if isinstance(n_max, bool) or not isinstance(n_max, int | np.integer):
        raise ConfigError(f"n_max must be an integer, got {n_max!r}")
    if n_max < 1:
        raise ConfigError(f"n_max must be >= 1, got {n_max}")
    if not (math.isfinite(think_time) and think_time >= 0):
        raise ConfigError(f"think_time must be >= 0, got {think_time}")
    for s in stations:
        if not isinstance(s, Station):
            raise ConfigError(f"stations must be Station objects, got {s!r}")
    names = [s.name for s in stations]
    if len(set(names)) != len(names):
        raise ConfigError(f"station names must be unique, got {names}")
    if think_time + sum(s.demand for s in stations) <= 0:
        raise ConfigError("the network needs a positive demand or think time")


def _recursion(
    stations: tuple[Station, ...], n_max: int, think_time: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], dict[int, NDArray[np.float64]]]:
    """Throughput X(n), residence R_k(n) and multi-server marginals p_k(j | n_max)."""
    k = len(stations)
    demand = np.array([s.demand for s in stations], dtype=np.float64)
    is_queue = np.array([s.kind == "queue" for s in stations], dtype=bool)
    multi = [i for i, s in enumerate(stations) if s.kind == "multi"]
    # p0(n) = p_k(0 | n) = G_{-k}(n) / G(n) = prod_{m<=n} X(m) / X_{-k}(m): the throughput of
    # the network without station k. This replaces the textbook p0 = 1 - sum_{j>=1} p(j), which
    # cancels catastrophically once more than one server is busy on average.
    complement: dict[int, NDArray[np.float64] | None] = {}
    for i in multi:
        rest = stations[:i] + stations[i + 1 :]
        if think_time + sum(s.demand for s in rest) > 0:
            complement[i] = _recursion(rest, n_max, think_time)[0]
        else:
            complement[i] = None  # nothing else: every customer is always at station i
    probs = {i: np.ones(1, dtype=np.float64) for i in multi}  # p_k(j | n-1), j = 0..n-1

    throughput = np.empty(n_max)
    residence = np.empty((n_max, k))
    q_prev = np.zeros(k)
    for row, n in enumerate(range(1, n_max + 1)):
        r = np.where(is_queue, demand * (1.0 + q_prev), demand)  # delay stations: D_k
        for i in multi:
            alpha = _rates(stations[i].servers, n)
            r[i] = float(np.sum(np.arange(1, n + 1) / alpha * demand[i] * probs[i]))
        x = n / (think_time + float(r.sum()))
        for i in multi:
            alpha = _rates(stations[i].servers, n)
            p = np.empty(n + 1)
            p[1:] = x * demand[i] / alpha * probs[i]
            x_rest = complement[i]
            p[0] = 0.0 if x_rest is None else probs[i][0] * x / float(x_rest[row])
            probs[i] = p
        throughput[row] = x
        residence[row] = r
        q_prev = x * r
    return throughput, residence, probs


def mva(stations: Sequence[Station], n_max: int, think_time: float = 0.0) -> MvaResult:
    """Exact single-class Mean Value Analysis (Reiser & Lavenberg, J. ACM 27(2), 1980).

    For n = 1..n_max: R_k(n) = D_k (1 + Q_k(n-1)) at a queueing station, D_k at a delay
    station; X(n) = n / (Z + sum_k R_k(n)); Q_k(n) = X(n) R_k(n). A "multi" station with c
    servers uses the exact load-dependent recursion on its marginal queue-length probabilities:
    R_k(n) = sum_{j=1..n} j D_k / min(j, c) p_k(j-1 | n-1) and
    p_k(j | n) = X(n) D_k / min(j, c) p_k(j-1 | n-1) for j >= 1. The empty-station probability
    p_k(0 | n) is taken as prod_{m<=n} X(m) / X_{-k}(m) (X_{-k}: the same network without
    station k, solved by the same recursion) rather than 1 - sum_{j>=1} p_k(j | n), which is
    numerically unstable; both are exact in exact arithmetic. Cost: O(n_max^2) per multi
    station, times the number of multi stations factorial (keep them few).
    """
    stations = tuple(stations)
    _validate(stations, n_max, think_time)
    n_max = int(n_max)
    throughput, residence, probs = _recursion(stations, n_max, float(think_time))
    demand = np.array([s.demand for s in stations], dtype=np.float64)
    servers = np.array([s.servers for s in stations], dtype=np.float64)
    return MvaResult(
        stations=stations,
        think_time=float(think_time),
        n=np.arange(1, n_max + 1, dtype=np.int64),
        throughput=throughput,
        response=residence.sum(axis=1),
        residence=residence,
        queue=throughput[:, None] * residence,
        utilization=throughput[:, None] * demand[None, :] / servers[None, :],
        marginals={stations[i].name: p for i, p in probs.items()},
    )


# --------------------------------------------------------------------------- open queues


def _utilization(lam: float, mu: float) -> float:
    if not (math.isfinite(lam) and lam >= 0):
        raise ConfigError(f"arrival rate must be >= 0, got {lam}")
    if not (math.isfinite(mu) and mu > 0):
        raise ConfigError(f"service rate must be > 0, got {mu}")
    rho = lam / mu
    if rho >= 1:
        raise ConfigError(f"unstable queue: utilisation lam/mu = {rho:.4g} >= 1")
    return rho


def mm1_response(lam: float, mu: float) -> float:
    """M/M/1 mean response time (wait + service): W = 1 / (mu - lam)."""
    _utilization(lam, mu)
    return 1.0 / (mu - lam)


def mm1_wait(lam: float, mu: float) -> float:
    """M/M/1 mean time in queue before service: Wq = rho / (mu - lam)."""
    rho = _utilization(lam, mu)
    return rho / (mu - lam)


def md1_wait(lam: float, mu: float) -> float:
    """M/D/1 mean time in queue (deterministic service 1/mu): Wq = rho / (2 mu (1 - rho))."""
    rho = _utilization(lam, mu)
    return rho / (2.0 * mu * (1.0 - rho))


def md1_response(lam: float, mu: float) -> float:
    """M/D/1 mean response time: Wq + 1/mu."""
    return md1_wait(lam, mu) + 1.0 / mu


def mg1_wait(lam: float, mean_service: float, scv: float) -> float:
    """M/G/1 mean time in queue (Pollaczek-Khinchine): Wq = lam E[S^2] / (2 (1 - rho)).

    scv: squared coefficient of variation of the service time (1 exponential, 0 deterministic),
    so E[S^2] = (1 + scv) mean_service^2.
    """
    if not (math.isfinite(mean_service) and mean_service > 0):
        raise ConfigError(f"mean service time must be > 0, got {mean_service}")
    if not (math.isfinite(scv) and scv >= 0):
        raise ConfigError(f"scv must be >= 0, got {scv}")
    rho = _utilization(lam, 1.0 / mean_service)
    return lam * (1.0 + scv) * mean_service**2 / (2.0 * (1.0 - rho))


def mg1_response(lam: float, mean_service: float, scv: float) -> float:
    """M/G/1 mean response time: Wq + mean_service."""
    return mg1_wait(lam, mean_service, scv) + mean_service
