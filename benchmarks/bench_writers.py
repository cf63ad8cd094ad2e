"""Store writers: rows per second sustained by concurrent writer processes, and S3 vs local.

Each writer process runs the recorder's real path (``Recorder.add`` of dict rows,
``flush`` to the store every ``--batch`` rows, as a busy flow's flusher does) for
``--rows`` task rows. Reported: aggregate rows/s of ``--writers`` processes at once
against one process alone (baseline, same run), and the same single-writer path to
an S3-protocol server on loopback (moto in server mode) against the local store: ``--rounds`` rounds, each a local
run and one against each of two moto servers back to back (each going first in turn), the median ratio and its
spread reported, and the requests each server logged per flush (one ``PutObject`` per table). The two servers:
moto with ``TCP_NODELAY`` on its connections (the target's), and moto as ``moto_server`` starts it, whose
development server stalls about every other request on its own small writes (``_moto_nodelay.py`` says how).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import bench_bucket, report


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
    try:
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
        spans = []
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"a writer failed (exit {proc.returncode})")
            spans.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    elapsed = max(s["ended"] for s in spans) - min(s["began"] for s in spans)
    from prefect_synthobs.health.store import HealthStore

    written = HealthStore(store_url, storage_options=options).count("task_runs")
    if written != n * rows:
        raise SystemExit(f"expected {n * rows} rows in the store, found {written}")
    return float(n * rows / elapsed)


SERVERS = {
    "nodelay": [sys.executable, str(Path(__file__).with_name("_moto_nodelay.py"))],
    "stock": [str(Path(sys.executable).with_name("moto_server"))],
}
"""The S3 servers the store is measured against: moto as ``moto_server`` runs it, and moto with ``TCP_NODELAY`` (the
target's: the stock one stalls on its own small writes, see ``_moto_nodelay.py``)."""


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
        logs = {which: Path(tmp) / f"moto-{which}.log" for which in SERVERS}
        servers, endpoints = {}, {}
        try:
            for which, command in SERVERS.items():
                port = free_port()
                with logs[which].open("w") as out:
                    command = [*command, "-H", "127.0.0.1", "-p", str(port)]
                    servers[which] = subprocess.Popen(command, stdout=out, stderr=out)
                endpoints[which] = f"http://127.0.0.1:{port}"
            options = {}
            for which, endpoint in endpoints.items():
                bench_bucket(endpoint)
                options[which] = {
                    "access_key": "bench",
                    "secret_key": "bench",
                    "endpoint_override": endpoint,
                    "region": "us-east-1",
                    "scheme": "http",
                }
            ones: list[float] = []
            s3s: dict[str, list[float]] = {which: [] for which in SERVERS}
            requests_before = {which: requests_logged(log) for which, log in logs.items()}
            order = ["local", *SERVERS]
            for r in range(args.rounds):
                for which in order[r % len(order) :] + order[: r % len(order)]:  # each goes first in turn
                    if which == "local":
                        ones.append(run_writers(1, f"{tmp}/one-{r}", args.rows, args.batch))
                    else:
                        url = f"s3://bench/synthobs-{r}"
                        s3s[which].append(run_writers(1, url, args.rows, args.batch, options[which]))
            flushes = args.rounds * -(-args.rows // args.batch)
            s3_requests = {which: requests_logged(log) - requests_before[which] for which, log in logs.items()}
        finally:
            for server in servers.values():
                server.terminate()
                server.wait()
    ratios = [s / o for s, o in zip(s3s["nodelay"], ones, strict=True)]
    stock = [s / o for s, o in zip(s3s["stock"], ones, strict=True)]
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
            "s3_moto_one_writer_rows_per_s": round(statistics.median(s3s["nodelay"])),
            "s3_over_local": round(statistics.median(ratios), 3),
            "s3_over_local_rounds": [round(x, 3) for x in ratios],
            "s3_over_local_spread": round(max(ratios) - min(ratios), 3),
            "s3_rounds": args.rounds,
            "s3_write_requests_per_flush": round(s3_requests["nodelay"] / flushes, 2),
            "s3_server": "moto with TCP_NODELAY (_moto_nodelay.py)",
            "s3_stock_moto_one_writer_rows_per_s": round(statistics.median(s3s["stock"])),
            "s3_stock_over_local": round(statistics.median(stock), 3),
            "s3_stock_over_local_rounds": [round(x, 3) for x in stock],
            "s3_stock_write_requests_per_flush": round(s3_requests["stock"] / flushes, 2),
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
