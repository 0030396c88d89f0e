"""A sweep's page: one self-contained HTML or Markdown file with its tables and plots."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from vsim.__version__ import __version__
from vsim.breakdown import SEGMENT_LABELS, SEGMENT_NAMES, SEGMENTS, breakdown
from vsim.errors import ConfigError
from vsim.outputs import write_atomic
from vsim.plots.breakdown import plot_breakdown
from vsim.plots.cdf import cdf_samples, plot_cdf
from vsim.plots.figures import plot_iops, plot_latency, save
from vsim.results import Result

__all__ = [
    "REPORT_FORMATS",
    "write_report",
]

REPORT_FORMATS = (".html", ".htm", ".md")
_CSS = """
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #222;
       max-width: 1180px; margin: 2em auto; padding: 0 1.5em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
p.meta { color: #555; margin-top: 0; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.5em 0 1.5em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #e5e5e5; text-align: right; }
th { background: #f5f5f5; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
.scroll { overflow-x: auto; }
"""


@dataclass(frozen=True)
class _Section:
    heading: str
    text: str
    figure: Figure | None = None
    table: pd.DataFrame | None = None
    slug: str = ""
    notes: tuple[tuple[str, str], ...] = ()  # (term, explanation) pairs shown as a list


# ------------------------------------------------------------------------------ content


def _describe(df: pd.DataFrame) -> str:
    parts = []
    for col, name in (
        ("profile", "profile"),
        ("design", "designs"),
        ("rw", "rw"),
        ("bs", "bs"),
        ("iodepth", "iodepth"),
        ("method", "method"),
        ("seed", "seed"),
    ):
        if col in df.columns:
            vals = list(dict.fromkeys(df[col].tolist()))
            if col == "iodepth":
                vals = sorted(vals)
            parts.append(f"{name} {', '.join(str(v) for v in vals)}")
    return "; ".join(parts)


def _breakdown_table(bd: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in ("source", "design", "rw", "bs", "iodepth") if c in bd.columns]
    wide = bd.pivot_table(index=keys, columns="stage", values="mean_us", sort=False)
    wide = wide[[s for s in SEGMENT_NAMES if s in wide.columns]]
    wide["total"] = wide.sum(axis=1)
    wide.columns = [f"{SEGMENT_LABELS.get(c, c)} (µs)" for c in wide.columns]
    return wide.reset_index()


def _sections(
    df: pd.DataFrame, results: Sequence[Result] | None, measured: pd.DataFrame | None
) -> list[_Section]:
    secs = [
        _Section(
            "IOPS",
            "I/Os per second against iodepth; a mixed job's directions added up.",
            plot_iops(df, measured),
            slug="iops",
        ),
    ]
    if "lat_mean_us" in df.columns:
        secs.append(
            _Section(
                "Latency",
                "Mean total latency (slat + clat) per direction"
                + (", with its p50-p99 band." if "lat_p99_us" in df.columns else "."),
                plot_latency(df, measured),
                slug="latency",
            )
        )
    if results:
        secs.append(
            _Section(
                "Latency distribution",
                "Total latency of every simulated I/O of each point.",
                plot_cdf(cdf_samples(results)),
                slug="cdf",
            )
        )
        bd = breakdown(results)
        secs.append(
            _Section(
                "Where the time goes",
                "Mean time per I/O in each segment of its path, from fio's submit to its reap:",
                plot_breakdown(bd),
                _breakdown_table(bd),
                slug="breakdown",
                notes=tuple((s.label, s.what) for s in SEGMENTS),
            )
        )
    secs.append(
        _Section("Table", "One row per point and direction (units in column names).", table=df)
    )
    if measured is not None and len(measured):
        secs.append(
            _Section("Measured", "The measured points drawn in the plots above.", table=measured)
        )
    return secs


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.1f}"
    return str(v)


def _png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None}, facecolor="white")
    return buf.getvalue()


def _html_table(df: pd.DataFrame) -> str:
    text_cols = {c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])}
    head = "".join(
        f'<th class="{"text" if c in text_cols else "num"}">{html.escape(str(c))}</th>'
        for c in df.columns
    )
    body = []
    for row in df.itertuples(index=False):
        cells = "".join(
            f'<td class="{"text" if c in text_cols else "num"}">{html.escape(_fmt(v))}</td>'
            for c, v in zip(df.columns, row, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _md_table(df: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        return _fmt(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |"]
    aligns = ["---:" if pd.api.types.is_numeric_dtype(df[c]) else ":---" for c in df.columns]
    lines.append("| " + " | ".join(aligns) + " |")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _render_html(title: str, meta: str, secs: list[_Section]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{html.escape(meta)}</p>',
    ]
    for s in secs:
        parts.append(f"<h2>{html.escape(s.heading)}</h2>")
        parts.append(f"<p>{html.escape(s.text)}</p>")
        if s.notes:
            items = "".join(
                f"<li><b>{html.escape(t)}</b>: {html.escape(x)}</li>" for t, x in s.notes
            )
            parts.append(f"<ul>{items}</ul>")
        if s.figure is not None:
            data = base64.b64encode(_png_bytes(s.figure)).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(s.heading)}" '
                f'src="data:image/png;base64,{data}"></figure>'
            )
        if s.table is not None:
            parts.append(_html_table(s.table))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _render_md(title: str, meta: str, secs: list[_Section], out: Path) -> str:
    parts = [f"# {title}", "", meta, ""]
    for s in secs:
        parts += [f"## {s.heading}", "", s.text, ""]
        if s.notes:
            parts += [*(f"- **{t}**: {x}" for t, x in s.notes), ""]
        if s.figure is not None:
            img = out.with_name(f"{out.stem}-{s.slug}.png")
            save(s.figure, img, dpi=110)
            parts += [f"![{s.heading}]({img.name})", ""]
        if s.table is not None:
            parts += [_md_table(s.table), ""]
    return "\n".join(parts)


def write_report(
    sweep_df: pd.DataFrame,
    out_path: str | Path,
    *,
    results: Sequence[Result] | None = None,
    measured: pd.DataFrame | None = None,
    title: str = "vsim report",
) -> Path:
    """Write a report of a sweep: HTML (.html: one file, plots embedded) or Markdown (.md).

    Sections: IOPS and latency vs iodepth (with `measured` points when given), the latency CDFs
    and the per-stage breakdown when per-I/O `results` are given (see `resimulate`), and the
    tidy table. Markdown reports write their PNGs next to the page (`<stem>-<plot>.png`). The
    content depends only on the inputs (no dates), so two writes give identical files.
    """
    out = Path(out_path)
    ext = out.suffix.lower()
    if ext not in REPORT_FORMATS:
        raise ConfigError(f"cannot write a report as {out.name!r}: use a .html or .md file name")
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write {out}: directory {out.parent} does not exist")
    if len(sweep_df) == 0:
        raise ConfigError("the sweep table is empty: nothing to report")
    meta = f"{_describe(sweep_df)}. vsim {__version__}."
    secs = _sections(sweep_df, results, measured)
    text = _render_md(title, meta, secs, out) if ext == ".md" else _render_html(title, meta, secs)
    write_atomic(out, text)
    return out
