"""Traces reach a real OTLP receiver whole: Prefect's spans, enriched, plus domain spans."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from otlp_receiver import ReceivedSpan, grpc_receiver, http_receiver
from prefect import flow, task

import prefect_synthobs as so
from conftest import run_python, served_deployment, stop, subprocess_env
from prefect_synthobs.telemetry.tracing import export_config

pytestmark = pytest.mark.usefixtures("prefect_server")


def _generation_flow(name: str):
    @task
    def sample_batch(i: int) -> int:
        with so.span("generation.sampling", batch=i):
            return 100

    @so.observe(kind="generation", model_type="gaussian_copula", table="customers")
    @flow(name=name)
    def generate(batches: int) -> int:
        with so.span("generation.batch", batches=batches):
            futures = [sample_batch.submit(i) for i in range(batches)]
            rows = sum(f.result() for f in futures)
        so.record_rows(rows)
        return rows

    return generate


def _check_one_trace(spans: list[ReceivedSpan], flow_name: str, batches: int) -> None:
    runs = [s for s in spans if "prefect.run.type" in s.attributes]
    flows = [s for s in runs if s.attributes["prefect.run.type"] == "flow"]
    tasks = [s for s in runs if s.attributes["prefect.run.type"] == "task"]
    assert len(flows) == 1, [s.name for s in flows]
    root = flows[0]
    assert root.parent_span_id == ""  # Prefect's flow span is the root
    assert {s.trace_id for s in spans} == {root.trace_id}  # one trace
    run_ids = [s.attributes["prefect.run.id"] for s in runs]
    assert len(run_ids) == len(set(run_ids))  # no duplicate run spans
    batch = [s for s in spans if s.name == "generation.batch"]
    assert len(batch) == 1 and batch[0].parent_span_id == root.span_id
    # tasks submitted inside the domain span are its children: flow > batch > task > sampling
    assert len(tasks) == batches and all(t.parent_span_id == batch[0].span_id for t in tasks)
    attrs = root.attributes
    assert attrs["synthobs.kind"] == "generation"
    assert attrs["synthobs.model_type"] == "gaussian_copula"
    assert attrs["synthobs.table"] == "customers"
    assert attrs["synthobs.rows"] == 100 * batches and attrs["synthobs.rows_per_second"] > 0
    sampling = [s for s in spans if s.name == "generation.sampling"]
    task_ids = {t.span_id for t in tasks}
    assert len(sampling) == batches and all(s.parent_span_id in task_ids for s in sampling)
    writes = [s for s in spans if s.name == "storage.write"]
    assert writes and all(w.parent_span_id == root.span_id for w in writes)
    assert {w.attributes["synthobs.storage.table"] for w in writes} >= {"flow_runs", "task_runs"}
    assert all(w.attributes["synthobs.storage.bytes"] > 0 for w in writes)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_generation_flow_arrives_as_one_enriched_trace(store_dir: Path, protocol: str) -> None:
    receiver_cm = http_receiver() if protocol == "http/protobuf" else grpc_receiver()
    with receiver_cm as receiver:
        so.configure(otlp_endpoint=receiver.endpoint, otlp_protocol=protocol, otlp_headers={"x-team": "synth"})
        name = f"traced-{uuid.uuid4().hex[:6]}"
        assert _generation_flow(name)(3) == 300
        # flushed when the flow span ended: already there, no waiting for a batch
        spans = [s for s in receiver.spans if s.trace_id]
        flow_spans = [s for s in spans if s.attributes.get("prefect.run.type") == "flow"]
        assert flow_spans, "the flow span must be exported by the time the flow returns"
        _check_one_trace([s for s in spans if s.trace_id == flow_spans[0].trace_id], name, 3)
        assert any(h.get("x-team") == "synth" for h in receiver.headers)
        resource = flow_spans[0].resource
        assert resource["service.name"] == "prefect-synthobs" and "host.name" in resource
    so.configure(otlp_endpoint=None, otlp_protocol=None, otlp_headers=None)


CHILD = """
import prefect_synthobs as so
from prefect import flow, task

@task
def step(i):
    with so.span("generation.sampling", batch=i):
        return i

@so.observe(kind="generation", model_type="copula", table="t")
@flow(name="otel-env-only")
def gen():
    so.record_rows(5)
    return sum(step.submit(i).result() for i in range(2))

assert gen() == 1
"""


@pytest.mark.slow
def test_standard_otel_variables_alone_configure_export(tmp_path: Path) -> None:
    with grpc_receiver() as receiver:
        env = subprocess_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
            OTEL_SERVICE_NAME="synth-env-test",
            OTEL_RESOURCE_ATTRIBUTES="deployment.environment=ci,team=synth",
            PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(tmp_path / "store"),
        )
        run_python(CHILD, env)  # the process exits right after the flow: nothing may be lost
        spans = receiver.spans
    flows = [s for s in spans if s.attributes.get("prefect.run.type") == "flow"]
    assert len(flows) == 1
    assert flows[0].resource["service.name"] == "synth-env-test"
    assert flows[0].resource["deployment.environment"] == "ci" and flows[0].resource["team"] == "synth"
    assert flows[0].attributes["synthobs.rows"] == 5
    assert len([s for s in spans if s.attributes.get("prefect.run.type") == "task"]) == 2
    assert len([s for s in spans if s.name == "generation.sampling"]) == 2


def test_export_config_resolution_is_pure() -> None:
    settings = so.SynthObsSettings()
    assert not export_config(settings, {}).enabled
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    cfg = export_config(settings, env)
    assert (cfg.endpoint, cfg.protocol) == ("http://c:4317", "grpc")
    explicit = so.SynthObsSettings(otlp_endpoint="http://x:4318")
    assert export_config(explicit, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}).endpoint == "http://x:4318"
    with pytest.raises(ValueError, match="protocol"):
        export_config(settings, {"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"})


SERVED = """
from prefect import flow, task
import prefect_synthobs as so

@task
def child_step(i: int) -> int:
    return i

@so.observe(kind="generation", model_type="copula", table="remote")
@flow(name={name!r})
def child(n: int = 2) -> int:
    so.record_rows(n)
    return sum(child_step(i) for i in range(n))

if __name__ == "__main__":
    child.serve(name="remote", limit=2)
"""


@pytest.mark.slow
def test_deployment_run_in_a_runner_process_joins_the_parent_trace(tmp_path: Path) -> None:
    """The runner's flow-run subprocess sets tracing up from the environment alone
    (no code in the flow file) and its spans join the calling flow's trace."""
    from prefect.deployments import run_deployment

    name = f"remote-child-{uuid.uuid4().hex[:6]}"
    flow_file = tmp_path / "served.py"
    flow_file.write_text(SERVED.format(name=name))
    with grpc_receiver() as receiver:
        env = subprocess_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
            PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(tmp_path / "store"),
        )
        with served_deployment(flow_file, f"{name}/remote", env) as runner:
            so.configure(
                store_url=str(tmp_path / "parent-store"), otlp_endpoint=receiver.endpoint, otlp_protocol="grpc"
            )

            @so.observe(kind="other")
            @flow(name=f"caller-{uuid.uuid4().hex[:6]}")
            def caller() -> str:
                run = run_deployment(f"{name}/remote", parameters={"n": 3}, timeout=180)
                assert run.state is not None and run.state.is_completed(), run.state
                return str(run.id)

            child_run_id = caller()
            spans = receiver.wait_for(
                lambda ss: any(s.attributes.get("prefect.run.id") == child_run_id for s in ss), timeout=30
            )
            out = stop(runner)
        so.configure(otlp_endpoint=None, otlp_protocol=None)
    flows = {s.attributes.get("prefect.run.id"): s for s in spans if s.attributes.get("prefect.run.type") == "flow"}
    assert child_run_id in flows, out[-3000:]
    child_span = flows[child_run_id]
    parents = [s for s in flows.values() if s.attributes.get("prefect.run.id") != child_run_id]
    assert len(parents) == 1
    parent = parents[0]
    assert child_span.trace_id == parent.trace_id  # one trace across processes
    in_parent_trace = {s.span_id for s in spans if s.trace_id == parent.trace_id}
    assert child_span.parent_span_id in in_parent_trace
    assert child_span.attributes["synthobs.kind"] == "generation"
    assert child_span.attributes["synthobs.rows"] == 3
    child_tasks = [s for s in spans if s.attributes.get("prefect.run.type") == "task" and s.trace_id == parent.trace_id]
    assert len(child_tasks) == 3


@pytest.mark.slow
def test_stable_span_names_are_opt_in(store_dir: Path) -> None:
    with http_receiver() as receiver:
        so.configure(otlp_endpoint=receiver.endpoint, otlp_protocol="http/protobuf")
        default_name = f"named-default-{uuid.uuid4().hex[:6]}"
        assert _generation_flow(default_name)(2) == 200
        so.configure(span_names="stable")
        stable_name = f"named-stable-{uuid.uuid4().hex[:6]}"
        assert _generation_flow(stable_name)(2) == 200
        spans = receiver.wait_for(lambda s: sum(x.attributes.get("prefect.run.type") == "flow" for x in s) >= 2)
    runs = [s for s in spans if "prefect.run.type" in s.attributes]
    assert len([s for s in runs if s.attributes["prefect.run.type"] == "flow"]) == 2
    by_trace: dict[str, list[str]] = {}
    for s in runs:
        by_trace.setdefault(s.trace_id, []).append(s.name)
    named = sorted(by_trace.values(), key=lambda names_: any(n.startswith("flow/") for n in names_))
    default_names, stable_names_ = named
    assert not any(n.startswith(("flow/", "task/")) for n in default_names)  # Prefect's run names by default
    assert sorted(stable_names_) == sorted([f"flow/{stable_name}", "task/sample_batch", "task/sample_batch"])
    stable_flow = next(s for s in runs if s.name == f"flow/{stable_name}")
    assert stable_flow.attributes["prefect.run.name"] != stable_flow.name  # the run name is kept
    assert stable_flow.attributes["synthobs.kind"] == "generation"  # synthobs attributes still there
    assert stable_flow.attributes["synthobs.rows"] == 200
    so.configure(span_names="prefect", otlp_endpoint=None, otlp_protocol=None)


@pytest.mark.slow
def test_telemetry_off_synthobs_opens_the_flow_span_itself(tmp_path: Path) -> None:
    with http_receiver() as receiver:
        env = subprocess_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY="false",
            PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(tmp_path / "store"),
        )
        run_python(CHILD, env)
        spans = receiver.spans
    flows = [s for s in spans if s.attributes.get("prefect.run.type") == "flow"]
    assert len(flows) == 1  # one flow span, opened by synthobs (Prefect made none)
    root = flows[0]
    assert root.attributes["synthobs.span.origin"] == "synthobs" and root.parent_span_id == ""
    assert root.attributes["synthobs.kind"] == "generation" and root.attributes["synthobs.rows"] == 5
    assert root.attributes["prefect.state.type"] == "COMPLETED"
    sampling = [s for s in spans if s.name == "generation.sampling"]
    assert len(sampling) == 2 and all(s.trace_id == root.trace_id for s in sampling)  # nested under it
    assert not [s for s in spans if s.attributes.get("prefect.run.type") == "task"]  # Prefect's are off
    runs = so.HealthStore(str(tmp_path / "store")).read("flow_runs")
    assert list(runs.trace_id) == [root.trace_id]
