"""NVML edge: reads GPU state through ``nvidia-ml-py`` (import name ``pynvml``).

Only this module talks to NVML. ``GpuSampler`` (in ``gpu.py``) takes any object
with the ``GpuBackend`` shape, so tests inject a fake and production uses
``NvmlBackend``.

Behaviour on real drivers:

- NVML is initialised lazily, once per process, on the first ``devices()``
  call, and shut down at interpreter exit. No library, no driver or no GPU:
  one info line, ``devices()`` returns ``[]``, everything else keeps working.
- A field that answers ``NotSupported`` (or ``NoPermission``) is disabled for
  that device the first time: never asked again, never a warning per sample.
- ``FunctionNotFound`` (an older driver) falls back to the older call: memory
  info v2 → v1, ``GetTemperatureV`` → ``GetTemperature``.
- ``GpuIsLost`` raises ``DeviceLost``; the sampler stops polling that device.
- MIG-enabled devices are read like others; fields MIG does not report at the
  device level (utilisation) answer NotSupported and are disabled.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prefect_synthobs._log import get_logger

logger = get_logger("gpu")

# Fields of a reading, in the order ``synthobs gpu`` prints them.
FIELDS = ("utilization", "memory", "power", "temperature", "sm_clock", "energy")


@dataclass(frozen=True)
class GpuDevice:
    """A GPU as NVML lists it."""

    index: int
    uuid: str
    name: str
    mig_enabled: bool = False


@dataclass(frozen=True)
class GpuReading:
    """One device's state at one moment; ``None`` where a field is unsupported."""

    index: int
    uuid: str
    name: str
    utilization: float | None = None  # 0..1
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    power_w: float | None = None
    temperature_c: float | None = None
    sm_clock_mhz: int | None = None
    energy_counter_j: float | None = None  # the device's cumulative counter


class DeviceLost(Exception):
    """NVML answered GpuIsLost for a device: it must not be polled again."""

    def __init__(self, device: GpuDevice) -> None:
        super().__init__(f"GPU {device.index} ({device.uuid}) is lost")
        self.device = device


class GpuBackend(Protocol):
    """What the sampler needs from NVML (or a fake)."""

    def devices(self) -> list[GpuDevice]:
        """The devices to sample; ``[]`` when there is no usable GPU."""
        ...

    def read(self, device: GpuDevice, *, energy: bool = True) -> GpuReading:
        """The device's current state (the energy counter only if ``energy``);
        raises ``DeviceLost``."""
        ...

    def close(self) -> None:
        """Release the library (idempotent)."""
        ...


@dataclass
class _DeviceState:
    device: GpuDevice
    handle: Any
    disabled: set[str] = field(default_factory=set)
    fallback: dict[str, int] = field(default_factory=dict)  # field -> index into its chain


class NvmlBackend:
    """GPU readings through the real ``pynvml`` module.

    Args:
        nvml: The ``pynvml`` module (injected by tests; imported lazily otherwise).
        visible: Restrict sampling to these device indices or UUIDs; ``None``
            uses ``CUDA_VISIBLE_DEVICES`` when it names devices, else all.
    """

    def __init__(self, nvml: Any = None, visible: list[str] | None = None) -> None:
        self._nvml = nvml
        self._visible = visible
        self._lock = threading.Lock()
        self._opened = False
        self._initialised = False
        self._states: dict[int, _DeviceState] = {}
        self.unavailable_reason: str | None = None

    # -- lifecycle -------------------------------------------------------------

    def _open(self) -> None:
        if self._opened:
            return
        self._opened = True
        try:
            if self._nvml is None:  # imported on first use: a fake module can be injected before
                import pynvml

                self._nvml = pynvml
            nvml = self._nvml
            nvml.nvmlInit()
            self._initialised = True
            atexit.register(self.close)
            count = nvml.nvmlDeviceGetCount()
            for index in range(count):
                state = self._describe(index)
                if state is not None and self._wanted(state.device):
                    self._states[index] = state
        except Exception as exc:  # ImportError, NVMLError (library, driver), OSError
            self.unavailable_reason = _describe_error(exc)
            logger.info("synthobs: GPU sampling off: NVML unavailable (%s)", self.unavailable_reason)
            self._states.clear()
            return
        if not self._states:
            self.unavailable_reason = "no GPU found" if count == 0 else "no visible GPU"
            logger.info("synthobs: GPU sampling off: %s", self.unavailable_reason)

    def _describe(self, index: int) -> _DeviceState | None:
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            name = _text(nvml.nvmlDeviceGetName(handle))
        except Exception as exc:
            logger.info("synthobs: GPU %d skipped (%s)", index, _describe_error(exc))
            return None
        mig = False
        try:
            current, _pending = nvml.nvmlDeviceGetMigMode(handle)
            mig = current == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1)
        except Exception:  # NotSupported on GPUs without MIG, FunctionNotFound on old drivers
            pass
        return _DeviceState(GpuDevice(index, uuid, name, mig), handle)

    def _wanted(self, device: GpuDevice) -> bool:
        visible = self._visible if self._visible is not None else _cuda_visible_devices()
        if not visible:
            return True
        return any(v == str(device.index) or (v.startswith("GPU-") and device.uuid.startswith(v)) for v in visible)

    def close(self) -> None:
        with self._lock:
            if self._initialised:
                self._initialised = False
                try:
                    self._nvml.nvmlShutdown()
                except Exception as exc:
                    logger.debug("synthobs: nvmlShutdown failed: %s", exc)

    # -- reading ---------------------------------------------------------------

    def devices(self) -> list[GpuDevice]:
        with self._lock:
            self._open()
            return [s.device for s in self._states.values()]

    def disabled_fields(self, device: GpuDevice) -> set[str]:
        """Fields no longer asked of ``device`` (NotSupported, no fallback left)."""
        state = self._states.get(device.index)
        return set(state.disabled) if state else set()

    def read(self, device: GpuDevice, *, energy: bool = True) -> GpuReading:
        """Read every field of ``device``.

        The energy counter is the one expensive call (about 4 ms of CPU on an
        H100, the other fields together about 0.5 ms), so the sampler asks for
        it less often: ``energy=False`` skips it.
        """
        state = self._states[device.index]
        nvml, h = self._nvml, state.handle
        util = self._field(state, "utilization", [lambda: nvml.nvmlDeviceGetUtilizationRates(h).gpu / 100.0])
        memory = self._field(
            state,
            "memory",
            [
                lambda: nvml.nvmlDeviceGetMemoryInfo(h, version=nvml.nvmlMemory_v2),
                lambda: nvml.nvmlDeviceGetMemoryInfo(h),
            ],
        )
        power = self._field(state, "power", [lambda: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0])
        temp = self._field(
            state,
            "temperature",
            [
                lambda: float(nvml.nvmlDeviceGetTemperatureV(h, nvml.NVML_TEMPERATURE_GPU)),
                lambda: float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)),
            ],
        )
        clock = self._field(state, "sm_clock", [lambda: int(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM))])
        counter = (
            self._field(state, "energy", [lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0])
            if energy
            else None
        )
        return GpuReading(
            index=device.index,
            uuid=device.uuid,
            name=device.name,
            utilization=util,
            memory_used_bytes=int(memory.used) if memory is not None else None,
            memory_total_bytes=int(memory.total) if memory is not None else None,
            power_w=power,
            temperature_c=temp,
            sm_clock_mhz=clock,
            energy_counter_j=counter,
        )

    def _field(self, state: _DeviceState, name: str, chain: list[Callable[[], Any]]) -> Any:
        """Read one field, following its fallback chain; ``None`` when unavailable."""
        if name in state.disabled:
            return None
        nvml = self._nvml
        pos = state.fallback.get(name, 0)
        while pos < len(chain):
            try:
                return chain[pos]()
            except nvml.NVMLError as exc:
                code = getattr(exc, "value", None)
                if code == nvml.NVML_ERROR_GPU_IS_LOST:
                    raise DeviceLost(state.device) from None
                if code == nvml.NVML_ERROR_FUNCTION_NOT_FOUND:
                    pos += 1
                    state.fallback[name] = pos
                    continue
                if code in (nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_NO_PERMISSION):
                    self._disable(state, name, str(exc))
                    return None
                logger.debug("synthobs: GPU %d %s: %s", state.device.index, name, exc)
                return None  # transient (Unknown, Timeout): try again next sample
        self._disable(state, name, "function not found in this driver")
        return None

    @staticmethod
    def _disable(state: _DeviceState, name: str, why: str) -> None:
        state.disabled.add(name)
        logger.info("synthobs: GPU %d (%s): %s not sampled (%s)", state.device.index, state.device.name, name, why)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _describe_error(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cuda_visible_devices() -> list[str]:
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None or not raw.strip():
        return []
    items = [v.strip() for v in raw.split(",") if v.strip()]
    # MIG instance ids cannot be matched to a device here: sample every device.
    if any(v.startswith("MIG-") for v in items):
        return []
    return items


_backend_lock = threading.Lock()
_backend: NvmlBackend | None = None


def get_backend() -> NvmlBackend:
    """The process's NVML backend (created once; NVML is initialised on first read)."""
    global _backend
    with _backend_lock:
        if _backend is None:
            _backend = NvmlBackend()
        return _backend
