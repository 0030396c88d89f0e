"""Shared fixtures: small profiles built in code for exact, analysable configurations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vsim.profile import GUEST_OPS, HOST_OPS, Profile


def prov(d: dict[str, Any]) -> dict[str, Any]:
    """Add test provenance to a number or distribution table."""
    return {**d, "provenance": "derived", "source": "test configuration"}


def zero() -> dict[str, Any]:
    return prov({"dist": "fixed", "value_us": 0.0})


def profile_dict(
    costs: dict[str, dict[str, Any]] | None = None,
    disk: dict[str, Any] | None = None,
    *,
    host_cpus: int = 4,
    vcpus: int = 1,
    wakeup_idle: dict[str, Any] | None = None,
    wakeup_busy: dict[str, Any] | None = None,
    queue_size: int = 128,
) -> dict[str, Any]:
    """A profile document: every cost zero unless given, disk a fixed 100 us server."""
    c: dict[str, Any] = {op: zero() for op in GUEST_OPS + HOST_OPS}
    for op, spec in (costs or {}).items():
        c[op] = prov(spec)
    return {
        "schema": "vsim-profile/1",
        "name": "test",
        "cpu": {
            "host_cpus": prov({"value": host_cpus}),
            "guest_vcpus": prov({"value": vcpus}),
            "wakeup_idle": prov(wakeup_idle) if wakeup_idle else zero(),
            "wakeup_busy": prov(wakeup_busy) if wakeup_busy else zero(),
            "poll_detect": zero(),
        },
        "device": {"queue_size": prov({"value": queue_size})},
        "costs": c,
        "disk": disk
        or {
            "model": "fixed",
            "service_us": prov({"value": 100.0}),
            "channels": prov({"value": 1}),
        },
    }


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
    """make_profile(**kw) -> Profile, see profile_dict."""

    def make(**kw: Any) -> Profile:
        return Profile.from_dict(profile_dict(**kw), "test")

    return make


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
