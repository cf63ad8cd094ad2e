"""Health rows from run events, as pure functions (no Prefect, no I/O).

``row_of(event)`` builds an event's row from its table's definition: every
column field of the event (``health/events.py``) cleaned as its column says
(PII redaction, the error-message limit), then ``Table.row``, which checks the
columns and adds the ``event_id``. The keyword builders (``flow_row``,
``task_row``, ...) build the event and call it. Also here: the checks of what
users pass to ``record_*`` (``validate_rows``, ``validate_epoch``,
``normalize_loss``, ``validate_score``).
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
from collections.abc import Mapping, Sequence
from typing import Any, Final

from prefect_synthobs.catalog import MAX_ATTEMPT_ERRORS, MAX_ERROR_CHARS, UNIT_INTERVAL_METRICS
from prefect_synthobs.health import events, tables
from prefect_synthobs.health.events import (
    AttemptError,
    EpochEnded,
    FlowRunEnded,
    ModelFitted,
    PrivacyChecked,
    QualityChecked,
    TaskRunEnded,
    as_utc,
    duration_seconds,
)
from prefect_synthobs.health.tables import Row
from prefect_synthobs.telemetry.redaction import clean_error_message, redact

__all__ = [
    "DEFAULT_LOSS_TYPE",
    "AttemptError",
    "as_utc",
    "attempt_error_texts",
    "duration_seconds",
    "epoch_rows",
    "flow_row",
    "model_row",
    "normalize_loss",
    "privacy_row",
    "quality_row",
    "row_of",
    "rows_of",
    "rows_of_many",
    "task_row",
    "trace_id_from_traceparent",
    "validate_epoch",
    "validate_rows",
    "validate_score",
]

DEFAULT_LOSS_TYPE = "loss"


SHORT_TEXT: Final = 256
"""Texts up to this long that a run's caller chose (task, flow and state names, tags) repeat run after run:
their redaction is computed once (``_redacted_short``). Error messages are never cached."""


@functools.lru_cache(maxsize=4096)
def _redacted_short(text: str) -> str:
    """``redact(text)``, remembered: the same name is redacted once, not once per task run."""
    return redact(text)


def _redacted_text(value: Any, redact_pii: bool) -> Any:
    if redact_pii and isinstance(value, str) and value:
        return _redacted_short(value) if len(value) <= SHORT_TEXT else redact(value)
    return value


def _clean(value: Any, how: events.Clean | None, redact_pii: bool) -> Any:
    if how is None:
        return value
    if how == "text":
        return _redacted_text(value, redact_pii)
    if how == "error":
        return None if value is None else clean_error_message(value, limit=MAX_ERROR_CHARS, redact_pii=redact_pii)
    if not value:  # no tags, no failed attempts (most runs): the empty list, without building one per column
        return []
    if how == "tags":
        return sorted(_redacted_text(str(t), redact_pii) or "" for t in value)
    return attempt_error_texts(value, redact_pii=redact_pii)


@functools.cache
def _plan(event_type: type) -> tuple[tables.Table, tuple[tuple[str, events.Clean | None], ...]]:
    """An event type's table and its columns in field order, each with how it is cleaned: read once per type."""
    table = tables.TABLE_OF_EVENT.get(event_type)
    if table is None:
        raise ValueError(f"{event_type.__name__} has no health table")
    return table, tuple((name, spec.clean) for name, spec in events.columns_of(event_type).items())


def row_of(event: Any, *, redact_pii: bool = True) -> Row:
    """The health row of an event with a table (``tables.TABLE_OF_EVENT``), its columns cleaned as declared
    (``rows_of_many`` of the one event: the row ``Table.row`` gives, without its check that the plan's columns
    are the table's, which they are by construction).

    Raises:
        ValueError: for an event type without a table.
    """
    return rows_of_many((event,), redact_pii=redact_pii)[0]


def rows_of_many(events_: Sequence[Any], *, redact_pii: bool = True) -> list[Row]:
    """``[row_of(e) for e in events_]`` for events of one type (a batch of task runs), in one pass: the table's
    plan is read once and each row built straight from it (the plan names every column, so ``Table.row``'s
    check has nothing to find). Same rows, same order, each with its own new ``event_id``.

    The column values are read from each event's ``__dict__`` at once (a dataclass keeps its fields there),
    and the empty values most runs have (no error, no tags, no failed attempt) and the short names that
    repeat within a batch are cleaned without a call each: the values ``_clean`` gives.

    Raises:
        ValueError: for an event type without a table, or events of more than one type.
    """
    if not events_:
        return []
    event_type: type = type(events_[0])
    names, read, cleaned = _reader(event_type)
    new_id = tables.new_event_id
    short: dict[str, str] = {}  # redacted short texts of this batch
    out: list[Row] = []
    for event in events_:
        if type(event) is not event_type:
            raise ValueError(f"rows_of_many takes events of one type: {event_type.__name__}, {type(event).__name__}")
        row: Row = {tables.EVENT_ID: new_id()}
        try:
            row.update(zip(names, read(event.__dict__), strict=True))
        except (AttributeError, KeyError):  # not a plain dataclass instance: read each column as ``row_of`` does
            row.update((name, getattr(event, name)) for name in names)
        for name, how in cleaned:
            value = row[name]
            if how == "text":
                if value.__class__ is str:
                    if redact_pii and value:
                        text = short.get(value)
                        if text is None:
                            text = short[value] = _redacted_text(value, redact_pii)
                        row[name] = text
                else:
                    row[name] = _clean(value, how, redact_pii)
            elif how == "error":
                if value is not None:  # no error: null, as ``_clean`` leaves it
                    row[name] = _clean(value, how, redact_pii)
            elif value:
                row[name] = _clean(value, how, redact_pii)
            else:
                row[name] = []  # no tags, no failed attempts: as ``_clean`` gives
        out.append(row)
    return out


@functools.cache
def _reader(event_type: type) -> tuple[tuple[str, ...], Any, tuple[tuple[str, events.Clean], ...]]:
    """An event type's column names in order, a reader of their values from an event's ``__dict__``, and the
    columns that are cleaned with how: read once per type."""
    _table, plan = _plan(event_type)
    names = tuple(name for name, _how in plan)
    getter = operator.itemgetter(*names)
    read = getter if len(names) > 1 else (lambda d: (getter(d),))
    return names, read, tuple((name, how) for name, how in plan if how is not None)


def rows_of(event: Any, *, redact_pii: bool = True) -> list[Row]:
    """Every health row of an event: one per loss type for an epoch, else ``[row_of(event)]``."""
    if isinstance(event, EpochEnded):
        return [row_of(one, redact_pii=redact_pii) for one in event.per_loss()]
    return [row_of(event, redact_pii=redact_pii)]


def attempt_error_texts(errors: Sequence[AttemptError], *, redact_pii: bool = True) -> list[str]:
    """A run row's ``attempt_errors``: ``"attempt N: ErrorType: message"`` per failed attempt, in attempt order.

    Each entry is redacted and cut to ``MAX_ERROR_CHARS`` like ``error_message``.
    More than ``MAX_ATTEMPT_ERRORS`` attempts keep the first and the last ones,
    with one entry in between saying how many were left out.
    """
    texts = []
    for error in sorted(errors, key=lambda e: e.attempt):
        described = ": ".join(part for part in (error.error_type, error.message) if part) or "failed"
        text = clean_error_message(
            f"attempt {error.attempt}: {described}", limit=MAX_ERROR_CHARS, redact_pii=redact_pii
        )
        texts.append(text or "")
    if len(texts) > MAX_ATTEMPT_ERRORS:
        head, tail = MAX_ATTEMPT_ERRORS // 2, MAX_ATTEMPT_ERRORS - MAX_ATTEMPT_ERRORS // 2 - 1
        left_out = len(texts) - head - tail
        texts = [*texts[:head], f"... {left_out} attempts' errors left out ...", *texts[-tail:]]
    return texts


def trace_id_from_traceparent(traceparent: str | None) -> str | None:
    """The 32-hex trace id of a W3C ``traceparent`` header, if it is one."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
        return parts[1]
    return None


def flow_row(*, redact_pii: bool = True, **values: Any) -> Row:
    """One ``flow_runs`` row for a finished flow run (the fields of ``events.FlowRunEnded``).

    ``gpu`` holds the GPU summary columns (``RunGpuSummary.columns()``);
    without it they are null. ``rows`` are the rows of the attempt that
    finished (a retried flow counts its last attempt), ``run_count`` how many
    attempts ran (null when unknown), ``attempt_errors`` the error of every
    failed attempt (``attempt_error_texts``).
    """
    return row_of(FlowRunEnded(**values), redact_pii=redact_pii)


def task_row(*, redact_pii: bool = True, **values: Any) -> Row:
    """One ``task_runs`` row for a finished task run, retries included (the fields of ``events.TaskRunEnded``)."""
    return row_of(TaskRunEnded(**values), redact_pii=redact_pii)


_INT64_MAX = 2**63 - 1


def validate_rows(n: Any) -> int:
    """``n`` as a row count; ``ValueError`` unless a whole number ≥ 0."""
    if isinstance(n, bool):
        raise ValueError(f"rows must be a whole number >= 0, got {n!r}")
    if not isinstance(n, numbers.Integral):
        if isinstance(n, numbers.Real) and not math.isnan(n) and float(n).is_integer():
            n = int(float(n))
        else:
            raise ValueError(f"rows must be a whole number >= 0, got {n!r}")
    if n < 0:
        raise ValueError(f"rows must be >= 0, got {n}")
    if n > _INT64_MAX:
        raise ValueError(f"rows must be at most {_INT64_MAX:,} (a 64-bit count), got {n}")
    return int(n)


def validate_epoch(epoch: Any) -> int:
    """``epoch`` as an epoch number; ``ValueError`` unless a whole number from 0 to 2**63 - 1."""
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or not 0 <= int(epoch) <= _INT64_MAX:
        raise ValueError(f"epoch must be a whole number >= 0, got {epoch!r}")
    return int(epoch)


def normalize_loss(loss: Any) -> dict[str, float]:
    """A loss as ``{loss_type: value}``.

    A number becomes ``{"loss": value}``; a mapping keeps its keys (e.g.
    ``{"generator": 0.7, "discriminator": 1.1}``). NaN and infinite losses are
    kept: a diverging model is worth seeing. Anything else is a ``ValueError``.
    """
    if loss is None:
        return {}
    if isinstance(loss, Mapping):
        if not loss:
            raise ValueError("loss mapping is empty; pass None or at least one value")
        out: dict[str, float] = {}
        for key, value in loss.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"loss names must be non-empty strings, got {key!r}")
            out[key] = _loss_value(value, key)
        return out
    return {DEFAULT_LOSS_TYPE: _loss_value(loss, DEFAULT_LOSS_TYPE)}


def _loss_value(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"loss {name!r} must be a number, got {value!r}")
    return float(value)


def epoch_rows(**values: Any) -> list[Row]:
    """``training_epochs`` rows (the fields of ``events.EpochEnded``): one per loss type, or one with a null
    loss."""
    return rows_of(EpochEnded(**values))


def model_row(**values: Any) -> Row:
    """One ``models`` row: a fit that ended (the fields of ``events.ModelFitted``)."""
    return row_of(ModelFitted(**values))


def validate_score(metric: Any, score: Any, threshold: Any) -> tuple[str, float, float | None]:
    """Check a quality measurement.

    Raises:
        ValueError: a bad metric name; a score or threshold that is not a
            finite number; or, for a metric defined on [0, 1]
            (``UNIT_INTERVAL_METRICS``), one outside it.
    """
    if not isinstance(metric, str) or not metric:
        raise ValueError(f"metric must be a non-empty string, got {metric!r}")
    out: list[float | None] = []
    for name, value in (("score", score), ("threshold", threshold)):
        if value is None and name == "threshold":
            out.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"quality {name} for {metric!r} must be a finite number, got {value!r}")
        if metric in UNIT_INTERVAL_METRICS and not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"quality {name} for {metric!r} must be between 0 and 1, got {value!r}")
        out.append(float(value))
    return metric, out[0], out[1]  # type: ignore[return-value]


def quality_row(**values: Any) -> Row:
    """One ``quality_checks`` row (the fields of ``events.QualityChecked``); ``passed`` is null without a
    threshold and defaults to ``score >= threshold``."""
    return row_of(QualityChecked(**values))


def privacy_row(**values: Any) -> Row:
    """One ``privacy_ledger`` row for an allowed spend (``spent``: the total after it)."""
    return row_of(PrivacyChecked(**values))
