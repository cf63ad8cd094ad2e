"""OpenTelemetry export cost.

1. ``flow``: a 200-task observed flow with OTLP metrics and run-log export on vs
   off, alternating in one process (spans go to the same receiver in both, so the
   difference is metrics and logs). Prefect's run loggers are at INFO, so every
   task run's "Finished in state" line is a log record to export. The receiver
   runs in its own process, as a collector would. Also reports synthobs' own
   time per observed run (hooks and run listener), and the flow process's CPU time
   per run (all its threads: export work on background threads counts too).
   ``--receiver rotel`` puts a real collector (``rotel-agent``, Rust, discarding
   what it receives) in place of the Python test receiver, whose protobuf parsing
   competes for the same 2 cores in the export rounds. Rounds alternate which
   mode goes first; a full garbage collection precedes every timed run (either
   mode), so a collection of the previous run's garbage lands in neither. Both
   statistics are reported (median of the per-round ratios, ratio of the
   medians), with every round's times and ratio. After the rounds synthobs is
   shut down as at interpreter exit (its final, bounded export) while the
   receiver still runs; then the receiver stops: export warnings during the
   measurement (``export_warnings``) are counted, none is expected. Every
   thread's CPU time is noted per run (``thread_cpu_ms_during_run`` while the
   flow runs, ``thread_cpu_ms_after_run`` until the next one; medians by thread
   name, numbers folded), threads that end meanwhile included: the export
   threads' cost is there by name, apart from the noise of the wall times.
2. ``collection``: one metric collection with 8 GPUs and 50 flows' series
   (counters, gauges, both duration histograms, in-progress gauges, ``hw.*``),
   read by the OTLP bridge and encoded as an OTLP request, against a Prometheus
   scrape of the same registry (``generate_latest``) measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"  # run logs to export (bench_overhead would set WARNING)
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from _common import median, report
from bench_overhead import _inside, observed, timed, wait_drained
from bench_tracing import receiver_process
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness

import prefect_synthobs as so


class _Endpoint:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint


@contextlib.contextmanager
def rotel_receiver() -> Iterator[_Endpoint]:
    """``rotel-agent`` receiving OTLP/HTTP on loopback and discarding it (a collector's cost, not Python's)."""
    import rotel

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = os.path.join(os.path.dirname(rotel.__file__), "rotel-agent")
    command = [agent, "start", "--otlp-http-endpoint", f"127.0.0.1:{port}", "--otlp-grpc-endpoint", "127.0.0.1:0"]
    proc = subprocess.Popen([*command, "--exporter", "blackhole"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.1)
        yield _Endpoint(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(20)


_ended_cpu: dict[int, tuple[str, float]] = {}
"""CPU seconds of threads that exited, by native id (noted as they exit; an ident is reused at once), with
their group."""
_counted_start = threading.Thread.start


def _group(name: str) -> str:
    """A thread's group: its name without numbers (``Thread-12 (run)`` and ``Thread-13 (run)`` are one)."""
    return re.sub(r"\d+", "N", name)


def _start_noting_cpu(self: threading.Thread) -> None:
    """``Thread.start`` that notes every thread's CPU time as it exits (a short-lived thread counts too)."""
    run = self.run

    def noted_run() -> None:
        try:
            run()
        finally:
            _ended_cpu[threading.get_native_id()] = (_group(threading.current_thread().name), time.thread_time())

    self.run = noted_run  # type: ignore[method-assign]
    _counted_start(self)


threading.Thread.start = _start_noting_cpu  # type: ignore[method-assign]


def _threads_cpu() -> dict[int, tuple[str, float]]:
    """``{native id: (group, CPU seconds so far)}`` of every thread alive now."""
    out = {}
    for thread in threading.enumerate():
        if thread.ident is None or thread.native_id is None:
            continue
        with contextlib.suppress(OSError, ValueError):
            out[thread.native_id] = (_group(thread.name), time.clock_gettime(time.pthread_getcpuclockid(thread.ident)))
    return out


class ThreadCpu:
    """CPU milliseconds each thread group spent between ``start`` and ``stop`` (threads that ended meanwhile too)."""

    def start(self) -> None:
        _ended_cpu.clear()
        self._before = _threads_cpu()

    def stop(self) -> dict[str, float]:
        after = _threads_cpu()
        out: dict[str, float] = {}
        for ident, (group, cpu) in {**_ended_cpu, **after}.items():
            spent = cpu - self._before.get(ident, (group, 0.0))[1]
            if spent > 0:
                out[group] = out.get(group, 0.0) + spent * 1000
        return out


def _median_by_group(samples: list[dict[str, float]]) -> dict[str, float]:
    """Each group's median over the runs (0 where a run did not have it), largest first."""
    groups = {g for s in samples for g in s}
    medians = {g: median([s.get(g, 0.0) for s in samples]) for g in groups}
    return {g: round(v, 1) for g, v in sorted(medians.items(), key=lambda kv: -kv[1]) if v >= 0.1}


class _WarningCount(logging.Handler):
    """Counts synthobs' warnings (an export that failed says so once)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def flow_cost(
    rounds: int,
    tasks: int,
    settle: float,
    signals: tuple[str, ...] = ("metrics", "logs"),
    receiver_kind: str = "python",
) -> dict[str, object]:
    from prefect_synthobs.instrument.instrumentation import INSTRUMENTATION

    warnings = _WarningCount()
    logging.getLogger("prefect.synthobs").addHandler(warnings)
    for name in ("prefect.flow_runs", "prefect.task_runs"):  # the console is not what is measured
        logging.getLogger(name).propagate = False
        for handler in list(logging.getLogger(name).handlers):
            if type(handler).__name__ == "PrefectConsoleHandler":
                logging.getLogger(name).removeHandler(handler)
    so.configure(store_url=tempfile.mkdtemp(prefix="synthobs-bench-"))
    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        rotel_receiver() if receiver_kind == "rotel" else receiver_process() as receiver,
    ):
        modes = {
            "off": {"otlp_endpoint": receiver.endpoint, "metrics_mode": "none", "otlp_logs": False},
            "export": {
                "otlp_endpoint": receiver.endpoint,
                "metrics_mode": "otlp" if "metrics" in signals else "none",
                "otlp_logs": "logs" in signals,
            },
        }
        for mode in modes.values():  # warm-up both paths
            so.configure(**mode)
            wait_drained(timed(observed, tasks)[1], tasks, settle)
        times: dict[str, list[float]] = {"off": [], "export": []}
        inside: dict[str, list[float]] = {"off": [], "export": []}
        cpu: dict[str, list[float]] = {"off": [], "export": []}
        threads_run: dict[str, list[dict[str, float]]] = {"off": [], "export": []}
        threads_after: dict[str, list[dict[str, float]]] = {"off": [], "export": []}
        ratios = []
        clock = ThreadCpu()
        for r in range(rounds):
            for name in ("off", "export") if r % 2 == 0 else ("export", "off"):
                so.configure(**modes[name])
                gc.collect()
                _inside[0] = 0.0
                clock.start()
                cpu_start = time.process_time()
                elapsed, run_id = timed(observed, tasks)
                cpu[name].append((time.process_time() - cpu_start) * 1000)
                threads_run[name].append(clock.stop())
                inside[name].append(_inside[0] * 1000)
                times[name].append(elapsed)
                clock.start()
                wait_drained(run_id, tasks, settle)
                threads_after[name].append(clock.stop())
            ratios.append(times["export"][-1] / times["off"][-1])
            print(
                f"round {r + 1}/{rounds}: off {times['off'][-1]:.3f}s export {times['export'][-1]:.3f}s "
                f"ratio {ratios[-1]:.3f}",
                flush=True,
            )
        # the exit path (runtime closed, telemetry flushed, bounded) while the receiver runs; then nothing is
        # left to export when the interpreter exits and the receiver is gone
        INSTRUMENTATION.shutdown()
        INSTRUMENTATION.otel_metrics.detach()
        INSTRUMENTATION.otel_logs.detach()
        exit_warnings = warnings.count
    return {
        "signals": list(signals),
        "receiver": receiver_kind,
        "tasks_per_flow": tasks,
        "rounds": rounds,
        "off_median_s": round(median(times["off"]), 4),
        "export_median_s": round(median(times["export"]), 4),
        "median_ratio": round(median(ratios), 4),
        "ratio_of_medians": round(median(times["export"]) / median(times["off"]), 4),
        "target_median_ratio": 1.03,
        "synthobs_ms_per_run_off": round(median(inside["off"]), 2),
        "synthobs_ms_per_run_export": round(median(inside["export"]), 2),
        "ratio_spread": [round(min(ratios), 4), round(max(ratios), 4)],
        "ratios": [round(r, 4) for r in ratios],
        "off_s": [round(t, 4) for t in times["off"]],
        "export_s": [round(t, 4) for t in times["export"]],
        "export_warnings": exit_warnings,
        "process_cpu_ms_per_run_off": round(median(cpu["off"]), 1),
        "process_cpu_ms_per_run_export": round(median(cpu["export"]), 1),
        "process_cpu_ratio_of_medians": round(median(cpu["export"]) / median(cpu["off"]), 4),
        # CPU ms per run of each thread group (median over the runs): during the timed run, and after it
        # (until the server drained the run and the settle time passed: the flow end's export lands there)
        "thread_cpu_ms_during_run": {name: _median_by_group(threads_run[name]) for name in threads_run},
        "thread_cpu_ms_after_run": {name: _median_by_group(threads_after[name]) for name in threads_after},
    }


def collection_cost(repeats: int) -> dict[str, object]:
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry, generate_latest

    from prefect_synthobs.gpu.nvml import GpuReading
    from prefect_synthobs.telemetry.metrics import SynthObsMetrics
    from prefect_synthobs.telemetry.otel_metrics import MetricsBridge

    registry = CollectorRegistry()
    m = SynthObsMetrics(registry)
    gpus = [
        GpuReading(i, f"GPU-{i:04d}", "NVIDIA H100", 0.5, 10**9, 8 * 10**10, 300.0, 60.0, None, 1e6) for i in range(8)
    ]
    for g in gpus:
        labels = (str(g.index), g.uuid, g.name)
        m.gpu_utilization.labels(*labels).set(0.5)
        m.gpu_memory_used.labels(*labels).set(1e9)
        m.gpu_memory_total.labels(*labels).set(8e10)
        m.gpu_power.labels(*labels).set(300)
        m.gpu_temperature.labels(*labels).set(60)
        m.gpu_energy.labels(*labels).inc(1000)
    for f in range(50):
        flow = f"flow-{f:02d}"
        for state in ("COMPLETED", "FAILED", "CRASHED"):
            m.flow_runs.labels(flow, "training", state).inc()
        m.observe_flow_duration(flow, "training", 12.0)
        m.last_success.labels(flow).set(1.7e9)
        m.errors.labels(flow, "training", "ValueError").inc()
        for t in range(5):
            m.task_runs.labels(flow, f"task-{t}", "COMPLETED").inc(3)
            m.observe_task_duration(flow, f"task-{t}", 0.5)
            m.task_retries.labels(flow, f"task-{t}").inc()
        m.generation_rows.labels(flow, "customers", "ctgan").inc(1000)
        m.generation_rows_per_second.labels(flow, "customers", "ctgan").set(500)
        m.training_epochs.labels(flow, "ctgan").inc(10)
        m.training_loss.labels(flow, "ctgan", "generator").set(0.3)
    m.in_progress.source = lambda: [(f"flow-{f:02d}", time.time() - 60) for f in range(50)]
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    bridge = MetricsBridge(provider.get_meter("bench"), lambda: m, lambda: gpus)
    m.duration_listener = bridge.record_duration
    for f in range(50):  # the histograms have their series on the OTLP side too
        m.observe_flow_duration(f"flow-{f:02d}", "training", 12.0)
        for t in range(5):
            m.observe_task_duration(f"flow-{f:02d}", f"task-{t}", 0.5)

    def otlp() -> int:
        return len(encode_metrics(reader.get_metrics_data()).SerializeToString())

    def scrape() -> int:
        return len(generate_latest(registry))

    points = sum(
        len(metric.data.data_points)
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    )
    timings: dict[str, list[float]] = {"otlp": [], "scrape": []}
    sizes = {}
    for i in range(repeats):
        for name, fn in (("otlp", otlp), ("scrape", scrape)) if i % 2 == 0 else (("scrape", scrape), ("otlp", otlp)):
            start = time.perf_counter()
            sizes[name] = fn()
            timings[name].append((time.perf_counter() - start) * 1000)
    provider.shutdown()
    otlp_ms, scrape_ms = median(timings["otlp"]), median(timings["scrape"])
    return {
        "gpus": 8,
        "flows": 50,
        "otlp_points": points,
        "otlp_collect_and_encode_ms_median": round(otlp_ms, 3),
        "prometheus_scrape_ms_median": round(scrape_ms, 3),
        "ratio": round(otlp_ms / scrape_ms, 3),
        "target_ratio": 2.0,
        "otlp_request_bytes": sizes["otlp"],
        "scrape_bytes": sizes["scrape"],
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--only", choices=["flow", "collection"], default=None)
    parser.add_argument("--signals", default="metrics,logs", help="what the export side turns on: metrics, logs")
    parser.add_argument("--receiver", choices=["python", "rotel"], default="python", help="what receives OTLP")
    args = parser.parse_args()
    results: dict[str, object] = {}
    if args.only in (None, "collection"):
        results["collection"] = collection_cost(args.repeats)
        print(results["collection"], flush=True)
    if args.only in (None, "flow"):
        results["flow"] = flow_cost(args.rounds, args.tasks, args.settle, tuple(args.signals.split(",")), args.receiver)
    report("otel", results)


if __name__ == "__main__":
    main()
