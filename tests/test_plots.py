"""Plots and reports: the right artists, PNG/SVG files, self-contained deterministic reports."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

import vsim
from vsim import plots
from vsim.breakdown import SEGMENTS, breakdown
from vsim.errors import ConfigError
from vsim.plots import write_report
from vsim.results import Result
from vsim.sweep import load_table, resimulate

PNG = b"\x89PNG\r\n\x1a\n"
SEED = pd.DataFrame(
    {
        "design": ["virtio-blk", "virtio-blk", "vhost-blk", "vhost-blk"] * 2,
        "rw": ["read"] * 4 + ["rw"] * 4,
        "dir": ["read"] * 4 + ["total"] * 4,
        "bs": 512,
        "iodepth": [1, 2] * 4,
        "iops": [4116, 7814, 4755, 8645, 3848, 6505, 4370, 7009],
        "clat_mean_us": [214, 222, 183, 202, 228, 275, 198, 249],
    }
)


@pytest.fixture(scope="module")
def sweep_df() -> pd.DataFrame:
    return vsim.sweep(rw=["read", "rw"], iodepth=[1, 2], number_ios=300).to_dataframe()


@pytest.fixture(scope="module")
def results(sweep_df: pd.DataFrame) -> list[Result]:
    return resimulate(sweep_df[sweep_df["rw"] == "read"])


def _labelled_lines(fig: Figure) -> list[str]:
    labels = [str(ln.get_label()) for ax in fig.axes for ln in ax.lines]
    return [lab for lab in labels if not lab.startswith("_")]


def test_iops_one_line_per_design_and_panel(sweep_df: pd.DataFrame) -> None:
    fig = plots.plot_iops(sweep_df)
    assert len(fig.axes) == 2  # rw=read, rw=rw
    assert sorted(_labelled_lines(fig)) == ["vhost-blk", "vhost-blk", "virtio-blk", "virtio-blk"]
    for ax in fig.axes:
        for ln in ax.lines:
            assert mpl.colors.to_hex(ln.get_color()) == plots.DESIGN_COLORS[str(ln.get_label())]
        assert ax.get_xlabel().startswith("iodepth")
    assert fig.axes[0].get_ylabel().startswith("IOPS")
    assert fig.get_suptitle().startswith("IOPS vs iodepth")
    # IOPS of a mixed job's directions are added up.
    mixed = sweep_df[(sweep_df["rw"] == "rw") & (sweep_df["design"] == "virtio-blk")]
    total = mixed.groupby("iodepth")["iops"].sum().tolist()
    line = next(ln for ln in fig.axes[1].lines if ln.get_label() == "virtio-blk")
    assert list(np.asarray(line.get_ydata())) == pytest.approx(total)


def test_iops_with_measured_error_bars(sweep_df: pd.DataFrame) -> None:
    reps = pd.concat([SEED.assign(repeat=0), SEED.assign(repeat=1, iops=SEED["iops"] * 1.1)])
    fig = plots.plot_iops(sweep_df, measured=reps)
    bars = [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 4  # two designs in two panels
    data_line = bars[0].lines[0]
    assert data_line is not None and np.asarray(data_line.get_xdata()).size == 2


def test_latency_mean_p50_p99_per_design(sweep_df: pd.DataFrame) -> None:
    fig = plots.plot_latency(sweep_df)
    assert len(fig.axes) == 3  # read; rw reads; rw writes
    for ax in fig.axes:
        assert len(ax.lines) == 6  # mean, p50, p99 for each design
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2  # p50-p99 bands
    assert "µs" in fig.axes[0].get_ylabel()
    fig = plots.plot_latency(sweep_df, SEED, metric="clat", combine_dirs=True)
    assert len(fig.axes) == 2
    assert sum(isinstance(c, ErrorbarContainer) for ax in fig.axes for c in ax.containers) == 4


def test_cdf_one_line_per_sample_in_each_panel(results: list[Result]) -> None:
    samples = plots.cdf_samples(results)
    assert list(samples) == ["virtio-blk QD1", "virtio-blk QD2", "vhost-blk QD1", "vhost-blk QD2"]
    fig = plots.plot_cdf(samples)
    body, tail = fig.axes[:2]
    assert [ln.get_label() for ln in body.lines[: len(samples)]] == list(samples)
    assert len(tail.lines) == len(samples) + 2  # + the p50 and p99 guides
    colors = {ln.get_label(): mpl.colors.to_hex(ln.get_color()) for ln in body.lines}
    assert colors["vhost-blk QD2"] == plots.DESIGN_COLORS["vhost-blk"]
    with pytest.raises(ConfigError):
        plots.plot_cdf({})


def test_breakdown_stacked_bars(results: list[Result]) -> None:
    bd = breakdown(results)
    fig = plots.plot_breakdown(bd)
    ax = fig.axes[0]
    assert len(ax.patches) == len(results) * len(SEGMENTS)
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks == ["QD1  virtio-blk", "QD1  vhost-blk", "QD2  virtio-blk", "QD2  vhost-blk"]
    assert (
        mpl.colors.to_hex(ax.get_yticklabels()[1].get_color()) == plots.DESIGN_COLORS["vhost-blk"]
    )
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [s.label for s in SEGMENTS]
    # Bar lengths are the segment means; each bar adds up to the point's mean latency.
    widths = [p.get_width() for p in ax.patches[: len(SEGMENTS)]]  # type: ignore[attr-defined]
    assert sum(widths) == pytest.approx(float(results[0].lat_ns.mean()) / 1000, rel=1e-4)
    assert len(plots.plot_breakdown(bd, share=True).axes[0].patches) == len(ax.patches)


def test_save_png_and_svg(tmp_path: Path, sweep_df: pd.DataFrame) -> None:
    fig = plots.plot_iops(sweep_df)
    png = plots.save(fig, tmp_path / "iops.png")
    svg = plots.save(fig, tmp_path / "iops.svg")
    assert png.read_bytes().startswith(PNG) and png.stat().st_size > 1000
    head = svg.read_bytes()[:400]
    assert head.startswith(b"<?xml") and b"<svg" in head
    # Same figure, same bytes.
    assert plots.save(fig, tmp_path / "again.png").read_bytes() == png.read_bytes()
    assert plots.save(fig, tmp_path / "again.svg").read_bytes() == svg.read_bytes()
    with pytest.raises(ConfigError, match=r"png or \.svg"):
        plots.save(fig, tmp_path / "iops.jpg")


def test_figures_leave_global_style_alone(sweep_df: pd.DataFrame) -> None:
    before = dict(mpl.rcParams)
    plots.plot_iops(sweep_df)
    assert dict(mpl.rcParams) == before


def test_figures_show_in_jupyter(sweep_df: pd.DataFrame) -> None:
    fig = plots.plot_iops(sweep_df)
    assert fig._repr_png_().startswith(PNG)  # type: ignore[attr-defined]


def test_cpu_view_puts_iops_against_host_cores(sweep_df: pd.DataFrame) -> None:
    fig = plots.plot_kind("cpu", sweep_df)
    assert len(fig.axes) == 2  # rw=read, rw=rw
    assert fig.axes[0].get_xlabel().startswith("host CPU cores")
    assert fig.get_suptitle().startswith("IOPS vs host CPU")
    part = sweep_df[(sweep_df["rw"] == "read") & (sweep_df["design"] == "vhost-blk")]
    part = part.sort_values("iodepth")
    line = next(
        ln
        for ln in fig.axes[0].lines
        if mpl.colors.to_hex(ln.get_color()) == plots.DESIGN_COLORS["vhost-blk"]
    )
    cores = part["iops"] * part["host_cpu_us_per_io"] / 1e6
    assert list(np.asarray(line.get_xdata())) == pytest.approx(cores.tolist())
    assert list(np.asarray(line.get_ydata())) == pytest.approx(part["iops"].tolist())
    with pytest.raises(ConfigError, match="host_cpu_us_per_io"):
        plots.plot_kind("cpu", SEED)


def test_plot_kind_dispatch(sweep_df: pd.DataFrame, results: list[Result]) -> None:
    assert len(plots.plot_kind("latency", sweep_df).axes) == 3
    assert len(plots.plot_kind("breakdown", sweep_df, results=results).axes) == 1
    with pytest.raises(ConfigError, match="per-I/O"):
        plots.plot_kind("cdf", sweep_df)
    with pytest.raises(ConfigError, match="unknown plot kind"):
        plots.plot_kind("pie", sweep_df)


def test_design_colors_are_stable() -> None:
    c = plots.design_colors(["vhost-blk", "mine", "virtio-blk", "other"])
    assert c["vhost-blk"] == plots.DESIGN_COLORS["vhost-blk"]
    assert len(set(c.values())) == 4
    assert plots.design_colors(["mine", "other"]) == {k: c[k] for k in ("mine", "other")}


def test_resimulate_reproduces_the_sweep(sweep_df: pd.DataFrame, results: list[Result]) -> None:
    rows = pd.DataFrame([r for res in results for r in res.rows()])
    read = sweep_df[sweep_df["rw"] == "read"].reset_index(drop=True)
    assert rows["iops"].tolist() == read["iops"].tolist()


def test_load_table_formats(tmp_path: Path, sweep_df: pd.DataFrame) -> None:
    sweep_df.to_csv(tmp_path / "s.csv", index=False)
    sweep_df.to_json(tmp_path / "s.json", orient="records")
    for name in ("s.csv", "s.json"):
        back = load_table(tmp_path / name)
        assert back["iops"].tolist() == pytest.approx(sweep_df["iops"].tolist())
    with pytest.raises(ConfigError, match="no such file"):
        load_table(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="csv"):
        load_table(tmp_path / "s.txt")


def test_html_report_is_self_contained_and_deterministic(
    tmp_path: Path, sweep_df: pd.DataFrame, results: list[Result]
) -> None:
    a = write_report(sweep_df, tmp_path / "a.html", results=results, measured=SEED, title="T")
    b = write_report(sweep_df, tmp_path / "b.html", results=results, measured=SEED, title="T")
    text = a.read_text()
    assert a.read_bytes() == b.read_bytes()
    assert text.startswith("<!DOCTYPE html>") and "<title>T</title>" in text
    srcs = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)""", text)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in text and "<script" not in text and "url(" not in text
    for heading in ("IOPS", "Latency", "Latency distribution", "Where the time goes", "Table"):
        assert f"<h2>{heading}</h2>" in text
    assert text.count("<tr>") >= len(sweep_df) + 1


def test_markdown_report_writes_plots_next_to_it(tmp_path: Path, sweep_df: pd.DataFrame) -> None:
    md = write_report(sweep_df, tmp_path / "r.md")
    text = md.read_text()
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert images == ["r-iops.png", "r-latency.png"]
    for name in images:
        assert (tmp_path / name).read_bytes().startswith(PNG)
    assert "| design |" in text or "| profile | design |" in text
    with pytest.raises(ConfigError, match=r"html or \.md"):
        write_report(sweep_df, tmp_path / "r.pdf")
