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


@pytest.mark.parametrize(
    ("text", "secrets"),
    [
        ('{"password":["hunter2"]}', ["hunter2"]),
        ('{"password": {"value": "hunter2"}, "user": "ann"}', ["hunter2"]),
        ("password: |\n  hunter2multi\n  line2\nhost: db", ["hunter2multi", "line2"]),
        ("password: >-\n  hunter2fold\n\n  second paragraph\nuser: ann", ["hunter2fold", "second paragraph"]),
        ("password:\n  hunter2", ["hunter2"]),
        ("password=\nhunter2", ["hunter2"]),
        ('password: "unterminated value here', ["unterminated", "value here"]),
        ('api_key = "abc\\ndef"', ["abc", "def"]),
        ('api_key = "abc\ndef"', ["abc", "def"]),
        ("password=“smart quoted”", ["smart", "quoted"]),
        ("Server=tcp:x;User ID=a;Password=p@ss w0rd;", ["p@ss", "w0rd"]),
        ("https://ann:p@ss@host/", ["p@ss", "ss@host"]),
        ("postgresql+psycopg2://ann:hunter 2@db/x", ["hunter", "2@db"]),
        ('Authorization: Digest username="ann", realm="x", response="6629fae4"', ["ann", "6629fae4"]),
        ("ValueError: ('password', 'hunter2')", ["hunter2"]),
        ("[('password', 'hunter2')]", ["hunter2"]),
        ("{'password': 'hunter2'}", ["hunter2"]),
        ("password%3Dhunter2", ["hunter2"]),
        ("GET /x?token%3Dabc123", ["abc123"]),
        ("mailto:ann%40example.com", ["ann%40example"]),
        ("iban de89370400440532013000", ["370400440532013000"]),
        ("iban gb82 west 1234 5698 7654 32", ["5698 7654"]),
        ("card 4111_1111_1111_1111", ["4111_1111"]),
        ("card 4111/1111/1111/1111", ["4111/1111"]),
        ("curl -u ann:hunter2 https://x", ["hunter2"]),
        ("curl --user ann:hunter2 https://x", ["hunter2"]),
        ('private_key_id: "abcdef0123"', ["abcdef0123"]),
        ("the password is hunter2", ["hunter2"]),
        ("password is: hunter2", ["hunter2"]),
        ('Passphrase "long secret phrase"', ["long secret"]),
        ("passwort=hunter2 mot_de_passe=hunter3 contraseña=hunter4 senha=hunter5", ["hunter2", "hunter3", "hunter4"]),
        ("wachtwoord=hunter2 пароль=hunter3 密码=hunter4", ["hunter2", "hunter3", "hunter4"]),
        ("ｐａｓｓｗｏｒｄ=hunter2", ["hunter2"]),
        ("pass\u200bword=hunter2", ["hunter2"]),
        ("password -> hunter2", ["hunter2"]),
    ],
)
def test_hostile_review_leaks_are_redacted(text: str, secrets: list[str]) -> None:
    out = redact(text)
    for secret in secrets:
        assert secret not in out, (text, out)
    assert redact(out) == out  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "delta +12345678 rows",
        "numbers 100-200-3000",
        "sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "passed 3, tokens 512, the token count is 512 tokens",
        "key=value_column, primary_key=id",
        "ab12 cdef ghij klmn op",
        # a traceback frame ending with "password:" is not a YAML block: the next frame stays
        '  File "x.py", line 3, in f\n    if not password:\n  File "y.py", line 9, in g\n    h()',
    ],
)
def test_hostile_review_false_positives_are_left(text: str) -> None:
    assert redact(text) == text


def test_stack_info_on_log_records_is_redacted() -> None:
    import logging

    from prefect_synthobs.telemetry.logs import RedactionFilter

    rec = logging.LogRecord(
        "prefect.flow_runs",
        logging.INFO,
        __file__,
        1,
        "checkpoint",
        None,
        None,
        sinfo='Stack (most recent call last):\n  File "x.py", line 3\n    login(password="hunter2", to="ann@x.org")',
    )
    RedactionFilter().filter(rec)
    assert rec.stack_info is not None
    assert "hunter2" not in rec.stack_info and "ann@x.org" not in rec.stack_info
    assert 'File "x.py", line 3' in rec.stack_info
    assert "hunter2" not in logging.Formatter().format(rec)
