"""Prefect's run identity (``prefect.flow-run.id``, ...) on synthobs' spans, logs and metrics, and the gRPC-port
collision of Prefect's HTTP resource metrics, found from the environment and said once."""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_receiver import grpc_receiver, http_receiver
from prefect import flow, get_run_logger, task
from prefect.settings import PREFECT_TELEMETRY_RESOURCE_METRICS_INTERVAL_SECONDS, temporary_settings
from prometheus_client import CollectorRegistry

import prefect_synthobs as so
from conftest import warnings_with
from prefect_synthobs.telemetry import prefect_metrics
from prefect_synthobs.telemetry.metrics import SynthObsMetrics
from prefect_synthobs.telemetry.otel_metrics import MetricsExportSetup, metrics_export_config
from prefect_synthobs.telemetry.prefect_metrics import collision, prefect_metrics_url
from prefect_synthobs.telemetry.prefect_names import (
    PREFECT_DEPLOYMENT_ID,
    PREFECT_FLOW_NAME,
    PREFECT_FLOW_RUN_ID,
    PREFECT_WORK_POOL_NAME,
    RunIdentitySpans,
    flow_run_process_attributes,
    of_flow_run,
    run_attributes,
)

# -- the names ---------------------------------------------------------------------------------------------


def test_the_names_are_prefects_own() -> None:
    """Spelled as ``prefect/_internal/metrics.py`` spells its resource attributes (read from Prefect's source, so
    a rename there fails here)."""
    import inspect

    from prefect._internal import metrics as prefect_run_metrics

    source = inspect.getsource(prefect_run_metrics.RunMetrics)
    for name in (PREFECT_FLOW_RUN_ID, PREFECT_FLOW_NAME, PREFECT_DEPLOYMENT_ID, PREFECT_WORK_POOL_NAME):
        assert f'"{name}"' in source


def test_a_run_identity_leaves_out_what_is_not_known() -> None:
    run = SimpleNamespace(id=uuid.UUID(int=1), deployment_id=None, work_pool_name="gpu-pool")
    assert of_flow_run(run, "train") == {
        PREFECT_FLOW_RUN_ID: str(uuid.UUID(int=1)),
        PREFECT_FLOW_NAME: "train",
        PREFECT_WORK_POOL_NAME: "gpu-pool",
    }
    assert run_attributes(None) == {} and run_attributes("r", "") == {PREFECT_FLOW_RUN_ID: "r"}


def test_only_a_flow_run_process_puts_its_run_on_the_resource() -> None:
    assert flow_run_process_attributes({}) == {}
    assert flow_run_process_attributes({"PREFECT__FLOW_NAME": "train"}) == {}  # no run: not a flow-run process
    assert flow_run_process_attributes(
        {"PREFECT__FLOW_RUN_ID": "r1", "PREFECT__FLOW_NAME": "train", "PREFECT__DEPLOYMENT_ID": "d1"}
    ) == {PREFECT_FLOW_RUN_ID: "r1", PREFECT_FLOW_NAME: "train", PREFECT_DEPLOYMENT_ID: "d1"}


def test_synthobs_metrics_carry_the_run_on_their_resource_only_in_a_flow_run_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def exported(env_run_id: str | None) -> list[Any]:
        if env_run_id is None:
            monkeypatch.delenv("PREFECT__FLOW_RUN_ID", raising=False)
        else:
            monkeypatch.setenv("PREFECT__FLOW_RUN_ID", env_run_id)
        metrics = SynthObsMetrics(CollectorRegistry(), "synthobs")
        for _ in range(3):  # three runs of one flow: one series, whatever the runs
            metrics.flow_runs.labels("train", "training", "COMPLETED").inc()
        setup = MetricsExportSetup(resource=lambda: Resource.create({"service.name": "svc"}))
        with http_receiver() as receiver:
            settings = so.SynthObsSettings(metrics_mode="otlp", otlp_endpoint=receiver.endpoint)
            setup.configure(metrics_export_config(settings, {}), metrics, lambda: [])
            assert setup.flush(5.0)
            setup.detach()
        return [p for p in receiver.points if p.metric == "synthobs.flow.runs"]

    (point,) = exported("run-42")
    assert point.resource[PREFECT_FLOW_RUN_ID] == "run-42" and point.resource["service.name"] == "svc"
    assert point.value == 3 and PREFECT_FLOW_RUN_ID not in point.attributes  # one series, no run id on it
    (point,) = exported(None)
    assert PREFECT_FLOW_RUN_ID not in point.resource and point.value == 3


# -- spans -------------------------------------------------------------------------------------------------


def test_the_span_processor_names_a_flow_span_after_its_own_run_and_keeps_what_is_set() -> None:
    exporter = InMemorySpanExporter()
    processor = RunIdentitySpans()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    attrs = {"prefect.run.type": "flow", "prefect.run.id": "run-7"}
    tracer.start_span("off", attributes=attrs).end()  # disabled: passes through
    processor.enabled = True
    tracer.start_span("flow", attributes=attrs).end()
    tracer.start_span("kept", attributes={**attrs, PREFECT_FLOW_RUN_ID: "other"}).end()
    tracer.start_span("outside any run").end()
    got = {s.name: (s.attributes or {}).get(PREFECT_FLOW_RUN_ID) for s in exporter.get_finished_spans()}
    assert got == {"off": None, "flow": "run-7", "kept": "other", "outside any run": None}


@pytest.mark.usefixtures("prefect_server")
def test_every_span_and_run_log_of_a_run_carries_its_flow_run_id(store_dir: Path) -> None:
    name = f"ident-{uuid.uuid4().hex[:6]}"
    ids: dict[str, str] = {}

    @task
    def fit() -> None:
        with so.span("training.epoch", epoch=0):
            get_run_logger().warning("epoch done")

    @flow(name=f"{name}-child")
    def child() -> None:
        from prefect.runtime import flow_run

        ids["child"] = flow_run.id
        fit()

    @so.observe(kind="training")
    @flow(name=name)
    def parent() -> None:
        from prefect.runtime import flow_run

        ids["parent"] = flow_run.id
        get_run_logger().warning("parent started")
        fit()
        child()

    with http_receiver() as receiver:
        so.configure(otlp_endpoint=receiver.endpoint, otlp_logs=True)
        parent()

        def everything(r: Any) -> bool:  # (an export during the run may bring some of it before the rest)
            bodies = [record.body for record in r.logs]
            return (
                [s.name for s in r.spans].count("training.epoch") >= 2
                and any(s.attributes.get("prefect.run.id") == ids["parent"] for s in r.spans)
                and bodies.count("epoch done") >= 2
                and "parent started" in bodies
            )

        assert receiver.wait_until(everything)
        with receiver.lock:
            spans, logs = list(receiver.spans), list(receiver.logs)
    by_type: dict[tuple[str | None, str | None], list[str]] = {}
    for s in spans:
        key = (s.attributes.get("prefect.run.type"), s.attributes.get(PREFECT_FLOW_RUN_ID))
        by_type.setdefault(key, []).append(s.name)
    parent_id, child_id = ids["parent"], ids["child"]
    assert len(by_type[("flow", parent_id)]) == 1 and len(by_type[("flow", child_id)]) == 1  # each its own run
    assert len(by_type[("task", parent_id)]) == 1 and len(by_type[("task", child_id)]) == 1
    assert sorted(by_type[(None, parent_id)] + by_type[(None, child_id)]).count("training.epoch") == 2
    assert not [
        s.name for s in spans if s.trace_id and PREFECT_FLOW_RUN_ID not in s.attributes and s.name != "storage.write"
    ]
    (flow_span,) = [s for s in spans if s.attributes.get("prefect.run.id") == parent_id]
    assert flow_span.attributes[PREFECT_FLOW_NAME] == name  # set at the run's end, with the work it did
    assert flow_span.attributes["synthobs.process.cpu_seconds"] > 0
    log_ids = [(r.body, r.attributes.get(PREFECT_FLOW_RUN_ID)) for r in logs]
    assert ("parent started", parent_id) in log_ids
    assert sorted(run for body, run in log_ids if body == "epoch done") == sorted([parent_id, child_id])


# -- the gRPC-port collision ------------------------------------------------------------------------------------

ON = {"resource_metrics_on": True, "system_metrics_installed": True}


@pytest.mark.parametrize(
    ("env", "collides"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:9000", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:9000", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"}, True),
        # the fix: Prefect posts to the metrics endpoint as it is
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://collector:4318/v1/metrics",
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
            },
            False,
        ),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://collector:4317/v1/metrics"}, True),
        # an explicit metrics endpoint declared gRPC on another port: Prefect still posts HTTP to it
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:9000", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"}, True),
        # ambiguous: only the general protocol says gRPC, the metrics endpoint is given as it is
        (
            {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:9000/v1/metrics", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            False,
        ),
        ({}, False),  # no endpoint: Prefect exports nothing (outside Prefect Cloud)
    ],
)
def test_the_collision_is_found_from_the_environment(env: dict[str, str], collides: bool) -> None:
    assert (collision(env, **ON) is not None) is collides
    # and only when Prefect would export at all
    assert collision(env, resource_metrics_on=False, system_metrics_installed=True) is None
    assert collision(env, resource_metrics_on=True, system_metrics_installed=False) is None


@given(base=st.from_regex(r"https?://[a-z]{1,8}(:[0-9]{2,5})?(/[a-z]{1,5})?/?", fullmatch=True))
def test_prefects_url_is_the_base_plus_its_signal_path(base: str) -> None:
    assert prefect_metrics_url({"OTEL_EXPORTER_OTLP_ENDPOINT": base}) == base.rstrip("/") + "/v1/metrics"


def test_the_warning_is_said_once_and_names_the_fix(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prefect_metrics, "resource_metrics_on", lambda: True)
    monkeypatch.setattr(prefect_metrics, "system_metrics_installed", lambda: True)
    prefect_metrics.rearm()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:secret@collector:4317", "PREFECT__FLOW_RUN_ID": "r1"}
    caplog.set_level(logging.WARNING)
    try:
        text = prefect_metrics.warn_once(env)
        assert prefect_metrics.warn_once(env) is None
    finally:
        prefect_metrics.rearm()
    assert text is not None and len(warnings_with(caplog, "OTLP/HTTP")) == 1
    assert "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" in text and "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS=false" in text
    assert "secret" not in text and "collector:4317/v1/metrics" in text
    assert prefect_metrics.warn_once({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) is None


def test_the_warning_is_only_said_in_a_flow_run_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect exports its resource metrics only from the flow-run processes workers and runners start
    (``PREFECT__FLOW_RUN_ID`` set): a flow called in a script loses nothing, so nothing is said there."""
    monkeypatch.setattr(prefect_metrics, "resource_metrics_on", lambda: True)
    monkeypatch.setattr(prefect_metrics, "system_metrics_installed", lambda: True)
    prefect_metrics.rearm()
    try:
        assert prefect_metrics.warn_once({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}) is None
        assert prefect_metrics.warn_once(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "PREFECT__FLOW_RUN_ID": "r1"}
        )
    finally:
        prefect_metrics.rearm()


@given(
    secret=st.from_regex(r"Qz[0-9A-Za-z]{6,20}", fullmatch=True),
    form=st.sampled_from(
        ["http://u:{s}@c:4317", "c:4317/v1/metrics?api_key={s}", "https://c:4317/p?x=1&token={s}#{s}", "u:{s}@c:4317"]
    ),
)
def test_the_warning_never_shows_a_credential_or_query(secret: str, form: str) -> None:
    env = {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": form.format(s=secret)}
    text = prefect_metrics.message(env, "port 4317 is OTLP/gRPC's")
    assert secret not in text
    assert "c:4317" in text


def test_the_check_reads_prefects_settings_and_the_installed_package() -> None:
    assert prefect_metrics.resource_metrics_on() is True  # Prefect's default
    importable = importlib.util.find_spec("opentelemetry.instrumentation.system_metrics") is not None
    assert prefect_metrics.system_metrics_installed() is importable


@pytest.mark.slow
@pytest.mark.parametrize("wire", ["http", "grpc"])
def test_what_happens_prefects_exporter_reaches_http_and_loses_everything_on_grpc(
    wire: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect's own ``RunMetrics`` (what ``python -m prefect.engine`` wraps a run in), against real receivers:
    the check warns exactly where the metrics are lost."""
    pytest.importorskip("opentelemetry.instrumentation.system_metrics")
    from prefect._internal.metrics import RunMetrics

    receiver_cm = http_receiver() if wire == "http" else grpc_receiver()
    with receiver_cm as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        if wire == "grpc":
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")  # what the user declared
        run = SimpleNamespace(id=uuid.uuid4(), deployment_id=None, work_pool_name=None)
        with (
            temporary_settings(updates={PREFECT_TELEMETRY_RESOURCE_METRICS_INTERVAL_SECONDS: 1}),
            RunMetrics(run, SimpleNamespace(name="probe")),  # type: ignore[arg-type]
        ):
            time.sleep(1.5)
        got = [p for p in receiver.points if p.resource.get(PREFECT_FLOW_RUN_ID) == str(run.id)]
        warned = collision(dict(os.environ), **ON) is not None
    assert (bool(got), warned) == ((True, False) if wire == "http" else (False, True))


def test_the_runtime_checks_once_per_process(
    store_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_synthobs.instrument.instrumentation import get_runtime, reset_runtime

    monkeypatch.setattr(prefect_metrics, "resource_metrics_on", lambda: True)
    monkeypatch.setattr(prefect_metrics, "system_metrics_installed", lambda: True)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", str(uuid.uuid4()))  # a flow-run process, where Prefect exports
    prefect_metrics.rearm()
    caplog.set_level(logging.WARNING)
    try:
        reset_runtime()
        get_runtime()
        so.configure(flush_interval_seconds=2.0)  # a runtime rebuilt: not said again
        get_runtime()
    finally:
        reset_runtime()
        prefect_metrics.rearm()
    assert len(warnings_with(caplog, "Prefect's flow-run resource metrics")) == 1
