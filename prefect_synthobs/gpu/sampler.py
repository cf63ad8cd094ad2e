"""GPU sampling: a sampler thread, per-run summaries, ``gpu_samples`` rows.

The split follows MLflow's system metrics: ``GpuSampler`` owns the schedule
and the per-run bookkeeping; the backend (``nvml.NvmlBackend`` or a fake)
reads devices; a ``sink`` receives each sample's readings and rows and
publishes them (gauges, the health store). The summary arithmetic
(``RunGpuSummary``, ``energy_delta``) is pure.

One sampler per process, shared by concurrent observed runs: ``attach(run)``
when a run starts (the first one starts the thread), ``detach(run)`` when it
ends (the last one stops it). Each sample is attributed to every run in
progress; a run's summary covers the samples taken while it was attached,
plus one taken at ``detach`` so short runs are covered too.

Energy: reading a device's energy counter is the one expensive NVML call
(measured on an H100: about 4 ms of CPU, against about 0.5 ms for every other
field together), so it is read every ``energy_interval`` seconds, and always
when a run attaches or detaches. A run's energy is therefore exact (counter at
its end minus counter at its start, resets handled), and so is the sum of a
device's ``energy_j`` over any span of rows.
"""

from __future__ import annotations

import dataclasses
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from prefect_synthobs._log import get_logger
from prefect_synthobs.gpu.nvml import DeviceLost, GpuBackend, GpuDevice, GpuReading
from prefect_synthobs.health import tables
from prefect_synthobs.health.tables import Row

logger = get_logger("gpu")

MIN_INTERVAL_S = 0.25
MAX_INTERVAL_S = 60.0


def validate_interval(seconds: Any) -> float:
    """The sampling interval in seconds; ``ValueError`` outside 0.25 to 60 s."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or math.isnan(seconds):
        raise ValueError(f"GPU sampling interval must be a number of seconds, got {seconds!r}")
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise ValueError(
            f"GPU sampling interval must be between {MIN_INTERVAL_S} and {MAX_INTERVAL_S} s, got {seconds}"
        )
    return float(seconds)


def energy_delta(previous_j: float | None, current_j: float | None) -> float:
    """Energy used between two readings of a device's cumulative counter.

    A counter that went backwards was reset (driver reload, GPU reset): the
    energy since the reset is the new reading itself.
    """
    if previous_j is None or current_j is None:
        return 0.0
    if current_j < previous_j:
        return max(current_j, 0.0)
    return current_j - previous_j


@dataclass
class RunGpuSummary:
    """GPU use over one run: the ``flow_runs`` summary columns.

    ``util_mean`` and ``util_max`` are over every (device, sample) reading;
    ``memory_peak_bytes`` is the highest total memory in use across the
    sampled devices at one sample; ``energy_j`` is summed over devices.
    """

    samples: int = 0
    util_sum: float = 0.0
    util_count: int = 0
    util_max: float | None = None
    memory_peak_bytes: int | None = None
    energy_j: float | None = None

    def add(self, readings: list[GpuReading], energy_by_uuid: dict[str, float]) -> None:
        """Fold one sample (all devices at one moment) into the summary."""
        self.samples += 1
        memory_total: int | None = None
        for r in readings:
            if r.utilization is not None:
                self.util_sum += r.utilization
                self.util_count += 1
                self.util_max = r.utilization if self.util_max is None else max(self.util_max, r.utilization)
            if r.memory_used_bytes is not None:
                memory_total = (memory_total or 0) + r.memory_used_bytes
        if memory_total is not None:
            self.memory_peak_bytes = max(self.memory_peak_bytes or 0, memory_total)
        for joules in energy_by_uuid.values():
            self.energy_j = (self.energy_j or 0.0) + joules

    @property
    def util_mean(self) -> float | None:
        return self.util_sum / self.util_count if self.util_count else None

    def merge(self, other: RunGpuSummary) -> None:
        """Fold in the summary of the same run on another host: utilization over every reading of both,
        the higher memory peak (hosts are not sampled at the same moments), energy summed."""
        self.samples += other.samples
        self.util_sum += other.util_sum
        self.util_count += other.util_count
        if other.util_max is not None:
            self.util_max = other.util_max if self.util_max is None else max(self.util_max, other.util_max)
        if other.memory_peak_bytes is not None:
            self.memory_peak_bytes = max(self.memory_peak_bytes or 0, other.memory_peak_bytes)
        if other.energy_j is not None:
            self.energy_j = (self.energy_j or 0.0) + other.energy_j

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values (``from_dict`` reads them back)."""
        return {name: getattr(self, name) for name in _SUMMARY_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunGpuSummary:
        """A summary from ``as_dict``'s values (unknown keys ignored)."""
        return cls(**{name: data[name] for name in _SUMMARY_FIELDS if name in data})

    def columns(self) -> dict[str, Any]:
        """The ``flow_runs`` GPU columns (all ``None`` when nothing was sampled)."""
        return {
            "gpu_util_mean": self.util_mean,
            "gpu_util_max": self.util_max,
            "gpu_memory_peak_bytes": self.memory_peak_bytes,
            "gpu_energy_j": self.energy_j,
        }


_SUMMARY_FIELDS = ("samples", "util_sum", "util_count", "util_max", "memory_peak_bytes", "energy_j")


def sample_rows(
    readings: list[GpuReading],
    energy_j: dict[str, float],
    *,
    time: datetime,
    host: str,
    run_ids: list[str],
) -> list[Row]:
    """``gpu_samples`` rows for one sample: one per device.

    ``energy_j`` is the energy used since the device's previous row with an
    energy value (null on rows where the counter was not read);
    ``flow_run_id`` is the most recently started run in progress (the
    innermost subflow), ``flow_run_ids`` all of them.
    """
    return [
        tables.GPU_SAMPLES.row(
            time=time,
            host=host,
            gpu_index=r.index,
            gpu_uuid=r.uuid,
            gpu_name=r.name,
            utilization=r.utilization,
            memory_used_bytes=r.memory_used_bytes,
            memory_total_bytes=r.memory_total_bytes,
            power_w=r.power_w,
            temperature_c=r.temperature_c,
            sm_clock_mhz=r.sm_clock_mhz,
            energy_j=energy_j.get(r.uuid),
            flow_run_id=run_ids[-1] if run_ids else None,
            flow_run_ids=list(run_ids),
        )
        for r in readings
    ]


class GpuSink(Protocol):
    """Where each sample goes (gauges, energy counter, health store)."""

    def publish(self, readings: list[GpuReading], energy_j: dict[str, float], rows: list[Row]) -> None: ...

    def device_lost(self, device: GpuDevice, run_ids: list[str]) -> None: ...


@dataclass
class _Run:
    summary: RunGpuSummary = field(default_factory=RunGpuSummary)
    refs: int = 1


class GpuSampler:
    """Samples every device on a fixed schedule while runs are attached.

    Args:
        backend: Reads the devices (``NvmlBackend`` or a fake).
        sink: Receives each sample (``None``: summaries only).
        interval: Seconds between samples (0.25 to 60).
        energy_interval: Seconds between reads of the energy counters (at
            least ``interval``); runs attaching or detaching force a read.
        store_interval: Write a device's ``gpu_samples`` row at most this often
            (seconds); ``None`` writes every sample. Gauges and summaries use
            every sample either way.
        clock: Monotonic clock for the schedule (injected by tests).
        wall_clock: Time of the rows (injected by tests).
        host: Host name on the rows.
        threaded: Run the sampling thread (``False``: the caller drives
            ``sample_once``, as tests do with a manual clock).
    """

    def __init__(
        self,
        backend: GpuBackend,
        sink: GpuSink | None = None,
        *,
        interval: float = 1.0,
        energy_interval: float = 10.0,
        store_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        host: str | None = None,
        threaded: bool = True,
    ) -> None:
        self.backend = backend
        self.threaded = threaded
        self.sink = sink
        self.interval = validate_interval(interval)
        self.energy_interval = energy_interval
        self.store_interval = store_interval
        self.clock = clock
        self.wall_clock = wall_clock
        self.host = host or socket.gethostname()
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()  # guards _runs and the thread handle
        self._sample_lock = threading.Lock()  # one sample at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._devices: list[GpuDevice] | None = None
        self._lost: set[str] = set()
        self._last_counter: dict[str, float] = {}
        self._latest: dict[str, GpuReading] = {}
        self._last_energy_read: float | None = None
        self._unstored_energy: dict[str, float] = {}
        self._last_stored: dict[str, float] = {}
        self.samples_taken = 0
        self.sample_seconds = 0.0  # wall time spent inside sample_once
        self.thread_cpu_seconds = 0.0  # CPU time of the sampling thread (its whole loop)

    # -- devices -------------------------------------------------------------

    def devices(self) -> list[GpuDevice]:
        """Devices being sampled (lost ones excluded); asks the backend once."""
        if self._devices is None:
            try:
                self._devices = list(self.backend.devices())
            except Exception as exc:
                logger.info("synthobs: GPU sampling off (%s)", exc)
                self._devices = []
        return [d for d in self._devices if d.uuid not in self._lost]

    @property
    def available(self) -> bool:
        return bool(self.devices())

    # -- runs ----------------------------------------------------------------

    def attach(self, run_id: str) -> bool:
        """Start attributing samples to ``run_id``; starts the thread if needed.

        Returns whether there is anything to sample.
        """
        if not self.available:
            return False
        with self._lock:
            known = run_id in self._runs
        if not known:
            # read the counters now: energy used so far belongs to runs already attached
            self.sample_once(force_energy=True)
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                run.refs += 1
            else:
                self._runs[run_id] = _Run()
            if self.threaded and (self._thread is None or not self._thread.is_alive()):
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._loop, args=(self._stop,), name="synthobs-gpu-sampler", daemon=True
                )
                self._thread.start()
        return True

    def detach(self, run_id: str, *, final_sample: bool = True) -> RunGpuSummary | None:
        """Stop attributing samples to ``run_id`` and return its summary.

        Takes one last sample first (so a run shorter than the interval still
        gets one), and stops the thread when no run is left.
        """
        with self._lock:
            if run_id not in self._runs:
                return None
        if final_sample:
            self.sample_once(force_energy=True)
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            run.refs -= 1
            if run.refs > 0:
                return run.summary
            del self._runs[run_id]
            stop = not self._runs
            thread = self._thread if stop else None
            if stop:
                self._stop.set()
                self._thread = None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(self.interval, 1.0) + 1.0)
        return run.summary

    def latest_readings(self) -> list[GpuReading]:
        """Each device's latest sample (its energy counter as last read), for OTLP's ``hw.*`` metrics."""
        return list(self._latest.values())

    def running_runs(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    @property
    def thread_alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def stop(self) -> None:
        """Stop the thread and forget attached runs (process exit, tests)."""
        with self._lock:
            self._runs.clear()
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(self.interval, 1.0) + 1.0)

    # -- sampling ------------------------------------------------------------

    def _loop(self, stop: threading.Event) -> None:
        """Sample on a monotonic schedule; a late sample never causes a burst.

        The first sample is one interval after start: ``attach`` just took one.
        """
        next_at = self.clock() + self.interval
        cpu_start = time.thread_time()
        while not stop.wait(max(next_at - self.clock(), 0.0)):
            try:
                self.sample_once()
            except Exception as exc:  # never let the thread die silently
                logger.warning("synthobs: GPU sample failed: %s", exc)
            cpu_now = time.thread_time()
            self.thread_cpu_seconds += cpu_now - cpu_start
            cpu_start = cpu_now
            next_at += self.interval
            now = self.clock()
            if next_at < now:  # fell behind (suspend, slow NVML): skip, don't burst
                next_at = now + self.interval

    def sample_once(self, *, force_energy: bool = False) -> list[GpuReading]:
        """Read every device once, update attached runs, hand the result to the sink.

        The energy counters are read when ``force_energy`` or when
        ``energy_interval`` has passed since they were last read.
        """
        with self._sample_lock:
            started = time.perf_counter()
            now = self.clock()
            last = self._last_energy_read
            energy_due = force_energy or last is None or now - last >= self.energy_interval - 1e-9
            if energy_due:
                self._last_energy_read = now
            readings: list[GpuReading] = []
            lost: list[GpuDevice] = []
            for device in self.devices():
                try:
                    readings.append(self.backend.read(device, energy=energy_due))
                except DeviceLost:
                    lost.append(device)
                except Exception as exc:
                    logger.debug("synthobs: GPU %d read failed: %s", device.index, exc)
            energy = self._energy(readings)
            latest = dict(self._latest)  # replaced, never changed in place: readers take no lock
            for r in readings:  # each device's latest state, its energy counter as last read
                latest[r.uuid] = dataclasses.replace(r, energy_counter_j=self._last_counter.get(r.uuid))
            for device in lost:
                latest.pop(device.uuid, None)
            self._latest = latest
            with self._lock:
                run_ids = list(self._runs)
                for run in self._runs.values():
                    run.summary.add(readings, energy)
            rows = self._rows(readings, energy, run_ids)
            self.samples_taken += 1
            self.sample_seconds += time.perf_counter() - started
        for device in lost:
            self._mark_lost(device, run_ids)
        if self.sink is not None and (readings or rows):
            try:
                self.sink.publish(readings, energy, rows)
            except Exception as exc:
                logger.warning("synthobs: GPU sample not published: %s", exc)
        return readings

    def _energy(self, readings: list[GpuReading]) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in readings:
            if r.energy_counter_j is None:
                continue
            out[r.uuid] = energy_delta(self._last_counter.get(r.uuid), r.energy_counter_j)
            self._last_counter[r.uuid] = r.energy_counter_j
        return out

    def _rows(self, readings: list[GpuReading], energy: dict[str, float], run_ids: list[str]) -> list[Row]:
        now_mono = self.clock()
        due: list[GpuReading] = []
        stored_energy: dict[str, float] = {}
        for r in readings:
            if r.uuid in energy:
                self._unstored_energy[r.uuid] = self._unstored_energy.get(r.uuid, 0.0) + energy[r.uuid]
            last = self._last_stored.get(r.uuid)
            if self.store_interval is None or last is None or now_mono - last >= self.store_interval:
                due.append(r)
                if r.energy_counter_j is not None:  # else the energy waits for a row that has a reading
                    stored_energy[r.uuid] = self._unstored_energy.pop(r.uuid, 0.0)
                self._last_stored[r.uuid] = now_mono
        if not due:
            return []
        return sample_rows(due, stored_energy, time=self.wall_clock(), host=self.host, run_ids=run_ids)

    def _mark_lost(self, device: GpuDevice, run_ids: list[str]) -> None:
        if device.uuid in self._lost:
            return
        self._lost.add(device.uuid)
        logger.warning("synthobs: GPU %d (%s, %s) is lost; no longer sampled", device.index, device.name, device.uuid)
        if self.sink is not None:
            try:
                self.sink.device_lost(device, run_ids)
            except Exception as exc:
                logger.warning("synthobs: GPU-lost event not emitted: %s", exc)

    @property
    def lost_devices(self) -> set[str]:
        return set(self._lost)


def format_table(readings: list[GpuReading], lost: list[GpuDevice] = ()) -> str:  # type: ignore[assignment]
    """The ``synthobs gpu`` table: one line per device (pure)."""

    def num(value: float | int | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    header = (
        f"{'GPU':>3}  {'name':<24} {'util':>5} {'memory used / total':>21} {'power':>8} "
        f"{'temp':>6} {'SM clock':>9} {'energy':>10}"
    )
    lines = [header, "-" * len(header)]
    gib = 1024**3
    for r in readings:
        memory = (
            "n/a"
            if r.memory_used_bytes is None or r.memory_total_bytes is None
            else f"{r.memory_used_bytes / gib:.1f} / {r.memory_total_bytes / gib:.1f} GiB"
        )
        util = "n/a" if r.utilization is None else f"{r.utilization * 100:.0f}%"
        lines.append(
            f"{r.index:>3}  {r.name[:24]:<24} {util:>5} {memory:>21} {num(r.power_w, '.0f') + ' W':>8} "
            f"{num(r.temperature_c, '.0f') + ' C':>6} {num(r.sm_clock_mhz, 'd') + ' MHz':>9} "
            f"{num(None if r.energy_counter_j is None else r.energy_counter_j / 1000, '.1f') + ' kJ':>10}"
        )
    for d in lost:
        lines.append(f"{d.index:>3}  {d.name[:24]:<24} LOST ({d.uuid})")
    return "\n".join(lines)
