"""Run logs on the wire path: the flow's thread only captures a record; what the export thread makes
of it is what the SDK path sends (same attributes, same redaction), and a batch's clock starts with
its first record."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from prefect.context import FlowRunContext, TaskRunContext

from prefect_synthobs.telemetry import prefect_names
from prefect_synthobs.telemetry.log_batch import WireLogPipeline
from prefect_synthobs.telemetry.log_wire import LogRequestEncoder, WireLog
from prefect_synthobs.telemetry.logs import REDACTED_MARK
from prefect_synthobs.telemetry.otel_logs import CapturedLog, RunLogHandler, record_attributes, severity
from prefect_synthobs.telemetry.redaction import redact

SECRETS = ("jane.doe@example.com", "4111 1111 1111 1111", "AKIAIOSFODNN7EXAMPLE", "")
NAME = st.one_of(st.none(), st.just("<unknown>"), st.sampled_from(SECRETS).map(lambda s: f"run {s}".strip()))


class _Keep:
    """Stands in for the pipeline: keeps what the handler hands over."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def emit(self, item: Any) -> None:
        self.items.append(item)


def _wire_handler(redact_pii: bool) -> tuple[RunLogHandler, _Keep]:
    pipeline = WireLogPipeline(lambda data: True, LogRequestEncoder(b"", b""))
    handler = RunLogHandler(pipeline, in_scope=lambda run_id: run_id.startswith("run-"), redact_pii=redact_pii)
    kept = _Keep()
    handler._wire = kept  # type: ignore[assignment]
    return handler, kept


@settings(max_examples=80, deadline=None)
@given(
    level=st.sampled_from((5, 10, 20, 30, 40, 50)),
    secret=st.sampled_from(SECRETS),
    names=st.tuples(NAME, NAME, NAME, NAME, NAME),
    marked=st.booleans(),
    redact_pii=st.booleans(),
    failed=st.booleans(),
)
def test_the_export_thread_makes_what_the_sdk_path_makes(
    level: int, secret: str, names: tuple[str | None, ...], marked: bool, redact_pii: bool, failed: bool
) -> None:
    record = logging.LogRecord("prefect.task_runs", level, "f", 1, "line for %s", (secret,), None)
    if failed:
        try:
            raise ValueError(f"card {secret}")
        except ValueError:
            import sys

            record.exc_info = sys.exc_info()
    record.flow_run_id = "run-1"
    for extra, value in zip(
        ("flow_run_name", "flow_name", "task_run_id", "task_run_name", "task_name"), names, strict=True
    ):
        if value is not None:
            setattr(record, extra, value)
    if marked:
        setattr(record, REDACTED_MARK, True)
    handler, kept = _wire_handler(redact_pii)
    handler.handle(record)
    [captured] = kept.items
    assert isinstance(captured, CapturedLog)
    log = captured.wire()
    redacting = redact_pii and not marked
    number, text = severity(level)
    assert (log.severity_number, log.severity_text) == (number.value, text)
    assert log.body == (redact(record.getMessage()) if redacting else record.getMessage())
    assert log.attributes == record_attributes(record, redact_pii=redact_pii)
    assert list(log.attributes) == list(record_attributes(record, redact_pii=redact_pii))  # same order
    if redacting and secret:
        named = [v for k, v in log.attributes.items() if not k.endswith(".id")]  # ids are never redacted
        assert all(secret not in str(v) for v in (log.body, *named))


def test_records_outside_observed_runs_are_not_captured() -> None:
    handler, kept = _wire_handler(True)
    for run_id in (None, "", "other"):
        record = logging.LogRecord("prefect.flow_runs", logging.INFO, "f", 1, "x", (), None)
        if run_id is not None:
            record.flow_run_id = run_id
        handler.handle(record)
    assert kept.items == []


def test_a_record_that_cannot_be_made_is_dropped_alone() -> None:
    sent: list[bytes] = []

    def send(data: bytes) -> bool:
        sent.append(data)
        return True

    pipeline = WireLogPipeline(send, LogRequestEncoder(b"", b""), schedule_delay=60)

    class Broken:
        def wire(self) -> WireLog:
            raise RuntimeError("no")

    good = WireLog(1, 2, 9, "INFO", "kept", 0, 0, 0, {"k": "v"})
    pipeline.emit(Broken())
    pipeline.emit(good)
    assert pipeline.force_flush(10_000)
    pipeline.shutdown()
    assert len(sent) == 1 and b"kept" in sent[0]


def test_a_batch_waits_for_its_first_record_then_goes_whole_at_a_flush() -> None:
    """No request while nothing waits; records that came within the delay go in one request at the flush."""
    sent: list[bytes] = []
    went = threading.Event()

    def send(data: bytes) -> bool:
        sent.append(data)
        went.set()
        return True

    pipeline = WireLogPipeline(send, LogRequestEncoder(b"", b""), schedule_delay=60)
    try:
        for i in range(50):
            pipeline.emit(WireLog(i, i + 1, 9, "INFO", f"line {i}", 0, 0, 0, {}))
        assert pipeline.force_flush(10_000)
        assert len(sent) == 1 and all(f"line {i}".encode() in sent[0] for i in range(50))
        assert pipeline.force_flush(10_000) and len(sent) == 1  # nothing pending: no request
        # with a short delay, a lone record goes by itself, without a flush
        pipeline.schedule_delay = 0.05
        went.clear()
        pipeline.emit(WireLog(1, 2, 9, "INFO", "alone", 0, 0, 0, {}))
        assert went.wait(30) and b"alone" in sent[-1]
    finally:
        pipeline.shutdown()


def test_context_attributes_follow_the_context_not_the_cache() -> None:
    """Cached by the values the answer depends on: another run, another id asked for, another
    deployment, each gets its own answer."""

    def ctx(run_id: str, deployment: str | None) -> Any:
        flow_run = SimpleNamespace(id=run_id, deployment_id=deployment, work_pool_name=None)
        return SimpleNamespace(flow_run=flow_run, flow=SimpleNamespace(name="f"))

    with mock.patch.object(TaskRunContext, "get", return_value=None):
        with mock.patch.object(FlowRunContext, "get", return_value=ctx("a", None)):
            assert prefect_names.context_attributes("a")[prefect_names.PREFECT_FLOW_RUN_ID] == "a"
            assert prefect_names.context_attributes("b") == {}
            first = prefect_names.context_attributes()
            first["mutated"] = "x"  # callers get their own dict
            assert "mutated" not in prefect_names.context_attributes()
        with mock.patch.object(FlowRunContext, "get", return_value=ctx("a", "dep-1")):
            assert prefect_names.context_attributes("a")[prefect_names.PREFECT_DEPLOYMENT_ID] == "dep-1"
        with mock.patch.object(FlowRunContext, "get", return_value=ctx("b", None)):
            assert prefect_names.context_attributes("b")[prefect_names.PREFECT_FLOW_RUN_ID] == "b"
            assert prefect_names.context_attributes("a") == {}
