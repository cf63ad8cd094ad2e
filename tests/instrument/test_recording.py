"""The recording seam and its metrics and span sinks, without a Prefect server: every event reaches every
sink; a failing sink stops no other; each event moves exactly the metrics it names."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from prefect_synthobs import catalog
from prefect_synthobs.gpu.nvml import GpuDevice, GpuReading
from prefect_synthobs.health import events
from prefect_synthobs.instrument.recording import Recording
from prefect_synthobs.instrument.sinks import MetricsSink, SpanSink
from prefect_synthobs.telemetry.metrics import SynthObsMetrics, label

T0 = datetime(2026, 12, 3, 12, tzinfo=timezone.utc)


class Collect:
    def __init__(self, fail: bool = False) -> None:
        self.seen: list[Any] = []
        self.fail = fail

    def handle(self, event: Any) -> None:
        self.seen.append(event)
        if self.fail:
            raise RuntimeError(getattr(self, "error", "sink down"))


def metrics() -> tuple[SynthObsMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return SynthObsMetrics(registry=registry, prefix="t"), registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_every_event_reaches_every_sink_and_a_failing_sink_costs_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, broken, last = Collect(), Collect(fail=True), Collect()
    broken.loses = "test rows"  # type: ignore[attr-defined]
    m, _ = metrics()
    recording = Recording(None, m, redact_pii=True, sinks=[first, broken, last])  # type: ignore[arg-type]
    events_sent = [events.RowsGenerated(n=n, flow_name="f", table_name="t", model_type=None) for n in (1, 2, 3)]
    with caplog.at_level(logging.WARNING, logger="prefect.synthobs"):
        for event in events_sent:
            recording.handle(event)  # never raises: the caller (a flow's end) goes on to flush and export
    assert first.seen == events_sent and broken.seen == events_sent and last.seen == events_sent
    (warning,) = [r.getMessage() for r in caplog.records if "failed on" in r.getMessage()]
    assert "Collect failed on RowsGenerated (RuntimeError: sink down" in warning and "test rows are lost" in warning
    broken.fail = False
    recording.handle(events_sent[0])  # recovered: the next failure is news again
    broken.fail = True
    broken.error = f"token ghp_{'a' * 36} for ann@example.com"  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="prefect.synthobs"):
        recording.handle(events_sent[0])
    warnings = [r.getMessage() for r in caplog.records if "failed on" in r.getMessage()]
    assert len(warnings) == 2 and "ghp_" not in warnings[1] and "ann@example.com" not in warnings[1]


def test_a_flow_end_counts_its_state_duration_error_and_throughput() -> None:
    m, registry = metrics()
    sink = MetricsSink(m)
    base = events.FlowRunEnded(
        flow_run_id="r",
        flow_name="gen",
        kind="generation",
        model_type="ctgan",
        table_name="customers",
        state_type="COMPLETED",
        state_name="Completed",
        start_time=T0,
        end_time=T0 + timedelta(seconds=4),
        rows=1000,
        rows_by_table={None: 600, "orders": 400},
    )
    sink.handle(base)
    sink.handle(dataclasses.replace(base, state_type="FAILED", error_type="ValueError"))
    assert value(registry, "t_flow_runs_total", flow="gen", kind="generation", state="COMPLETED") == 1
    assert value(registry, "t_flow_runs_total", flow="gen", kind="generation", state="FAILED") == 1
    assert value(registry, "t_errors_total", flow="gen", kind="generation", error_type="ValueError") == 1
    assert value(registry, "t_flow_run_duration_seconds_sum", flow="gen", kind="generation") == 8.0
    assert value(registry, "t_last_success_timestamp_seconds", flow="gen") == (T0 + timedelta(seconds=4)).timestamp()
    per_s = "t_generation_rows_per_second"
    assert value(registry, per_s, flow="gen", table="customers", model_type="ctgan") == 150.0  # the observe table
    assert value(registry, per_s, flow="gen", table="orders", model_type="ctgan") == 100.0


def test_a_task_end_counts_retries_and_one_counted_elsewhere_counts_the_same() -> None:
    m, registry = metrics()
    sink = MetricsSink(m)
    task = events.TaskRunEnded(
        task_run_id="t",
        flow_run_id="r",
        flow_name="f",
        task_name="step",
        state_type="COMPLETED",
        state_name=None,
        start_time=None,
        end_time=None,
        run_count=3,
        run_time_s=2.0,
    )
    sink.handle(task)
    sink.handle(dataclasses.replace(task, counted_only=True))
    assert value(registry, "t_task_runs_total", flow="f", task="step", state="COMPLETED") == 2
    assert value(registry, "t_task_retries_total", flow="f", task="step") == 4
    assert value(registry, "t_task_run_duration_seconds_sum", flow="f", task="step") == 4.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**9), max_size=20))
def test_generated_rows_add_up_exactly(counts: list[int]) -> None:
    m, registry = metrics()
    sink = MetricsSink(m)
    for n in counts:
        sink.handle(events.RowsGenerated(n=n, flow_name="f", table_name="t", model_type="m"))
    got = value(registry, "t_generation_rows_total", flow="f", table="t", model_type="m")
    assert (got or 0) == sum(counts)


def test_epochs_fits_alerts_quality_and_privacy() -> None:
    m, registry = metrics()
    sink = MetricsSink(m)
    sink.handle(
        events.EpochEnded(
            time=T0, flow_run_id="r", flow_name="f", model_type="ctgan", epoch=0, losses={"g": 0.7}, epoch_seconds=0.5
        )
    )
    sink.handle(events.EpochEnded(time=T0, flow_run_id="r", flow_name="f", model_type="ctgan", epoch=1))
    assert value(registry, "t_training_epochs_total", flow="f", model_type="ctgan") == 2
    assert value(registry, "t_training_loss", flow="f", model_type="ctgan", loss_type="g") == 0.7
    assert (
        value(registry, "t_training_epoch_duration_seconds_count", flow="f", model_type="ctgan") == 1
    )  # not the unknown
    sink.handle(events.TrainingAlerted(check="plateau", flow_name="f", model_type="ctgan"))
    assert value(registry, "t_training_alerts_total", flow="f", model_type="ctgan", check="plateau") == 1
    check = events.QualityChecked(
        time=T0,
        flow_run_id=None,
        flow_name=None,
        table_name="t",
        metric="overall",
        score=0.5,
        threshold=0.9,
        gate="min_overall",
    )
    sink.handle(check)
    sink.handle(dataclasses.replace(check, threshold=None, passed=None))
    assert value(registry, "t_quality_score", table="t", metric="overall", model_type=label(None)) == 0.5
    assert value(registry, "t_quality_gate_checks_total", table="t", gate="min_overall", result="fail") == 1
    spend = events.PrivacyChecked(
        time=T0, flow_run_id=None, flow_name=None, dataset="d", epsilon=0.3, spent=0.3, budget=1.0
    )
    sink.handle(spend)
    sink.handle(dataclasses.replace(spend, allowed=False, epsilon=2.0))
    assert value(registry, "t_privacy_epsilon_spent_total", dataset="d") == 0.3
    assert value(registry, "t_privacy_budget_checks_total", dataset="d", result="denied") == 1
    assert value(registry, "t_privacy_epsilon_remaining", dataset="d") == pytest.approx(0.7)


def test_gpu_samples_set_gauges_and_a_lost_gpu_removes_them() -> None:
    m, registry = metrics()
    sink = MetricsSink(m)
    reading = GpuReading(0, "GPU-1", "H200", utilization=0.5, memory_used_bytes=10, memory_total_bytes=20)
    sink.handle(events.GpuSampled(readings=[reading], energy_j={"GPU-1": 12.5}))
    labels = {"gpu": "0", "uuid": "GPU-1", "model": "H200"}
    assert value(registry, "t_gpu_utilization_ratio", **labels) == 0.5
    assert value(registry, "t_gpu_energy_joules_total", **labels) == 12.5
    sink.handle(events.GpuLost(device=GpuDevice(0, "GPU-1", "H200")))
    assert value(registry, "t_gpu_utilization_ratio", **labels) is None


def test_the_span_sink_puts_the_runs_facts_on_its_span() -> None:
    tracer = TracerProvider().get_tracer("t")
    span = tracer.start_span("flow")
    event = events.FlowRunEnded(
        flow_run_id="r",
        flow_name="f",
        state_type="COMPLETED",
        state_name=None,
        start_time=T0,
        end_time=T0 + timedelta(seconds=2),
        rows=10,
        gpu={"gpu_util_mean": 0.25, "gpu_memory_peak_bytes": None},
        span_attributes={catalog.ATTR_KIND: "generation"},
        run_span=span,
    )
    SpanSink().handle(event)
    SpanSink().handle(dataclasses.replace(event, run_span=None))  # no span: nothing to do, no error
    attrs = dict(span.attributes or {})
    assert attrs[catalog.ATTR_ROWS] == 10 and attrs[catalog.ATTR_ROWS_PER_SECOND] == 5.0
    assert attrs[catalog.ATTR_KIND] == "generation" and attrs[catalog.ATTR_GPU_UTIL_MEAN] == 0.25
    assert catalog.ATTR_GPU_MEMORY_PEAK not in attrs
