"""PII redaction of messages."""

from __future__ import annotations

import pytest

from prefect_synthobs.telemetry.redaction import luhn_valid, redact, strip_url_credentials


def test_redaction() -> None:
    text = (
        "user jane.doe@example.com ssn 123-45-6789 card 4111 1111 1111 1111 "
        "phone +1 415-555-0134 api_key=sk_live_abc token: tok123 order 1234567890123"
    )
    out = redact(text)
    for secret in (
        "jane.doe@example.com",
        "123-45-6789",
        "4111 1111 1111 1111",
        "415-555-0134",
        "sk_live_abc",
        "tok123",
    ):
        assert secret not in out
    assert "order 1234567890123" in out  # not Luhn-valid: not a card
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("s3://AKIAKEY:SeCrEt@bucket/prefix", "s3://***@bucket/prefix"),
        ("http://user:pass@collector:4318/v1/traces", "http://***@collector:4318/v1/traces"),
        (
            "failed: https://token@host/x and http://a:b@c/d?q=e@f",
            "failed: https://***@host/x and http://***@c/d?q=e@f",
        ),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        ("mail bob@corp.io", "mail bob@corp.io"),
    ],
)
def test_url_credentials_are_stripped(text: str, shown: str) -> None:
    assert strip_url_credentials(text) == shown


# -- every channel: span names, log attributes, run-name extras, rows, events ---------------------------


def _span(name: str, attributes: dict[str, object]) -> object:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span(name, attributes=attributes) as span:  # type: ignore[arg-type]
        span.add_event("exception", {"exception.message": "token=s3cr3tvalue"})
    return span


def test_span_names_attributes_and_events_are_redacted_ids_kept() -> None:
    from prefect_synthobs.telemetry.tracing import redact_span

    run_id = "3f1c2a1e-8d4b-4c1e-9a7e-2b1f0c9d8e7a"
    span = _span("load-ann@example.com", {"prefect.run.name": "load-ann@example.com", "prefect.run.id": run_id})
    assert redact_span(_span("load for ann@example.com", {})).name == "load for [REDACTED]"  # type: ignore[arg-type]
    out = redact_span(span)  # type: ignore[arg-type]
    assert out.name == "[REDACTED]"  # "load-ann@example.com" is an e-mail address as a whole
    assert out.attributes == {"prefect.run.name": "[REDACTED]", "prefect.run.id": run_id}
    assert out.events[0].attributes == {"exception.message": "token=[REDACTED]"}


def test_run_names_on_log_records_are_redacted_by_the_filter_and_the_otlp_handler() -> None:
    import logging

    from prefect_synthobs.telemetry.logs import RedactionFilter
    from prefect_synthobs.telemetry.otel_logs import record_attributes

    def record() -> logging.LogRecord:
        rec = logging.LogRecord(
            "prefect.task_runs", logging.INFO, __file__, 1, "rows for %s", ("ann@example.com",), None
        )
        rec.task_run_name, rec.task_run_id = "load-ann@example.com", "3f1c2a1e-8d4b-4c1e-9a7e-2b1f0c9d8e7a"
        return rec

    filtered = record()
    RedactionFilter().filter(filtered)
    assert filtered.getMessage() == "rows for [REDACTED]"
    assert filtered.task_run_name == "[REDACTED]"  # what Prefect's console format shows
    # a record no filter saw (a child logger's): the OTLP handler redacts it itself, ids kept, unless told not to
    attributes = record_attributes(record(), redact_pii=True)
    assert attributes["prefect.task_run.name"] == "[REDACTED]"
    assert attributes["prefect.task_run.id"] == "3f1c2a1e-8d4b-4c1e-9a7e-2b1f0c9d8e7a"
    assert record_attributes(record(), redact_pii=False)["prefect.task_run.name"] == "load-ann@example.com"


@pytest.mark.parametrize("redact_pii", [True, False])
def test_row_texts_are_redacted_unless_redaction_is_off(redact_pii: bool) -> None:
    from prefect_synthobs.health.rows import flow_row, task_row

    task = task_row(
        task_run_id="t",
        flow_run_id="f",
        flow_name="train-ctgan",
        task_name="load-ann@example.com",  # a remote task row takes its name from the (templated) run name
        state_type="FAILED",
        state_name="Failed for ann@example.com",
        start_time=None,
        end_time=None,
        run_count=1,
        error_message="password=hunter2",
        tags=["owner:ann@example.com", "nightly"],
        redact_pii=redact_pii,
    )
    flow = flow_row(
        flow_run_id="f",
        flow_name="train-ctgan",
        state_type="FAILED",
        state_name="Failed token=abcdef123456",
        start_time=None,
        end_time=None,
        tags=["owner:ann@example.com"],
        redact_pii=redact_pii,
    )
    texts = [str(v) for row in (task, flow) for v in row.values()]
    assert any("ann@example.com" in t or "hunter2" in t or "abcdef123456" in t for t in texts) is not redact_pii
    assert flow["flow_name"] == task["flow_name"] == "train-ctgan"  # names without PII stay as they are
    assert "nightly" in task["tags"]


def test_event_fields_are_redacted_machine_ids_kept() -> None:
    from prefect_synthobs.telemetry.redaction import redact_fields

    fields = {
        "prefect.resource.id": "synthobs.dataset.ann+x@example.com",
        "prefect.resource.name": "customers of ann@example.com",
        "flow_run_ids": ["3f1c2a1e-8d4b-4c1e-9a7e-2b1f0c9d8e7a"],
        "gpu_uuid": "GPU-5f3e",
        "epsilon": 1.5,
        "hosts": ["db token=abcdef123456"],
    }
    out = redact_fields(fields)
    assert out == {
        "prefect.resource.id": "[REDACTED]",
        "prefect.resource.name": "customers of [REDACTED]",
        "flow_run_ids": ["3f1c2a1e-8d4b-4c1e-9a7e-2b1f0c9d8e7a"],
        "gpu_uuid": "GPU-5f3e",
        "epsilon": 1.5,
        "hosts": ["db token=[REDACTED]"],
    }
    assert redact_fields(fields, enabled=False) == fields


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('{"password": "two words", "user": "ann"}', '{"password": "[REDACTED]", "user": "ann"}'),
        ("db:\n  password: two words here\n  host: db1", "db:\n  password: [REDACTED]\n  host: db1"),
        ("postgres://etl:hunter2@db:5432/x", "postgres://[REDACTED]@db:5432/x"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [REDACTED]"),
        ("Server=db;User Id=sa;Password=p@ss;Encrypt=true", "Server=db;User Id=sa;Password=[REDACTED];Encrypt=true"),
        ("用户@例子.中国 wrote", "[REDACTED] wrote"),
        ("IBAN GB82 WEST 1234 5698 7654 32.", "IBAN [REDACTED]."),
        ("ssn 123 45 6789 and SSN: 123456789", "ssn [REDACTED] and SSN: [REDACTED]"),
        ("call +44 20 7946 0958", "call [REDACTED]"),
        ("-----BEGIN EC PRIVATE KEY-----\nMHc\n(cut)", "[REDACTED]"),
        ("tokens: 512, passed: 3, pass_rate=0.9, author: ann", "tokens: 512, passed: 3, pass_rate=0.9, author: ann"),
        (
            "epoch 1714564800123 run 3f1c2a1e-8d4b-4c1e-9a7e-2b1f0c9d8e7a",
            "epoch 1714564800123 run 3f1c2a1e-8d4b-4c1e-9a7e-2b1f0c9d8e7a",
        ),
    ],
)
def test_redaction_of_named_shapes(text: str, shown: str) -> None:
    assert redact(text) == shown
