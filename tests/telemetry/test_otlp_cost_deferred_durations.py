"""OTLP durations handed to the SDK at collection (``MetricsBridge``'s queue): the same exported points.

The reference is what the bridge did before: ``histogram.record`` at once, the run's span as the
exemplar's context. Timestamps are the SDK's own and are not compared.
"""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client import CollectorRegistry

from prefect_synthobs import catalog as names
from prefect_synthobs.telemetry.metrics import SynthObsMetrics
from prefect_synthobs.telemetry.otel_metrics import MetricsBridge

Observation = tuple[str, dict[str, str], float, SpanContext | None]

_LABELS = {
    names.TASK_RUN_DURATION: st.fixed_dictionaries(
        {"flow": st.sampled_from(["f", "g"]), "task": st.sampled_from(["a", "b", "c"])}
    ),
    names.FLOW_RUN_DURATION: st.fixed_dictionaries(
        {"flow": st.sampled_from(["f", "g"]), "kind": st.sampled_from(["training", ""])}
    ),
}
_SPANS = st.one_of(
    st.none(),
    st.builds(
        lambda t, s, sampled: SpanContext(t, s, False, TraceFlags(1 if sampled else 0)),
        st.integers(1, 2**128 - 1),
        st.integers(1, 2**64 - 1),
        st.booleans(),
    ),
    st.just(SpanContext(0, 0, False)),  # invalid: no exemplar context
)
_OBSERVATIONS = st.lists(
    st.sampled_from(sorted(_LABELS)).flatmap(
        lambda metric: st.tuples(
            st.just(metric),
            _LABELS[metric],
            st.floats(0, 5000, allow_nan=False, allow_infinity=False),
            _SPANS,
        )
    ),
    max_size=60,
)


def _bridge(readers: int = 1) -> tuple[MetricsBridge, list[InMemoryMetricReader]]:
    metrics = SynthObsMetrics(CollectorRegistry())
    found = [InMemoryMetricReader() for _ in range(readers)]
    provider = MeterProvider(metric_readers=found)
    return MetricsBridge(provider.get_meter("test"), lambda: metrics), found


def _record_at_once(bridge: MetricsBridge, observations: list[Observation]) -> None:
    """The bridge's earlier ``record_duration``: the SDK's ``record`` on the caller's thread."""
    for metric, labels, seconds, span_context in observations:
        context = None
        if span_context is not None and span_context.is_valid:
            context = trace.set_span_in_context(NonRecordingSpan(span_context))
        bridge.histograms[metric].record(seconds, labels, context=context)


def _points(reader: InMemoryMetricReader) -> list[tuple[Any, ...]]:
    """Every histogram point without timestamps: metric, attributes, count, sum, buckets, min, max, exemplars."""
    data = reader.get_metrics_data()
    out = []
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if not metric.name.endswith(".duration"):
                    continue
                for p in metric.data.data_points:
                    exemplars = sorted(
                        (e.trace_id, e.span_id, e.value, tuple(sorted((e.filtered_attributes or {}).items())))
                        for e in p.exemplars
                    )
                    out.append(
                        (
                            metric.name,
                            tuple(sorted(p.attributes.items())),
                            p.count,
                            p.sum,
                            tuple(p.bucket_counts),
                            tuple(p.explicit_bounds),
                            p.min,
                            p.max,
                            tuple(exemplars),
                        )
                    )
    return sorted(out, key=repr)


@settings(max_examples=60, deadline=None)
@given(_OBSERVATIONS, _OBSERVATIONS, st.booleans())
def test_deferred_durations_export_the_same_points_as_recorded_at_once(
    first: list[Observation], second: list[Observation], batched: bool
) -> None:
    before, (before_reader,) = _bridge()
    after, (after_reader,) = _bridge()
    for observations in (first, second):  # two collections: what each one exports
        _record_at_once(before, observations)
        if batched:
            for metric, labels, seconds, span_context in observations:
                after.record_durations(metric, [(labels, seconds, span_context)])
        else:
            for metric, labels, seconds, span_context in observations:
                after.record_duration(metric, labels, seconds, span_context)
        assert _points(after_reader) == _points(before_reader)


@settings(max_examples=30, deadline=None)
@given(_OBSERVATIONS.filter(bool))
def test_a_batch_is_the_same_as_its_durations_one_by_one(observations: list[Observation]) -> None:
    one, (one_reader,) = _bridge()
    many, (many_reader,) = _bridge()
    for metric, labels, seconds, span_context in observations:
        one.record_duration(metric, labels, seconds, span_context)
    metric = observations[0][0]
    many.record_durations(metric, [(labels, s, sc) for m, labels, s, sc in observations if m == metric])
    for m, labels, seconds, span_context in observations:
        if m != metric:
            many.record_duration(m, labels, seconds, span_context)
    assert _points(many_reader) == _points(one_reader)


def test_every_reader_of_the_provider_gets_each_duration_once() -> None:
    bridge, readers = _bridge(readers=2)
    span = SpanContext(0x1234, 0x99, False, TraceFlags(1))
    for i in range(5):
        bridge.record_duration(names.TASK_RUN_DURATION, {"flow": "f", "task": "t"}, 0.5 * i, span)
    first = _points(readers[0])
    assert first and first[0][2] == 5
    assert _points(readers[1]) == first


def test_close_hands_the_waiting_durations_to_the_sdk_and_takes_no_more() -> None:
    bridge, (reader,) = _bridge()
    bridge.record_duration(names.FLOW_RUN_DURATION, {"flow": "f", "kind": ""}, 3.0, None)
    bridge.close()
    assert not bridge._pending
    bridge.record_duration(names.FLOW_RUN_DURATION, {"flow": "f", "kind": ""}, 4.0, None)
    bridge.record_durations(names.FLOW_RUN_DURATION, [({"flow": "f", "kind": ""}, 5.0, None)])
    (point,) = _points(reader)
    assert (point[2], point[3]) == (1, 3.0)


def test_a_full_queue_is_recorded_by_the_call_that_fills_it() -> None:
    metrics = SynthObsMetrics(CollectorRegistry())
    provider = MeterProvider()  # no reader: nothing ever collects
    bridge = MetricsBridge(provider.get_meter("test"), lambda: metrics)
    bridge.MAX_PENDING = 10
    for i in range(25):
        bridge.record_duration(names.TASK_RUN_DURATION, {"flow": "f", "task": "t"}, float(i), None)
    assert len(bridge._pending) == 5
    bridge.record_durations(names.TASK_RUN_DURATION, [({"flow": "f", "task": "t"}, 1.0, None)] * 5)
    assert not bridge._pending


def test_unknown_metrics_are_ignored() -> None:
    bridge, (reader,) = _bridge()
    bridge.record_duration("no_such_metric", {}, 1.0, None)
    bridge.record_durations("no_such_metric", [({}, 1.0, None)])
    assert not bridge._pending and _points(reader) == []


def test_durations_recorded_while_collections_run_are_each_exported_once() -> None:
    bridge, (reader,) = _bridge()
    threads, per_thread = 4, 500
    counts: list[int] = []
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            counts.append(sum(p[2] for p in _points(reader)))

    def record() -> None:
        for i in range(per_thread):
            bridge.record_duration(names.TASK_RUN_DURATION, {"flow": "f", "task": "t"}, float(i % 9), None)

    collector = threading.Thread(target=collect)
    collector.start()
    workers = [threading.Thread(target=record) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    collector.join()
    (point,) = _points(reader)
    assert point[2] == threads * per_thread  # cumulative: every duration, none twice
    assert counts == sorted(counts)


def test_a_duration_given_no_span_takes_its_exemplar_from_the_callers_current_span() -> None:
    """As ``record`` made at once would: the SDK reads the current context, which the collecting thread does
    not have, so the bridge keeps the caller's."""
    before, (before_reader,) = _bridge()
    after, (after_reader,) = _bridge()
    ambient = SpanContext(0xABC, 0xDEF, False, TraceFlags(1))
    labels = {"flow": "f", "task": "a"}
    with trace.use_span(NonRecordingSpan(ambient)):
        before.histograms[names.TASK_RUN_DURATION].record(1.5, labels)
        after.record_duration(names.TASK_RUN_DURATION, labels, 1.5, None)
        after.record_durations(names.TASK_RUN_DURATION, [(labels, 2.5, SpanContext(0, 0, False))])
        before.histograms[names.TASK_RUN_DURATION].record(2.5, labels)
    found: list[list[tuple[Any, ...]]] = []
    collected = threading.Thread(target=lambda: found.append(_points(after_reader)))  # outside the span
    collected.start()
    collected.join()
    assert found == [_points(before_reader)]
    exemplars = [e for p in found[0] for e in p[-1]]
    assert exemplars and {e[0] for e in exemplars} == {0xABC}
