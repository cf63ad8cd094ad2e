"""Health report over a large store, against DuckDB computing the same aggregates in the same run.

Writes (once, cached in ``~/.cache/synthobs-bench`` keyed by ``FILL_VERSION``) a store of the given number of task
rows (0.2 % written twice, 1 flow row per 50 tasks, 14 days of GPU samples), then, in a child process each and
alternating for ``--rounds`` rounds, times ``load_frames`` + ``build_report`` and ``BASELINE_SQL`` (DuckDB over the
same Parquet, as a user would write it), with peak RSS. ``--s3`` does the same on a copy in moto (loopback).
Targets: 10 M rows ≤ 1.0× DuckDB and ≤ 1 GB; 100 M rows ≤ 4 GB, local and S3.

    python benchmarks/bench_report.py --rows 1000000 10000000 100000000 --s3 10000000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(__file__))
from _common import bench_bucket, report

FILL_VERSION = 2
"""Bump when ``fill`` changes: the cached 100 M store (``CACHE``) is keyed by it."""
CACHE = os.path.expanduser("~/.cache/synthobs-bench")
UNTIL = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
"""The window's end: fixed, so a cached store is the same store (the window spans two day partitions)."""


def _ids(prefix: str, idx):  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(pa.scalar(prefix), pc.cast(pa.array(idx), pa.string()), "")


def fill(store_url: str, rows: int, until: datetime, chunk: int = 1_000_000, repeated: float = 0.002) -> None:
    """``rows`` task rows over the 23 hours before ``until`` (20 flows, 100 tasks, 2 % failed, 1 % retried) written
    as Parquet directly, vectorised (100 M rows in about 2 minutes), plus a share ``repeated`` written twice (the
    same ``event_id``: a compaction seen half done); then one flow row per 50 tasks."""
    import uuid

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from prefect_synthobs.health.tables import schema_for

    rng = np.random.default_rng(0)
    flows = pa.array([f"flow-{k}" for k in range(20)])
    tasks = pa.array([f"task-{k}" for k in range(100)])
    t0 = np.datetime64(until.replace(tzinfo=None), "us") - np.timedelta64(23 * 3600 * 10**6, "us")
    stamp = pa.timestamp("us", tz="UTC")
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        idx = np.arange(start, start + n)
        starts = t0 + (rng.uniform(0, 23 * 3600, n) * 1e6).astype("int64").astype("timedelta64[us]")
        dur = rng.exponential(2.0, n)
        failed = rng.random(n) >= 0.98
        table = pa.table(
            {
                "event_id": _ids("e", idx),
                "task_run_id": _ids("t", idx),
                "flow_run_id": _ids("f", idx // 50),
                "flow_name": flows.take(pa.array(rng.integers(0, 20, n))),
                "task_name": tasks.take(pa.array(rng.integers(0, 100, n))),
                "state_type": pa.array(np.where(failed, "FAILED", "COMPLETED")),
                "state_name": pa.array(np.where(failed, "Failed", "Completed")),
                "start_time": pa.array(starts, stamp),
                "end_time": pa.array(starts + (dur * 1e6).astype("timedelta64[us]"), stamp),
                "duration_s": dur,
                "run_time_s": dur,
                "run_count": np.where(rng.random(n) < 0.01, 2, 1).astype("int64"),
                "error_type": pa.array(np.where(failed, "ValueError", None)),
                "error_message": pa.array(np.where(failed, "bad input in batch", None)),
                "tags": pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, "int32")), pa.array([], pa.string())),
                "rows": np.zeros(n, dtype="int64"),
                "source": pa.array(np.full(n, "hook")),
                "attempt_errors": pa.nulls(n, pa.list_(pa.string())),
            },
            schema=schema_for("task_runs"),
        )
        days = pc.strftime(table["start_time"], "%Y-%m-%d")
        for day in pc.unique(days).to_pylist():
            part = table.filter(pc.equal(days, day))
            directory = f"{store_url}/task_runs/date={day}"
            os.makedirs(directory, exist_ok=True)
            pq.write_table(part, f"{directory}/part-{uuid.uuid4().hex}.parquet")
            if repeated:
                pq.write_table(
                    part.slice(0, int(part.num_rows * repeated)), f"{directory}/part-{uuid.uuid4().hex}.parquet"
                )
    n = rows // 50
    starts = t0 + (rng.uniform(0, 23 * 3600, n) * 1e6).astype("int64").astype("timedelta64[us]")
    runs = pa.table(
        {
            "event_id": _ids("fe", np.arange(n)),
            "flow_run_id": _ids("f", np.arange(n)),
            "flow_name": flows.take(pa.array(np.arange(n) % 20)),
            "kind": pa.array(np.full(n, "generation")),
            "state_type": pa.array(np.full(n, "COMPLETED")),
            "start_time": pa.array(starts, stamp),
            "duration_s": np.full(n, 100.0),
            "rows": np.full(n, 1000, dtype="int64"),
        }
    )
    runs = pa.table(
        {f.name: runs[f.name] if f.name in runs.column_names else pa.nulls(n, f.type) for f in schema_for("flow_runs")},
        schema=schema_for("flow_runs"),
    )
    days = pc.strftime(runs["start_time"], "%Y-%m-%d")
    for day in pc.unique(days).to_pylist():
        directory = f"{store_url}/flow_runs/date={day}"
        os.makedirs(directory, exist_ok=True)
        pq.write_table(runs.filter(pc.equal(days, day)), f"{directory}/part-{uuid.uuid4().hex}.parquet")


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


BASELINE_SQL = """
    WITH t AS (
        SELECT * FROM {source} WHERE start_time >= $since AND start_time < $until
        QUALIFY row_number() OVER (PARTITION BY event_id) = 1
    )
    SELECT flow_name, task_name, count(*) AS runs,
           count(*) FILTER (WHERE state_type IN ('FAILED', 'CRASHED')) AS failed,
           count(*) FILTER (WHERE coalesce(run_count, 1) > 1) AS retried,
           quantile_cont(duration_s, [0.5, 0.95]) AS p50_p95, max(duration_s) AS max
    FROM t GROUP BY GROUPING SETS ((flow_name, task_name), (flow_name), ())
"""
"""What a user would run in DuckDB over the same Parquet: dedupe by ``event_id``, counts per flow and task,
failures, retries, p50/p95 and max of the durations."""


def _store(store_url: str, options: dict):  # type: ignore[no-untyped-def]
    from prefect_synthobs.health.store import HealthStore

    return HealthStore(store_url, storage_options=options or None)


def child(store_url: str, options: dict, mode: str) -> dict:
    """One measurement in this (fresh) process: ``synthobs`` (``load_frames`` + ``build_report``, then
    ``report_for`` with 14 days of trends) or ``duckdb`` (``BASELINE_SQL``)."""
    since, until = UNTIL - timedelta(hours=24), UNTIL
    if mode == "duckdb":
        import duckdb

        con = duckdb.connect()
        if store_url.startswith("s3://"):  # no httpfs here (nor for many users): DuckDB over a pyarrow dataset
            import pyarrow.dataset as ds

            dataset = _store(store_url, options).dataset("task_runs")
            con.register("task_rows", ds.dataset(dataset.files, filesystem=dataset.filesystem, format="parquet"))
            source = "task_rows"
        else:
            source = f"read_parquet('{store_url}/task_runs/*/*.parquet', hive_partitioning = true)"
        start = time.perf_counter()
        rows = con.execute(BASELINE_SQL.format(source=source), {"since": since, "until": until}).fetchall()
        elapsed = time.perf_counter() - start
        con.close()
        total = next(r for r in rows if r[0] is None and r[1] is None and r[2] > 0)
        return {"seconds": round(elapsed, 3), "peak_rss_mb": _peak(), "tasks": total[2], "failed_tasks": total[3]}
    from prefect_synthobs.reports.health import build_report, load_frames, report_for

    start = time.perf_counter()
    rep = build_report(load_frames(_store(store_url, options), since, until), since, until)
    elapsed = time.perf_counter() - start
    out = {
        "seconds": round(elapsed, 3),
        "peak_rss_mb": _peak(),
        "tasks": rep.totals["tasks"],
        "failed_tasks": rep.totals["failed_tasks"],
        "runs": rep.totals["runs"],
    }
    if mode == "synthobs+trends":
        start = time.perf_counter()
        with_trends = report_for(_store(store_url, options), since, until)
        out["seconds_with_14_day_trends"] = round(time.perf_counter() - start, 3)
        out["peak_rss_mb_with_trends"] = _peak()
        assert with_trends.trends is not None and with_trends.trends.gpu_util
    return out


def _peak() -> float:
    """This process's own peak RSS in MB: ``VmHWM`` of its address space. Not ``ru_maxrss``: Linux carries the
    spawning parent's peak over ``exec`` into it (the baseline's child showed ours, the parent's, exactly)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _run_child(store_url: str, options: dict, mode: str) -> dict:
    """One child's figures, or ``{"error": ...}`` (its last lines of stderr) when it failed: at 100 M rows the
    baseline may run out of memory, which is a figure too, not a reason to lose ours."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", store_url, json.dumps(options), mode], capture_output=True, text=True
    )
    if proc.returncode:
        return {"error": " | ".join(proc.stderr.strip().splitlines()[-3:]), "seconds": None, "peak_rss_mb": None}
    result: dict = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def cached_store(rows: int) -> tuple[str, float, int]:
    """The store of ``rows`` task rows (and 14 days of GPU samples), made once and kept in ``CACHE`` (keyed by
    ``FILL_VERSION``); ``(path, seconds the fill took (0: cached), GPU rows)``."""
    import shutil

    path = os.path.join(CACHE, f"report-{rows}-v{FILL_VERSION}")
    done = os.path.join(path, ".complete")
    if os.path.exists(done):
        with open(done) as f:
            return path, 0.0, int(f.read())
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    t = time.perf_counter()
    fill(path, rows, UNTIL)
    gpu_rows = fill_gpu(path, UNTIL)
    filled = time.perf_counter() - t
    with open(done, "w") as f:
        f.write(str(gpu_rows))
    return path, round(filled, 1), gpu_rows


def measure(store_url: str, options: dict, rounds: int, trends: bool, baseline: bool = True) -> dict:
    """``rounds`` alternating runs of synthobs and the DuckDB baseline, each in a child process: medians. Without
    ``baseline`` ours stand alone (``duckdb_error`` says why)."""
    ours, theirs = [], []
    for k in range(rounds):
        ours.append(_run_child(store_url, options, "synthobs+trends" if trends and k == 0 else "synthobs"))
        assert "error" not in ours[-1], ours[-1]
        if not baseline:
            theirs.append({"error": "baseline skipped (--no-duckdb-above)", "seconds": None, "peak_rss_mb": None})
            continue
        theirs.append(_run_child(store_url, options, "duckdb"))
        if "error" in theirs[-1]:
            continue
        assert ours[-1]["tasks"] == theirs[-1]["tasks"], (ours[-1], theirs[-1])  # the same rows counted
        assert ours[-1]["failed_tasks"] == theirs[-1]["failed_tasks"], (ours[-1], theirs[-1])
    seconds = statistics.median(r["seconds"] for r in ours)
    done = [r for r in theirs if "error" not in r]
    if not done:  # the baseline failed every round: ours stands alone, with the baseline's error
        return {
            **ours[0],
            "seconds": seconds,
            "seconds_all": [r["seconds"] for r in ours],
            "rounds": rounds,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in ours),
            "duckdb_error": theirs[-1]["error"],
        }
    duck = statistics.median(r["seconds"] for r in done)
    theirs = done
    return {
        **ours[0],
        "seconds": seconds,
        "seconds_all": [r["seconds"] for r in ours],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in ours),
        "duckdb_seconds": duck,
        "duckdb_seconds_all": [r["seconds"] for r in theirs],
        "duckdb_peak_rss_mb": max(r["peak_rss_mb"] for r in theirs),
        "ratio_vs_duckdb": round(seconds / duck, 3),
        "rounds": rounds,
    }


@contextlib.contextmanager
def moto_store(local: str):  # type: ignore[no-untyped-def]
    """A moto S3 server on loopback holding a copy of the store at ``local``; ``(url, options)``; stopped after."""
    import socket

    import pyarrow.fs as pafs

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    moto = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        bench_bucket(endpoint)
        options = {"access_key": "bench", "secret_key": "bench", "endpoint_override": endpoint, "region": "us-east-1"}
        fs = pafs.S3FileSystem(
            access_key="bench", secret_key="bench", endpoint_override=endpoint, scheme="http", region="us-east-1"
        )
        for table in ("task_runs", "flow_runs", "gpu_samples"):
            pafs.copy_files(f"{local}/{table}", f"bench/synthobs/{table}", destination_filesystem=fs, use_threads=True)
        yield "s3://bench/synthobs", {**options, "scheme": "http"}
    finally:
        moto.terminate()
        moto.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--s3", type=int, nargs="*", default=[], help="task rows for the S3 (moto) runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-duckdb-above",
        type=int,
        default=None,
        metavar="ROWS",
        help="skip the DuckDB baseline for stores over ROWS task rows (at 100 M its window query spilled > 50 GB)",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, options, mode = args.child
        print(json.dumps(child(url, json.loads(options), mode)))
        return
    results: dict = {}
    for rows in args.rows:
        path, filled, gpu_rows = cached_store(rows)
        rounds = args.rounds if rows <= 10_000_000 else 1
        baseline = args.no_duckdb_above is None or rows <= args.no_duckdb_above
        results[str(rows)] = {
            **measure(path, {}, rounds, trends=True, baseline=baseline),
            "fill_seconds": filled,
            "gpu_rows": gpu_rows,
        }
        print(rows, results[str(rows)], flush=True)
    s3: dict = {}
    for rows in args.s3:
        path, _, _ = cached_store(rows)
        with moto_store(path) as (url, options):
            baseline = args.no_duckdb_above is None or rows <= args.no_duckdb_above
            s3[str(rows)] = measure(
                url, options, args.rounds if rows <= 10_000_000 else 1, trends=False, baseline=baseline
            )
        print("s3", rows, s3[str(rows)], flush=True)
    report(
        "report",
        {
            "results": results,
            "results_s3": s3,
            "targets": {
                "1000000": "<= 1 s",
                "10000000": "<= 1.0x DuckDB, <= 1 GB",
                "100000000": "<= 4 GB, local and S3",
            },
        },
    )


if __name__ == "__main__":
    main()
