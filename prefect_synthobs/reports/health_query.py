"""The health report's task-run aggregates, computed by DuckDB where the rows lie (no row reaches pandas).

The task rows are the millions (a year of a busy team: 100 M), so the report never loads them: DuckDB counts
them per flow and task (runs, failed, retried), takes the exact p95 (``quantile_cont``, the linear
interpolation pandas' ``quantile`` and numpy's ``percentile`` use) and max of their durations, and keeps the
most recent failed ones (``FAILED_TASK_ROWS``), out of core (``memory_limit``, spilling to a temporary
directory). What it reads is what ``HealthStore.read`` reads for ``load_frames`` today: the window's
partitions and rows (``scan.window_filter``), then one row per run by the store's rule
(``dedupe.one_row_per_run``: a final state before another, a hook row before an ``api`` one, then the
latest ``end_time``; a row without a run id is a run of its own).

Dedupe without a hash table of every run id: a first pass streams the 64-bit hashes of the run ids into numpy
and sorts them (a SIMD sort: 0.1 s for 10 M, against 1 s for DuckDB's hash ``GROUP BY`` of 10 M distinct keys),
keeping the hashes seen twice (few: a run is written twice only by a late flush, a Dask retry or a compaction seen
half done); a second pass orders those runs' rows by the store's rule, exactly by run id, and names the rows that
lose (``losers``: file and row number). The aggregates then read every file as it is but those holding a loser,
which lose those rows (an anti join on file and row number, no run id read). A hash collision only sends two runs
through the exact ordering by run id: never a wrong count. Exact ties (the same row written twice) keep the row of
the larger file (files are listed largest first), so the losers lie in the few small files a late flush or a
half-done compaction left.

Sources, chosen by measurement (``benchmarks/bench_report.py``): a local store is read by DuckDB's own
Parquet reader over the files the store lists (1.5 s for 10 M rows on 2 cores, against 3.5–5.8 s streamed
from pyarrow); an ``s3://`` store through a ``pyarrow.dataset`` over the store's filesystem, which DuckDB
scans with column pruning and the window pushed down (DuckDB's ``httpfs`` is not needed, users may not have
it). A store holding files of other column types (other writers: time units, missing layouts are fine, see
``exact_files``) is left to ``HealthStore.read``, which knows how to read around them: ``summarize`` then
returns ``None`` and the caller reads rows as before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from prefect_synthobs import catalog as names
from prefect_synthobs.health import tables
from prefect_synthobs.health.files import VANISHED_FILE_RETRIES
from prefect_synthobs.health.scan import layout_problem, window_filter
from prefect_synthobs.health.tables import PARTITION_COLUMN, schema_for

FAILED_TASK_ROWS = 100
"""How many of the window's most recent failed task runs the summary keeps (the report shows ``top`` of them)."""

MEMORY_LIMIT = "1GB"
"""DuckDB's memory for the aggregates; beyond it, it spills to a temporary directory (100 M rows stay < 4 GB)."""

AGGREGATE_MEMORY_LIMIT = "3GB"
"""DuckDB's memory while it aggregates: the exact p95 (``quantile_cont``) holds every duration of a group and
cannot spill (100 M rows: 1 GB failed, falling back to pandas at 14 GB; 3 GB: 3.3 GB peak). The scans before it
keep ``MEMORY_LIMIT`` (they spill), so 10 M rows still peak under 1 GB."""

BY_TASK = "task_runs.by_task"
"""The frames' key of the per (flow, task) aggregates: ``flow_name, task_name, runs, failed, retried, p95, max``."""

FAILED_ROWS = names.TASK_RUNS
"""The frames' key of the most recent failed task rows (``FAILED_TASK_ROWS`` at most), as ``load_frames`` had."""

AGGREGATE_COLUMNS = ["flow_name", "task_name", "runs", "failed", "retried", "p95", "max"]
ROW_COLUMNS = ["flow_name", "task_name", "state_type", "start_time", "run_count", "error_type", "error_message"]
_RUN_ID = tables.TASK_RUNS.run_id_column or "task_run_id"
_READ = [*dict.fromkeys([*ROW_COLUMNS, "duration_s", _RUN_ID, "source", "end_time"])]
_TYPES = {"string": "VARCHAR", "timestamp[us, tz=UTC]": "TIMESTAMPTZ", "double": "DOUBLE", "int64": "BIGINT"}

_FAILED = "state_type IN ('FAILED', 'CRASHED')"
# dedupe.one_row_per_run's order: a final state first, then a hook row before an api one, then the latest end
# (the local path breaks exact ties by file and row: files are listed largest first)
_WINNER = (
    "(state_type IS NULL OR state_type NOT IN ('COMPLETED', 'FAILED', 'CRASHED', 'CANCELLED')), "
    f"coalesce(source = '{tables.SOURCE_API}', false), end_time DESC NULLS LAST"
)


def _aggregate_sql(relation: str, top: int, flow: str | None, recent: bool = True) -> str:
    """Per (flow, task): the counts, the p95 and max duration (NaN as missing, as pandas has it) and, with
    ``recent``, the ``top`` most recent failed rows (one list per group; ``summarize`` keeps the overall most
    recent). The local path leaves ``recent`` to ``_failed_sql`` (a top-N over the failed rows alone: the lists
    cost a third of the aggregate) and ``flow`` to the scan (pushed into the Parquet reader)."""
    duration = "CASE WHEN isnan(duration_s) THEN NULL ELSE duration_s END"
    rows = (
        f""", arg_max(struct_pack(state_type, start_time, run_count, error_type, error_message), start_time, {top})
                   FILTER (WHERE {_FAILED}) AS recent"""
        if recent
        else ""
    )
    return f"""
        SELECT flow_name, task_name, count(*) AS runs,
               count(*) FILTER (WHERE {_FAILED}) AS failed,
               count(*) FILTER (WHERE coalesce(run_count, 1) > 1) AS retried,
               quantile_cont({duration}, 0.95) AS p95, max({duration}) AS max{rows}
        FROM {relation}
        {_flow_clause(flow)}
        GROUP BY flow_name, task_name
        ORDER BY flow_name NULLS LAST, task_name NULLS LAST"""


def _flow_clause(flow: str | None) -> str:
    """``flow``'s rows alone, as a literal (a parameter would hide it from the scan's filter pushdown)."""
    return "" if flow is None else f"WHERE flow_name = {_literal(flow)}"


def _failed_sql(relation: str, top: int) -> str:
    """The ``top`` most recent failed rows of ``relation``, newest first (ties by flow and task, as ``_frames``
    orders the per-group lists)."""
    return f"""
        SELECT {", ".join(ROW_COLUMNS)} FROM {relation} WHERE {_FAILED}
        ORDER BY start_time DESC NULLS LAST, flow_name NULLS LAST, task_name NULLS LAST LIMIT {top}"""


def _kept_sql(dirty: list[int], failed_only: bool = False) -> str:
    """``t``'s rows, one per run: the files without a loser as they are, the others (``dirty``: their indices in
    ``t``'s file list) without their ``losers`` (``_choose_losers``); ``failed_only`` keeps the failed ones."""
    failed = f" AND {_FAILED}" if failed_only else ""
    if not dirty:
        return f"(SELECT * FROM t WHERE true{failed}) AS kept"
    listed = ", ".join(map(str, dirty))
    return f"""(
        SELECT * FROM t WHERE file_index NOT IN ({listed}){failed}
        UNION ALL
        SELECT s.* FROM (SELECT * FROM t WHERE file_index IN ({listed}){failed}) AS s
        ANTI JOIN losers ON s.file_index = losers.file_index AND s.file_row_number = losers.file_row_number
    ) AS kept"""


def _repeated_hashes(con: duckdb.DuckDBPyConnection, rows: int) -> np.ndarray:
    """The 64-bit hashes of the run ids ``t`` holds more than once (sorted, unique): every hash streamed into one
    array of ``rows`` (the files' row count, an upper bound), sorted in place, neighbours compared."""
    hashes = np.empty(rows, dtype=np.uint64)
    filled = 0
    relation = con.sql(f"SELECT hash({_RUN_ID}) AS h FROM t WHERE {_RUN_ID} IS NOT NULL")
    # DuckDB 2.0 names it ``to_arrow_reader``; 1.x ``fetch_arrow_reader`` (2.0 still has it)
    stream = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
    reader = stream(1 << 20)
    for batch in reader:
        chunk = batch.column(0).to_numpy(zero_copy_only=False)
        if filled + len(chunk) > len(hashes):  # more rows than the footers said (a file replaced meanwhile)
            hashes = np.concatenate([hashes[:filled], np.empty(max(len(chunk), filled), dtype=np.uint64)])
        hashes[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    hashes = hashes[:filled]
    hashes.sort()
    repeated: np.ndarray = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
    return repeated


def _choose_losers(con: duckdb.DuckDBPyConnection, rows: int) -> list[int] | None:
    """The rows of repeated runs that the store's rule drops (``losers``: ``file_index``, ``file_row_number``),
    and the files holding them (indices in ``t``'s list); ``None`` when no run id is repeated (then ``t`` is
    already one row per run)."""
    repeated = _repeated_hashes(con, rows)
    if not len(repeated):
        return None
    con.register("repeated_hashes", pa.table({"h": repeated}))
    con.execute(
        f"""CREATE TEMP TABLE losers AS SELECT file_index, file_row_number FROM (
            SELECT file_index, file_row_number, {_RUN_ID}, state_type, source, end_time FROM t
            SEMI JOIN repeated_hashes ON hash(t.{_RUN_ID}) = repeated_hashes.h WHERE t.{_RUN_ID} IS NOT NULL
        ) QUALIFY row_number() OVER (PARTITION BY {_RUN_ID} ORDER BY {_WINNER}, file_index, file_row_number) > 1"""
    )
    con.unregister("repeated_hashes")
    return [int(r[0]) for r in con.execute("SELECT DISTINCT file_index FROM losers ORDER BY 1").fetchall()]


@contextmanager
def connection(memory_limit: str = MEMORY_LIMIT, threads: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB bounded to ``memory_limit``, spilling to a temporary directory removed on exit; closed.

    Statistics propagation is off: DuckDB 2.0 trusts Parquet's min/max, which pyarrow writes without the NaNs,
    and folds ``isnan(duration_s)`` to false (a NaN duration then made the p95 NaN where pandas skips it)."""
    spill = tempfile.mkdtemp(prefix="synthobs-duckdb-")
    con = duckdb.connect(
        config={
            "memory_limit": memory_limit,
            "temp_directory": spill,
            "threads": threads or os.cpu_count() or 1,
            "preserve_insertion_order": False,
        }
    )
    con.execute("SET disabled_optimizers = 'statistics_propagation'")
    try:
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def exact_files(dataset: ds.Dataset, expr: ds.Expression | None) -> tuple[list[str], set[str]] | None:
    """The files of the window's partitions and the table's columns they hold, or ``None`` when one holds a
    column of another type, a repeated column or a ``date`` column inside (``HealthStore.read`` reads those).

    Reads each file's footer (local: microseconds; S3: one request each, which the scan would make anyway).
    """
    found = _window_files(dataset, expr)
    return None if found is None else (found[0], found[1])


def _window_files(dataset: ds.Dataset, expr: ds.Expression | None) -> tuple[list[str], set[str], int] | None:
    """``exact_files`` with the files' rows in all (their footers'), the files largest first (see ``_WINNER``)."""
    schema = schema_for(names.TASK_RUNS)
    files: list[tuple[int, str]] = []
    present = set()
    for fragment in dataset.get_fragments(filter=expr):
        found = fragment.physical_schema
        if layout_problem(found, schema) or PARTITION_COLUMN in found.names:
            return None
        for field in found:
            index = schema.get_field_index(field.name)
            if index >= 0:
                if field.type != schema.field(index).type:
                    return None
                present.add(field.name)
        files.append((fragment.metadata.num_rows, fragment.path))
    files.sort(key=lambda f: -f[0])  # stable: the listing's order among files of one size
    return [path for _rows, path in files], present, sum(rows for rows, _path in files)


def _bytes(limit: str) -> float:
    """A DuckDB memory limit (``"1GB"``, ``"512MB"``) in bytes, to compare two."""
    number = limit.rstrip("BKMGTbkmgti ")
    scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[limit[len(number) :].strip().upper()[:1]]
    return float(number) * scale


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _register_local(
    con: duckdb.DuckDBPyConnection,
    files: list[str],
    present: set[str],
    since: datetime,
    until: datetime,
    flow: str | None,
) -> None:
    """The window's rows (``flow``'s alone when given) as the view ``t``, read by DuckDB's own Parquet reader
    (columns no file has: null), with each row's ``file_index`` (in ``files``) and ``file_row_number``.
    ``files`` are the window's partitions already (``exact_files``): no partition
    filter here (``union_by_name`` costs nothing measurable: it stays for files of older layouts)."""
    schema = schema_for(names.TASK_RUNS)
    columns = ", ".join(
        c if c in present else f"CAST(NULL AS {_TYPES[str(schema.field(c).type)]}) AS {c}" for c in _READ
    )
    first, last = (pd.Timestamp(t).tz_convert("UTC") for t in (since, until))
    flow_filter = "" if flow is None else f" AND flow_name = {_literal(flow)}"
    con.execute(
        f"CREATE TEMP VIEW t AS SELECT {columns}, file_index, file_row_number "
        f"FROM read_parquet([{', '.join(map(_literal, files))}], "
        "hive_partitioning = false, union_by_name = true) "
        f"WHERE start_time >= CAST({_literal(first.isoformat())} AS TIMESTAMPTZ) "
        f"AND start_time < CAST({_literal(last.isoformat())} AS TIMESTAMPTZ){flow_filter}"
    )


def _frames(aggregates: pd.DataFrame, top: int, failed: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The summary frames from the per-group rows and the most recent ``failed`` rows (without them: the groups'
    lists of recent failed rows flattened, most recent first)."""
    if failed is not None:
        failed = failed[ROW_COLUMNS].reset_index(drop=True)
        if len(failed):
            failed["start_time"] = pd.to_datetime(failed["start_time"], utc=True)
        return {BY_TASK: _by_task(aggregates), FAILED_ROWS: failed}
    recent = [
        {"flow_name": flow, "task_name": task, **row}
        for flow, task, rows in zip(aggregates.flow_name, aggregates.task_name, aggregates.recent, strict=True)
        if isinstance(rows, (list, tuple, np.ndarray))  # a group without a failed run: null
        for row in rows
    ]
    failed = pd.DataFrame(recent, columns=ROW_COLUMNS)
    if len(failed):
        failed["start_time"] = pd.to_datetime(failed["start_time"], utc=True)
        failed = failed.sort_values("start_time", ascending=False, kind="stable").head(top).reset_index(drop=True)
    return {BY_TASK: _by_task(aggregates), FAILED_ROWS: failed}


def _by_task(aggregates: pd.DataFrame) -> pd.DataFrame:
    """``BY_TASK``: the aggregates' columns, the counts as ``int64``, the names as text or ``None``."""
    by_task: pd.DataFrame = aggregates[AGGREGATE_COLUMNS].reset_index(drop=True)
    for column in ("runs", "failed", "retried"):
        by_task[column] = by_task[column].astype("int64")
    for column in ("flow_name", "task_name"):
        names_ = by_task[column]
        if names_.isna().all():  # DuckDB 1.x under pandas 3 makes an all-null text column Int32
            by_task[column] = pd.Series([None] * len(names_), index=names_.index, dtype=object)
    return by_task


def empty_summary() -> dict[str, pd.DataFrame]:
    """The summary of no task run."""
    return {
        BY_TASK: pd.DataFrame(
            {c: pd.Series(dtype="int64" if c in ("runs", "failed", "retried") else object) for c in AGGREGATE_COLUMNS}
        ),
        FAILED_ROWS: pd.DataFrame(columns=ROW_COLUMNS),
    }


def _arrow_sql() -> str:
    """One streamed pass (a reader is read once): every run's rows ordered by the store's rule, out of core."""
    return f"""(
        SELECT * FROM stream
        QUALIFY {_RUN_ID} IS NULL OR row_number() OVER (PARTITION BY {_RUN_ID} ORDER BY {_WINNER}) = 1
    ) AS kept"""


class ReportTooLarge(MemoryError):
    """The window's task runs need more memory than the report's engine may use (a clear error, not a fallback
    that loads every row)."""


def summarize(
    store: Any,
    since: datetime,
    until: datetime,
    flow_name: str | None = None,
    *,
    top: int = FAILED_TASK_ROWS,
    memory_limit: str = MEMORY_LIMIT,
) -> dict[str, pd.DataFrame] | None:
    """The window's task runs summarised (``BY_TASK``, ``FAILED_ROWS``), one row per run as ``HealthStore.read``
    keeps them; ``flow_name`` keeps that flow's runs. ``None`` when the store holds files of other column types
    or keeps changing under the scan: ``HealthStore.read`` reads those (``load_frames`` falls back to it).
    """
    expr = window_filter(names.TASK_RUNS, since, until)
    for _attempt in range(VANISHED_FILE_RETRIES + 1):
        dataset = store.dataset(names.TASK_RUNS)
        if dataset is None:
            return empty_summary()
        try:
            found = _window_files(dataset, expr)
            if found is None or not dataset.files:
                return None  # another writer's files, or none listed (a compaction racing the listing)
            files, present, rows = found
            if not files:
                return empty_summary()  # no partition in the window
            with connection(memory_limit) as con:
                if isinstance(dataset.filesystem, pafs.LocalFileSystem):
                    _register_local(con, files, present, since, until, flow_name)
                    dirty = _choose_losers(con, rows) or []
                    con.execute(f"SET memory_limit = {_literal(max(memory_limit, AGGREGATE_MEMORY_LIMIT, key=_bytes))}")
                    aggregates = con.execute(_aggregate_sql(_kept_sql(dirty), top, None, recent=False)).df()
                    failed = con.execute(_failed_sql(_kept_sql(dirty, failed_only=True), top)).df()
                    return _frames(aggregates, top, failed)
                scanner = dataset.scanner(columns=_READ, filter=expr, batch_readahead=4, fragment_readahead=2)
                con.register("stream", scanner.to_reader())
                aggregates = con.execute(_aggregate_sql(_arrow_sql(), top, flow_name)).df()
        except duckdb.OutOfMemoryException as exc:
            # not the row-by-row fallback: it would need far more memory than DuckDB had (14 GB at 100 M rows)
            raise ReportTooLarge(
                f"synthobs: the health report's aggregates ran out of memory ({exc}); shorten the window "
                "(`synthobs report --since`), keep one flow (`--flow`), or give the report more memory"
            ) from exc
        except (FileNotFoundError, duckdb.IOException):
            continue  # compaction or retention removed a file after it was listed: list again
        except (OSError, pa.ArrowException, duckdb.Error):
            return None
        return _frames(aggregates, top)
    return None


def summarize_rows(
    frame: pd.DataFrame, since: datetime, until: datetime, *, top: int = FAILED_TASK_ROWS
) -> dict[str, pd.DataFrame]:
    """The same summary of task rows already one per run (``load_frames``' older frames, tests' own), in the
    window ``[since, until)`` by ``start_time``."""
    if not len(frame):
        return empty_summary()
    rows = pd.DataFrame(
        {
            c: frame[c].astype(object) if isinstance(frame[c].dtype, pd.CategoricalDtype) else frame[c]
            for c in [*ROW_COLUMNS, "duration_s"]
        }
    )
    rows["duration_s"] = pd.to_numeric(rows["duration_s"], errors="coerce").astype("float64")
    rows["run_count"] = pd.to_numeric(rows["run_count"], errors="coerce").astype("Int64")
    rows = rows[(rows.start_time >= pd.Timestamp(since)) & (rows.start_time < pd.Timestamp(until))]
    if not len(rows):
        return empty_summary()
    with connection() as con:
        con.register("stream", pa.Table.from_pandas(rows, preserve_index=False))
        aggregates = con.execute(_aggregate_sql("stream", top, None)).df()
    return _frames(aggregates, top)
