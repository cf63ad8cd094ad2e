"""Run logs on the light OTLP/HTTP path: the bytes say what the SDK's encoder says, and a real
receiver gets every record once, redacted, across batch boundaries, flushes and shutdown."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from otlp_receiver import Receiver, http_receiver

from prefect_synthobs import catalog
from prefect_synthobs._version import __version__
from prefect_synthobs.telemetry.log_batch import WireLogPipeline, http_send
from prefect_synthobs.telemetry.log_wire import WireLog, sdk_encoder, varint
from prefect_synthobs.telemetry.otel_logs import LogsExportConfig, LogsExportSetup, RunLogHandler, severity
from prefect_synthobs.telemetry.otlp import OtlpTarget

RESOURCE = Resource.create({"service.name": "wire-test", "deployment.environment": "ci"})
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
SECRETS = ("jane.doe@example.com", "4111 1111 1111 1111", "AKIAIOSFODNN7EXAMPLE")


def _sdk_has_exporter_client() -> bool:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return http_send(OTLPLogExporter(endpoint="http://127.0.0.1:9/v1/logs"), None) is not None


LIGHT_PATH = _sdk_has_exporter_client()
needs_light_path = pytest.mark.skipif(
    not LIGHT_PATH,
    reason="this OpenTelemetry SDK's OTLP/HTTP log exporter has no client to post bytes with (1.39, the floor): run "
    "logs take the SDK path there (test_older_sdks_take_the_sdk_path, tests/telemetry/test_otel_logs.py)",
)


def _parsed(data: bytes) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest.FromString(data)


def _sdk_bytes(logs: list[WireLog]) -> bytes:
    """What the SDK's logger and encoder make of the same records."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    sdk_logger = provider.get_logger(catalog.METER_NAME, __version__)
    for log in logs:
        context = Context()
        if log.trace_id:
            span = SpanContext(log.trace_id, log.span_id, is_remote=False, trace_flags=TraceFlags(log.flags))
            context = trace.set_span_in_context(NonRecordingSpan(span))
        number = next(
            n for n, _ in (severity(level) for level in (50, 40, 30, 20, 10)) if n.value == log.severity_number
        )
        sdk_logger.emit(
            timestamp=log.time_ns,
            observed_timestamp=log.observed_ns,
            context=context,
            severity_number=number,
            severity_text=log.severity_text,
            body=log.body,
            attributes=dict(log.attributes),
        )
    provider.shutdown()
    return encode_logs(exporter.get_finished_logs()).SerializeToString()


@st.composite
def wire_logs(draw: Any) -> WireLog:
    level = draw(st.sampled_from((50, 40, 30, 20, 10)))
    number, text = severity(level)
    traced = draw(st.booleans())
    return WireLog(
        time_ns=draw(st.integers(0, 2**63)),
        observed_ns=draw(st.integers(1, 2**63)),
        severity_number=number.value,
        severity_text=text,
        body=draw(TEXT),
        trace_id=draw(st.integers(1, 2**128 - 1)) if traced else 0,
        span_id=draw(st.integers(1, 2**64 - 1)) if traced else 0,
        flags=draw(st.sampled_from((0, 1))) if traced else 0,
        attributes=draw(st.dictionaries(st.text(alphabet="abcdefgh.-_", min_size=1, max_size=12), TEXT, max_size=6)),
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(wire_logs(), max_size=12))
def test_wire_bytes_parse_to_what_the_sdk_encoder_sends(logs: list[WireLog]) -> None:
    encoder = sdk_encoder(RESOURCE, catalog.METER_NAME, __version__)
    ours = _parsed(encoder.encode(logs))
    if not logs:  # the SDK sends no request for no records; ours is one empty resource
        assert len(ours.resource_logs) == 1 and not ours.resource_logs[0].scope_logs[0].log_records
        return
    assert ours == _parsed(_sdk_bytes(logs))
    again = _parsed(encoder.encode(logs))  # the attribute cache gives the same bytes the second time
    assert again == ours


@given(st.integers(0, 2**64 - 1))
def test_varint_round_trips(n: int) -> None:
    from google.protobuf.internal.decoder import _DecodeVarint  # type: ignore[attr-defined]

    assert _DecodeVarint(varint(n), 0) == (n, len(varint(n)))


# -- through a real receiver ---------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with http_receiver() as r:
        yield r


def _setup(endpoint: str, logger_name: str) -> LogsExportSetup:
    setup = LogsExportSetup(resource=lambda: RESOURCE, loggers=(logger_name,))
    target = OtlpTarget("logs", f"{endpoint}/v1/logs", "http/protobuf", None, 5.0)
    setup.configure(LogsExportConfig(target), in_scope=lambda run_id: run_id.startswith("run-"))
    return setup


def _bodies(receiver: Receiver, run_id: str) -> list[str]:
    with receiver.lock:
        return [str(r.body) for r in receiver.logs if r.attributes.get("prefect.flow_run.id") == run_id]


@needs_light_path
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(0, 40),
    max_batch=st.integers(1, 9),
    flush_at=st.sets(st.integers(0, 40), max_size=4),
    secret=st.sampled_from(SECRETS),
)
def test_every_record_arrives_once_redacted_across_batches_flushes_and_shutdown(
    receiver: Receiver, n: int, max_batch: int, flush_at: set[int], secret: str
) -> None:
    run_id = f"run-{uuid.uuid4()}"
    name = f"prefect.task_runs.wire-{uuid.uuid4().hex[:8]}"
    run_logger = logging.getLogger(name)
    run_logger.setLevel(logging.DEBUG)
    run_logger.propagate = False
    setup = _setup(receiver.endpoint, name)
    handler = setup.handler
    assert handler is not None and isinstance(handler.provider, WireLogPipeline)  # the light path
    handler.provider.max_batch = max_batch
    sent = []
    try:
        for i in range(n):
            # no redaction filter on this logger: the handler redacts what it was not handed redacted
            run_logger.info("record %d for %s", i, secret, extra={"flow_run_id": run_id, "task_name": "t"})
            sent.append(i)
            if i in flush_at:
                assert setup.flush(5.0)
        run_logger.info("outside any observed run", extra={"flow_run_id": "other"})
    finally:
        setup.detach()  # shutdown exports what is left
    received = _bodies(receiver, run_id)
    assert sorted(int(b.split()[1]) for b in received) == sent  # none lost, none doubled
    assert all(secret not in b and "[REDACTED]" in b for b in received)


@needs_light_path
def test_flush_waits_for_every_record_before_it(receiver: Receiver) -> None:
    run_id = f"run-{uuid.uuid4()}"
    name = f"prefect.flow_runs.wire-{uuid.uuid4().hex[:8]}"
    run_logger = logging.getLogger(name)
    run_logger.setLevel(logging.INFO)
    run_logger.propagate = False
    setup = _setup(receiver.endpoint, name)
    try:
        tracer = trace.NoOpTracerProvider().get_tracer("t")
        with tracer.start_as_current_span("noop"):
            for i in range(700):  # more than one batch of 512
                run_logger.info("line %d", i, extra={"flow_run_id": run_id, "flow_name": "f"})
        assert setup.flush(10.0)
        assert len(_bodies(receiver, run_id)) == 700  # there at once: no wait on the receiver
    finally:
        setup.detach()


@needs_light_path
def test_a_dead_endpoint_costs_one_warning_and_never_blocks(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    name = f"prefect.flow_runs.wire-{uuid.uuid4().hex[:8]}"
    run_logger = logging.getLogger(name)
    run_logger.setLevel(logging.INFO)
    run_logger.propagate = False
    setup = _setup(f"http://127.0.0.1:{port}", name)
    try:
        with caplog.at_level(logging.WARNING):
            for _attempt in range(3):
                for i in range(5):
                    run_logger.info("line %d", i, extra={"flow_run_id": "run-x"})
                assert not setup.flush(2.0)
    finally:
        setup.detach()
    warnings = [r for r in caplog.records if "cannot export run logs" in r.getMessage()]
    assert len(warnings) == 1


def test_the_sdk_path_stays_for_a_provider_synthobs_did_not_build() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = RunLogHandler(provider, in_scope=lambda run_id: True)
    record = logging.LogRecord("prefect.flow_runs", logging.INFO, "f", 1, "hello %s", ("you",), None)
    record.flow_run_id = "run-1"
    handler.emit(record)
    [log] = exporter.get_finished_logs()
    assert log.log_record.body == "hello you" and log.log_record.attributes["prefect.flow_run.id"] == "run-1"


def test_record_limits_from_the_environment_keep_the_sdk_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", "8")  # the SDK cuts values: it must see them
    setup = _setup("http://127.0.0.1:9", f"prefect.flow_runs.wire-{uuid.uuid4().hex[:8]}")
    try:
        assert setup.handler is not None and isinstance(setup.handler.provider, LoggerProvider)
    finally:
        setup.detach()


def test_older_sdks_take_the_sdk_path(receiver: Receiver) -> None:
    """Where the exporter has no client (SDK 1.39), synthobs' run logs use the SDK's own provider, still exported."""
    name = f"prefect.flow_runs.wire-{uuid.uuid4().hex[:8]}"
    setup = _setup(receiver.endpoint, name)
    try:
        handler = setup.handler
        assert handler is not None
        assert isinstance(handler.provider, WireLogPipeline) == LIGHT_PATH
        run_logger = logging.getLogger(name)
        run_logger.setLevel(logging.INFO)
        run_logger.propagate = False
        run_logger.info("hello", extra={"flow_run_id": "run-sdk-path", "flow_name": "f"})
        assert setup.flush(10.0)
        assert _bodies(receiver, "run-sdk-path") == ["hello"]
    finally:
        setup.detach()
