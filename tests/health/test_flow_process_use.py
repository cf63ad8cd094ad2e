"""``flow_runs.cpu_seconds`` and ``flow_runs.peak_memory_bytes``: what a flow run used of the process that ran it.

The measurement (``instrument/process_use.py``): never over the true peak and exact whenever the run set the
process's high-water mark (generated RSS traces); the sampling thread starts with the first run and stops with the
last; real readings of a real allocation; the columns in the one table definition; a store written before them still
reads; a run this process did not run (a runner recording a crash) gets nulls, never the runner's numbers.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prefect import flow
from prefect.states import Crashed

import prefect_synthobs as so
from prefect_synthobs import catalog as names
from prefect_synthobs.health.events import FlowRunEnded
from prefect_synthobs.health.rows import flow_row
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.health.tables import FLOW_RUNS
from prefect_synthobs.instrument.instrumentation import get_runtime
from prefect_synthobs.instrument.process_use import (
    PROCESS_USE,
    ProcessUse,
    Readers,
    RunProcessUse,
    max_rss_bytes,
    rss_bytes,
    summarize,
)
from prefect_synthobs.instrument.runtime import ObserveSpec

MiB = 2**20
DAY = datetime(2026, 12, 3, 9, tzinfo=timezone.utc)
NEW_COLUMNS = ("cpu_seconds", "peak_memory_bytes")


class FakeProcess:
    """A process whose RSS the test sets; the kernel's high-water mark follows it, as Linux keeps it."""

    def __init__(self, rss: int, high_water: int | None = None, cpu: float = 0.0) -> None:
        self.rss, self.high_water, self.cpu = rss, max(rss, high_water or 0), cpu

    def set(self, rss: int) -> None:
        self.rss, self.high_water = rss, max(self.high_water, rss)

    def readers(self) -> Readers:
        return Readers(cpu=lambda: self.cpu, rss=lambda: self.rss, max_rss=lambda: self.high_water)


# -- the measurement ---------------------------------------------------------------------------------------------

rss_values = st.integers(min_value=1, max_value=2**40)


@given(
    before=st.lists(rss_values, min_size=1, max_size=20),
    during=st.lists(st.tuples(rss_values, st.booleans()), min_size=1, max_size=40),
)
def test_the_peak_is_never_over_the_truth_and_exact_when_the_run_set_the_high_water_mark(
    before: list[int], during: list[tuple[int, bool]]
) -> None:
    """``before``: the process's RSS before the run; ``during``: the run's RSS trace, each value sampled or not
    (a spike between two samples is missed); the readings at the start and the end are always taken."""
    process = FakeProcess(before[0])
    for rss in before[1:]:
        process.set(rss)
    tracker = RunProcessUse(readers=process.readers(), threaded=False)
    process.set(during[0][0])
    tracker.attach("run")
    for rss, sampled in during[1:]:
        process.set(rss)
        if sampled:
            tracker.sample_once()
    use = tracker.detach("run")
    assert use is not None and use.peak_memory_bytes is not None
    true_peak = max(rss for rss, _ in during)
    assert max(during[0][0], during[-1][0]) <= use.peak_memory_bytes <= true_peak
    if true_peak > max(before):  # the run set the process's high-water mark: exact
        assert use.peak_memory_bytes == true_peak
    # the kernel's value once the high-water mark rose after the run's start (else the start's reading is the peak)
    assert use.peak_exact is (true_peak > max([*before, during[0][0]]))
    sampled_peak = max([during[0][0], during[-1][0]] + [rss for rss, sampled in during[1:] if sampled])
    assert use.peak_memory_bytes == max(sampled_peak, true_peak if use.peak_exact else 0)
    assert tracker.running() == []


@given(
    start=st.floats(0, 1e6, allow_nan=False),
    spent=st.floats(-1.0, 1e4, allow_nan=False),
    peak=st.one_of(st.none(), rss_values),
)
def test_cpu_seconds_are_the_process_time_spent_never_negative(start: float, spent: float, peak: int | None) -> None:
    use = summarize(start, start + spent, None, None, peak)
    assert use.cpu_seconds == pytest.approx(max(spent, 0.0), abs=1e-6) and use.cpu_seconds >= 0
    assert (use.peak_memory_bytes, use.peak_exact) == (peak, False)
    assert summarize(None, 1.0, None, None, None) == ProcessUse(None, None)


def test_a_run_never_attached_here_has_no_measurement_and_nested_attachments_count_once() -> None:
    process = FakeProcess(100 * MiB, cpu=10.0)
    tracker = RunProcessUse(readers=process.readers(), threaded=False)
    assert tracker.detach("elsewhere") is None  # a runner recording a crash it did not run
    tracker.attach("run")
    process.cpu = 12.5
    tracker.attach("run")  # seen again (a retry's hook): still measured from the first start
    process.cpu = 13.0
    first = tracker.detach("run")
    assert first is not None and first.cpu_seconds == pytest.approx(3.0) and tracker.running() == ["run"]
    process.cpu = 14.0
    last = tracker.detach("run")
    assert last is not None and last.cpu_seconds == pytest.approx(4.0) and tracker.running() == []


def test_readings_that_fail_leave_nulls_and_never_raise() -> None:
    def boom() -> Any:
        raise OSError("no /proc here")

    tracker = RunProcessUse(readers=Readers(cpu=boom, rss=boom, max_rss=boom), threaded=False)
    tracker.attach("run")
    tracker.sample_once()
    assert tracker.detach("run") == ProcessUse(None, None)


def test_the_sampling_thread_runs_while_runs_are_attached_and_catches_what_start_and_end_miss() -> None:
    process = FakeProcess(100 * MiB, high_water=900 * MiB)  # an earlier run peaked higher: sampled, not exact
    tracker = RunProcessUse(interval=0.01, readers=process.readers())
    tracker.attach("a")
    tracker.attach("b")
    assert tracker.thread_alive and sum(t.name == "synthobs-process-use" for t in threading.enumerate()) >= 1
    process.set(400 * MiB)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # a spike seen by the thread only (attach and detach read 100 MiB)
        time.sleep(0.05)
        if tracker._runs["a"].sampled_peak == 400 * MiB:
            break
    process.rss = 100 * MiB
    a = tracker.detach("a")
    assert tracker.thread_alive  # "b" still runs
    b = tracker.detach("b")
    assert not tracker.thread_alive  # stopped through its Event with the last run
    assert a is not None and b is not None
    assert a.peak_memory_bytes == b.peak_memory_bytes == 400 * MiB and not a.peak_exact


def test_real_readings_of_a_real_allocation() -> None:
    rss = rss_bytes()
    high_water = max_rss_bytes()  # read after: not below the reading before it, but for the kernel's counter slack
    assert rss is not None and high_water is not None and 0 < rss <= high_water + 4 * MiB  # seen: 144 KiB over
    tracker = RunProcessUse(interval=0.05)
    tracker.attach("run")
    start = time.process_time()
    while time.process_time() - start < 0.3:  # at least 0.3 s of CPU, whatever the machine's load
        pass
    block = bytearray(b"\x01") * (150 * MiB)  # filled: resident
    time.sleep(0.4)  # several sampling intervals
    del block
    use = tracker.detach("run")
    assert use is not None and use.cpu_seconds is not None and use.peak_memory_bytes is not None
    assert use.cpu_seconds >= 0.3
    assert use.peak_memory_bytes >= rss + 140 * MiB  # the block, freed before the end, is in the peak
    assert not tracker.thread_alive


# -- the columns -------------------------------------------------------------------------------------------------


def test_the_columns_are_in_the_one_table_definition_and_default_to_null() -> None:
    assert FLOW_RUNS.schema.field("cpu_seconds").type == pa.float64()
    assert FLOW_RUNS.schema.field("peak_memory_bytes").type == pa.int64()
    base = {
        "flow_run_id": "f",
        "flow_name": "train",
        "state_type": "COMPLETED",
        "state_name": "Completed",
        "start_time": DAY,
        "end_time": DAY + timedelta(seconds=5),
    }
    row = flow_row(**base)
    assert (row["cpu_seconds"], row["peak_memory_bytes"]) == (None, None) and list(row) == FLOW_RUNS.column_names
    measured = flow_row(**base, **ProcessUse(2.5, 300 * MiB).columns())
    assert (measured["cpu_seconds"], measured["peak_memory_bytes"]) == (2.5, 300 * MiB)
    assert FlowRunEnded(**base, cpu_seconds=float("nan")).cpu_seconds is None  # never a NaN in the store


def _old_flow_runs_file(root: Path, rows: list[dict[str, Any]]) -> Path:
    """A ``flow_runs`` file as this package wrote it before the two columns."""
    old = pa.schema([f for f in FLOW_RUNS.schema if f.name not in NEW_COLUMNS])
    directory = root / names.FLOW_RUNS / f"date={DAY:%Y-%m-%d}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"part-old-{uuid.uuid4().hex}.parquet"
    pq.write_table(pa.Table.from_pylist([{c: r[c] for c in old.names} for r in rows], schema=old), path)
    return path


def _runs(n: int, prefix: str, use: ProcessUse) -> list[dict[str, Any]]:
    return [
        flow_row(
            flow_run_id=f"{prefix}{k}",
            flow_name="train",
            state_type="COMPLETED",
            state_name="Completed",
            start_time=DAY + timedelta(minutes=k),
            end_time=DAY + timedelta(minutes=k, seconds=30),
            **use.columns(),
        )
        for k in range(n)
    ]


def test_a_store_written_before_the_columns_still_reads(tmp_path: Path) -> None:
    root = tmp_path / "store"
    old = _runs(3, "old", ProcessUse(None, None))
    path = _old_flow_runs_file(root, old)
    assert not set(NEW_COLUMNS) & set(pq.read_schema(path).names)  # really the old layout
    store = HealthStore(str(root))
    only_old = store.read(names.FLOW_RUNS)
    assert len(only_old) == 3 and only_old.cpu_seconds.isna().all() and only_old.peak_memory_bytes.isna().all()
    assert list(only_old.flow_run_id.sort_values()) == ["old0", "old1", "old2"]

    store.write(names.FLOW_RUNS, _runs(2, "new", ProcessUse(1.5, 512 * MiB)))
    both = store.read(names.FLOW_RUNS, columns=["flow_run_id", *NEW_COLUMNS]).set_index("flow_run_id")
    assert both.loc[["old0", "old1", "old2"], "cpu_seconds"].isna().all()
    assert list(both.loc[["new0", "new1"], "peak_memory_bytes"]) == [512 * MiB] * 2
    assert str(both.peak_memory_bytes.dtype) in ("Int64", "int64[pyarrow]", "float64")

    assert store.compact(names.FLOW_RUNS, before=DAY.date() + timedelta(days=1))["rows"] == 5
    (compacted,) = list((root / names.FLOW_RUNS).rglob("*.parquet"))
    assert set(NEW_COLUMNS) <= set(pq.read_schema(compacted).names)
    after = store.read(names.FLOW_RUNS).set_index("flow_run_id")
    assert pd.isna(after.loc["old0", "cpu_seconds"]) and pd.isna(after.loc["old0", "peak_memory_bytes"])
    assert list(after.loc[["new0", "new1"], "cpu_seconds"]) == [1.5, 1.5]


# -- observed flows ----------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_server")
def test_an_observed_flow_row_has_its_cpu_and_peak_and_a_crash_seen_elsewhere_has_nulls(store_dir: Path) -> None:
    name = f"use-{uuid.uuid4().hex[:6]}"

    @so.observe(kind="training")
    @flow(name=name)
    def work(burn: bool) -> int:
        if burn:
            start = time.process_time()
            while time.process_time() - start < 0.5:
                pass
            block = bytearray(b"\x01") * (150 * MiB)
            time.sleep(0.6)  # a few of the tracker's samples
            del block
        else:
            time.sleep(0.6)
        return 1

    rss_before = rss_bytes() or 0
    burnt = work(True, return_state=True).state_details.flow_run_id
    slept = work(False, return_state=True).state_details.flow_run_id
    # each run detached at its end (another test on this worker may have left its own run attached)
    assert not {str(burnt), str(slept)} & {str(run) for run in PROCESS_USE.running()}

    # what a runner holds for a run it started in a process that was then killed: it never ran it
    @flow(name=f"{name}-elsewhere")
    def elsewhere() -> int:
        return 1

    other = elsewhere(return_state=True).state_details.flow_run_id
    stale = SimpleNamespace(id=other, start_time=None, labels={}, tags=[], flow_id=None)
    crashed = Crashed(message="Flow run infrastructure exited with non-zero status code -9.")
    get_runtime().end_flow_run(elsewhere, stale, crashed, ObserveSpec(kind="training"), flush=True)

    rows = so.HealthStore(str(store_dir)).read("flow_runs").set_index("flow_run_id")
    burn_row, sleep_row, crash_row = rows.loc[str(burnt)], rows.loc[str(slept)], rows.loc[str(other)]
    assert burn_row.cpu_seconds >= 0.5 > sleep_row.cpu_seconds >= 0
    assert burn_row.peak_memory_bytes >= rss_before + 140 * MiB
    assert sleep_row.peak_memory_bytes < burn_row.peak_memory_bytes
    assert crash_row.state_type == "CRASHED"
    assert pd.isna(crash_row.cpu_seconds) and pd.isna(crash_row.peak_memory_bytes)
