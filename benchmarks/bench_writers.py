"""Store writers: rows per second sustained by concurrent writer processes, and S3 vs local.

Each writer process runs the recorder's real path (``Recorder.add`` of dict rows,
``flush`` to the store every ``--batch`` rows, as a busy flow's flusher does) for
``--rows`` task rows. Reported: aggregate rows/s of ``--writers`` processes at once
against one process alone (baseline, same run), and the same single-writer path to
an S3-protocol server on loopback (moto in server mode) against the local store: ``--rounds`` rounds, each a local
and an S3 run back to back (alternating which goes first), the median ratio and its spread reported, and the
requests the S3 server logged per flush (one ``PutObject`` per table).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
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
    return float(n * rows / elapsed)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20_000, help="rows per writer")
    parser.add_argument("--batch", type=int, default=2_000, help="rows per flush")
    parser.add_argument("--rounds", type=int, default=3, help="local/S3 rounds (median ratio reported)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, spool, rows, batch, options = args.child
        writer(url, spool, int(rows), int(batch), json.loads(options))
        return
    with tempfile.TemporaryDirectory() as tmp:
        many = run_writers(args.writers, f"{tmp}/many", args.rows, args.batch)
        port = free_port()
        log = Path(tmp) / "moto.log"
        with log.open("w") as out:
            moto = subprocess.Popen(
                [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                stdout=out,
                stderr=out,
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
            ones, s3s = [], []
            requests_before = requests_logged(log)
            for r in range(args.rounds):
                for which in ("local", "s3") if r % 2 == 0 else ("s3", "local"):
                    if which == "local":
                        ones.append(run_writers(1, f"{tmp}/one-{r}", args.rows, args.batch))
                    else:
                        s3s.append(run_writers(1, f"s3://bench/synthobs-{r}", args.rows, args.batch, options))
            flushes = args.rounds * -(-args.rows // args.batch)
            s3_requests = requests_logged(log) - requests_before
        finally:
            moto.terminate()
            moto.wait()
    ratios = [s / o for s, o in zip(s3s, ones, strict=True)]
    report(
        "writers",
        {
            "writers": args.writers,
            "rows_per_writer": args.rows,
            "rows_per_flush": args.batch,
            "cores": os.cpu_count(),
            "one_writer_rows_per_s": round(statistics.median(ones)),
            "concurrent_rows_per_s": round(many),
            "concurrent_over_one": round(many / statistics.median(ones), 3),
            "s3_moto_one_writer_rows_per_s": round(statistics.median(s3s)),
            "s3_over_local": round(statistics.median(ratios), 3),
            "s3_over_local_rounds": [round(x, 3) for x in ratios],
            "s3_over_local_spread": round(max(ratios) - min(ratios), 3),
            "s3_rounds": args.rounds,
            "s3_write_requests_per_flush": round(s3_requests / flushes, 2),
            "s3_target": 0.8,
        },
    )


def requests_logged(log: Path) -> int:
    """Write requests (PUT, POST: objects, directory markers, multipart steps) the moto server has logged so far;
    the reads of each run's final count are left out."""
    time.sleep(0.2)  # it logs a request after answering it
    return len(re.findall(r'"(?:PUT|POST) \S+ HTTP/1\.[01]"', log.read_text()))


if __name__ == "__main__":
    main()
