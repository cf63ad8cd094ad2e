"""Prefect's own per-run process metrics beside synthobs': one flow run, one id, joinable.

A deployment's flow run is executed the way a worker or a runner executes it: ``python -m prefect.engine`` in a
process of its own, ``PREFECT__FLOW_RUN_ID`` and ``PREFECT__FLOW_ENTRYPOINT`` set, Prefect's resource metrics on
(``opentelemetry-instrumentation-system-metrics`` installed, a 1 s interval) and ``OTEL_EXPORTER_OTLP_ENDPOINT``
naming a real loopback OTLP/HTTP receiver. Prefect's ``process.*`` metrics arrive with ``prefect.flow-run.id`` on
their resource; synthobs' spans, run logs and metrics about that run carry the same id under the same name, and its
``flow_runs`` row has the run's CPU seconds and peak memory.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from otlp_receiver import Receiver, http_receiver
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate

import prefect_synthobs as so
from conftest import subprocess_env
from prefect_synthobs.telemetry.prefect_names import (
    PREFECT_DEPLOYMENT_ID,
    PREFECT_FLOW_NAME,
    PREFECT_FLOW_RUN_ID,
    PREFECT_WORK_POOL_NAME,
)

pytestmark = pytest.mark.usefixtures("prefect_server")

pytest.importorskip("opentelemetry.instrumentation.system_metrics", reason="Prefect's resource metrics need it")

MiB = 2**20
ALLOCATED = 200 * MiB

PROBE = '''
import time
from prefect import flow, task, get_run_logger
import prefect_synthobs as so


@task
def burn(seconds: float) -> float:
    """At least ``seconds`` of CPU time, whatever the machine's load."""
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    return time.process_time() - start


@so.observe(kind="generation", table="probe")
@flow(name={name!r})
def probe(work: bool) -> int:
    get_run_logger().warning("probe started")
    with so.span("generation.batch", work=work):
        if work:
            burn(1.0)
            block = bytearray(b"\\x01") * {allocated}  # filled: resident, not just reserved
            time.sleep(0.6)
            del block
        else:
            time.sleep(1.2)
    so.record_rows(1)
    return 1
'''


def _deployment(client: Any, flow_name: str, pool: str) -> Any:
    client.create_work_pool(work_pool=WorkPoolCreate(name=pool, type="process"))
    flow_id = client.create_flow_from_name(flow_name)
    return client.create_deployment(flow_id=flow_id, name="probe", work_pool_name=pool, entrypoint="probe.py:probe")


def _run_like_a_worker(tmp_path: Path, flow_name: str, deployment_id: Any, work: bool, env: dict[str, str]) -> str:
    """One flow run of the deployment, in its own ``python -m prefect.engine`` process, as a worker starts it."""
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(deployment_id, parameters={"work": work})
    run_env = {
        **env,
        "PREFECT__FLOW_RUN_ID": str(flow_run.id),
        "PREFECT__FLOW_ENTRYPOINT": f"{tmp_path / 'probe.py'}:probe",
        "PREFECT__FLOW_NAME": flow_name,  # what a worker also sets (a runner does not)
        "PREFECT__DEPLOYMENT_ID": str(deployment_id),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "prefect.engine"], env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OTLP/gRPC" not in proc.stderr  # an HTTP endpoint: no collision warning
    return str(flow_run.id)


def _prefect_points(receiver: Receiver, run_id: str) -> list[Any]:
    with receiver.lock:
        points = list(receiver.points)
    return [p for p in points if p.metric.startswith("process.") and p.resource.get(PREFECT_FLOW_RUN_ID) == run_id]


@pytest.mark.slow
def test_prefects_process_metrics_and_synthobs_signals_share_the_flow_run_id(tmp_path: Path) -> None:
    flow_name = f"probe-{uuid.uuid4().hex[:6]}"
    pool = f"pool-{uuid.uuid4().hex[:6]}"
    (tmp_path / "probe.py").write_text(PROBE.format(name=flow_name, allocated=ALLOCATED))
    store_url = str(tmp_path / "store")
    with get_client(sync_client=True) as client:
        deployment_id = _deployment(client, flow_name, pool)
    with http_receiver() as receiver:
        env = subprocess_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_LOGS_EXPORTER="otlp",
            PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS="true",
            PREFECT_TELEMETRY_RESOURCE_METRICS_INTERVAL_SECONDS="1",
            PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=store_url,
            PREFECT_INTEGRATIONS_SYNTHOBS_SPOOL_DIR=str(tmp_path / "spool"),
        )
        worked = _run_like_a_worker(tmp_path, flow_name, deployment_id, True, env)
        idled = _run_like_a_worker(tmp_path, flow_name, deployment_id, False, env)
        assert receiver.wait_until(lambda r: _prefect_points(r, worked) and _prefect_points(r, idled), timeout=30)
        with receiver.lock:
            spans, logs, points = list(receiver.spans), list(receiver.logs), list(receiver.points)

    # Prefect's own metrics: the run's identity on their resource
    prefect_points = _prefect_points(receiver, worked)
    assert {p.metric for p in prefect_points} >= {"process.cpu.utilization", "process.memory.usage"}
    prefect_identity = {k: v for k, v in prefect_points[0].resource.items() if k.startswith("prefect.")}
    assert prefect_identity == {
        PREFECT_FLOW_RUN_ID: worked,
        PREFECT_FLOW_NAME: flow_name,
        PREFECT_DEPLOYMENT_ID: str(deployment_id),
        PREFECT_WORK_POOL_NAME: pool,
    }

    # synthobs' row: the same id, with the run's CPU time and peak memory
    rows = so.HealthStore(store_url).read("flow_runs").set_index("flow_run_id")
    work, idle = rows.loc[worked], rows.loc[idled]
    assert work.cpu_seconds >= 1.0 > idle.cpu_seconds > 0  # the task burnt >= 1 s of CPU; sleeping burns little
    assert work.peak_memory_bytes >= ALLOCATED  # the peak, though the block was freed before the run ended
    assert work.peak_memory_bytes - idle.peak_memory_bytes >= ALLOCATED * 3 // 4  # the same process but the block
    peak_seen_by_prefect = max(p.value for p in prefect_points if p.metric == "process.memory.usage")
    # Prefect's samples never exceed the measured peak by more than the kernel's counters drift (psutil's RSS
    # against ru_maxrss: seen 8 KiB over on a loaded CI run)
    assert peak_seen_by_prefect <= work.peak_memory_bytes + 4 * 2**20

    # synthobs' spans of the run: the flow span with Prefect's four names, its task and domain spans with the id
    of_run = [s for s in spans if s.attributes.get(PREFECT_FLOW_RUN_ID) == worked]
    (flow_span,) = [s for s in of_run if s.attributes.get("prefect.run.type") == "flow"]
    assert {k: flow_span.attributes[k] for k in prefect_identity} == prefect_identity
    assert flow_span.attributes["synthobs.process.cpu_seconds"] == pytest.approx(work.cpu_seconds)
    assert flow_span.attributes["synthobs.process.peak_memory_bytes"] == work.peak_memory_bytes
    assert {s.attributes.get("prefect.run.type") for s in of_run} >= {"flow", "task"}
    assert [s.name for s in of_run if s.name == "generation.batch"] == ["generation.batch"]
    assert len({s.trace_id for s in of_run}) == 1

    # synthobs' run logs: per-record attributes under the same names
    (started,) = [r for r in logs if r.body == "probe started" and r.attributes.get(PREFECT_FLOW_RUN_ID) == worked]
    assert {k: started.attributes.get(k) for k in prefect_identity} == prefect_identity

    # synthobs' metrics: the flow-run process's resource carries the id (never a metric attribute)
    ours = [p for p in points if p.metric.startswith("synthobs.")]
    from_run = [p for p in ours if p.resource.get(PREFECT_FLOW_RUN_ID) == worked]
    assert any(p.metric == "synthobs.flow.runs" for p in from_run)
    assert from_run[0].resource[PREFECT_FLOW_NAME] == flow_name
    assert from_run[0].resource[PREFECT_DEPLOYMENT_ID] == str(deployment_id)
    assert not [p for p in ours if set(p.attributes) & {PREFECT_FLOW_RUN_ID, "flow_run_id"}]
