"""Rows lost on crash paths: claims a killed drainer left, temporary files a
killed writer left, and spool and memory that are bounded with a count of
what was dropped."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import task_rows
from prefect_synthobs.health.recorder import Recorder, StoreBreaker
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.health.tables import schema_for
from prefect_synthobs.telemetry.metrics import SynthObsMetrics


def spool_file(spool: Path, name: str, n: int, start: int) -> Path:
    import pyarrow as pa

    path = spool / "task_runs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(task_rows(n, start), schema=schema_for("task_runs")), path)
    return path


def test_a_claim_left_by_a_killed_drainer_is_retried_after_its_lease(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    store = HealthStore(str(tmp_path / "store"))
    recorder = Recorder(lambda: store, spool, store_timeout=5)
    stale = spool_file(spool, ".part-aaa.parquet.0123.claim", 4, 0)
    old = time.time() - recorder.claim_lease - 5
    os.utime(stale, (old, old))
    fresh = spool_file(spool, ".part-bbb.parquet.4567.claim", 3, 10)  # a drainer at work right now

    assert recorder.flush() == 4
    assert sorted(store.read("task_runs").task_run_id) == [f"t{i}" for i in range(4)]
    assert not stale.exists() and fresh.exists()  # a live claim is not taken from its drainer


def test_the_spool_is_bounded_and_drops_the_oldest_with_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from prometheus_client import CollectorRegistry

    metrics = SynthObsMetrics(CollectorRegistry(), "synthobs")
    spool = tmp_path / "spool"
    one_file = spool_file(tmp_path / "probe", "part-x.parquet", 50, 0).stat().st_size

    def down() -> HealthStore:
        raise OSError("store down")

    recorder = Recorder(
        down,
        spool,
        store_timeout=5,
        breaker=StoreBreaker(),
        spool_max_bytes=int(one_file * 2.5),
        on_dropped=lambda table, n: metrics.rows_dropped.labels(table=table).inc(n),
    )
    base = time.time() - 1000
    for batch in range(4):
        before = set(recorder.spooled_files())
        recorder.add("task_runs", task_rows(50, start=batch * 50))
        recorder.flush()
        for path in set(recorder.spooled_files()) - before:  # distinct modification times, whatever the
            os.utime(path, (base + batch, base + batch))  # file system's resolution: "oldest" is well defined
    kept = pq.read_table(spool / "task_runs").column("task_run_id").to_pylist()
    assert sorted(kept, key=lambda t: int(t[1:])) == [f"t{i}" for i in range(100, 200)]  # the newest two batches
    assert recorder.dropped == {"task_runs": 100}
    assert metrics.rows_dropped.labels(table="task_runs")._value.get() == 100
    assert "dropped 50 of the oldest task_runs rows (100 dropped in all)" in caplog.text


def test_rows_in_memory_are_bounded_when_the_spool_is_unwritable(tmp_path: Path) -> None:
    blocker = tmp_path / "spool"
    blocker.write_text("a file where the spool directory should be")
    dropped: list[tuple[str, int]] = []

    def down() -> HealthStore:
        raise OSError("store down")

    recorder = Recorder(
        down, blocker, store_timeout=5, max_pending_rows=120, on_dropped=lambda t, n: dropped.append((t, n))
    )
    for batch in range(3):
        recorder.add("task_runs", task_rows(50, start=batch * 50))
        recorder.flush()
    assert recorder.pending() == 120 and dropped == [("task_runs", 30)]
    blocker.unlink()  # the spool comes back: what memory holds is written at stop (interpreter exit)
    recorder.stop(flush=True)
    assert len(pq.read_table(tmp_path / "spool" / "task_runs")) == 120


def test_compact_removes_temporary_files_a_killed_writer_left(tmp_path: Path) -> None:
    store = HealthStore(str(tmp_path / "store"))
    (written,) = store.write("task_runs", task_rows(3))
    partition = Path(written).parent
    stale, fresh = partition / ".part-dead.parquet.tmp", partition / ".part-live.parquet.tmp"
    stale.write_bytes(b"half a file")
    fresh.write_bytes(b"being written")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    stats = store.compact("task_runs")
    assert stats["temporary_removed"] == 1 and not stale.exists() and fresh.exists()
    assert store.count("task_runs") == 3
