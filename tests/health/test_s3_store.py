"""The S3 store against a real S3-protocol server on loopback (moto in server
mode): writes, reads, compaction, and an outage (the server frozen, rows
spooled, the server back, rows written by the background retry)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, task

import prefect_synthobs as so
from conftest import free_port, task_rows
from prefect_synthobs.config import active as so_settings
from prefect_synthobs.health.maintenance import maintain
from prefect_synthobs.instrument.instrumentation import get_runtime, reset_runtime

pytestmark = pytest.mark.slow

CREDENTIALS = {"access_key": "testing", "secret_key": "testing", "region": "us-east-1"}


@pytest.fixture
def s3_server() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.2)
    bucket = f"synthobs-{uuid.uuid4().hex[:8]}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=10).close()
    try:
        yield proc, f"{endpoint}|{bucket}"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(30)


def _store(server: str) -> tuple[str, dict[str, str]]:
    endpoint, bucket = server.split("|")
    return f"s3://{bucket}/health", {**CREDENTIALS, "endpoint_override": endpoint}


def test_writes_reads_and_compaction_on_a_real_s3_server(s3_server: tuple[Any, str]) -> None:
    url, options = _store(s3_server[1])
    store = so.HealthStore(url, storage_options=options, timeout=10)
    day = datetime(2026, 1, 5, 12, tzinfo=timezone.utc)
    for i in range(3):
        store.write("task_runs", task_rows(1, i, when=day))
    assert store.count("task_runs") == 3
    assert sorted(store.read("task_runs", since=day.date()).task_run_id) == ["t0", "t1", "t2"]
    stats = store.compact("task_runs", before=date(2026, 1, 6))
    assert (stats["files_before"], stats["files_after"], stats["rows"]) == (3, 1, 3)
    assert sorted(store.read("task_runs").task_run_id) == ["t0", "t1", "t2"]

    # retention on S3: a later day kept, the old one dropped (prefix deleted), readers see what is left
    later = day + timedelta(days=40)
    store.write("task_runs", task_rows(1, 9, when=later))
    stats = maintain(store, retain=timedelta(days=30), today=later.date())["task_runs"]
    assert stats["expired"] == 1 and store.partitions("task_runs") == [later.date().isoformat()]
    assert store.read("task_runs").task_run_id.tolist() == ["t9"]


@pytest.mark.usefixtures("prefect_server")
def test_an_s3_outage_spools_and_the_background_retry_writes_everything(
    s3_server: tuple[subprocess.Popen[bytes], str], tmp_path: Path
) -> None:
    proc, server = s3_server
    url, options = _store(server)
    so_settings.reset()
    reset_runtime()
    so.configure(store_url=url, store_options=options, spool_dir=str(tmp_path / "spool"), store_timeout_seconds=2)

    @task
    def step(i: int) -> int:
        return i

    @so.observe(kind="generation")
    @flow(name=f"s3-outage-{uuid.uuid4().hex[:6]}")
    def f(n: int) -> int:
        return sum(step(i) for i in range(n))

    try:
        assert f(3) == 3  # the server answers: written straight away
        store = so.HealthStore(url, storage_options=options, timeout=10)
        assert store.count("flow_runs") == 1
        os.kill(proc.pid, signal.SIGSTOP)  # the server freezes: connections hang
        assert f(2) == 1 and f(4) == 6
        recorder = get_runtime().recorder
        assert recorder.breaker.is_open and recorder.spooled_files()
        os.kill(proc.pid, signal.SIGCONT)  # back: the flusher's retry (after its backoff) drains the spool
        deadline = time.monotonic() + 120
        while (recorder.spooled_files() or recorder.breaker.is_open) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not recorder.spooled_files()
        assert store.count("flow_runs") >= 3
        assert len(store.read("flow_runs")) == 3 and len(store.read("task_runs")) == 9  # deduplicated by event_id
    finally:
        reset_runtime()
        so_settings.reset()
