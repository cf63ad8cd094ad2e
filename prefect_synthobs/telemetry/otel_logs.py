"""Run logs over OTLP: Prefect's run logs of observed runs as OpenTelemetry log records.

``RunLogHandler`` sits on Prefect's run loggers (``prefect.flow_runs`` and
``prefect.task_runs``, which also carry ``log_prints``), after the redaction
filter, and turns each record of an observed run into a log record with the
current trace and span ids, the severity and the run's ids and names.
``LogsExportSetup`` adds it and removes exactly what it added; like metrics, an
SDK ``LoggerProvider`` already set globally is used, otherwise synthobs builds
its own (not global). At an observed flow's end the provider is flushed,
bounded, so a short-lived flow process loses no record. When synthobs builds
the export itself over http/protobuf (the default), records skip the SDK's
record objects: the flow's thread captures them and ``log_batch`` encodes and
sends them in batches from one thread (``log_wire``: the same bytes the SDK
would send); gRPC, console output, record limits and a user's provider keep the
SDK path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from opentelemetry import _logs as otel_logs
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import get_current
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    ConsoleLogRecordExporter,
    LogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import get_current_span

from prefect_synthobs import catalog as names
from prefect_synthobs._log import get_logger
from prefect_synthobs._version import __version__
from prefect_synthobs.telemetry.log_batch import WireLogPipeline, http_send
from prefect_synthobs.telemetry.log_wire import WireLog, sdk_encoder
from prefect_synthobs.telemetry.logs import REDACTED_MARK, RUN_LOGGERS
from prefect_synthobs.telemetry.otlp import (
    ExportHealth,
    OtlpSettings,
    OtlpTarget,
    flush_bounded,
    named_exporters,
    otlp_target,
    quiet_exporter_logs,
    restore_exporter_logs,
)
from prefect_synthobs.telemetry.prefect_names import PREFECT_FLOW_RUN_ID, context_attributes
from prefect_synthobs.telemetry.redaction import redact

logger = get_logger("telemetry.logs")

_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.proto.grpc._log_exporter",
)

# Prefect's log record extras and the log record attributes they become. ``prefect.flow_run.id`` is the name
# synthobs used first (kept for queries written against it); ``prefect.flow-run.id`` is Prefect's own, the one
# its resource metrics carry (``prefect_names.py``).
RUN_ATTRIBUTES = (
    ("flow_run_id", "prefect.flow_run.id"),
    ("flow_run_id", PREFECT_FLOW_RUN_ID),
    ("flow_run_name", "prefect.flow_run.name"),
    ("flow_name", "prefect.flow.name"),
    ("task_run_id", "prefect.task_run.id"),
    ("task_run_name", "prefect.task_run.name"),
    ("task_name", "prefect.task.name"),
)


# -- configuration (pure) -------------------------------------------------------------


class LogsOtlpSettings(OtlpSettings, Protocol):
    """What ``logs_export_config`` reads (``SynthObsSettings`` is one)."""

    @property
    def otlp_logs(self) -> bool | None: ...


@dataclass(frozen=True)
class LogsExportConfig:
    """Whether and where the run logs of observed runs go as OpenTelemetry log records."""

    otlp: OtlpTarget | None
    console: bool = False
    redact_pii: bool = True

    @property
    def enabled(self) -> bool:
        return self.otlp is not None or self.console


def logs_export_config(settings: LogsOtlpSettings, environ: Mapping[str, str] | None = None) -> LogsExportConfig:
    """On with ``otlp_logs=True``, or (``otlp_logs`` unset) when ``OTEL_LOGS_EXPORTER`` names ``otlp``
    or ``console``; ``otlp_logs=False`` turns both off."""
    env = os.environ if environ is None else environ
    redact_pii = bool(getattr(settings, "redact_pii", True))
    if settings.otlp_logs is False:
        return LogsExportConfig(None, redact_pii=redact_pii)
    named = named_exporters("OTEL_LOGS_EXPORTER", env)
    on = settings.otlp_logs is True or "otlp" in named
    return LogsExportConfig(
        otlp_target(settings, "logs", env) if on else None, console="console" in named, redact_pii=redact_pii
    )


def build_log_exporter(target: OtlpTarget) -> LogRecordExporter:
    """The OTLP log exporter for ``target``."""
    headers = dict(target.headers) if target.headers else None
    if target.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter

        insecure = (target.endpoint or "").startswith("http://") or None
        return GrpcExporter(endpoint=target.endpoint, headers=headers, timeout=target.timeout, insecure=insecure)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpExporter

    return HttpExporter(endpoint=target.endpoint, headers=headers, timeout=target.timeout)


_SEVERITY = (
    (logging.CRITICAL, SeverityNumber.FATAL, "FATAL"),
    (logging.ERROR, SeverityNumber.ERROR, "ERROR"),
    (logging.WARNING, SeverityNumber.WARN, "WARN"),
    (logging.INFO, SeverityNumber.INFO, "INFO"),
    (logging.DEBUG, SeverityNumber.DEBUG, "DEBUG"),
)


def severity(levelno: int) -> tuple[SeverityNumber, str]:
    """OpenTelemetry's severity number and text for a ``logging`` level."""
    for level, number, text in _SEVERITY:
        if levelno >= level:
            return number, text
    return SeverityNumber.TRACE, "TRACE"


_EXTRAS = tuple(dict.fromkeys(extra for extra, _key in RUN_ATTRIBUTES))
"""The distinct record extras ``RUN_ATTRIBUTES`` reads, in order (what the flow's thread captures)."""
_PLAN = tuple((_EXTRAS.index(extra), key, key.endswith(".id")) for extra, key in RUN_ATTRIBUTES)
"""``RUN_ATTRIBUTES`` as (index in the captured extras, attribute, an id: never redacted)."""


def _exception(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """The exception's type name and stack trace (``exc_text``: what the redaction filter left)."""
    if record.exc_info and record.exc_info[0] is not None:
        return record.exc_info[0].__name__, record.exc_text or logging.Formatter().formatException(record.exc_info)
    return None, None


def _context_of(flow_run_id: Any) -> dict[str, str] | None:
    """The current run context's identity when it is ``flow_run_id``'s (read on the thread that logged)."""
    if flow_run_id and flow_run_id != "<unknown>":
        return context_attributes(str(flow_run_id))
    return None


def _assemble(
    logger_name: str,
    extras: Sequence[Any],
    context: Mapping[str, str] | None,
    exc_type: str | None,
    exc_stack: str | None,
    redacting: bool,
) -> dict[str, Any]:
    """The attributes of ``record_attributes`` from what was captured of the record (pure)."""
    attributes: dict[str, Any] = {"logger.name": logger_name}
    for index, key, is_id in _PLAN:
        value = extras[index]
        if value and value != "<unknown>":
            attributes[key] = redact(str(value)) if redacting and not is_id else str(value)
    if context and PREFECT_FLOW_RUN_ID in attributes:  # the deployment and work pool of this process's run
        for key, value in context.items():
            if key not in attributes:
                attributes[key] = redact(value) if redacting and not key.endswith(".id") else value
    if exc_type is not None and exc_stack is not None:
        attributes["exception.type"] = exc_type
        attributes["exception.stacktrace"] = redact(exc_stack) if redacting else exc_stack
    return attributes


def record_attributes(record: logging.LogRecord, *, redact_pii: bool = False) -> dict[str, Any]:
    """A log record's attributes: the run's ids and names (Prefect's ``prefect.flow-run.id``,
    ``prefect.flow.name`` and, from the current run context, ``prefect.deployment.id`` and
    ``prefect.work-pool.name``), the logger, the exception.

    With ``redact_pii`` the names and the stack trace are redacted (unless ``RedactionFilter``
    already redacted the record); ids never are.
    """
    redacting = redact_pii and not getattr(record, REDACTED_MARK, False)
    extras = tuple(getattr(record, extra, None) for extra in _EXTRAS)
    return _assemble(record.name, extras, _context_of(extras[0]), *_exception(record), redacting)


class CapturedLog(NamedTuple):
    """A run-log record as the flow's thread keeps it on the wire path: the values read from the
    record and the run context, nothing redacted or built yet. ``wire()`` (on the export thread,
    before anything is encoded) redacts and builds exactly what ``record_attributes`` gives."""

    time_ns: int
    observed_ns: int
    levelno: int
    body: str
    trace_id: int  # 0: no span
    span_id: int
    flags: int
    logger_name: str
    extras: tuple[Any, ...]  # the values of ``_EXTRAS``
    context: dict[str, str] | None
    exc_type: str | None
    exc_stack: str | None
    redacting: bool  # the record was not redacted by ``RedactionFilter`` and redaction is on

    def wire(self) -> WireLog:
        """The redacted ``WireLog`` the encoder takes."""
        number, text = severity(self.levelno)
        return WireLog(
            self.time_ns,
            self.observed_ns,
            number.value,
            text,
            redact(self.body) if self.redacting else self.body,
            self.trace_id,
            self.span_id,
            self.flags,
            _assemble(self.logger_name, self.extras, self.context, self.exc_type, self.exc_stack, self.redacting),
        )


# -- the handler --------------------------------------------------------------------------


class RunLogHandler(logging.Handler):
    """Emits the run logs of observed runs as OpenTelemetry log records.

    Args:
        provider: The logger provider the records go to, or the ``WireLogPipeline``
            synthobs built (then the flow's thread only captures the record).
        in_scope: Whether a flow run id is observed (or a subflow of one).
    """

    def __init__(self, provider: Any, in_scope: Callable[[str], bool], *, redact_pii: bool = True) -> None:
        super().__init__()
        self.provider, self.in_scope, self.redact_pii = provider, in_scope, redact_pii
        self._wire = provider if isinstance(provider, WireLogPipeline) else None
        self._logger = None if self._wire is not None else provider.get_logger(names.METER_NAME, __version__)
        self.enabled = True

    def handle(self, record: logging.LogRecord) -> Any:
        """``logging.Handler.handle`` without the handler's lock: ``emit`` is thread-safe by itself (the
        pipeline and the SDK logger lock what they share), and a run logs on many threads at once."""
        rv: Any = self.filter(record) if self.filters else True
        if isinstance(rv, logging.LogRecord):  # Python 3.12+: a filter may hand back another record
            record = rv
        if rv:
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        if not self.enabled:
            return
        try:
            run_id = getattr(record, "flow_run_id", None)
            if not run_id or not self.in_scope(str(run_id)):
                return
            redacting = self.redact_pii and not getattr(record, REDACTED_MARK, False)
            if self._wire is not None:
                # the flow's thread only reads: redaction, attributes and encoding happen on the export thread
                span = get_current_span().get_span_context()
                valid = span.is_valid
                extras = (
                    run_id,
                    getattr(record, "flow_run_name", None),
                    getattr(record, "flow_name", None),
                    getattr(record, "task_run_id", None),
                    getattr(record, "task_run_name", None),
                    getattr(record, "task_name", None),
                )
                exc_type, exc_stack = _exception(record) if record.exc_info else (None, None)
                self._wire.emit(
                    CapturedLog(
                        int(record.created * 1e9),
                        time.time_ns(),
                        record.levelno,
                        record.getMessage(),
                        span.trace_id if valid else 0,
                        span.span_id if valid else 0,
                        int(span.trace_flags) if valid else 0,
                        record.name,
                        extras,
                        _context_of(run_id),
                        exc_type,
                        exc_stack,
                        redacting,
                    )
                )
                return
            number, text = severity(record.levelno)
            body = record.getMessage()
            if redacting:
                body = redact(body)  # a record the redaction filter did not see (a child logger's)
            attributes = record_attributes(record, redact_pii=self.redact_pii)
            assert self._logger is not None
            self._logger.emit(
                timestamp=int(record.created * 1e9),
                observed_timestamp=time.time_ns(),
                context=get_current(),
                severity_number=number,
                severity_text=text,
                body=body,
                attributes=attributes,
            )
        except Exception as exc:  # a log line is never worth a failed run
            logger.debug("synthobs: run log not exported: %s", exc)


class ReportingLogExporter(LogRecordExporter):
    """Wraps a log exporter: a failure is one warning (until it recovers), never an error."""

    def __init__(self, inner: LogRecordExporter, health: ExportHealth) -> None:
        self.inner, self.health = inner, health

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        try:
            result = self.inner.export(batch)
        except Exception as exc:
            self.health.failed(f"{type(exc).__name__}: {exc}")
            return LogRecordExportResult.FAILURE
        if getattr(result, "name", "") == "FAILURE":
            self.health.failed("the endpoint refused or did not answer")
            return LogRecordExportResult.FAILURE
        self.health.ok()
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        self.inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


# -- set-up ----------------------------------------------------------------------------------


class LogsExportSetup:
    """The run-log handler and its provider, configured and removed as one (owned by the instrumentation).

    Args:
        logger_provider: The provider to emit to (tests); default: the global
            one when it is an SDK provider, else one synthobs builds.
        resource: The resource of a provider synthobs builds.
        loggers: The run loggers the handler goes on.
    """

    def __init__(
        self,
        logger_provider: Any = None,
        resource: Callable[[], Resource] = Resource.create,
        loggers: tuple[str, ...] = RUN_LOGGERS,
    ) -> None:
        self._injected, self._resource, self._loggers = logger_provider, resource, loggers
        self._lock = threading.Lock()
        self._active: LogsExportConfig | None = None
        self._own: LoggerProvider | WireLogPipeline | None = None
        self._handler: RunLogHandler | None = None
        self._health: ExportHealth | None = None
        self._quiet: list[tuple[logging.Logger, logging.Filter]] = []

    @property
    def handler(self) -> RunLogHandler | None:
        return self._handler

    def configure(self, config: LogsExportConfig, in_scope: Callable[[str], bool]) -> None:
        """Export the run logs as ``config`` says (the same config twice changes nothing)."""
        old_own: LoggerProvider | WireLogPipeline | None = None
        with self._lock:
            if config == self._active and self._handler is not None:
                self._handler.in_scope = in_scope
                return
            self._active = config
            self._remove_handler()
            old_own, self._own = self._own, None
            if config.enabled:
                provider = self._injected or _global_sdk_provider()
                if provider is None:
                    provider = self._own = self._build_provider(config)
                self._handler = RunLogHandler(provider, in_scope, redact_pii=config.redact_pii)
                for name in self._loggers:
                    logging.getLogger(name).addHandler(self._handler)
        if old_own is not None:
            threading.Thread(target=old_own.shutdown, name="synthobs-logs-shutdown", daemon=True).start()

    def _build_provider(self, config: LogsExportConfig) -> LoggerProvider | WireLogPipeline:
        resource = self._resource()
        self._health = None
        exporter: LogRecordExporter | None = None
        if config.otlp is not None:
            self._quiet = self._quiet or quiet_exporter_logs(_EXPORTER_LOGGERS)
            self._health = ExportHealth(logger, "run logs", config.otlp)
            inner = build_log_exporter(config.otlp)
            wire = None if config.console else wire_pipeline(inner, self._health, resource)
            if wire is not None:
                return wire
            exporter = ReportingLogExporter(inner, self._health)
        provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        if config.otlp is not None and exporter is not None:
            provider.add_log_record_processor(
                BatchLogRecordProcessor(
                    exporter, schedule_delay_millis=1000, export_timeout_millis=int(config.otlp.timeout * 1000)
                )
            )
        if config.console:
            provider.add_log_record_processor(SimpleLogRecordProcessor(ConsoleLogRecordExporter()))
        return provider

    def _remove_handler(self) -> None:
        if self._handler is not None:
            self._handler.enabled = False
            for name in self._loggers:
                logging.getLogger(name).removeHandler(self._handler)
            self._handler = None

    def flush(self, timeout: float) -> bool:
        """Export the buffered records now, waiting at most ``timeout`` seconds (an observed flow's end)."""
        handler = self._handler
        if handler is None:
            return True
        health = self._health if handler.provider is self._own else None
        return flush_bounded(handler.provider, timeout, health, what="logs")

    def detach(self) -> None:
        """Remove the handler; shut a provider synthobs built down."""
        with self._lock:
            self._remove_handler()
            own, self._own, self._active = self._own, None, None
            restore_exporter_logs(self._quiet)
            self._quiet = []
        if own is not None:
            own.shutdown()


def wire_pipeline(exporter: LogRecordExporter, health: ExportHealth, resource: Resource) -> WireLogPipeline | None:
    """The light path for an OTLP/HTTP exporter synthobs built (``None``: the SDK path is needed).

    The SDK's record limits only bite when ``OTEL_ATTRIBUTE_*`` / ``OTEL_LOGRECORD_*`` limits are set:
    then records go through the SDK, which applies them.
    """
    limits = LogRecordLimits()
    lengths = (getattr(limits, name, None) for name in ("max_attribute_length", "max_log_record_attribute_length"))
    counts = (getattr(limits, name, None) for name in ("max_attributes", "max_log_record_attributes"))
    if any(n is not None for n in lengths) or any(n is not None and n < 32 for n in counts):
        return None
    send = http_send(exporter, health)
    if send is None:
        return None
    return WireLogPipeline(
        send,
        sdk_encoder(resource, names.METER_NAME, __version__),
        close=exporter.shutdown,
    )


def _global_sdk_provider() -> LoggerProvider | None:
    provider = otel_logs.get_logger_provider()
    return provider if isinstance(provider, LoggerProvider) else None
