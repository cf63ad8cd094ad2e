"""``listener.attributes_of``: the run listener reads a span's attributes without the SDK's per-read proxy, and
reads exactly what the public ``attributes`` holds, on SDK spans and on any other span object."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from prefect_synthobs.instrument.listener import attributes_of

_values = st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=False), st.booleans())
_attributes = st.dictionaries(st.text(min_size=1, max_size=12), _values, max_size=8)


@given(_attributes)
def test_an_sdk_span_reads_as_its_public_attributes(attributes: dict[str, Any]) -> None:
    span = TracerProvider().get_tracer("t").start_span("s", attributes=attributes)
    try:
        assert dict(attributes_of(span)) == dict(span.attributes) == attributes
        span.set_attribute("later", 1)  # set while the span records: seen at once
        assert attributes_of(span)["later"] == 1
    finally:
        span.end()
    assert dict(attributes_of(span)) == dict(span.attributes)  # ended (read only): the same


@given(_attributes)
def test_a_readable_span_reads_as_its_public_attributes(attributes: dict[str, Any]) -> None:
    span = ReadableSpan("s", attributes=attributes)
    assert dict(attributes_of(span) or {}) == dict(span.attributes or {}) == attributes


def test_a_span_without_the_sdks_dict_is_read_through_attributes() -> None:
    assert attributes_of(SimpleNamespace(attributes={"prefect.run.type": "task"})) == {"prefect.run.type": "task"}
    assert attributes_of(SimpleNamespace(attributes=None)) is None
    # a private ``_attributes`` of another shape is never trusted
    odd = SimpleNamespace(_attributes=SimpleNamespace(_dict=[("a", 1)]), attributes={"a": 1})
    assert attributes_of(odd) == {"a": 1}
