"""OpenTelemetry set-up and helpers.

Prefect already opens a span for every flow and task run; synthobs never opens
a second one. It makes those spans reach a backend (OTLP, configured by
settings or the standard ``OTEL_*`` variables), enriches the flow span, and
offers ``span()`` for domain work.

Set-up rules (after OpenTelemetry's own instrumentations):

- If an SDK tracer provider is installed (the user's, or
  ``opentelemetry-instrument``'s), synthobs adds its processors to it and never
  replaces it. Otherwise it installs one, once per process.
- All export goes through one ``SwitchableSpanProcessor``: reconfiguring swaps
  what is behind it, so disabling export removes exactly what enabling added.
- A provider synthobs installs samples with ``trace_sample_ratio`` but *records*
  what it does not sample, so the health store still sees every run.
- When an observed flow run's span ends, the exporter is flushed with a bounded
  timeout, so a short-lived flow process loses no span. A failing endpoint
  costs one warning and at most ``otlp_timeout_seconds``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.util.types import Attributes

from prefect_synthobs import catalog as names
from prefect_synthobs._version import __version__
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.telemetry.redaction import redact

logger = logging.getLogger("prefect_synthobs.telemetry.tracing")

_TRACER_NAME = "prefect_synthobs"
_ATTRIBUTE_TYPES = (str, bool, int, float)


# -- configuration (pure) --------------------------------------------------------


@dataclass(frozen=True)
class ExportConfig:
    """Where and how spans are exported."""

    endpoint: str | None
    protocol: str
    headers: tuple[tuple[str, str], ...] | None = field(repr=False)  # may carry tokens
    timeout: float
    console: bool

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint) or self.console


def export_config(settings: Any, environ: Mapping[str, str] | None = None) -> ExportConfig:
    """Resolve the export configuration from settings, then ``OTEL_*`` variables."""
    env = os.environ if environ is None else environ
    endpoint = (
        settings.otlp_endpoint
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    protocol = (
        settings.otlp_protocol
        or env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol not in ("grpc", "http/protobuf"):
        raise ValueError(f"OTLP protocol must be 'grpc' or 'http/protobuf', got {protocol!r}")
    revealed = settings.resolved_otlp_headers() if hasattr(settings, "resolved_otlp_headers") else \
        settings.otlp_headers
    headers = tuple(sorted(revealed.items())) if revealed else None
    return ExportConfig(endpoint, protocol, headers, settings.otlp_timeout_seconds, settings.trace_console)


def _http_traces_url(endpoint: str, env: Mapping[str, str]) -> str:
    # OTEL_EXPORTER_OTLP_ENDPOINT is a base URL; the signal path is appended.
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == endpoint or endpoint.rstrip("/").endswith("/v1/traces"):
        return endpoint
    return endpoint.rstrip("/") + "/v1/traces"


def build_exporter(config: ExportConfig, environ: Mapping[str, str] | None = None) -> SpanExporter:
    """The OTLP span exporter for ``config`` (its endpoint must be set)."""
    env = os.environ if environ is None else environ
    headers = dict(config.headers) if config.headers else None
    assert config.endpoint
    if config.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        insecure = config.endpoint.startswith("http://") or None
        return GrpcExporter(endpoint=config.endpoint, headers=headers, timeout=config.timeout, insecure=insecure)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=_http_traces_url(config.endpoint, env), headers=headers, timeout=config.timeout)


# -- processors and sampler --------------------------------------------------------


class ReportingExporter(SpanExporter):
    """Wraps an exporter: a failure is one warning (until it recovers), never an error."""

    def __init__(self, inner: SpanExporter, endpoint: str) -> None:
        self.inner, self.endpoint = inner, endpoint
        self._warning = WarnOnce(logger)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            result, reason = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        else:
            reason = "the endpoint refused or did not answer"
        if result is SpanExportResult.FAILURE:
            self._warning.fail(
                "synthobs: cannot export spans to %s (%s); spans are dropped until it answers. "
                "Flows are unaffected.", self.endpoint, reason,
            )
        else:
            self._warning.ok()
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _QuietExporterLogs(logging.Filter):
    """The OTLP exporters log every failed attempt; ``ReportingExporter`` says it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.CRITICAL


class SwitchableSpanProcessor(SpanProcessor):
    """The one processor synthobs adds for export; what it forwards to can change.

    When the span of an observed flow run ends, it flushes with a bounded
    timeout so that nothing is lost when the flow process exits right after.
    """

    def __init__(self) -> None:
        self._delegate: SpanProcessor | None = None
        self._timeout = 5.0
        self._lock = threading.Lock()

    def set_delegate(self, delegate: SpanProcessor | None, timeout: float) -> SpanProcessor | None:
        with self._lock:
            old, self._delegate, self._timeout = self._delegate, delegate, timeout
        return old

    @property
    def delegate(self) -> SpanProcessor | None:
        return self._delegate

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        delegate = self._delegate
        if delegate is not None:
            delegate.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        delegate = self._delegate
        if delegate is None:
            return
        delegate.on_end(span)
        attrs = span.attributes or {}
        observed_flow = attrs.get(names.PREFECT_RUN_TYPE) == "flow" and attrs.get(names.ATTR_KIND) is not None
        # an observed flow run just ended: deliver its trace now, bounded
        if observed_flow and not delegate.force_flush(int(self._timeout * 1000)):
            logger.debug("synthobs: span flush timed out after %.1fs", self._timeout)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        delegate = self._delegate
        return True if delegate is None else delegate.force_flush(timeout_millis)

    def shutdown(self) -> None:
        delegate = self.set_delegate(None, self._timeout)
        if delegate is not None:
            delegate.shutdown()


class StableSpanNames(SpanProcessor):
    """Renames Prefect's run spans ``flow/<flow name>`` and ``task/<task name>``.

    Prefect names a run span after the run (``radical-mosquito``, ``t1-8f1``):
    unique per run, so backends cannot group by it. With ``span_names="stable"``
    this processor renames the span when it starts; the run name stays in
    ``prefect.run.name``. Task names come from the task run context (already
    set when the span starts); a flow's name is looked up once per flow id
    through the Prefect API and cached. Any failure keeps Prefect's name.
    """

    def __init__(self) -> None:
        self.enabled = False
        self._flow_names: dict[str, str] = {}

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        if not self.enabled:
            return
        attrs = span.attributes or {}
        run_type = attrs.get(names.PREFECT_RUN_TYPE)
        if run_type is None:
            return
        try:
            name = self._task_name(attrs) if run_type == "task" else self._flow_name(attrs)
            if name:
                span.update_name(f"{run_type}/{name}")
        except Exception as exc:  # a name is never worth a failed run
            logger.debug("synthobs: stable span name not set: %s", exc)

    @staticmethod
    def _task_name(attrs: Any) -> str | None:
        from prefect.context import TaskRunContext

        ctx = TaskRunContext.get()
        if ctx is not None and str(ctx.task_run.id) == attrs.get(names.PREFECT_RUN_ID):
            return str(ctx.task.name)
        return None

    def _flow_name(self, attrs: Any) -> str | None:
        flow_id = attrs.get("prefect.flow.id")
        if not flow_id:
            return None
        name = self._flow_names.get(flow_id)
        if name is None:
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                name = client.read_flow(flow_id).name
            self._flow_names[flow_id] = name
        return name

    def remember_flow(self, flow_id: Any, name: str) -> None:
        """Record a flow's name (saves the lookup when it is already known)."""
        self._flow_names[str(flow_id)] = name


class RecordingRatioSampler(Sampler):
    """Parent-based ratio sampling that records what it does not sample.

    Unsampled spans are ``RECORD_ONLY``: processors (the run listener) see them,
    exporters do not. The ratio can change after the provider exists.
    """

    def __init__(self, ratio: float = 1.0) -> None:
        self.set_ratio(ratio)

    def set_ratio(self, ratio: float) -> None:
        self.ratio = ratio
        self._inner = ParentBased(TraceIdRatioBased(ratio))

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        result = self._inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        if result.decision is Decision.DROP:
            return SamplingResult(Decision.RECORD_ONLY, result.attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"RecordingRatioSampler{{{self.ratio}}}"


# -- the process's set-up ---------------------------------------------------------

_lock = threading.Lock()
_switch = SwitchableSpanProcessor()
_stable_names = StableSpanNames()
_sampler = RecordingRatioSampler()
_attached: list[Any] = []
_active: ExportConfig | None = None


def build_tracer_provider() -> TracerProvider:
    """An SDK tracer provider with synthobs' resource and recording sampler."""
    from prefect_synthobs.config.settings import get_settings

    settings = get_settings()
    attributes: dict[str, Any] = {
        "service.version": __version__,
        "host.name": socket.gethostname(),
    }
    explicit = "service_name" in settings.model_fields_set
    if explicit or not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = settings.service_name
    if settings.environment:
        attributes["deployment.environment"] = settings.environment
    _sampler.set_ratio(settings.trace_sample_ratio)
    # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
    return TracerProvider(resource=Resource.create(attributes), sampler=_sampler)


_named: list[Any] = []


def attach_stable_names(provider: Any) -> None:
    """Add the ``StableSpanNames`` processor to ``provider`` once, enabled per settings."""
    from prefect_synthobs.config.settings import get_settings

    try:
        _stable_names.enabled = get_settings().span_names == "stable"
    except ValueError:
        _stable_names.enabled = False
    if hasattr(provider, "add_span_processor") and not any(p is provider for p in _named):
        provider.add_span_processor(_stable_names)
        _named.append(provider)


def stable_names() -> StableSpanNames:
    """The process's ``StableSpanNames`` processor."""
    return _stable_names


def configure_tracing(settings: Any) -> ExportConfig:
    """Point synthobs' export processor at what ``settings`` (and ``OTEL_*``) say.

    Idempotent: the same configuration twice changes nothing.
    """
    global _active
    config = export_config(settings)
    with _lock:
        provider = trace.get_tracer_provider()
        if hasattr(provider, "add_span_processor") and not any(p is provider for p in _attached):
            attach_stable_names(provider)
            provider.add_span_processor(_switch)
            _attached.append(provider)
        _sampler.set_ratio(settings.trace_sample_ratio)
        _stable_names.enabled = getattr(settings, "span_names", "prefect") == "stable"
        if config == _active:
            return config
        _active = config
        delegate: SpanProcessor | None = None
        if config.enabled:
            processors: list[SpanProcessor] = []
            if config.endpoint:
                for name in ("opentelemetry.exporter.otlp.proto.grpc.exporter",
                             "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                             "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"):
                    log = logging.getLogger(name)
                    if not any(isinstance(f, _QuietExporterLogs) for f in log.filters):
                        log.addFilter(_QuietExporterLogs())
                exporter = ReportingExporter(build_exporter(config), config.endpoint)
                processors.append(BatchSpanProcessor(
                    exporter, schedule_delay_millis=1000, export_timeout_millis=int(config.timeout * 1000)
                ))
            if config.console:
                processors.append(SimpleSpanProcessor(ConsoleSpanExporter()))
            delegate = processors[0] if len(processors) == 1 else _Fanout(processors)
        old = _switch.set_delegate(delegate, config.timeout)
    if old is not None:
        threading.Thread(target=old.shutdown, name="synthobs-span-shutdown", daemon=True).start()
    return config


class _Fanout(SpanProcessor):
    def __init__(self, processors: list[SpanProcessor]) -> None:
        self.processors = processors

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        for p in self.processors:
            p.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for p in self.processors:
            p.on_end(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self.processors)

    def shutdown(self) -> None:
        for p in self.processors:
            p.shutdown()


# -- spans ------------------------------------------------------------------------


def attribute_value(value: Any) -> Any:
    """An OpenTelemetry attribute value: primitives and their sequences as they
    are, anything else as its ``str``."""
    if isinstance(value, _ATTRIBUTE_TYPES):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, _ATTRIBUTE_TYPES) for v in value):
        return list(value)
    return str(value)


def current_run_span(run_id: Any) -> Span | None:
    """The current span if it is Prefect's recording span of run ``run_id``."""
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    attrs = getattr(span, "attributes", None) or {}
    return span if attrs.get(names.PREFECT_RUN_ID) == str(run_id) else None


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span]:
    """A span for domain work, child of the current Prefect run span.

    Args:
        name: A low-cardinality name such as ``generation.batch``; put ids in
            attributes, not in the name.
        **attributes: Span attributes (non-primitive values are stored as text).

    Yields:
        The span (a non-recording one when tracing is off: then it costs nothing).

    Example:
        ```python
        with so.span("generation.batch", batch_size=10_000) as s:
            df = model.sample(10_000)
            s.set_attribute("rows", len(df))
        ```
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"span name must be a non-empty string, got {name!r}")
    tracer = trace.get_tracer(_TRACER_NAME, __version__)
    with tracer.start_as_current_span(name) as current:
        if current.is_recording() and attributes:
            values = {k: attribute_value(v) for k, v in attributes.items()}
            if _redacting():
                values = {k: redact(v) if isinstance(v, str) else v for k, v in values.items()}
            current.set_attributes(values)
        yield current


def _redacting() -> bool:
    from prefect_synthobs.config.settings import get_settings

    try:
        return get_settings().redact_pii
    except ValueError:  # invalid settings must not break the caller's span: keep redacting
        return True
