"""Runtime behaviour: periodic flush, trace ids, Prefect integration points."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import prometheus_client
import pytest
from prefect import flow, task
from prefect.settings import PREFECT_CLIENT_METRICS_ENABLED, temporary_settings

import prefect_synthobs as so
from prefect_synthobs.instrument.instrumentation import INSTRUMENTATION

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_long_runs_flush_periodically_before_the_flow_ends(store_dir: Path) -> None:
    so.configure(flush_interval_seconds=0.3)
    store = so.HealthStore(str(store_dir))
    seen_during_run: list[int] = []

    @task
    def step(i: int) -> int:
        return i

    @so.observe(kind="training")
    @flow(name=f"long-{uuid.uuid4().hex[:6]}")
    def long_run() -> None:
        for i in range(5):
            step(i)
        so.record_epoch(0, loss=1.0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and store.count("task_runs") < 5:
            time.sleep(0.1)
        seen_during_run.append(store.count("task_runs"))
        seen_during_run.append(store.count("training_epochs"))

    long_run()
    assert seen_during_run == [5, 1]  # written by the flusher while the flow still ran
    assert len(store.read("task_runs")) == 5 and len(store.read("flow_runs")) == 1


def test_flow_rows_carry_the_trace_id_of_prefects_flow_span(store_dir: Path) -> None:
    captured: dict[str, str] = {}

    @so.observe
    @flow(name=f"traced-{uuid.uuid4().hex[:6]}")
    def traced() -> None:
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        captured["trace_id"] = format(ctx.trace_id, "032x")
        with so.span("generation.batch", batch_size=3) as s:
            captured["child_trace_id"] = format(s.get_span_context().trace_id, "032x")

    traced()
    row = so.HealthStore(str(store_dir)).read("flow_runs").iloc[0]
    assert len(row.trace_id) == 32 and row.trace_id != "0" * 32
    assert row.trace_id == captured["trace_id"] == captured["child_trace_id"]


def test_metrics_reach_prefects_client_metrics_endpoint_when_enabled(store_dir: Path) -> None:
    name = f"bridge-{uuid.uuid4().hex[:6]}"

    @so.observe
    @flow(name=name)
    def f() -> None:
        pass

    f()
    with temporary_settings(updates={PREFECT_CLIENT_METRICS_ENABLED: True}):
        assert INSTRUMENTATION.client_metrics.attach()
        assert INSTRUMENTATION.client_metrics.attach()  # twice is harmless
    labels = {"flow": name, "kind": "other", "state": "COMPLETED"}
    assert prometheus_client.REGISTRY.get_sample_value("synthobs_flow_runs_total", labels) == 1.0
    INSTRUMENTATION.client_metrics.detach()
    assert prometheus_client.REGISTRY.get_sample_value("synthobs_flow_runs_total", labels) is None
    INSTRUMENTATION.client_metrics.detach()  # twice is harmless


def test_prefect_loads_the_collection_entry_point() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="prefect.collections")}
    assert eps.get("prefect_synthobs") == "prefect_synthobs"
    from prefect.plugins import load_prefect_collections

    assert "prefect_synthobs" in load_prefect_collections()


def test_package_ships_py_typed() -> None:
    import prefect_synthobs

    assert (Path(prefect_synthobs.__file__).parent / "py.typed").exists()
