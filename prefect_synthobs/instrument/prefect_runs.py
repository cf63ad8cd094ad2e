"""Prefect's run objects turned into run events: the one module that reads their shapes.

Prefect hands synthobs its run objects in three places: the hooks and the run
listener see the in-process ``Flow``/``Task``, ``FlowRun``/``TaskRun`` and
``State``; reconciliation and the flow's end read ``FlowRun``/``TaskRun``
records back from the API. Which attribute holds a run's state type, its
error, its tags, its trace, its task's name, is written here once, and the
rest of the package gets typed events (``health/events.py``): a
:class:`~prefect_synthobs.health.events.FlowRunEnded` or
:class:`~prefect_synthobs.health.events.TaskRunEnded`.

The two sources differ in what they know. In process, the exception behind a
failed state is at hand (``exception_of``) and the run listener knows every
failed attempt's error; the API keeps only a run's last state, so a run read
back from it has its last attempt's error, named after its state type
(``"Failed"``), and the state's message.

Pure: no Prefect import, no I/O (the objects are read with ``getattr``, so
fakes and Prefect's own classes both do).
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple
from uuid import UUID

from prefect_synthobs import catalog
from prefect_synthobs.health.events import SOURCE_API, AttemptError, FlowRunEnded, TaskRunEnded
from prefect_synthobs.health.rows import trace_id_from_traceparent

UNKNOWN_STATE = "UNKNOWN"
"""The state type of a run without a state (or a state without a type)."""

NO_ERROR_STATES = frozenset({"COMPLETED", "PENDING", "RUNNING", "SCHEDULED"})
"""State types that carry no error: a run in one of them has no ``error_type``."""

UNKNOWN_TASK = "unknown"
"""The task name of a task run read from the API without a name or a task key."""

# Prefect names a task run in a flow "<task name>-<dynamic key>": the key's first 3 characters (a uuid's,
# hex) on the engine's path, the whole key (a counter) on ``Task.create_run``'s
_RUN_NAME_SUFFIX = re.compile(r"-(?:[0-9a-f]{3}|[0-9]+)$")

_ATTEMPT_STATES = ("Running", "Retrying")
"""Names of the state events Prefect adds to a run span as an attempt starts."""


# -- ids ---------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def id_text(run_id: Any) -> str:
    """``str(run_id)``, remembered for the last ``UUID`` objects seen: a run's id is turned into text several
    times per task run (its start, its end, its scope's lookups), and ``UUID.__str__`` costs about 1 µs a time
    (several in a worker process that has just woken up). Kept by the object's identity (the entry holds the
    object, so its ``id`` is never reused meanwhile); a ``UUID`` never changes."""
    if run_id.__class__ is not UUID:
        return str(run_id)
    known = _ID_TEXTS.get(id(run_id))
    if known is not None and known[0] is run_id:
        return known[1]
    text = str(run_id)
    if len(_ID_TEXTS) >= _ID_TEXTS_KEPT:  # (a race with another thread here costs a lookup, never a wrong text)
        _ID_TEXTS.clear()
    _ID_TEXTS[id(run_id)] = (run_id, text)
    return text


_ID_TEXTS: dict[int, tuple[UUID, str]] = {}
_ID_TEXTS_KEPT = 256
"""How many ids ``id_text`` remembers (then it starts afresh): the runs in progress in a process, and more."""


# -- states -------------------------------------------------------------------------------------------------------


def state_type(state: Any) -> str:
    """A state's type as its upper-case name (``"COMPLETED"``, ``"FAILED"``, ...), ``UNKNOWN_STATE`` without one.

    Takes Prefect's ``StateType`` (its ``value``) or a plain string.
    """
    st = getattr(state, "type", None)
    return str(getattr(st, "value", st or UNKNOWN_STATE))


def exception_of(state: Any) -> BaseException | None:
    """The exception behind a failed state, read in-process (no result I/O).

    The state's data (or its ``result``) when it is an exception, else the
    exception being handled right now (a hook called while Prefect handles
    the run's failure).
    """
    data = getattr(state, "data", None)
    for candidate in (getattr(data, "result", None), data):
        if isinstance(candidate, BaseException):
            return candidate
    exc = sys.exc_info()[1]
    return exc if isinstance(exc, Exception) else None


def error_of(state: Any, *, in_process: bool = True) -> tuple[str | None, str | None]:
    """``(error_type, message)`` of a state; ``(None, None)`` for a state without an error (``NO_ERROR_STATES``).

    ``error_type`` is the exception's class name when the exception is known
    (``in_process``: ``exception_of``), else the state type in title case
    (``"Failed"``, ``"Crashed"``); the message is the exception's text, else the
    state's message.

    Args:
        in_process: The state belongs to a run of this process (a hook's, the
            listener's). ``False`` for a state read from the API, whose
            exception is not here (and an exception being handled nearby is
            not its).
    """
    kind = state_type(state)
    if kind in NO_ERROR_STATES:
        return None, None
    exc = exception_of(state) if in_process else None
    if exc is not None:
        return type(exc).__name__, str(exc) or getattr(state, "message", None)
    return kind.title(), getattr(state, "message", None)


def with_last_error(
    attempt_errors: Iterable[AttemptError], run_count: int, error_type: str | None, message: str | None
) -> list[AttemptError]:
    """``attempt_errors`` with the last attempt's error added, unless it is there or there is none.

    The last attempt is ``run_count`` (at least 1); an entry for it or a later
    attempt means it is there already.
    """
    errors = list(attempt_errors)
    if error_type and not any(e.attempt >= run_count for e in errors):
        errors.append(AttemptError(max(run_count, 1), error_type, message))
    return errors


# -- run attributes -----------------------------------------------------------------------------------------------


def tags_of(obj: Any) -> list[str]:
    """A run's (or a flow's, a task's) tags as strings; ``[]`` without any."""
    return [str(t) for t in (getattr(obj, "tags", None) or [])]


def run_count_of(run: Any) -> int:
    """How many attempts of a run started (Prefect's ``run_count``; 0 when unknown)."""
    return int(getattr(run, "run_count", 0) or 0)


def run_time_of(run: Any) -> float | None:
    """A run's time spent running over all its attempts, in seconds (Prefect's ``total_run_time``), if known."""
    total = getattr(run, "total_run_time", None)
    return total.total_seconds() if total is not None else None


def traceparent_of(flow_run: Any) -> str | None:
    """The W3C ``traceparent`` a flow run was started with (its ``__OTEL_TRACEPARENT`` label), if any."""
    value = (getattr(flow_run, "labels", None) or {}).get(catalog.TRACEPARENT_LABEL)
    return str(value) if value else None


def api_task_name(task_run: Any) -> str:
    """The name of the task a task run read from the API ran: the run's name without Prefect's suffix.

    Prefect names a task run of a flow ``"<task name>-<key>"`` (``"step-a1f"``,
    ``"step-0"``): the suffix is cut, so the name is the task's ``name``, as
    on a row the hooks wrote (a task named ``"load-2"`` reads ``"load-2"``).
    A run given its own name (``task_run_name="fit-{model}"``), which has no
    such suffix, is named after its task key's function (``fit``): the task's
    name when it has none of its own, so API rows group with hook rows rather
    than one name per run. A run without a name falls back to the same, then
    to ``UNKNOWN_TASK``. (A custom run name that happens to end like Prefect's
    suffix, ``"batch-7"``, cannot be told apart and reads ``"batch"``.)
    """
    name = str(getattr(task_run, "name", "") or "")
    key = str(getattr(task_run, "task_key", "") or "").rsplit("-", 1)[0]
    if name:
        stripped = _RUN_NAME_SUFFIX.sub("", name)
        if stripped != name and stripped:
            return stripped
        return key or name
    return key or UNKNOWN_TASK


# -- events from in-process runs ----------------------------------------------------------------------------------


def task_run_ended(
    task: Any,
    task_run: Any,
    flow_name: str | None,
    *,
    error: tuple[str | None, str | None] | None = None,
    span_context: Any = None,
    attempt_errors: Sequence[AttemptError] | None = None,
    rows: int = 0,
) -> TaskRunEnded:
    """The event of a task run that ended in this process (a hook's or the listener's ``Task``/``TaskRun``).

    Args:
        task: The task (its ``name`` is the row's ``task_name``).
        task_run: The in-process task run, its ``state`` final.
        flow_name: The name of its flow.
        error: The last error, when the caller knows it better than the state
            (the listener, from the span's exception events).
        span_context: The task run span's context (the duration's exemplar).
        attempt_errors: The error of every failed attempt; the last attempt's
            is added when missing and the run did not complete.
        rows: The rows its last attempt generated.
    """
    state = task_run.state
    kind = state_type(state)
    error_type, error_message = error if error and error[0] else error_of(state)
    if kind == "COMPLETED":
        error_type = error_message = None
    run_count = run_count_of(task_run)
    return TaskRunEnded(
        task_run_id=id_text(task_run.id),
        flow_run_id=id_text(task_run.flow_run_id) if task_run.flow_run_id else None,
        flow_name=flow_name,
        task_name=task.name,
        state_type=kind,
        state_name=getattr(state, "name", None),
        start_time=task_run.start_time,
        end_time=task_run.end_time or getattr(state, "timestamp", None),
        run_count=run_count,
        run_time_s=run_time_of(task_run),
        error_type=error_type,
        error_message=error_message,
        tags=tags_of(task_run),
        rows=rows,
        attempt_errors=with_last_error(attempt_errors or (), run_count, error_type, error_message),
        span_context=span_context,
    )


class TaskEnd(NamedTuple):
    """A task run that completed in this process, as its span ends: its state and run count as they are then
    (a crash or a timeout after the span ended may still change the task run's), its other values read when it
    is recorded (``completed_task_run_ended``; its times, run time and tags are final by then, and an ended span
    is read-only)."""

    task: Any
    task_run: Any
    state: Any
    run_count: int
    flow_name: str | None
    span: Any
    task_run_id: str
    flow_run_id: str | None


def completed_task_run_ended(end: TaskEnd, rows: int) -> TaskRunEnded:
    """The event of a completed task run: the one ``task_run_ended`` builds from the task, the task run and the
    span's attempt errors (a completed run has no error; its failed attempts' errors are its span's); ``rows``:
    those its last attempt generated.

    Built in one step (``TaskRunEnded.of_fields``): it runs once per task in the flow's process."""
    task_run = end.task_run
    state = end.state
    total = task_run.total_run_time
    span = end.span
    tags = task_run.tags
    events = span.events
    kind = getattr(state, "type", None)
    return TaskRunEnded.of_fields(
        {
            "task_run_id": end.task_run_id,
            "flow_run_id": end.flow_run_id,
            "flow_name": end.flow_name,
            "task_name": end.task.name,
            "state_type": str(getattr(kind, "value", kind or UNKNOWN_STATE)),  # ``state_type(state)``
            "state_name": getattr(state, "name", None),
            "start_time": task_run.start_time,
            "end_time": task_run.end_time or getattr(state, "timestamp", None),
            "run_time_s": total.total_seconds() if total is not None else None,
            "run_count": end.run_count,
            "error_type": None,
            "error_message": None,
            "tags": [str(t) for t in tags] if tags else [],
            "rows": rows,
            "attempt_errors": attempt_errors_of(span, events) if events else [],
            "span_context": span.context,
        }
    )


class FlowRunFacts(NamedTuple):
    """What a flow run's own objects say about its end (``flow_run_facts``); the rest of its
    ``FlowRunEnded`` (kind, rows, GPU, host, earlier attempts' errors) is the run scope's."""

    state_type: str
    state_name: str | None
    start_time: datetime | None
    """The run's start as its ``FlowRun`` has it (``None`` on a stale one: a runner recording a crash)."""
    end_time: datetime | None
    """The state's time (an in-process ``FlowRun`` has no ``end_time`` yet)."""
    run_count: int
    error_type: str | None
    error_message: str | None
    tags: list[str]
    traceparent: str | None


def flow_run_facts(flow_run: Any, state: Any) -> FlowRunFacts:
    """What a flow run that ended in this process (a hook's or the listener's ``FlowRun`` and ``State``) says.

    The error is read in-process (``error_of``): the exception behind the
    state when it is at hand.
    """
    error_type, error_message = error_of(state)
    return FlowRunFacts(
        state_type=state_type(state),
        state_name=getattr(state, "name", None),
        start_time=getattr(flow_run, "start_time", None),
        end_time=getattr(state, "timestamp", None),
        run_count=run_count_of(flow_run),
        error_type=error_type,
        error_message=error_message,
        tags=tags_of(flow_run),
        traceparent=traceparent_of(flow_run),
    )


def flow_run_ended(
    flow_name: str,
    flow_run: Any,
    state: Any,
    *,
    start_time: datetime | None = None,
    attempts: int = 0,
    attempt_errors: Sequence[AttemptError] = (),
    trace_id: str | None = None,
    **fields: Any,
) -> FlowRunEnded:
    """The event of a flow run that ended, seen in this process (a hook's or the listener's ``FlowRun``/``State``).

    Reads what ``flow_run_facts`` reads; everything else a ``FlowRunEnded``
    holds (``kind``, ``rows``, ``gpu``, ``host``, ...) comes in ``fields``.

    Args:
        start_time: When the run started, for a run object that does not say.
        attempts: Attempts this process saw start (the run count is the larger
            of this and the run's own).
        attempt_errors: The errors of the failed attempts before the last; the
            last one's (the state's) is added.
        trace_id: The trace, when the run has no ``traceparent`` label.
    """
    facts = flow_run_facts(flow_run, state)
    run_count = max(attempts, facts.run_count)
    errors = list(attempt_errors)
    if facts.error_type is not None:
        errors.append(AttemptError(max(run_count, 1), facts.error_type, facts.error_message))
    return FlowRunEnded(
        flow_run_id=str(flow_run.id),
        flow_name=flow_name,
        state_type=facts.state_type,
        state_name=facts.state_name,
        start_time=facts.start_time or start_time,
        end_time=facts.end_time or datetime.now(timezone.utc),
        error_type=facts.error_type,
        error_message=facts.error_message,
        tags=facts.tags,
        trace_id=trace_id_from_traceparent(facts.traceparent) or trace_id,
        run_count=run_count,
        attempt_errors=errors,
        **fields,
    )


def attempt_errors_of(span: Any, events: Any = None) -> list[AttemptError]:
    """Every failed attempt's error, from a Prefect task run span's events.

    Prefect adds a state event per state (``Running``, then ``Retrying`` at each
    retry) and an ``exception`` event for each attempt that raised: an
    exception belongs to the attempt whose state event came last before it.
    """
    errors: list[AttemptError] = []
    attempt = 0
    for event in span.events if events is None else events:
        if event.name in _ATTEMPT_STATES:
            attempt += 1
        elif event.name == "exception" and event.attributes:
            errors.append(
                AttemptError(
                    max(attempt, 1),
                    str(event.attributes.get("exception.type", "")).rsplit(".", 1)[-1] or None,
                    str(event.attributes.get("exception.message", "")) or None,
                )
            )
    return errors


# -- events from the API's records --------------------------------------------------------------------------------


def _api_error(run: Any) -> tuple[str | None, str | None, list[AttemptError]]:
    """A run read from the API: its last state's error, and that as its only known attempt error.

    The API keeps a run's last state: earlier attempts' errors are not there.
    """
    state = getattr(run, "state", None)
    error_type, message = error_of(state, in_process=False)
    if state_type(state) == UNKNOWN_STATE:
        return error_type, message, []
    return error_type, message, with_last_error((), run_count_of(run), error_type, message)


def api_task_run_ended(
    task_run: Any, flow_name: str | None, *, rows: int = 0, counted_only: bool = False
) -> TaskRunEnded:
    """The event (``source = "api"``) of a finished task run read from the Prefect API.

    Args:
        task_run: The API's ``TaskRun``.
        flow_name: The name of its flow (the API's task run does not say).
        rows: The rows it reported generating (its ``synthobs-rows`` artifact).
        counted_only: Its row is written elsewhere (a worker's): metrics only.
    """
    state = getattr(task_run, "state", None)
    error_type, message, errors = _api_error(task_run)
    return TaskRunEnded(
        task_run_id=str(task_run.id),
        flow_run_id=str(task_run.flow_run_id) if task_run.flow_run_id is not None else None,
        flow_name=flow_name,
        task_name=api_task_name(task_run),
        state_type=state_type(state),
        state_name=getattr(state, "name", None),
        start_time=task_run.start_time,
        end_time=task_run.end_time,
        run_count=run_count_of(task_run),
        run_time_s=run_time_of(task_run),
        error_type=error_type,
        error_message=message,
        tags=tags_of(task_run),
        rows=rows,
        source=SOURCE_API,
        attempt_errors=errors,
        counted_only=counted_only,
    )


def api_flow_run_ended(flow_run: Any, flow_name: str) -> FlowRunEnded:
    """The event (``source = "api"``) of a finished flow run read from the Prefect API.

    What the hooks add (kind, model, table, rows, GPU, host, trace) is not in
    the API's record: those columns are left at their defaults.
    """
    state = getattr(flow_run, "state", None)
    error_type, message, errors = _api_error(flow_run)
    return FlowRunEnded(
        flow_run_id=str(flow_run.id),
        flow_name=flow_name,
        state_type=state_type(state),
        state_name=getattr(state, "name", None),
        start_time=flow_run.start_time,
        end_time=flow_run.end_time,
        error_type=error_type,
        error_message=message,
        tags=tags_of(flow_run),
        source=SOURCE_API,
        run_count=run_count_of(flow_run),
        attempt_errors=errors,
    )


def is_subflow_task_run(task_run: Any, subflow_parents: set[str] | frozenset[str] = frozenset()) -> bool:
    """Whether ``task_run`` is the task run Prefect adds to a parent flow run for a subflow call.

    Prefect creates it for the call (a "subflow tracking task") but never runs it
    as a task: it has no task span and no ``TaskRunContext``, so the run listener
    never records it (the subflow is recorded as a flow run of its own). The
    server copies each state of the subflow run onto it with
    ``state_details.child_flow_run_id`` naming the subflow run, whose
    ``parent_task_run_id`` names it back.

    Args:
        task_run: A task run read from the Prefect API.
        subflow_parents: ``parent_task_run_id`` of flow runs read alongside (as strings).
    """
    details = getattr(getattr(task_run, "state", None), "state_details", None)
    return getattr(details, "child_flow_run_id", None) is not None or str(task_run.id) in subflow_parents


def subflow_parents_of(flow_runs: Iterable[Any]) -> set[str]:
    """The ``parent_task_run_id`` of each subflow run among ``flow_runs`` (for ``is_subflow_task_run``)."""
    return {str(r.parent_task_run_id) for r in flow_runs if getattr(r, "parent_task_run_id", None) is not None}


def flow_attempt_of(task_run: Any) -> int:
    """The attempt of its flow run a task run belongs to (Prefect's ``flow_run_run_count``; 0 when unknown)."""
    return int(getattr(task_run, "flow_run_run_count", 0) or 0)
