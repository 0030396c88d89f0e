"""Shared fixtures: profiles built in code, directories on a disk, the validation figures log."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from vsim.models.syscalls import ENGINE_OPS
from vsim.profile import Profile, synthetic_profile
from vsim.scenario import Design


@pytest.fixture
def disk_dir(tmp_path: Path) -> Path:
    """A fresh directory on a disk file system (O_DIRECT works), or skip."""
    from vsim.reference.linux import memory_filesystem

    fs = memory_filesystem(str(tmp_path))
    if fs is not None:
        pytest.skip(f"tmp_path {tmp_path} is on {fs}: no direct I/O there")
    return tmp_path


@pytest.fixture
def make_profile() -> Any:
    """make_profile(**kw) -> Profile, see synthetic_profile."""

    def make(**kw: Any) -> Profile:
        return Profile.from_dict(synthetic_profile(**kw), "test")

    return make


@pytest.fixture
def priced() -> Any:
    """priced(profile, design) -> `profile` if it prices the design's engine, else a copy in
    which io_uring costs what Linux AIO does, and an SQ thread's submission what io_submit
    does (for laws that hold whatever the costs: a 2011 profile has no io_uring)."""
    like = {"sq_call": "submit_call", "sq_sqe": "submit_iocb"}

    def price(profile: Profile, d: Design) -> Profile:
        if profile.prices(d.pricing):
            return profile
        costs = dict(profile.costs)
        for op, key in ENGINE_OPS[d.pricing].items():
            costs[key] = profile.costs[like.get(op, op)]
        return replace(profile, costs=costs)

    return price


# Figures a test wants in the CI log (the validation headlines): printed after the run, in a
# "validation figures" section, whether the tests passed or not.
_FIGURES: list[str] = []


@pytest.fixture
def report_figures() -> Any:
    """report_figures(title, text): show text under title at the end of the test log."""

    def add(title: str, text: str) -> None:
        _FIGURES.append(f"{title}\n{text.rstrip()}\n")

    return add


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES:
        terminalreporter.section("validation figures")
        for f in _FIGURES:
            terminalreporter.write(f + "\n")
