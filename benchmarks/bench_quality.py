"""Quality and privacy scores at size.

- ``quality_report`` on 100,000 × 20 mixed columns (8 numerical, 2 datetime,
  8 categorical, 2 boolean; NaNs): target ≤ 2 s, peak memory ≤ 1 GB.
- ``dcr`` on 20,000 synthetic × 20,000 real rows of the same 20 columns:
  target ≤ 10 s, memory bounded by the chunk size.

Memory is the peak RSS growth of a child process per measurement (Linux
``ru_maxrss``), so one measurement cannot hide another's.

    python benchmarks/bench_quality.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np
import pandas as pd
from _common import report


def table(n: int, seed: int) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    meta: dict[str, dict] = {}
    base = rng.normal(size=n)
    for i in range(8):
        values = base * (i % 3) + rng.normal(size=n) * (1 + i)
        values[rng.random(n) < 0.02] = np.nan
        cols[f"num{i}"], meta[f"num{i}"] = values, {"sdtype": "numerical"}
    for i in range(2):
        ts = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 365 * 86400, n), unit="s")
        cols[f"ts{i}"], meta[f"ts{i}"] = ts, {"sdtype": "datetime"}
    for i in range(8):
        k = 3 + 4 * i
        values = rng.integers(0, k, n).astype(str).astype(object)
        values[base > 1.0] = "hot" if i % 2 else values[base > 1.0]
        cols[f"cat{i}"], meta[f"cat{i}"] = values, {"sdtype": "categorical"}
    for i in range(2):
        cols[f"flag{i}"], meta[f"flag{i}"] = (rng.random(n) < 0.3 + 0.2 * i).astype(object), {"sdtype": "boolean"}
    return pd.DataFrame(cols), {"columns": meta}


def child(what: str, rows: int, chunk: int) -> dict:
    from prefect_synthobs.quality import dcr, quality_report

    real, meta = table(rows, 1)
    synthetic, _ = table(rows, 2)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if what == "report":
        result = quality_report(real, synthetic, meta).overall
    else:
        result = float(dcr(synthetic, real, meta, chunk_size=chunk).median())
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": round(elapsed, 3),
        "peak_rss_growth_mb": round((peak - before) / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "value": result,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report-rows", type=int, default=100_000)
    parser.add_argument("--dcr-rows", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return
    out = {}
    for what, rows in (("report", args.report_rows), ("dcr", args.dcr_rows)):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", what, str(rows), str(args.chunk)],
            capture_output=True,
            text=True,
            check=True,
        )
        out[what] = {"rows": rows, **json.loads(proc.stdout.strip().splitlines()[-1])}
        print(what, out[what], flush=True)
    report(
        "quality",
        {
            "quality_report_100k_x_20": out["report"],
            "dcr_20k_x_20k": {**out["dcr"], "chunk_size": args.chunk},
            "targets": {"quality_report_s": 2.0, "quality_report_mb": 1024, "dcr_s": 10.0},
        },
    )


if __name__ == "__main__":
    main()
