"""A run's GPU use: the sampler attached while the run is in scope, and the samples published as events.

``RunGpu`` starts and stops attributing this host's GPU samples to a run (one
warning while NVML misbehaves; never raises). ``GpuPublisher`` is the GPU
sampler's sink: each sample and each lost GPU becomes an event for the current
runtime's recording seam, and a lost GPU also a Prefect event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prefect_synthobs import catalog
from prefect_synthobs._log import get_logger
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.config.active import get_settings
from prefect_synthobs.gpu.nvml import GpuDevice, GpuReading
from prefect_synthobs.gpu.sampler import GpuSampler, RunGpuSummary
from prefect_synthobs.health.events import GpuLost, GpuSampled
from prefect_synthobs.health.tables import Row
from prefect_synthobs.instrument import prefect_api

if TYPE_CHECKING:
    from prefect_synthobs.instrument.recording import Recording

logger = get_logger()


class RunGpu:
    """Attaches runs to the process's GPU sampler (``sampler()``: ``None`` when GPU sampling is off)."""

    def __init__(self, sampler: Callable[[], GpuSampler | None]) -> None:
        self._sampler = sampler
        self._warning = WarnOnce(logger)

    def attach(self, flow_run_id: str) -> None:
        """Attribute this host's GPU samples to the run from now on."""
        try:
            sampler = self._sampler()
            if sampler is not None:
                sampler.attach(flow_run_id)
        except Exception as exc:  # NVML trouble never reaches the run
            self._warning.fail("synthobs: GPU sampling failed to start (%s)", exc)

    def detach(self, flow_run_id: str) -> RunGpuSummary | None:
        """Stop attributing this host's GPU samples to the run; its summary here."""
        try:
            sampler = self._sampler()
            return sampler.detach(flow_run_id) if sampler is not None else None
        except Exception as exc:
            self._warning.fail("synthobs: GPU summary failed (%s)", exc)
            return None


class GpuPublisher:
    """The GPU sampler's sink: samples go to the recording seam of the current runtime.

    ``recording()`` looks the runtime's recording up at each sample (``None``: no runtime yet), so the
    sampler (one per process) keeps working when ``configure`` rebuilds the runtime; ``redact_pii()`` is
    that runtime's setting.
    """

    def __init__(
        self,
        host: str,
        recording: Callable[[], Recording | None],
        redact_pii: Callable[[], bool] = lambda: get_settings().redact_pii,
    ) -> None:
        self.host = host
        self._recording = recording
        self._redact_pii = redact_pii

    def publish(self, readings: list[GpuReading], energy_j: dict[str, float], rows: list[Row]) -> None:
        recording = self._recording()
        if recording is not None:
            recording.handle(GpuSampled(readings=readings, energy_j=energy_j, rows=rows))

    def device_lost(self, device: GpuDevice, run_ids: list[str]) -> None:
        recording = self._recording()
        if recording is not None:
            recording.handle(GpuLost(device=device))
        prefect_api.emit(
            catalog.EVENT_GPU_LOST,
            resource_id=catalog.RESOURCE_GPU_PREFIX + device.uuid,
            resource_name=f"GPU {device.index} ({device.name}) on {self.host}",
            labels={catalog.ATTR_GPU_INDEX: device.index, catalog.ATTR_HOST: self.host},
            payload={
                "gpu_index": device.index,
                "gpu_uuid": device.uuid,
                "gpu_name": device.name,
                "host": self.host,
                "flow_run_ids": run_ids,
            },
            flow_run_ids=run_ids,
            redact_pii=self._redact_pii(),
        )
