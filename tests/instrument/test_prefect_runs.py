"""Prefect's run objects read into run events (``instrument/prefect_runs.py``), without a Prefect server.

The objects are Prefect's own classes (``prefect.states``, ``prefect.client.schemas.objects``), built in memory.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prefect.client.schemas.objects import FlowRun, State, StateDetails, StateType, TaskRun
from prefect.states import Completed, Crashed, Failed

from prefect_synthobs import catalog
from prefect_synthobs.health.events import SOURCE_API, AttemptError
from prefect_synthobs.health.rows import row_of
from prefect_synthobs.instrument import prefect_runs as pr

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
MESSAGES = st.none() | st.text(max_size=40)


def task_run(state: Any = None, **values: Any) -> TaskRun:
    values.setdefault("name", "step-a1f")
    values.setdefault("task_key", "step-0123abcd")
    values.setdefault("dynamic_key", "0")
    return TaskRun(state=state, **values)


# -- states -------------------------------------------------------------------------------------------------------


@given(kind=st.sampled_from(list(StateType)), message=MESSAGES)
def test_a_states_type_and_recorded_error_follow_one_rule(kind: StateType, message: str | None) -> None:
    state = State(type=kind, message=message)
    assert pr.state_type(state) == kind.value
    expected = (None, None) if kind.value in pr.NO_ERROR_STATES else (kind.value.title(), message)
    assert pr.error_of(state, in_process=False) == expected
    assert pr.error_of(state) == expected  # no exception in the state, none being handled


def test_a_state_type_from_a_string_or_from_nothing() -> None:
    assert pr.state_type(SimpleNamespace(type="FAILED")) == "FAILED"
    assert pr.state_type(None) == pr.UNKNOWN_STATE == pr.state_type(SimpleNamespace(type=None))
    assert pr.error_of(None) == ("Unknown", None)


def test_the_exception_behind_a_state_is_read_in_process_only() -> None:
    failed: State[Any] = Failed(message="Task run encountered an exception", data=ValueError("bad batch"))
    assert pr.exception_of(failed) is failed.data
    assert pr.error_of(failed) == ("ValueError", "bad batch")
    assert pr.error_of(failed, in_process=False) == ("Failed", "Task run encountered an exception")
    empty: State[Any] = Failed(
        message="the state's text", data=RuntimeError()
    )  # an exception without text: the state's
    assert pr.error_of(empty) == ("RuntimeError", "the state's text")
    crashed: State[Any] = Crashed(message="worker lost")
    try:
        raise TimeoutError("handled right now")
    except TimeoutError:  # a hook called while Prefect handles the run's failure
        assert pr.error_of(crashed) == ("TimeoutError", "handled right now")
        assert pr.error_of(crashed, in_process=False) == ("Crashed", "worker lost")  # not the API state's
    assert pr.error_of(Completed(data=ValueError("a result, not an error"))) == (None, None)


@given(
    earlier=st.lists(st.integers(1, 6), unique=True, max_size=4),
    run_count=st.integers(0, 6),
    error_type=st.none() | st.sampled_from(["ValueError", "Failed"]),
)
def test_the_last_attempts_error_is_added_once(earlier: list[int], run_count: int, error_type: str | None) -> None:
    errors = [AttemptError(n, "E", f"attempt {n}") for n in sorted(earlier)]
    out = pr.with_last_error(errors, run_count, error_type, "last")
    there = any(n >= run_count for n in earlier)
    if error_type and not there:
        assert out == [*errors, AttemptError(max(run_count, 1), error_type, "last")]
    else:
        assert out == errors
    assert out[: len(errors)] == errors  # the earlier ones untouched, in order


# -- names --------------------------------------------------------------------------------------------------------

NAMES = st.text(st.characters(categories=["L", "N"], include_characters="-_ "), min_size=1, max_size=30).filter(
    lambda s: s.strip("-") == s
)


@given(name=NAMES, key=st.uuids())
def test_a_task_run_read_from_the_api_is_named_after_its_task(name: str, key: uuid.UUID) -> None:
    """Prefect names a task run of a flow "<task name>-<first 3 hex digits of a uuid>" (the engine) or
    "<task name>-<counter>" (``Task.create_run``): the task's name, as the hooks' rows have it."""
    assert pr.api_task_name(task_run(name=f"{name}-{key.hex[:3]}")) == name
    assert pr.api_task_name(task_run(name=f"{name}-{key.int % 10_000}")) == name


def test_a_task_run_without_a_name_falls_back_to_its_task_key() -> None:
    assert pr.api_task_name(SimpleNamespace(name="", task_key="generate_rows-9f8e7d6c")) == "generate_rows"
    assert pr.api_task_name(SimpleNamespace(name=None, task_key=None)) == pr.UNKNOWN_TASK
    assert pr.api_task_name(task_run(name="load-2-0b1")) == "load-2"  # a hyphen in the task's own name stays
    # a run's own name (task_run_name): its task's function, as the hooks' rows of a task without a name have it
    assert pr.api_task_name(task_run(name="fit-ctgan", task_key="fit-0123abcd")) == "fit"
    assert pr.api_task_name(task_run(name="nightly load", task_key="")) == "nightly load"  # no key: the name


# -- in-process runs ----------------------------------------------------------------------------------------------


def test_a_task_run_that_completed_after_a_retry() -> None:
    run = task_run(
        Completed(),
        flow_run_id=uuid.uuid4(),
        run_count=2,
        total_run_time=timedelta(seconds=3.5),
        start_time=T0,
        end_time=T0 + timedelta(seconds=9),
        tags=["nightly", "gpu"],
    )
    first = AttemptError(1, "ValueError", "flaky")
    event = pr.task_run_ended(
        SimpleNamespace(name="Generate rows"),
        run,
        "pipeline",
        error=("ValueError", "flaky"),
        attempt_errors=[first],
        rows=40,
    )
    assert (event.task_run_id, event.flow_run_id, event.flow_name) == (str(run.id), str(run.flow_run_id), "pipeline")
    assert (event.task_name, event.state_type, event.state_name) == ("Generate rows", "COMPLETED", "Completed")
    assert (event.error_type, event.error_message) == (None, None)  # completed: no error, whatever was given
    assert event.attempt_errors == [first]  # the retried attempt's error stays
    assert (event.run_count, event.run_time_s, event.duration_s, event.rows) == (2, 3.5, 3.5, 40)
    assert event.tags == ["nightly", "gpu"] and event.source == "hook"
    assert pr.tags_of(SimpleNamespace(tags=("a", 7))) == ["a", "7"] and pr.tags_of(SimpleNamespace(tags=None)) == []


def test_a_failed_task_run_gets_its_last_attempts_error() -> None:
    state: State[Any] = Failed(message="Task run encountered an exception", data=RuntimeError("out of memory"))
    run = task_run(state, run_count=3, start_time=T0)  # no end_time: the state's time
    first = AttemptError(1, "ValueError", "flaky")
    event = pr.task_run_ended(SimpleNamespace(name="train"), run, None, attempt_errors=[first])
    assert (event.error_type, event.error_message) == ("RuntimeError", "out of memory")
    assert event.attempt_errors == [first, AttemptError(3, "RuntimeError", "out of memory")]
    assert event.end_time == state.timestamp and event.flow_run_id is None and event.run_time_s == 0.0
    listener = pr.task_run_ended(
        SimpleNamespace(name="train"), run, None, error=("MemoryError", "cuda"), attempt_errors=[first]
    )
    assert listener.error_type == "MemoryError"  # the caller's error wins over the state's
    known = [first, AttemptError(3, "MemoryError", "cuda")]
    assert pr.task_run_ended(SimpleNamespace(name="t"), run, None, attempt_errors=known).attempt_errors == known


def test_a_flow_runs_end_reads_its_run_and_state() -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    run = FlowRun(
        flow_id=uuid.uuid4(),
        run_count=1,
        start_time=None,
        tags=["a"],
        labels={catalog.TRACEPARENT_LABEL: f"00-{trace}-00f067aa0ba902b7-01"},
    )
    state: State[Any] = Failed(message="boom")
    earlier = [AttemptError(1, "ValueError", "first")]
    event = pr.flow_run_ended(
        "pipeline", run, state, start_time=T0, attempts=2, attempt_errors=earlier, trace_id="f" * 32, kind="training"
    )
    assert (event.flow_run_id, event.flow_name, event.kind) == (str(run.id), "pipeline", "training")
    assert (event.start_time, event.end_time) == (T0, state.timestamp)
    assert (event.run_count, event.trace_id, event.tags) == (2, trace, ["a"])
    assert event.attempt_errors == [*earlier, AttemptError(2, "Failed", "boom")]
    done = pr.flow_run_ended("pipeline", FlowRun(flow_id=uuid.uuid4(), start_time=T0), Completed(), trace_id="e" * 32)
    assert (done.error_type, done.attempt_errors, done.trace_id, done.start_time) == (None, [], "e" * 32, T0)


def test_attempt_errors_from_a_task_spans_events() -> None:
    def ev(name: str, **attributes: str) -> SimpleNamespace:
        return SimpleNamespace(name=name, attributes=attributes)

    span = SimpleNamespace(
        events=[
            ev("Running"),
            ev("exception", **{"exception.type": "builtins.ValueError", "exception.message": "one"}),
            ev("Retrying"),
            ev("exception", **{"exception.type": "KeyError"}),
            ev("Retrying"),
            ev("Completed"),
        ]
    )
    assert pr.attempt_errors_of(span) == [AttemptError(1, "ValueError", "one"), AttemptError(2, "KeyError", None)]


# -- runs read from the API ---------------------------------------------------------------------------------------


@given(kind=st.sampled_from([StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]))
def test_a_task_run_read_from_the_api_is_an_api_row(kind: StateType) -> None:
    state = State(type=kind, message="why", data=None)
    run = task_run(state, flow_run_id=uuid.uuid4(), run_count=2, total_run_time=timedelta(seconds=1), tags=["x"])
    event = pr.api_task_run_ended(run, "pipeline", rows=5)
    assert (event.source, event.task_name, event.state_type, event.rows) == (SOURCE_API, "step", kind.value, 5)
    if kind == StateType.COMPLETED:
        assert (event.error_type, event.error_message, event.attempt_errors) == (None, None, [])
    else:
        assert (event.error_type, event.error_message) == (kind.value.title(), "why")
        assert event.attempt_errors == [AttemptError(2, kind.value.title(), "why")]
    row = row_of(event, redact_pii=True)
    assert row["source"] == "api" and row["task_name"] == "step" and row["duration_s"] == 1.0
    assert not pr.api_task_run_ended(run, None).counted_only and pr.api_task_run_ended(run, None, counted_only=True)


def test_a_run_read_from_the_api_without_a_state() -> None:
    event = pr.api_task_run_ended(task_run(None, flow_run_id=uuid.uuid4()), "pipeline")
    assert (event.state_type, event.error_type, event.attempt_errors) == ("UNKNOWN", "Unknown", [])


def test_a_flow_run_read_from_the_api_is_an_api_row() -> None:
    run = FlowRun(
        flow_id=uuid.uuid4(),
        state=Crashed(message="the worker was lost"),
        run_count=0,
        start_time=T0,
        end_time=T0 + timedelta(seconds=2),
        tags=["t"],
    )
    event = pr.api_flow_run_ended(run, "pipeline")
    assert (event.source, event.flow_name, event.state_type, event.duration_s) == ("api", "pipeline", "CRASHED", 2.0)
    assert (event.error_type, event.error_message, event.run_count) == ("Crashed", "the worker was lost", 0)
    assert event.attempt_errors == [AttemptError(1, "Crashed", "the worker was lost")]
    assert (event.kind, event.host, event.rows, event.trace_id) == ("other", None, 0, None)
    assert row_of(event)["flow_run_id"] == str(run.id)


def test_a_subflow_calls_task_run_is_told_apart() -> None:
    child = uuid.uuid4()
    wrapper = task_run(Completed(state_details=StateDetails(child_flow_run_id=child)))
    plain = task_run(Completed())
    assert pr.is_subflow_task_run(wrapper) and not pr.is_subflow_task_run(plain)
    subflow = FlowRun(flow_id=uuid.uuid4(), parent_task_run_id=plain.id)
    parents = pr.subflow_parents_of([subflow, FlowRun(flow_id=uuid.uuid4())])
    assert parents == {str(plain.id)} and pr.is_subflow_task_run(plain, parents)


@pytest.mark.parametrize("count", [None, 0, 3])
def test_a_task_runs_flow_attempt(count: int | None) -> None:
    assert pr.flow_attempt_of(SimpleNamespace(flow_run_run_count=count)) == (count or 0)
