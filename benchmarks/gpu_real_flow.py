"""An observed training flow doing real GPU work, for a machine with an NVIDIA GPU.

Runs on Prefect's ephemeral server (the embedded default) with GPU sampling at
``--interval`` seconds, keeps the GPU busy with bf16 matrix products for
``--seconds``, then prints what synthobs recorded: the run's GPU summary
columns, a few ``gpu_samples`` rows, the per-sample NVML latency and the
sampling thread's CPU share. Needs PyTorch with CUDA.

    python benchmarks/gpu_real_flow.py --seconds 35
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from prefect import flow

import prefect_synthobs as so
from prefect_synthobs import catalog as names
from prefect_synthobs.instrument.instrumentation import current_sampler


@so.observe(kind="training", model_type="torch_matmul", table="synthetic")
@flow(name="gpu-training-workload")
def train_on_gpu(seconds: float, size: int = 8192) -> int:
    import torch

    x = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    end, epoch = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        with so.span("training.epoch", epoch=epoch):
            for _ in range(100):
                y = x @ x
            torch.cuda.synchronize()
        so.record_epoch(epoch, loss=float(y[0, 0].float()))
        epoch += 1
    return epoch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=35.0)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    store = tempfile.mkdtemp(prefix="synthobs-gpu-")
    so.configure(store_url=store, gpu_interval_seconds=args.interval)
    started = time.time()
    state = train_on_gpu(args.seconds, return_state=True)
    wall = time.time() - started
    sampler = current_sampler()
    reader = so.HealthStore(store)
    run = reader.read(names.FLOW_RUNS).iloc[0]
    samples = reader.read(names.GPU_SAMPLES).sort_values("time")
    cols = [
        "time",
        "gpu_index",
        "gpu_name",
        "utilization",
        "memory_used_bytes",
        "power_w",
        "temperature_c",
        "sm_clock_mhz",
        "energy_j",
    ]
    out = {
        "state": state.name,
        "epochs": state.result(),
        "flow_wall_s": round(wall, 2),
        "flow_duration_s": run.duration_s,
        "gpu_util_mean": run.gpu_util_mean,
        "gpu_util_max": run.gpu_util_max,
        "gpu_memory_peak_bytes": int(run.gpu_memory_peak_bytes),
        "gpu_energy_j": run.gpu_energy_j,
        "gpu_samples_rows": len(samples),
        "samples_taken": sampler.samples_taken if sampler else None,
        "nvml_ms_per_sample": round(1000 * sampler.sample_seconds / sampler.samples_taken, 3) if sampler else None,
        "sampler_thread_cpu_s": round(sampler.thread_cpu_seconds, 4) if sampler else None,
        "sampler_cpu_percent_of_core": round(100 * sampler.thread_cpu_seconds / run.duration_s, 4) if sampler else None,
        "first_rows": samples[cols].head(3).astype(str).to_dict("records"),
        "busy_rows": samples[cols].iloc[len(samples) // 2 : len(samples) // 2 + 3].astype(str).to_dict("records"),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
