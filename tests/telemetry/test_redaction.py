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
