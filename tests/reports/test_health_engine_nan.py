"""A NaN duration among numbers in one pyarrow-written file: its Parquet statistics leave the NaN out (min/max of
the numbers), and DuckDB 2.0 with statistics propagation on folds ``isnan(duration_s)`` to false from them, so
the NaN reached ``quantile_cont``/``max`` and the p95 and max came out NaN. The engine's connection turns that
optimizer off (``health_query.connection``); pandas skips the NaN, and so must the engine."""

from __future__ import annotations

import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import prefect_synthobs as so
from prefect_synthobs import catalog as names
from prefect_synthobs.health.tables import SOURCE_HOOK, schema_for
from prefect_synthobs.reports.health_query import BY_TASK, connection, summarize

SCHEMA = schema_for(names.TASK_RUNS)
UNTIL = datetime(2026, 11, 20, 6, tzinfo=timezone.utc)
SINCE = UNTIL - timedelta(hours=30)


def _row(i: int, duration: float | None, run: str | None = None) -> dict[str, Any]:
    start = SINCE + timedelta(hours=1, seconds=i)
    return {
        **dict.fromkeys(SCHEMA.names),
        "event_id": f"e{i}",
        "task_run_id": run or f"t{i}",
        "flow_name": "a",
        "task_name": "x",
        "state_type": "COMPLETED",
        "start_time": start,
        "end_time": start + timedelta(seconds=1),
        "duration_s": duration,
        "run_count": 1,
        "source": SOURCE_HOOK,
    }


@pytest.mark.parametrize("repeated", [False, True], ids=["one-row-per-run", "a-run-written-twice"])
@pytest.mark.parametrize("nulls", [False, True], ids=["no-null", "a-null-too"])
def test_a_nan_duration_among_numbers_is_skipped_not_the_p95(tmp_path: Path, repeated: bool, nulls: bool) -> None:
    rows = [_row(0, 1.0), _row(1, float("nan")), _row(2, 2.0)]
    if nulls:
        rows.append(_row(3, None))
    if repeated:  # the repeated-run path (losers chosen, then removed) reads the same statistics
        rows.append({**_row(4, 2.0, run="t2"), "end_time": rows[2]["end_time"] - timedelta(seconds=1)})
    directory = tmp_path / names.TASK_RUNS / f"date={rows[0]['start_time'].date().isoformat()}"
    directory.mkdir(parents=True)
    path = directory / f"part-{uuid.uuid4().hex}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    stats = pq.ParquetFile(path).metadata.row_group(0).column(SCHEMA.get_field_index("duration_s")).statistics
    assert stats is not None and stats.has_min_max and (stats.min, stats.max) == (1.0, 2.0)  # the NaN left out
    summary = summarize(so.HealthStore(str(tmp_path)), SINCE, UNTIL)
    assert summary is not None
    got = summary[BY_TASK]
    assert list(got.runs) == [3 + nulls]
    assert list(got.p95) == [pytest.approx(1.95)]  # numpy's percentile of [1, 2]
    assert list(got["max"]) == [2.0]


def test_the_connection_turns_statistics_propagation_off() -> None:
    """The engine's connection over such a file, without the store's scan around it: the NaN is skipped."""
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/d.parquet"
        pq.write_table(pa.table({"d": pa.array([1.0, float("nan"), 2.0])}), path)
        sql = f"SELECT max(CASE WHEN isnan(d) THEN NULL ELSE d END) FROM read_parquet('{path}')"
        with connection() as con:
            assert con.execute(sql).fetchone() == (2.0,)
