"""The synthobs metric catalog on its own registry.

``REGISTRY`` is a plain ``CollectorRegistry``: importing this module registers
nothing anywhere else. ``SynthObsMetrics`` builds one collector per metric spec
(``catalog.METRICS``: each metric's one definition), on first use by the
instrumentation (``Instrumentation.metrics``) with the configured prefix
(default ``synthobs``).

Example:
    ```python
    from prometheus_client import generate_latest
    from prefect_synthobs.metrics import REGISTRY

    print(generate_latest(REGISTRY).decode())
    ```
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, Generic, Protocol, TypeVar, overload

from opentelemetry.trace import SpanContext
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from prefect_synthobs import catalog as names
from prefect_synthobs._log import get_logger

REGISTRY = CollectorRegistry(auto_describe=True)

RunsInProgress = Callable[[], Iterable[tuple[str, float]]]
"""Returns ``(flow name, start as Unix time)`` for each observed flow run in progress."""


class DurationListener(Protocol):
    """Told of every duration observed, with the span of the run it measured (OTLP histograms)."""

    def __call__(
        self, metric: str, labels: dict[str, str], seconds: float, span_context: SpanContext | None
    ) -> None: ...


def exemplar_of(span_context: SpanContext | None) -> dict[str, str] | None:
    """The exemplar labels (``trace_id``, ``span_id``) of a sampled span, else ``None``.

    An unsampled trace never reaches a backend: an exemplar pointing at it would lead nowhere.
    """
    if span_context is None or not span_context.is_valid or not span_context.trace_flags.sampled:
        return None
    return {"trace_id": format(span_context.trace_id, "032x"), "span_id": format(span_context.span_id, "016x")}


class InProgressCollector:
    """``flow_runs_in_progress{flow}`` and ``flow_run_oldest_in_progress_age_seconds{flow}``, read at collection.

    A flow seen in progress once keeps its series at 0 afterwards, so a pushed or
    scraped ``1`` never outlives its run.

    Args:
        prefix: Metric name prefix.
        clock: Unix time now (tests pass their own).
    """

    METRICS: Final = (names.FLOW_RUNS_IN_PROGRESS, names.FLOW_RUN_OLDEST_IN_PROGRESS_AGE)
    """The catalog metrics this collector serves: (runs in progress, age of the oldest)."""

    def __init__(self, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.count_name, self.age_name = (f"{prefix}_{name}" for name in self.METRICS)
        self.source: RunsInProgress = lambda: ()
        self.clock = clock
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        count, age = (names.METRIC_SPECS[name] for name in self.METRICS)
        return (
            GaugeMetricFamily(self.count_name, count.help, labels=list(count.labels)),
            GaugeMetricFamily(self.age_name, age.help, labels=list(age.labels), unit="seconds"),
        )

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def snapshot(self) -> dict[str, tuple[int, float]]:
        """``{flow: (runs in progress, age of the oldest in seconds)}``, zeros for flows seen before."""
        now = self.clock()
        by_flow: dict[str, tuple[int, float]] = {}
        for flow, started in self.source():
            count, age = by_flow.get(flow, (0, 0.0))
            by_flow[flow] = (count + 1, max(age, now - started, 0.0))
        with self._lock:
            self._seen.update(by_flow)
            return {flow: by_flow.get(flow, (0, 0.0)) for flow in sorted(self._seen)}

    def samples(self, name: str) -> list[tuple[float, dict[str, str]]]:
        """``[(value, labels)]`` of one of ``METRICS`` now."""
        index = self.METRICS.index(name)
        return [(values[index], {"flow": flow}) for flow, values in self.snapshot().items()]

    def collect(self) -> Iterator[Metric]:
        count, age = self._families()
        for flow, (n, oldest) in self.snapshot().items():
            count.add_metric([flow], n)
            age.add_metric([flow], oldest)
        yield count
        yield age


Collector = Counter | Gauge | Histogram | InProgressCollector
_C = TypeVar("_C", Counter, Gauge, Histogram)
_TYPES: Final = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


def build_collector(spec: names.MetricSpec, prefix: str, registry: CollectorRegistry) -> Counter | Gauge | Histogram:
    """The ``prometheus_client`` collector of ``spec``, registered on ``registry`` as ``<prefix>_<name>``."""
    extra = {"buckets": spec.buckets} if spec.kind == "histogram" else {}
    collector: Counter | Gauge | Histogram = _TYPES[spec.kind](
        f"{prefix}_{spec.name}", spec.help, list(spec.labels), registry=registry, **extra
    )
    return collector


class _Alias(Generic[_C]):
    """A ``SynthObsMetrics`` attribute naming one catalog collector (``m.flow_runs``)."""

    def __init__(self, name: str, kind: type[_C]) -> None:
        self.name = name
        self.kind: type[_C] = kind

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> _Alias[_C]: ...
    @overload
    def __get__(self, obj: SynthObsMetrics, owner: type[Any]) -> _C: ...
    def __get__(self, obj: SynthObsMetrics | None, owner: type[Any]) -> _Alias[_C] | _C:
        return self if obj is None else obj.collector(self.name, self.kind)


class SynthObsMetrics:
    """Every synthobs metric, registered on one registry: one collector per ``catalog.METRICS`` spec.

    Args:
        registry: Where the collectors are registered.
        prefix: Prefix of every metric name (``synthobs`` gives ``synthobs_...``).
        clock: Unix time now, for the age of the runs in progress (tests pass their own).
    """

    # The collectors by the attribute names the recording code uses; a new metric needs
    # none: ``m.counter(names.FOO_TOTAL)`` (or ``gauge``, ``histogram``) reaches it.
    flow_runs = _Alias(names.FLOW_RUNS_TOTAL, Counter)
    flow_run_duration = _Alias(names.FLOW_RUN_DURATION, Histogram)
    task_runs = _Alias(names.TASK_RUNS_TOTAL, Counter)
    task_run_duration = _Alias(names.TASK_RUN_DURATION, Histogram)
    task_retries = _Alias(names.TASK_RETRIES_TOTAL, Counter)
    rows_dropped = _Alias(names.ROWS_DROPPED_TOTAL, Counter)
    errors = _Alias(names.ERRORS_TOTAL, Counter)
    last_success = _Alias(names.LAST_SUCCESS, Gauge)
    generation_rows = _Alias(names.GENERATION_ROWS_TOTAL, Counter)
    generation_rows_per_second = _Alias(names.GENERATION_ROWS_PER_SECOND, Gauge)
    training_epochs = _Alias(names.TRAINING_EPOCHS_TOTAL, Counter)
    training_loss = _Alias(names.TRAINING_LOSS, Gauge)
    training_epoch_duration = _Alias(names.TRAINING_EPOCH_DURATION, Histogram)
    training_fits = _Alias(names.TRAINING_FITS_TOTAL, Counter)
    training_alerts = _Alias(names.TRAINING_ALERTS_TOTAL, Counter)
    quality_score = _Alias(names.QUALITY_SCORE, Gauge)
    quality_gate_checks = _Alias(names.QUALITY_GATE_CHECKS_TOTAL, Counter)
    privacy_spent = _Alias(names.PRIVACY_EPSILON_SPENT_TOTAL, Counter)
    privacy_remaining = _Alias(names.PRIVACY_EPSILON_REMAINING, Gauge)
    privacy_checks = _Alias(names.PRIVACY_BUDGET_CHECKS_TOTAL, Counter)
    gpu_utilization = _Alias(names.GPU_UTILIZATION, Gauge)
    gpu_memory_used = _Alias(names.GPU_MEMORY_USED, Gauge)
    gpu_memory_total = _Alias(names.GPU_MEMORY_TOTAL, Gauge)
    gpu_power = _Alias(names.GPU_POWER, Gauge)
    gpu_temperature = _Alias(names.GPU_TEMPERATURE, Gauge)
    gpu_energy = _Alias(names.GPU_ENERGY_TOTAL, Counter)

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        prefix: str = "synthobs",
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.prefix = prefix
        self.duration_listener: DurationListener | None = None
        """Also told of every duration (the OTLP histograms); set by the instrumentation."""
        self.in_progress = InProgressCollector(prefix, clock)
        by_name: dict[str, Collector] = {}
        for spec in names.METRICS:  # registered in catalog order: the exposition's order
            if spec.name in InProgressCollector.METRICS:
                by_name[spec.name] = self.in_progress
            else:
                by_name[spec.name] = build_collector(spec, prefix, registry)
        registry.register(self.in_progress)
        self.by_name = by_name
        """Each collector by its catalog name (without the prefix); the two in-progress metrics share one."""
        self._collectors: list[Collector] = list(dict.fromkeys(by_name.values()))
        self._children: dict[tuple[str, tuple[Any, ...]], Any] = {}
        """Each histogram's labelled child by ``(metric, label items)``: a task's duration finds it with one
        lookup instead of ``labels(**labels)``'s checks and sorting (checked still current before use)."""

    def collector(self, name: str, kind: type[_C]) -> _C:
        """The collector of catalog metric ``name``, checked to be a ``kind``."""
        found = self.by_name[name]
        if not isinstance(found, kind):
            raise TypeError(f"{name} is a {type(found).__name__}, not a {kind.__name__}")
        return found

    def counter(self, name: str) -> Counter:
        """The counter of catalog metric ``name`` (e.g. ``names.FLOW_RUNS_TOTAL``)."""
        return self.collector(name, Counter)

    def gauge(self, name: str) -> Gauge:
        """The gauge of catalog metric ``name``."""
        return self.collector(name, Gauge)

    def histogram(self, name: str) -> Histogram:
        """The histogram of catalog metric ``name`` (observe it with ``observe_duration`` for OTLP too)."""
        return self.collector(name, Histogram)

    def samples(self, name: str) -> list[tuple[float, dict[str, str]]]:
        """``[(value, labels)]`` of every series of counter or gauge ``name`` now (a counter's ``_total``)."""
        found = self.by_name[name]
        if isinstance(found, InProgressCollector):
            return found.samples(name)
        out: list[tuple[float, dict[str, str]]] = []
        for family in found.collect():
            wanted = family.name + "_total" if family.type == "counter" else family.name
            out.extend((float(s.value), dict(s.labels)) for s in family.samples if s.name == wanted)
        return out

    def observe_flow_duration(
        self, flow: str, kind: str, seconds: float, span_context: SpanContext | None = None
    ) -> None:
        """A flow run's duration, with its span as the exemplar (OpenMetrics and OTLP)."""
        self.observe_duration(names.FLOW_RUN_DURATION, {"flow": flow, "kind": kind}, seconds, span_context)

    def observe_task_duration(
        self, flow: str, task: str, seconds: float, span_context: SpanContext | None = None
    ) -> None:
        """A task run's duration, with its span as the exemplar (OpenMetrics and OTLP)."""
        self.observe_duration(names.TASK_RUN_DURATION, {"flow": flow, "task": task}, seconds, span_context)

    def observe_epoch_duration(
        self, flow: str, model_type: str, seconds: float, span_context: SpanContext | None = None
    ) -> None:
        """A training epoch's duration, with its span as the exemplar (OpenMetrics and OTLP)."""
        self.observe_duration(
            names.TRAINING_EPOCH_DURATION, {"flow": flow, "model_type": model_type}, seconds, span_context
        )

    def observe_duration(
        self, metric: str, labels: dict[str, str], seconds: float, span_context: SpanContext | None = None
    ) -> None:
        """One observation of histogram ``metric``, with its span as the exemplar, on Prometheus and OTLP."""
        self._histogram_child(metric, labels).observe(seconds, exemplar=exemplar_of(span_context))
        listener = self.duration_listener
        if listener is not None:
            try:
                listener(metric, labels, seconds, span_context)
            except Exception as exc:  # the OTLP side never costs the Prometheus side, nor the run
                get_logger("telemetry.metrics").debug("synthobs: duration not recorded on OTLP: %s", exc)

    def _histogram_child(self, metric: str, labels: dict[str, str]) -> Any:
        """``self.histogram(metric).labels(**labels)``, remembered per label set while the collector still
        holds that child (a ``remove`` or ``clear`` on it makes the next call ask the collector again)."""
        key = (metric, tuple(labels.items()))
        child = self._children.get(key)
        if child is not None and self._holds(metric, child):
            return child
        child = self.histogram(metric).labels(**labels)
        self._children[key] = child
        return child

    def labelled(self, metric: str, *values: str) -> Any:
        """``collector.labels(*values)`` of catalog counter or gauge ``metric``, remembered like
        ``_histogram_child``: the per-task-run counters find their series with one lookup."""
        key = (metric, values)
        child = self._children.get(key)
        if child is not None and self._holds(metric, child):
            return child
        collector = self.by_name[metric]
        if not isinstance(collector, (Counter, Gauge)):
            raise TypeError(f"{metric} is a {type(collector).__name__}, not a counter or gauge")
        child = collector.labels(*values)
        self._children[key] = child
        return child

    def _holds(self, metric: str, child: Any) -> bool:
        """The collector of ``metric`` still holds ``child`` as its series (not removed or cleared since)."""
        held = getattr(self.by_name[metric], "_metrics", None)
        return held is not None and held.get(child._labelvalues) is child

    def unregister(self) -> None:
        """Remove exactly the collectors this object registered."""
        for collector in self._collectors:
            with contextlib.suppress(KeyError):
                self.registry.unregister(collector)


def label(value: object | None) -> str:
    """A label value: ``None`` becomes the empty string (an absent label)."""
    return "" if value is None else str(value)
