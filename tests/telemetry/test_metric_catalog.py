"""One definition per metric: the collectors, ``by_name`` and the OTLP instruments are derived from ``MetricSpec``.

Every check here runs over ``catalog.METRICS`` and updates each metric generically (from its
spec), so a metric added to the catalog is checked without a line changed here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from prefect_synthobs import catalog
from prefect_synthobs.catalog import MetricSpec
from prefect_synthobs.telemetry.metrics import InProgressCollector, SynthObsMetrics
from prefect_synthobs.telemetry.otel_metrics import MetricsBridge

# DESIGN.md's "Metric catalog" table (the contract), copied: the design document is not
# shipped with the repository; ``test_the_copy_is_design_md_s_table`` compares the two where it is.
DESIGN_TABLE = """
| name | type | labels |
|---|---|---|
| synthobs_flow_runs_total | counter | flow, kind, state |
| synthobs_flow_run_duration_seconds | histogram | flow, kind |
| synthobs_task_runs_total | counter | flow, task, state |
| synthobs_task_run_duration_seconds | histogram | flow, task |
| synthobs_task_retries_total | counter | flow, task |
| synthobs_errors_total | counter | flow, kind, error_type |
| synthobs_last_success_timestamp_seconds | gauge | flow |
| synthobs_generation_rows_total | counter | flow, table, model_type |
| synthobs_generation_rows_per_second | gauge | flow, table, model_type |
| synthobs_training_epochs_total | counter | flow, model_type |
| synthobs_training_loss | gauge | flow, model_type, loss_type |
| synthobs_quality_score | gauge | table, metric |
| synthobs_quality_gate_checks_total | counter | table, gate, result |
| synthobs_privacy_epsilon_spent_total | counter | dataset |
| synthobs_privacy_epsilon_remaining | gauge | dataset |
| synthobs_privacy_budget_checks_total | counter | dataset, result |
| synthobs_gpu_utilization_ratio | gauge | gpu, uuid, model |
| synthobs_gpu_memory_used_bytes | gauge | gpu, uuid, model |
| synthobs_gpu_memory_total_bytes | gauge | gpu, uuid, model |
| synthobs_gpu_power_watts | gauge | gpu, uuid, model |
| synthobs_gpu_temperature_celsius | gauge | gpu, uuid, model |
| synthobs_gpu_energy_joules_total | counter | gpu, uuid, model |
"""

# Labels the code adds after the contract's (README, "Quality and privacy gates": two generators
# of one table never overwrite each other's score).
LABELS_BEYOND_DESIGN = {"quality_score": ("model_type",)}

# The public attributes of ``SynthObsMetrics`` the recording code uses, and their metrics.
ATTRIBUTES = {
    "flow_runs": catalog.FLOW_RUNS_TOTAL,
    "flow_run_duration": catalog.FLOW_RUN_DURATION,
    "task_runs": catalog.TASK_RUNS_TOTAL,
    "task_run_duration": catalog.TASK_RUN_DURATION,
    "task_retries": catalog.TASK_RETRIES_TOTAL,
    "rows_dropped": catalog.ROWS_DROPPED_TOTAL,
    "errors": catalog.ERRORS_TOTAL,
    "last_success": catalog.LAST_SUCCESS,
    "generation_rows": catalog.GENERATION_ROWS_TOTAL,
    "generation_rows_per_second": catalog.GENERATION_ROWS_PER_SECOND,
    "training_epochs": catalog.TRAINING_EPOCHS_TOTAL,
    "training_loss": catalog.TRAINING_LOSS,
    "training_epoch_duration": catalog.TRAINING_EPOCH_DURATION,
    "training_fits": catalog.TRAINING_FITS_TOTAL,
    "training_alerts": catalog.TRAINING_ALERTS_TOTAL,
    "quality_score": catalog.QUALITY_SCORE,
    "quality_gate_checks": catalog.QUALITY_GATE_CHECKS_TOTAL,
    "privacy_spent": catalog.PRIVACY_EPSILON_SPENT_TOTAL,
    "privacy_remaining": catalog.PRIVACY_EPSILON_REMAINING,
    "privacy_checks": catalog.PRIVACY_BUDGET_CHECKS_TOTAL,
    "gpu_utilization": catalog.GPU_UTILIZATION,
    "gpu_memory_used": catalog.GPU_MEMORY_USED,
    "gpu_memory_total": catalog.GPU_MEMORY_TOTAL,
    "gpu_power": catalog.GPU_POWER,
    "gpu_temperature": catalog.GPU_TEMPERATURE,
    "gpu_energy": catalog.GPU_ENERGY_TOTAL,
}

_PROMETHEUS_TYPE = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}
_OTLP_DATA = {"counter": ("Sum", True), "updowncounter": ("Sum", False), "gauge": ("Gauge", None)}


def design_rows(table: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """``{name: (type, labels)}`` of a markdown table ``| name | type | labels |``."""
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("synthobs_"):
            rows[cells[0]] = (cells[1], tuple(c.strip() for c in cells[2].split(",")))
    return rows


def touch(metrics: SynthObsMetrics, spec: MetricSpec, value: float, labels: tuple[str, ...]) -> None:
    """One update of ``spec``'s metric, chosen by its kind alone (the in-progress ones are read, not set)."""
    if spec.name in InProgressCollector.METRICS:
        return
    if spec.kind == "counter":
        metrics.counter(spec.name).labels(*labels).inc(value)
    elif spec.kind == "gauge":
        metrics.gauge(spec.name).labels(*labels).set(value)
    else:
        metrics.observe_duration(spec.name, dict(zip(spec.labels, labels, strict=True)), value)


def every_spec_touched(prefix: str = "synthobs") -> tuple[CollectorRegistry, SynthObsMetrics]:
    registry = CollectorRegistry()
    metrics = SynthObsMetrics(registry, prefix, clock=lambda: 1600.0)
    metrics.in_progress.source = lambda: [("train", 1000.0)]
    for spec in catalog.METRICS:
        touch(metrics, spec, 2.0, tuple(f"{label}-1" for label in spec.labels))
    return registry, metrics


def otlp_metrics(metrics: SynthObsMetrics) -> tuple[dict[str, Any], MeterProvider]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    bridge = MetricsBridge(provider.get_meter("t"), lambda: metrics)
    metrics.duration_listener = bridge.record_duration
    for spec in catalog.METRICS:
        if spec.kind == "histogram":
            touch(metrics, spec, 2.0, tuple(f"{label}-1" for label in spec.labels))
    data = reader.get_metrics_data()
    assert data is not None
    found = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    return found, provider


def test_specs_are_unique_and_well_formed() -> None:
    names = [spec.name for spec in catalog.METRICS]
    assert len(set(names)) == len(names) == len(catalog.METRIC_SPECS)
    assert len({spec.otlp_name for spec in catalog.METRICS}) == len(names)
    for spec in catalog.METRICS:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", spec.name), spec.name
        assert spec.kind != "counter" or spec.name.endswith("_total"), spec.name
        assert spec.help and spec.labels and len(set(spec.labels)) == len(spec.labels)
        assert catalog.METRIC_SPECS[spec.name] is spec
        assert catalog.OTEL_METRICS[spec.name] == (spec.otlp_name, spec.unit)
    assert set(catalog.OTEL_METRICS) == set(names)


def test_a_spec_refuses_buckets_off_a_histogram_and_a_histogram_without_them() -> None:
    with pytest.raises(ValueError, match="buckets"):
        MetricSpec("x_seconds", "histogram", ("flow",), "x", "s", "help")
    with pytest.raises(ValueError, match="buckets"):
        MetricSpec("x_total", "counter", ("flow",), "x", "{x}", "help", (1.0,))
    gauge = MetricSpec("x", "gauge", ("flow",), "x", "{x}", "help")
    assert gauge.otlp_instrument == "gauge"
    assert dataclasses.replace(gauge, otlp_kind="updowncounter").otlp_instrument == "updowncounter"
    with pytest.raises(dataclasses.FrozenInstanceError):
        gauge.name = "y"  # type: ignore[misc]


def test_every_spec_has_its_collector_in_by_name_and_unregister_removes_them_all() -> None:
    registry, metrics = every_spec_touched()
    assert set(metrics.by_name) == {spec.name for spec in catalog.METRICS}
    for spec in catalog.METRICS:
        collector = metrics.by_name[spec.name]
        if spec.name in InProgressCollector.METRICS:
            assert collector is metrics.in_progress
        else:
            assert type(collector) is _PROMETHEUS_TYPE[spec.kind]
            assert collector._name == f"synthobs_{spec.name}".removesuffix("_total")
            assert collector._labelnames == spec.labels
            if spec.kind == "histogram":
                assert tuple(collector._upper_bounds[:-1]) == spec.buckets
    assert generate_latest(registry)
    metrics.unregister()
    assert generate_latest(registry) == b""
    SynthObsMetrics(registry)  # every name is free again: registering the catalog twice would raise


def test_the_exposition_shows_every_spec_with_its_type_help_and_labels() -> None:
    registry, _ = every_spec_touched("acme")
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    for spec in catalog.METRICS:
        family = families[f"acme_{spec.name}".removesuffix("_total")]
        assert (family.type, family.documentation) == (spec.kind, spec.help)
        label_sets = {frozenset(s.labels) - {"le"} for s in family.samples}  # the exposition sorts them
        assert label_sets == {frozenset(spec.labels)}, spec.name
    spec_families = {f"acme_{s.name}".removesuffix("_total") for s in catalog.METRICS}
    assert set(families) - {f"{name}_created" for name in spec_families} == spec_families  # and nothing else


def test_the_public_attributes_are_the_spec_collectors() -> None:
    _, metrics = every_spec_touched()
    for attribute, name in ATTRIBUTES.items():
        collector = getattr(metrics, attribute)
        assert collector is metrics.by_name[name]
        assert isinstance(collector, _PROMETHEUS_TYPE[catalog.METRIC_SPECS[name].kind])
    assert metrics.counter(catalog.FLOW_RUNS_TOTAL) is metrics.flow_runs
    assert metrics.gauge(catalog.QUALITY_SCORE) is metrics.quality_score
    assert metrics.histogram(catalog.TASK_RUN_DURATION) is metrics.task_run_duration
    with pytest.raises(TypeError, match="not a Gauge"):
        metrics.gauge(catalog.FLOW_RUNS_TOTAL)
    with pytest.raises(KeyError):
        metrics.counter("no_such_total")


def test_design_md_metrics_are_specs_of_the_same_type_and_labels() -> None:
    rows = design_rows(DESIGN_TABLE)
    assert len(rows) == 22
    for name, (kind, labels) in rows.items():
        spec = catalog.METRIC_SPECS[name.removeprefix("synthobs_")]
        assert spec.kind == kind, name
        assert spec.labels[: len(labels)] == labels, name
        assert spec.labels[len(labels) :] == LABELS_BEYOND_DESIGN.get(spec.name, ()), name
    for spec in catalog.METRICS:
        if spec.name in (catalog.FLOW_RUN_DURATION, catalog.TASK_RUN_DURATION):  # "0.1 s to 4 h"
            assert (spec.buckets[0], spec.buckets[-1]) == (0.1, 4 * 3600.0)


def test_the_copy_is_design_md_s_table() -> None:
    design = Path(__file__).resolve().parents[3] / "shared" / "DESIGN.md"
    if not design.is_file():
        pytest.skip("the design document lives beside the repository, not in it")
    text = design.read_text("utf-8")
    section = text.split("## Metric catalog", 1)[1].split("\n## ", 1)[0]
    assert design_rows(section) == design_rows(DESIGN_TABLE)


def test_every_spec_is_one_otlp_instrument_with_its_name_unit_kind_and_buckets() -> None:
    _, metrics = every_spec_touched("acme")
    found, provider = otlp_metrics(metrics)
    for spec in catalog.METRICS:
        metric = found[f"acme.{spec.otlp_name}"]
        assert (metric.unit, metric.description) == (spec.unit, spec.help)
        if spec.kind == "histogram":
            assert type(metric.data).__name__ == "Histogram"
            assert [tuple(p.explicit_bounds) for p in metric.data.data_points] == [spec.buckets]
        else:
            kind, monotonic = _OTLP_DATA[spec.otlp_instrument]
            assert type(metric.data).__name__ == kind, spec.name
            assert getattr(metric.data, "is_monotonic", None) == monotonic, spec.name
        (point,) = metric.data.data_points
        assert set(point.attributes) == set(spec.labels)
    assert {n for n in found if not n.startswith("hw.")} == {f"acme.{s.otlp_name}" for s in catalog.METRICS}
    assert catalog.METRIC_SPECS[catalog.FLOW_RUNS_IN_PROGRESS].otlp_instrument == "updowncounter"
    provider.shutdown()


def test_a_metric_added_to_the_catalog_alone_is_collected_and_on_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    """The promise of the spec: a new metric is its spec plus the code that updates it."""
    new = MetricSpec("widgets_total", "counter", ("flow", "widget"), "widgets", "{widget}", "Widgets made.")
    monkeypatch.setattr(catalog, "METRICS", (*catalog.METRICS, new))
    monkeypatch.setitem(catalog.METRIC_SPECS, new.name, new)
    registry = CollectorRegistry()
    metrics = SynthObsMetrics(registry)
    metrics.counter("widgets_total").labels("train", "cog").inc(3)
    assert 'synthobs_widgets_total{flow="train",widget="cog"} 3.0' in generate_latest(registry).decode()
    found, provider = otlp_metrics(metrics)
    (point,) = found["synthobs.widgets"].data.data_points
    assert (point.value, dict(point.attributes)) == (3.0, {"flow": "train", "widget": "cog"})
    provider.shutdown()


_values = st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=25, deadline=None)
@given(
    updates=st.lists(
        st.tuples(
            st.sampled_from([s for s in catalog.METRICS if s.kind != "histogram"]),
            _values,
            st.sampled_from(["a", "b", ""]),
        ),
        max_size=12,
    )
)
def test_otlp_observes_exactly_the_registry_values(updates: list[tuple[MetricSpec, float, str]]) -> None:
    registry = CollectorRegistry()
    metrics = SynthObsMetrics(registry, clock=lambda: 50.0)
    metrics.in_progress.source = lambda: [("f", 20.0), ("f", 40.0)]
    for spec, value, label in updates:
        touch(metrics, spec, value, tuple(label for _ in spec.labels))
    found, provider = otlp_metrics(metrics)
    for spec in catalog.METRICS:
        if spec.kind == "histogram":
            continue
        expected = {tuple(sorted(labels.items())): value for value, labels in metrics.samples(spec.name)}
        metric = found.get(f"synthobs.{spec.otlp_name}")
        seen = {} if metric is None else {tuple(sorted(p.attributes.items())): p.value for p in metric.data.data_points}
        assert seen.keys() == expected.keys(), spec.name
        assert all(math.isclose(seen[k], expected[k]) for k in seen), spec.name
    assert metrics.samples(catalog.FLOW_RUNS_IN_PROGRESS) == [(2, {"flow": "f"})]
    assert metrics.samples(catalog.FLOW_RUN_OLDEST_IN_PROGRESS_AGE) == [(30.0, {"flow": "f"})]
    provider.shutdown()
