"""Run logs carry trace ids and lose their PII; span attributes too."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from prefect import flow, get_run_logger, task

import prefect_synthobs as so
from prefect_synthobs.telemetry.logs import (
    RUN_LOGGERS,
    JsonFormatter,
    LogFilters,
    RedactionFilter,
    TraceContextFilter,
)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.usefixtures("prefect_server")
def test_run_logs_are_redacted_and_carry_the_trace_id(store_dir: Path) -> None:
    handlers = {name: _Collect() for name in RUN_LOGGERS}
    for name, handler in handlers.items():
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)

    @task
    def leaky() -> None:
        get_run_logger().info("retrying for jane@example.com with api_key=sk-123")

    @so.observe(kind="generation")
    @flow(name=f"logs-{uuid.uuid4().hex[:6]}", log_prints=True)
    def chatty() -> None:
        get_run_logger().info("customer card 4111 1111 1111 1111 declined")
        print("call +1 415-555-0134 about SSN 123-45-6789")
        leaky()

    try:
        chatty()
    finally:
        for name, handler in handlers.items():
            logging.getLogger(name).removeHandler(handler)
    flow_records = [  # by how the messages begin: a run's random name ("scarlet-cardinal") may hold "card"
        r for r in handlers["prefect.flow_runs"].records if r.getMessage().startswith(("customer card ", "call "))
    ]
    task_records = [r for r in handlers["prefect.task_runs"].records if "retrying" in r.getMessage()]
    assert len(flow_records) == 2 and len(task_records) == 1
    text = " ".join(r.getMessage() for r in flow_records + task_records)
    for secret in ("jane@example.com", "sk-123", "4111 1111 1111 1111", "415-555-0134", "123-45-6789"):
        assert secret not in text
    assert text.count("[REDACTED]") == 5
    trace_id = so.HealthStore(str(store_dir)).read("flow_runs").trace_id.iloc[0]
    assert {r.trace_id for r in flow_records + task_records} == {trace_id}
    assert all(len(r.span_id) == 16 for r in flow_records + task_records)
    assert task_records[0].span_id != flow_records[0].span_id  # the task's own span
    line = json.loads(JsonFormatter().format(task_records[0]))
    assert line["trace_id"] == trace_id and line["level"] == "INFO"
    assert "[REDACTED]" in line["message"] and line.get("task_run_id")


def test_filters_install_once_and_remove_exactly_what_they_added() -> None:
    def ours(name: str) -> list[logging.Filter]:
        return [f for f in logging.getLogger(name).filters if isinstance(f, (RedactionFilter, TraceContextFilter))]

    foreign = logging.Filter("keep-me")
    logging.getLogger("prefect.flow_runs").addFilter(foreign)
    before = {n: ours(n) for n in RUN_LOGGERS}  # the process's own instrumentation may have some
    filters = LogFilters()
    try:
        filters.install()
        filters.install()
        assert all(len(ours(n)) == len(before[n]) + 2 for n in RUN_LOGGERS)
        filters.install(redact_pii=False)
        assert all([type(f) for f in ours(n)[len(before[n]) :]] == [TraceContextFilter] for n in RUN_LOGGERS)
        filters.remove()
        assert all(ours(n) == before[n] for n in RUN_LOGGERS)
        assert foreign in logging.getLogger("prefect.flow_runs").filters
    finally:
        logging.getLogger("prefect.flow_runs").removeFilter(foreign)
        filters.remove()


def test_json_formatter_outside_a_run() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    data = json.loads(JsonFormatter().format(record))
    assert data["message"] == "hello world" and data["level"] == "WARNING" and "trace_id" not in data


@pytest.mark.usefixtures("prefect_server")
def test_span_attributes_are_redacted(store_dir: Path) -> None:
    # in an observed run: outside one, with no tracer provider of the process's own, spans do not record
    # (the test read one only when an earlier test had left synthobs' provider installed)
    seen: list[dict[str, object]] = []

    @so.observe(kind="quality")
    @flow(name=f"span-attrs-{uuid.uuid4().hex[:6]}")
    def checked() -> None:
        with so.span("quality.check", reviewer="ann@corp.example", note="token=abc123", rows=5) as s:
            seen.append(dict(s.attributes))  # type: ignore[attr-defined]
        so.configure(redact_pii=False)
        with so.span("quality.check", reviewer="ann@corp.example") as s:
            seen.append(dict(s.attributes))  # type: ignore[attr-defined]

    checked()
    own = [{k: v for k, v in attrs.items() if not k.startswith("prefect.")} for attrs in seen]
    assert own == [{"reviewer": "[REDACTED]", "note": "token=[REDACTED]", "rows": 5}, {"reviewer": "ann@corp.example"}]
