"""The recorder's promise under generated interleavings: a store fault costs no row and doubles none.

Two recorders (a flow's process and a worker's) share one spool; rows are buffered (as added, or converted
to Arrow as a batch thread adds them), spooled at once
(``spool_now``), flushed in the foreground and in the background while the store refuses or answers.
Once the store answers, every row is in it exactly once. No server: the store is an in-memory stand-in.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from conftest import task_rows
from prefect_synthobs.health.breaker import StoreBreaker
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.spool import read_spool_file
from prefect_synthobs.health.tables import schema_for

SCHEMA = schema_for("task_runs")


class MemoryStore:
    """Takes rows while ``up``; refuses (as a full disk does) otherwise."""

    url = "memory://store"

    def __init__(self) -> None:
        self.up = True
        self.event_ids: list[str] = []

    def write(self, table: str, data: pa.Table) -> list[str]:
        if not self.up:
            raise OSError("no space left on device")
        self.event_ids += [str(i) for i in data.column("event_id").to_pylist()]
        return []

    def size_of(self, paths: Any) -> int:
        return 0

    def check(self) -> None:
        if not self.up:
            raise OSError("no space left on device")


class RecorderInterleavings(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.spool = Path(tempfile.mkdtemp(prefix="synthobs-recorder-"))
        self.store = MemoryStore()
        self.recorders = [
            Recorder(
                lambda: self.store,  # type: ignore[arg-type,return-value]
                self.spool,
                store_timeout=5,
                breaker=StoreBreaker(base=0.0, cap=0.0),  # a background retry is always due
            )
            for _ in range(2)
        ]
        self.expected: set[str] = set()
        self.next_id = 0

    @rule(recorder=st.integers(0, 1), n=st.integers(1, 3))
    def add(self, recorder: int, n: int) -> None:
        batch = task_rows(n, start=self.next_id)
        self.next_id += n
        self.recorders[recorder].add("task_runs", batch)
        self.expected |= {row["event_id"] for row in batch}

    @rule(recorder=st.integers(0, 1), n=st.integers(1, 3))
    def add_converted(self, recorder: int, n: int) -> None:
        """A batch thread's rows, converted as they are added (``Recorder.add_converted``)."""
        batch = task_rows(n, start=self.next_id)
        self.next_id += n
        self.recorders[recorder].add_converted("task_runs", batch)
        self.expected |= {row["event_id"] for row in batch}

    @rule(recorder=st.integers(0, 1))
    def spool_now(self, recorder: int) -> None:
        self.recorders[recorder].spool_now()

    @rule(recorder=st.integers(0, 1), background=st.booleans())
    def flush(self, recorder: int, background: bool) -> None:
        self.recorders[recorder].flush(background=background)

    @rule(up=st.booleans())
    def store_answers(self, up: bool) -> None:
        self.store.up = up

    def in_spool(self) -> list[str]:
        found: list[str] = []
        for path in self.recorders[0].spooled_files():
            found += [str(i) for i in read_spool_file(path, path.suffix, SCHEMA).column("event_id").to_pylist()]
        return found

    def in_memory(self) -> list[str]:
        buffered = [row["event_id"] for r in self.recorders for rows in r._pending.values() for row in rows]
        converted = [
            str(i)
            for r in self.recorders
            for chunks in r._converted.values()
            for _, data in chunks
            for i in data.column("event_id").to_pylist()
        ]
        assert len(converted) == sum(len(kept) for r in self.recorders for c in r._converted.values() for kept, _ in c)
        return buffered + converted

    @invariant()
    def every_row_is_in_one_place_once(self) -> None:
        """In the store, a recorder's buffer or the spool: never two of them, never none."""
        places = self.store.event_ids + self.in_memory() + self.in_spool()
        assert sorted(places) == sorted(self.expected), "a row was lost or doubled"

    def teardown(self) -> None:
        try:
            self.store.up = True
            for recorder in self.recorders:
                recorder.flush(background=True)
            assert sorted(self.store.event_ids) == sorted(self.expected), "a row was lost or doubled"
            assert all(r.pending() == 0 and r.spooled_files() == [] for r in self.recorders)
            assert all(not r.dropped for r in self.recorders)
        finally:
            shutil.rmtree(self.spool, ignore_errors=True)


RecorderInterleavings.TestCase.settings = settings(
    max_examples=60, stateful_step_count=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_a_store_fault_costs_no_row_and_doubles_none = RecorderInterleavings.TestCase
