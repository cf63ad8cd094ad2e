"""Cost of each NVML call synthobs makes, on this machine's GPU 0 (needs a real GPU).

Wall and CPU time per call, median of 40 calls 20 ms apart. On an H100 this
showed the energy counter at ~3.5 ms of CPU and every other field at
0.05-0.13 ms, which is why the sampler reads energy only every
``gpu_energy_interval_seconds``.

    python benchmarks/bench_nvml_calls.py
"""

import json
import statistics
import time

import pynvml as n

n.nvmlInit()
h = n.nvmlDeviceGetHandleByIndex(0)
calls = {
    "util": lambda: n.nvmlDeviceGetUtilizationRates(h),
    "mem_v2": lambda: n.nvmlDeviceGetMemoryInfo(h, version=n.nvmlMemory_v2),
    "mem_v1": lambda: n.nvmlDeviceGetMemoryInfo(h),
    "power": lambda: n.nvmlDeviceGetPowerUsage(h),
    "temp_v": lambda: n.nvmlDeviceGetTemperatureV(h, n.NVML_TEMPERATURE_GPU),
    "clock": lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM),
    "energy": lambda: n.nvmlDeviceGetTotalEnergyConsumption(h),
}
out = {}
for name, call in calls.items():
    for _ in range(3):
        call()
    wall, cpu = [], []
    for _ in range(40):
        t, tc = time.perf_counter(), time.thread_time()
        call()
        wall.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - tc)
        time.sleep(0.02)
    out[name] = {
        "wall_ms_median": round(statistics.median(wall) * 1e3, 3),
        "cpu_ms_median": round(statistics.median(cpu) * 1e3, 3),
        "wall_ms_max": round(max(wall) * 1e3, 3),
    }
print(json.dumps(out, indent=1))
