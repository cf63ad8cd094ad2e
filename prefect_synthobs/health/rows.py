"""Health rows as pure functions of values (no Prefect, no I/O).

Each builder computes its values and hands them to its table's ``row`` (in
``health/tables.py``), which checks the columns and adds the ``event_id``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

from prefect_synthobs.catalog import MAX_ATTEMPT_ERRORS, MAX_ERROR_CHARS, UNIT_INTERVAL_METRICS
from prefect_synthobs.health import tables
from prefect_synthobs.health.tables import Row
from prefect_synthobs.telemetry.redaction import clean_error_message, redact_optional

DEFAULT_LOSS_TYPE = "loss"


def as_utc(value: datetime | None) -> datetime | None:
    """A plain ``datetime`` in UTC (naive values are taken as UTC).

    Prefect hands out pendulum ``DateTime`` objects, whose arithmetic costs
    ~45 µs a time: rows use stdlib datetimes.
    """
    if value is None:
        return None
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(timezone.utc)
    return datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=timezone.utc,
    )


def duration_seconds(start: datetime | None, end: datetime | None) -> float | None:
    """``end - start`` in seconds, or ``None`` when either is unknown."""
    start, end = as_utc(start), as_utc(end)
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


class AttemptError(NamedTuple):
    """The error one attempt of a run ended with (attempts count from 1)."""

    attempt: int
    error_type: str | None
    message: str | None


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


def flow_row(
    *,
    flow_run_id: str,
    flow_name: str,
    state_type: str,
    state_name: str | None,
    start_time: datetime | None,
    end_time: datetime | None,
    kind: str = "other",
    model_type: str | None = None,
    table_name: str | None = None,
    parent_flow_run_id: str | None = None,
    rows: int = 0,
    error_type: str | None = None,
    error_message: str | None = None,
    tags: Sequence[str] = (),
    host: str | None = None,
    trace_id: str | None = None,
    redact_pii: bool = True,
    gpu: Mapping[str, Any] | None = None,
    source: str = tables.SOURCE_HOOK,
    run_count: int | None = None,
    attempt_errors: Sequence[AttemptError] = (),
) -> Row:
    """One ``flow_runs`` row for a finished flow run.

    ``gpu`` holds the GPU summary columns (``RunGpuSummary.columns()``);
    without it they are null. ``rows`` are the rows of the attempt that
    finished (a retried flow counts its last attempt), ``run_count`` how many
    attempts ran (null when unknown), ``attempt_errors`` the error of every
    failed attempt (``attempt_error_texts``).
    """
    start_time, end_time = as_utc(start_time), as_utc(end_time)
    duration = duration_seconds(start_time, end_time)
    return tables.FLOW_RUNS.row(
        flow_run_id=flow_run_id,
        parent_flow_run_id=parent_flow_run_id,
        flow_name=flow_name,
        kind=kind,
        model_type=model_type,
        table_name=table_name,
        state_type=state_type,
        state_name=redact_optional(state_name, enabled=redact_pii),
        start_time=start_time,
        end_time=end_time,
        duration_s=duration,
        rows=int(rows),
        rows_per_s=(rows / duration) if rows and duration else None,
        error_type=error_type,
        error_message=clean_error_message(error_message, limit=MAX_ERROR_CHARS, redact_pii=redact_pii),
        tags=_tags(tags, redact_pii),
        host=host,
        trace_id=trace_id,
        gpu_util_mean=(gpu or {}).get("gpu_util_mean"),
        gpu_util_max=(gpu or {}).get("gpu_util_max"),
        gpu_memory_peak_bytes=(gpu or {}).get("gpu_memory_peak_bytes"),
        gpu_energy_j=(gpu or {}).get("gpu_energy_j"),
        source=source,
        run_count=int(run_count) if run_count is not None else None,
        attempt_errors=attempt_error_texts(attempt_errors, redact_pii=redact_pii),
    )


def task_row(
    *,
    task_run_id: str,
    flow_run_id: str | None,
    flow_name: str | None,
    task_name: str,
    state_type: str,
    state_name: str | None,
    start_time: datetime | None,
    end_time: datetime | None,
    run_count: int,
    run_time_s: float | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
    tags: Sequence[str] = (),
    redact_pii: bool = True,
    rows: int = 0,
    source: str = tables.SOURCE_HOOK,
    attempt_errors: Sequence[AttemptError] = (),
) -> Row:
    """One ``task_runs`` row for a finished task run (retries included in one row).

    ``duration_s`` is the time the task spent running, over all its attempts:
    ``run_time_s`` (Prefect's ``total_run_time``, which leaves out the waits
    between retries) when known, else ``end_time - start_time`` (which
    includes them). ``rows`` are the rows of the last attempt;
    ``attempt_errors`` the error of every failed attempt.
    """
    start_time, end_time = as_utc(start_time), as_utc(end_time)
    return tables.TASK_RUNS.row(
        task_run_id=task_run_id,
        flow_run_id=flow_run_id,
        flow_name=flow_name,
        task_name=redact_optional(task_name, enabled=redact_pii),  # remote rows take it from the run name
        state_type=state_type,
        state_name=redact_optional(state_name, enabled=redact_pii),
        start_time=start_time,
        end_time=end_time,
        duration_s=max(run_time_s, 0.0) if run_time_s is not None else duration_seconds(start_time, end_time),
        run_time_s=run_time_s,
        run_count=int(run_count),
        error_type=error_type,
        error_message=clean_error_message(error_message, limit=MAX_ERROR_CHARS, redact_pii=redact_pii),
        tags=_tags(tags, redact_pii),
        rows=int(rows),
        source=source,
        attempt_errors=attempt_error_texts(attempt_errors, redact_pii=redact_pii),
    )


def _tags(tags: Sequence[str], redact_pii: bool) -> list[str]:
    """A row's tags, sorted; redacted too (tags are free text a run's caller chose)."""
    return sorted(redact_optional(str(t), enabled=redact_pii) or "" for t in tags)


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


def epoch_rows(
    *,
    epoch: int,
    losses: Mapping[str, float],
    time: datetime,
    flow_run_id: str | None,
    flow_name: str | None,
    model_type: str | None,
    model_id: str | None = None,
    epoch_seconds: float | None = None,
    fit_id: str | None = None,
) -> list[Row]:
    """``training_epochs`` rows: one per loss type, or one with a null loss.

    ``time``: when the epoch ended; ``epoch_seconds``: how long it took (``None``: not known)."""
    items: list[tuple[str | None, float | None]] = list(losses.items()) or [(None, None)]
    seconds = None if epoch_seconds is None or not math.isfinite(epoch_seconds) else max(float(epoch_seconds), 0.0)
    return [
        tables.TRAINING_EPOCHS.row(
            time=as_utc(time),
            flow_run_id=flow_run_id,
            flow_name=flow_name,
            model_type=model_type,
            epoch=epoch,
            loss_type=loss_type,
            loss=loss,
            model_id=model_id,
            epoch_seconds=seconds,
            fit_id=fit_id,
        )
        for loss_type, loss in items
    ]


def model_row(
    *,
    time: datetime,
    flow_run_id: str | None,
    flow_name: str | None,
    task_run_id: str | None,
    model_id: str,
    library: str,
    synthesizer: str,
    model_type: str | None,
    table_name: str | None,
    parameters: str | None,
    fit_rows: int | None,
    fit_columns: int | None,
    fit_seconds: float | None,
    epochs: int | None,
    size_bytes: int | None,
    status: str,
    error_type: str | None = None,
    final_losses: str | None = None,
    fit_id: str | None = None,
) -> Row:
    """One ``models`` row: a fit that ended (``status`` ``completed``, ``failed`` or ``stopped``)."""
    return tables.MODELS.row(
        time=as_utc(time),
        flow_run_id=flow_run_id,
        flow_name=flow_name,
        task_run_id=task_run_id,
        model_id=model_id,
        library=library,
        synthesizer=synthesizer,
        model_type=model_type,
        table_name=table_name,
        parameters=parameters,
        fit_rows=fit_rows,
        fit_columns=fit_columns,
        fit_seconds=None if fit_seconds is None or not math.isfinite(fit_seconds) else max(fit_seconds, 0.0),
        epochs=epochs,
        size_bytes=size_bytes,
        status=status,
        error_type=error_type,
        final_losses=final_losses,
        fit_id=fit_id,
    )


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


def quality_row(
    *,
    metric: str,
    score: float,
    threshold: float | None,
    time: datetime,
    table_name: str | None,
    flow_run_id: str | None,
    flow_name: str | None,
    passed: bool | None = None,
    model_id: str | None = None,
    model_type: str | None = None,
) -> Row:
    """One ``quality_checks`` row; ``passed`` is null when there is no threshold.

    ``passed`` defaults to ``score >= threshold``; a gate with a maximum (an
    attack AUC, an exact-match rate) passes it explicitly. ``model_id`` and
    ``model_type`` say which model made the synthetic table (``instrument.models.
    model_identity``; null when unknown): reports keep each model's scores apart.
    """
    return tables.QUALITY_CHECKS.row(
        time=as_utc(time),
        flow_run_id=flow_run_id,
        flow_name=flow_name,
        table_name=table_name,
        model_id=model_id,
        model_type=model_type,
        metric=metric,
        score=score,
        threshold=threshold,
        passed=passed if passed is not None or threshold is None else score >= threshold,
    )


def privacy_row(
    *,
    time: datetime,
    flow_run_id: str | None,
    flow_name: str | None,
    dataset: str,
    epsilon: float,
    spent: float,
    budget: float,
) -> Row:
    """One ``privacy_ledger`` row for an allowed spend (``spent``: the total after it)."""
    return tables.PRIVACY_LEDGER.row(
        time=as_utc(time),
        flow_run_id=flow_run_id,
        flow_name=flow_name,
        dataset=dataset,
        epsilon=epsilon,
        spent=spent,
        budget=budget,
        remaining=max(budget - spent, 0.0),
    )
