"""The real ``nvidia-ml-py`` code path against a fake ``libnvidia-ml.so.1``.

The tests compile ``tests/fake_nvml/fake_nvml.c`` with gcc and load it through
``LD_LIBRARY_PATH`` in a subprocess, so NVML is reached exactly as on a GPU
machine: ctypes symbol lookup, structs, error codes. A last test runs on a real
GPU when one is present.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from otlp_receiver import http_receiver

import prefect_synthobs as so
from conftest import nvml_env, run_python, subprocess_env, wait_for_events
from prefect_synthobs import catalog as names

GIB = 1024**3


BACKEND = """
import ctypes, json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
import pynvml
from prefect_synthobs.gpu.nvml import NvmlBackend
b = NvmlBackend()
devices = b.devices()
for _ in range(5):
    readings = [b.read(d) for d in devices]
calls = pynvml.nvmlLib.fake_nvml_calls
calls.restype = ctypes.c_long
print(json.dumps({
    "devices": [[d.index, d.uuid, d.name, d.mig_enabled] for d in devices],
    "readings": [r.__dict__ for r in readings],
    "disabled": [sorted(b.disabled_fields(d)) for d in devices],
    "calls": {n: [calls(n.encode(), i) for i in range(2)]
              for n in ("utilization", "memory", "memory_v2", "temperature", "temperature_v", "power")},
}))
"""


@pytest.mark.slow
def test_two_devices_through_real_pynvml(fake_nvml: dict[str, Path]) -> None:
    # synthobs' info lines are on `prefect.synthobs`, at PREFECT_LOGGING_LEVEL (the tests' default is WARNING)
    proc = run_python(BACKEND, nvml_env(fake_nvml["current"], PREFECT_LOGGING_LEVEL="INFO"))
    out = json.loads(proc.stdout)
    assert [d[2] for d in out["devices"]] == ["NVIDIA Fake A100", "NVIDIA Fake H100 MIG"]
    assert [d[3] for d in out["devices"]] == [False, True]  # MIG seen, sampler fine
    a100, h100 = out["readings"]
    assert a100["utilization"] == 0.5 and a100["memory_used_bytes"] == 10 * GIB
    assert a100["memory_total_bytes"] == 40 * GIB and a100["power_w"] == 250.0
    assert a100["temperature_c"] == 60.0 and a100["sm_clock_mhz"] == 1410
    assert 1000.0 <= a100["energy_counter_j"] < 1100.0
    assert h100["utilization"] is None and h100["memory_used_bytes"] == 20 * GIB
    assert out["disabled"] == [[], ["utilization"]]
    calls = out["calls"]
    assert calls["utilization"] == [5, 1]  # NotSupported: asked once, then never again
    assert calls["memory_v2"] == [5, 5] and calls["memory"] == [0, 0]  # v2 when the driver has it
    assert calls["temperature_v"] == [5, 5] and calls["temperature"] == [0, 0]
    assert proc.stderr.count("utilization not sampled") == 1  # one line, not one per sample


@pytest.mark.slow
def test_old_driver_falls_back_to_older_calls(fake_nvml: dict[str, Path]) -> None:
    out = json.loads(run_python(BACKEND, nvml_env(fake_nvml["old"])).stdout)
    a100 = out["readings"][0]
    assert a100["memory_used_bytes"] == 10 * GIB and a100["temperature_c"] == 60.0
    calls = out["calls"]
    assert calls["memory"] == [5, 5] and calls["temperature"] == [5, 5]
    assert out["disabled"] == [[], ["utilization"]]


OBSERVED_FLOW = """
import json, logging, os, pathlib, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
import prefect_synthobs as so
from prefect import flow
from prometheus_client import generate_latest
from prefect_synthobs.instrument.instrumentation import current_sampler
from prefect_synthobs.metrics import REGISTRY

so.configure(store_url=os.environ["STORE"], spool_dir=os.environ["SPOOL"], gpu_interval_seconds=0.25,
             gpu_energy_interval_seconds=float(os.environ.get("ENERGY_INTERVAL", "10")))
lost = pathlib.Path(os.environ.get("FAKE_NVML_LOST_FILE", "/nonexistent/never"))

def work(seconds, samples):
    # at least `seconds`, and until the sampler's thread has taken `samples` more samples: a loaded
    # machine delays the thread, so wait for its samples rather than hope they came in time
    until = time.monotonic() + seconds
    sampler = current_sampler()
    if sampler is not None and sampler.thread_alive:
        target, deadline = sampler.samples_taken + samples, time.monotonic() + 120
        while sampler.samples_taken < target and time.monotonic() < deadline:
            time.sleep(0.05)
    time.sleep(max(until - time.monotonic(), 0.0))

@so.observe(kind="training", model_type="ctgan", table="customers")
@flow(name=os.environ["FLOW_NAME"])
def train():
    work(1.5, 6)
    if "FAKE_NVML_LOST_FILE" in os.environ:
        lost.touch()  # device 1 falls off the bus mid-run
    work(1.0, 4)
    return 42

started = time.monotonic()  # the fake's energy counters run on this clock (CLOCK_MONOTONIC)
state = train(return_state=True)
call_seconds = time.monotonic() - started
print(json.dumps({"result": state.result(), "flow_run_id": str(state.state_details.flow_run_id),
                  "call_seconds": call_seconds, "metrics": generate_latest(REGISTRY).decode()}))
"""


def samples_by_name(exposition: str) -> dict[str, dict[tuple[str, str], float]]:
    """``{sample name: {(gpu, model): value}}`` from a text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[tuple[str, str], float]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if "gpu" in sample.labels:
                out.setdefault(sample.name, {})[(sample.labels["gpu"], sample.labels["model"])] = sample.value
    return out


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.slow
def test_observed_flow_samples_gpus_and_survives_a_lost_gpu(fake_nvml: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "store"
    flow_name = f"gpu-train-{uuid.uuid4().hex[:6]}"
    with http_receiver() as receiver:
        env = nvml_env(
            fake_nvml["current"],
            STORE=str(store),
            SPOOL=str(tmp_path / "spool"),
            FLOW_NAME=flow_name,
            FAKE_NVML_LOST_FILE=str(tmp_path / "gpu1-lost"),
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            ENERGY_INTERVAL="0.25",
        )
        proc = run_python(OBSERVED_FLOW, env)
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        flow_spans = [s for s in receiver.spans if s.attributes.get("prefect.run.id") == out["flow_run_id"]]
    assert out["result"] == 42  # the lost GPU never reached the flow
    assert "GPU 1 (NVIDIA Fake H100 MIG" in proc.stderr and "is lost" in proc.stderr

    reader = so.HealthStore(str(store))
    samples = reader.read(names.GPU_SAMPLES)
    samples = samples[samples.flow_run_id == out["flow_run_id"]]
    per_device = samples.groupby("gpu_index").size().to_dict()
    # the flow waits for 6 samples before device 1 is lost and 4 after it, then detaches (1 more of device 0)
    assert per_device[0] >= 6 + 4 + 1, per_device
    assert 6 <= per_device[1] < per_device[0], per_device
    assert set(samples.gpu_name) == {"NVIDIA Fake A100", "NVIDIA Fake H100 MIG"}
    assert samples[samples.gpu_index == 1].utilization.isna().all()  # NotSupported → null, not 0
    assert (samples[samples.gpu_index == 0].utilization == 0.5).all()
    assert (samples.host.notna()).all() and samples.flow_run_ids.map(list).map(len).eq(1).all()

    runs = reader.read(names.FLOW_RUNS)
    run = runs[runs.flow_run_id == out["flow_run_id"]].iloc[0]
    assert run.state_type == "COMPLETED"
    assert run.gpu_util_mean == pytest.approx(0.5) and run.gpu_util_max == pytest.approx(0.5)
    assert run.gpu_memory_peak_bytes == 30 * GIB  # 10 + 20 GiB in use while both were there
    # energy: the fake's counters grow at 250 W (device 0) and 300 W (device 1) of CLOCK_MONOTONIC time
    assert run.gpu_energy_j == pytest.approx(samples.energy_j.sum(), rel=1e-6)
    dev0 = samples[samples.gpu_index == 0].sort_values("time")
    # a run's energy is exact: counter at attach (before the flow body, >= 2.5 s) to counter at detach
    # (after it), both inside the flow call; nothing before attach (the counter's base) or after detach.
    # Bounds on the same clock as the counters, so a loaded machine cannot break them.
    assert 250 * 2.5 <= dev0.energy_j.sum() <= 250 * out["call_seconds"]
    assert dev0.energy_j.sum() < run.gpu_energy_j <= (250 + 300) * out["call_seconds"]

    metrics = samples_by_name(out["metrics"])
    assert metrics["synthobs_gpu_utilization_ratio"][("0", "NVIDIA Fake A100")] == 0.5
    assert metrics["synthobs_gpu_memory_total_bytes"][("1", "NVIDIA Fake H100 MIG")] == 80 * GIB
    assert metrics["synthobs_gpu_power_watts"][("0", "NVIDIA Fake A100")] == 250.0
    assert ("1", "NVIDIA Fake H100 MIG") not in metrics["synthobs_gpu_temperature_celsius"]  # lost: removed
    assert metrics["synthobs_gpu_energy_joules_total"][("0", "NVIDIA Fake A100")] == pytest.approx(
        dev0.energy_j.sum(), rel=1e-6
    )

    assert len(flow_spans) == 1  # the same summary on Prefect's flow span
    attrs = flow_spans[0].attributes
    assert attrs[names.ATTR_GPU_UTIL_MEAN] == pytest.approx(0.5)
    assert attrs[names.ATTR_GPU_MEMORY_PEAK] == 30 * GIB
    assert attrs[names.ATTR_GPU_ENERGY] == pytest.approx(run.gpu_energy_j)

    events = wait_for_events(names.EVENT_GPU_LOST, related_flow_run=out["flow_run_id"])
    assert len(events) == 1, events
    event = events[0]
    assert event.resource.id == "synthobs.gpu.GPU-fa4e0000-0000-0000-0000-000000000001"  # type: ignore[attr-defined]
    assert event.payload["gpu_index"] == 1  # type: ignore[attr-defined]


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.slow
@pytest.mark.parametrize("case", ["init_failure", "no_devices"])
def test_no_gpu_leaves_everything_else_working(fake_nvml: dict[str, Path], tmp_path: Path, case: str) -> None:
    extra = {"FAKE_NVML_INIT_FAIL": "1"} if case == "init_failure" else {"FAKE_NVML_DEVICES": "0"}
    store = tmp_path / "store"
    env = nvml_env(
        fake_nvml["current"],
        STORE=str(store),
        SPOOL=str(tmp_path / "spool"),
        FLOW_NAME=f"no-gpu-{uuid.uuid4().hex[:6]}",
        PREFECT_LOGGING_LEVEL="INFO",  # the info line is at INFO on `prefect.synthobs`
        **extra,
    )
    proc = run_python(OBSERVED_FLOW, env)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["result"] == 42
    assert proc.stderr.count("GPU sampling off") == 1, proc.stderr[-2000:]
    reader = so.HealthStore(str(store))
    run = reader.read(names.FLOW_RUNS).iloc[0]
    assert run.state_type == "COMPLETED"
    assert run[["gpu_util_mean", "gpu_util_max", "gpu_memory_peak_bytes", "gpu_energy_j"]].isna().all()
    assert reader.count(names.GPU_SAMPLES) == 0
    assert "synthobs_gpu_utilization_ratio" not in samples_by_name(out["metrics"])


@pytest.mark.slow
def test_cli_gpu_prints_a_table(fake_nvml: dict[str, Path]) -> None:
    cmd = [sys.executable, "-m", "prefect_synthobs.cli", "gpu", "--watch", "--interval", "0.2", "--count", "2"]
    proc = subprocess.run(cmd, env=nvml_env(fake_nvml["current"]), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("NVIDIA Fake A100") == 2  # refreshed twice
    assert "10.0 / 40.0 GiB" in proc.stdout and "250 W" in proc.stdout and "1410 MHz" in proc.stdout
    none = subprocess.run(
        [sys.executable, "-m", "prefect_synthobs.cli", "gpu"],
        env=nvml_env(fake_nvml["current"], FAKE_NVML_INIT_FAIL="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert none.returncode == 1 and "no GPU to show" in none.stdout and "Driver Not Loaded" in none.stdout


REAL_GPU = """
import json, time
from prefect_synthobs.gpu.sampler import GpuSampler
from prefect_synthobs.gpu.nvml import NvmlBackend
backend = NvmlBackend()
devices = backend.devices()
if not devices:
    print(json.dumps({"skip": backend.unavailable_reason}))
    raise SystemExit(0)
sampler = GpuSampler(backend, interval=0.25)
sampler.attach("r")
# 1.5 s, and until the thread has taken 3 samples after attach's (a loaded machine delays them)
until, deadline = time.monotonic() + 1.5, time.monotonic() + 120
while (time.monotonic() < until or sampler.samples_taken < 1 + 3) and time.monotonic() < deadline:
    time.sleep(0.05)
summary = sampler.detach("r")
reading = backend.read(devices[0])
print(json.dumps({"devices": len(devices), "samples": summary.samples, "memory_total": reading.memory_total_bytes,
                  "name": reading.name, "energy_j": summary.energy_j, "temperature_c": reading.temperature_c}))
"""


@pytest.mark.slow
def test_real_gpu_when_present() -> None:
    env = subprocess_env()
    out = json.loads(run_python(REAL_GPU, env).stdout.strip().splitlines()[-1])
    if "skip" in out:
        pytest.skip(f"needs an NVIDIA GPU with a driver; here NVML says: {out['skip']}")
    assert out["samples"] >= 4 and out["memory_total"] > 0 and out["name"]
    assert out["temperature_c"] is not None and out["temperature_c"] > 0
    assert out["energy_j"] is None or out["energy_j"] >= 0  # the counter exists from Volta on
