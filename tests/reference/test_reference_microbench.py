"""Microbenchmarks return sane positive distributions (no timing assertions)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vsim.errors import ConfigError
from vsim.reference.microbench import BENCHMARKS, Distribution, microbench


def test_all_benchmarks_return_positive_distributions(leak_check: Path) -> None:
    out = microbench(directory=leak_check, n=20, batch=4)
    assert set(out.results) | set(out.skipped) == set(BENCHMARKS)
    if len(os.sched_getaffinity(0)) > 1:
        assert "wakeup_cross_cpu_blocking" in out.results
    for name, d in out.results.items():
        assert isinstance(d, Distribution) and d.name == name
        assert d.samples_ns.dtype == np.int64 and d.samples_ns.shape == (20,)
        assert np.all(d.samples_ns > 0), name
        s = d.summary()
        assert s["n"] == 20
        assert 0 < s["p10"] <= s["median"] <= s["p90"]
        assert s["mean"] > 0 and d.note
    for name, reason in out.skipped.items():
        assert isinstance(reason, str) and reason, name
    assert set(out.summary()) == set(out.results)
    if {"aio_submit_batch", "aio_submit_per_iocb"} <= set(out.results):
        per_call = out.results["aio_submit_batch"].summary()["median"]
        per_iocb = out.results["aio_submit_per_iocb"].summary()["median"]
        assert per_iocb < per_call  # a per-iocb figure is a call's time divided by the batch


def test_selected_benchmarks_only(tmp_path: Path) -> None:
    out = microbench(["eventfd", "odirect_read"], directory=tmp_path, n=5)
    assert set(out.results) == {"eventfd", "odirect_read"}
    assert list(tmp_path.iterdir()) == []


def test_caller_affinity_is_untouched() -> None:
    before = os.sched_getaffinity(0)
    microbench(["wakeup_same_cpu_blocking", "wakeup_cross_cpu_polling"], n=5)
    assert os.sched_getaffinity(0) == before


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="unknown microbenchmark"):
        microbench(["warp_drive"])
    with pytest.raises(ConfigError):
        microbench(["eventfd"], n=0)
