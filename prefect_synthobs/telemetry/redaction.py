"""PII redaction for text synthobs stores or exports (pure functions)."""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])")
_PHONE = re.compile(r"(?<![\w])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}\b")
_SECRET_FIELD = re.compile(
    r"(?i)\b([\w-]*(?:password|passwd|pwd|token|secret|api[_-]?key|apikey)[\w-]*)"
    r"(\s*[=:]\s*|\"\s*:\s*\"?|'\s*:\s*'?)"
    r"([^\s,;'\"}]+)"
)


_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s]+@")


def strip_url_credentials(text: str) -> str:
    """``text`` with the user info of every URL in it replaced by ``***``.

    ``s3://KEY:SECRET@bucket`` becomes ``s3://***@bucket``; used on every URL
    and error message that reaches a log line, an exception or a span.
    """
    return _URL_USERINFO.sub(r"\1***@", text) if "@" in text else text


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum used by payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return REDACTED if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)


def redact(text: str, *, ip_addresses: bool = False) -> str:
    """Replace emails, SSNs, card numbers (Luhn-valid), phone numbers and the
    values of secret-looking fields (password, token, secret, api_key) with
    ``[REDACTED]``; IPv4 addresses too with ``ip_addresses``.

    Example:
        >>> redact("login failed for ann@example.com password=hunter2")
        'login failed for [REDACTED] password=[REDACTED]'
    """
    text = _SECRET_FIELD.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    if ip_addresses:
        text = _IPV4.sub(REDACTED, text)
    text = _EMAIL.sub(REDACTED, text)
    text = _SSN.sub(REDACTED, text)
    text = _CARD.sub(_card, text)
    text = _PHONE.sub(REDACTED, text)
    return text


def clean_error_message(message: str | None, *, limit: int, redact_pii: bool = True) -> str | None:
    """An error message as the health store keeps it: redacted, then cut to ``limit``."""
    if message is None:
        return None
    if redact_pii:
        message = redact(message)
    return message if len(message) <= limit else message[: limit - 1] + "…"
