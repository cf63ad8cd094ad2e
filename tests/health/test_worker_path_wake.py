"""``Recorder.spool_now`` (a worker's task end) wakes the flusher only when something is due: enough spooled
bytes since the last flush, rows it could not spool, or rows spooled as Arrow. Below that the rows wait, safe on
disk, for the flusher's interval (or the flow's process on this host, at its end), and every row still reaches
the store exactly once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import task_rows
from prefect_synthobs.health import recorder as recorder_module
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.store import HealthStore


def new_recorder(tmp_path: Path, spool_max_bytes: int = 1 << 30) -> tuple[Recorder, HealthStore]:
    store = HealthStore(str(tmp_path / "store"))
    recorder = Recorder(
        lambda: store, tmp_path / "spool", flush_interval=3600, store_timeout=5, spool_max_bytes=spool_max_bytes
    )
    return recorder, store


def test_a_small_task_end_spools_its_rows_without_waking_the_flusher(tmp_path: Path) -> None:
    recorder, store = new_recorder(tmp_path)
    for row in task_rows(5):
        recorder.add("task_runs", row)
        recorder.spool_now()
        assert not recorder._wake.is_set()  # no wake per task: the interval (or the flow's end) takes them
    assert recorder.pending() == 0 and recorder.spool.rows() == 5  # safe on disk before the task returns
    assert recorder.flush() == 5 and store.count("task_runs") == 5


def test_spooled_bytes_past_the_threshold_wake_the_flusher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder_module, "SPOOL_NOW_WAKE_BYTES", 1)  # any record is enough
    recorder, _ = new_recorder(tmp_path)
    recorder.add("task_runs", task_rows(1))
    recorder.spool_now()
    assert recorder._wake.is_set()


def test_a_small_spool_bound_wakes_the_flusher_at_once(tmp_path: Path) -> None:
    recorder, _ = new_recorder(tmp_path, spool_max_bytes=8)  # an eighth of the bound: one byte
    recorder.add("task_runs", task_rows(1))
    recorder.spool_now()
    assert recorder._wake.is_set()  # the flusher keeps the spool within its bound


def test_rows_spooled_as_arrow_wake_the_flusher(tmp_path: Path) -> None:
    recorder, store = new_recorder(tmp_path)
    row = task_rows(1)[0]
    row["start_time"] = dt.date(2026, 11, 23)  # not a datetime: JSON would not carry it exactly
    recorder.add("task_runs", row)
    recorder.spool_now()
    assert recorder._wake.is_set() and recorder.pending() == 0
    recorder.flush()
    assert store.count("task_runs") + len(list((tmp_path / "spool").rglob("_rejected/*"))) == 1


def test_rows_the_spool_cannot_take_wake_the_flusher(tmp_path: Path) -> None:
    blocked = tmp_path / "spool"
    blocked.write_text("a file where the spool directory should be")
    store = HealthStore(str(tmp_path / "store"))
    recorder = Recorder(lambda: store, blocked, flush_interval=3600, store_timeout=5)
    recorder.add("task_runs", task_rows(1))
    recorder.spool_now()
    assert recorder._wake.is_set() and recorder.pending() == 1  # kept in memory, written by the flusher


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.one_of(st.integers(1, 4), st.just(0)), min_size=1, max_size=20), wake=st.integers(1, 4000))
def test_the_wake_follows_the_bytes_spooled_since_the_last_flush_and_every_row_lands_once(
    tmp_path_factory: pytest.TempPathFactory, ops: list[int], wake: int
) -> None:
    """``n > 0``: a task end spooling ``n`` rows; ``0``: a flush. The flusher is woken exactly when the bytes
    spooled since the last flush reach the threshold; the store ends with every row once."""
    tmp_path = tmp_path_factory.mktemp("wake")
    recorder, store = new_recorder(tmp_path)
    recorder._wake_bytes = wake
    since, written = 0, 0
    for n in ops:
        if n == 0:
            recorder.flush()
            recorder._wake.clear()  # (what the flusher does as it wakes)
            since = 0
            continue
        before = recorder.spool.rows_bytes
        recorder.add("task_runs", task_rows(n, start=written))
        written += n
        recorder.spool_now()
        since += recorder.spool.rows_bytes - before
        assert recorder._wake.is_set() == (since >= wake)
    recorder.flush()
    ids = sorted(store.read("task_runs").task_run_id)
    assert ids == sorted(f"t{i}" for i in range(written))
