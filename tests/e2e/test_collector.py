"""Traces, metrics (GPUs included) and run logs through a real OpenTelemetry collector.

The collector is ``rotel-agent`` (PyPI ``rotel``), receiving OTLP over gRPC and
HTTP and forwarding everything to the tests' wire receiver, which asserts on
what arrived. The flow process is configured by ``OTEL_*`` variables alone, as a
user with a collector would.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from otlp_receiver import Receiver, grpc_receiver

import prefect_synthobs as so
from conftest import free_port, nvml_env, run_python, silent_port

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

FLOW = """
import prefect_synthobs as so
from prefect import flow, task, get_run_logger

@task(log_prints=True)
def fit(i: int) -> int:
    print(f"fitting part {i} for jane.doe@example.com")
    return i

@so.observe(kind="training", model_type="ctgan")
@flow(name="collector-train", log_prints=True)
def train() -> int:
    get_run_logger().info("training starts")
    return sum(fit(i) for i in range(3))

assert train() == 3
"""


def rotel_agent() -> Path:
    try:
        import rotel
    except ImportError:
        pytest.fail("the rotel collector is part of the test extra: pip install -e '.[test]'")
    return Path(rotel.__file__).parent / "rotel-agent"


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open")


@contextlib.contextmanager
def collector(forward_to: str, log: Path) -> Iterator[tuple[int, int]]:
    """A rotel collector forwarding to ``forward_to`` (gRPC); yields its (gRPC, HTTP) ports."""
    grpc_port, http_port = free_port(), free_port()
    command = [
        str(rotel_agent()),
        "start",
        "--otlp-grpc-endpoint",
        f"127.0.0.1:{grpc_port}",
        "--otlp-http-endpoint",
        f"127.0.0.1:{http_port}",
        "--exporter",
        "otlp",
        "--otlp-exporter-endpoint",
        forward_to,
        "--otlp-exporter-protocol",
        "grpc",
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_port(grpc_port)
            _wait_port(http_port)
            yield grpc_port, http_port
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _flow_env(tmp_path: Path, nvml_dir: Path, **otel: str) -> dict[str, str]:
    return nvml_env(
        nvml_dir,
        PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(tmp_path / "store"),
        PREFECT_INTEGRATIONS_SYNTHOBS_SPOOL_DIR=str(tmp_path / "spool"),
        PREFECT_INTEGRATIONS_SYNTHOBS_GPU_INTERVAL_SECONDS="0.25",
        OTEL_SERVICE_NAME="collector-test",
        PREFECT_LOGGING_LEVEL="INFO",  # run logs below the level are never made, so never exported
        OTEL_METRIC_EXPORT_INTERVAL="60000",  # only the flow's end exports: nothing is lost at exit
        **otel,
    )


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_traces_metrics_and_logs_reach_a_collector_from_otel_variables_alone(
    tmp_path: Path, fake_nvml: dict[str, Path], protocol: str
) -> None:
    with grpc_receiver() as receiver, collector(receiver.endpoint, tmp_path / "rotel.log") as (grpc_port, http_port):
        port = grpc_port if protocol == "grpc" else http_port
        env = _flow_env(
            tmp_path,
            fake_nvml["current"],
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_LOGS_EXPORTER="otlp",
        )
        proc = run_python(FLOW, env)

        def arrived(r: Receiver) -> bool:
            logs = [rec for rec in r.logs if "fitting part" in str(rec.body)]
            return bool(r.latest("synthobs.flow.runs")) and len(logs) == 3 and bool(r.latest("hw.gpu.utilization"))

        assert receiver.wait_until(arrived, timeout=60), (
            sorted({p.metric for p in receiver.points}),
            [rec.body for rec in receiver.logs],
            (tmp_path / "rotel.log").read_text()[-3000:],
            proc.stderr[-3000:],
        )
    flow_span = next(s for s in receiver.spans if s.attributes.get("prefect.run.type") == "flow")
    tasks = [s for s in receiver.spans if s.attributes.get("prefect.run.type") == "task"]
    assert len(tasks) == 3 and {t.trace_id for t in tasks} == {flow_span.trace_id}
    # metrics: the catalog's OTLP names, one process's values
    ((labels, runs),) = receiver.latest("synthobs.flow.runs").items()
    assert dict(labels) == {"flow": "collector-train", "kind": "training", "state": "COMPLETED"}
    assert runs.value == 1 and runs.monotonic and runs.resource["service.name"] == "collector-test"
    assert runs.resource["service.instance.id"] and runs.resource["host.name"]
    task_runs = receiver.latest("synthobs.task.runs")
    assert sum(p.value for p in task_runs.values()) == 3
    durations = [p for p in receiver.points if p.metric == "synthobs.flow.run.duration"]
    assert durations and durations[-1].count == 1
    assert flow_span.trace_id in {e[0] for p in durations for e in p.exemplars}  # click from the bucket to the trace
    # GPUs under the semantic conventions, from the fake NVML library through the real nvidia-ml-py
    gpus = receiver.latest("hw.gpu.utilization")
    ids = {dict(k)["hw.id"] for k in gpus}
    assert "GPU-fa4e0000-0000-0000-0000-000000000000" in ids
    a100 = next(p for k, p in gpus.items() if dict(k)["hw.id"].endswith("000000000000"))
    assert a100.attributes["hw.type"] == "gpu" and a100.attributes["hw.vendor"] == "NVIDIA"
    assert 0 <= a100.value <= 1
    assert receiver.latest("hw.gpu.memory.limit") and receiver.latest("hw.energy")
    # run logs: log_prints and the run logger, redacted, in the run's trace
    prints = [rec for rec in receiver.logs if "fitting part" in str(rec.body)]
    assert all("[REDACTED]" in rec.body and "jane.doe" not in rec.body for rec in prints)
    assert {rec.trace_id for rec in prints} == {flow_span.trace_id}
    assert {rec.span_id for rec in prints} == {t.span_id for t in tasks}
    assert {rec.attributes["prefect.task.name"] for rec in prints} == {"fit"}
    starts = [rec for rec in receiver.logs if rec.body == "training starts"]
    assert len(starts) == 1 and starts[0].span_id == flow_span.span_id and starts[0].severity_text == "INFO"


@pytest.mark.parametrize("collector_state", ["down", "hanging"])
def test_a_collector_down_or_hanging_costs_a_warning_and_bounded_time(
    tmp_path: Path, fake_nvml: dict[str, Path], collector_state: str
) -> None:
    with contextlib.ExitStack() as stack:
        port = free_port() if collector_state == "down" else stack.enter_context(silent_port())
        env = _flow_env(
            tmp_path,
            fake_nvml["current"],
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_LOGS_EXPORTER="otlp",
            PREFECT_INTEGRATIONS_SYNTHOBS_OTLP_TIMEOUT_SECONDS="1",
        )
        proc = run_python(FLOW, env)  # the flow's own assert holds: its result is unchanged
    output = proc.stdout + proc.stderr
    for what in ("spans", "metrics", "run logs"):
        assert output.count(f"cannot export {what} to") <= 1, output[-3000:]
    assert "cannot export metrics to" in output or "cannot export spans to" in output
    assert "Traceback" not in output, output[-3000:]
    # no health row lost: the flow's row and its three task rows are in the store
    store = so.HealthStore(str(tmp_path / "store"))
    flows = store.read("flow_runs")
    assert list(zip(flows.flow_name, flows.state_type, strict=True)) == [("collector-train", "COMPLETED")]
    assert len(store.read("task_runs")) == 3
