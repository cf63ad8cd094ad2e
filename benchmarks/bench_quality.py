"""Quality and privacy scores at size.

- ``quality_report`` on 100,000 × 20 mixed columns (8 numerical, 2 datetime,
  8 categorical, 2 boolean; NaNs): target ≤ 2 s, peak memory ≤ 1 GB.
- ``dcr`` on 20,000 synthetic × 20,000 real rows of the same 20 columns:
  target ≤ 10 s, memory bounded by the chunk size.
- ``diagnostic_report`` on the 100,000 × 20 tables: target ≤ 0.5 s.
- ``logistic_detection`` on the 100,000 × 20 tables: target ≤ 5 s and ≤ 1 GB.
- ``disclosure_protection`` on 100,000 rows, 3 known + 1 sensitive column: target ≤ 2 s.

With ``--sdmetrics-python /tmp/sdm032/bin/python`` (a venv with SDMetrics, which
pins pandas<3) the same data is scored by SDMetrics in that interpreter, in the
same run, and the speed-up is reported (goal ≥ 3×); SDMetrics runs are cut at
``--sdmetrics-timeout`` seconds.

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


KNOWN, SENSITIVE = ["cat0", "cat1", "flag0"], ["cat2"]


def child(what: str, rows: int, chunk: int) -> dict:
    from prefect_synthobs import quality

    real, meta = table(rows, 1)
    synthetic, _ = table(rows, 2)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if what == "report":
        result = quality.quality_report(real, synthetic, meta).overall
    elif what == "diagnostic":
        result = quality.diagnostic_report(real, synthetic, meta).overall
    elif what == "detection":
        result = quality.logistic_detection(real, synthetic, meta, seed=0)
    elif what == "disclosure":
        result = quality.disclosure_protection(
            real, synthetic, known_column_names=KNOWN, sensitive_column_names=SENSITIVE
        )
    else:
        result = float(quality.dcr(synthetic, real, meta, chunk_size=chunk).median())
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": round(elapsed, 3),
        "peak_rss_growth_mb": round((peak - before) / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "value": result,
    }


def sdmetrics_child(what: str, rows: int) -> dict:
    """The same measurement with SDMetrics (run in its own venv)."""
    real, meta = table(rows, 1)
    synthetic, _ = table(rows, 2)
    start = time.perf_counter()
    if what == "report":
        from sdmetrics.reports.single_table import QualityReport

        rep = QualityReport()
        rep.generate(real, synthetic, meta, verbose=False)
        result = rep.get_score()
    elif what == "diagnostic":
        from sdmetrics.reports.single_table import DiagnosticReport

        rep = DiagnosticReport()
        rep.generate(real, synthetic, meta, verbose=False)
        result = rep.get_score()
    elif what == "detection":
        from sdmetrics.single_table import LogisticDetection

        result = LogisticDetection.compute(real, synthetic, meta)
    else:
        from sdmetrics.single_table import DisclosureProtection

        result = DisclosureProtection.compute(
            real, synthetic, known_column_names=KNOWN, sensitive_column_names=SENSITIVE
        )
    return {"seconds": round(time.perf_counter() - start, 3), "value": float(result)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report-rows", type=int, default=100_000)
    parser.add_argument("--dcr-rows", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--sdm-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--sdmetrics-python", default=None, help="a Python with SDMetrics, for side-by-side figures")
    parser.add_argument("--sdmetrics-timeout", type=float, default=600.0)
    parser.add_argument("--only", nargs="*", default=None, help="report, diagnostic, detection, disclosure, dcr")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return
    if args.sdm_child:
        print(json.dumps(sdmetrics_child(args.sdm_child[0], int(args.sdm_child[1]))))
        return
    out: dict[str, dict] = {}
    plan = [
        ("report", args.report_rows),
        ("diagnostic", args.report_rows),
        ("detection", args.report_rows),
        ("disclosure", args.report_rows),
        ("dcr", args.dcr_rows),
    ]
    for what, rows in plan:
        if args.only and what not in args.only:
            continue
        proc = subprocess.run(
            [sys.executable, __file__, "--child", what, str(rows), str(args.chunk)],
            capture_output=True,
            text=True,
            check=True,
        )
        out[what] = {"rows": rows, **json.loads(proc.stdout.strip().splitlines()[-1])}
        if args.sdmetrics_python and what != "dcr":
            try:
                theirs = subprocess.run(
                    [args.sdmetrics_python, __file__, "--sdm-child", what, str(rows)],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=args.sdmetrics_timeout,
                )
                sdm = json.loads(theirs.stdout.strip().splitlines()[-1])
                out[what]["sdmetrics_seconds"] = sdm["seconds"]
                out[what]["sdmetrics_value"] = sdm["value"]
                out[what]["speedup"] = round(sdm["seconds"] / out[what]["seconds"], 2)
            except subprocess.TimeoutExpired:
                out[what]["sdmetrics_seconds"] = f"> {args.sdmetrics_timeout:g}"
        print(what, out[what], flush=True)
    report(
        "quality",
        {
            "quality_report_100k_x_20": out.get("report"),
            "diagnostic_100k_x_20": out.get("diagnostic"),
            "detection_100k_x_20": out.get("detection"),
            "disclosure_100k_3_known_1_sensitive": out.get("disclosure"),
            "dcr_20k_x_20k": {**out["dcr"], "chunk_size": args.chunk} if "dcr" in out else None,
            "targets": {
                "quality_report_s": 2.0,
                "quality_report_mb": 1024,
                "dcr_s": 10.0,
                "diagnostic_s": 0.5,
                "detection_s": 5.0,
                "detection_mb": 1024,
                "disclosure_s": 2.0,
                "speedup_vs_sdmetrics": 3.0,
            },
        },
    )


if __name__ == "__main__":
    main()
