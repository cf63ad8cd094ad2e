"""One fit and one sample as autolog records them: rows, spans, metrics, health checks, progress.

A ``FitSession`` lives from a generator's ``fit`` call to its return. It opens a ``training.fit`` span,
takes each epoch as the library ends it (``epoch_ended``: ``training_epochs`` rows with the epoch's end
time and seconds, a ``training.epoch`` child span, the loss and epoch-duration metrics, the training
health checks, the progress artifact) and, when the fit returns or raises, writes the ``models`` row.

Fits nest: SDV's ``CTGANSynthesizer.fit`` calls ``fit_processed_data``, then ``ctgan.CTGAN.fit``; HMA fits
a synthesizer per table. ``active_fit()`` is the outermost fit of this context: the one the user called.
Nested calls record nothing of their own, and the inner model's epochs count toward the outer fit (its
``model_id`` is the one ``check_quality(model=synth)`` gives).

Every method is guarded: an autolog failure costs one warning per kind and process, never the fit.
"""

from __future__ import annotations

import contextvars
import json
import math
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span

from prefect_synthobs import catalog
from prefect_synthobs._log import get_logger
from prefect_synthobs._version import __version__
from prefect_synthobs.autolog import describe
from prefect_synthobs.autolog.health import (
    TrainingAlert,
    TrainingGates,
    TrainingHealthError,
    TrainingMonitor,
    emit_training_alert,
)
from prefect_synthobs.autolog.progress import FitProgress
from prefect_synthobs.config.active import get_settings
from prefect_synthobs.health.events import EpochEnded, ModelFitted, TrainingAlerted
from prefect_synthobs.instrument.asset_plan import ModelFacts
from prefect_synthobs.instrument.assets import note_sample
from prefect_synthobs.instrument.instrumentation import current_runtime
from prefect_synthobs.instrument.measurements import Scope, current_scope, rows_sampled
from prefect_synthobs.instrument.models import model_identity
from prefect_synthobs.instrument.recording import Recording
from prefect_synthobs.telemetry.redaction import redact_optional

logger = get_logger("autolog")

_ACTIVE: contextvars.ContextVar[Operation | None] = contextvars.ContextVar("synthobs_autolog_active", default=None)
"""The outermost fit or sample autolog is recording in this context (nested calls record nothing)."""

_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_once(kind: str, message: str, *args: Any) -> None:
    """One warning per ``kind`` and process: what autolog lost, never the user's result."""
    with _warned_lock:
        if kind in _warned:
            return
        _warned.add(kind)
    logger.warning("synthobs: " + message + "; this warning is given once per process", *args)


def reset_warnings() -> None:
    with _warned_lock:
        _warned.clear()


class StopTraining(Exception):
    """Raised inside a library's training loop to end it after an epoch (``training_policy`` ``stop``);
    the fit wrapper catches it, so the user's ``fit`` returns normally with the epochs done so far."""


@dataclass(frozen=True)
class Model:
    """The model a fit or sample belongs to."""

    obj: Any
    model_id: str
    model_type: str | None
    library: str
    synthesizer: str

    @classmethod
    def of(cls, obj: Any, library: str) -> Model:
        model_id, model_type = model_identity(obj)
        assert model_id is not None  # an object always gets an id
        return cls(obj, model_id, model_type, library, type(obj).__name__)


@dataclass
class Operation:
    """What is active in a context: a fit (``FitSession``) or a sample (``sample_call``)."""

    model: Model
    kind: str  # "fit" or "sample"


@dataclass
class FitSession(Operation):
    """One fit from call to return (see the module docstring)."""

    scope: Scope = field(repr=False, default=None)  # type: ignore[assignment]
    table_name: str | None = None
    fit_rows: int | None = None
    fit_columns: int | None = None
    planned_epochs: int | None = None
    span: Span | None = field(default=None, repr=False)
    started: float = field(default_factory=time.perf_counter)
    loop_started: float | None = None
    last_epoch_end: float | None = None
    epochs: int = 0
    final_losses: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    monitor: TrainingMonitor | None = None
    gates: TrainingGates | None = None
    progress: FitProgress | None = None
    stopped: bool = False
    health_error: TrainingHealthError | None = None
    """Policy ``fail`` with a check tripped: what ``fit`` raises once the fit ended (the ``models`` row says it)."""
    fit_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """This fit (``models.fit_id``): SDV keeps a synthesizer's id when it is fitted again or copied."""

    # -- epochs --------------------------------------------------------------------------

    def training_loop_started(self) -> None:
        """The library's epoch loop starts now (its set-up before is not the first epoch's time)."""
        self.loop_started = self.last_epoch_end = time.perf_counter()

    def epoch_ended(self, epoch: int, losses: Mapping[str, float]) -> bool:
        """An epoch ended now: record it. Returns whether training should stop here (policy ``stop``)."""
        now = time.perf_counter()
        previous = self.last_epoch_end if self.last_epoch_end is not None else self.started
        self.last_epoch_end = now
        seconds = now - previous
        self.epochs += 1
        try:
            self._record_epoch(epoch, losses, seconds, now)
        except Exception as exc:
            warn_once("epoch", "autolog could not record a training epoch (%s); the fit is unaffected", exc)
        try:
            return self._check(epoch, losses, seconds)
        except Exception as exc:
            warn_once("health", "autolog could not check training health (%s); the fit is unaffected", exc)
            return False

    def _record_epoch(self, epoch: int, losses: Mapping[str, float], seconds: float, now: float) -> None:
        clean = {str(k): float(v) for k, v in losses.items()}
        for loss_type, value in clean.items():
            self.final_losses[loss_type] = value
            self.history.setdefault(loss_type, []).append((epoch, value))
        span_context = None
        if self.span is not None and self.span.is_recording():
            end_ns = time.time_ns()
            start_ns = end_ns - int(seconds * 1e9)
            epoch_span = _tracer().start_span(
                catalog.SPAN_TRAINING_EPOCH,
                context=trace.set_span_in_context(self.span),
                start_time=start_ns,
                attributes={
                    catalog.ATTR_EPOCH: epoch,
                    catalog.ATTR_MODEL_ID: self.model.model_id,
                    **{catalog.ATTR_LOSS_PREFIX + k: v for k, v in clean.items() if math.isfinite(v)},
                },
            )
            epoch_span.end(end_time=end_ns)
            span_context = epoch_span.get_span_context()
        scope = self.scope
        _recording(scope).handle(
            EpochEnded(
                epoch=epoch,
                losses=clean,
                time=datetime.now(timezone.utc),
                flow_run_id=scope.flow_run_id,
                flow_name=scope.flow_name,
                model_type=self.model.model_type,
                model_id=self.model.model_id,
                epoch_seconds=seconds,
                span_context=span_context,
                fit_id=self.fit_id,
            )
        )
        if self.progress is not None:
            self.progress.epoch(self.epochs, self.planned_epochs, clean)

    def _check(self, epoch: int, losses: Mapping[str, float], seconds: float) -> bool:
        if self.monitor is None or self.gates is None:
            return False
        for alert in self.monitor.observe(epoch, losses, seconds):
            self._alert(alert)
        if self.monitor.should_stop and not self.stopped:
            self.stopped = True
            return True
        return False

    def _alert(self, alert: TrainingAlert) -> None:
        assert self.gates is not None
        scope, model = self.scope, self.model
        logger.warning(
            "synthobs: training health: %s (%s %s, model %s; policy %s)",
            alert.message,
            model.library,
            model.synthesizer,
            model.model_id,
            self.gates.policy,
        )
        _recording(scope).handle(
            TrainingAlerted(check=alert.check, flow_name=scope.flow_name, model_type=model.model_type)
        )
        if self.span is not None:
            self.span.add_event(
                catalog.EVENT_TRAINING_PREFIX + alert.check,
                {"epoch": alert.epoch, "message": alert.message, "loss_type": alert.loss_type or ""},
            )
        emit_training_alert(
            alert,
            model_id=model.model_id,
            model_type=model.model_type,
            library=model.library,
            synthesizer=model.synthesizer,
            table_name=self.table_name,
            policy=self.gates.policy,
            flow_run_id=scope.flow_run_id,
        )

    # -- the end -------------------------------------------------------------------------

    def finish(self, error: BaseException | None) -> None:
        """The fit returned (``error`` ``None``) or raised: the ``models`` row, the span's summary. A fit
        whose training checks trip under policy ``fail`` is ``failed`` (``TrainingHealthError``), though
        its model is fitted."""
        seconds = time.perf_counter() - self.started
        if error is None:
            error = self.health_error
        status = "failed" if error is not None else ("stopped" if self.stopped else "completed")
        fitted = error is None or isinstance(error, TrainingHealthError)
        size = describe.pickled_size(self.model.obj) if fitted else None
        scope, model = self.scope, self.model
        fitted_event = ModelFitted(
            time=datetime.now(timezone.utc),
            flow_run_id=scope.flow_run_id,
            flow_name=scope.flow_name,
            task_run_id=scope.task_run_id,
            model_id=model.model_id,
            library=model.library,
            synthesizer=model.synthesizer,
            model_type=model.model_type,
            table_name=redact_optional(self.table_name or scope.info.spec.table, enabled=get_settings().redact_pii),
            parameters=describe.parameters_json(model.obj),
            fit_rows=self.fit_rows,
            fit_columns=self.fit_columns,
            fit_seconds=seconds,
            epochs=self.epochs if self.epochs else None,
            size_bytes=size,
            status=status,
            error_type=type(error).__name__ if error is not None else None,
            fit_id=self.fit_id,
            final_losses=json.dumps(
                {k: (v if math.isfinite(v) else str(v)) for k, v in self.final_losses.items()}, sort_keys=True
            )
            if self.final_losses
            else None,
        )
        _recording(scope).handle(fitted_event)
        if self.span is not None and self.span.is_recording():
            self.span.set_attributes(
                {
                    catalog.ATTR_EPOCHS: self.epochs,
                    **({catalog.ATTR_FIT_ROWS: self.fit_rows} if self.fit_rows is not None else {}),
                    **({catalog.ATTR_FIT_COLUMNS: self.fit_columns} if self.fit_columns is not None else {}),
                }
            )
        if self.progress is not None:
            share = 1.0 if status == "completed" or not self.planned_epochs else self.epochs / self.planned_epochs
            self.progress.finish(status, self.history, title=f"{model.synthesizer} loss per epoch", share=share)

    def failed_gates(self) -> TrainingHealthError | None:
        """The error to raise when the fit ended and the policy is ``fail`` with alerts tripped."""
        if self.monitor is None or self.gates is None or self.gates.policy != "fail" or not self.monitor.alerts:
            return None
        return TrainingHealthError(self.monitor.alerts, model=f"{self.model.synthesizer} {self.model.model_id}")


def _recording(scope: Scope) -> Recording:
    """The recording of the process's runtime now: ``configure`` during a fit rebuilds the runtime, and a
    fit's later rows must go to the new one, not the closed one it started with."""
    runtime = current_runtime()
    return (runtime if runtime is not None else scope.runtime).recording


_TRACERS: dict[int, Any] = {}


def _tracer() -> Any:
    """synthobs' tracer on the current global provider (looked up once per provider, not per epoch)."""
    provider = trace.get_tracer_provider()
    tracer = _TRACERS.get(id(provider))
    if tracer is None or tracer[0] is not provider:
        tracer = (provider, provider.get_tracer(catalog.TRACER_NAME, __version__))
        _TRACERS.clear()
        _TRACERS[id(provider)] = tracer
    return tracer[1]


def active_operation() -> Operation | None:
    """The outermost fit or sample being recorded in this context."""
    return _ACTIVE.get()


def active_fit() -> FitSession | None:
    """The outermost fit being recorded in this context (its epochs go to it), if any."""
    op = _ACTIVE.get()
    return op if isinstance(op, FitSession) else None


def _span_attributes(model: Model, table: str | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        catalog.ATTR_MODEL_ID: model.model_id,
        catalog.ATTR_LIBRARY: model.library,
        catalog.ATTR_SYNTHESIZER: model.synthesizer,
    }
    if model.model_type:
        attrs[catalog.ATTR_MODEL_TYPE] = model.model_type
    if table:
        attrs[catalog.ATTR_TABLE] = table
    return attrs


@contextmanager
def fit_session(
    obj: Any, library: str, data: Any, *, planned_epochs: int | None = None, table_name: str | None = None
) -> Iterator[FitSession | None]:
    """Record the fit of ``obj`` on ``data`` around the ``with`` body (the library's own ``fit``).

    Yields ``None`` (and records nothing) outside an observed run or inside another recorded fit or
    sample. A ``StopTraining`` from the body ends the fit normally. With policy ``fail`` and a tripped
    check, ``TrainingHealthError`` is raised after the fit returned (its model is fitted).
    """
    scope = current_scope() if _ACTIVE.get() is None else None  # nested calls record nothing
    if scope is None:
        yield None
        return
    session: FitSession | None = None
    try:
        model = Model.of(obj, library)
        rows, columns, tables = describe.data_shape(data)
        settings = get_settings()
        gates = TrainingGates.from_settings(settings)
        session = FitSession(
            model,
            "fit",
            scope=scope,
            table_name=table_name or (",".join(tables) if tables else None),
            fit_rows=rows,
            fit_columns=columns,
            planned_epochs=planned_epochs,
            monitor=TrainingMonitor(gates),
            gates=gates,
            progress=FitProgress.start(model.model_id, model.model_type, settings.training_progress_interval_seconds),
        )
    except Exception as exc:
        warn_once("fit-start", "autolog could not start recording a fit (%s); the fit is not recorded", exc)
        yield None
        return
    tracer = _tracer()
    token = _ACTIVE.set(session)
    try:
        with tracer.start_as_current_span(
            catalog.SPAN_TRAINING_FIT, attributes=_span_attributes(session.model, session.table_name)
        ) as span:
            session.span = span
            error: BaseException | None = None
            try:
                yield session
            except StopTraining:
                pass
            except BaseException as exc:
                error = exc
                raise
            finally:
                _ACTIVE.reset(token)
                if error is None:
                    session.health_error = session.failed_gates()  # raised below even if recording the end fails
                try:
                    session.finish(error)  # inside the span: its summary attributes land on it
                except Exception as exc:
                    warn_once("fit-end", "autolog could not record the end of a fit (%s); the fit is unaffected", exc)
    finally:
        if _ACTIVE.get() is session:
            _ACTIVE.reset(token)
    if session.health_error is not None:  # policy fail: the error the models row already names
        raise session.health_error


@contextmanager
def sample_call(obj: Any, library: str, *, table_name: str | None = None) -> Iterator[_SampleResult | None]:
    """Record a sample of ``obj`` around the ``with`` body; the body sets ``result.value`` to what
    ``sample`` returned. Yields ``None`` outside an observed run or inside another recorded fit or sample."""
    scope = current_scope() if _ACTIVE.get() is None else None  # nested calls record nothing
    if scope is None:
        yield None
        return
    try:
        model = Model.of(obj, library)
    except Exception as exc:
        warn_once("sample-start", "autolog could not start recording a sample (%s); its rows are not counted", exc)
        yield None
        return
    tracer = _tracer()
    token = _ACTIVE.set(Operation(model, "sample"))
    result = _SampleResult()
    try:
        with tracer.start_as_current_span(
            catalog.SPAN_GENERATION_SAMPLE, attributes=_span_attributes(model, table_name)
        ) as span:
            yield result
            try:
                counts = describe.sampled_rows(result.value)
                if span.is_recording():
                    span.set_attribute(catalog.ATTR_ROWS, sum(counts.values()))
                counted = rows_sampled(
                    scope,
                    counts,
                    table=table_name,
                    model_id=model.model_id,
                    model_type=model.model_type,
                    source=f"{model.synthesizer}.sample",
                )
            except Exception as exc:
                warn_once("sample-end", "autolog could not count sampled rows (%s); the sample is unaffected", exc)
            else:  # for the run's asset events (instrument.assets)
                facts = ModelFacts(model.model_id, model.model_type, model.library, model.synthesizer)
                note_sample(scope.flow_run_id, facts, counted, scope.task_run)
    finally:
        _ACTIVE.reset(token)


@dataclass
class _SampleResult:
    value: Any = None
