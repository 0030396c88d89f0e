"""Profiles: the bundled ones load with full provenance; malformed files name the bad key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from vsim.errors import ProfileError
from vsim.models.syscalls import GUEST_OPS, HOST_OPS
from vsim.profile import Profile, bundled_profiles, load_profile, synthetic_profile


def test_bundled_seed_profile_loads_with_provenance():
    assert "seed-2011" in bundled_profiles()
    p = load_profile("seed-2011")
    assert p.host_cpus == 4 and p.guest_vcpus == 1 and p.queue_size == 128
    assert p.disk.name == "hdd"
    # Every number has a provenance entry naming its kind and source.
    assert all(
        v.split(":")[0] in ("measured", "fitted", "cited", "derived") for v in p.provenance.values()
    )
    for op in HOST_OPS:
        assert f"costs.{op}.user" in p.provenance and f"costs.{op}.kernel" in p.provenance
    for op in GUEST_OPS:
        assert f"costs.{op}" in p.provenance
    assert p.cost("pop", "user").mean > p.cost("pop", "kernel").mean


def test_load_by_path(tmp_path: Path):
    src = bundled_profiles()["seed-2011"]
    dst = tmp_path / "mine.toml"
    dst.write_text(src.read_text())
    assert load_profile(str(dst)).name == "seed-2011"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["costs"].pop("kick"), "costs.kick: missing"),
        (lambda d: d["cpu"]["wakeup_idle"].pop("source"), "cpu.wakeup_idle.source"),
        (lambda d: d["cpu"]["wakeup_idle"].update(dist="weibull"), "cpu.wakeup_idle.dist"),
        (lambda d: d["cpu"]["host_cpus"].update(value=0), "cpu.host_cpus.value"),
        (lambda d: d["costs"]["pop"].update(value_us="x"), "costs.pop.value_us"),
        (lambda d: d["device"]["queue_size"].update(value=100), "device.queue_size.value"),
        (lambda d: d["disk"].update(model="tape"), "disk.model"),
        (lambda d: d["costs"].update(frob=d["costs"]["pop"]), "costs.frob: unknown"),
        # a typo must not silently turn a model part off: every unknown key is named
        (lambda d: d["cpu"].update(wake_premept=_entry(1)), "cpu.wake_premept: unknown key"),
        (lambda d: d.update(placment={}), "placment: unknown key"),
        (lambda d: d["device"].update(queue_sise=_entry(8)), "device.queue_sise: unknown key"),
        (lambda d: d["costs"]["pop"].update(mean_us=3.0), "costs.pop.mean_us: unknown key"),
        (lambda d: d["cpu"]["host_cpus"].update(valeu=2), "cpu.host_cpus.valeu: unknown key"),
        (lambda d: d["disk"].update(chanels=_entry(2)), "disk.chanels: unknown key"),
        (lambda d: d.update(schema="v0"), "schema"),
        (lambda d: d["cpu"].update(wake_preempt=_entry(2)), "cpu.wake_preempt.value"),
        (lambda d: d["cpu"].update(placement="x"), "cpu.placement: expected a table"),
        (lambda d: d["cpu"].update(placement=_placement(epoch_us=0)), "cpu.placement.epoch_us"),
        (lambda d: d["cpu"].update(placement=_placement(patterns={})), "cpu.placement.patterns"),
        (
            lambda d: d["cpu"].update(placement=_placement(patterns={"x": {"0,0": 1}})),
            "cpu.placement.patterns.x: expected a backend thread count",
        ),
        (
            lambda d: d["cpu"].update(placement=_placement(patterns={"1": {"0,a": 1}})),
            "cpu.placement.patterns.1: bad pattern '0,a'",
        ),
        (
            lambda d: d["cpu"].update(placement=_placement(patterns={"1": {"0,9": 1}})),
            "cpu.placement.patterns.1: pattern '0,9' needs 2 CPUs below 4",
        ),
        (
            lambda d: d["cpu"].update(placement=_placement(patterns={"2": {"0,1": 1}})),
            "cpu.placement.patterns.2: pattern '0,1' needs 3 CPUs",
        ),
        (
            lambda d: d["cpu"].update(placement=_placement(patterns={"1": {"0,1": -1}})),
            "cpu.placement.patterns.1.0,1: expected a weight",
        ),
        (
            lambda d: d["cpu"].update(placement=_placement(patterns={"1": {"0,1": 0}})),
            "cpu.placement.patterns.1: the weights sum to zero at iodepth 1",
        ),
        (
            lambda d: d["cpu"].update(placement=_placement(iodepths=[8, 1])),
            "cpu.placement.iodepths: expected increasing iodepths",
        ),
        (
            lambda d: d["cpu"].update(
                placement=_placement(iodepths=[1, 8], patterns={"1": {"0,0": [1, 2, 3]}})
            ),
            "cpu.placement.patterns.1.0,0: expected a weight >= 0",
        ),
    ],
)
def test_malformed_profile_names_key(mutate, message):  # type: ignore[no-untyped-def]
    doc = copy.deepcopy(synthetic_profile())
    mutate(doc)
    with pytest.raises(ProfileError, match=message.replace(".", r"\.")):
        Profile.from_dict(doc, "test")


def _entry(value: object) -> dict[str, object]:
    return {"value": value, "provenance": "cited", "source": "test"}


def _placement(**over: object) -> dict[str, object]:
    t: dict[str, object] = {
        "epoch_us": 1000.0,
        "patterns": {"1": {"0,0": 0.25, "0,1": 0.75}},
        "provenance": "measured",
        "source": "test",
    }
    return {**t, **over}


def test_optional_scheduler_entries():
    plain = Profile.from_dict(copy.deepcopy(synthetic_profile()), "test")
    assert not plain.wake_preempt and plain.placement is None
    doc = copy.deepcopy(synthetic_profile())
    doc["cpu"].update(wake_preempt=_entry(1), placement=_placement())
    p = Profile.from_dict(doc, "test")
    assert p.wake_preempt
    assert p.placement is not None and p.placement.epoch_us == 1000.0
    assert p.placement.for_threads(1) == {(0, 0): 0.25, (0, 1): 0.75}
    assert p.placement.for_threads(2) is None  # two-thread designs place freely
    assert p.provenance["cpu.placement"].startswith("measured")


def test_placement_shares_follow_the_iodepth_they_were_read_at():
    doc = copy.deepcopy(synthetic_profile())
    pats = {"1": {"0,0": [0.1, 0.4], "0,1": [0.9, 0.6]}}
    doc["cpu"].update(placement=_placement(iodepths=[2, 8], patterns=pats))
    pl = Profile.from_dict(doc, "test").placement
    assert pl is not None and pl.iodepths == (2, 8)
    assert pl.for_threads(1, 2) == {(0, 0): 0.1, (0, 1): 0.9}  # exact where measured
    assert pl.for_threads(1, 8) == {(0, 0): 0.4, (0, 1): 0.6}
    mid = pl.for_threads(1, 4)  # halfway in log iodepth
    assert mid is not None and mid[(0, 0)] == pytest.approx(0.25)
    assert mid[(0, 1)] == pytest.approx(0.75)
    assert pl.for_threads(1, 1) == pl.for_threads(1, 2)  # held at the nearest beyond the range
    assert pl.for_threads(1, 64) == pl.for_threads(1, 8)


def test_bad_files(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("schema = [unclosed")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(str(bad))
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(str(tmp_path / "missing.toml"))
    with pytest.raises(ProfileError, match="unknown profile"):
        load_profile("no-such-profile")
