"""S3 writes against a real S3-protocol server on loopback (moto in server mode, its request log read back):
how many requests one write costs, and that rows written in batches read back exactly once.

A flush of one table is one ``PutObject`` of the file's final name: no directory-marker objects, no bucket
``HEAD``, no multipart upload (create, part, complete) for a file under the part size. Before this, every flush
cost seven requests. The bounds are request counts, not times.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import free_port, task_rows
from prefect_synthobs import catalog as names
from prefect_synthobs.health import files as store_files
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.health.tables import schema_for
from prefect_synthobs.health.tables import table as table_of

pytestmark = pytest.mark.slow

SECRET = "s3cr3t-never-shown"
_REQUEST = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/1\.[01]"')


@dataclass
class Moto:
    """A moto server in its own process, its request log in ``log``."""

    endpoint: str
    log: Path
    bucket: str

    def requests(self) -> list[tuple[str, str]]:
        """Every request the server has answered so far: ``(method, path)``.

        The server logs a request after answering it, in order: a marker request is sent and the log read until
        the marker is in it (so every earlier request is too), then the marker is left out."""
        marker = f"/moto-api/?synthobs-marker={uuid.uuid4().hex}"
        urllib.request.urlopen(f"{self.endpoint}{marker}", timeout=10).close()
        deadline = time.monotonic() + 60
        while marker not in (text := self.log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)
        return [(method, path) for method, path in _REQUEST.findall(text) if "synthobs-marker=" not in path]

    def options(self) -> dict[str, str]:
        return {"access_key": "testing", "secret_key": SECRET, "region": "us-east-1", "endpoint_url": self.endpoint}

    def store(self, prefix: str) -> HealthStore:
        return HealthStore(f"s3://{self.bucket}/{prefix}", storage_options=self.options(), timeout=10)


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "requests.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=out,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        bucket = f"synthobs-{uuid.uuid4().hex[:8]}"
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=10).close()
        yield Moto(endpoint, log, bucket)
    finally:
        proc.kill()
        proc.wait(30)


def _after(moto: Moto, before: int) -> list[tuple[str, str]]:
    return moto.requests()[before:]


def test_one_write_is_one_put_of_the_final_name(moto: Moto) -> None:
    store = moto.store(f"one-{uuid.uuid4().hex[:6]}")
    before = len(moto.requests())
    (path,) = store.write("task_runs", task_rows(2000))
    sent = _after(moto, before)
    assert sent == [("PUT", f"/{path}")], sent  # no marker objects, no HEAD, no multipart upload
    before = len(moto.requests())
    assert store.size_of([path]) > 0  # the size of a file just written: known, no HEAD
    assert _after(moto, before) == []
    assert store.count("task_runs") == 2000 and store.exists()


def test_a_recorder_flush_costs_one_request_per_table(moto: Moto, tmp_path: Path) -> None:
    store = moto.store(f"flush-{uuid.uuid4().hex[:6]}")
    recorder = Recorder(lambda: store, tmp_path / "spool", store_timeout=30)
    recorder.add("task_runs", task_rows(3000))
    recorder.flush()  # the first one also opens the connection
    flushes = 5
    before = len(moto.requests())
    for i in range(flushes):
        recorder.add("task_runs", task_rows(2000, start=10_000 * (i + 1)))
        assert recorder.flush() == 2000
    sent = _after(moto, before)
    assert len(sent) <= flushes, sent
    assert all(method == "PUT" and "?" not in path for method, path in sent), sent
    assert not recorder.spooled_files()
    assert store.count("task_runs") == 3000 + flushes * 2000


def _rows(table: str, n: int, start: int, days: int) -> pa.Table:
    """``n`` rows of ``table`` with unique event ids, spread over ``days`` days; the other columns null
    (``task_runs`` rows are whole rows, each its own run)."""
    if table == names.TASK_RUNS:
        base = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
        rows = []
        for i in range(n):
            rows += task_rows(1, start + i, when=base + timedelta(days=i % days))
        return pa.Table.from_pylist(rows, schema=schema_for(table))
    schema = schema_for(table)
    time_column = table_of(table).time_column
    base = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    columns = {
        "event_id": pa.array([f"e{start + i:012d}" for i in range(n)], pa.string()),
        time_column: pa.array([base + timedelta(days=i % days) for i in range(n)], schema.field(time_column).type),
    }
    return pa.table({f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in schema}, schema=schema)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    table=st.sampled_from([names.TASK_RUNS, names.GPU_SAMPLES, names.QUALITY_CHECKS, names.TRAINING_EPOCHS]),
    batches=st.lists(st.integers(min_value=1, max_value=1500), min_size=1, max_size=5),
    days=st.integers(min_value=1, max_value=3),
)
def test_batches_read_back_exactly_once(moto: Moto, table: str, batches: list[int], days: int) -> None:
    store = moto.store(f"prop-{uuid.uuid4().hex[:8]}")
    before = len(moto.requests())
    start, files = 0, 0
    for n in batches:
        files += len(store.write(table, _rows(table, n, start, days)))
        start += n
    sent = _after(moto, before)
    assert len(sent) == files and all(m == "PUT" for m, _ in sent), sent  # one request per file written
    assert files <= len(batches) * days
    frame = store.read(table, deduplicate=False)
    assert len(frame) == start == store.count(table)
    assert frame.event_id.is_unique
    if table == names.TASK_RUNS:
        assert sorted(frame.task_run_id) == sorted(f"t{i}" for i in range(start))
    store.compact(table, before=datetime(2026, 3, 10).date())
    assert [len(store._files.partition_files(table, day)) for day in store.partitions(table)] == [1] * days
    assert len(store.read(table)) == start and store.count(table) == start  # compaction keeps every row once


def test_a_table_over_the_buffered_size_streams_and_reads_whole(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_files, "BUFFERED_WRITE_BYTES", 0)
    store = moto.store(f"stream-{uuid.uuid4().hex[:6]}")
    store.write("task_runs", task_rows(500))
    assert store.count("task_runs") == 500 and sorted(store.read("task_runs").task_run_id)[:2] == ["t0", "t1"]
    streaming = store._files._streaming  # its parts upload in the background; a flush's one PUT does not
    assert streaming is not None and streaming.__reduce__()[1][0]["background_writes"] is True
    assert store._fs.__reduce__()[1][0]["background_writes"] is False


def test_an_encoding_failure_uploads_nothing(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    store = moto.store(f"broken-{uuid.uuid4().hex[:6]}")

    def fail(*_: object, **__: object) -> None:
        raise OSError("disk full while encoding")

    monkeypatch.setattr(pq, "write_table", fail)
    before = len(moto.requests())
    with pytest.raises(OSError, match="encoding"):
        store.write("task_runs", task_rows(10))
    assert [m for m, _ in _after(moto, before) if m in ("PUT", "POST")] == []
    monkeypatch.undo()
    assert store.count("task_runs") == 0


def test_a_missing_bucket_fails_the_write_and_the_recorder_spools_with_one_warning(
    moto: Moto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the upload opened late, a missing bucket shows when the file is closed: still the write's
    ``OSError``, so the rows are spooled (one warning, no credential in it) and nothing is lost."""
    options = moto.options()
    store = HealthStore(f"s3://no-such-bucket-{uuid.uuid4().hex[:6]}/h", storage_options=options, timeout=10)
    with pytest.raises(OSError):
        store.write("task_runs", task_rows(5))
    recorder = Recorder(lambda: store, tmp_path / "spool", store_timeout=30)
    recorder.add("task_runs", task_rows(5))
    with caplog.at_level(logging.WARNING, logger="prefect_synthobs"):
        assert recorder.flush() == 0
        recorder.add("task_runs", task_rows(5, start=5))
        recorder.flush()  # the store is skipped now: spooled at once, no second warning
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot write the health store" in warnings[0]
    assert SECRET not in caplog.text
    assert recorder.spooled_rows() == 10
