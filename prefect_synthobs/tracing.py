"""OpenTelemetry helpers: the provider synthobs installs when there is none,
and ``span()`` for domain work."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span

from prefect_synthobs._version import __version__

_TRACER_NAME = "prefect_synthobs"
_ATTRIBUTE_TYPES = (str, bool, int, float)


def build_tracer_provider() -> TracerProvider:
    """An SDK tracer provider with synthobs' resource and no exporter."""
    from prefect_synthobs.settings import get_settings

    settings = get_settings()
    attributes: dict[str, Any] = {
        "service.name": settings.service_name,
        "service.version": __version__,
        "host.name": socket.gethostname(),
    }
    if settings.environment:
        attributes["deployment.environment"] = settings.environment
    return TracerProvider(resource=Resource.create(attributes))


def attribute_value(value: Any) -> Any:
    """An OpenTelemetry attribute value: primitives and their sequences as they
    are, anything else as its ``str``."""
    if isinstance(value, _ATTRIBUTE_TYPES):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, _ATTRIBUTE_TYPES) for v in value):
        return list(value)
    return str(value)


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span]:
    """A span for domain work, child of the current Prefect run span.

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
    if not isinstance(name, str) or not name:
        raise ValueError(f"span name must be a non-empty string, got {name!r}")
    tracer = trace.get_tracer(_TRACER_NAME, __version__)
    with tracer.start_as_current_span(name) as current:
        if current.is_recording() and attributes:
            current.set_attributes({k: attribute_value(v) for k, v in attributes.items()})
        yield current
