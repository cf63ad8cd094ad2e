"""``span``: the public context manager for domain spans (``so.span``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import Span

from prefect_synthobs.config.active import get_settings
from prefect_synthobs.telemetry.tracing import open_span


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span]:
    """A span for domain work, child of the current Prefect run span.

    String attribute values pass the PII redaction filter unless ``redact_pii``
    is off.

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
    with open_span(name, attributes, redact_pii=_redacting()) as current:
        yield current


def _redacting() -> bool:
    try:
        return get_settings().redact_pii
    except ValueError:  # invalid settings must not break the caller's span: keep redacting
        return True
