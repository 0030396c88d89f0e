"""Tests of fio job files: parsing, fio's option vocabulary and units, the Workload they make."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vsim import Scenario, design, simulate
from vsim.errors import ConfigError, FioFormatError, VsimError
from vsim.fio import fio_json, read_fio_json
from vsim.fio.jobfile import (
    JobSpec,
    LatencyTarget,
    fio_arguments,
    fio_time,
    job_options,
    parse_job_text,
    read_job_file,
    translate,
)
from vsim.profile import Profile, synthetic_profile
from vsim.scenario import Workload

JOBS = Path(__file__).parent / "data" / "jobs"
FIO_DATA = Path(__file__).parent / "data" / "fio"
ENV = {"FIO_RW": "randread", "FIO_IODEPTH": "16", "FIO_BS": "512", "SIZE": "64m"}
ENV |= {"NUMJOBS": "4", "BS": "4"}
GIB = 1 << 30


def _job(text: str, section: str | None = None, **env: str) -> JobSpec:
    return parse_job_text(text, name="x.fio", env=env).job(section)


def _one_line_error(exc: pytest.ExceptionInfo[Any]) -> str:
    text = str(exc.value)
    assert "\n" not in text and isinstance(exc.value, VsimError)
    return text


# --------------------------------------------------------------------------- fio's examples

# Per kept example: per section, the Workload fields expected, or the one error line.
EXAMPLES: dict[str, dict[str, dict[str, Any] | str]] = {
    "latency-profile.fio": {
        "device": {"rw": "randread", "bs": 4096, "iodepth": 128, "number_ios": None}
    },
    "poisson-rate-submission.fio": {
        "poisson-rate-submit": {
            "rw": "randread",
            "iodepth": 32,
            "size": 128 << 20,
            "rate_iops": (50, 50),
            "rate_process": "poisson",
            "number_ios": (128 << 20) // 4096,
        }
    },
    "fio-rand-RW.fio": {
        "file1": {
            "rw": "randrw",
            "rwmixread": 60,
            "bs": 4096,
            "numjobs": 4,
            "iodepth": 16,
            "size": 10 * GIB,
            "runtime": 900.0,
            "number_ios": None,  # time_based: only runtime limits it
        }
    },
    "ssd-test.fio": {
        name: {"rw": rw, "bs": 4096, "iodepth": 4, "runtime": 60.0, "number_ios": 10 * GIB // 4096}
        for name, rw in (
            ("seq-read", "read"),
            ("rand-read", "randread"),
            ("seq-write", "write"),
            ("rand-write", "randwrite"),
        )
    },
    "tiobench-example.fio": {
        name: {"rw": rw, "bs": 4096, "numjobs": 4, "runtime": 60.0, "size": 512 << 20}
        for name, rw in (("f1", "write"), ("f2", "randwrite"), ("f3", "read"), ("f4", "randread"))
    },
    "aio-read.fio": {
        f"file{i}": {"rw": "randread", "bs": 128 << 10, "iodepth": qd, "number_ios": 4096}
        for i, qd in ((1, 4), (2, 32), (3, 8), (4, 16))
    },
    "xnvme-zoned.fio": {
        "default": {"rw": "write", "bs": 4096, "iodepth": 1, "ramp_time": 1.0},
        "override": {"rw": "randread", "bs": 512, "iodepth": 16, "number_ios": GIB // 512},
    },
    "jesd219.fio": {"JESD219": "jesd219.fio:16: bssplit=512/4:"},
    "uring-cmd-trim-multi-range.fio": {
        "write_bs": "uring-cmd-trim-multi-range.fio:15: rw=randtrim: vsim models reads and "
        "writes, not trims",
        "write_bssplit": "uring-cmd-trim-multi-range.fio:20: rw=trim: vsim models",
    },
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_kept_example_parses(name: str) -> None:
    jf = read_job_file(JOBS / name, env=ENV)
    want = EXAMPLES[name]
    assert jf.sections == tuple(want)
    for section, expected in want.items():
        spec = jf.job(section)
        if isinstance(expected, str):
            with pytest.raises(ConfigError) as info:
                spec.workload()
            assert expected in _one_line_error(info)
            continue
        w = spec.workload()
        assert {k: getattr(w, k) for k in expected} == expected, section


def test_examples_report_what_vsim_does_not_model() -> None:
    jesd = read_job_file(JOBS / "jesd219.fio").job().translation
    assert jesd.ignored == ("norandommap", "randrepeat", "blockalign", "random_distribution")
    assert "12 sizes, 512..65536" in jesd.problems["bs"]
    assert jesd.fields["rwmixread"] == 40  # rwmixread=40 then rwmixwrite=60
    poisson = read_job_file(JOBS / "poisson-rate-submission.fio").job().translation
    assert poisson.ignored == ("io_submit_mode",)
    zoned = read_job_file(JOBS / "xnvme-zoned.fio", env=ENV).job("default").translation
    assert zoned.ignored == ("zonemode", "norandommap", "verify")
    ssd = read_job_file(JOBS / "ssd-test.fio").job("seq-read").translation
    assert ssd.ignored == ()
    assert ssd.metadata["directory"] == "/mount-point-of-ssd"
    assert ssd.metadata["filename"] == "ssd.test.file" and ssd.metadata["stonewall"] == "1"
    assert read_job_file(JOBS / "aio-read.fio").job("file1").translation.metadata["direct"] == "1"


def test_latency_target_from_the_example() -> None:
    t = read_job_file(JOBS / "latency-profile.fio").job().translation
    assert t.latency_target == LatencyTarget(target_us=500_000.0, window_us=5e6, percentile=99.9)
    assert t.ignored == ("random_generator",)
    only = translate({"latency_target": "2ms"}, "x").latency_target
    assert only == LatencyTarget(target_us=2000.0, window_us=0.0, percentile=100.0)
    alone = translate({"latency_window": "5s", "latency_percentile": "99"}, "x")
    assert alone.latency_target is None
    assert alone.ignored == ("latency_window", "latency_percentile")


# --------------------------------------------------------------------------- the seed's jobs


def test_seed_rw_job_is_the_seeds_workload() -> None:
    """rw.fio as the seed prints it: rw=rw size=200M iodepth=1 direct=1 bs=512, libaio."""
    spec = read_job_file(JOBS / "rw.fio").job()
    assert spec.name == "test" and spec.where.endswith("rw.fio:1")
    w = spec.workload()
    assert (w.rw, w.bs, w.iodepth, w.size, w.numjobs) == ("rw", 512, 1, 200 << 20, 1)
    assert w.rwmixread == 50 and w.runtime is None
    assert w.number_ios == (200 << 20) // 512  # fio stops after size bytes
    meta = spec.translation.metadata
    assert meta == {"direct": "1", "directory": "/home/dev/data", "ioengine": "libaio"}
    assert spec.translation.ignored == ()
    assert spec.translation.sources["number_ios"].endswith("rw.fio:3: size=200M")


def test_seed_read_job_is_the_seeds_command_line() -> None:
    """fio -name iops -rw=read -runtime=120 -iodepth 1 -filename /dev/vda -ioengine libaio
    -direct=1 -bs=512: no size (the device's), so only the 120 s limit it."""
    spec = read_job_file(JOBS / "seq-read.fio").job()
    w = spec.workload()
    assert (spec.name, w.rw, w.bs, w.iodepth, w.runtime) == ("iops", "read", 512, 1, 120.0)
    assert w.number_ios is None and w.numjobs == 1
    assert spec.translation.metadata["filename"] == "/dev/vda"


# --------------------------------------------------------------------------- sections


def test_global_sections_apply_to_the_jobs_after_them() -> None:
    text = (
        "[global]\nbs=4k\niodepth=2\nsize=1m\n"
        "[a]\niodepth=8\n"
        "[global]\niodepth=16\nrw=write\n"
        "[b]\n"
        "[global-extra]\nnumjobs=3\n"  # fio: any section name starting with "global"
        "[c]\nbs=8k\n"
    )
    jf = parse_job_text(text, name="x.fio")
    assert jf.sections == ("a", "b", "c")
    a, b, c = (jf.job(s).workload() for s in jf.sections)
    assert (a.rw, a.bs, a.iodepth, a.numjobs) == ("read", 4096, 8, 1)  # fio's default rw
    assert (b.rw, b.bs, b.iodepth, b.numjobs) == ("write", 4096, 16, 1)
    assert (c.rw, c.bs, c.iodepth, c.numjobs) == ("write", 8192, 16, 3)
    assert jf.job("a").options == {"bs": "4k", "size": "1m", "iodepth": "8"}
    assert jf.job("a").locations == {"bs": "x.fio:2", "iodepth": "x.fio:6", "size": "x.fio:4"}


def test_the_later_of_two_options_for_one_setting_wins() -> None:
    rate = read_job_file(JOBS / "rate.fio")
    assert rate.job("both").workload().rwmixread == 70
    assert rate.job("after-second-global").workload().rwmixread == 50  # rwmixwrite=50 later
    assert _job("[j]\nrwmixwrite=20\nrwmixread=60\n").workload().rwmixread == 60
    assert _job("[j]\nreadwrite=write\nrw=randwrite\n").workload().rw == "randwrite"
    assert _job("[j]\nrw=write\nreadwrite=randwrite\n").workload().rw == "randwrite"
    j = _job("[global]\nblocksize=8k\n[j]\nbs=16k\n")
    assert j.workload().bs == 16384
    assert _job("[j]\ndirect=1\nbuffered=1\n").translation.metadata["direct"] == "0"
    assert _job("[j]\nbuffered=0\n").translation.metadata["direct"] == "1"


def test_choosing_a_job() -> None:
    jf = read_job_file(JOBS / "ssd-test.fio")
    with pytest.raises(ConfigError) as info:
        jf.job()
    assert _one_line_error(info) == (
        f"{JOBS / 'ssd-test.fio'} has jobs seq-read, rand-read, seq-write, rand-write: "
        "give --section NAME"
    )
    with pytest.raises(ConfigError, match=r"has no job \[nope\]"):
        jf.job("nope")
    assert jf.job("rand-write").workload().rw == "randwrite"
    with pytest.raises(ConfigError, match="has no job"):
        parse_job_text("[global]\nbs=4k\n").job()


# --------------------------------------------------------------------------- include, ${VAR}


def test_include_is_relative_to_the_including_file() -> None:
    spec = read_job_file(JOBS / "include" / "main.fio").job()
    w = spec.workload()
    assert (w.rw, w.bs, w.size, w.iodepth, w.iodepth_batch_submit) == (
        "randread",
        4096,
        64 << 20,
        8,
        4,
    )
    assert spec.translation.metadata == {"direct": "1", "ioengine": "libaio"}
    inc = JOBS / "include"
    assert spec.locations["bs"] == f"{inc / 'common.fio'}:3"
    assert spec.locations["iodepth_batch_submit"] == f"{inc / 'nested' / 'batch.fio'}:2"


def test_include_errors_name_the_line() -> None:
    inc = JOBS / "include"
    with pytest.raises(FioFormatError) as info:
        read_job_file(inc / "cycle-a.fio")
    assert _one_line_error(info) == (
        f"{inc / 'cycle-b.fio'}:2: include cycle-a.fio: include cycle "
        "(cycle-a.fio -> cycle-b.fio -> cycle-a.fio)"
    )
    with pytest.raises(FioFormatError) as info:
        read_job_file(inc / "section.fio")
    assert "with-section.fio:2: [sneaky]: included files may not hold sections" in str(info.value)
    with pytest.raises(FioFormatError) as info:
        parse_job_text("[j]\ninclude absent.fio\n", name="x.fio", base_dir=inc)
    assert _one_line_error(info).startswith("x.fio:2: include absent.fio: cannot read ")


def test_env_variables_are_expanded() -> None:
    w = read_job_file(JOBS / "env.fio", env={"SIZE": "64m", "NUMJOBS": "4", "BS": "8"}).job()
    assert w.options == {"rw": "randwrite", "size": "64m", "numjobs": "4", "bs": "8k"}
    assert (w.workload().size, w.workload().numjobs, w.workload().bs) == (64 << 20, 4, 8192)
    assert _job("[j]\nbs=${A}${B}\n", A="1", B="6k").workload().bs == 16384


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {"SIZE": "1m", "NUMJOBS": "2", "BS": "4"}.items():
        monkeypatch.setenv(k, v)
    assert read_job_file(JOBS / "env.fio").job().workload().numjobs == 2


def test_an_unset_variable_names_file_line_and_variable() -> None:
    with pytest.raises(FioFormatError) as info:
        read_job_file(JOBS / "env.fio", env={"SIZE": "64m", "BS": "4"})
    assert _one_line_error(info) == (
        f"{JOBS / 'env.fio'}:5: ${{NUMJOBS}} is not set (fio would use '')"
    )
    with pytest.raises(FioFormatError, match=r"x.fio:2: .*\$ncpus is the host's"):
        _job("[j]\nnumjobs=$ncpus\n")


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("text", "rates"),
    [
        ("500", (500, 500)),  # one value: every direction
        ("500,200", (500, 200)),
        (",200", (0, 200)),  # reads keep their default (no limit)
        ("500,", (500, 0)),  # fio's __handle_option: a trailing comma fills nothing after it
        ("1k", (1024, 1024)),  # fio's int: a size suffix
        ("300,200,100", (300, 200)),  # the trim rate changes nothing vsim runs
        ("300:200", (300, 200)),  # fio splits at ':' when there is no ','
    ],
)
def test_rate_iops_per_direction(text: str, rates: tuple[int, int]) -> None:
    assert _job(f"[j]\nrw=randrw\nrate_iops={text}\n").workload().rate_iops == rates


def test_rate_iops_sections() -> None:
    jf = read_job_file(JOBS / "rate.fio")
    got = {s: jf.job(s).workload().rate_iops for s in jf.sections}
    assert got == {
        "both": (500, 200),
        "writes-only": (0, 200),
        "all-directions": (300, 300),
        "after-second-global": (1024, 0),
    }
    w = jf.job("both").workload()
    assert (w.thinktime, w.thinktime_spin, w.thinktime_blocks) == (1000.0, 250.0, 8)
    assert w.rate_process == "poisson" and w.number_ios == GIB // 4096
    timed = jf.job("all-directions").workload()
    assert (timed.runtime, timed.number_ios) == (120.0, None)


@pytest.mark.parametrize(
    ("option", "field", "value"),
    [
        ("thinktime=1ms", "thinktime", 1000.0),
        ("thinktime=250", "thinktime", 250.0),  # no unit: microseconds
        ("thinktime=2s", "thinktime", 2e6),
        ("runtime=2m", "runtime", 120.0),
        ("runtime=90", "runtime", 90.0),  # no unit: seconds
        ("runtime=1500ms", "runtime", 1.5),
        ("runtime=1h", "runtime", 3600.0),
        ("ramp_time=500MS", "ramp_time", 0.5),  # units are not case sensitive
        ("bs=4k", "bs", 4096),
        ("bs=4KB", "bs", 4096),
        ("bs=4ki", "bs", 4096),  # parse.c: "ki" falls to "k"
        ("bs=0x1000", "bs", 4096),
        ("size=1g", "size", GIB),
        ("size=512kib", "size", 512_000),  # kb_base=1024: kib is 1000 (fio's inversion)
        ("iodepth=1k", "iodepth", 1024),
    ],
)
def test_units_as_fio(option: str, field: str, value: object) -> None:
    w = _job(f"[j]\nrw=randrw\nthinktime=3s\n{option}\n").workload()
    assert getattr(w, field) == value


def test_kb_base_1000() -> None:
    w = _job("[j]\nsize=512m\nkb_base=1000\nbs=1kib\n").workload()  # kb_base applies first
    assert (w.size, w.bs) == (512_000_000, 1024)


def test_block_size_per_direction() -> None:
    assert _job("[j]\nrw=read\nbs=4k,8k\n").workload().bs == 4096
    assert _job("[j]\nrw=write\nbs=4k,8k\n").workload().bs == 8192
    assert _job("[j]\nrw=randrw\nbs=8k,8k\n").workload().bs == 8192
    assert _job("[j]\nrw=randwrite\nbs=,8k\n").workload().bs == 8192
    assert _job("[j]\nrw=randread\nbs=,8k\n").workload().bs == 4096  # reads keep fio's 4k
    assert _job("[j]\nrw=randrw\nrwmixread=100\nbs=4k,8k\n").workload().bs == 4096
    assert _job("[j]\nbsrange=4k-4k\n").workload().bs == 4096
    assert _job("[j]\nbssplit=16k/100\n").workload().bs == 16384
    for text in ("rw=randrw\nbs=4k,8k", "bsrange=4k-16k", "bssplit=4k/50:8k/50"):
        spec = _job(f"[j]\n{text}\n")
        with pytest.raises(ConfigError) as info:
            spec.workload()
        assert "x.fio:" in _one_line_error(info) and "vsim models one block size" in str(info.value)
        assert spec.workload(bs=4096).bs == 4096  # an override settles it


def test_run_length_as_fio() -> None:
    def n(text: str) -> tuple[int | None, float | None]:
        w = _job(f"[j]\nbs=4k\n{text}\n").workload()
        return w.number_ios, w.runtime

    assert n("size=1m") == (256, None)
    assert n("size=1m\nio_size=256k") == (64, None)
    assert n("size=1m\nnumber_ios=100") == (100, None)
    assert n("size=1m\nnumber_ios=1000") == (256, None)  # whichever comes first
    assert n("size=256k\nloops=3") == (192, None)
    assert n("size=1m\nruntime=10") == (256, 10.0)
    assert n("size=1m\nruntime=10\ntime_based") == (None, 10.0)
    assert n("size=1m\nruntime=10\ntime_based=1\nnumber_ios=50") == (50, 10.0)
    assert n("size=1m\ntime_based") == (256, None)  # fio drops time_based without a runtime
    assert n("size=50%\nruntime=5") == (None, 5.0)  # a share of an unknown device: runtime
    assert _job("[j]\nsize=50%\n").translation.metadata == {"size": "50%"}
    assert n("runtime=0") == (None, None)  # fio: 0 is no limit


def test_fio_fix_ups() -> None:
    """init.c fixup_options: thinktime_spin capped at thinktime, complete_max at least min."""
    w = _job("[j]\nthinktime=100\nthinktime_spin=150\n").workload()
    assert (w.thinktime, w.thinktime_spin) == (100.0, 100.0)
    w = _job("[j]\niodepth=8\niodepth_batch_complete=4\niodepth_batch_complete_max=2\n").workload()
    assert (w.iodepth_batch_complete_min, w.iodepth_batch_complete_max) == (4, 4)
    partial = translate({"thinktime_spin": "150"}, "the command line", run_length=False)
    assert partial.fields == {"thinktime_spin": 150.0}  # flags over a job file: as given


def test_rw_suffix_is_ignored_and_reported() -> None:
    spec = _job("[j]\nrw=randread:8\nfoo=1\n")
    assert spec.workload().rw == "randread"
    assert spec.translation.ignored == ("rw:8", "foo")


def test_ignored_lists_unknown_options_once_in_order() -> None:
    text = (
        "[global]\nnorandommap\nfrobnicate=1\n"
        "[j]\nrw=randread\nfrobnicate=2\nzonemode=zbd\ngroup_reporting\nnorandommap\nstartdelay=1\n"
    )
    t = _job(text).translation
    assert t.ignored == ("frobnicate", "zonemode", "norandommap", "startdelay")
    assert t.metadata == {"group_reporting": "1"}
    assert _job("[j]\nrw=read\n").translation.ignored == ()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("bs", "x.fio:3: bs needs a value"),  # no '=' where one is needed
        ("iodepth=", "x.fio:3: iodepth needs a value"),
        ("bs=4q", "x.fio:3: cannot read size bs='4q'"),  # a bad unit
        ("runtime=10sec", "x.fio:3: cannot read runtime='10sec' as a time"),  # fio: 10 us
        ("thinktime=1x", "x.fio:3: cannot read thinktime='1x' as a time"),
        ("iodepth=deep", "x.fio:3: cannot read iodepth='deep' as an integer"),  # a bad number
        ("iodepth=4,8", "x.fio:3: cannot read iodepth='4,8' as an integer (one value expected)"),
        ("numjobs=2.5", "x.fio:3: cannot read numjobs='2.5' as an integer"),
        ("size=1.5g", "x.fio:3: cannot read size size='1.5g'"),
        ("rate_iops=fast", "x.fio:3: cannot read rate_iops='fast' as I/Os per second"),
        ("rw=sideways", "x.fio:3: cannot read rw='sideways' as an rw mode"),
        ("rate_process=bursty", "x.fio:3: cannot read rate_process='bursty' as linear or poisson"),
        ("direct=true", "x.fio:3: cannot read direct='true' as 0 or 1"),
        ("kb_base=1", "x.fio:3: cannot read kb_base='1' as 1024 or 1000"),
        ("latency_target=1\nlatency_percentile=101", "x.fio:4: cannot read latency_percentile"),
        ("=4k", "x.fio:3: cannot read '=4k': no option name before '='"),
        ("[broken", "x.fio:3: cannot read section header '[broken' (expect [NAME])"),
    ],
)
def test_malformed_lines_name_file_line_and_option(line: str, message: str) -> None:
    with pytest.raises(FioFormatError) as info:
        parse_job_text(f"; a job\n[j]\n{line}\n", name="x.fio")
    assert _one_line_error(info).startswith(message)


def test_errors_in_a_global_section_name_its_line() -> None:
    with pytest.raises(FioFormatError, match=r"^x.fio:2: cannot read iodepth='x'"):
        parse_job_text("[global]\niodepth=x\n[a]\n", name="x.fio")
    with pytest.raises(FioFormatError, match=r"^x.fio:2: cannot read size bs='4q'"):
        parse_job_text("[global]\nbs=4q\n", name="x.fio")  # even with no job after it
    with pytest.raises(FioFormatError, match=r"^x.fio:1: option 'rw' outside of a \[section\]"):
        parse_job_text("rw=read\n[j]\n", name="x.fio")


def test_comments_as_fio_reads_them() -> None:
    text = "; a comment\n  # another\n[j] ; the job\nbs=8k ; inline\niodepth=4 # also\n"
    spec = _job(text)
    assert spec.options == {"bs": "8k", "iodepth": "4"}
    assert (spec.workload().bs, spec.workload().iodepth) == (8192, 4)
    assert read_job_file(JOBS / "tiobench-example.fio").job("f1").options["numjobs"] == "4"


def test_values_vsim_rejects_name_the_option() -> None:
    spec = _job("[j]\nrw=read\niodepth=-1\n")
    with pytest.raises(ConfigError) as info:
        spec.workload()
    assert _one_line_error(info) == "x.fio:3: iodepth=-1: iodepth must be >= 1, got -1"
    with pytest.raises(ConfigError, match=r"^x.fio:2: size=1k: size must be"):
        _job("[j]\nsize=1k\nbs=4k\n").workload()
    with pytest.raises(ConfigError, match=r"^x.fio:2: rwmixwrite=150: rwmixread must be"):
        _job("[j]\nrwmixwrite=150\n").workload()
    with pytest.raises(ConfigError, match=r"^x.fio:1: iodepth must be"):
        _job("[j]\n").workload(iodepth=0)  # an override: the job's own line


def test_unreadable_job_file(tmp_path: Path) -> None:
    with pytest.raises(FioFormatError) as info:
        read_job_file(tmp_path / "absent.fio")
    assert _one_line_error(info).startswith(f"cannot read job file {tmp_path / 'absent.fio'}: ")
    binary = tmp_path / "binary.fio"
    binary.write_bytes(b"[j]\nbs=\xff\n")
    with pytest.raises(FioFormatError, match="not UTF-8"):
        read_job_file(binary)


# --------------------------------------------------------------------------- JSON and files


def _through_json(spec: JobSpec) -> Workload:
    """The spec's options as fio's JSON ``job options``, read back by vsim.fio."""
    clat = np.full(10, 100_000.0)
    job = {"jobname": spec.name, "elapsed_s": 1.0, "options": spec.options, "read": {}}
    job["read"] = {"clat_ns": clat, "bs": 4096}
    (back,) = read_fio_json(json.loads(json.dumps(fio_json([job]))))
    return back.workload()


@pytest.mark.parametrize(
    ("name", "section"),
    [
        ("rw.fio", None),
        ("seq-read.fio", None),
        ("fio-rand-RW.fio", None),
        ("tiobench-example.fio", "f2"),
        ("poisson-rate-submission.fio", None),
        ("include/main.fio", None),
        ("rate.fio", "both"),
        ("rate.fio", "writes-only"),
        ("rate.fio", "all-directions"),
        ("rate.fio", "after-second-global"),
    ],
)
def test_json_reader_and_job_file_reader_agree(name: str, section: str | None) -> None:
    spec = read_job_file(JOBS / name).job(section)
    assert _through_json(spec) == spec.workload()


def test_fios_own_json_of_a_job_file_gives_its_workload() -> None:
    """tests/data/fio: a job file and fio 3.33's JSON of it (stonewall, bare, is not in it)."""
    jf = read_job_file(FIO_DATA / "libaio-randread-qd4.fio")
    jobs = read_fio_json(FIO_DATA / "libaio-randread-qd4.json")
    assert [j.jobname for j in jobs] == list(jf.sections)
    for job in jobs:
        assert job.workload() == jf.job(job.jobname).workload()
    assert jobs[1].workload().number_ios == 2000 == jobs[1].read.total_ios  # type: ignore[union-attr]


def test_json_errors_name_the_job() -> None:
    doc = fio_json([{"jobname": "j", "elapsed_s": 1.0, "options": {"iodepth": "-2"}}])
    (job,) = read_fio_json(doc)
    with pytest.raises(ConfigError, match=r"^jobs\[0\]: iodepth=-2: iodepth must be >= 1"):
        job.workload()
    doc = fio_json([{"jobname": "j", "elapsed_s": 1.0, "options": {"rw": "randtrim"}}])
    with pytest.raises(ConfigError, match=r"^jobs\[0\]: rw=randtrim: vsim models"):
        read_fio_json(doc)[0].workload()


def test_json_without_a_bare_time_based_is_read_as_time_based() -> None:
    """fio's JSON drops options given without a value: a job that did more than its size
    allows (size=64k, 400 I/Os of 4k) was time_based."""
    opts = {"rw": "randread", "bs": "4k", "size": "64k", "runtime": "200ms"}
    reads = {"clat_ns": np.full(400, 50_000.0), "bs": 4096}
    doc = fio_json([{"jobname": "j", "elapsed_s": 0.2, "options": opts, "read": reads}])
    w = read_fio_json(doc)[0].workload()
    assert (w.number_ios, w.runtime) == (None, 0.2)
    reads = {"clat_ns": np.full(16, 50_000.0), "bs": 4096}  # stopped by size: not inferred
    doc = fio_json([{"jobname": "j", "elapsed_s": 0.2, "options": opts, "read": reads}])
    assert read_fio_json(doc)[0].workload().number_ios == 16


LIVE = """[global]
ioengine=null
rw=randread
bs=4k
[sized]
size=1m
[io-limited]
size=1m
io_size=256k
[numbered]
size=1m
number_ios=100
[looped]
size=256k
loops=3
[kib]
size=512kib
[timed]
size=64k
runtime=200ms
time_based
rate_iops=2000
"""


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed (apt install fio)")
def test_live_fio_runs_the_derived_length(tmp_path: Path) -> None:
    """fio itself (null engine) does the I/Os vsim derives from size, io_size, number_ios,
    loops and kb_base, and its JSON gives the job file's Workload."""
    path = tmp_path / "live.fio"
    path.write_text(LIVE)
    proc = subprocess.run(
        ["fio", path.name, "--output-format=json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    jf = read_job_file(path)
    for job in read_fio_json(proc.stdout):
        w = jf.job(job.jobname).workload()
        assert job.workload() == w, job.jobname
        if w.number_ios is not None:
            assert job.read is not None and job.read.total_ios == w.number_ios, job.jobname
    assert jf.job("timed").workload().number_ios is None


# --------------------------------------------------------------------------- the inverse


def test_job_options_round_trip() -> None:
    workloads = [
        Workload(rw="randrw", bs=8192, iodepth=4, rwmixread=70, number_ios=500, runtime=1.5),
        Workload(
            rw="write",
            iodepth=16,
            numjobs=2,
            number_ios=1000,
            ramp_time=0.25,
            iodepth_batch_submit=4,
            iodepth_batch_complete_min=2,
            iodepth_batch_complete_max=8,
            rate_iops=(0, 300),
            rate_process="poisson",
            thinktime=120.0,
            thinktime_spin=20.0,
            thinktime_blocks=4,
        ),
    ]
    for w in workloads:
        opts = {k: str(v) for k, v in job_options(w).items()}
        assert translate(opts, "x").workload() == w
    assert job_options(Workload(number_ios=10)) == {
        "rw": "randread",
        "bs": 4096,
        "iodepth": 1,
        "numjobs": 1,
        "size": GIB,
        "number_ios": 10,
    }  # only what differs from fio's defaults beyond the basics


def test_result_job_options_keep_their_keys() -> None:
    w = Workload(rw="rw", bs=512, iodepth=2, number_ios=50, ramp_time=0.001)
    prof = Profile.from_dict(synthetic_profile(), "test")
    r = simulate(Scenario(workload=w, design=design("virtio-blk"), profile="test"), profile=prof)
    assert r.job_options() == {
        "rw": "rw",
        "bs": 512,
        "iodepth": 2,
        "numjobs": 1,
        "ioengine": "libaio",
        "direct": 1,
        "size": GIB,
        "rwmixread": 50,
        "number_ios": 50,
        "ramp_time": 0.001,
    }
    (job,) = read_fio_json(r.to_fio_json())
    assert job.workload() == w


def test_fio_arguments_write_times_fio_can_read() -> None:
    assert [fio_time(s) for s in (2.0, 0.3, 1.5, 0.0000015, 120)] == [
        "2",
        "300ms",
        "1500ms",
        "2us",
        "120",
    ]
    w = Workload(rw="randread", runtime=0.3, ramp_time=1.0, thinktime=12.0, rate_iops=(5, 5))
    args = fio_arguments(job_options(w))
    assert "--runtime=300ms" in args and "--ramp_time=1" in args
    assert "--thinktime=12" in args and "--rate_iops=5,5" in args
    assert fio_arguments({"time_based": ""}) == ["--time_based"]
