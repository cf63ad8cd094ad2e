"""Files other writers put in the store that the first tolerance missed: a ``date`` column inside a file, a
column name twice, rows without an ``event_id`` or a run id, a file sharing no column with its table, files
outside the ``date=YYYY-MM-DD`` partitions; one table failing maintenance never stops the others."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import warnings_with
from prefect_synthobs.cli import main
from prefect_synthobs.health.maintenance import maintain
from prefect_synthobs.health.store import QUARANTINE, HealthStore, one_row_per_run
from prefect_synthobs.health.tables import schema_for

DAY = datetime(2026, 1, 5, 12, tzinfo=timezone.utc)
PARTITION = f"date={DAY.date().isoformat()}"
AFTER = date(2026, 1, 6)  # compact partitions before this: DAY's is closed
SKIPPED = "skipping unreadable health-store file"
IGNORED = "not a date=YYYY-MM-DD partition directory"


def our_rows(table: str, n: int = 3, prefix: str = "g") -> list[dict[str, Any]]:
    """``n`` rows of ``table`` as synthobs writes them, on ``DAY``."""
    rows = []
    for k in range(n):
        row: dict[str, Any] = dict.fromkeys(schema_for(table).names)
        row.update(
            event_id=f"{prefix}e{k}",
            flow_run_id=f"{prefix}f{k}",
            flow_name="ours",
            state_type="COMPLETED",
            start_time=DAY,
            end_time=DAY + timedelta(seconds=5),
            duration_s=5.0,
            rows=10,
            source="hook",
        )
        if table == "task_runs":
            row.update(task_run_id=f"{prefix}t{k}", task_name="t")
        rows.append(row)
    return rows


def foreign_frame(n: int = 2, prefix: str = "x", table: str = "flow_runs") -> pd.DataFrame:
    """``n`` valid rows as pandas writes them (nanosecond times, no list columns)."""
    frame: pd.DataFrame = pd.DataFrame(
        {
            "event_id": [f"{prefix}e{k}" for k in range(n)],
            "flow_run_id": [f"{prefix}f{k}" for k in range(n)],
            "flow_name": ["foreign"] * n,
            "state_type": ["COMPLETED"] * n,
            "start_time": [pd.Timestamp(DAY)] * n,
            "end_time": [pd.Timestamp(DAY + timedelta(seconds=5))] * n,
            "duration_s": [5.0] * n,
            "rows": [7] * n,
            "source": ["hook"] * n,
        }
    )
    if table == "task_runs":
        frame["task_run_id"] = [f"{prefix}t{k}" for k in range(n)]
    return frame


def store_with_ours(root: Path, table: str = "flow_runs") -> tuple[HealthStore, Path]:
    """A store with three rows of ours in ``table`` on ``DAY``: (store, the partition directory)."""
    store = HealthStore(str(root))
    (written,) = store.write(table, our_rows(table))
    return store, Path(written).parent


def windows(store: HealthStore, table: str = "flow_runs") -> list[int]:
    """Rows read whole, since a day before, and since/until around ``DAY`` (each by a new store object)."""
    return [
        len(HealthStore(store.url).read(table)),
        len(HealthStore(store.url).read(table, since=DAY - timedelta(days=1))),
        len(HealthStore(store.url).read(table, since=DAY - timedelta(days=1), until=DAY + timedelta(days=1))),
    ]


# -- 6: a date column inside a file ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inside",
    [
        pa.array([DAY.date()] * 2, pa.date32()),
        pa.array(["1999-01-01"] * 2, pa.string()),
        pa.array(["1999-01-01"] * 2, pa.large_string()),
    ],
    ids=["date32", "string other day", "large_string other day"],
)
def test_a_date_column_inside_a_file_never_clashes_with_the_partition(tmp_path: Path, inside: pa.Array) -> None:
    store, directory = store_with_ours(tmp_path / "store")
    data = pa.Table.from_pandas(foreign_frame(), preserve_index=False).append_column("date", inside)
    pq.write_table(data, directory / "f.parquet")
    assert windows(store) == [5, 5, 5]
    days = set(HealthStore(store.url).read("flow_runs").date)
    assert days == {DAY.date().isoformat()}  # the directory's day, never the column's

    stats = HealthStore(store.url).compact("flow_runs", before=AFTER)
    assert stats["rows"] == 5 and stats["files_after"] == 1 and stats["quarantined"] == 0
    assert windows(store) == [5, 5, 5]
    (merged,) = (tmp_path / "store" / "flow_runs").rglob("*.parquet")
    assert pq.read_schema(merged).equals(schema_for("flow_runs"))  # no date column kept inside


def test_cli_compact_merges_a_file_with_a_date_column_and_goes_on_to_every_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, directory = store_with_ours(tmp_path / "store")
    store_with_ours(tmp_path / "store", "task_runs")
    HealthStore(store.url).write("task_runs", our_rows("task_runs", prefix="h"))
    frame = foreign_frame()
    frame["date"] = DAY.date()  # pandas writes it as date32
    frame.to_parquet(directory / "f.parquet")
    assert main(["compact", "--store", store.url]) == 0
    out = capsys.readouterr().out
    assert "flow_runs: 1 partition(s) compacted, 2 → 1 files, 5 rows" in out
    assert "task_runs: 1 partition(s) compacted, 2 → 1 files, 6 rows" in out


# -- one table failing maintenance -------------------------------------------------------------------------------


def test_one_table_failing_maintenance_never_stops_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    store, flow_directory = store_with_ours(tmp_path / "store")
    store.write("flow_runs", our_rows("flow_runs", prefix="h"))
    store.write("task_runs", our_rows("task_runs"))
    store.write("task_runs", our_rows("task_runs", prefix="h"))
    # a directory where flow_runs' merged file goes: the store refuses that write (a real OSError, as root too)
    names = sorted(p.name for p in flow_directory.glob("*.parquet"))
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:32]
    (flow_directory / f"part-{digest}.parquet").mkdir()
    (flow_directory / f"part-{digest}.parquet" / ".keep").write_text("")

    with caplog.at_level(logging.WARNING, logger="prefect.synthobs.store"):
        results = maintain(HealthStore(store.url), today=AFTER)
    failed = warnings_with(caplog, "maintenance of table")
    assert len(failed) == 1 and "flow_runs" in failed[0].getMessage()
    assert results["flow_runs"]["failed"] == 1 and results["flow_runs"]["rows"] == 0
    assert "failed" not in results["task_runs"]
    assert results["task_runs"] == {**results["task_runs"], "rows": 6, "files_after": 1}
    assert len(list((tmp_path / "store" / "flow_runs").rglob("part-*.parquet"))) == 3  # left as they were
    assert len(HealthStore(store.url).read("flow_runs")) == 6

    store.write("task_runs", our_rows("task_runs", prefix="i"))
    assert main(["compact", "--store", store.url]) == 1  # something failed: the exit status says so
    captured = capsys.readouterr()
    assert "flow_runs: maintenance FAILED" in captured.out
    assert "task_runs: 1 partition(s) compacted, 2 → 1 files, 9 rows" in captured.out
    assert "1 table(s) could not be maintained" in captured.err


# -- 7 and 10: files that cannot be read as the table --------------------------------------------------------------


def duplicate_column(directory: Path, name: str) -> Path:
    data = pa.Table.from_pandas(foreign_frame(prefix="dup"), preserve_index=False)
    data = pa.Table.from_arrays([*data.columns, pa.array(["x", "y"])], names=[*data.column_names, name])
    pq.write_table(data, directory / "f.parquet")
    return directory / "f.parquet"


def upper_case(directory: Path, name: str) -> Path:
    frame = foreign_frame(prefix="up")
    frame.columns = [c.upper() for c in frame.columns]
    frame.to_parquet(directory / "f.parquet")
    return directory / "f.parquet"


def only_foreign_columns(directory: Path, name: str) -> Path:
    pd.DataFrame({"id": [1, 2], "date": ["2026-01-05"] * 2}).to_parquet(directory / "f.parquet")
    return directory / "f.parquet"


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (duplicate_column, "flow_name"),
        (duplicate_column, "event_id"),
        (upper_case, ""),
        (only_foreign_columns, ""),
    ],
    ids=["flow_name twice", "event_id twice", "upper-case names", "no column of the table"],
)
def test_a_file_that_is_not_the_table_is_skipped_with_one_warning_and_quarantined(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], make: Any, name: str
) -> None:
    store, directory = store_with_ours(tmp_path / "store")
    bad = make(directory, name)
    with caplog.at_level(logging.WARNING, logger="prefect.synthobs.store"):
        assert windows(store) == [3, 3, 3]  # no phantom row, no row of a file whose columns are ambiguous
        frame = HealthStore(store.url).read("flow_runs")
        assert frame.event_id.notna().all() and set(frame.flow_name) == {"ours"}
    skipped = warnings_with(caplog, SKIPPED)
    assert len(skipped) == 1 and str(bad) in skipped[0].getMessage()  # once per process, 4 store objects
    assert main(["compact", "--store", store.url, "--table", "flow_runs"]) == 0
    assert "1 unreadable file(s) moved to _quarantine/" in capsys.readouterr().out
    assert (tmp_path / "store" / QUARANTINE / "flow_runs" / PARTITION / bad.name).exists()
    assert windows(store) == [3, 3, 3]


# -- 8 and 9: rows without an event id or a run id -----------------------------------------------------------------


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    unnamed=st.lists(st.booleans(), min_size=1, max_size=6),
    without_column=st.booleans(),
    run_ids=st.lists(st.sampled_from([None, "r1", "r2"]), min_size=6, max_size=6),
    table=st.sampled_from(["flow_runs", "task_runs"]),
)
def test_rows_without_an_event_id_or_a_run_id_are_never_collapsed(
    unnamed: list[bool], without_column: bool, run_ids: list[str | None], table: str
) -> None:
    """Foreign rows whose ``event_id`` is null (or absent) all count, read and compacted; their run id null
    too never groups them; compacting gives them ids, the same ids whichever compaction does it."""
    run_id = "flow_run_id" if table == "flow_runs" else "task_run_id"
    n = len(unnamed)
    frame = foreign_frame(n, table=table)
    frame["event_id"] = [None if u else f"x{k}" for k, u in enumerate(unnamed)]
    if without_column:
        frame = frame.drop(columns="event_id")
    null_runs = [None] * n  # no run id: each row a run of its own
    frame[run_id] = pd.array(null_runs, dtype="string")
    with tempfile.TemporaryDirectory() as tmp:
        store, directory = store_with_ours(Path(tmp) / "store", table)
        frame.to_parquet(directory / "f.parquet")
        assert windows(store, table) == [3 + n] * 3
        copy = Path(tmp) / "copy"
        shutil.copytree(store.url, copy)

        stats = HealthStore(store.url).compact(table, before=AFTER)
        assert stats["rows"] == 3 + n
        assert windows(store, table) == [3 + n] * 3
        (merged,) = (Path(store.url) / table).rglob("*.parquet")
        ids = pq.read_table(merged)["event_id"].to_pylist()
        assert None not in ids and len(set(ids)) == 3 + n
        HealthStore(str(copy)).compact(table, before=AFTER)  # another compaction of the same files
        (other,) = (copy / table).rglob("*.parquet")
        assert sorted(pq.read_table(other)["event_id"].to_pylist()) == sorted(ids)  # the same ids

    # the rule itself, on generated run ids: one row per known run, every row without one kept
    data = pa.table(
        {
            run_id: pa.array(run_ids, pa.string()),
            "source": pa.array(["hook"] * len(run_ids)),
            "end_time": pa.array([DAY + timedelta(seconds=k) for k in range(len(run_ids))], pa.timestamp("us")),
        }
    )
    kept = one_row_per_run(data, run_id, "end_time")
    assert kept.num_rows == len({r for r in run_ids if r is not None}) + run_ids.count(None)


def test_rows_with_an_event_id_and_no_run_id_all_count(tmp_path: Path) -> None:
    for table, run_id in (("flow_runs", "flow_run_id"), ("task_runs", "task_run_id")):
        store, directory = store_with_ours(tmp_path / table, table)
        frame = foreign_frame(table=table)
        frame[run_id] = None
        frame.to_parquet(directory / "f.parquet")
        assert windows(store, table) == [5, 5, 5]
        assert HealthStore(store.url).compact(table, before=AFTER)["rows"] == 5
        assert windows(store, table) == [5, 5, 5]


# -- 11: directories that are not partitions -----------------------------------------------------------------------


def test_files_outside_the_date_partitions_are_ignored_by_every_window_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, directory = store_with_ours(tmp_path / "store")
    table = tmp_path / "store" / "flow_runs"
    odd = [table / "date=garbage", table / "year=2026", table / "date=2026-13-45", directory / "nested"]
    for number, place in enumerate(odd):
        place.mkdir()
        foreign_frame(prefix=f"o{number}").to_parquet(place / "f.parquet")
    with caplog.at_level(logging.WARNING, logger="prefect.synthobs.store"):
        assert windows(store) == [3, 3, 3]
        assert HealthStore(store.url).count("flow_runs") == 3
        assert HealthStore(store.url).partitions("flow_runs") == [DAY.date().isoformat()]
        stats = HealthStore(store.url).compact("flow_runs", before=date(2027, 1, 1))
    ignored = warnings_with(caplog, IGNORED)
    assert sorted(r.getMessage().split(" in ", 1)[1].split(":", 1)[0] for r in ignored) == sorted(map(str, odd))
    assert stats["quarantined"] == 0 and stats["rows"] == 0  # one file of ours: nothing to merge
    assert all((place / "f.parquet").exists() for place in odd)  # left where they are
