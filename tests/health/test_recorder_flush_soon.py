"""``Recorder.flush_soon``: a request reaches the store within about ``linger`` whether the flusher waits out its
interval (woken) or flushed for an earlier request (it looks again by itself, unwoken); a burst of requests,
one per task end in a busy worker, wakes it about once, not once per ``linger``."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import task_rows
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.store import HealthStore


class CountingEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        super().set()


def _wait_for(store: HealthStore, n: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while store.count("task_runs") < n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.count("task_runs") == n


def _wait_until(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


@pytest.mark.slow
def test_requests_reach_the_store_busy_or_idle_and_a_burst_wakes_the_flusher_about_once(tmp_path: Path) -> None:
    store = HealthStore(str(tmp_path / "store"))
    recorder = Recorder(lambda: store, tmp_path / "spool", flush_interval=3600, store_timeout=5, linger=0.6)
    wake = recorder._wake = CountingEvent()
    rows = task_rows(33)
    recorder.start()
    try:
        # a busy worker: a task ends every 0.1 s for 3 s (5 lingers), each spooling its row and asking for a flush;
        # woken once (twice if this machine stalled this thread past a whole linger), not once per linger (5)
        for row in rows[:30]:
            recorder.add("task_runs", row)
            recorder.spool_now()
            time.sleep(0.1)
        _wait_for(store, 30)  # an hour-long interval: only the requests can have written them
        assert wake.sets <= 2
        # idle again (a pass found no request): the next request wakes it
        _wait_until(lambda: recorder._idle and not recorder._soon)
        woken_before = wake.sets
        recorder.add("task_runs", rows[30])
        recorder.flush_soon()
        _wait_for(store, 31)
        assert wake.sets == woken_before + 1
        # right after a flush for a request (busy): requests are seen without a wake
        recorder.add("task_runs", rows[31])
        recorder.add("task_runs", rows[32])
        recorder.flush_soon()
        _wait_for(store, 33)
    finally:
        recorder.stop(flush=False)
    assert recorder.pending() == 0 and not recorder.spooled_files()


@pytest.mark.parametrize("requests", [0, 1, 5])
def test_stop_ends_the_flusher_whatever_it_waits_for(tmp_path: Path, requests: int) -> None:
    store = HealthStore(str(tmp_path / "store"))
    # an hour-long linger and interval: stop's 5 s join can only see the thread end if stop cut the wait short
    recorder = Recorder(lambda: store, tmp_path / "spool", flush_interval=3600, store_timeout=5, linger=3600)
    recorder.start()
    thread = recorder._thread
    assert thread is not None
    for row in task_rows(requests):
        recorder.add("task_runs", row)
        recorder.flush_soon()
    _wait_until(lambda: recorder._idle or recorder._soon)  # in its linger (a request) or its interval (none)
    recorder.stop(flush=True)
    assert not thread.is_alive() and recorder._thread is None
    assert store.count("task_runs") == requests


@settings(max_examples=5, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0.0, 0.001, 0.01, 0.03]), min_size=1, max_size=25), min_size=1, max_size=4))
def test_requests_from_many_threads_all_reach_the_store_once(pauses: list[list[float]]) -> None:
    """Threads spooling task ends at random moments against the flusher's busy and idle passes: every row reaches
    the store through the requests alone (an hour-long interval, no final flush), each once."""
    with tempfile.TemporaryDirectory() as tmp:
        store = HealthStore(f"{tmp}/store")
        recorder = Recorder(lambda: store, f"{tmp}/spool", flush_interval=3600, store_timeout=5, linger=0.02)
        rows = iter(task_rows(sum(map(len, pauses))))
        batches = [[next(rows) for _ in thread_pauses] for thread_pauses in pauses]
        recorder.start()

        def worker(own: list[Any], waits: list[float]) -> None:
            for row, wait in zip(own, waits, strict=True):
                recorder.add("task_runs", row)
                recorder.spool_now()
                time.sleep(wait)

        threads = [threading.Thread(target=worker, args=pair) for pair in zip(batches, pauses, strict=True)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            total = sum(map(len, batches))
            _wait_for(store, total)
            ids = store.read("task_runs", deduplicate=False).task_run_id.tolist()
            assert sorted(ids) == sorted(row["task_run_id"] for batch in batches for row in batch)
        finally:
            recorder.stop(flush=False)
