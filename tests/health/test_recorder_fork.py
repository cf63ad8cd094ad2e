"""A forked child's recorder: never hangs on a lock its parent's flusher held, never writes the parent's rows."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import task_rows
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.store import HealthStore

TABLE = "task_runs"


def test_a_child_forked_during_a_flush_flushes_its_own_rows_only(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    store = HealthStore(str(tmp_path / "store"))
    writing, release = threading.Event(), threading.Event()
    original = store.write

    def gated_write(table: str, rows: Any) -> list[str]:
        if os.getpid() == parent:  # the parent's flush stays in the store write while the child forks
            writing.set()
            release.wait(10)
        return original(table, rows)

    parent = os.getpid()
    store.write = gated_write  # type: ignore[method-assign]
    recorder = Recorder(lambda: store, tmp_path / "spool", flush_interval=3600, store_timeout=30)
    recorder.add(TABLE, task_rows(2))  # t0, t1: taken by the parent's flush below
    flushing = threading.Thread(target=recorder.flush, kwargs={"background": True})
    flushing.start()
    try:
        assert writing.wait(10)  # the parent's flush holds its flush lock, inside the store write
        recorder.add(TABLE, task_rows(1, start=2))  # t2: buffered in the parent at the fork
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            code = 1
            signal.alarm(10)  # a hang ends the child with SIGALRM, failing the test
            try:
                recorder.add(TABLE, task_rows(1, start=3))  # t3: the child's own
                code = 0 if recorder.flush() == 1 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0  # 1: raised, 2: wrote other than its own row, -14: hung
    finally:
        release.set()
        flushing.join(30)
    recorder.flush()  # the parent writes t2
    ids = sorted(store.read(TABLE).task_run_id)
    assert ids == ["t0", "t1", "t2", "t3"]  # each once: the child never wrote the parent's t2
