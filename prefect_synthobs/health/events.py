"""What happens in an observed run, as typed events: the one place a health column is defined.

Every fact synthobs records starts as one of these frozen dataclasses (a flow
run ended, a task run ended, rows generated, an epoch ended, a model fitted, a
quality check, a privacy spend, a GPU sample or a lost GPU), built from plain
values by whoever saw it happen (``instrument/prefect_runs.py`` for Prefect's
runs, autolog for generators, the ``record_*`` calls for users). The recording
seam (``instrument/recording.py``) hands each event to its sinks: the health
sink turns it into rows, the metrics sink into metric updates, the span sink
into span attributes.

A field declared with :func:`column` *is* a column of the event's health table
(``health/tables.py`` derives the table's Arrow schema from these fields, in
field order): its Arrow type and how it is cleaned before it is stored (PII
redaction, the error-message limit) are written here once. Columns computed
from other fields (``duration_s``, ``rows_per_s``) are :func:`derived` fields,
set in ``__post_init__``. Fields declared without ``column`` travel with the
event for the metrics and span sinks only.

So a new column is one field here and the line that sets it where the event is
built; a new fact is one event here, one ``Table`` in ``tables.py`` if it has
rows, and a branch in each sink that cares.

Pure: no Prefect, no I/O, no settings.
"""

# ruff: noqa: RUF009  # `column`/`derived` return `dataclasses.field`s, which ruff cannot see through
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple
from zoneinfo import ZoneInfo

import pyarrow as pa

TIMESTAMP: Final = pa.timestamp("us", tz="UTC")
STRING: Final = pa.string()
FLOAT: Final = pa.float64()
INT: Final = pa.int64()
BOOL: Final = pa.bool_()
STRINGS: Final = pa.list_(pa.string())

Clean = Literal["text", "error", "tags", "attempts"]
"""How a column's value is cleaned before it is stored (``health/rows.py`` applies it):

- ``text``: free text a run's caller chose, PII-redacted (``redact_pii``);
- ``error``: an error message, redacted and cut to ``MAX_ERROR_CHARS``;
- ``tags``: a run's tags, each redacted, sorted;
- ``attempts``: ``AttemptError`` entries as ``"attempt N: Type: message"`` texts.
"""

_COLUMN: Final = "synthobs_column"

SOURCE_HOOK: Final = "hook"
"""``source`` of a run row written as the run ended, in a process that ran it."""
SOURCE_API: Final = "api"
"""``source`` of a run row written by reconciliation from the Prefect API's records."""


@dataclass(frozen=True)
class ColumnSpec:
    """A health column's Arrow type and how its value is cleaned before it is stored."""

    arrow: pa.DataType
    clean: Clean | None = None


_REQUIRED: Final = object()


def column(arrow: pa.DataType, *, default: Any = _REQUIRED, clean: Clean | None = None) -> Any:
    """A field that is a health column of its event's table: required unless given a ``default``
    (``default=None``: null when not said), so an event built without one of its facts fails at once
    instead of storing a null."""
    meta = {_COLUMN: ColumnSpec(arrow, clean)}
    if default is _REQUIRED:
        return field(metadata=meta)
    if isinstance(default, (list, dict, set)):
        raise TypeError("a column's default must be immutable (use a tuple)")
    return field(default=default, metadata=meta)


def derived(arrow: pa.DataType) -> Any:
    """A column computed from the event's other fields in ``__post_init__`` (not an argument)."""
    return field(default=None, init=False, metadata={_COLUMN: ColumnSpec(arrow)})


@functools.cache
def columns_of(event_type: type) -> Mapping[str, ColumnSpec]:
    """The health columns an event type declares, in field order (read once per type: rows are built per task)."""
    return MappingProxyType(
        {f.name: f.metadata[_COLUMN] for f in dataclasses.fields(event_type) if _COLUMN in f.metadata}
    )


def _set(event: Any, name: str, value: Any) -> None:
    object.__setattr__(event, name, value)


_UTC_ZONE_KEYS: Final = frozenset({"UTC", "Etc/UTC"})
_utc_zones: dict[int, tzinfo] = {id(timezone.utc): timezone.utc}
"""Zones known to be UTC at every instant, by ``id``: each kept here, so its ``id`` is never another object's."""
_MAX_UTC_ZONES: Final = 64


def _is_utc_zone(tz: tzinfo) -> bool:
    """``tz`` is UTC at every instant: ``timezone.utc``, or a ``ZoneInfo`` (pendulum's ``UTC`` is one) named
    ``UTC`` whose ``utcoffset`` is ``ZoneInfo``'s own. Remembered per zone object (Prefect hands out one)."""
    if id(tz) in _utc_zones:
        return True
    if (
        isinstance(tz, ZoneInfo)
        and type(tz).utcoffset is ZoneInfo.utcoffset
        and tz.key in _UTC_ZONE_KEYS
        and len(_utc_zones) < _MAX_UTC_ZONES
        and _is_cached_zone(tz)
    ):
        _utc_zones[id(tz)] = tz
        return True
    return False


def _is_cached_zone(tz: ZoneInfo) -> bool:
    """``tz`` is its class's cached zone of its key (the system's data for that name), not one built from other
    data under that name (``ZoneInfo.from_file(..., key="UTC")``)."""
    try:
        return type(tz)(tz.key) is tz
    except Exception:
        return False


def as_utc(value: datetime | None) -> datetime | None:
    """A plain ``datetime`` in UTC (naive values are taken as UTC).

    Prefect hands out pendulum ``DateTime`` objects, whose arithmetic costs
    ~45 µs a time: rows use stdlib datetimes. A value whose zone is UTC at
    every instant (Prefect's times are) is copied without asking it its
    offset (~0.7 µs on a pendulum ``DateTime``): the same result.
    """
    if value is None:
        return None
    tz = value.tzinfo
    if value.__class__ is datetime and tz is timezone.utc:
        return value  # already one (an event's own times, converted once): no copy
    if tz is not None and not _is_utc_zone(tz) and value.utcoffset():
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


def _seconds(value: float | None) -> float | None:
    """A non-negative finite number of seconds, or ``None``."""
    return None if value is None or not math.isfinite(value) else max(float(value), 0.0)


class AttemptError(NamedTuple):
    """The error one attempt of a run ended with (attempts count from 1)."""

    attempt: int
    error_type: str | None
    message: str | None


# -- runs ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FlowRunEnded:
    """A flow run in scope ended (its ``flow_runs`` row, flow metrics, the flow span's attributes).

    ``rows``/``rows_by_table``: the rows of the attempt that finished; ``gpu``: the
    run's GPU summary columns (``RunGpuSummary.columns()``), ``None`` when no GPU
    was sampled; ``cpu_seconds``/``peak_memory_bytes``: what the run used of its
    process (``ProcessUse.columns()``), ``None`` when this process did not run it.
    """

    flow_run_id: str = column(STRING)
    parent_flow_run_id: str | None = column(STRING, default=None)
    flow_name: str = column(STRING)
    kind: str = column(STRING, default="other")
    model_type: str | None = column(STRING, default=None)
    table_name: str | None = column(STRING, default=None)
    state_type: str = column(STRING)
    state_name: str | None = column(STRING, clean="text")
    start_time: datetime | None = column(TIMESTAMP)
    end_time: datetime | None = column(TIMESTAMP)
    duration_s: float | None = derived(FLOAT)
    rows: int = column(INT, default=0)
    rows_per_s: float | None = derived(FLOAT)
    error_type: str | None = column(STRING, default=None)
    error_message: str | None = column(STRING, clean="error", default=None)
    tags: Sequence[str] = column(STRINGS, default=(), clean="tags")
    host: str | None = column(STRING, default=None)
    trace_id: str | None = column(STRING, default=None)
    gpu_util_mean: float | None = derived(FLOAT)
    gpu_util_max: float | None = derived(FLOAT)
    gpu_memory_peak_bytes: int | None = derived(INT)
    gpu_energy_j: float | None = derived(FLOAT)
    source: str = column(STRING, default=SOURCE_HOOK)
    run_count: int | None = column(INT, default=None)
    attempt_errors: Sequence[AttemptError] = column(STRINGS, default=(), clean="attempts")
    # what the run used of the process that ran it (``instrument/process_use.py``); null for a run measured
    # nowhere (one whose end a runner or worker recorded, a row read back from the API)
    cpu_seconds: float | None = column(FLOAT, default=None)  # user + system CPU seconds during the run
    peak_memory_bytes: int | None = column(INT, default=None)  # the highest resident set size during the run
    # not columns: for the metrics and span sinks
    rows_by_table: Mapping[str | None, int] = field(default_factory=dict)
    gpu: Mapping[str, Any] | None = None
    span_attributes: Mapping[str, Any] = field(default_factory=dict)
    run_span: Any = None
    """The flow run's span (an OpenTelemetry ``Span``), to carry the run's attributes; ``None``: none."""

    def __post_init__(self) -> None:
        start, end = as_utc(self.start_time), as_utc(self.end_time)
        _set(self, "start_time", start)
        _set(self, "end_time", end)
        duration = duration_seconds(start, end)
        _set(self, "duration_s", duration)
        _set(self, "rows", int(self.rows))
        _set(self, "rows_per_s", (self.rows / duration) if self.rows and duration else None)
        _set(self, "run_count", int(self.run_count) if self.run_count is not None else None)
        _set(self, "cpu_seconds", _seconds(self.cpu_seconds))
        _set(self, "peak_memory_bytes", int(self.peak_memory_bytes) if self.peak_memory_bytes is not None else None)
        gpu = self.gpu or {}
        for name in ("gpu_util_mean", "gpu_util_max", "gpu_memory_peak_bytes", "gpu_energy_j"):
            _set(self, name, gpu.get(name))


@dataclass(frozen=True, kw_only=True)
class TaskRunEnded:
    """A task run of a flow in scope ended, retries included (its ``task_runs`` row and task metrics).

    ``duration_s`` is the time the task spent running over all its attempts:
    ``run_time_s`` (Prefect's ``total_run_time``, which leaves out the waits
    between retries) when known, else ``end_time - start_time``. ``rows``: the
    rows of its last attempt. ``counted_only``: the run's row is written
    elsewhere (a task in a worker process, read back at the flow's end): metrics
    only.
    """

    task_run_id: str = column(STRING)
    flow_run_id: str | None = column(STRING)
    flow_name: str | None = column(STRING)
    task_name: str = column(STRING, clean="text")  # rows from the API take it from the run's name
    state_type: str = column(STRING)
    state_name: str | None = column(STRING, clean="text")
    start_time: datetime | None = column(TIMESTAMP)
    end_time: datetime | None = column(TIMESTAMP)
    duration_s: float | None = derived(FLOAT)
    run_time_s: float | None = column(FLOAT, default=None)
    run_count: int = column(INT, default=0)
    error_type: str | None = column(STRING, default=None)
    error_message: str | None = column(STRING, clean="error", default=None)
    tags: Sequence[str] = column(STRINGS, default=(), clean="tags")
    rows: int = column(INT, default=0)
    source: str = column(STRING, default=SOURCE_HOOK)
    attempt_errors: Sequence[AttemptError] = column(STRINGS, default=(), clean="attempts")
    # not columns
    span_context: Any = None
    """The task run's span context (an OpenTelemetry ``SpanContext``), the duration's exemplar."""
    counted_only: bool = False

    def __post_init__(self) -> None:
        _derive_task_run(self.__dict__)

    @classmethod
    def of_fields(cls, values: dict[str, Any]) -> TaskRunEnded:
        """``TaskRunEnded(**values)``, built in one step (the per-task batch: a dataclass ``__init__`` sets each
        field on its own): the same fields, defaults and derived values.

        Raises:
            TypeError: unless ``values`` are init fields, every required one among them.
        """
        event = object.__new__(cls)
        fields_ = event.__dict__
        fields_.update(_TASK_RUN_TEMPLATE)  # every field, in field order (as ``__init__`` sets them)
        fields_.update(values)
        if not _TASK_RUN_REQUIRED <= values.keys() <= _TASK_RUN_INIT:
            raise TypeError(f"TaskRunEnded fields: {sorted(values)} are not its init fields {sorted(_TASK_RUN_INIT)}")
        _derive_task_run(fields_)
        return event


def _derive_task_run(fields_: dict[str, Any]) -> None:
    """A ``TaskRunEnded``'s derived and normalised fields, set in its ``__dict__`` (its ``__post_init__``)."""
    start, end = as_utc(fields_["start_time"]), as_utc(fields_["end_time"])
    fields_["start_time"] = start
    fields_["end_time"] = end
    run_time = fields_["run_time_s"]
    fields_["duration_s"] = max(run_time, 0.0) if run_time is not None else duration_seconds(start, end)
    fields_["run_count"] = int(fields_["run_count"] or 0)
    fields_["rows"] = int(fields_["rows"])


_TASK_RUN_INIT: Final = frozenset(f.name for f in dataclasses.fields(TaskRunEnded) if f.init)
_TASK_RUN_REQUIRED: Final = frozenset(
    f.name for f in dataclasses.fields(TaskRunEnded) if f.init and f.default is dataclasses.MISSING
)
_TASK_RUN_TEMPLATE: Final[dict[str, Any]] = {
    f.name: _REQUIRED if f.default is dataclasses.MISSING else f.default
    for f in sorted(dataclasses.fields(TaskRunEnded), key=lambda f: not f.init)
}
"""(Not to be changed.) Every ``TaskRunEnded`` field in the order ``__init__`` sets them (the init fields, then
the derived ones): its default (the derived ones' ``None``), ``_REQUIRED`` without one (no field has a default
factory)."""
if any(f.default_factory is not dataclasses.MISSING for f in dataclasses.fields(TaskRunEnded)):  # pragma: no cover
    raise TypeError("TaskRunEnded.of_fields sets defaults, not default factories")


# -- measurements -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RowsGenerated:
    """Synthetic rows generated (``record_rows`` or a generator's sample): counted in
    ``synthobs_generation_rows_total``. The run's own count is kept by its run scope."""

    n: int
    flow_name: str | None
    table_name: str | None
    model_type: str | None


@dataclass(frozen=True, kw_only=True)
class EpochEnded:
    """A training epoch ended: one ``training_epochs`` row per loss type (one with a null loss without
    losses), in an observed run; the epoch metrics always.

    ``time``: when it ended; ``epoch_seconds``: how long it took (``None``: not known, as for a hand-made
    ``record_epoch``); ``span_context``: the epoch's span, the duration's exemplar."""

    time: datetime = column(TIMESTAMP)
    flow_run_id: str | None = column(STRING)
    flow_name: str | None = column(STRING)
    model_type: str | None = column(STRING)
    epoch: int = column(INT)
    loss_type: str | None = derived(STRING)  # one row per entry of ``losses``
    loss: float | None = derived(FLOAT)
    model_id: str | None = column(STRING, default=None)  # the model (a ``models`` row); null: recorded by hand
    epoch_seconds: float | None = column(FLOAT, default=None)  # how long that epoch took; ``time`` is when it ended
    fit_id: str | None = column(
        STRING, default=None
    )  # the fit it belongs to: a model fitted twice, or copies of one, apart
    # not columns
    losses: Mapping[str, float] = field(default_factory=dict)
    in_observed_run: bool = True
    span_context: Any = None

    def __post_init__(self) -> None:
        _set(self, "time", as_utc(self.time))
        _set(self, "epoch_seconds", _seconds(self.epoch_seconds))

    def per_loss(self) -> list[EpochEnded]:
        """The event once per loss type (``loss_type``/``loss`` set), or once with null ones."""
        items: list[tuple[str | None, float | None]] = list(self.losses.items()) or [(None, None)]
        out = []
        for loss_type, loss in items:
            one = dataclasses.replace(self)
            _set(one, "loss_type", loss_type)
            _set(one, "loss", loss)
            out.append(one)
        return out


@dataclass(frozen=True, kw_only=True)
class ModelFitted:
    """A generator's fit ended (``status`` ``completed``, ``failed`` or ``stopped``): its ``models`` row
    (in an observed run) and ``synthobs_training_fits_total``."""

    time: datetime = column(TIMESTAMP)  # when the fit ended
    flow_run_id: str | None = column(STRING)
    flow_name: str | None = column(STRING)
    task_run_id: str | None = column(STRING)
    model_id: str = column(STRING)  # carried to every epoch, sample and quality row of that fitted object
    library: str = column(STRING)  # sdv, ctgan, synthcity
    synthesizer: str = column(STRING)  # the class name, e.g. CTGANSynthesizer
    model_type: str | None = column(STRING)  # e.g. ctgan, gaussian_copula
    table_name: str | None = column(STRING)  # the table fitted on (multi-table: the tables, comma-separated)
    parameters: str | None = column(STRING)  # JSON text of the hyperparameters (redacted)
    fit_rows: int | None = column(INT)
    fit_columns: int | None = column(INT)
    fit_seconds: float | None = column(FLOAT)
    epochs: int | None = column(INT)  # epochs that ran (null for a model without epochs)
    size_bytes: int | None = column(INT)  # the fitted object pickled
    status: str = column(STRING)  # completed, failed, stopped (a training gate with policy stop ended it early)
    error_type: str | None = column(STRING, default=None)
    final_losses: str | None = column(STRING, default=None)  # JSON {loss_type: last loss}
    fit_id: str | None = column(
        STRING, default=None
    )  # this fit: SDV keeps a synthesizer's id when it is fitted again or copied
    # not a column
    in_observed_run: bool = True

    def __post_init__(self) -> None:
        _set(self, "time", as_utc(self.time))
        _set(self, "fit_seconds", _seconds(self.fit_seconds))


@dataclass(frozen=True, kw_only=True)
class TrainingAlerted:
    """A training health check tripped (``catalog.TRAINING_CHECKS``): counted."""

    check: str
    flow_name: str | None
    model_type: str | None


@dataclass(frozen=True, kw_only=True)
class QualityChecked:
    """One checked score: a ``quality_checks`` row (in an observed run), the score gauge and, with a
    threshold, one gate check counted ``pass`` or ``fail`` under ``gate``.

    ``passed`` defaults to ``score >= threshold``; a gate with a maximum (an attack AUC, an exact-match
    rate) passes it explicitly. ``model_id``/``model_type``: which model made the synthetic table."""

    time: datetime = column(TIMESTAMP)
    flow_run_id: str | None = column(STRING)
    flow_name: str | None = column(STRING)
    table_name: str | None = column(STRING)
    model_id: str | None = column(STRING, default=None)  # which model made the synthetic table (null: not said)
    model_type: str | None = column(STRING, default=None)
    metric: str = column(STRING)
    score: float = column(FLOAT)
    threshold: float | None = column(FLOAT)
    passed: bool | None = column(BOOL, default=None)
    # not columns
    gate: str | None = None
    """The gate's name in ``synthobs_quality_gate_checks_total`` (default: ``metric``)."""
    in_observed_run: bool = True

    def __post_init__(self) -> None:
        _set(self, "time", as_utc(self.time))
        if self.passed is None and self.threshold is not None:
            _set(self, "passed", self.score >= self.threshold)


@dataclass(frozen=True, kw_only=True)
class PrivacyChecked:
    """A privacy budget check: counted, the remaining budget, and when allowed the spend and (with
    ``ledger``) its ``privacy_ledger`` row. ``spent``: the total after the check. ``ledger=False``: the
    caller already made the row durable."""

    time: datetime = column(TIMESTAMP)
    flow_run_id: str | None = column(STRING)
    flow_name: str | None = column(STRING)
    dataset: str = column(STRING)
    epsilon: float = column(FLOAT)
    spent: float = column(FLOAT)
    budget: float = column(FLOAT)
    remaining: float = derived(FLOAT)
    # not columns
    allowed: bool = True
    ledger: bool = True

    def __post_init__(self) -> None:
        _set(self, "time", as_utc(self.time))
        _set(self, "remaining", max(self.budget - self.spent, 0.0))


# -- GPU ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GpuSampled:
    """One GPU sample of every device: the device gauges, the energy counter and ``gpu_samples`` rows
    (``rows``, built by ``gpu.sampler.sample_rows`` from the same readings).

    ``readings``: ``gpu.nvml.GpuReading`` per device; ``energy_j``: joules per device uuid since its last
    sample."""

    readings: Sequence[Any]
    energy_j: Mapping[str, float]
    rows: Sequence[dict[str, Any]] = ()


@dataclass(frozen=True, kw_only=True)
class GpuLost:
    """A GPU stopped answering: its gauges go (stale gauges would show a dead GPU as busy)."""

    device: Any
    """The ``gpu.nvml.GpuDevice``."""


RunEvent = (
    FlowRunEnded
    | TaskRunEnded
    | RowsGenerated
    | EpochEnded
    | ModelFitted
    | TrainingAlerted
    | QualityChecked
    | PrivacyChecked
    | GpuSampled
    | GpuLost
)
"""Every event the recording seam handles."""
