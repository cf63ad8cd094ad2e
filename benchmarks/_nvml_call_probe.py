import time, pynvml as n, statistics, json
n.nvmlInit(); h = n.nvmlDeviceGetHandleByIndex(0)
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
for name, f in calls.items():
    for _ in range(3): f()
    w, c = [], []
    for _ in range(40):
        t, tc = time.perf_counter(), time.thread_time(); f(); w.append(time.perf_counter()-t); c.append(time.thread_time()-tc)
        time.sleep(0.02)
    out[name] = {"wall_ms_median": round(statistics.median(w)*1e3, 3), "cpu_ms_median": round(statistics.median(c)*1e3, 3), "wall_ms_max": round(max(w)*1e3, 3)}
print(json.dumps(out, indent=1))
