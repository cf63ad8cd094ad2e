"""HealthStore: layout, atomic files, schema on read, pruning, compaction."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import task_rows
from prefect_synthobs import HealthStore
from prefect_synthobs.health.rows import task_row

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def _task(i: int, start: datetime) -> dict:
    return task_row(
        task_run_id=f"t{i}",
        flow_run_id="f",
        flow_name="flow",
        task_name="step",
        state_type="COMPLETED",
        state_name="Completed",
        start_time=start,
        end_time=start + timedelta(seconds=1.5),
        run_count=1,
    )


def test_hive_layout_unique_names_and_no_temp_files(tmp_path: Path) -> None:
    store = HealthStore(f"file://{tmp_path}")
    paths = store.write("task_runs", [_task(0, T0), _task(1, T0 + timedelta(days=1))])
    assert len(paths) == 2  # one file per date partition
    rel = sorted(str(Path(p).relative_to(tmp_path).parent) for p in paths)
    assert rel == ["task_runs/date=2026-11-01", "task_runs/date=2026-11-02"]
    assert all(Path(p).name.startswith("part-") and p.endswith(".parquet") for p in paths)
    store.write("task_runs", [_task(2, T0)])
    assert len(list((tmp_path / "task_runs" / "date=2026-11-01").glob("part-*.parquet"))) == 2
    assert not list(tmp_path.rglob(".*"))
    df = store.read("task_runs")
    assert sorted(df.task_run_id) == ["t0", "t1", "t2"]
    assert df.duration_s.tolist() == [1.5, 1.5, 1.5]
    assert str(df.start_time.dtype).startswith("datetime64") and df.start_time.dt.tz is not None


def test_since_until_and_columns_prune(tmp_path: Path) -> None:
    store = HealthStore(str(tmp_path))
    store.write("task_runs", [_task(i, T0 + timedelta(days=i)) for i in range(5)])
    got = store.read("task_runs", since="2026-11-02", until=T0 + timedelta(days=3), columns=["task_run_id"])
    assert list(got.columns) == ["task_run_id"]
    assert sorted(got.task_run_id) == ["t1", "t2"]
    with pytest.raises(ValueError, match="unknown column"):
        store.read("task_runs", columns=["nope"])


def test_unknown_table_and_empty_store(tmp_path: Path) -> None:
    store = HealthStore(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="known tables"):
        store.read("../etc")
    df = store.read("flow_runs")
    assert df.empty and "flow_run_id" in df.columns
    assert store.count("flow_runs") == 0


def test_file_missing_a_later_column_reads_it_as_null(tmp_path: Path) -> None:
    """An old file without ``run_time_s`` and ``tags`` still reads, with those columns null."""
    old = pa.table(
        {
            "event_id": ["old"],
            "task_run_id": ["t-old"],
            "flow_run_id": ["f"],
            "flow_name": ["flow"],
            "task_name": ["step"],
            "state_type": ["FAILED"],
            "state_name": ["Failed"],
            "start_time": pa.array([T0], pa.timestamp("us", tz="UTC")),
            "end_time": pa.array([T0], pa.timestamp("us", tz="UTC")),
            "duration_s": [0.0],
            "run_count": pa.array([1], pa.int64()),
            "error_type": ["X"],
            "error_message": ["m"],
        }
    )
    directory = tmp_path / "task_runs" / "date=2026-11-01"
    directory.mkdir(parents=True)
    pq.write_table(old, directory / "part-old.parquet")
    store = HealthStore(str(tmp_path))
    store.write("task_runs", [_task(1, T0)])
    df = store.read("task_runs").set_index("task_run_id")
    assert df.loc["t1", "run_count"] == 1 and df.loc["t-old", "state_type"] == "FAILED"
    assert df["run_time_s"].isna().all()  # absent in the old file, null in the new row


def test_compact_merges_closed_partitions_and_dedupes(tmp_path: Path) -> None:
    store = HealthStore(str(tmp_path))
    rows = [_task(i, T0) for i in range(6)]
    for i in range(0, 6, 2):
        store.write("task_runs", rows[i : i + 2])
    store.write("task_runs", rows[:2])  # a re-sync wrote two rows twice
    today = datetime.now(timezone.utc)
    store.write("task_runs", [_task(99, today)])
    assert store.count("task_runs") == 9
    stats = store.compact("task_runs")
    assert stats == {
        "partitions": 1,
        "files_before": 4,
        "files_after": 1,
        "rows": 6,
        "quarantined": 0,
        "temporary_removed": 0,
    }
    assert len(list((tmp_path / "task_runs" / "date=2026-11-01").glob("*.parquet"))) == 1
    assert store.count("task_runs") == 7  # today's open partition untouched
    assert sorted(store.read("task_runs").task_run_id) == sorted([f"t{i}" for i in range(6)] + ["t99"])
    assert store.compact("task_runs", before=date(2026, 11, 1))["partitions"] == 0


def test_read_deduplicates_event_ids(tmp_path: Path) -> None:
    store = HealthStore(str(tmp_path))
    row = _task(1, T0)
    store.write("task_runs", [row])
    store.write("task_runs", [row])
    assert store.count("task_runs") == 2
    assert len(store.read("task_runs")) == 1
    assert len(store.read("task_runs", deduplicate=False)) == 2


def test_a_hook_row_wins_over_a_reconciled_row_of_the_same_run(tmp_path: Path) -> None:
    """A worker's spool drained after reconciliation wrote the run from the API: one row per run, the hook's."""
    store = HealthStore(str(tmp_path))
    hook = task_rows(3)  # t0, t1, t2 from the hooks
    api = task_rows(2, start=1)  # t1 and t2 again from the API, and t3 only from the API
    api += task_rows(1, start=3)
    for row in api:
        row["source"] = "api"
    hook[0]["rows"] = 7
    store.write("task_runs", api)
    store.write("task_runs", hook)
    frame = store.read("task_runs")
    assert sorted(zip(frame.task_run_id, frame.source, strict=True)) == [
        ("t0", "hook"),
        ("t1", "hook"),
        ("t2", "hook"),
        ("t3", "api"),
    ]
    assert store.read("task_runs", columns=["task_run_id"]).task_run_id.tolist().count("t1") == 1
    assert list(store.read("task_runs", columns=["rows"]).columns) == ["rows"]  # helper columns not returned
    assert len(store.read("task_runs", deduplicate=False)) == 6  # raw rows still there
    store.compact("task_runs", before=date(2026, 11, 24))
    assert store.count("task_runs") == 4  # compaction keeps the same one row per run


def test_a_task_run_executed_twice_keeps_its_last_execution(tmp_path: Path) -> None:
    """Dask re-ran a finished task whose result was lost with its worker: both executions wrote a row."""
    store = HealthStore(str(tmp_path))
    (first,) = task_rows(1)
    (second,) = task_rows(1)
    second["end_time"] = first["end_time"] + timedelta(seconds=30)
    second["rows"] = 11
    store.write("task_runs", [second])
    store.write("task_runs", [first])
    frame = store.read("task_runs")
    assert len(frame) == 1 and frame.rows.tolist() == [11]


def test_a_listing_that_missed_every_file_is_taken_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory listing racing a compaction can return no file at all (the merged file renamed in behind the
    cursor, the old ones deleted ahead of it): the read lists again instead of answering with no rows."""
    import pyarrow.dataset as pds

    store = HealthStore(str(tmp_path))
    store.write("task_runs", task_rows(5))
    real_dataset = HealthStore.dataset
    listings: list[int] = []

    def racing(self: HealthStore, table: str) -> pds.Dataset | None:
        full = real_dataset(self, table)
        listings.append(1)
        if len(listings) == 1 and full is not None:  # the first listing saw no file
            return pds.dataset([], schema=full.schema, format="parquet")
        return full

    monkeypatch.setattr(HealthStore, "dataset", racing)
    assert len(store.read("task_runs")) == 5 and len(listings) == 2
    empty = HealthStore(str(tmp_path / "nothing"))
    assert empty.read("task_runs").empty  # a store without partitions is not listed again


def test_exists_means_a_health_store_is_there_not_just_a_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "notes").mkdir(parents=True)
    (project / "README.md").write_text("# a project, not a store\n")
    assert not HealthStore(str(project)).exists()  # a directory that is not a store
    assert not HealthStore(str(project / "README.md")).exists()  # a file
    assert not HealthStore(str(tmp_path / "nowhere")).exists()  # nothing there
    named_like_a_table = tmp_path / "odd"
    named_like_a_table.mkdir()
    (named_like_a_table / "flow_runs").write_text("")
    assert not HealthStore(str(named_like_a_table)).exists()  # a file, not a table's directory

    store = HealthStore(str(project / "synthobs"))
    assert not store.exists()
    store.write("task_runs", task_rows(1))  # one table written
    assert store.exists() and HealthStore(f"file://{project / 'synthobs'}").exists()
    assert not HealthStore(str(project)).exists()  # the folder one level above the store is not one


@pytest.mark.slow
def test_exists_on_an_s3_store() -> None:
    """The same on an object store, where a directory is a prefix with objects under it (moto on loopback)."""
    import urllib.request
    import uuid

    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    from conftest import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        bucket = f"synthobs-{uuid.uuid4().hex[:8]}"
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=10).close()
        options = {"access_key": "testing", "secret_key": "testing", "region": "us-east-1", "endpoint_url": endpoint}
        fs = pafs.S3FileSystem(
            access_key="testing", secret_key="testing", region="us-east-1", endpoint_override=endpoint, scheme="http"
        )
        with fs.open_output_stream(f"{bucket}/project/README.md") as out:
            out.write(b"# a project, not a store\n")

        def exists(prefix: str) -> bool:
            return HealthStore(f"s3://{bucket}/{prefix}", storage_options=options, timeout=10).exists()

        assert not exists("project")  # a prefix with objects, none of them a table's
        assert not exists("project/README.md")  # an object
        assert not exists("nowhere")
        store = HealthStore(f"s3://{bucket}/project/synthobs", storage_options=options, timeout=10)
        store.write("task_runs", task_rows(1))
        assert store.exists() and not exists("project")
    finally:
        server.stop()
