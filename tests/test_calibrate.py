"""Calibration: the least-squares fit recovers known parameters; traces become a valid profile."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vsim import Scenario, Workload, design, simulate
from vsim.calibrate import apply, fit_profile, free_params, residual_params
from vsim.errors import ConfigError, ProfileError
from vsim.measure.dataset import load_measured
from vsim.profile import Profile, derived, synthetic_profile

ROOT = Path(__file__).resolve().parents[1]
TRUE = {"guest": 30.0, "disk": 100.0}


def _doc(guest: float, disk: float) -> dict:  # type: ignore[type-arg]
    doc = synthetic_profile(
        costs={
            "guest_submit": {"dist": "fixed", "value_us": guest},
            "guest_complete": {"dist": "fixed", "value_us": guest},
            "pop": {"dist": "exponential", "mean_us": 10.0},
        },
        wakeup_idle={"dist": "uniform", "low_us": 5.0, "high_us": 15.0},
    )
    doc["disk"]["service_us"]["value"] = disk
    return doc


def _dataset(tmp_path: Path) -> Path:
    """Simulated 'measurements' of the true profile, written as fio JSON with a manifest."""
    prof = Profile.from_dict(_doc(TRUE["guest"], TRUE["disk"]), "truth")
    lines = ["file,design,repeat,calibration"]
    for qd in (1, 2, 4):
        w = Workload(rw="randread", iodepth=qd, number_ios=3000)
        r = simulate(
            Scenario(workload=w, design=design("virtio-blk"), profile="truth"), 7, profile=prof
        )
        (tmp_path / f"qd{qd}.json").write_text(json.dumps(r.to_fio_json()))
        lines.append(f"qd{qd}.json,virtio-blk,0,true")
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_fit_recovers_known_parameters(tmp_path: Path):
    base = _doc(15.0, 150.0)  # a wrong starting point
    base["fit"] = {
        "guest": {
            "paths": ["costs.guest_submit.value_us", "costs.guest_complete.value_us"],
            "mode": "set",
            "bounds": [1.0, 80.0],
        },
        "disk": {"paths": ["disk.service_us.value"], "mode": "set", "bounds": [20.0, 300.0]},
    }
    fit = fit_profile(base, load_measured(_dataset(tmp_path)), ios=3000, seed=7)
    got = dict(zip([p.name for p in fit.params], fit.values, strict=True))
    # Stated tolerance: 3 % of the true value (the fit sees the same seed as the truth).
    assert got["guest"] == pytest.approx(TRUE["guest"], rel=0.03)
    assert got["disk"] == pytest.approx(TRUE["disk"], rel=0.03)
    assert fit.rms_pct < 1.0
    assert np.all(np.isfinite(fit.stderr))
    # The written profile loads, says the numbers are fitted, and drops the [fit] table.
    out = tmp_path / "fitted.toml"
    fit.write(out)
    p = Profile.from_file(out)
    assert p.provenance["costs.guest_submit"].startswith("fitted:")
    assert "[fit." not in out.read_text()  # the free-parameter tables are gone


def test_free_params_errors():
    doc = _doc(10, 100)
    with pytest.raises(ProfileError, match="no free parameters"):
        free_params(doc)
    doc["fit"] = {"x": {"paths": ["costs.nope.value_us"], "mode": "set", "bounds": [0, 1]}}
    with pytest.raises(ProfileError, match=r"costs\.nope"):
        free_params(doc)
    doc["fit"] = {"x": {"paths": ["costs.kick.value_us"], "mode": "set", "bounds": [2, 1]}}
    with pytest.raises(ProfileError, match="bounds"):
        free_params(doc)


def test_apply_scale_mode():
    doc = _doc(10, 100)
    doc["fit"] = {
        "s": {"paths": ["costs.guest_submit.value_us"], "mode": "scale", "bounds": [0.1, 10]}
    }
    new = apply(doc, free_params(doc), np.array([2.5]))
    assert new["costs"]["guest_submit"]["value_us"] == 25.0
    assert doc["costs"]["guest_submit"]["value_us"] == 10  # the base is untouched


def test_apply_scales_an_empirical_distribution():
    """A scale on an empirical distribution scales its quantiles (and so its mean)."""
    doc = _doc(10, 100)
    doc["costs"]["pop"] = derived(
        {"dist": "empirical", "levels": [0, 0.5, 1], "quantiles_us": [2, 4, 8]}
    )
    doc["fit"] = {"s": {"paths": ["costs.pop.quantiles_us"], "mode": "scale", "bounds": [0.1, 9]}}
    new = apply(doc, free_params(doc), np.array([1.5]))
    assert new["costs"]["pop"]["quantiles_us"] == [3.0, 6.0, 12.0]
    before = Profile.from_dict(doc, "a").cost("pop", "user").mean
    assert Profile.from_dict(new, "b").cost("pop", "user").mean == pytest.approx(1.5 * before)
    from vsim.calibrate.fit import _record_provenance

    _record_provenance(new, doc, free_params(doc), np.array([1.5]), np.array([0.1]), 1.0, "d")
    assert new["costs"]["pop"]["provenance"] == "fitted"
    doc["fit"]["s"]["mode"] = "set"  # a list cannot be set to one number
    with pytest.raises(ProfileError, match="is not a number"):
        free_params(doc)


def test_residual_params_of_the_local_profile():
    """A residual fit frees the kick, the completion path and each context's backend costs,
    at the leaves the profile has (a fixed value or an empirical distribution's quantiles)."""
    doc = tomllib.loads((ROOT / "calibration" / "profiles" / "local.toml").read_text())
    fit = residual_params(doc)
    assert set(fit) == {"kick", "completion", "user_backend", "kernel_backend"}
    assert fit["kick"]["paths"] == ["costs.kick.value_us"] and fit["kick"]["mode"] == "set"
    assert all(
        p.endswith(".user.quantiles_us") or p.endswith(".user.value_us")
        for p in fit["user_backend"]["paths"]
    )
    ops = ["pop", "pop_cold", "submit_call", "submit_iocb", "submit_cold", "push", "signal"]
    assert [p.split(".")[1] for p in fit["kernel_backend"]["paths"]] == ops
    doc["fit"] = fit
    params = free_params(doc)  # every declared path is a leaf the fit can move
    assert [p.name for p in params] == list(fit)
    with pytest.raises(ProfileError, match="none of the numbers"):
        residual_params(_doc(10, 100) | {"costs": {}, "disk": {}})


@pytest.mark.skipif(
    shutil.which("fio") is None, reason="fio is not installed (apt-get install fio)"
)
def test_calibrate_from_reference_runs(tmp_path: Path):
    from vsim.calibrate import calibrate_from_runs
    from vsim.measure import Campaign, measure, measure_fio, measure_microbench
    from vsim.reference.linux import memory_filesystem

    if memory_filesystem(str(tmp_path)) is not None:
        pytest.skip("tmp_path is on a memory file system: no direct I/O")
    c = Campaign(iodepths=(1, 2), runtime=0.3, repeat=1, directory=str(tmp_path), size=8 << 20)
    ds = tmp_path / "ds"
    measure(c, ds)
    measure_fio(c, ds)
    measure_microbench(c, ds, n=40)
    cal = calibrate_from_runs([ds], use={"iodepth": [1]}, name="here")
    out = tmp_path / "here.toml"
    cal.write(out)
    prof = Profile.from_file(out)
    assert prof.host_cpus >= 1 and prof.disk["model"] == "parallel"
    # The host's completion path and fio's loop, both from the traces.
    assert prof.disk["completion"].mean >= 0 and "disk.completion" in prof.provenance
    assert prof.costs["guest_loop"]["any"].mean > 0 and "costs.guest_loop" in prof.provenance
    # Every number is measured, but the lock (a property of the reference implementation) and
    # wake-up preemption where it cannot be measured (then cited from Linux's scheduler docs).
    assert prof.provenance.pop("cpu.backend_lock").startswith("derived:")
    # (measured by the wakeup_preempt microbenchmark where there are two CPUs)
    kind = "measured:" if (ds / "microbench" / "wakeup_preempt.npy").exists() else "cited:"
    assert prof.provenance.pop("cpu.wake_preempt").startswith(kind)
    assert prof.backend_lock
    if prof.placement is not None:  # when the traces saw a thread change CPU
        assert prof.placement.epoch_us > 0 and prof.placement.for_threads(1)
    assert all(v.startswith("measured:") for v in prof.provenance.values())
    r = simulate(
        Scenario(workload=Workload(rw="randread", iodepth=2, number_ios=500), profile="here"),
        1,
        profile=prof,
    )
    assert r.iops > 0
    with pytest.raises(ConfigError, match="calibration point"):
        calibrate_from_runs([ds], use={"iodepth": [64]}, name="x")
    # io_uring's and SQPOLL's costs from their microbenchmarks: the SQ thread's are what
    # io_uring_enter costs beyond the SQPOLL ring's user-side work.
    assert prof.prices("io_uring") and prof.prices("io_uring-sqpoll")
    cost = lambda op: prof.costs[op]["user"].mean  # noqa: E731
    assert cost("uring_sq_sqe") == pytest.approx(
        max(cost("uring_submit_sqe") - cost("uring_sqpoll_sqe"), 0.0), abs=2e-3
    )
    for p in (ds / "microbench").glob("uring_sqpoll_*.npy"):
        p.unlink()
    older = calibrate_from_runs([ds], use={"iodepth": [1]}, name="older")
    assert any("no SQPOLL costs: microbenchmark uring_sqpoll" in n for n in older.notes)
    assert "uring_sqpoll_call" not in older.document["costs"]
    assert "uring_submit_call" in older.document["costs"]


LOCAL = Path(__file__).resolve().parent.parent / "validation" / "local"


def _copy_local(tmp_path: Path) -> Path:
    ds = tmp_path / "ds"
    shutil.copytree(LOCAL, ds, ignore=shutil.ignore_patterns("report"))
    return ds


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda ds: shutil.rmtree(ds), "not a directory"),
        (lambda ds: (ds / "provenance.toml").unlink(), "no provenance.toml"),
        (lambda ds: (ds / "provenance.toml").write_text("cores = [\n"), "provenance.toml: cannot"),
        (  # only the microbenchmarks added later with --bench wakeup_preempt
            lambda ds: [p.unlink() for p in (ds / "microbench").glob("*.npy")
                        if p.stem != "wakeup_preempt"],
            "microbenchmark eventfd missing",
        ),
        (
            lambda ds: (ds / "microbench" / "eventfd.npy").write_bytes(b"\x93NUMPY"),
            "eventfd.npy: not a readable microbenchmark sample",
        ),
        (  # a trace cut short (a copy interrupted, a full disk)
            lambda ds: (ds / "traces" / "virtio-blk-randread-bs4096-qd1-r0.npz").write_bytes(
                (LOCAL / "traces" / "virtio-blk-randread-bs4096-qd1-r0.npz").read_bytes()[:999]
            ),
            "not a readable vsim trace",
        ),
    ],
)  # fmt: skip
def test_calibrate_a_damaged_dataset_is_one_line(damage, message, tmp_path, capsys):  # type: ignore[no-untyped-def]
    from vsim.cli import main

    ds = _copy_local(tmp_path)
    damage(ds)
    out = tmp_path / "p.toml"
    code = main(["calibrate", str(ds), "--use", "iodepth=1,8", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_calibrate_use_rule_that_matches_nothing(tmp_path, capsys):  # type: ignore[no-untyped-def]
    from vsim.cli import main

    out = tmp_path / "p.toml"
    code = main(["calibrate", str(LOCAL), "--use", "iodepth=64", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "--use iodepth=64 matches none" in err and not out.exists()


def test_calibrate_measure_refuses_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from vsim.cli import main

    out = str(tmp_path / "p.toml")
    assert main(["calibrate", "--measure", str(ROOT / "validation" / "local"), "--out", out]) == 2
    assert "--measure measures its own dataset" in capsys.readouterr().err
    assert main(["calibrate", "--out", out]) == 2
    assert "give a measured dataset directory, or --measure" in capsys.readouterr().err
    assert main(["calibrate", "--measure", "--budget", "soon", "--out", out]) == 2
    assert not (tmp_path / "p.toml").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    shutil.which("fio") is None, reason="fio is not installed (apt-get install fio)"
)
def test_recalibrate_measures_and_fits(tmp_path: Path):
    """The one-command re-calibration, shrunk: its dataset has runs, fio and microbenchmarks,
    and the profile it fits loads, records its fit and predicts its own calibration points."""
    from vsim.calibrate.machine import MachinePlan, recalibrate
    from vsim.errors import UnavailableError

    plan = MachinePlan(
        rws=("randread",),
        iodepths=(1, 4),
        runtime=0.3,
        fio_bss=(4096, 16384),
        fio_iodepths=(1, 4),
        fio_runtime=0.3,
        precision=0.5,
        budget_s=10.0,
        ios=300,
    )
    said: list[str] = []
    try:
        fit = recalibrate(
            tmp_path / "ds", name="here", plan=plan, directory=str(tmp_path), say=said.append
        )
    except UnavailableError as exc:
        pytest.skip(str(exc))
    ds = tmp_path / "ds"
    for part in ("runs", "fio", "microbench", "manifest.csv", "summary.csv"):
        assert (ds / part).exists(), part
    assert [m[:3] for m in said[:4]] == ["1/4", "2/4", "3/4", "4/4"]
    fit.write(tmp_path / "here.toml")
    prof = Profile.from_file(tmp_path / "here.toml")
    assert set(fit.document["fit_report"]["parameters"]) >= {"kick", "completion"}
    assert prof.provenance["costs.kick"].startswith("fitted:")
    assert set(fit.residuals["iodepth"]) == {1, 4}


def _backend_doc(kick: float, completion: float, user: float, kernel: float) -> dict:  # type: ignore[type-arg]
    """A two-CPU profile whose kick, completion path and per-context backend costs are known."""
    fixed = {"dist": "fixed"}
    doc = synthetic_profile(
        costs={
            "guest_submit": {**fixed, "value_us": 20.0},
            "guest_complete": {**fixed, "value_us": 10.0},
            "kick": {**fixed, "value_us": kick},
        },
        host_cpus=2,
        wakeup_idle={"dist": "uniform", "low_us": 5.0, "high_us": 15.0},
    )
    for op, us in (("pop", 8.0), ("submit_call", 10.0), ("submit_iocb", 15.0), ("push", 4.0)):
        doc["costs"][op] = {
            "user": derived({**fixed, "value_us": us * user}),
            "kernel": derived({**fixed, "value_us": us * kernel}),
        }
    doc["disk"]["service_us"]["value"] = 60.0
    doc["disk"]["completion"] = derived({**fixed, "value_us": completion})
    return doc


def _round_trip(tmp_path: Path, start: tuple[float, float, float, float]) -> pd.Series:
    """Fit the residual parameters from `start` (kick, completion path, user and kernel cost
    factors) to calibration points simulated from a known truth (12, 20, 1, 1); the fit's
    absolute errors at those points, by metric."""
    truth = Profile.from_dict(_backend_doc(12.0, 20.0, 1.0, 1.0), "truth")
    lines = ["file,design,repeat,calibration"]
    for d in ("virtio-blk", "vhost-blk"):
        for qd in (1, 8):
            w = Workload(rw="randread", iodepth=qd, number_ios=3000)
            for rep, seed in enumerate((11, 12)):
                r = simulate(
                    Scenario(workload=w, design=design(d), profile="t"), seed, profile=truth
                )
                name = f"{d}-qd{qd}-r{rep}.json"
                (tmp_path / name).write_text(json.dumps(r.to_fio_json()))
                lines.append(f"{name},{d},{rep},true")
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    base = _backend_doc(*start)
    base["fit"] = residual_params(base)
    assert set(base["fit"]) == {"kick", "completion", "user_backend", "kernel_backend"}
    fit = fit_profile(base, load_measured(tmp_path), ios=3000, seed=5)
    res: pd.Series = fit.residuals.set_index("metric")["error_pct"].abs()
    res.attrs["summary"] = fit.summary() + "\n".join(fit.notes)
    return res


def test_residual_fit_round_trips_its_calibration_points(tmp_path: Path):
    """The calibration round trip: from a wrong start (the kick and the completion path 17-33 %
    off, the backends' costs 20-25 %), the residual fit predicts its own calibration points (both
    designs, iodepth 1 and 8) within 3 % IOPS and 5 % mean latency, as issue 13 asks."""
    res = _round_trip(tmp_path, (16.0, 14.0, 1.25, 0.8))
    assert res.loc["iops"].max() < 3.0, res.attrs["summary"]
    assert res.loc[["clat_mean_us", "lat_mean_us"]].max() < 5.0, res.attrs["summary"]


def test_residual_fit_round_trips_from_far_off(tmp_path: Path):
    """From 30-150 % off the local fit stops in a local minimum at 3.9-4.3 % rms (a kick too
    high and a completion path too short cancel at iodepth 1); the restart from the best of the
    Sobol starts finds the truth."""
    res = _round_trip(tmp_path, (30.0, 6.0, 1.4, 0.7))
    assert res.loc["iops"].max() < 3.0, res.attrs["summary"]
    assert res.loc[["clat_mean_us", "lat_mean_us"]].max() < 5.0, res.attrs["summary"]


def test_warm_pops_are_those_of_requests_waiting_on_the_ring() -> None:
    from types import SimpleNamespace

    from vsim.calibrate.traces import _warm_pops

    ns = np.array
    # Request 1 is on the ring (kicked at 5) before request 0's io_submit returns (at 30): its
    # pop (at 34) is back to back. Request 2 arrives (kick at 60) after request 1's io_submit
    # returned (at 50): the backend slept, so its pop says nothing about a warm pop.
    stages = {
        "pop_ns": ns([10, 34, 90]) * 1000,
        "io_submit_ns": ns([30, 50, 110]) * 1000,
        "kick_ns": ns([1, 5, 60]) * 1000,
    }
    got = _warm_pops(SimpleNamespace(stages=stages))  # type: ignore[arg-type]
    assert got.tolist() == [4.0]
