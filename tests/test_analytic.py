"""Tests of the analytic oracle: MVA against hand values, a brute-force CTMC and SimPy."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Generator, Sequence

import numpy as np
import pytest
import simpy

from vsim.analytic import (
    MvaResult,
    Station,
    md1_response,
    md1_wait,
    mg1_response,
    mg1_wait,
    mm1_response,
    mm1_wait,
    mva,
)
from vsim.errors import ConfigError

# --------------------------------------------------------------------------- hand-computed


def test_single_queue_is_saturated_from_the_start() -> None:
    r = mva([Station("disk", 2.0)], 4)
    np.testing.assert_allclose(r.throughput, [0.5] * 4)
    np.testing.assert_allclose(r.response, [2.0, 4.0, 6.0, 8.0])
    np.testing.assert_allclose(r.queue[:, 0], [1, 2, 3, 4])
    np.testing.assert_allclose(r.utilization[:, 0], [1.0] * 4)


def test_two_queues_by_hand() -> None:
    # n=1: R=(1,2), X=1/3, Q=(1/3,2/3); n=2: R=(4/3,10/3), X=3/7, Q=(4/7,10/7)
    # n=3: R=(11/7,34/7), X=7/15, Q=(11/15,34/15)
    r = mva([Station("cpu", 1.0), Station("disk", 2.0)], 3)
    np.testing.assert_allclose(r.throughput, [1 / 3, 3 / 7, 7 / 15])
    np.testing.assert_allclose(r.residence, [[1.0, 2.0], [4 / 3, 10 / 3], [11 / 7, 34 / 7]])
    np.testing.assert_allclose(r.queue, [[1 / 3, 2 / 3], [4 / 7, 10 / 7], [11 / 15, 34 / 15]])
    np.testing.assert_allclose(r.response, [3, 14 / 3, 45 / 7])
    np.testing.assert_allclose(r.utilization, [[1 / 3, 2 / 3], [3 / 7, 6 / 7], [7 / 15, 14 / 15]])


def test_think_time_and_delay_station_by_hand() -> None:
    # Z=1, D=1: n=1: R=1, X=1/2, Q=1/2; n=2: R=1.5, X=2/2.5=0.8, Q=1.2
    r = mva([Station("disk", 1.0)], 2, think_time=1.0)
    np.testing.assert_allclose(r.throughput, [0.5, 0.8])
    np.testing.assert_allclose(r.response, [1.0, 1.5])
    # a delay station of demand 1 is the same as think time 1, except it counts in R
    d = mva([Station("disk", 1.0), Station("wire", 1.0, "delay")], 2)
    np.testing.assert_allclose(d.throughput, r.throughput)
    np.testing.assert_allclose(d.residence[:, 1], [1.0, 1.0])


def test_multi_server_by_hand() -> None:
    # c=2 servers, D=1, Z=1: n=1: R=1, X=1/2, p(1|1)=1/2, p(0|1)=1/2.
    # n=2: R = 1 * p(0|1) + 2/2 * p(1|1) = 1, X = 2/2 = 1 (both customers never queue).
    r = mva([Station("disk", 1.0, "multi", servers=2)], 2, think_time=1.0)
    np.testing.assert_allclose(r.throughput, [0.5, 1.0])
    np.testing.assert_allclose(r.response, [1.0, 1.0])
    np.testing.assert_allclose(r.marginals["disk"], [0.25, 0.5, 0.25])
    np.testing.assert_allclose(r.utilization[:, 0], [0.25, 0.5])


def test_multi_with_one_server_is_a_queue() -> None:
    a = mva([Station("cpu", 0.3), Station("disk", 1.0, "multi", servers=1)], 20, think_time=2)
    b = mva([Station("cpu", 0.3), Station("disk", 1.0)], 20, think_time=2)
    np.testing.assert_allclose(a.throughput, b.throughput, rtol=1e-12)
    np.testing.assert_allclose(a.queue, b.queue, rtol=1e-10)


# --------------------------------------------------------------------------- brute-force CTMC


def _ctmc(stations: Sequence[Station], n: int) -> tuple[float, np.ndarray, list[np.ndarray]]:
    """Solve a cyclic closed network of exponential stations as a CTMC.

    Returns throughput, mean number per station and each station's marginal distribution.
    Customers visit the stations in order, once per cycle, so demand = mean service time.
    """
    k = len(stations)
    states = [s for s in itertools.product(range(n + 1), repeat=k) if sum(s) == n]
    index = {s: i for i, s in enumerate(states)}

    def rate(st: Station, present: int) -> float:
        if present == 0:
            return 0.0
        busy = {"queue": 1, "delay": present, "multi": min(present, st.servers)}[st.kind]
        return busy / st.demand

    q = np.zeros((len(states), len(states)))
    for s in states:
        for i, st in enumerate(stations):
            mu = rate(st, s[i])
            if mu:
                t = list(s)
                t[i] -= 1
                t[(i + 1) % k] += 1
                q[index[s], index[tuple(t)]] += mu
                q[index[s], index[s]] -= mu
    # pi Q = 0, sum(pi) = 1: replace one balance equation by the normalisation
    a = q.T.copy()
    a[-1, :] = 1.0
    b = np.zeros(len(states))
    b[-1] = 1.0
    pi = np.linalg.solve(a, b)
    occupancy = np.array(states, dtype=float)
    x = float(sum(pi[index[s]] * rate(stations[0], s[0]) for s in states))
    marginals = [
        np.array([sum(pi[index[s]] for s in states if s[i] == j) for j in range(n + 1)])
        for i in range(k)
    ]
    return x, pi @ occupancy, marginals


NETWORKS = {
    "two-queues": [Station("cpu", 0.7), Station("disk", 1.3)],
    "three-queues": [Station("guest", 0.4), Station("host", 1.0), Station("disk", 0.8)],
    "queues+delay": [Station("cpu", 1.0), Station("disk", 0.6), Station("think", 2.5, "delay")],
    "queue+multi2+delay": [
        Station("iothread", 0.5),
        Station("disk", 1.6, "multi", servers=2),
        Station("irq", 0.3, "delay"),
    ],
    "multi3+queue": [Station("disk", 2.0, "multi", servers=3), Station("cpu", 0.5)],
    "two-multis": [
        Station("disk", 2.0, "multi", servers=3),
        Station("cpus", 0.9, "multi", servers=2),
        Station("lock", 0.2),
    ],
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_mva_matches_ctmc(name: str) -> None:
    stations = NETWORKS[name]
    r = mva(stations, 6)
    for n in range(1, 7):
        x, q, marginals = _ctmc(stations, n)
        assert r.throughput[n - 1] == pytest.approx(x, rel=1e-9)
        np.testing.assert_allclose(r.queue[n - 1], q, rtol=1e-8, atol=1e-12)
    for i, st in enumerate(stations):
        if st.kind == "multi":
            np.testing.assert_allclose(r.marginals[st.name], marginals[i], rtol=1e-8, atol=1e-14)


# --------------------------------------------------------------------------- laws and limits


def _check_laws(r: MvaResult) -> None:
    demand = np.array([s.demand for s in r.stations])
    servers = np.array([s.servers for s in r.stations])
    # Little's law on the whole cycle and on every station
    np.testing.assert_allclose(r.throughput * (r.response + r.think_time), r.n, rtol=1e-10)
    np.testing.assert_allclose(r.queue, r.throughput[:, None] * r.residence, rtol=1e-12)
    np.testing.assert_allclose(r.utilization * servers, r.throughput[:, None] * demand)
    assert np.all(np.diff(r.throughput) >= -1e-12 * r.throughput[1:])  # never falls with n
    for name, p in r.marginals.items():
        assert p.min() >= 0
        assert p.sum() == pytest.approx(1.0, abs=1e-9)
        assert (np.arange(p.size) * p).sum() == pytest.approx(r.queue[-1, r.column(name)])


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_laws_and_limits(name: str) -> None:
    stations = NETWORKS[name]
    r = mva(stations, 300)
    _check_laws(r)
    assert r.response[0] == pytest.approx(sum(s.demand for s in stations))  # N=1: no queueing
    capacity = min(s.servers / s.demand for s in stations if s.kind != "delay")
    assert r.throughput[-1] == pytest.approx(capacity, rel=1e-6)  # X -> 1 / D_max
    assert np.all(r.throughput <= capacity * (1 + 1e-12))


def test_multi_server_far_from_saturation_is_stable() -> None:
    # The bottleneck is the CPU; the 4-channel disk is an M/M/4 queue fed at rate 1/0.3.
    # The textbook p0 = 1 - sum(p) recursion returns garbage here; the complement form must not.
    r = mva([Station("cpu", 0.3), Station("disk", 1.0, "multi", servers=4)], 400)
    _check_laws(r)
    a, c = 1 / 0.3, 4
    p0 = 1 / (sum(a**j / math.factorial(j) for j in range(c)) + a**c / 24 / (1 - a / c))
    assert r.marginals["disk"][0] == pytest.approx(p0, rel=1e-6)
    wq = p0 * a**c / 24 * (a / c) / (1 - a / c) ** 2 / (1 / 0.3)  # Erlang-C wait / lambda
    assert r.residence[-1, 1] == pytest.approx(1.0 + wq, rel=1e-6)


def test_zero_demand_station_and_large_population() -> None:
    r = mva([Station("free", 0.0), Station("disk", 1e-4)], 1000, think_time=1e-3)
    _check_laws(r)
    assert r.throughput[-1] == pytest.approx(1e4)
    assert np.all(r.residence[:, 0] == 0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: Station("d", -1.0), "demand must be >= 0"),
        (lambda: Station("d", float("nan")), "demand must be >= 0"),
        (lambda: Station("d", 1.0, "fifo"), "kind must be one of"),  # type: ignore[arg-type]
        (lambda: Station("d", 1.0, servers=2), "needs kind 'multi'"),
        (lambda: Station("d", 1.0, "multi", servers=0), "servers must be >= 1"),
        (lambda: mva([Station("d", 1.0)], 0), "n_max must be >= 1"),
        (lambda: mva([Station("d", 1.0)], 2.5), "n_max must be an integer"),  # type: ignore[arg-type]
        (lambda: mva([Station("d", 1.0)], 3, think_time=-1), "think_time must be >= 0"),
        (lambda: mva([Station("d", 1.0), Station("d", 2.0)], 3), "unique"),
        (lambda: mva([Station("d", 0.0)], 3), "positive demand"),
        (lambda: mva([], 3), "positive demand"),
    ],
)
def test_invalid_input(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()


# --------------------------------------------------------------------------- open queues


def test_open_queue_formulas() -> None:
    assert mm1_response(0.5, 1.0) == pytest.approx(2.0)
    assert mm1_wait(0.5, 1.0) == pytest.approx(1.0)
    assert md1_wait(0.5, 1.0) == pytest.approx(0.5)
    assert md1_response(0.5, 1.0) == pytest.approx(1.5)
    assert mm1_response(0.0, 4.0) == pytest.approx(0.25)
    # Pollaczek-Khinchine reduces to both
    assert mg1_wait(0.7, 1.0, 1.0) == pytest.approx(mm1_wait(0.7, 1.0))
    assert mg1_wait(0.3, 2.0, 0.0) == pytest.approx(md1_wait(0.3, 0.5))
    assert mg1_response(0.7, 1.0, 1.0) == pytest.approx(mm1_response(0.7, 1.0))


@pytest.mark.parametrize("f", [mm1_response, mm1_wait, md1_wait, md1_response])
def test_open_queue_rejects_unstable_and_bad_rates(f: Callable[[float, float], float]) -> None:
    with pytest.raises(ConfigError, match="unstable queue"):
        f(1.0, 1.0)
    with pytest.raises(ConfigError, match="unstable queue"):
        f(2.0, 1.0)
    with pytest.raises(ConfigError, match="service rate"):
        f(0.5, 0.0)
    with pytest.raises(ConfigError, match="arrival rate"):
        f(-0.5, 1.0)


def test_mg1_rejects_bad_parameters() -> None:
    with pytest.raises(ConfigError, match="scv"):
        mg1_wait(0.5, 1.0, -1.0)
    with pytest.raises(ConfigError, match="mean service"):
        mg1_wait(0.5, 0.0, 1.0)


# --------------------------------------------------------------------------- SimPy


class _Draws:
    """Exponential (or constant) variates from a seeded Generator, drawn in blocks."""

    def __init__(self, rng: np.random.Generator, mean: float, *, constant: bool = False) -> None:
        self.rng, self.mean, self.constant = rng, mean, constant
        self.block = np.empty(0)
        self.pos = 0

    def __call__(self) -> float:
        if self.constant:
            return self.mean
        if self.pos == self.block.size:
            self.block, self.pos = self.rng.exponential(self.mean, size=8192), 0
        self.pos += 1
        return float(self.block[self.pos - 1])


def _simulate_closed(
    demands: Sequence[float], n: int, *, warmup: int, cycles: int, seed: int
) -> tuple[float, float]:
    """A closed cyclic network of exponential FCFS single servers: (throughput, response)."""
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(demands))]
    draws = [_Draws(rng, d) for rng, d in zip(rngs, demands, strict=True)]
    env = simpy.Environment()
    servers = [simpy.Resource(env, capacity=1) for _ in demands]
    done = env.event()
    finished: list[float] = []  # response time of each cycle, in completion order
    t_start = [0.0]

    def customer() -> Generator[simpy.Event, object, None]:
        while True:
            began = env.now
            for res, draw in zip(servers, draws, strict=True):
                with res.request() as req:
                    yield req
                    yield env.timeout(draw())
            finished.append(env.now - began)
            if len(finished) == warmup:
                t_start[0] = env.now
            elif len(finished) == warmup + cycles and not done.triggered:
                done.succeed()

    for _ in range(n):
        env.process(customer())
    env.run(until=done)
    return cycles / (env.now - t_start[0]), float(np.mean(finished[warmup:]))


@pytest.mark.parametrize("n", [1, 4, 16])
def test_mva_matches_simpy_closed_network(n: int) -> None:
    demands = (1.0, 0.6)
    r = mva([Station("host", demands[0]), Station("disk", demands[1])], n)
    x, resp = _simulate_closed(demands, n, warmup=500, cycles=40_000, seed=2011 + n)
    assert x == pytest.approx(r.throughput[-1], rel=0.02)
    assert resp == pytest.approx(r.response[-1], rel=0.02)


def _simulate_open(
    lam: float, mu: float, *, deterministic: bool, customers: int, seed: int
) -> float:
    """Mean response time of a FCFS single-server queue with Poisson arrivals."""
    arrivals_rng, service_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)
    )
    gaps = _Draws(arrivals_rng, 1 / lam)
    service = _Draws(service_rng, 1 / mu, constant=deterministic)
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)
    responses: list[float] = []

    def job() -> Generator[simpy.Event, object, None]:
        arrived = env.now
        with server.request() as req:
            yield req
            yield env.timeout(service())
        responses.append(env.now - arrived)

    def source() -> Generator[simpy.Event, object, None]:
        for _ in range(customers):
            yield env.timeout(gaps())
            env.process(job())

    env.process(source())
    env.run()
    warmup = customers // 20
    return float(np.mean(responses[warmup:]))


@pytest.mark.parametrize(
    ("deterministic", "formula"), [(False, mm1_response), (True, md1_response)], ids=["MM1", "MD1"]
)
def test_open_formulas_match_simpy(
    deterministic: bool, formula: Callable[[float, float], float]
) -> None:
    lam, mu = 0.5, 1.0
    w = _simulate_open(lam, mu, deterministic=deterministic, customers=40_000, seed=7)
    assert w == pytest.approx(formula(lam, mu), rel=0.04)
