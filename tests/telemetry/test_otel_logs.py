"""Run logs as OpenTelemetry log records: which records, what they carry, set-up and removal."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

import prefect_synthobs as so
from prefect_synthobs.telemetry.logs import LogFilters
from prefect_synthobs.telemetry.otel_logs import LogsExportSetup, RunLogHandler, logs_export_config, severity


def _provider() -> tuple[LoggerProvider, InMemoryLogRecordExporter]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    return provider, exporter


def _record(logger: logging.Logger, level: int, message: str, **extra: Any) -> None:
    logger.log(level, message, extra=extra)


def test_observed_run_logs_become_redacted_log_records_with_trace_and_run_ids() -> None:
    provider, exporter = _provider()
    run_logger = logging.getLogger("prefect.flow_runs.test-otel")
    run_logger.setLevel(logging.DEBUG)
    run_logger.propagate = False  # not to Prefect's API log handler
    filters = LogFilters(loggers=(run_logger.name,))
    filters.install(redact_pii=True)
    handler = RunLogHandler(provider, in_scope=lambda run_id: run_id == "run-1")
    run_logger.addHandler(handler)
    tracer = TracerProvider().get_tracer("t")
    try:
        with tracer.start_as_current_span("flow") as span:
            _record(run_logger, logging.WARNING, "mail jane.doe@example.com", flow_run_id="run-1", flow_name="train")
            _record(run_logger, logging.INFO, "not observed", flow_run_id="run-2", flow_name="other")
        _record(run_logger, logging.INFO, "no run at all")
        try:
            raise ValueError("card 4111 1111 1111 1111")
        except ValueError:
            run_logger.exception("failed", extra={"flow_run_id": "run-1", "task_run_id": "t-1", "task_name": "fit"})
    finally:
        run_logger.removeHandler(handler)
        filters.remove()
    records = [r.log_record for r in exporter.get_finished_logs()]
    assert [r.body for r in records] == ["mail [REDACTED]", "failed"]
    first, second = records
    ctx = span.get_span_context()
    assert (first.trace_id, first.span_id) == (ctx.trace_id, ctx.span_id)
    assert (first.severity_number, first.severity_text) == (SeverityNumber.WARN, "WARN")
    assert first.attributes["prefect.flow_run.id"] == "run-1" and first.attributes["prefect.flow.name"] == "train"
    assert second.attributes["exception.type"] == "ValueError"
    assert "4111" not in second.attributes["exception.stacktrace"]
    assert second.attributes["prefect.task.name"] == "fit" and not second.trace_id
    provider.shutdown()


def test_severities() -> None:
    assert severity(logging.DEBUG) == (SeverityNumber.DEBUG, "DEBUG")
    assert severity(logging.ERROR) == (SeverityNumber.ERROR, "ERROR")
    assert severity(logging.CRITICAL) == (SeverityNumber.FATAL, "FATAL")
    assert severity(5) == (SeverityNumber.TRACE, "TRACE")


def test_config_follows_the_setting_then_otel_logs_exporter() -> None:
    env = {"OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    on = logs_export_config(so.SynthObsSettings(), env)
    assert on.otlp is not None and on.otlp.endpoint == "http://c:4318/v1/logs"
    assert not logs_export_config(so.SynthObsSettings(), {}).enabled
    assert not logs_export_config(so.SynthObsSettings(otlp_logs=False), env).enabled
    forced = logs_export_config(so.SynthObsSettings(otlp_logs=True, otlp_protocol="grpc"), {})
    assert forced.otlp is not None and forced.otlp.protocol == "grpc" and forced.otlp.endpoint is None
    assert logs_export_config(so.SynthObsSettings(), {"OTEL_LOGS_EXPORTER": "console"}).console


@pytest.mark.parametrize("loggers", [("prefect.flow_runs.a", "prefect.task_runs.a")])
def test_setup_adds_one_handler_and_removes_exactly_it(loggers: tuple[str, str]) -> None:
    provider, exporter = _provider()
    setup = LogsExportSetup(logger_provider=provider, loggers=loggers)
    others = [logging.NullHandler() for _ in loggers]
    for name, other in zip(loggers, others, strict=True):
        logging.getLogger(name).addHandler(other)
    config = logs_export_config(so.SynthObsSettings(otlp_logs=True), {})
    setup.configure(config, lambda run_id: True)
    setup.configure(config, lambda run_id: True)  # twice: harmless
    for name in loggers:
        assert sum(isinstance(h, RunLogHandler) for h in logging.getLogger(name).handlers) == 1
    logging.getLogger(loggers[1]).warning("hello", extra={"flow_run_id": "r"})
    assert setup.flush(5.0)
    setup.detach()
    for name, other in zip(loggers, others, strict=True):
        assert logging.getLogger(name).handlers == [other]
        logging.getLogger(name).removeHandler(other)
    assert [r.log_record.body for r in exporter.get_finished_logs()] == ["hello"]
    provider.shutdown()
