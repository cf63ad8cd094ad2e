"""The metrics and span sinks of the recording seam: each run event's metric updates and span attributes.

``MetricsSink`` is the only code that updates synthobs' metrics for run events
(the metric set, ``telemetry/metrics.py``, is built from the catalog's
``MetricSpec``s); ``SpanSink`` the only code that puts a run's facts on its
span. Both are pure of Prefect and of I/O: they take events
(``health/events.py``) and touch only the metric set and the span the event
carries. The third sink, the health rows, is ``health/sink.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from prefect_synthobs import catalog
from prefect_synthobs.health.events import (
    EpochEnded,
    FlowRunEnded,
    GpuLost,
    GpuSampled,
    ModelFitted,
    PrivacyChecked,
    QualityChecked,
    RowsGenerated,
    TaskRunEnded,
    TrainingAlerted,
)
from prefect_synthobs.telemetry.metrics import SynthObsMetrics, label


def gpu_span_attributes(gpu: Mapping[str, Any]) -> dict[str, Any]:
    """The flow span's GPU summary attributes (the non-null ``flow_runs`` GPU columns)."""
    pairs = (
        (catalog.ATTR_GPU_UTIL_MEAN, gpu.get("gpu_util_mean")),
        (catalog.ATTR_GPU_UTIL_MAX, gpu.get("gpu_util_max")),
        (catalog.ATTR_GPU_MEMORY_PEAK, gpu.get("gpu_memory_peak_bytes")),
        (catalog.ATTR_GPU_ENERGY, gpu.get("gpu_energy_j")),
    )
    return {key: value for key, value in pairs if value is not None}


class MetricsSink:
    """Metric updates for run events, on ``metrics``."""

    loses = "metric updates"

    def __init__(self, metrics: SynthObsMetrics) -> None:
        self.metrics = metrics

    def handle(self, event: Any) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self.metrics, event)


def _flow_ended(m: SynthObsMetrics, e: FlowRunEnded) -> None:
    flow, kind = label(e.flow_name), label(e.kind)
    m.flow_runs.labels(flow, kind, e.state_type).inc()
    if e.duration_s is not None:
        exemplar = e.run_span.get_span_context() if e.run_span is not None else None
        m.observe_flow_duration(flow, kind, e.duration_s, exemplar)
    if e.state_type == "COMPLETED" and e.end_time is not None:
        m.last_success.labels(flow).set(e.end_time.timestamp())
    elif e.state_type in ("FAILED", "CRASHED"):
        m.errors.labels(flow, kind, label(e.error_type)).inc()
    if e.duration_s:
        for table, count in e.rows_by_table.items():
            m.generation_rows_per_second.labels(
                flow, label(table if table is not None else e.table_name), label(e.model_type)
            ).set(count / e.duration_s)


def _task_ended(m: SynthObsMetrics, e: TaskRunEnded) -> None:
    flow, task = label(e.flow_name), label(e.task_name)
    m.labelled(catalog.TASK_RUNS_TOTAL, flow, task, e.state_type).inc()
    if e.duration_s is not None:
        m.observe_task_duration(flow, task, e.duration_s, e.span_context)
    if e.run_count > 1:
        m.task_retries.labels(flow, task).inc(e.run_count - 1)


def _rows(m: SynthObsMetrics, e: RowsGenerated) -> None:
    # every row generated, retried attempts' included: a counter never goes down (the run rows count the
    # attempt that finished)
    m.generation_rows.labels(label(e.flow_name), label(e.table_name), label(e.model_type)).inc(e.n)


def _epoch(m: SynthObsMetrics, e: EpochEnded) -> None:
    flow, model_type = label(e.flow_name), label(e.model_type)
    m.training_epochs.labels(flow, model_type).inc()
    for loss_type, value in e.losses.items():
        m.training_loss.labels(flow, model_type, loss_type).set(value)
    if e.epoch_seconds is not None:
        m.observe_epoch_duration(flow, model_type, e.epoch_seconds, e.span_context)


def _fitted(m: SynthObsMetrics, e: ModelFitted) -> None:
    m.training_fits.labels(label(e.flow_name), label(e.model_type), label(e.library), label(e.status)).inc()


def _alerted(m: SynthObsMetrics, e: TrainingAlerted) -> None:
    m.training_alerts.labels(label(e.flow_name), label(e.model_type), e.check).inc()


def _quality(m: SynthObsMetrics, e: QualityChecked) -> None:
    # no model_id label: an id is new at every fit, a Prometheus series per fit never seen again
    m.quality_score.labels(label(e.table_name), e.metric, label(e.model_type)).set(e.score)
    if e.passed is not None:
        gate = e.gate if e.gate is not None else e.metric
        m.quality_gate_checks.labels(label(e.table_name), gate, "pass" if e.passed else "fail").inc()


def _privacy(m: SynthObsMetrics, e: PrivacyChecked) -> None:
    m.privacy_checks.labels(e.dataset, "allowed" if e.allowed else "denied").inc()
    m.privacy_remaining.labels(e.dataset).set(e.remaining)
    if e.allowed:
        m.privacy_spent.labels(e.dataset).inc(e.epsilon)


def _gpu_sampled(m: SynthObsMetrics, e: GpuSampled) -> None:
    for r in e.readings:
        labels = (str(r.index), r.uuid, r.name)
        for gauge, value in (
            (m.gpu_utilization, r.utilization),
            (m.gpu_memory_used, r.memory_used_bytes),
            (m.gpu_memory_total, r.memory_total_bytes),
            (m.gpu_power, r.power_w),
            (m.gpu_temperature, r.temperature_c),
        ):
            if value is not None:
                gauge.labels(*labels).set(value)
        joules = e.energy_j.get(r.uuid)
        if joules:
            m.gpu_energy.labels(*labels).inc(joules)


def _gpu_lost(m: SynthObsMetrics, e: GpuLost) -> None:
    device = e.device
    for gauge in (m.gpu_utilization, m.gpu_memory_used, m.gpu_power, m.gpu_temperature):
        with contextlib.suppress(KeyError):
            gauge.remove(str(device.index), device.uuid, device.name)


_HANDLERS: dict[type, Any] = {
    FlowRunEnded: _flow_ended,
    TaskRunEnded: _task_ended,
    RowsGenerated: _rows,
    EpochEnded: _epoch,
    ModelFitted: _fitted,
    TrainingAlerted: _alerted,
    QualityChecked: _quality,
    PrivacyChecked: _privacy,
    GpuSampled: _gpu_sampled,
    GpuLost: _gpu_lost,
}


class SpanSink:
    """A finished flow run's facts on its span (when the event carries one that still records)."""

    loses = "span attributes"

    def handle(self, event: Any) -> None:
        if not isinstance(event, FlowRunEnded) or event.run_span is None:
            return
        span = event.run_span
        span.set_attributes(dict(event.span_attributes))
        span.set_attribute(catalog.ATTR_ROWS, event.rows)
        if event.rows_per_s is not None:
            span.set_attribute(catalog.ATTR_ROWS_PER_SECOND, event.rows_per_s)
        if event.gpu:
            span.set_attributes(gpu_span_attributes(event.gpu))
