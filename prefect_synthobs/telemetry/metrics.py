"""The synthobs metric catalog on its own registry.

``REGISTRY`` is a plain ``CollectorRegistry``: importing this module registers
nothing anywhere else. The collectors are created on first use by
the instrumentation (``Instrumentation.metrics``) with the configured prefix (default ``synthobs``).

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
from typing import Any, Protocol

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

    def __init__(self, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.count_name = f"{prefix}_{names.FLOW_RUNS_IN_PROGRESS}"
        self.age_name = f"{prefix}_{names.FLOW_RUN_OLDEST_IN_PROGRESS_AGE}"
        self.source: RunsInProgress = lambda: ()
        self.clock = clock
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(self.count_name, "Observed flow runs in progress.", labels=["flow"]),
            GaugeMetricFamily(
                self.age_name,
                "Age of the oldest observed flow run in progress (0 when none is).",
                labels=["flow"],
                unit="seconds",
            ),
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

    def collect(self) -> Iterator[Metric]:
        count, age = self._families()
        for flow, (n, oldest) in self.snapshot().items():
            count.add_metric([flow], n)
            age.add_metric([flow], oldest)
        yield count
        yield age


class SynthObsMetrics:
    """Every synthobs metric, registered on one registry.

    Args:
        registry: Where the collectors are registered.
        prefix: Prefix of every metric name (``synthobs`` gives ``synthobs_...``).
    """

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
        p = f"{prefix}_"
        self.flow_runs = Counter(
            p + names.FLOW_RUNS_TOTAL,
            "Finished flow runs by final state.",
            ["flow", "kind", "state"],
            registry=registry,
        )
        self.flow_run_duration = Histogram(
            p + names.FLOW_RUN_DURATION,
            "Flow run wall time in seconds.",
            ["flow", "kind"],
            buckets=names.DURATION_BUCKETS,
            registry=registry,
        )
        self.task_runs = Counter(
            p + names.TASK_RUNS_TOTAL,
            "Finished task runs by final state.",
            ["flow", "task", "state"],
            registry=registry,
        )
        self.task_run_duration = Histogram(
            p + names.TASK_RUN_DURATION,
            "Task run wall time in seconds (retries included).",
            ["flow", "task"],
            buckets=names.DURATION_BUCKETS,
            registry=registry,
        )
        self.task_retries = Counter(
            p + names.TASK_RETRIES_TOTAL,
            "Task retries (run attempts beyond the first).",
            ["flow", "task"],
            registry=registry,
        )
        self.rows_dropped = Counter(
            p + names.ROWS_DROPPED_TOTAL,
            "Health rows dropped because the spool (or memory, when the spool is unwritable) was full.",
            ["table"],
            registry=registry,
        )
        self.errors = Counter(
            p + names.ERRORS_TOTAL,
            "Failed or crashed flow runs by exception type.",
            ["flow", "kind", "error_type"],
            registry=registry,
        )
        self.last_success = Gauge(
            p + names.LAST_SUCCESS,
            "Unix time of the flow's last successful run.",
            ["flow"],
            registry=registry,
        )
        self.generation_rows = Counter(
            p + names.GENERATION_ROWS_TOTAL,
            "Synthetic rows generated.",
            ["flow", "table", "model_type"],
            registry=registry,
        )
        self.generation_rows_per_second = Gauge(
            p + names.GENERATION_ROWS_PER_SECOND,
            "Rows per second of the last generation run.",
            ["flow", "table", "model_type"],
            registry=registry,
        )
        self.training_epochs = Counter(
            p + names.TRAINING_EPOCHS_TOTAL,
            "Training epochs completed.",
            ["flow", "model_type"],
            registry=registry,
        )
        self.training_loss = Gauge(
            p + names.TRAINING_LOSS,
            "Loss at the last recorded epoch.",
            ["flow", "model_type", "loss_type"],
            registry=registry,
        )
        self.training_epoch_duration = Histogram(
            p + names.TRAINING_EPOCH_DURATION,
            "Training epoch wall time in seconds (recorded by autolog as each epoch ends).",
            ["flow", "model_type"],
            buckets=names.EPOCH_BUCKETS,
            registry=registry,
        )
        self.training_fits = Counter(
            p + names.TRAINING_FITS_TOTAL,
            "Generator fits that ended, by library and status (completed, failed, stopped).",
            ["flow", "model_type", "library", "status"],
            registry=registry,
        )
        self.training_alerts = Counter(
            p + names.TRAINING_ALERTS_TOTAL,
            "Training health checks that tripped (nan_loss, divergence, plateau, slow_epoch).",
            ["flow", "model_type", "check"],
            registry=registry,
        )
        self.quality_score = Gauge(
            p + names.QUALITY_SCORE,
            "Last quality score (0 to 1) per table, metric and model type (two generators of one table "
            "never overwrite each other; no model id label: every fit is a new id).",
            ["table", "metric", "model_type"],
            registry=registry,
        )
        self.quality_gate_checks = Counter(
            p + names.QUALITY_GATE_CHECKS_TOTAL,
            "Quality scores checked against a threshold.",
            ["table", "gate", "result"],
            registry=registry,
        )
        self.privacy_spent = Counter(
            p + names.PRIVACY_EPSILON_SPENT_TOTAL,
            "Privacy budget (epsilon) spent.",
            ["dataset"],
            registry=registry,
        )
        self.privacy_remaining = Gauge(
            p + names.PRIVACY_EPSILON_REMAINING,
            "Privacy budget (epsilon) left after the last check.",
            ["dataset"],
            registry=registry,
        )
        self.privacy_checks = Counter(
            p + names.PRIVACY_BUDGET_CHECKS_TOTAL,
            "Privacy budget checks by result (allowed, denied).",
            ["dataset", "result"],
            registry=registry,
        )
        gpu_labels = ["gpu", "uuid", "model"]
        self.gpu_utilization = Gauge(
            p + names.GPU_UTILIZATION,
            "GPU utilisation (0 to 1) at the last sample.",
            gpu_labels,
            registry=registry,
        )
        self.gpu_memory_used = Gauge(
            p + names.GPU_MEMORY_USED,
            "GPU memory in use at the last sample.",
            gpu_labels,
            registry=registry,
        )
        self.gpu_memory_total = Gauge(
            p + names.GPU_MEMORY_TOTAL,
            "GPU memory installed.",
            gpu_labels,
            registry=registry,
        )
        self.gpu_power = Gauge(
            p + names.GPU_POWER,
            "GPU power draw at the last sample.",
            gpu_labels,
            registry=registry,
        )
        self.gpu_temperature = Gauge(
            p + names.GPU_TEMPERATURE,
            "GPU core temperature at the last sample.",
            gpu_labels,
            registry=registry,
        )
        self.gpu_energy = Counter(
            p + names.GPU_ENERGY_TOTAL,
            "GPU energy used while sampled (from the device's energy counter).",
            gpu_labels,
            registry=registry,
        )
        self.by_name: dict[str, Counter | Gauge | Histogram] = {
            names.FLOW_RUNS_TOTAL: self.flow_runs,
            names.FLOW_RUN_DURATION: self.flow_run_duration,
            names.TASK_RUNS_TOTAL: self.task_runs,
            names.TASK_RUN_DURATION: self.task_run_duration,
            names.TASK_RETRIES_TOTAL: self.task_retries,
            names.ERRORS_TOTAL: self.errors,
            names.LAST_SUCCESS: self.last_success,
            names.GENERATION_ROWS_TOTAL: self.generation_rows,
            names.GENERATION_ROWS_PER_SECOND: self.generation_rows_per_second,
            names.TRAINING_EPOCHS_TOTAL: self.training_epochs,
            names.TRAINING_LOSS: self.training_loss,
            names.TRAINING_EPOCH_DURATION: self.training_epoch_duration,
            names.TRAINING_FITS_TOTAL: self.training_fits,
            names.TRAINING_ALERTS_TOTAL: self.training_alerts,
            names.QUALITY_SCORE: self.quality_score,
            names.QUALITY_GATE_CHECKS_TOTAL: self.quality_gate_checks,
            names.PRIVACY_EPSILON_SPENT_TOTAL: self.privacy_spent,
            names.PRIVACY_EPSILON_REMAINING: self.privacy_remaining,
            names.PRIVACY_BUDGET_CHECKS_TOTAL: self.privacy_checks,
            names.GPU_UTILIZATION: self.gpu_utilization,
            names.GPU_MEMORY_USED: self.gpu_memory_used,
            names.GPU_MEMORY_TOTAL: self.gpu_memory_total,
            names.GPU_POWER: self.gpu_power,
            names.GPU_TEMPERATURE: self.gpu_temperature,
            names.GPU_ENERGY_TOTAL: self.gpu_energy,
            names.ROWS_DROPPED_TOTAL: self.rows_dropped,
        }
        """Each collector by its catalog name (without the prefix)."""
        self.in_progress = InProgressCollector(prefix, clock)
        registry.register(self.in_progress)
        self._collectors: list[Any] = [self.in_progress, *self.by_name.values()]

    def observe_flow_duration(
        self, flow: str, kind: str, seconds: float, span_context: SpanContext | None = None
    ) -> None:
        """A flow run's duration, with its span as the exemplar (OpenMetrics and OTLP)."""
        self._observe(
            self.flow_run_duration, names.FLOW_RUN_DURATION, {"flow": flow, "kind": kind}, seconds, span_context
        )

    def observe_task_duration(
        self, flow: str, task: str, seconds: float, span_context: SpanContext | None = None
    ) -> None:
        """A task run's duration, with its span as the exemplar (OpenMetrics and OTLP)."""
        self._observe(
            self.task_run_duration, names.TASK_RUN_DURATION, {"flow": flow, "task": task}, seconds, span_context
        )

    def observe_epoch_duration(
        self, flow: str, model_type: str, seconds: float, span_context: SpanContext | None = None
    ) -> None:
        """A training epoch's duration, with its span as the exemplar (OpenMetrics and OTLP)."""
        self._observe(
            self.training_epoch_duration,
            names.TRAINING_EPOCH_DURATION,
            {"flow": flow, "model_type": model_type},
            seconds,
            span_context,
        )

    def _observe(
        self,
        histogram: Histogram,
        metric: str,
        labels: dict[str, str],
        seconds: float,
        span_context: SpanContext | None,
    ) -> None:
        histogram.labels(**labels).observe(seconds, exemplar=exemplar_of(span_context))
        listener = self.duration_listener
        if listener is not None:
            try:
                listener(metric, labels, seconds, span_context)
            except Exception as exc:  # the OTLP side never costs the Prometheus side, nor the run
                get_logger("telemetry.metrics").debug("synthobs: duration not recorded on OTLP: %s", exc)

    def unregister(self) -> None:
        """Remove exactly the collectors this object registered."""
        for collector in self._collectors:
            with contextlib.suppress(KeyError):
                self.registry.unregister(collector)


def label(value: object | None) -> str:
    """A label value: ``None`` becomes the empty string (an absent label)."""
    return "" if value is None else str(value)
