"""``record_rows`` and ``record_epoch``: measurements made inside a run.

Inside an observed run they are attributed to it (health rows, the flow's row
count); outside one they still update the metrics, and the first such call of
each kind in a process logs one warning. Invalid input raises ``ValueError``;
nothing else raises.

Prefect's run context is a ``contextvar``: a plain thread a task or flow starts
(``threading.Thread``, ``concurrent.futures.ThreadPoolExecutor``) does not have
it. A call from such a thread goes to the one task run in progress in the
process, or, when several are, to the one flow run in progress (with one
warning that the task rows miss it); when several flow runs are in progress it
counts in none of them (one warning). ``contextvars.copy_context().run`` as
the thread's target carries the context over and attributes every call exactly.
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from prefect.context import FlowRunContext, TaskRunContext

from prefect_synthobs._log import get_logger
from prefect_synthobs.config.active import get_settings
from prefect_synthobs.health.events import EpochEnded, QualityChecked, RowsGenerated
from prefect_synthobs.health.rows import normalize_loss, validate_epoch, validate_rows, validate_score
from prefect_synthobs.instrument.instrumentation import current_runtime, get_runtime, listener_active
from prefect_synthobs.instrument.models import redacted_identity
from prefect_synthobs.instrument.runtime import Runtime
from prefect_synthobs.instrument.scope import RunInfo

logger = get_logger()


class _OncePerProcess:
    """Which one-time warnings this process has given (each kind once)."""

    def __init__(self) -> None:
        self._given: set[str] = set()
        self._lock = threading.Lock()

    def first(self, kind: str) -> bool:
        """Whether ``kind`` is said for the first time (and now counts as said)."""
        with self._lock:
            if kind in self._given:
                return False
            self._given.add(kind)
            return True

    def forget(self) -> None:
        with self._lock:
            self._given.clear()


_warned = _OncePerProcess()


def reset_warnings() -> None:
    """Let the once-per-process warnings of ``record_*`` be given again (for tests)."""
    _warned.forget()


@dataclass(frozen=True)
class _Scope:
    """Where a measurement belongs: the observed flow run (``info``) and, inside a task, its task run."""

    info: RunInfo | None
    flow_run_id: str | None = None
    flow_name: str | None = None
    task_run: Any = None


def _current(runtime: Runtime, call: str | None, *, thread_call: str | None = None) -> _Scope:
    """The observed run this code runs in; a thread without Prefect's context is placed by ``implicit_scope``.

    Warns once per process and ``call`` when the measurement belongs to no
    observed run (``call`` ``None``: a quality gate, which may run anywhere), and
    once when a thread's call cannot be placed exactly.
    """
    ctx, task_ctx = FlowRunContext.get(), TaskRunContext.get()
    if ctx is not None and ctx.flow_run is not None:
        info = runtime.run_info(ctx.flow_run.id)
        if info is None:
            _warn_outside(call)
        task_run = task_ctx.task_run if task_ctx is not None else None
        return _Scope(info, str(ctx.flow_run.id), ctx.flow.name if ctx.flow else None, task_run)
    if task_ctx is not None:  # a task called outside any flow: its own context, no observed flow run
        _warn_outside(call)
        return _Scope(None)
    implicit = runtime.implicit_scope()
    if implicit.info is not None and implicit.task_run is None and implicit.problem is None and not listener_active():
        # task runs are seen through their spans: without the run listener, a task's thread looks like the flow's
        implicit = dataclasses.replace(
            implicit,
            problem="Prefect's run telemetry is off, so synthobs cannot tell which task run started it: it counts "
            f"toward flow run {implicit.info.flow_run_id} but no task run",
        )
    what = call or thread_call or "a quality gate"
    if implicit.problem is not None and _warned.first(f"thread:{what}"):
        logger.warning(
            "synthobs: %s was called from a thread without Prefect's run context while %s. Start the thread "
            "with contextvars.copy_context().run as its target (see the README, 'Threads') to count it exactly; "
            "this warning is given once per process",
            what,
            implicit.problem,
        )
    if implicit.info is None:
        if implicit.problem is None:
            _warn_outside(call)
        return _Scope(None)
    info = implicit.info
    return _Scope(info, info.flow_run_id, info.flow_name, implicit.task_run)


def _warn_outside(call: str | None) -> None:
    if call is not None and _warned.first(f"outside:{call}"):
        logger.warning(
            "synthobs: %s was called outside an observed flow run: only the metrics were updated (no health "
            "row, no run counts it); this warning is given once per process",
            call,
        )


@dataclass(frozen=True)
class Scope:
    """Where autolog's measurements belong: the observed run (``None``: none, record nothing), its flow
    run id and name, and the task run inside it (``None``: the flow itself)."""

    info: RunInfo
    runtime: Runtime
    flow_run_id: str
    flow_name: str | None
    task_run_id: str | None
    task_run: Any = None


def current_scope(call: str = "a generator's fit or sample (autolog)") -> Scope | None:
    """The observed run this code runs in, for autolog (``None`` outside one: autolog then records nothing).
    Never raises, never builds the runtime (no observed run has started in a process without one), and
    warns only when a thread's call cannot be placed exactly (naming ``call``)."""
    try:
        runtime = current_runtime()
        if runtime is None:
            return None
        scope = _current(runtime, None, thread_call=call)
        if scope.info is None:
            return None
        task_run = scope.task_run
        return Scope(
            scope.info,
            runtime,
            scope.info.flow_run_id,
            scope.flow_name,
            str(task_run.id) if task_run is not None else None,
            task_run,
        )
    except Exception:
        return None


@dataclass
class _Autologged:
    """Rows autolog counted in this context since the last ``record_rows``: per table, the last sample's rows
    and the total, and the run's row events when they were counted (any other count since voids them)."""

    run_key: str
    events: int
    source: str
    last: dict[str | None, int]
    total: dict[str | None, int]


_AUTOLOGGED: contextvars.ContextVar[_Autologged | None] = contextvars.ContextVar(
    "synthobs_autologged_rows", default=None
)


def _run_key(scope: _Scope | Scope) -> str:
    return f"{scope.flow_run_id}/{getattr(scope.task_run, 'id', '')}"


def rows_sampled(
    scope: Scope,
    counts: Mapping[str | None, int],
    *,
    table: str | None,
    model_id: str,
    model_type: str | None,
    source: str,
) -> dict[str | None, int]:
    """Rows a generator sampled, seen by autolog (``counts``: rows per table, ``None``: ``table``, else the
    ``observe`` table): counted as ``record_rows`` counts them (the run's ``rows``,
    ``synthobs_generation_rows_total``, a worker's task row), and the model noted as sampled in the run.

    A ``record_rows`` right after, in the same context and for the same table, of the rows of the last
    sample or of every sample since the last ``record_rows``, with nothing else counted toward the run in
    between, is the user's hand-made count of these rows: it is not counted again (one warning). Any other
    ``record_rows`` after autolog counted rows counts, with one warning that it may count them twice.
    ``source``: what sampled them, for those warnings. Returns the rows counted per table (``None``: no table
    known).
    """
    info, runtime = scope.info, scope.runtime
    resolved_counts: dict[str | None, int] = {}
    for name, n in counts.items():
        resolved = name or table or info.spec.table
        runtime.scope.count_rows(info, scope.task_run, n, resolved)
        runtime.recording.handle(
            RowsGenerated(n=n, flow_name=scope.flow_name, table_name=resolved, model_type=model_type)
        )
        resolved_counts[resolved] = resolved_counts.get(resolved, 0) + n
    info.note_model_sampled(model_id, model_type, resolved_counts)
    key = _run_key(scope)
    events = runtime.scope.count_row_event(info)
    previous = _AUTOLOGGED.get()
    total = dict(previous.total) if previous is not None and previous.run_key == key else {}
    for resolved, n in resolved_counts.items():
        total[resolved] = total.get(resolved, 0) + n
    _AUTOLOGGED.set(_Autologged(key, events, source, resolved_counts, total))
    return resolved_counts


def _counted_by_autolog(scope: _Scope, n: int, table: str | None) -> bool:
    """Whether ``record_rows(n)`` of ``table`` repeats rows autolog just counted here (see ``rows_sampled``)."""
    marker = _AUTOLOGGED.get()
    if marker is None or scope.info is None:
        return False
    fresh = marker.run_key == _run_key(scope) and marker.events == scope.info.row_events
    if not fresh:
        _AUTOLOGGED.set(None)
        return False
    if table in marker.last and n in (marker.last[table], marker.total.get(table)):
        remaining = {t: v for t, v in marker.last.items() if t != table}
        if remaining:  # a multi-table sample: the other tables may still be counted by hand, one by one
            _AUTOLOGGED.set(_Autologged(marker.run_key, marker.events, marker.source, remaining, marker.total))
        else:
            _AUTOLOGGED.set(None)
        if _warned.first("record_rows:autolog"):
            logger.warning(
                "synthobs: record_rows(%d) repeats the rows autolog already counted from %s, so they are not "
                "counted twice. Drop the record_rows call, or turn autolog off (autolog=false); this warning is "
                "given once per process",
                n,
                marker.source,
            )
        return True
    _AUTOLOGGED.set(None)
    if _warned.first("record_rows:maybe-twice"):
        logger.warning(
            "synthobs: record_rows(%d) follows rows autolog counted from %s in this run; it is counted, so if "
            "these are the same rows they now count twice. Drop the record_rows call, or turn autolog off "
            "(autolog=false); this warning is given once per process",
            n,
            marker.source,
        )
    return False


def record_rows(n: int, *, table: str | None = None) -> None:
    """Count ``n`` synthetic rows generated by the current run.

    Args:
        n: Rows generated (a whole number ≥ 0).
        table: Table name; defaults to the ``table`` given to ``observe``.

    Raises:
        ValueError: ``n`` is negative or not a whole number.

    Example:
        ```python
        df = model.sample(10_000)
        so.record_rows(len(df))
        ```
    """
    n = validate_rows(n)
    if table is not None and not isinstance(table, str):
        raise ValueError(f"table must be a string, got {table!r}")
    try:
        runtime = get_runtime()
        scope = _current(runtime, "record_rows")
        info = scope.info
        model_type = info.spec.model_type if info else None
        resolved = table or (info.spec.table if info else None)
        if info is not None and _counted_by_autolog(scope, n, resolved):
            return
        if info is not None:
            # in a task: the task row's ``rows`` (its last attempt's), counted toward the flow's as it ends
            runtime.scope.count_rows(info, scope.task_run, n, resolved)
        # every row generated, retried attempts' included
        runtime.recording.handle(
            RowsGenerated(n=n, flow_name=scope.flow_name, table_name=resolved, model_type=model_type)
        )
    except Exception as exc:
        logger.warning("synthobs: record_rows failed (%s); the run is unaffected", exc)


def record_epoch(epoch: int, *, loss: float | Mapping[str, float] | None = None) -> None:
    """Record a finished training epoch and its loss.

    Args:
        epoch: Epoch number (a whole number ≥ 0).
        loss: A number, or a mapping such as ``{"generator": 0.7,
            "discriminator": 1.1}``. NaN is recorded as is (a diverging model is
            worth seeing).

    Raises:
        ValueError: A negative or non-integer epoch, or a loss that is not a
            number or a mapping of names to numbers.

    Example:
        ```python
        for epoch in range(epochs):
            loss = model.fit_one_epoch()
            so.record_epoch(epoch, loss=loss)
        ```
    """
    epoch = validate_epoch(epoch)
    losses = normalize_loss(loss)
    try:
        runtime = get_runtime()
        scope = _current(runtime, "record_epoch")
        info = scope.info
        model_type = info.spec.model_type if info else None
        runtime.recording.handle(
            EpochEnded(
                epoch=epoch,
                losses=losses,
                time=datetime.now(timezone.utc),
                flow_run_id=scope.flow_run_id,
                flow_name=scope.flow_name,
                model_type=model_type,
                in_observed_run=info is not None,
            )
        )
    except Exception as exc:
        logger.warning("synthobs: record_epoch failed (%s); the run is unaffected", exc)


def record_quality(
    metric: str,
    score: float,
    *,
    table: str | None = None,
    threshold: float | None = None,
    model: Any = None,
) -> bool | None:
    """Record a quality score (0 to 1, higher is better) for a synthetic table.

    Args:
        metric: Metric name, e.g. ``ks_complement:age`` or ``overall``.
        score: The score.
        table: Table name; defaults to the ``table`` given to ``observe``.
        threshold: Minimum passing score; when given, the check counts in
            ``synthobs_quality_gate_checks_total`` as ``pass`` or ``fail``.
        model: The model that made the synthetic table: the synthesizer object
            (SDV, CTGAN, TVAE, synthcity...) or its id as a string. Its scores
            are then reported apart from other models' (``model_identity``). A
            string id is redacted like any name (the ``redact_pii`` setting).

    Returns:
        Whether the score passed ``threshold`` (``None`` without one).

    Raises:
        ValueError: A NaN or non-numeric score or threshold, an empty metric, or
            a ``model`` ``model_identity`` refuses (a class, data, an empty or
            over-long id, an object that can keep no id).
    """
    metric, score, threshold = validate_score(metric, score, threshold)
    model_id, model_type = redacted_identity(model, enabled=get_settings().redact_pii)
    passed = None if threshold is None else score >= threshold
    record_check(
        metric,
        score,
        threshold=threshold,
        passed=passed,
        table=table,
        gate=metric,
        call="record_quality",
        model_id=model_id,
        model_type=model_type,
    )
    return passed


def record_check(
    metric: str,
    score: float,
    *,
    threshold: float | None,
    passed: bool | None,
    table: str | None,
    gate: str,
    call: str | None = None,
    model_id: str | None = None,
    model_type: str | None = None,
) -> None:
    """Record one checked score: a ``quality_checks`` row (inside an observed
    run), the ``quality_score`` gauge and, with a threshold, one
    ``quality_gate_checks_total`` count labelled ``gate``. Never raises.

    ``call``: the public function that recorded it, for the one warning
    outside an observed run (``None``, a quality gate: no warning).
    ``model_id``/``model_type``: the model that made the synthetic table
    (``instrument.models.model_identity``), null when unknown; without a type, the observed flow's
    declared ``model_type`` (``observe(model_type=...)``)."""
    try:
        runtime = get_runtime()
        scope = _current(runtime, call)
        info, run_id, flow_name = scope.info, scope.flow_run_id, scope.flow_name
        resolved = table or (info.spec.table if info else None)
        runtime.recording.handle(
            QualityChecked(
                metric=metric,
                score=score,
                threshold=threshold,
                passed=passed,
                gate=gate,
                time=datetime.now(timezone.utc),
                table_name=resolved,
                flow_run_id=run_id,
                flow_name=flow_name,
                in_observed_run=info is not None,
                model_id=model_id,
                model_type=model_type or (info.spec.model_type if info else None),
            )
        )
    except Exception as exc:
        logger.warning("synthobs: recording quality score %r failed (%s); the run is unaffected", metric, exc)
