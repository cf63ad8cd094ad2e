"""The engine's dedupe (``reports.health_query``): repeated run ids found from sorted hashes, the losing rows named
by file and row number, every file but those holding a loser read as it is.

Runs written again in files of other sizes (exact copies, an ``api`` row, a later end), rows without a run id,
and a footer row count smaller than the rows streamed: counts equal to plain pandas' one row per run.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prefect_synthobs as so
from prefect_synthobs import catalog as names
from prefect_synthobs.health.tables import SOURCE_API, SOURCE_HOOK, schema_for
from prefect_synthobs.reports import health_query
from prefect_synthobs.reports.health_query import BY_TASK, FAILED_ROWS, summarize

UNTIL = datetime(2026, 11, 20, 6, tzinfo=timezone.utc)
SINCE = UNTIL - timedelta(hours=10)
SCHEMA = schema_for(names.TASK_RUNS)


def _row(i: int, **kw: Any) -> dict[str, Any]:
    start = SINCE + timedelta(minutes=i % 500)
    return {
        **dict.fromkeys(SCHEMA.names),
        "event_id": f"e{i}",
        "task_run_id": f"t{i}",
        "flow_name": "f",
        "task_name": f"x{i % 3}",
        "state_type": "COMPLETED",
        "start_time": start,
        "end_time": start + timedelta(seconds=5),
        "duration_s": float(i % 17),
        "run_count": 1,
        "source": SOURCE_HOOK,
        **kw,
    }


def _write(root: Path, files: list[list[dict[str, Any]]]) -> None:
    directory = root / names.TASK_RUNS / f"date={SINCE.date().isoformat()}"
    directory.mkdir(parents=True, exist_ok=True)
    for rows in files:
        if rows:
            pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), directory / f"part-{uuid.uuid4().hex}.parquet")


@given(
    copies=st.lists(
        st.tuples(st.integers(0, 59), st.sampled_from(["same", "api", "later", "failed"]), st.integers(0, 2)),
        max_size=40,
    ),
    nameless=st.integers(0, 3),
)
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
def test_runs_written_again_in_other_files_count_once_with_the_stores_row(
    tmp_path_factory: pytest.TempPathFactory, copies: list[tuple[int, str, int]], nameless: int
) -> None:
    root = tmp_path_factory.mktemp("store")
    first = [_row(i) for i in range(60)]
    extra: list[list[dict[str, Any]]] = [[], [], []]
    winner = {r["task_run_id"]: r for r in first}
    for k, (i, kind, where) in enumerate(copies):
        base = first[i]
        if kind == "same":
            row = dict(base)
        elif kind == "api":  # a reconciled row loses to the hook's
            row = {**base, "event_id": f"a{k}", "source": SOURCE_API, "duration_s": 999.0, "state_type": "FAILED"}
        else:  # a later end wins (a Dask retry), failed or not
            state = "FAILED" if kind == "failed" else "COMPLETED"
            row = {**base, "event_id": f"l{k}", "end_time": base["end_time"] + timedelta(seconds=k + 1)}
            row.update(state_type=state, duration_s=100.0 + k)
            if row["end_time"] > winner[base["task_run_id"]]["end_time"]:
                winner[base["task_run_id"]] = row
        extra[where].append(row)
    nulls = [_row(1000 + j, task_run_id=None, task_name="x0") for j in range(nameless)]
    _write(root, [first, *extra, nulls])

    summary = summarize(so.HealthStore(str(root)), SINCE, UNTIL)
    assert summary is not None
    kept = [*winner.values(), *nulls]
    by_task = summary[BY_TASK].set_index("task_name")
    for task in sorted({r["task_name"] for r in kept}):
        rows = [r for r in kept if r["task_name"] == task]
        assert by_task.loc[task, "runs"] == len(rows)
        assert by_task.loc[task, "failed"] == sum(r["state_type"] == "FAILED" for r in rows)
        assert by_task.loc[task, "max"] == max(r["duration_s"] for r in rows)
        assert by_task.loc[task, "p95"] == pytest.approx(np.percentile([r["duration_s"] for r in rows], 95))
    assert len(summary[FAILED_ROWS]) == sum(r["state_type"] == "FAILED" for r in kept)


def test_more_rows_than_the_footers_said_are_all_hashed(tmp_path: Path) -> None:
    """``_repeated_hashes`` grows its array when the stream holds more rows than the hint (a file replaced)."""
    ids = [f"t{i}" for i in range(5000)] + ["t7", "t42", "t42"]
    with duckdb.connect() as con:
        con.register("ids", pa.table({"task_run_id": [*ids, None]}))
        con.execute("CREATE TEMP VIEW t AS SELECT * FROM ids")
        repeated = health_query._repeated_hashes(con, 3)
        want = sorted(
            con.execute("SELECT DISTINCT hash(task_run_id) FROM ids WHERE task_run_id IN ('t7', 't42')").fetchall()
        )
    assert [int(h) for h in repeated] == [int(h) for (h,) in want]
