"""GPU sampler and summaries with an injected backend and a manual clock."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest

from prefect_synthobs.config import active as so_settings
from prefect_synthobs.gpu.nvml import DeviceLost, GpuDevice, GpuReading, NvmlBackend
from prefect_synthobs.gpu.sampler import GpuSampler, RunGpuSummary, energy_delta, format_table, validate_interval

GIB = 1024**3


class ManualClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeBackend:
    """Devices whose readings the test sets; ``lost`` devices raise ``DeviceLost``."""

    def __init__(self, n: int = 2) -> None:
        self.devs = [GpuDevice(i, f"GPU-{i}", f"Fake {i}") for i in range(n)]
        self.readings = {
            d.uuid: GpuReading(
                d.index,
                d.uuid,
                d.name,
                utilization=0.5,
                memory_used_bytes=GIB,
                memory_total_bytes=8 * GIB,
                power_w=100.0,
                temperature_c=50.0,
                sm_clock_mhz=1000,
                energy_counter_j=500.0,
            )
            for d in self.devs
        }
        self.lost: set[str] = set()
        self.reads: dict[str, int] = {d.uuid: 0 for d in self.devs}
        self.energy_reads = 0
        self.closed = False

    def devices(self) -> list[GpuDevice]:
        return list(self.devs)

    def read(self, device: GpuDevice, *, energy: bool = True) -> GpuReading:
        self.reads[device.uuid] += 1
        if device.uuid in self.lost:
            raise DeviceLost(device)
        if not energy:
            return replace(self.readings[device.uuid], energy_counter_j=None)
        self.energy_reads += 1
        return self.readings[device.uuid]

    def set(self, index: int, **fields: Any) -> None:
        uuid = self.devs[index].uuid
        self.readings[uuid] = replace(self.readings[uuid], **fields)

    def close(self) -> None:
        self.closed = True


class ListSink:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.energy: list[dict[str, float]] = []
        self.lost: list[tuple[GpuDevice, list[str]]] = []

    def publish(self, readings: list[GpuReading], energy_j: dict[str, float], rows: list[dict[str, Any]]) -> None:
        self.energy.append(energy_j)
        self.rows.extend(rows)

    def device_lost(self, device: GpuDevice, run_ids: list[str]) -> None:
        self.lost.append((device, run_ids))


def make_sampler(backend: FakeBackend, sink: ListSink | None = None, **kw: Any) -> tuple[GpuSampler, ManualClock]:
    clock = ManualClock()
    wall = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    kw.setdefault("threaded", False)
    sampler = GpuSampler(backend, sink, clock=clock, wall_clock=lambda: wall, host="h", **kw)
    return sampler, clock


def test_energy_delta_handles_counter_resets() -> None:
    assert energy_delta(None, 10.0) == 0.0
    assert energy_delta(10.0, 25.5) == 15.5
    assert energy_delta(1000.0, 40.0) == 40.0  # counter restarted: energy since the reset
    assert energy_delta(10.0, None) == 0.0


def test_summary_aggregates_devices_and_samples() -> None:
    s = RunGpuSummary()
    a = GpuReading(0, "a", "A", utilization=0.2, memory_used_bytes=2 * GIB, energy_counter_j=1.0)
    b = GpuReading(1, "b", "B", utilization=None, memory_used_bytes=3 * GIB, energy_counter_j=1.0)
    s.add([a, b], {"a": 0.0, "b": 0.0})
    s.add([replace(a, utilization=0.8, memory_used_bytes=1 * GIB), b], {"a": 10.0, "b": 5.0})
    assert s.samples == 2
    assert s.util_mean == pytest.approx(0.5)  # unsupported readings are not zeros
    assert s.util_max == 0.8
    assert s.memory_peak_bytes == 5 * GIB  # total across devices at one sample
    assert s.energy_j == 15.0
    assert RunGpuSummary().columns() == {
        "gpu_util_mean": None,
        "gpu_util_max": None,
        "gpu_memory_peak_bytes": None,
        "gpu_energy_j": None,
    }


@pytest.mark.parametrize("bad", [0.1, 0.2499, 60.01, 0, -1, float("nan"), "1", True, None])
def test_interval_outside_bounds_is_a_clear_error(bad: Any) -> None:
    with pytest.raises(ValueError, match="GPU sampling interval"):
        validate_interval(bad)
    with pytest.raises(ValueError, match="GPU sampling interval"):
        GpuSampler(FakeBackend(), interval=bad)


@pytest.mark.parametrize("good", [0.25, 1, 60])
def test_interval_bounds_are_inclusive(good: float) -> None:
    assert GpuSampler(FakeBackend(), interval=good).interval == float(good)


def test_configure_rejects_bad_interval_and_keeps_settings() -> None:
    so_settings.reset()
    try:
        before = so_settings.configure(gpu_interval_seconds=2.0)
        with pytest.raises(ValueError, match="gpu_interval_seconds"):
            so_settings.configure(gpu_interval_seconds=0.1)
        assert so_settings.get_settings() == before
    finally:
        so_settings.reset()


def test_energy_and_rows_attributed_to_runs_in_progress() -> None:
    backend, sink = FakeBackend(), ListSink()
    sampler, clock = make_sampler(backend, sink, energy_interval=1.0)
    sampler.attach("outer")  # reads the counters first: energy so far is not the run's
    assert sink.energy[-1] == {"GPU-0": 0.0, "GPU-1": 0.0}
    assert sink.rows[-1]["flow_run_ids"] == []
    backend.set(0, energy_counter_j=530.0)
    backend.set(1, energy_counter_j=510.0, utilization=0.9)
    clock.advance(1)
    sampler.sample_once()
    assert sink.energy[-1] == {"GPU-0": 30.0, "GPU-1": 10.0}
    backend.set(0, energy_counter_j=5.0)  # device 0's counter reset
    clock.advance(1)
    sampler.sample_once()
    assert sink.energy[-1]["GPU-0"] == 5.0
    rows = [r for r in sink.rows if r["flow_run_ids"]]
    assert len(rows) == 4 and {r["gpu_uuid"] for r in rows} == {"GPU-0", "GPU-1"}
    assert all(r["flow_run_id"] == "outer" and r["flow_run_ids"] == ["outer"] for r in rows)
    assert sum(r["energy_j"] for r in rows) == pytest.approx(45.0)
    summary = sampler.detach("outer", final_sample=False)
    assert summary is not None and summary.samples == 2 and summary.energy_j == pytest.approx(45.0)
    assert summary.util_max == 0.9


def test_energy_counter_read_sparingly_but_run_energy_exact() -> None:
    """The counter (the costly NVML call) is read every energy_interval and at attach/detach."""
    backend, sink = FakeBackend(1), ListSink()
    sampler, clock = make_sampler(backend, sink, energy_interval=10.0)
    sampler.attach("r")
    for second in range(1, 26):
        clock.advance(1)
        backend.set(0, energy_counter_j=500.0 + 7.0 * second)  # 7 W
        sampler.sample_once()
    summary = sampler.detach("r")  # forced read at t = 25
    assert backend.energy_reads == 4  # t = 0 (attach), 10, 20, 25 (detach)
    assert summary is not None and summary.energy_j == pytest.approx(7.0 * 25)
    with_energy = [r for r in sink.rows if r["energy_j"] is not None]
    assert len(with_energy) == 4 and sum(r["energy_j"] for r in with_energy) == pytest.approx(175.0)
    assert sum(r["power_w"] is not None for r in sink.rows) == 27  # cheap fields every sample


def test_downsampled_rows_keep_every_joule() -> None:
    backend, sink = FakeBackend(1), ListSink()
    sampler, clock = make_sampler(backend, sink, store_interval=5.0, energy_interval=1.0)
    counter = 0.0
    for _ in range(12):  # one sample per second for 12 s
        counter += 7.0
        backend.set(0, energy_counter_j=counter)
        sampler.sample_once()
        clock.advance(1)
    times = [r["energy_j"] for r in sink.rows]
    assert len(sink.rows) == 3  # t = 0, 5, 10
    assert sum(times) == pytest.approx(7.0 * 11 - 7.0 * 1)  # first reading has no predecessor
    assert sum(e["GPU-0"] for e in sink.energy) == pytest.approx(sum(times) + 7.0)  # t=11 not stored yet


def test_not_supported_field_is_null_not_zero() -> None:
    backend, sink = FakeBackend(1), ListSink()
    backend.set(0, power_w=None, energy_counter_j=None, utilization=None)
    sampler, _ = make_sampler(backend, sink)
    sampler.sample_once()
    row = sink.rows[0]
    assert row["power_w"] is None and row["energy_j"] is None and row["utilization"] is None
    assert row["memory_used_bytes"] == GIB


def test_lost_device_is_reported_once_and_no_longer_polled() -> None:
    backend, sink = FakeBackend(2), ListSink()
    sampler, clock = make_sampler(backend, sink)
    sampler.attach("run-1")
    try:
        sampler.sample_once()
        backend.lost.add("GPU-1")
        for _ in range(5):
            clock.advance(1)
            sampler.sample_once()
        assert [(d.uuid, ids) for d, ids in sink.lost] == [("GPU-1", ["run-1"])]
        reads_after = backend.reads["GPU-1"]
        sampler.sample_once()
        assert backend.reads["GPU-1"] == reads_after  # never polled again
        assert {d.uuid for d in sampler.devices()} == {"GPU-0"}
        assert sampler.lost_devices == {"GPU-1"}
        assert sink.rows[-1]["gpu_uuid"] == "GPU-0"
    finally:
        summary = sampler.detach("run-1")
    assert summary is not None and summary.samples >= 7


def test_a_failing_backend_or_sink_never_raises() -> None:
    class Broken(FakeBackend):
        def read(self, device: GpuDevice) -> GpuReading:
            raise RuntimeError("driver hiccup")

    class BrokenSink(ListSink):
        def publish(self, *args: Any) -> None:
            raise OSError("disk full")

    sampler, _ = make_sampler(Broken(), BrokenSink())
    assert sampler.sample_once() == []
    sampler2, _ = make_sampler(FakeBackend(), BrokenSink())
    assert len(sampler2.sample_once()) == 2


def test_no_devices_means_no_thread_and_no_summary() -> None:
    backend = FakeBackend(0)
    sampler, _ = make_sampler(backend, ListSink())
    assert sampler.attach("r") is False
    assert not sampler.thread_alive
    assert sampler.detach("r") is None


def test_sampler_thread_shared_by_concurrent_runs() -> None:
    backend, sink = FakeBackend(2), ListSink()
    sampler = GpuSampler(backend, sink, interval=0.25, host="h")
    assert sampler.attach("a")
    first_thread = sampler._thread
    assert sampler.attach("b") and sampler._thread is first_thread  # one thread
    deadline = time.monotonic() + 60
    while sampler.samples_taken < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    summary_a = sampler.detach("a")
    assert summary_a is not None and summary_a.samples >= 3
    assert sampler.thread_alive  # b still running
    assert sampler.running_runs() == ["b"]
    summary_b = sampler.detach("b")
    assert summary_b is not None and summary_b.samples >= summary_a.samples
    assert not sampler.thread_alive  # stopped with the last run
    assert {tuple(r["flow_run_ids"]) for r in sink.rows} >= {("a", "b")}
    # a later run starts it again
    assert sampler.attach("c") and sampler.thread_alive
    assert sampler.detach("c") is not None and not sampler.thread_alive


def test_same_run_attached_twice_needs_two_detaches() -> None:
    sampler, _ = make_sampler(FakeBackend(1), ListSink())
    sampler.attach("r")
    sampler.attach("r")
    sampler.detach("r")
    assert sampler.running_runs() == ["r"]
    sampler.detach("r")
    assert sampler.running_runs() == [] and not sampler.thread_alive


def test_schedule_is_monotonic_and_never_bursts() -> None:
    """The loop sleeps until the next slot; after a stall it skips, not catches up."""
    clock = ManualClock()
    waits: list[float] = []

    class Stop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(round(timeout or 0, 6))
            clock.advance(timeout or 0)
            if len(waits) == 2:
                clock.advance(10)  # a 10 s stall (suspend, slow NVML)
            if len(waits) >= 4:
                self.set()
            return self.is_set()

    sampler = GpuSampler(FakeBackend(1), ListSink(), interval=2.0, clock=clock, host="h")
    sampler._loop(Stop())  # attach already sampled: the loop waits first
    assert waits == [2.0, 2.0, 2.0, 2.0]
    assert sampler.samples_taken == 3


class FakePynvml:
    """Just enough of ``pynvml``'s surface to drive ``NvmlBackend``'s error handling."""

    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_NO_PERMISSION = 4
    NVML_ERROR_FUNCTION_NOT_FOUND = 13
    NVML_ERROR_GPU_IS_LOST = 15
    NVML_ERROR_UNKNOWN = 999
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_DEVICE_MIG_ENABLE = 1
    nvmlMemory_v2 = 0x02000028

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__(value)
            self.value = value

    def __init__(self) -> None:
        self.errors: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def _call(self, name: str, value: Any) -> Any:
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.errors:
            raise self.NVMLError(self.errors[name])
        return value

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUUID(self, h: int) -> bytes:
        return b"GPU-x"

    def nvmlDeviceGetName(self, h: int) -> str:
        return "X"

    def nvmlDeviceGetMigMode(self, h: int) -> list[int]:
        return [0, 0]

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return self._call("util", type("U", (), {"gpu": 40})())

    def nvmlDeviceGetMemoryInfo(self, h: int, version: int | None = None) -> Any:
        return self._call("mem_v2" if version else "mem_v1", type("M", (), {"used": 1, "total": 2})())

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self._call("power", 150_000)

    def nvmlDeviceGetTemperatureV(self, h: int, s: int) -> int:
        return self._call("temp_v", 55)

    def nvmlDeviceGetTemperature(self, h: int, s: int) -> int:
        return self._call("temp", 56)

    def nvmlDeviceGetClockInfo(self, h: int, t: int) -> int:
        return self._call("clock", 1500)

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        return self._call("energy", 2_000)


def test_backend_disables_not_supported_fields_once(caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakePynvml()
    nvml.errors = {
        "power": nvml.NVML_ERROR_NOT_SUPPORTED,
        "clock": nvml.NVML_ERROR_NO_PERMISSION,
        "util": nvml.NVML_ERROR_UNKNOWN,
    }
    backend = NvmlBackend(nvml, visible=[])
    (device,) = backend.devices()
    with caplog.at_level("INFO", logger="prefect.synthobs.gpu"):
        readings = [backend.read(device) for _ in range(10)]
    assert nvml.calls["power"] == 1 and nvml.calls["clock"] == 1  # asked once, then disabled
    assert nvml.calls["util"] == 10  # a transient error is retried next sample
    assert readings[-1].power_w is None and readings[-1].utilization is None
    assert readings[-1].energy_counter_j == 2.0 and readings[-1].temperature_c == 55.0
    assert backend.disabled_fields(device) == {"power", "sm_clock"}
    assert len([r for r in caplog.records if "not sampled" in r.getMessage()]) == 2


def test_backend_falls_back_to_older_calls() -> None:
    nvml = FakePynvml()
    nvml.errors = {"mem_v2": nvml.NVML_ERROR_FUNCTION_NOT_FOUND, "temp_v": nvml.NVML_ERROR_FUNCTION_NOT_FOUND}
    backend = NvmlBackend(nvml, visible=[])
    (device,) = backend.devices()
    for _ in range(3):
        reading = backend.read(device)
    assert reading.memory_used_bytes == 1 and reading.temperature_c == 56.0
    assert nvml.calls["mem_v2"] == 1 and nvml.calls["mem_v1"] == 3  # v2 tried once only
    assert nvml.calls["temp_v"] == 1 and nvml.calls["temp"] == 3


def test_backend_raises_device_lost() -> None:
    nvml = FakePynvml()
    backend = NvmlBackend(nvml, visible=[])
    (device,) = backend.devices()
    nvml.errors = {"util": nvml.NVML_ERROR_GPU_IS_LOST}
    with pytest.raises(DeviceLost):
        backend.read(device)


def test_backend_without_library_is_empty(caplog: pytest.LogCaptureFixture) -> None:
    class NoLibrary(FakePynvml):
        def nvmlInit(self) -> None:
            raise self.NVMLError(12)

    backend = NvmlBackend(NoLibrary(), visible=[])
    with caplog.at_level("INFO", logger="prefect.synthobs.gpu"):
        assert backend.devices() == []
        assert backend.devices() == []  # initialised once, said once
    assert len([r for r in caplog.records if "GPU sampling off" in r.getMessage()]) == 1
    assert backend.unavailable_reason


def test_visible_devices_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    class Two(FakePynvml):
        def nvmlDeviceGetCount(self) -> int:
            return 2

        def nvmlDeviceGetUUID(self, h: int) -> str:
            return f"GPU-{h}abc"

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert [d.index for d in NvmlBackend(Two()).devices()] == [1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-0a")
    assert [d.index for d in NvmlBackend(Two()).devices()] == [0]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert [d.index for d in NvmlBackend(Two()).devices()] == [0, 1]


def test_format_table_shows_missing_fields_and_lost_devices() -> None:
    r = GpuReading(
        0,
        "GPU-0",
        "NVIDIA H100 80GB HBM3",
        utilization=0.73,
        memory_used_bytes=40 * GIB,
        memory_total_bytes=80 * GIB,
        power_w=None,
        temperature_c=61.0,
        sm_clock_mhz=1980,
        energy_counter_j=123456.0,
    )
    text = format_table([r], [GpuDevice(1, "GPU-1", "Dead")])
    assert "73%" in text and "40.0 / 80.0 GiB" in text and "n/a W" in text and "123.5 kJ" in text
    assert "LOST (GPU-1)" in text


def test_summaries_of_one_run_on_two_hosts_merge() -> None:
    from prefect_synthobs.gpu.sampler import RunGpuSummary

    here = RunGpuSummary(samples=4, util_sum=2.0, util_count=4, util_max=0.6, memory_peak_bytes=10, energy_j=100.0)
    there = RunGpuSummary(samples=2, util_sum=1.8, util_count=2, util_max=0.9, memory_peak_bytes=30, energy_j=50.0)
    here.merge(RunGpuSummary.from_dict(there.as_dict()))  # as it travels between hosts
    assert (here.samples, here.util_max, here.memory_peak_bytes, here.energy_j) == (6, 0.9, 30, 150.0)
    assert here.util_mean == pytest.approx(3.8 / 6)
    nothing = RunGpuSummary()
    nothing.merge(RunGpuSummary(samples=1))  # a host whose devices answer nothing adds no values
    assert nothing.columns() == {
        "gpu_util_mean": None,
        "gpu_util_max": None,
        "gpu_memory_peak_bytes": None,
        "gpu_energy_j": None,
    }
