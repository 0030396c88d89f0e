"""Measured vs predicted latency against offered load (fio's rate_iops), one row per rate and
design, from each rate's dataset and its validation report (vsim validate --report).

Run after measure.sh and the reports (README.md here gives the commands):

    python validation/local-rate/summary.py > validation/local-rate/summary.md
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
COLS = ("iops", "lat_mean_us", "lat_p99_us")


def main() -> None:
    rows = []
    for d in sorted(HERE.glob("*-*/report/table.csv")):
        name = d.parent.parent.name
        process, rate = name.split("-")
        t = pd.read_csv(d)
        for _, r in t.iterrows():
            row = {"process": process, "rate_iops": int(rate), "design": r["design"]}
            for c in COLS:
                row[f"{c}_meas"] = r[f"{c}_meas"]
                row[f"{c}_ci_pct"] = r[f"{c}_ci_pct"]
                row[f"{c}_pred"] = r[f"{c}_pred"]
                row[f"{c}_err_pct"] = r[f"{c}_err_pct"]
            rows.append(row)
    df = pd.DataFrame(rows).sort_values(["process", "design", "rate_iops"])
    print("```")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print("```")
    print()
    for c in COLS:
        err = df[f"{c}_err_pct"].abs()
        print(f"- {c}: median |error| {err.median():.1f} %, worst {err.max():.1f} % over {len(df)}")


if __name__ == "__main__":
    main()
