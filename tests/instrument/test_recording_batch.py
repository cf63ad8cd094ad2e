"""Task ends recorded in batches (``TaskEndBatch``, ``Recording.handle_many``): the same rows, the same
metric values and exemplars as one ``handle`` per event; a noted completed task run becomes the same event as
``task_run_ended`` builds; a batch is recorded by a flush, when full, and by its thread when nobody flushed."""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanContext, TraceFlags
from prometheus_client import CollectorRegistry

import prefect_synthobs as so
from prefect_synthobs import catalog
from prefect_synthobs.health import events
from prefect_synthobs.health.events import AttemptError
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.sink import HealthSink
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.health.tables import EVENT_ID
from prefect_synthobs.instrument import prefect_runs
from prefect_synthobs.instrument.recording import Recording, TaskEndBatch
from prefect_synthobs.instrument.sinks import MetricsSink, SpanSink
from prefect_synthobs.telemetry.metrics import SynthObsMetrics

T0 = datetime(2026, 12, 3, 12, tzinfo=timezone.utc)


def _completed(task_run_id: str, **fields: Any) -> events.TaskRunEnded:
    """A completed task run of flow run ``r`` of flow ``f`` (task ``x`` unless ``fields`` say otherwise)."""
    values: dict[str, Any] = {"task_name": "x", **fields}
    return events.TaskRunEnded(
        task_run_id=task_run_id,
        flow_run_id="r",
        flow_name="f",
        state_type="COMPLETED",
        state_name="Completed",
        start_time=T0,
        end_time=T0,
        **values,
    )


class Rows:
    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {}

    def add(self, table: str, rows: Any) -> None:
        self.rows.setdefault(table, []).extend(rows if isinstance(rows, list) else [rows])


def _recording(duration_calls: list[Any] | None = None) -> tuple[Recording, Rows, CollectorRegistry]:
    registry = CollectorRegistry()
    m = SynthObsMetrics(registry=registry, prefix="t")
    if duration_calls is not None:
        m.duration_listener = lambda metric, labels, seconds, ctx: duration_calls.append((metric, labels, seconds, ctx))
    rows = Rows()
    recording = Recording(
        None,  # type: ignore[arg-type]
        m,
        redact_pii=True,
        sinks=[HealthSink(rows, redact_pii=True), MetricsSink(m), SpanSink()],
    )
    return recording, rows, registry


def _samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float, Any]]:
    out = []
    for family in registry.collect():
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            exemplar = (dict(s.exemplar.labels), s.exemplar.value) if s.exemplar is not None else None
            out.append((s.name, dict(s.labels), s.value, exemplar))
    return sorted(out, key=repr)


def _without_ids(rows: Rows) -> dict[str, list[dict[str, Any]]]:
    return {t: [{k: v for k, v in r.items() if k != EVENT_ID} for r in rs] for t, rs in rows.rows.items()}


def _context(i: int, sampled: bool) -> SpanContext:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(trace_id=i + 1, span_id=i + 1, is_remote=False, trace_flags=flags)


task_events = st.lists(
    st.tuples(
        st.sampled_from(["f", "g"]),
        st.sampled_from(["load", "fit", "my secret@mail.com"]),
        st.sampled_from(["COMPLETED", "FAILED", "CRASHED"]),
        st.one_of(st.none(), st.floats(0, 20_000, allow_nan=False)),
        st.integers(0, 4),
        st.booleans(),
        st.booleans(),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(task_events)
def test_a_batch_records_the_same_rows_metrics_and_exemplars_as_one_event_at_a_time(specs: list[Any]) -> None:
    batch_events = [
        events.TaskRunEnded(
            task_run_id=f"t{i}",
            flow_run_id="r",
            flow_name=flow,
            task_name=task,
            state_type=state,
            state_name=state.title(),
            start_time=T0,
            end_time=T0 + timedelta(seconds=1),
            run_time_s=seconds,
            run_count=run_count,
            error_type=None if state == "COMPLETED" else "ValueError",
            error_message=None if state == "COMPLETED" else "bad value for jane@example.com",
            tags=["b", "a"],
            attempt_errors=[AttemptError(1, "ValueError", "x")] if run_count > 1 else [],
            span_context=_context(i, sampled) if with_span else None,
            counted_only=i % 7 == 3,
        )
        for i, (flow, task, state, seconds, run_count, sampled, with_span) in enumerate(specs)
    ]
    one_calls: list[Any] = []
    many_calls: list[Any] = []
    one, one_rows, one_registry = _recording(one_calls)
    many, many_rows, many_registry = _recording(many_calls)
    for event in batch_events:
        one.handle(event)
    many.handle_many(batch_events)
    assert _without_ids(many_rows) == _without_ids(one_rows)
    assert _samples(many_registry) == _samples(one_registry)
    assert many_calls == one_calls  # the OTLP side gets every duration, in order, with its span


def test_a_failing_sink_in_a_batch_costs_one_warning_and_no_other_sinks_rows(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        loses = "test records"

        def handle(self, event: Any) -> None:
            raise RuntimeError("down")

    rows = Rows()
    m = SynthObsMetrics(registry=CollectorRegistry(), prefix="t")
    recording = Recording(None, m, redact_pii=True, sinks=[Broken(), HealthSink(rows, redact_pii=True)])  # type: ignore[arg-type]
    event = _completed("t")
    with caplog.at_level(logging.WARNING, logger="prefect.synthobs"):
        recording.handle_many([event, event])
        recording.handle_many([event])
    assert len(rows.rows[catalog.TASK_RUNS]) == 3
    (warning,) = [r.getMessage() for r in caplog.records if "failed on" in r.getMessage()]
    assert "Broken failed on TaskRunEnded (RuntimeError: down)" in warning and "test records are lost" in warning


def _span(events_: list[Any], ctx: SpanContext) -> Any:
    return SimpleNamespace(events=events_, context=ctx)


def _span_event(name: str, **attributes: Any) -> Any:
    return SimpleNamespace(name=name, attributes=attributes)


@settings(max_examples=60, deadline=None)
@given(
    run_count=st.integers(0, 5),
    tags=st.lists(st.sampled_from(["b", "a", "jane@example.com"]), max_size=3),
    run_time=st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False)),
    end_known=st.booleans(),
    failed_attempts=st.integers(0, 3),
    rows=st.integers(0, 10**6),
)
def test_a_noted_completed_task_run_is_the_event_task_run_ended_builds(
    run_count: int, tags: list[str], run_time: float | None, end_known: bool, failed_attempts: int, rows: int
) -> None:
    state = SimpleNamespace(
        type=SimpleNamespace(value="COMPLETED"), name="Completed", timestamp=T0 + timedelta(seconds=9), data=None
    )
    task_run = SimpleNamespace(
        id="tr-1",
        flow_run_id="fr-1",
        state=state,
        start_time=T0,
        end_time=T0 + timedelta(seconds=5) if end_known else None,
        run_count=run_count,
        total_run_time=timedelta(seconds=run_time) if run_time is not None else None,
        tags=tags,
    )
    span_events = []
    for attempt in range(failed_attempts):
        span_events += [
            _span_event("Running" if attempt == 0 else "Retrying"),
            _span_event("exception", **{"exception.type": "mod.KeyError", "exception.message": f"k{attempt}"}),
        ]
    span = _span(span_events, _context(3, True))
    task = SimpleNamespace(name="load")
    attempt_errors = prefect_runs.attempt_errors_of(span)
    error = (attempt_errors[-1].error_type, attempt_errors[-1].message) if attempt_errors else None
    expected = prefect_runs.task_run_ended(
        task, task_run, "flow", error=error, span_context=span.context, attempt_errors=attempt_errors, rows=rows
    )
    end = prefect_runs.TaskEnd(task, task_run, state, run_count, "flow", span, "tr-1", "fr-1")
    assert prefect_runs.completed_task_run_ended(end, rows) == expected


def test_a_batch_is_recorded_by_a_flush_when_full_and_on_close() -> None:
    recorded: list[list[int]] = []
    batch = TaskEndBatch(recorded.append, max_items=3, max_wait=3600)
    batch.add(1)
    batch.add(2)
    assert recorded == [] and len(batch) == 2
    batch.flush()
    assert recorded == [[1, 2]]
    for i in (3, 4, 5):
        batch.add(i)
    assert recorded == [[1, 2], [3, 4, 5]]  # full: recorded by the add that filled it
    batch.add(6)
    batch.close()
    assert recorded == [[1, 2], [3, 4, 5], [6]]
    batch.flush()
    assert recorded == [[1, 2], [3, 4, 5], [6]]  # nothing twice
    batch.add(9)  # a late note (a runtime replaced as the task ended): recorded at once, not left behind
    assert recorded == [[1, 2], [3, 4, 5], [6], [9]]
    batch.open()  # started again: notes wait for a flush again
    batch.add(10)
    assert recorded == [[1, 2], [3, 4, 5], [6], [9]]
    batch.close()
    assert recorded == [[1, 2], [3, 4, 5], [6], [9], [10]]


def test_a_batch_nobody_flushes_is_recorded_by_its_thread() -> None:
    done = threading.Event()
    recorded: list[list[int]] = []

    def record(notes: list[int]) -> None:
        recorded.append(notes)
        done.set()

    batch = TaskEndBatch(record, max_wait=0.01)
    batch.add(7)
    assert done.wait(30), "the batch thread never recorded the batch"
    assert recorded == [[7]]
    done.clear()
    batch.add(8)  # a second batch, on the same thread
    assert done.wait(30)
    assert recorded == [[7], [8]]
    batch.close()


def test_after_close_and_open_a_note_is_recorded_by_a_batch_thread_every_time() -> None:
    """``open`` right after ``close`` (a runtime stopped and started again), while the closed batch thread may
    still be ending: the next note is recorded within its wait all the same, never held until a flush."""
    recorded: list[list[int]] = []
    done = threading.Event()

    def record(notes: list[int]) -> None:
        recorded.append(notes)
        if threading.current_thread().name == "synthobs-task-batch":
            done.set()

    batch = TaskEndBatch(record, max_wait=0.0)
    for i in range(30):
        done.clear()
        batch.add(i)
        assert done.wait(30), f"cycle {i}: no batch thread recorded the note"
        batch.close()
        batch.open()
    assert sorted(n for notes in recorded for n in notes) == list(range(30))
    batch.close()


def test_a_flush_waits_for_the_batch_the_thread_is_recording() -> None:
    """The flow's end flushes the batch, then the recorder: notes the batch thread took a moment earlier must
    be recorded by the time that flush returns, or their rows would miss the store write after it."""
    started, release = threading.Event(), threading.Event()
    recorded: list[list[int]] = []

    def record(notes: list[int]) -> None:
        if threading.current_thread().name == "synthobs-task-batch":
            started.set()
            assert release.wait(30)
        recorded.append(notes)

    batch = TaskEndBatch(record, max_wait=0.0)
    batch.add(1)
    assert started.wait(30), "the batch thread never took the batch"
    flushed = threading.Event()

    def flush_then_say_so() -> None:
        batch.flush()
        flushed.set()

    flusher = threading.Thread(target=flush_then_say_so)
    flusher.start()
    assert not flushed.wait(0.2), "the flush returned while the batch thread was still recording its notes"
    release.set()
    flusher.join(30)
    assert flushed.is_set() and recorded == [[1]]
    batch.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_a_forked_child_records_its_own_notes_only_and_never_hangs() -> None:
    """A child forked while the parent's batch thread records (holding its locks) and with notes waiting: the
    child records only the notes it adds itself (the parent's would be stored twice), without waiting on a lock
    no thread of the child will release; the parent records its own as before."""
    started, release = threading.Event(), threading.Event()
    recorded: list[list[int]] = []
    parent = os.getpid()

    def record(notes: list[int]) -> None:
        if os.getpid() == parent and threading.current_thread().name == "synthobs-task-batch":
            started.set()
            assert release.wait(30)
        recorded.append(notes)

    batch = TaskEndBatch(record, max_wait=0.0)
    batch.add(1)
    assert started.wait(30), "the batch thread never took the batch"
    with batch._lock:  # the next note waits here, not taken by the busy thread
        batch._notes.append(2)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            code = 1
            signal.alarm(10)  # a hang ends the child with SIGALRM, failing the test
            try:
                recorded.clear()
                batch.add(3)
                batch.flush()
                code = 0 if recorded == [[3]] else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0  # 1: raised (or hung: the alarm), 2: recorded the parent's notes
    finally:
        release.set()
    batch.flush()
    assert recorded == [[1], [2]]
    batch.close()


def test_rows_of_many_gives_each_row_its_own_event_id_and_refuses_mixed_events() -> None:
    from prefect_synthobs.health.rows import row_of, rows_of_many

    batch = [_completed(f"t{i}", task_name="call jane@example.com", tags=["z", "a"]) for i in range(50)]
    rows = rows_of_many(batch)
    assert len({r[EVENT_ID] for r in rows}) == 50
    assert [list(r) for r in rows] == [list(row_of(e)) for e in batch]  # same columns, same order
    assert rows_of_many([]) == []
    flow = events.FlowRunEnded(
        flow_run_id="r", flow_name="f", state_type="COMPLETED", state_name="Completed", start_time=T0, end_time=T0
    )
    with pytest.raises(ValueError, match="one type"):
        rows_of_many([batch[0], flow])


def test_every_recorder_flush_writes_the_task_runs_a_batch_holds(tmp_path: Any) -> None:
    """A flush that is not the flow's end (the periodic flusher's, the last one at exit, a user's) must not leave
    behind the task runs that ended before it and still wait in the batch: a process killed after that flush
    keeps them in the store."""
    import prefect_synthobs as so
    from prefect_synthobs.health.recorder import Recorder

    store = so.HealthStore(str(tmp_path / "store"))
    recorder = Recorder(lambda: store, tmp_path / "spool", store_timeout=5)
    ids = iter(range(1000))

    def record(notes: list[int]) -> None:
        recorder.add(
            catalog.TASK_RUNS,
            [{"task_run_id": f"t{n}-{next(ids)}", "flow_run_id": "f", "task_name": "x"} for n in notes],
        )

    batch = TaskEndBatch(record, max_wait=3600)  # its thread would record them only in an hour
    recorder.add_source(batch.flush)
    batch.add(1)
    batch.add(2)
    assert recorder.flush() == 2
    assert sorted(store.read(catalog.TASK_RUNS).task_run_id.str[:2]) == ["t1", "t2"]
    assert len(batch) == 0

    def broken_source() -> None:
        raise RuntimeError("a source that raises costs the flush nothing")

    recorder.add_source(broken_source)
    batch.add(3)
    assert recorder.flush() == 1
    batch.close()


def test_a_note_whose_event_cannot_be_built_costs_its_row_only_with_one_warning(
    store_dir: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """``Runtime._record_task_ends``: a note that cannot become an event (a start time that is no time) loses
    its own row and metrics, says so once while it keeps failing, and costs no other note its row."""
    from prefect_synthobs.instrument.instrumentation import get_runtime

    runtime = get_runtime()
    start = datetime(2026, 12, 5, 12, tzinfo=timezone.utc)
    span = _span([], _context(3, True))

    def note(task_run_id: str, start_time: Any) -> prefect_runs.TaskEnd:
        state = SimpleNamespace(type=SimpleNamespace(value="COMPLETED"), name="Completed", message=None)
        task_run = SimpleNamespace(
            id=task_run_id,
            flow_run_id="fr-1",
            state=state,
            start_time=start_time,
            end_time=start + timedelta(seconds=1),
            run_count=1,
            total_run_time=timedelta(seconds=1),
            tags=[],
        )
        return prefect_runs.TaskEnd(SimpleNamespace(name="load"), task_run, state, 1, "flow", span, task_run_id, "fr-1")

    with caplog.at_level(logging.WARNING, logger="prefect.synthobs"):
        runtime._record_task_ends([note("bad-1", "no time"), note("good-1", start)])
        runtime._record_task_ends([note("bad-2", object()), note("good-2", start)])
    warnings = [r.getMessage() for r in caplog.records if "could not record task run" in r.getMessage()]
    assert len(warnings) == 1 and "bad-1" in warnings[0] and "row and metrics are lost" in warnings[0], warnings
    runtime.recorder.flush()
    stored = sorted(so.HealthStore(str(store_dir)).read("task_runs").task_run_id)
    assert stored == ["good-1", "good-2"]
    caplog.clear()
    runtime._record_task_ends([note("good-3", start)])  # recovered: the next failure is said again
    with caplog.at_level(logging.WARNING, logger="prefect.synthobs"):
        runtime._record_task_ends([note("bad-3", "no time")])
    assert any("bad-3" in r.getMessage() for r in caplog.records)


@given(st.lists(st.sampled_from(["COMPLETED", "FAILED", "CRASHED"]), min_size=1, max_size=6), st.booleans())
def test_without_metrics_the_same_rows_and_no_metric_update(states: list[str], one_by_one: bool) -> None:
    """``metrics=False`` (a worker that exports no metrics): every row as with metrics, and no metric moves,
    the OTLP durations included, whether the events come one by one or as a batch."""
    batch = [
        events.TaskRunEnded(
            task_run_id=f"t{i}",
            flow_run_id="r",
            flow_name="f",
            task_name="x",
            state_type=state,
            state_name=state.title(),
            start_time=T0,
            end_time=T0 + timedelta(seconds=0.5),
            run_time_s=0.5,
            run_count=1 + i % 2,
            error_type=None if state == "COMPLETED" else "ValueError",
            span_context=_context(i, True),
        )
        for i, state in enumerate(states)
    ]
    calls: list[Any] = []
    with_metrics, with_rows, _ = _recording()
    without, without_rows, registry = _recording(calls)
    empty = _samples(registry)
    for recording, metrics in ((with_metrics, True), (without, False)):
        if one_by_one:
            for event in batch:
                recording.handle(event, metrics=metrics)
        else:
            recording.handle_many(batch, metrics=metrics)
    assert _without_ids(without_rows) == _without_ids(with_rows) and len(without_rows.rows[catalog.TASK_RUNS]) == len(
        batch
    )
    assert _samples(registry) == empty and calls == []


def test_rows_are_converted_where_a_batch_thread_records_them_and_not_where_a_worker_spools_them(
    tmp_path: Path,
) -> None:
    """``handle_many(convert=True)`` (the flow's process, batch thread) buffers the rows converted to Arrow;
    the default, a worker's path, buffers them as added: ``spool_now`` spools JSON, so converting there would be
    thrown away."""
    ended = [_completed(f"t{i}") for i in range(3)]
    for convert in (True, False):
        recorder = Recorder(lambda: HealthStore(str(tmp_path / "store")), tmp_path / "spool")
        Recording(recorder, SynthObsMetrics(registry=CollectorRegistry()), redact_pii=True).handle_many(
            ended, metrics=False, convert=convert
        )
        converted = sum(len(rows) for chunks in recorder._converted.values() for rows, _ in chunks)
        plain = sum(len(rows) for rows in recorder._pending.values())
        assert (converted, plain) == ((3, 0) if convert else (0, 3))
        assert recorder.pending() == 3
