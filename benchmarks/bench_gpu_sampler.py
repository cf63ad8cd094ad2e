"""GPU sampler cost.

Fake mode (default, any machine): builds the tests' fake ``libnvidia-ml.so.1``
with gcc, then in a child process loaded through ``LD_LIBRARY_PATH`` (the real
``nvidia-ml-py`` ctypes path) with 8 devices:

1. per-sample wall time: ``sample_once()`` over all devices, many times;
2. CPU cost of the sampler at 1 Hz over ``--seconds`` (default 60): the
   sampling thread's own CPU time (``time.thread_time``) and the process CPU
   time against an idle baseline of the same length measured in the same run.
   Target: ≤ 0.2 % of one core.

``--real`` uses the machine's NVML instead (run it on a GPU machine, ideally
beside a GPU workload) and prints a few of the rows the sampler produced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _common import report

REPO = Path(__file__).resolve().parents[1]


class Sink:
    """Does what the runtime's publisher does (gauges, rows) on a private registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        from prefect_synthobs.metrics import SynthObsMetrics

        self.metrics = SynthObsMetrics(CollectorRegistry(), "bench")
        self.rows: list[dict[str, object]] = []

    def publish(self, readings, energy_j, rows) -> None:  # type: ignore[no-untyped-def]
        m = self.metrics
        for r in readings:
            labels = (str(r.index), r.uuid, r.name)
            if r.utilization is not None:
                m.gpu_utilization.labels(*labels).set(r.utilization)
            if r.memory_used_bytes is not None:
                m.gpu_memory_used.labels(*labels).set(r.memory_used_bytes)
            if r.power_w is not None:
                m.gpu_power.labels(*labels).set(r.power_w)
            if r.temperature_c is not None:
                m.gpu_temperature.labels(*labels).set(r.temperature_c)
            if energy_j.get(r.uuid):
                m.gpu_energy.labels(*labels).inc(energy_j[r.uuid])
        self.rows.extend(rows)

    def device_lost(self, device, run_ids) -> None:  # type: ignore[no-untyped-def]
        pass


def child(seconds: float, samples: int, interval: float) -> dict[str, object]:
    from prefect_synthobs.gpu.nvml import NvmlBackend
    from prefect_synthobs.gpu.sampler import GpuSampler

    backend = NvmlBackend()
    devices = backend.devices()
    if not devices:
        raise SystemExit(f"no GPU: {backend.unavailable_reason}")
    sink = Sink()
    sampler = GpuSampler(backend, sink, interval=interval, threaded=True)
    for _ in range(5):  # warm up (first reads resolve symbols and fallbacks)
        sampler.sample_once()
    timings: dict[bool, list[float]] = {False: [], True: []}
    for i in range(samples):
        with_energy = i % 2 == 1
        sampler._last_energy_read = time.monotonic()  # keep unforced samples free of the counter read
        t = time.perf_counter()
        sampler.sample_once(force_energy=with_energy)
        timings[with_energy].append(time.perf_counter() - t)
    sink.rows.clear()

    # idle baseline, then the sampler, both ``seconds`` long, same process
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    idle_cpu, idle_wall = time.process_time() - cpu0, time.monotonic() - wall0
    sampler.attach("bench")
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    run_cpu, run_wall = time.process_time() - cpu0, time.monotonic() - wall0
    thread_cpu, taken = sampler.thread_cpu_seconds, sampler.samples_taken
    sampler.detach("bench", final_sample=False)
    plain, energy = sorted(timings[False]), sorted(timings[True])
    return {
        "devices": len(devices),
        "device_names": sorted({d.name for d in devices}),
        "per_sample_ms_median": round(statistics.median(plain) * 1e3, 4),
        "per_sample_ms_p95": round(plain[int(0.95 * (len(plain) - 1))] * 1e3, 4),
        "per_sample_with_energy_counter_ms_median": round(statistics.median(energy) * 1e3, 4),
        "per_device_us_median": round(statistics.median(plain) * 1e6 / len(devices), 2),
        "energy_interval_s": sampler.energy_interval,
        "interval_s": interval,
        "window_s": round(run_wall, 2),
        "samples_in_window": taken - samples - 6,
        "sampler_thread_cpu_percent_of_core": round(100 * thread_cpu / run_wall, 4),
        "process_cpu_percent_idle_baseline": round(100 * idle_cpu / idle_wall, 4),
        "process_cpu_percent_with_sampler": round(100 * run_cpu / run_wall, 4),
        "process_cpu_percent_added": round(100 * (run_cpu / run_wall - idle_cpu / idle_wall), 4),
        "rows_stored": len(sink.rows),
        "example_rows": [
            {k: (str(v) if k == "time" else v) for k, v in row.items() if k != "event_id"}
            for row in sink.rows[-min(3, len(sink.rows)) :]
        ],
    }


def build_fake(directory: Path) -> None:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SystemExit("gcc is needed to build the fake NVML library")
    subprocess.run(
        [
            gcc,
            "-shared",
            "-fPIC",
            "-O2",
            "-o",
            str(directory / "libnvidia-ml.so.1"),
            str(REPO / "tests" / "fake_nvml" / "fake_nvml.c"),
        ],
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each CPU window")
    parser.add_argument("--samples", type=int, default=500, help="timed sample_once calls")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--devices", type=int, default=8, help="fake devices (fake mode)")
    parser.add_argument("--real", action="store_true", help="use this machine's NVML")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.seconds, args.samples, args.interval)))
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.real:
            build_fake(Path(tmp))
            env["LD_LIBRARY_PATH"] = tmp
            env["FAKE_NVML_DEVICES"] = str(args.devices)
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--seconds",
            str(args.seconds),
            "--samples",
            str(args.samples),
            "--interval",
            str(args.interval),
        ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:] or proc.stdout[-3000:])
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data["mode"] = "real NVML" if args.real else "fake libnvidia-ml.so.1 (ctypes path)"
    data["target"] = "sampler CPU <= 0.2 % of one core at 1 Hz"
    data["meets_target"] = data["sampler_thread_cpu_percent_of_core"] <= 0.2
    report("gpu_sampler_real" if args.real else "gpu_sampler", data)


if __name__ == "__main__":
    main()
