"""Health report over a large store: 1,000,000 and 10,000,000 task rows.

Writes a store with the given number of task rows (and 1 flow row per 50
tasks) spread over the window, then times ``load_frames`` + ``build_report``
in a child process and reports its peak RSS. Targets: ≤ 1 s for 1 M rows;
≤ 10 s and ≤ 2 GB for 10 M rows. Then times ``report_for`` as the health-report
flow and ``synthobs report`` run it: the same plus 14 days of daily trends over
a store that also holds 14 days of GPU samples (8 devices, one sample each per
5 s: 1.9 M rows, fewer today), which the trends read one day at a time.

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
                "attempt_errors": [None] * n,
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


def fill_gpu(store_url: str, until: datetime, days: int = 14, devices: int = 8, every_s: int = 5) -> int:
    import numpy as np
    import pyarrow as pa

    from prefect_synthobs.health.store import HealthStore
    from prefect_synthobs.health.tables import schema_for

    store = HealthStore(store_url)
    rng = np.random.default_rng(1)
    total = 0
    midnight = until.replace(hour=0, minute=0, second=0, microsecond=0)
    for d in range(days):  # one file per UTC day, the last one up to ``until``
        n = 86400 // every_s
        times = pd_ts(midnight - timedelta(days=d), np.repeat(np.arange(n) * every_s, devices).astype(float))
        times = times[times < np.datetime64(until.replace(tzinfo=None), "us")]
        m = len(times)
        table = pa.table(
            {
                # real samples carry an id: with none, an old read() kept one row per table (nulls deduplicated)
                "event_id": pa.array([f"g{d}-{i}" for i in range(m)], pa.string()),
                "time": times,
                "host": ["gpu-node-1"] * m,
                "gpu_index": np.tile(np.arange(devices), m // devices + 1)[:m],
                "gpu_uuid": [None] * m,
                "gpu_name": ["NVIDIA H100"] * m,
                "utilization": rng.random(m),
                "memory_used_bytes": np.full(m, 40 * 2**30),
                "memory_total_bytes": np.full(m, 80 * 2**30),
                "power_w": rng.uniform(100, 700, m),
                "temperature_c": rng.uniform(30, 80, m),
                "sm_clock_mhz": np.full(m, 1980),
                "energy_j": rng.uniform(500, 3500, m),
                "flow_run_id": [None] * m,
                "flow_run_ids": [[]] * m,
            },
            schema=schema_for("gpu_samples"),
        )
        store.write("gpu_samples", table)
        total += m
    return total


def pd_ts(t0: datetime, seconds):  # type: ignore[no-untyped-def]
    import numpy as np

    return np.datetime64(t0.replace(tzinfo=None), "us") + (seconds * 1e6).astype("timedelta64[us]")


def child(store_url: str) -> dict:
    from prefect_synthobs.health.store import HealthStore
    from prefect_synthobs.reports.health import build_report, load_frames, report_for

    until = datetime.now(timezone.utc)
    since = until - timedelta(hours=24)
    start = time.perf_counter()
    rep = build_report(load_frames(HealthStore(store_url), since, until), since, until)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    with_trends = report_for(HealthStore(store_url), since, until)
    trends_elapsed = time.perf_counter() - start
    assert with_trends.trends is not None and with_trends.trends.gpu_util
    return {
        "seconds": round(elapsed, 3),
        "peak_rss_mb": round(peak, 1),
        "seconds_with_14_day_trends": round(trends_elapsed, 3),
        "peak_rss_mb_with_trends": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
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
            now = datetime.now(timezone.utc)
            fill(tmp, rows, now)
            gpu_rows = fill_gpu(tmp, now)
            filled = time.perf_counter() - t
            proc = subprocess.run(
                [sys.executable, __file__, "--child", tmp], capture_output=True, text=True, check=True
            )
            results[str(rows)] = {
                **json.loads(proc.stdout.strip().splitlines()[-1]),
                "fill_seconds": round(filled, 1),
                "gpu_rows": gpu_rows,
            }
            print(rows, results[str(rows)], flush=True)
    report("report", {"results": results, "targets": {"1000000": "<= 1 s", "10000000": "<= 10 s, <= 2 GB"}})


if __name__ == "__main__":
    main()
