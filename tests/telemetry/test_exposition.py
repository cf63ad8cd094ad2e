"""Metric export against real Prometheus tools: pushgateway, promtool, textfile, http."""

from __future__ import annotations

import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest
from prefect import flow, task
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import prefect_synthobs as so
from conftest import free_port, promtool, run_python, subprocess_env
from prefect_synthobs.instrument.instrumentation import get_runtime
from prefect_synthobs.metrics import REGISTRY
from prefect_synthobs.telemetry.exposition import Family, accumulate, families_from_metrics, render

pytestmark = pytest.mark.usefixtures("prefect_server")

CHILD = """
import prefect_synthobs as so
from prefect import flow, task

@task
def step(i):
    return i

@so.observe(kind="generation", model_type="copula", table="customers")
@flow(name={name!r})
def gen(n: int) -> int:
    so.record_rows(n)
    return sum(step(i) for i in range(3))

assert gen(10) == 3
"""


def _samples(text: str, name: str, **labels: str) -> list[float]:
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                out.append(s.value)
    return out


@pytest.mark.slow
def test_pushgateway_counters_accumulate_across_processes(pushgateway: str, tmp_path: Path) -> None:
    name = f"push test ünï {uuid.uuid4().hex[:6]}"  # spaces and unicode in the job label
    env = subprocess_env(
        PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE="pushgateway",
        PREFECT_INTEGRATIONS_SYNTHOBS_PUSHGATEWAY_URL=pushgateway,
        PREFECT_INTEGRATIONS_SYNTHOBS_PUSHGATEWAY_GROUPING='{"team": "synth"}',
        PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(tmp_path / "store"),
    )
    for _ in range(2):  # two short-lived flow processes, as a scheduler would start them
        run_python(CHILD.format(name=name), env)
    text = urllib.request.urlopen(f"{pushgateway}/metrics").read().decode()
    group = {"job": name, "team": "synth", "flow": name}
    assert _samples(text, "synthobs_flow_runs_total", state="COMPLETED", kind="generation", **group) == [2.0]
    assert _samples(text, "synthobs_task_runs_total", task="step", state="COMPLETED", **group) == [6.0]
    assert _samples(text, "synthobs_generation_rows_total", table="customers", **group) == [20.0]
    assert _samples(text, "synthobs_flow_run_duration_seconds_count", **group) == [2.0]
    assert _samples(text, "synthobs_flow_run_duration_seconds_bucket", le="+Inf", **group) == [2.0]
    assert len(_samples(text, "synthobs_last_success_timestamp_seconds", **group)) == 1
    # the health store got both runs too
    assert len(so.HealthStore(str(tmp_path / "store")).read("flow_runs")) == 2


@pytest.mark.slow
def test_pushgateway_in_process_pushes_only_that_flows_series(store_dir: Path, pushgateway: str) -> None:
    so.configure(metrics_mode="pushgateway", pushgateway_url=pushgateway)
    a, b = f"flow-a-{uuid.uuid4().hex[:6]}", f"flow-b-{uuid.uuid4().hex[:6]}"

    @so.observe
    @flow(name=a)
    def fa() -> None:
        pass

    @so.observe
    @flow(name=b)
    def fb() -> None:
        pass

    fa(), fb(), fa()
    text = urllib.request.urlopen(f"{pushgateway}/metrics").read().decode()
    assert _samples(text, "synthobs_flow_runs_total", job=a, flow=a) == [2.0]
    assert _samples(text, "synthobs_flow_runs_total", job=b, flow=b) == [1.0]
    assert _samples(text, "synthobs_flow_runs_total", job=a, flow=b) == []


@pytest.mark.slow
def test_pushgateway_pushes_flowless_series_to_a_shared_host_group(store_dir: Path, pushgateway: str) -> None:
    import socket

    so.configure(metrics_mode="pushgateway", pushgateway_url=pushgateway)
    name, table = f"scored-{uuid.uuid4().hex[:6]}", f"tbl-{uuid.uuid4().hex[:6]}"

    @so.observe(kind="quality", table=table)
    @flow(name=name)
    def score(value: float) -> None:
        so.record_quality("overall", value, threshold=0.5)

    score(0.9), score(0.7)
    text = urllib.request.urlopen(f"{pushgateway}/metrics").read().decode()
    host = socket.gethostname()
    assert _samples(text, "synthobs_quality_score", job="synthobs", instance=host, table=table) == [0.7]
    assert _samples(
        text, "synthobs_quality_gate_checks_total", job="synthobs", instance=host, table=table, result="pass"
    ) == [2.0]  # accumulated across pushes, not re-added
    assert _samples(text, "synthobs_quality_score", job=name) == []  # not in the flow's own group
    assert _samples(text, "synthobs_flow_runs_total", job=name, flow=name) == [2.0]


@pytest.mark.slow
def test_exposition_passes_promtool_check_metrics(store_dir: Path, tmp_path: Path) -> None:
    @task
    def t() -> None:
        raise ValueError("x")

    @so.observe(kind="training", model_type="ctgan", table="t1")
    @flow(name=f"promtool-{uuid.uuid4().hex[:6]}")
    def f() -> None:
        so.record_rows(5)
        so.record_epoch(0, loss={"generator": 0.5, "discriminator": 0.9})
        so.record_quality("ks_complement:age", 0.9, threshold=0.8)
        t()

    f(return_state=True)
    text = generate_latest(REGISTRY)
    assert b"synthobs_errors_total" in text and b"synthobs_training_loss" in text
    proc = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


@pytest.mark.slow
def test_textfile_is_atomic_accumulates_across_processes_and_passes_promtool(tmp_path: Path) -> None:
    prom = tmp_path / "textfile" / "synthobs.prom"
    name = f"textfile-{uuid.uuid4().hex[:6]}"
    env = subprocess_env(
        PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE="textfile",
        PREFECT_INTEGRATIONS_SYNTHOBS_TEXTFILE_PATH=str(prom),
        PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(tmp_path / "store"),
    )
    for _ in range(2):
        run_python(CHILD.format(name=name), env)
    text = prom.read_text()
    assert _samples(text, "synthobs_flow_runs_total", flow=name, state="COMPLETED") == [2.0]
    assert _samples(text, "synthobs_generation_rows_total", flow=name) == [20.0]
    assert [p.name for p in prom.parent.iterdir() if p.name.endswith(".prom")] == ["synthobs.prom"]
    proc = subprocess.run([promtool(), "check", "metrics"], input=prom.read_bytes(), capture_output=True)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


def test_http_mode_serves_the_registry_on_loopback(store_dir: Path) -> None:
    port = free_port()
    so.configure(metrics_mode="http", metrics_port=port)
    name = f"http-{uuid.uuid4().hex[:6]}"

    @so.observe
    @flow(name=name)
    def f() -> int:
        return 1

    f()
    exporter = get_runtime().exporter
    assert exporter._server.server_address[0] == "127.0.0.1"  # type: ignore[attr-defined]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    assert _samples(text, "synthobs_flow_runs_total", flow=name) == [1.0]


def test_accumulate_is_pure_and_handles_counter_gauge_and_restart() -> None:
    key = ("x_total", (("flow", "f"),))
    gkey = ("g", (("flow", "f"),))
    remote = {"x": Family("x", "counter", "h", {key: 10.0}), "g": Family("g", "gauge", "h", {gkey: 1.0})}
    local = {"x": Family("x", "counter", "h", {key: 3.0}), "g": Family("g", "gauge", "h", {gkey: 5.0})}
    base = {"x": Family("x", "counter", "h", {key: 1.0})}
    out = accumulate(remote, local, base)
    assert out["x"].samples[key] == 12.0  # 10 + (3 - 1)
    assert out["g"].samples[gkey] == 5.0
    assert remote["x"].samples[key] == 10.0  # inputs untouched
    restarted = accumulate(
        remote, {"x": Family("x", "counter", "h", {key: 2.0})}, baseline={"x": Family("x", "counter", "h", {key: 7.0})}
    )
    assert restarted["x"].samples[key] == 12.0  # a counter below its baseline restarted: +2
    text = render(out).decode()
    parsed = families_from_metrics(text_string_to_metric_families(text))
    assert parsed["x"].samples[key] == 12.0
