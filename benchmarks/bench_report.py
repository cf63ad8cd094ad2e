"""Health report over a large store: 1,000,000 and 10,000,000 task rows.

Writes a store with the given number of task rows (and 1 flow row per 50
tasks) spread over the window, then times ``load_frames`` + ``build_report``
in a child process and reports its peak RSS. Targets: ≤ 1 s for 1 M rows;
≤ 10 s and ≤ 2 GB for 10 M rows.

    python benchmarks/bench_report.py --rows 1000000 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(__file__))
from _common import report


def fill(store_url: str, rows: int, until: datetime) -> None:
    import numpy as np
    import pyarrow as pa

    from prefect_synthobs.health.store import HealthStore
    from prefect_synthobs.health.tables import schema_for

    store = HealthStore(store_url)
    rng = np.random.default_rng(0)
    chunk = 1_000_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        t0 = until - timedelta(hours=23)
        starts = pd_ts(t0, rng.uniform(0, 23 * 3600, n))
        dur = rng.exponential(2.0, n)
        table = pa.table(
            {
                "event_id": [f"e{start + i}" for i in range(n)],
                "task_run_id": [f"t{start + i}" for i in range(n)],
                "flow_run_id": [f"f{(start + i) // 50}" for i in range(n)],
                "flow_name": rng.choice([f"flow-{k}" for k in range(20)], n),
                "task_name": rng.choice([f"task-{k}" for k in range(100)], n),
                "state_type": np.where(rng.random(n) < 0.98, "COMPLETED", "FAILED"),
                "state_name": ["Completed"] * n,
                "start_time": starts,
                "end_time": starts + (dur * 1e6).astype("timedelta64[us]"),
                "duration_s": dur,
                "run_time_s": dur,
                "run_count": np.ones(n, dtype="int64"),
                "error_type": [None] * n,
                "error_message": [None] * n,
                "tags": [[]] * n,
                "rows": np.zeros(n, dtype="int64"),
                "source": ["hook"] * n,
            },
            schema=schema_for("task_runs"),
        )
        store.write("task_runs", table)
    flows = rows // 50
    starts = pd_ts(until - timedelta(hours=23), rng.uniform(0, 23 * 3600, flows))
    store.write(
        "flow_runs",
        [
            {
                "event_id": f"fe{i}",
                "flow_run_id": f"f{i}",
                "flow_name": f"flow-{i % 20}",
                "kind": "generation",
                "state_type": "COMPLETED",
                "start_time": starts[i].astype(datetime),
                "duration_s": 100.0,
                "rows": 1000,
            }
            for i in range(flows)
        ],
    )


def pd_ts(t0: datetime, seconds):  # type: ignore[no-untyped-def]
    import numpy as np

    return np.datetime64(t0.replace(tzinfo=None), "us") + (seconds * 1e6).astype("timedelta64[us]")


def child(store_url: str) -> dict:
    from prefect_synthobs.health.store import HealthStore
    from prefect_synthobs.reports.health import build_report, load_frames

    until = datetime.now(timezone.utc)
    since = until - timedelta(hours=24)
    start = time.perf_counter()
    rep = build_report(load_frames(HealthStore(store_url), since, until), since, until)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": round(elapsed, 3),
        "peak_rss_mb": round(peak, 1),
        "tasks": rep.totals["tasks"],
        "runs": rep.totals["runs"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    results = {}
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            fill(tmp, rows, datetime.now(timezone.utc))
            filled = time.perf_counter() - t
            proc = subprocess.run(
                [sys.executable, __file__, "--child", tmp], capture_output=True, text=True, check=True
            )
            results[str(rows)] = {**json.loads(proc.stdout.strip().splitlines()[-1]), "fill_seconds": round(filled, 1)}
            print(rows, results[str(rows)], flush=True)
    report("report", {"results": results, "targets": {"1000000": "<= 1 s", "10000000": "<= 10 s, <= 2 GB"}})


if __name__ == "__main__":
    main()
