"""Store write: 1,000,000 task rows through HealthStore.write vs raw write_table.

Both receive the same Arrow table; the baseline is ``pyarrow.parquet.write_table``
to one file with its defaults. Also reports (not a target) the recorder's full
path from Python dict rows, which is what a flow's buffered rows go through.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from prefect_synthobs import HealthStore
from prefect_synthobs.health.tables import schema_for

sys.path.insert(0, os.path.dirname(__file__))
from _common import median, report


def make_rows(n: int) -> pa.Table:
    rng = np.random.default_rng(0)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    starts = [start + timedelta(milliseconds=int(x)) for x in rng.integers(0, 3_600_000, n)]
    dur = rng.exponential(0.5, n)
    names = np.array([f"task_{i}" for i in range(40)])
    return pa.table(
        {
            "event_id": [f"{i:032x}" for i in range(n)],
            "task_run_id": [f"t{i:031x}" for i in range(n)],
            "flow_run_id": [f"f{i // 200:031x}" for i in range(n)],
            "flow_name": np.array(["train", "generate", "check"])[rng.integers(0, 3, n)],
            "task_name": names[rng.integers(0, 40, n)],
            "state_type": np.where(rng.random(n) < 0.98, "COMPLETED", "FAILED"),
            "state_name": np.where(rng.random(n) < 0.98, "Completed", "Failed"),
            "start_time": pa.array(starts, pa.timestamp("us", tz="UTC")),
            "end_time": pa.array(
                [s + timedelta(seconds=float(d)) for s, d in zip(starts, dur, strict=True)],
                pa.timestamp("us", tz="UTC"),
            ),
            "duration_s": dur,
            "run_time_s": dur,
            "run_count": pa.array(rng.integers(1, 3, n), pa.int64()),
            "error_type": pa.nulls(n, pa.string()),
            "error_message": pa.nulls(n, pa.string()),
            "tags": pa.array([[] for _ in range(n)], pa.list_(pa.string())),
            "rows": np.zeros(n, dtype="int64"),
            "source": ["hook"] * n,
            "attempt_errors": pa.nulls(n, pa.list_(pa.string())),
        },
        schema=schema_for("task_runs"),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    table = make_rows(args.rows)
    base_s, store_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for which in ("raw", "store") if r % 2 == 0 else ("store", "raw"):
                if which == "raw":
                    t = time.perf_counter()
                    pq.write_table(table, Path(tmp) / f"raw-{r}.parquet")
                    base_s.append(time.perf_counter() - t)
                else:
                    store = HealthStore(str(Path(tmp) / f"store-{r}"))
                    t = time.perf_counter()
                    store.write("task_runs", table)
                    store_s.append(time.perf_counter() - t)
        rows = table.slice(0, min(args.rows, 200_000)).to_pylist()
        t = time.perf_counter()
        HealthStore(str(Path(tmp) / "dicts")).write("task_runs", rows)
        dict_s = time.perf_counter() - t
        sizes = {
            "raw_bytes": (Path(tmp) / "raw-0.parquet").stat().st_size,
            "store_bytes": sum(p.stat().st_size for p in (Path(tmp) / "store-0").rglob("*.parquet")),
        }
    report(
        "store_write",
        {
            "rows": args.rows,
            "repeats": args.repeats,
            "raw_write_table_median_s": round(median(base_s), 4),
            "store_write_median_s": round(median(store_s), 4),
            "ratio": round(median(store_s) / median(base_s), 4),
            "target_ratio": 1.5,
            "recorder_path_from_dicts_rows": len(rows),
            "recorder_path_from_dicts_s": round(dict_s, 4),
            **sizes,
        },
    )


if __name__ == "__main__":
    main()
