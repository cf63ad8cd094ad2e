"""``observe._flow_span_context``: a worker makes the flow's span current from the carrier's ``traceparent``
once per flow run, not once per task, and always the span of the ``traceparent`` it is given."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace

from prefect_synthobs.instrument.observe import _flow_span_context

_ids = st.tuples(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.sampled_from(["00", "01"]))


def _traceparent(trace_id: int, span_id: int, flags: str) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags}"


@given(st.lists(_ids, min_size=1, max_size=12))
def test_each_call_gives_the_span_of_its_own_traceparent(sequence: list[tuple[int, int, str]]) -> None:
    for trace_id, span_id, flags in sequence:  # repeats, alternations and new ones, in any order
        made = _flow_span_context(_traceparent(trace_id, span_id, flags))
        span_context = trace.get_current_span(made).get_span_context()
        assert (span_context.trace_id, span_context.span_id) == (trace_id, span_id)
        assert span_context.trace_flags.sampled == (flags == "01") and span_context.is_remote


def test_the_same_traceparent_is_parsed_once() -> None:
    first = _flow_span_context(_traceparent(7, 9, "01"))
    assert _flow_span_context(_traceparent(7, 9, "01")) is first  # the next task of the same flow run
    other = _flow_span_context(_traceparent(8, 9, "01"))
    assert other is not first and _flow_span_context(_traceparent(7, 9, "01")) is not other
