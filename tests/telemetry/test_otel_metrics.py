"""The metric catalog over OTLP: names, values, exemplars, GPUs, configuration and set-up."""

from __future__ import annotations

import inspect
import logging
import re
import time
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanContext, TraceFlags
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

import prefect_synthobs as so
from conftest import silent_port, warnings_with
from prefect_synthobs import catalog
from prefect_synthobs.gpu.nvml import GpuReading
from prefect_synthobs.telemetry.metrics import SynthObsMetrics
from prefect_synthobs.telemetry.otel_metrics import (
    MetricsBridge,
    MetricsExportSetup,
    hw_observations,
    metrics_export_config,
    preferred_temporality,
)
from prefect_synthobs.telemetry.otlp import otlp_target, signal_url

SAMPLED = SpanContext(0x1234, 0x99, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
UNSAMPLED = SpanContext(0x5678, 0x77, is_remote=False, trace_flags=TraceFlags(0))


def every_metric(registry: CollectorRegistry, prefix: str = "synthobs", clock: Any = time.time) -> SynthObsMetrics:
    """A catalog with at least one series in every metric."""
    m = SynthObsMetrics(registry, prefix, clock=clock)
    m.flow_runs.labels("train", "training", "COMPLETED").inc(3)
    m.observe_flow_duration("train", "training", 42.0)
    m.task_runs.labels("train", "fit", "FAILED").inc()
    m.observe_task_duration("train", "fit", 0.3)
    m.task_retries.labels("train", "fit").inc(2)
    m.errors.labels("train", "training", "ValueError").inc()
    m.last_success.labels("train").set(1_700_000_000)
    m.generation_rows.labels("gen", "customers", "ctgan").inc(500)
    m.generation_rows_per_second.labels("gen", "customers", "ctgan").set(250.5)
    m.training_epochs.labels("train", "ctgan").inc(7)
    m.training_loss.labels("train", "ctgan", "generator").set(0.25)
    m.observe_epoch_duration("train", "ctgan", 0.04)
    m.training_fits.labels("train", "ctgan", "sdv", "completed").inc()
    m.training_alerts.labels("train", "ctgan", "nan_loss").inc()
    m.quality_score.labels("customers", "overall", "ctgan").set(0.91)
    m.quality_gate_checks.labels("customers", "min_overall", "pass").inc()
    m.privacy_spent.labels("patients").inc(1.5)
    m.privacy_remaining.labels("patients").set(8.5)
    m.privacy_checks.labels("patients", "allowed").inc()
    gpu = ("0", "GPU-abc", "NVIDIA H100")
    m.gpu_utilization.labels(*gpu).set(0.75)
    m.gpu_memory_used.labels(*gpu).set(2e9)
    m.gpu_memory_total.labels(*gpu).set(8e10)
    m.gpu_power.labels(*gpu).set(300.0)
    m.gpu_temperature.labels(*gpu).set(61.0)
    m.gpu_energy.labels(*gpu).inc(1234.5)
    m.rows_dropped.labels("task_runs").inc(4)
    m.in_progress.source = lambda: [("train", 1000.0)]
    for spec in catalog.METRICS:  # a metric added to the catalog since gets a series too: it is checked as well
        collector = m.by_name[spec.name]
        if collector is m.in_progress or next(iter(collector.collect())).samples:
            continue
        values = ["x"] * len(spec.labels)
        if spec.kind == "histogram":
            m.observe_duration(spec.name, dict.fromkeys(spec.labels, "x"), 0.5, None)
        elif spec.kind == "counter":
            collector.labels(*values).inc()
        else:
            collector.labels(*values).set(1.0)
    return m


def _samples(text: str) -> dict[tuple[str, str], float]:
    """``{(sample name, sorted labels): value}`` of an exposition, without ``_created`` samples."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_created") or s.name == "target_info":
                continue
            labels = {k: v for k, v in s.labels.items() if not k.startswith("otel_scope_")}
            out[(s.name, repr(sorted(labels.items())))] = s.value
    return out


def test_every_metric_translates_back_to_its_prometheus_name_and_value() -> None:
    """OpenTelemetry Python's Prometheus translation of the OTLP metrics gives the catalog exactly."""
    ours = CollectorRegistry()
    metrics = every_metric(ours, clock=lambda: 1600.0)
    if "registry" not in inspect.signature(PrometheusMetricReader.__init__).parameters:
        pytest.skip("opentelemetry-exporter-prometheus < 0.63b0 (the one for OpenTelemetry 1.39) has no registry=")
    translated = CollectorRegistry()
    reader = PrometheusMetricReader(disable_target_info=True, registry=translated)
    provider = MeterProvider(metric_readers=[reader])
    bridge = MetricsBridge(provider.get_meter("t"), lambda: metrics)
    metrics.duration_listener = bridge.record_duration
    metrics.observe_flow_duration("train", "training", 42.0)  # the histograms count from here: twice on ours
    metrics.observe_task_duration("train", "fit", 0.3)
    metrics.observe_epoch_duration("train", "ctgan", 0.04)
    prometheus = _samples(generate_latest(ours).decode())
    otlp = _samples(generate_latest(translated).decode())
    for key in [k for k in prometheus if "duration" in k[0]]:
        if key[0].endswith(("_count", "_bucket")):
            prometheus[key] = prometheus[key] / 2 if prometheus[key] else 0.0
        elif key[0].endswith("_sum"):
            prometheus[key] /= 2
    assert {n for n, _ in otlp} == {n for n, _ in prometheus}
    assert otlp == prometheus
    assert prometheus[("synthobs_flow_run_oldest_in_progress_age_seconds", "[('flow', 'train')]")] == 600.0
    provider.shutdown()


# The Prometheus OTLP translator's rules (prometheus/otlptranslator, also in the Collector's
# prometheus exporters): units to suffixes, "per" units, "_total" on monotonic sums, "ratio"
# for gauges of unit 1, a suffix not repeated when the name already has it.
_UNITS = {"s": "seconds", "By": "bytes", "W": "watts", "J": "joules", "Cel": "celsius", "ms": "milliseconds"}
_PER = {"s": "second", "m": "minute", "h": "hour"}


def prometheus_translation(name: str, unit: str, kind: str, monotonic: bool) -> str:
    tokens = [t for t in re.split(r"[^a-zA-Z0-9]+", name) if t]
    main, _, per = unit.partition("/")
    suffix = "" if "{" in main or not main else ("ratio" if main == "1" and kind == "gauge" else _UNITS.get(main, ""))
    if suffix and suffix not in tokens:
        tokens.append(suffix)
    per_word = _PER.get(per, "") if per and "{" not in per else ""
    if per_word and per_word not in tokens:
        tokens += ["per", per_word]
    if kind == "sum" and monotonic:
        tokens.append("total")
    return "_".join(tokens)


def _otel_metrics(data: MetricsData | None) -> list[Any]:
    if data is None:  # nothing observed
        return []
    return [m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]


def test_prometheus_translator_rules_give_the_catalog_names_too() -> None:
    metrics = every_metric(CollectorRegistry(), prefix="acme")
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    bridge = MetricsBridge(provider.get_meter("t"), lambda: metrics)
    metrics.duration_listener = bridge.record_duration
    metrics.observe_flow_duration("train", "training", 1.0)
    metrics.observe_task_duration("train", "fit", 1.0)
    metrics.observe_epoch_duration("train", "ctgan", 0.04)
    seen = {}
    for m in _otel_metrics(reader.get_metrics_data()):
        if m.name.startswith("hw."):
            continue
        kind = type(m.data).__name__.lower()
        seen[m.name] = prometheus_translation(m.name, m.unit, kind, getattr(m.data, "is_monotonic", False))
    expected = {f"acme_{key}" for key in catalog.OTEL_METRICS}
    assert set(seen.values()) == expected
    assert seen["acme.flow.runs"] == "acme_flow_runs_total"
    assert seen["acme.gpu.utilization_ratio"] == "acme_gpu_utilization_ratio"
    provider.shutdown()


def test_durations_carry_the_sampled_span_as_exemplar_on_otlp_and_openmetrics() -> None:
    registry = CollectorRegistry()
    metrics = SynthObsMetrics(registry)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    bridge = MetricsBridge(provider.get_meter("t"), lambda: metrics)
    metrics.duration_listener = bridge.record_duration
    metrics.observe_flow_duration("train", "training", 7.0, SAMPLED)
    metrics.observe_task_duration("train", "fit", 0.2, UNSAMPLED)
    by_name = {m.name: m for m in _otel_metrics(reader.get_metrics_data())}
    (flow_point,) = by_name["synthobs.flow.run.duration"].data.data_points
    assert [(e.trace_id, e.span_id, e.value) for e in flow_point.exemplars] == [(0x1234, 0x99, 7.0)]
    assert list(flow_point.explicit_bounds) == list(catalog.DURATION_BUCKETS)
    (task_point,) = by_name["synthobs.task.run.duration"].data.data_points
    assert not task_point.exemplars  # an unsampled trace reaches no backend: no exemplar pointing at it
    text = generate_openmetrics(registry).decode()
    (line,) = [ln for ln in text.splitlines() if "#" in ln and "flow_run_duration_seconds_bucket" in ln]
    assert f'# {{span_id="{0x99:016x}",trace_id="{0x1234:032x}"}} 7.0' in line and 'le="10.0"' in line
    assert "task_run_duration_seconds_bucket" not in [ln.split("{")[0] for ln in text.splitlines() if " # " in ln]
    provider.shutdown()


def test_http_mode_serves_exemplars_to_an_openmetrics_scraper_only(store_dir: Any) -> None:
    import urllib.request

    from prefect_synthobs.telemetry.exposition import HttpExporter

    registry = CollectorRegistry()
    metrics = SynthObsMetrics(registry)
    metrics.observe_flow_duration("train", "training", 3.0, SAMPLED)
    exporter = HttpExporter("127.0.0.1", 0, registry)
    exporter.start()
    try:
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        request = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        with urllib.request.urlopen(request, timeout=10) as response:
            openmetrics = response.read().decode()
        with urllib.request.urlopen(url, timeout=10) as response:
            classic = response.read().decode()
    finally:
        exporter.close()
    assert f'le="5.0"}} 1.0 # {{span_id="{0x99:016x}",trace_id="{0x1234:032x}"}} 3.0' in openmetrics
    assert "trace_id" not in classic and "synthobs_flow_run_duration_seconds_bucket" in classic


def reading(**changes: Any) -> GpuReading:
    values: dict[str, Any] = {
        "index": 0,
        "uuid": "GPU-1",
        "name": "NVIDIA H100",
        "utilization": 0.5,
        "memory_used_bytes": 20,
        "memory_total_bytes": 80,
        "power_w": 250.0,
        "temperature_c": 60.0,
        "energy_counter_j": 5000.0,
    }
    values.update(changes)
    return GpuReading(**values)


def test_gpus_use_the_semantic_convention_names_and_attributes() -> None:
    observed = hw_observations([reading(), reading(uuid="GPU-2", power_w=None, energy_counter_j=None)])
    attrs = {
        "hw.id": "GPU-1",
        "hw.name": "NVIDIA H100",
        "hw.model": "NVIDIA H100",
        "hw.vendor": "NVIDIA",
        "hw.type": "gpu",
    }
    assert observed["hw.gpu.utilization"][0] == (0.5, attrs)
    assert observed["hw.gpu.memory.utilization"][0][0] == 0.25
    assert [v for v, _ in observed["hw.power"]] == [250.0]  # the second GPU reports no power: no point
    assert [a["hw.id"] for _, a in observed["hw.energy"]] == ["GPU-1"]
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    MetricsBridge(provider.get_meter("t"), lambda: None, lambda: [reading()])
    kinds = {
        m.name: (m.unit, type(m.data).__name__, getattr(m.data, "is_monotonic", None))
        for m in _otel_metrics(reader.get_metrics_data())
    }
    assert kinds == {
        "hw.gpu.utilization": ("1", "Gauge", None),
        "hw.gpu.memory.usage": ("By", "Sum", False),
        "hw.gpu.memory.limit": ("By", "Sum", False),
        "hw.gpu.memory.utilization": ("1", "Gauge", None),
        "hw.power": ("W", "Gauge", None),
        "hw.energy": ("J", "Sum", True),
        "hw.temperature": ("Cel", "Gauge", None),
    }
    provider.shutdown()


def test_in_progress_gauges_follow_the_runs_and_fall_to_zero() -> None:
    now = [1000.0]
    registry = CollectorRegistry()
    metrics = SynthObsMetrics(registry, clock=lambda: now[0])
    runs = [("train", 400.0), ("train", 900.0), ("gen", 990.0)]
    metrics.in_progress.source = lambda: list(runs)
    assert metrics.in_progress.snapshot() == {"gen": (1, 10.0), "train": (2, 600.0)}
    runs.clear()
    now[0] = 5000.0
    assert metrics.in_progress.snapshot() == {"gen": (0, 0.0), "train": (0, 0.0)}
    text = generate_latest(registry).decode()
    assert 'synthobs_flow_runs_in_progress{flow="train"} 0.0' in text


def test_export_config_follows_settings_then_otel_variables() -> None:
    env = {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    config = metrics_export_config(so.SynthObsSettings(), env)
    assert config.otlp is not None and config.otlp.endpoint == "http://c:4318/v1/metrics"
    assert not metrics_export_config(so.SynthObsSettings(), {}).enabled
    # metrics_mode=none set on purpose (a worker process): OTEL_METRICS_EXPORTER does not turn it on
    assert not metrics_export_config(so.SynthObsSettings(metrics_mode="none"), env).enabled
    both = so.SynthObsSettings(metrics_mode="pushgateway, otlp", otlp_endpoint="http://x:4318/v1/traces")
    assert both.metrics_mode == "pushgateway,otlp" and both.metrics_modes() == ("pushgateway", "otlp")
    assert metrics_export_config(both, {}).otlp.endpoint == "http://x:4318/v1/metrics"  # type: ignore[union-attr]
    console = metrics_export_config(so.SynthObsSettings(), {"OTEL_METRICS_EXPORTER": "console"})
    assert console.console and console.otlp is None
    own = {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:9/custom", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    target = otlp_target(so.SynthObsSettings(), "metrics", own)
    assert (target.endpoint, target.protocol) == ("http://m:9/custom", "grpc")
    assert signal_url("http://c:4318/", "logs") == "http://c:4318/v1/logs"
    assert preferred_temporality("delta") and preferred_temporality(None) is None
    with pytest.raises(ValueError, match="unknown metrics_mode 'prom'"):
        so.SynthObsSettings(metrics_mode="http,prom")
    with pytest.raises(ValueError, match="cannot be combined"):
        so.SynthObsSettings(metrics_mode="none,otlp")


def test_a_global_sdk_provider_is_added_to_never_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import metrics as otel_metrics

    reader = InMemoryMetricReader()
    users = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(otel_metrics, "get_meter_provider", lambda: users)
    metrics = every_metric(CollectorRegistry())
    setup = MetricsExportSetup()
    config = metrics_export_config(so.SynthObsSettings(metrics_mode="otlp"), {})
    setup.configure(config, metrics, lambda: [reading()])
    setup.configure(config, metrics, lambda: [reading()])  # twice: harmless
    assert setup.provider is users
    names = [m.name for m in _otel_metrics(reader.get_metrics_data())]
    assert names.count("synthobs.flow.runs") == 1 and "hw.power" in names
    setup.detach()
    assert metrics.duration_listener is None
    after = {m.name: m for m in _otel_metrics(reader.get_metrics_data())}
    assert "synthobs.flow.runs" not in after and "hw.power" not in after  # callbacks observe nothing now
    users.shutdown()


def test_an_unreachable_collector_costs_one_warning_and_a_bounded_flush(caplog: pytest.LogCaptureFixture) -> None:
    metrics = every_metric(CollectorRegistry())
    setup = MetricsExportSetup()
    with silent_port() as port:  # accepts connections, never answers
        settings = so.SynthObsSettings(
            metrics_mode="otlp", otlp_endpoint=f"http://127.0.0.1:{port}", otlp_timeout_seconds=1.0
        )
        setup.configure(metrics_export_config(settings, {}), metrics, lambda: [])
        caplog.set_level(logging.WARNING)
        assert not setup.flush(1.0)  # one wait, bounded by the exporter's timeout
        calls: list[int] = []
        provider, flush = setup.provider, setup.provider.force_flush
        provider.force_flush = lambda *a, **k: calls.append(1) or flush(*a, **k)
        assert not setup.flush(1.0)
        assert calls == []  # once the collector failed, flows no longer wait on it at all
        setup.detach()
    assert len(warnings_with(caplog, "cannot export metrics")) <= 1


def test_own_provider_exports_with_service_instance_id(monkeypatch: pytest.MonkeyPatch) -> None:
    from otlp_receiver import http_receiver

    metrics = every_metric(CollectorRegistry())
    setup = MetricsExportSetup(resource=lambda: _resource())
    with http_receiver() as receiver:
        settings = so.SynthObsSettings(metrics_mode="otlp", otlp_endpoint=receiver.endpoint)
        setup.configure(metrics_export_config(settings, {}), metrics, lambda: [])
        tracer = TracerProvider().get_tracer("t")
        with tracer.start_as_current_span("run") as span:
            metrics.observe_flow_duration("train", "training", 2.0, span.get_span_context())
        assert setup.flush(5.0)
        setup.detach()
    runs = receiver.latest("synthobs.flow.runs")
    ((_, point),) = runs.items()
    assert point.value == 3 and point.monotonic and point.resource["service.instance.id"]
    (duration,) = receiver.latest("synthobs.flow.run.duration").values()
    assert duration.count == 1
    # exemplars belong to the collection that saw the measurement
    exemplars = [e for p in receiver.points if p.metric == "synthobs.flow.run.duration" for e in p.exemplars]
    assert [e[:2] for e in exemplars] == [
        (format(span.get_span_context().trace_id, "032x"), format(span.get_span_context().span_id, "016x"))
    ]
    assert trace.get_current_span() is trace.INVALID_SPAN


def _resource() -> Any:
    from prefect_synthobs.telemetry.otlp import synthobs_resource

    return synthobs_resource("svc", "test")
