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
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
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
from opentelemetry.trace import Link, Span, SpanKind, Status
from opentelemetry.util.types import Attributes
from prefect.client.orchestration import get_client
from prefect.context import TaskRunContext

from prefect_synthobs import catalog as names
from prefect_synthobs._log import get_logger
from prefect_synthobs._version import __version__
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.telemetry.otlp import (
    OtlpSettings,
    quiet_exporter_logs,
    restore_exporter_logs,
    signal_url,
    synthobs_resource,
)
from prefect_synthobs.telemetry.prefect_names import RunIdentitySpans
from prefect_synthobs.telemetry.redaction import redact, strip_url_credentials

logger = get_logger("telemetry.tracing")

_TRACER_NAME = names.TRACER_NAME
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
    redact_pii: bool = True
    redact_ip_addresses: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint) or self.console


class TraceExportSettings(OtlpSettings, Protocol):
    """What ``export_config`` reads (``SynthObsSettings`` is one)."""

    @property
    def trace_console(self) -> bool: ...
    @property
    def redact_pii(self) -> bool: ...
    @property
    def redact_ip_addresses(self) -> bool: ...


def export_config(settings: TraceExportSettings, environ: Mapping[str, str] | None = None) -> ExportConfig:
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
    revealed = settings.resolved_otlp_headers()
    headers = tuple(sorted(revealed.items())) if revealed else None
    return ExportConfig(
        endpoint,
        protocol,
        headers,
        settings.otlp_timeout_seconds,
        settings.trace_console,
        settings.redact_pii,
        settings.redact_ip_addresses,
    )


def _http_traces_url(endpoint: str, env: Mapping[str, str]) -> str:
    # OTEL_EXPORTER_OTLP_ENDPOINT is a base URL; the signal path is appended.
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == endpoint:
        return endpoint
    return signal_url(endpoint, "traces")


def build_exporter(config: ExportConfig, environ: Mapping[str, str] | None = None) -> SpanExporter:
    """The OTLP span exporter for ``config`` (its endpoint must be set)."""
    env = os.environ if environ is None else environ
    headers = dict(config.headers) if config.headers else None
    assert config.endpoint
    if config.protocol == "grpc":  # grpc is heavy: imported only when that protocol is asked for
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        insecure = config.endpoint.startswith("http://") or None
        return GrpcExporter(endpoint=config.endpoint, headers=headers, timeout=config.timeout, insecure=insecure)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=_http_traces_url(config.endpoint, env), headers=headers, timeout=config.timeout)


# -- processors and sampler --------------------------------------------------------


_BOUNDED_FLUSH = threading.local()
"""``active`` on a thread while it makes a flow's bounded span flush (``ExportProcessor._deliver``)."""


class ReportingExporter(SpanExporter):
    """Wraps an exporter: a failure is one warning (until it recovers), never an error.

    ``answering`` is False from a failed export (or a flush that timed out) until
    an export succeeds: flows then stop waiting for their spans to be flushed.
    """

    def __init__(self, inner: SpanExporter, endpoint: str) -> None:
        self.inner, self.endpoint = inner, endpoint
        self._shown = strip_url_credentials(endpoint)
        self._warning = WarnOnce(logger)
        self.answering = True

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.answering and getattr(_BOUNDED_FLUSH, "active", False):
            # a flow's bounded flush whose first export failed: the SDK goes on exporting what ended meanwhile
            # (on other threads), but the flow waits for one timeout at most (these spans are dropped, as a
            # failed export's are)
            return SpanExportResult.FAILURE
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            result, reason = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        else:
            reason = "the endpoint refused or did not answer"
        self.answering = result is not SpanExportResult.FAILURE
        if result is SpanExportResult.FAILURE:
            self._warning.fail(
                "synthobs: cannot export spans to %s (%s); spans are dropped until it answers. Flows are unaffected.",
                self._shown,
                strip_url_credentials(reason),
            )
        else:
            self._warning.ok()
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


_ID_SUFFIXES = (".id", "_id", ".ids", "_ids")
_USER_ID_SUFFIXES = ("model_id", "model_ids")
"""Keys that end like a machine id but hold text a person chose (``synthobs.model_id``: a model id
passed as a string can hold a connection string): redacted like any other value."""


def _is_machine_id(key: str) -> bool:
    return key.endswith(_ID_SUFFIXES) and not key.endswith(_USER_ID_SUFFIXES)


def _redacted_value(value: Any, ip_addresses: bool) -> Any:
    if isinstance(value, str):
        return redact(value, ip_addresses=ip_addresses)
    if isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value):
        return tuple(redact(v, ip_addresses=ip_addresses) if isinstance(v, str) else v for v in value)
    return value


def _redacted_attributes(attributes: Attributes, ip_addresses: bool) -> dict[str, Any]:
    return {k: v if _is_machine_id(k) else _redacted_value(v, ip_addresses) for k, v in (attributes or {}).items()}


def redact_span(span: ReadableSpan, *, ip_addresses: bool = False) -> ReadableSpan:
    """A copy of ``span`` with credentials and PII redacted from its name (Prefect names a run
    span after the run, and a run name can be templated from parameters), its attributes
    (``prefect.run.name`` included), its events' names and attributes (``exception.message``,
    ``exception.stacktrace``, Prefect's state messages), its links' attributes and its status
    description. Id attributes are kept as they are."""
    status = span.status
    if status.description:
        status = Status(status.status_code, redact(status.description, ip_addresses=ip_addresses))
    return ReadableSpan(
        name=redact(span.name, ip_addresses=ip_addresses),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_redacted_attributes(span.attributes, ip_addresses),
        events=[
            Event(
                redact(e.name, ip_addresses=ip_addresses), _redacted_attributes(e.attributes, ip_addresses), e.timestamp
            )
            for e in span.events
        ],
        links=[Link(link.context, _redacted_attributes(link.attributes, ip_addresses)) for link in span.links],
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingExporter(SpanExporter):
    """Redacts every span (``redact_span``) before the wrapped exporter sees it,
    whoever made the span: Prefect's run spans carry exception messages, stack
    traces and state messages."""

    def __init__(self, inner: SpanExporter, *, ip_addresses: bool = False) -> None:
        self.inner, self.ip_addresses = inner, ip_addresses

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([redact_span(s, ip_addresses=self.ip_addresses) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class SwitchableSpanProcessor(SpanProcessor):
    """The one processor synthobs adds for export; what it forwards to can change.

    When the span of an observed flow run ends, it flushes with a bounded
    timeout so that nothing is lost when the flow process exits right after
    (``deliver`` does the same for a task ending in a worker process).
    Once the endpoint failed (``ReportingExporter.answering`` is False), flows
    no longer wait: the spans are still exported in the background, and an
    unreachable collector costs a process one timeout, not one per run.
    """

    def __init__(self) -> None:
        self._delegate: SpanProcessor | None = None
        self._exporter: ReportingExporter | None = None
        self._timeout = 5.0
        self._lock = threading.Lock()

    def set_delegate(
        self, delegate: SpanProcessor | None, timeout: float, exporter: ReportingExporter | None = None
    ) -> SpanProcessor | None:
        with self._lock:
            old, self._delegate, self._timeout, self._exporter = self._delegate, delegate, timeout, exporter
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
        if observed_flow:  # an observed flow run just ended: deliver its trace now, bounded
            self._deliver(delegate)

    def deliver(self) -> None:
        """Export the spans that ended so far now, waiting at most the timeout.

        Returns at once when export is off or the endpoint failed before (the
        spans still go out in the background): an unreachable collector costs
        a process one timeout, not one per call.
        """
        delegate = self._delegate
        if delegate is not None:
            self._deliver(delegate)

    def _deliver(self, delegate: SpanProcessor) -> None:
        exporter = self._exporter
        if exporter is not None and not exporter.answering:
            return  # the endpoint failed: export goes on in the background, nobody waits
        _BOUNDED_FLUSH.active = True
        try:
            flushed = delegate.force_flush(int(self._timeout * 1000))
        finally:
            _BOUNDED_FLUSH.active = False
        if not flushed:
            logger.debug("synthobs: span flush timed out after %.1fs", self._timeout)
            if exporter is not None:
                exporter.answering = False

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
        ctx = TaskRunContext.get()
        if ctx is not None and str(ctx.task_run.id) == attrs.get(names.PREFECT_RUN_ID):
            return str(ctx.task.name)
        return None

    def _flow_name(self, attrs: Any) -> str | None:
        flow_id = attrs.get(names.PREFECT_FLOW_ID)
        if not flow_id:
            return None
        name = self._flow_names.get(flow_id)
        if name is None:
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


# -- set-up -------------------------------------------------------------------------

_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)


class TracingSetup:
    """What synthobs adds to a tracer provider: stable span names, Prefect's run identity
    (``prefect.flow-run.id``, ``RunIdentitySpans``) and one export switch.

    Owned by the instrumentation (one per process in production, one per test
    where a test wants its own). Processors cannot be removed from an SDK
    provider, so ``detach`` switches them off: they then pass spans through
    untouched.
    """

    def __init__(self) -> None:
        self.switch = SwitchableSpanProcessor()
        self.stable_names = StableSpanNames()
        self.run_identity = RunIdentitySpans()
        self.sampler = RecordingRatioSampler()
        self._lock = threading.Lock()
        self._attached: list[Any] = []
        self._active: ExportConfig | None = None
        self._quiet: list[tuple[logging.Logger, logging.Filter]] = []

    def build_provider(
        self, *, service_name: str | None, environment: str | None, sample_ratio: float
    ) -> TracerProvider:
        """An SDK tracer provider with synthobs' resource and recording sampler.

        ``service_name`` ``None`` leaves ``service.name`` to ``OTEL_SERVICE_NAME``.
        """
        self.sampler.set_ratio(sample_ratio)
        return TracerProvider(resource=synthobs_resource(service_name, environment), sampler=self.sampler)

    def attach(self, provider: Any) -> bool:
        """Add the stable-names and export processors to ``provider`` once.

        Returns:
            Whether ``provider`` takes span processors (an SDK provider).
        """
        with self._lock:
            if any(p is provider for p in self._attached):
                self.run_identity.enabled = True  # again after a ``detach``
                return True
            if not hasattr(provider, "add_span_processor"):
                return False
            provider.add_span_processor(self.stable_names)  # before the first flow span starts
            provider.add_span_processor(self.run_identity)
            provider.add_span_processor(self.switch)
            self.run_identity.enabled = True
            self._attached.append(provider)
            return True

    def attached_to(self, provider: Any) -> bool:
        with self._lock:
            return any(p is provider for p in self._attached)

    def configure(self, config: ExportConfig, *, sample_ratio: float, stable_names: bool) -> ExportConfig:
        """Point the export switch at what ``config`` says (the same config twice changes nothing)."""
        with self._lock:
            self.sampler.set_ratio(sample_ratio)
            self.stable_names.enabled = stable_names
            if config == self._active:
                return config
            self._active = config
            delegate: SpanProcessor | None = None
            exporter: ReportingExporter | None = None
            if config.enabled:
                processors: list[SpanProcessor] = []
                if config.endpoint:
                    self._quiet_exporter_logs()
                    exporter = ReportingExporter(self._redacting(build_exporter(config), config), config.endpoint)
                    processors.append(
                        BatchSpanProcessor(
                            exporter, schedule_delay_millis=1000, export_timeout_millis=int(config.timeout * 1000)
                        )
                    )
                if config.console:
                    processors.append(SimpleSpanProcessor(self._redacting(ConsoleSpanExporter(), config)))
                delegate = processors[0] if len(processors) == 1 else _Fanout(processors)
            old = self.switch.set_delegate(delegate, config.timeout, exporter)
        if old is not None:
            threading.Thread(target=old.shutdown, name="synthobs-span-shutdown", daemon=True).start()
        return config

    @staticmethod
    def _redacting(exporter: SpanExporter, config: ExportConfig) -> SpanExporter:
        if not config.redact_pii:
            return exporter
        return RedactingExporter(exporter, ip_addresses=config.redact_ip_addresses)

    def detach(self) -> None:
        """Stop exporting and renaming; undo the exporter log filters."""
        with self._lock:
            self._active = None
            self.stable_names.enabled = False
            self.run_identity.enabled = False
            restore_exporter_logs(self._quiet)
            self._quiet = []
        self.switch.shutdown()

    def _quiet_exporter_logs(self) -> None:
        self._quiet.extend(quiet_exporter_logs(_EXPORTER_LOGGERS))


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
def open_span(name: str, attributes: Mapping[str, Any], *, redact_pii: bool) -> Iterator[Span]:
    """A span for domain work, child of the current span (a Prefect run span in a run).

    Args:
        name: A low-cardinality name such as ``generation.batch``.
        attributes: Span attributes (non-primitive values are stored as text).
        redact_pii: Redact PII from string attribute values.

    Yields:
        The span (a non-recording one when tracing is off: then it costs nothing).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"span name must be a non-empty string, got {name!r}")
    tracer = trace.get_tracer(_TRACER_NAME, __version__)
    with tracer.start_as_current_span(name) as current:
        if current.is_recording() and attributes:
            values = {k: attribute_value(v) for k, v in attributes.items()}
            if redact_pii:
                values = {k: redact(v) if isinstance(v, str) else v for k, v in values.items()}
            current.set_attributes(values)
        yield current
