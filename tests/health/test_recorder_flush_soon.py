"""``Recorder.flush_soon``: a request reaches the store within about ``linger`` whether the flusher waits out its
interval (woken) or flushed for an earlier request (it looks again by itself, unwoken); a burst of requests,
one per task end in a busy worker, wakes it about once, not once per ``linger``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_requests_reach_the_store_busy_or_idle_and_a_burst_wakes_the_flusher_about_once(tmp_path: Path) -> None:
    store = HealthStore(str(tmp_path / "store"))
    recorder = Recorder(lambda: store, tmp_path / "spool", flush_interval=3600, store_timeout=5, linger=0.3)
    wake = recorder._wake = CountingEvent()
    rows = task_rows(23)
    recorder.start()
    try:
        # a busy worker: a task ends every 50 ms for over a second, each spooling its row and asking for a flush
        for row in rows[:20]:
            recorder.add("task_runs", row)
            recorder.spool_now()
            time.sleep(0.05)
        _wait_for(store, 20)  # an hour-long interval: only the requests can have written them
        assert wake.sets <= 2  # woken once (twice if this machine stalled past a linger), not once per linger
        # idle again (a pass without a request): the next request wakes it
        time.sleep(1.0)
        woken_before = wake.sets
        recorder.add("task_runs", rows[20])
        recorder.flush_soon()
        _wait_for(store, 21)
        assert wake.sets == woken_before + 1
        # right after a flush for a request (busy): requests are seen without a wake
        recorder.add("task_runs", rows[21])
        recorder.add("task_runs", rows[22])
        recorder.flush_soon()
        _wait_for(store, 23)
    finally:
        recorder.stop(flush=False)
    assert recorder.pending() == 0 and not recorder.spooled_files()


@pytest.mark.parametrize("requests", [0, 1, 5])
def test_stop_ends_the_flusher_promptly_whatever_it_waits_for(tmp_path: Path, requests: int) -> None:
    store = HealthStore(str(tmp_path / "store"))
    recorder = Recorder(lambda: store, tmp_path / "spool", flush_interval=3600, store_timeout=5, linger=30)
    recorder.start()
    for row in task_rows(requests):
        recorder.add("task_runs", row)
        recorder.flush_soon()
    time.sleep(0.1)  # the flusher is in its linger (a request) or its interval (none)
    started = time.monotonic()
    recorder.stop(flush=True)
    assert time.monotonic() - started < 5  # not the 30 s linger nor the hour-long interval
    assert recorder._thread is None and store.count("task_runs") == requests
