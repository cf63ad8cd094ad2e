"""Which of several stored rows count: one per ``event_id``, one per run (pure).

A row may be stored twice: a store write given up on (``store_timeout``) that
landed later, a compaction in progress seen half done, a worker and a
reconciliation that both wrote a run. Readers and compaction keep one.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from prefect_synthobs.health.tables import SOURCE_API

FINAL_STATES = pa.array(["COMPLETED", "FAILED", "CRASHED", "CANCELLED"])
"""Prefect's final state types: a row in one of them says more than a row in any other."""


def one_row_per_run(data: pa.Table, run_id: str, order_by: str) -> pa.Table:
    """One row per run: a row in a final state (``FINAL_STATES``, when ``state_type`` is there) before one
    in another (a runner stopped while the run's process exits runs its cancellation hooks: ``CANCELLING``
    after ``COMPLETED``), then a hook row before a reconciled (``source = "api"``) one, then the latest
    ``order_by``.

    A worker that flushed late (its spool drained after an outage) and a
    reconciliation that ran meanwhile both wrote the run; the hook's row has
    more (rows, GPU, trace id). Dask may run a task run twice (its result lost
    with a killed worker): both executions wrote a row; the last one counts.

    A row without a run id (another writer's) is a run of its own: rows with a null id are never grouped.
    """
    runs = data[run_id]
    if data.num_rows < 2 or distinct_values(runs) + runs.null_count == data.num_rows:
        return data  # the usual case: one row per run already (a null id counts as its own run)
    if "state_type" in data.column_names:
        states = pc.cast(data["state_type"], pa.string())
        unfinished = pc.fill_null(pc.invert(pc.is_in(states, value_set=FINAL_STATES)), True).to_pandas()
    else:
        unfinished = False
    frame = pd.DataFrame(
        {
            "run": data[run_id].to_pandas(),
            "unfinished": unfinished,
            "api": pc.fill_null(pc.equal(data["source"], SOURCE_API), False).to_pandas(),
            "at": data[order_by].to_pandas(),
            "index": range(data.num_rows),
        }
    )
    known = frame[frame["run"].notna()]
    keep = known.sort_values(
        ["run", "unfinished", "api", "at"], ascending=[True, True, True, False], na_position="last"
    )
    kept = [*keep.drop_duplicates("run")["index"], *frame.loc[frame["run"].isna(), "index"]]
    return data.take(sorted(kept))


def distinct_values(values: pa.ChunkedArray | pa.Array) -> int:
    """How many distinct non-null values ``values`` holds (``pc.count_distinct``'s count). Plain strings by
    ``pc.unique`` (a third of ``count_distinct``'s time on 200 K run ids), less the null it lists as a value."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return len(pc.unique(values)) - (1 if values.null_count else 0)
    count: int = pc.count_distinct(values).as_py()
    return count


def drop_repeated_events(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the rows whose ``event_id`` an earlier row has (pure). Rows without an ``event_id``
    (another writer's) are all kept: a missing id says nothing about which rows are the same."""
    repeated = frame.duplicated(subset="event_id") & frame["event_id"].notna()
    if not repeated.any():
        return frame
    kept: pd.DataFrame = frame[~repeated].reset_index(drop=True)
    return kept


def event_ids_for_unnamed_rows(ids: pa.ChunkedArray | pa.Array, source: str) -> pa.Array:
    """``ids`` with each null replaced by an id derived from ``source`` (the file: ``day/name``) and the row's
    place in it (pure): two compactions that merge the same file give its rows the same ids, so the rows are
    stored once when their merged files meet."""
    values = ids.to_pylist()
    named = [
        value if value is not None else hashlib.sha256(f"{source}#{index}".encode()).hexdigest()[:32]
        for index, value in enumerate(values)
    ]
    return pa.array(named, pa.string())
