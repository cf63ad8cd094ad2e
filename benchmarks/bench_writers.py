"""Store writers: rows per second sustained by concurrent writer processes, and S3 vs local.

Each writer process runs the recorder's real path (``Recorder.add`` of dict rows,
``flush`` to the store every ``--batch`` rows, as a busy flow's flusher does) for
``--rows`` task rows. Reported: aggregate rows/s of ``--writers`` processes at once
against one process alone (baseline, same run), and the same single-writer path to
an S3-protocol server on loopback (moto in server mode) against the local store.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import report


def writer(store_url: str, spool: str, rows: int, batch: int, options: dict[str, str] | None) -> None:
    from prefect_synthobs.health.recorder import Recorder
    from prefect_synthobs.health.rows import task_row
    from prefect_synthobs.health.store import HealthStore

    store = HealthStore(store_url, storage_options=options)
    recorder = Recorder(lambda: store, Path(spool), store_timeout=60)
    when = datetime.now(timezone.utc)
    began = time.time()  # wall clock: compared across the writer processes
    pid = os.getpid()
    for i in range(rows):
        recorder.add(
            "task_runs",
            task_row(
                task_run_id=f"{pid}-{i}",
                flow_run_id=f"{pid}-{i // 20}",
                flow_name="bench",
                task_name="step",
                state_type="COMPLETED",
                state_name="Completed",
                start_time=when,
                end_time=when,
                run_count=1,
            ),
        )
        if (i + 1) % batch == 0:
            recorder.flush()
    recorder.flush()
    print(json.dumps({"began": began, "ended": time.time()}))
    assert not recorder.spooled_files(), "rows were spooled: the store refused writes"


def run_writers(n: int, store_url: str, rows: int, batch: int, options: dict[str, str] | None = None) -> float:
    """Aggregate rows per second of ``n`` writer processes started together (their interpreter start-up left out:
    from the first writer's first row to the last writer's last flush)."""
    spool = tempfile.mkdtemp(prefix="synthobs-bench-spool-")
    cmd = [sys.executable, __file__, "--child", store_url, spool, str(rows), str(batch), json.dumps(options)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    spans = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a writer failed (exit {proc.returncode})")
        spans.append(json.loads(out.strip().splitlines()[-1]))
    elapsed = max(s["ended"] for s in spans) - min(s["began"] for s in spans)
    from prefect_synthobs.health.store import HealthStore

    written = HealthStore(store_url, storage_options=options).count("task_runs")
    if written != n * rows:
        raise SystemExit(f"expected {n * rows} rows in the store, found {written}")
    return n * rows / elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20_000, help="rows per writer")
    parser.add_argument("--batch", type=int, default=2_000, help="rows per flush")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, spool, rows, batch, options = args.child
        writer(url, spool, int(rows), int(batch), json.loads(options))
        return
    with tempfile.TemporaryDirectory() as tmp:
        one = run_writers(1, f"{tmp}/one", args.rows, args.batch)
        many = run_writers(args.writers, f"{tmp}/many", args.rows, args.batch)
        port = free_port()
        moto = subprocess.Popen(
            [str(Path(sys.executable).with_name("moto_server")), "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            endpoint = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    urllib.request.urlopen(endpoint, timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            request = urllib.request.Request(f"{endpoint}/bench", method="PUT")
            urllib.request.urlopen(request, timeout=10)
            options = {
                "access_key": "bench",
                "secret_key": "bench",
                "endpoint_override": endpoint,
                "region": "us-east-1",
                "scheme": "http",
            }
            s3 = run_writers(1, "s3://bench/synthobs", args.rows, args.batch, options)
        finally:
            moto.terminate()
            moto.wait()
    report(
        "writers",
        {
            "writers": args.writers,
            "rows_per_writer": args.rows,
            "rows_per_flush": args.batch,
            "cores": os.cpu_count(),
            "one_writer_rows_per_s": round(one),
            "concurrent_rows_per_s": round(many),
            "concurrent_over_one": round(many / one, 3),
            "s3_moto_one_writer_rows_per_s": round(s3),
            "s3_over_local": round(s3 / one, 3),
        },
    )


if __name__ == "__main__":
    main()
