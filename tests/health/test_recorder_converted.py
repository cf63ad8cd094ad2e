"""Rows converted as a batch thread adds them (``Recorder.add_converted``) reach the store as ``add``'s do.

A real ``HealthStore`` on a temporary directory: any mix of converted and plain batches, some with rows that do not
fit their columns, is written in one file per table per flush, every row that fits exactly once, and every row that
does not fit set aside once (``_rejected/``), with the same warning as a flush gives.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import task_rows
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.store import HealthStore

batches = st.lists(
    st.tuples(st.booleans(), st.integers(1, 6), st.sets(st.integers(0, 5), max_size=3)),  # converted?, rows, bad ones
    min_size=1,
    max_size=6,
)


def _batch(n: int, start: int, bad: set[int]) -> list[dict[str, Any]]:
    rows = task_rows(n, start=start)
    for i in bad:
        if i < n:
            rows[i]["run_count"] = "not a number"  # does not fit an integer column
    return rows


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=batches)
def test_converted_and_plain_batches_write_one_file_each_row_once(
    tmp_path_factory: pytest.TempPathFactory, plan: Any
) -> None:
    root = tmp_path_factory.mktemp("store")
    recorder = Recorder(lambda: HealthStore(str(root / "store")), root / "spool", store_timeout=10)
    fits, misfits, start = set(), set(), 0
    for converted, n, bad in plan:
        rows = _batch(n, start, bad)
        start += n
        for row in rows:
            (misfits if row["run_count"] == "not a number" else fits).add(row["task_run_id"])
        (recorder.add_converted if converted else recorder.add)("task_runs", rows)
    assert recorder.pending() == len(fits) + sum(1 for c, n, b in plan if not c for i in b if i < n)
    recorder.flush()
    files = sorted((root / "store" / "task_runs").rglob("*.parquet")) if fits else []
    assert len(files) == (1 if fits else 0), "one file per table per flush"
    stored = [i for f in files for i in pq.read_table(f, columns=["task_run_id"]).column(0).to_pylist()]
    assert sorted(stored) == sorted(fits)
    rejected = root / "spool" / "_rejected" / "task_runs.jsonl"
    kept = [json.loads(line)["row"]["task_run_id"] for line in rejected.read_text().splitlines()] if misfits else []
    assert sorted(kept) == sorted(misfits), "each row that does not fit is set aside once"
    assert recorder.pending() == 0 and recorder.spooled_files() == []


def test_rows_converted_by_other_threads_while_flushing_are_written_once(tmp_path: Path) -> None:
    """Batch threads adding converted rows while another thread flushes: each row in the store once."""
    recorder = Recorder(lambda: HealthStore(str(tmp_path / "store")), tmp_path / "spool", store_timeout=10)
    per_thread, threads_n = 40, 3
    go = threading.Barrier(threads_n + 1)

    def add(k: int) -> None:
        go.wait()
        for j in range(per_thread):
            recorder.add_converted("task_runs", task_rows(1, start=k * 1000 + j))

    threads = [threading.Thread(target=add, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    go.wait()
    while any(t.is_alive() for t in threads):
        recorder.flush()
    for t in threads:
        t.join()
    recorder.flush()
    stored = [
        i
        for f in (tmp_path / "store" / "task_runs").rglob("*.parquet")
        for i in pq.read_table(f, columns=["task_run_id"]).column(0).to_pylist()
    ]
    assert sorted(stored) == sorted(f"t{k * 1000 + j}" for k in range(threads_n) for j in range(per_thread))


def test_converted_rows_spool_as_json_when_a_worker_spools_now(tmp_path: Path) -> None:
    """``spool_now`` (a worker's path) takes converted rows too: nothing left behind in memory."""
    recorder = Recorder(lambda: HealthStore(str(tmp_path / "store")), tmp_path / "spool", store_timeout=10)
    recorder.add_converted("task_runs", task_rows(3))
    recorder.add("task_runs", task_rows(2, start=3))
    recorder.spool_now()
    assert recorder.pending() == 0
    assert recorder.spooled_rows() == 5
    recorder.flush()
    stored = [
        i
        for f in (tmp_path / "store" / "task_runs").rglob("*.parquet")
        for i in pq.read_table(f, columns=["task_run_id"]).column(0).to_pylist()
    ]
    assert sorted(stored) == sorted(f"t{i}" for i in range(5))
