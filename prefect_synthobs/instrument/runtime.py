"""The process-wide synthobs runtime: run scope, run listener, recording.

Nothing here runs at import. The runtime is built on first use (an observed run
starting, a ``record_*`` call) from the active settings and rebuilt when
``configure`` changes them.

How every task run of an observed flow is seen, decorated or not: Prefect 3
opens an OpenTelemetry span for every flow and task run and ends it, inside
the run's context, once the run is final. ``RunListener`` is a
``SpanProcessor`` on the SDK tracer provider that reads the in-process
``TaskRunContext`` / ``FlowRunContext`` at that moment: accurate state, times
and ``run_count``, with no API query (task runs reach the API late). If no SDK
provider is installed, synthobs installs one (no exporter: tracing stays local
until configured); if the user already has one, the listener is added to it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import socket
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from prefect_synthobs import catalog as names
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.telemetry.exposition import MetricsExporter, bridge_to_prefect_client_metrics, make_exporter
from prefect_synthobs.telemetry.metrics import SynthObsMetrics, get_metrics, label
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.rows import flow_row, task_row, trace_id_from_traceparent
from prefect_synthobs.config.settings import SynthObsSettings, get_settings, on_change
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.telemetry.tracing import current_run_span

logger = logging.getLogger("prefect_synthobs")

TRACEPARENT_LABEL = "__OTEL_TRACEPARENT"
_RECENT_RUNS = 1024


@dataclass
class ObserveSpec:
    """What ``observe`` says about a flow or task."""

    kind: str = "other"
    model_type: str | None = None
    table: str | None = None
    config: Any = None  # a SynthObsConfig block or block name, applied when a run starts


def span_attributes(spec: ObserveSpec) -> dict[str, str]:
    """The synthobs attributes of an observed flow's span."""
    attrs = {names.ATTR_KIND: spec.kind}
    if spec.model_type is not None:
        attrs[names.ATTR_MODEL_TYPE] = spec.model_type
    if spec.table is not None:
        attrs[names.ATTR_TABLE] = spec.table
    return attrs


@dataclass
class RunInfo:
    """A flow run in scope: observed, or a subflow of one."""

    flow_run_id: str
    flow_name: str
    spec: ObserveSpec
    observed: bool
    parent_flow_run_id: str | None = None
    start_time: datetime | None = None
    rows: int = 0
    rows_by_table: dict[str | None, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _state_type(state: Any) -> str:
    st = getattr(state, "type", None)
    return str(getattr(st, "value", st or "UNKNOWN"))


def exception_of(state: Any) -> BaseException | None:
    """The exception behind a failed state, read in-process (no result I/O)."""
    data = getattr(state, "data", None)
    for candidate in (getattr(data, "result", None), data):
        if isinstance(candidate, BaseException):
            return candidate
    exc = sys.exc_info()[1]
    return exc if isinstance(exc, Exception) else None


def _error_of(state: Any) -> tuple[str | None, str | None]:
    if _state_type(state) in ("COMPLETED", "PENDING", "RUNNING", "SCHEDULED"):
        return None, None
    exc = exception_of(state)
    if exc is not None:
        return type(exc).__name__, str(exc) or getattr(state, "message", None)
    return _state_type(state).title(), getattr(state, "message", None)


def _tags(obj: Any) -> list[str]:
    return [str(t) for t in (getattr(obj, "tags", None) or [])]


class Runtime:
    """Everything one process needs to record observed runs.

    Args:
        settings: The active settings.
        metrics: Metric set (defaults to the one on ``REGISTRY``).
        exporter: Metrics exporter (defaults to the one for ``metrics_mode``).
        recorder: Row recorder (defaults to one writing to ``store_url``).
    """

    def __init__(
        self,
        settings: SynthObsSettings,
        *,
        metrics: SynthObsMetrics | None = None,
        exporter: MetricsExporter | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or get_metrics(settings.metrics_prefix)
        store_url = settings.resolved_store_url()
        store_options = settings.resolved_store_options()
        self.recorder = recorder or Recorder(
            lambda: HealthStore(store_url, storage_options=store_options),
            settings.resolved_spool_dir(),
            settings.flush_interval_seconds,
        )
        self.exporter = exporter or make_exporter(settings)
        self.host = socket.gethostname()
        self._runs: dict[str, RunInfo] = {}
        self._recent: OrderedDict[str, RunInfo] = OrderedDict()
        self._lock = threading.Lock()
        self._started = False
        self._gpu_warning = WarnOnce(logger)

    def start(self) -> None:
        """Start exporters and the periodic flusher (idempotent)."""
        if self._started:
            return
        self._started = True
        from prefect_synthobs.instrument.listener import ensure_listener
        from prefect_synthobs.telemetry.tracing import configure_tracing

        ensure_listener()
        try:
            from prefect_synthobs.telemetry.logs import install_log_filters

            install_log_filters(redact_pii=self.settings.redact_pii)
        except Exception as exc:
            logger.warning("synthobs: log filters not installed (%s)", exc)
        try:
            configure_tracing(self.settings)
        except Exception as exc:  # a bad endpoint must not stop the run
            logger.warning("synthobs: tracing not configured (%s); runs are still recorded", exc)
        self.exporter.start()
        bridge_to_prefect_client_metrics()
        self.recorder.start()

    def close(self) -> None:
        """Write what is buffered and release exporters."""
        self.recorder.stop(flush=True)
        self.exporter.close()
        self._started = False

    # -- scope ---------------------------------------------------------------

    def run_info(self, flow_run_id: Any) -> RunInfo | None:
        key = str(flow_run_id)
        with self._lock:
            return self._runs.get(key) or self._recent.get(key)

    def in_scope(self, flow_run_id: Any) -> bool:
        return self.run_info(flow_run_id) is not None

    def begin_flow_run(self, flow: Any, flow_run: Any, spec: ObserveSpec, *, observed: bool,
                       parent_flow_run_id: str | None = None,
                       start_time: datetime | None = None) -> RunInfo:
        key = str(flow_run.id) if hasattr(flow_run, "id") else str(flow_run)
        with self._lock:
            info = self._runs.get(key)
            if info is None:
                info = RunInfo(
                    flow_run_id=key,
                    flow_name=getattr(flow, "name", str(flow)),
                    spec=spec,
                    observed=observed,
                    parent_flow_run_id=parent_flow_run_id,
                    start_time=start_time,
                )
                self._runs[key] = info
                new = True
            else:
                new = False
            if not new and observed:
                info.observed, info.spec = True, spec
            if start_time is not None and info.start_time is None:
                info.start_time = start_time
        if new:
            self._gpu_attach(key)
        return info

    # -- GPU -----------------------------------------------------------------

    def gpu_sampler(self) -> Any:
        """The process's GPU sampler, or ``None`` when GPU sampling is off."""
        if not self.settings.gpu_enabled:
            return None
        from prefect_synthobs.gpu.sampler import get_sampler

        s = self.settings
        return get_sampler(s.gpu_interval_seconds, s.gpu_store_interval_seconds, GpuPublisher(self.host),
                           energy_interval=s.gpu_energy_interval_seconds)

    def _gpu_attach(self, key: str) -> None:
        try:
            sampler = self.gpu_sampler()
            if sampler is not None:
                sampler.attach(key)
        except Exception as exc:  # NVML trouble never reaches the run
            self._gpu_warning.fail("synthobs: GPU sampling failed to start (%s)", exc)

    def _gpu_detach(self, key: str) -> dict[str, Any] | None:
        from prefect_synthobs.gpu.sampler import current_sampler

        sampler = current_sampler()
        if sampler is None:
            return None
        try:
            summary = sampler.detach(key)
        except Exception as exc:
            self._gpu_warning.fail("synthobs: GPU summary failed (%s)", exc)
            return None
        return summary.columns() if summary is not None and summary.samples else None

    def _finish_scope(self, key: str) -> RunInfo | None:
        with self._lock:
            info = self._runs.pop(key, None)
            if info is not None:
                self._recent[key] = info
                while len(self._recent) > _RECENT_RUNS:
                    self._recent.popitem(last=False)
            return info

    # -- flows ---------------------------------------------------------------

    def end_flow_run(self, flow: Any, flow_run: Any, state: Any, spec: ObserveSpec | None,
                     *, flush: bool) -> None:
        """Record a finished flow run: health row, metrics, export."""
        key = str(flow_run.id)
        with self._lock:
            if key in self._recent and key not in self._runs:
                return  # already recorded (e.g. on_failure then on_crashed)
        info = self._finish_scope(key)
        if info is None:
            info = RunInfo(key, flow.name, spec or ObserveSpec(), observed=spec is not None)
        spec = info.spec
        state_type = _state_type(state)
        error_type, error_message = _error_of(state)
        start = getattr(flow_run, "start_time", None) or info.start_time
        end = getattr(state, "timestamp", None) or datetime.now(timezone.utc)
        labels = getattr(flow_run, "labels", None) or {}
        gpu = self._gpu_detach(key)
        row = flow_row(
            flow_run_id=key,
            parent_flow_run_id=info.parent_flow_run_id,
            flow_name=flow.name,
            kind=spec.kind,
            model_type=spec.model_type,
            table_name=spec.table,
            state_type=state_type,
            state_name=getattr(state, "name", None),
            start_time=start,
            end_time=end,
            rows=info.rows,
            error_type=error_type,
            error_message=error_message,
            tags=_tags(flow_run),
            host=self.host,
            trace_id=trace_id_from_traceparent(labels.get(TRACEPARENT_LABEL)) or _current_trace_id(),
            redact_pii=self.settings.redact_pii,
            gpu=gpu,
        )
        self.recorder.add(names.FLOW_RUNS, row)
        run_span = current_run_span(key)
        if run_span is not None:
            run_span.set_attributes(span_attributes(spec))
            run_span.set_attribute(names.ATTR_ROWS, info.rows)
            if row["rows_per_s"] is not None:
                run_span.set_attribute(names.ATTR_ROWS_PER_SECOND, row["rows_per_s"])
            if gpu:
                run_span.set_attributes(gpu_span_attributes(gpu))
        m, flow_label, kind = self.metrics, label(flow.name), label(spec.kind)
        m.flow_runs.labels(flow_label, kind, state_type).inc()
        if row["duration_s"] is not None:
            m.flow_run_duration.labels(flow_label, kind).observe(row["duration_s"])
        if state_type == "COMPLETED":
            m.last_success.labels(flow_label).set(end.timestamp())
        elif state_type in ("FAILED", "CRASHED"):
            m.errors.labels(flow_label, kind, label(error_type)).inc()
        if row["duration_s"]:
            for table, rows in info.rows_by_table.items():
                m.generation_rows_per_second.labels(
                    flow_label, label(table if table is not None else spec.table), label(spec.model_type)
                ).set(rows / row["duration_s"])
        if flush:
            self.recorder.flush()
            self.exporter.on_flow_end(flow.name)

    # -- tasks ---------------------------------------------------------------

    def record_task_run(self, task: Any, task_run: Any, flow_name: str | None,
                        error: tuple[str | None, str | None] | None = None) -> None:
        """Record a finished task run (one row, retries included)."""
        state = task_run.state
        state_type = _state_type(state)
        error_type, error_message = error if error and error[0] else _error_of(state)
        if state_type == "COMPLETED":
            error_type = error_message = None
        total = getattr(task_run, "total_run_time", None)
        row = task_row(
            task_run_id=str(task_run.id),
            flow_run_id=str(task_run.flow_run_id) if task_run.flow_run_id else None,
            flow_name=flow_name,
            task_name=task.name,
            state_type=state_type,
            state_name=getattr(state, "name", None),
            start_time=task_run.start_time,
            end_time=task_run.end_time or getattr(state, "timestamp", None),
            run_count=task_run.run_count,
            run_time_s=total.total_seconds() if total is not None else None,
            error_type=error_type,
            error_message=error_message,
            tags=_tags(task_run),
            redact_pii=self.settings.redact_pii,
        )
        self.recorder.add(names.TASK_RUNS, row)
        m, fl, tl = self.metrics, label(flow_name), label(task.name)
        m.task_runs.labels(fl, tl, state_type).inc()
        if row["duration_s"] is not None:
            m.task_run_duration.labels(fl, tl).observe(row["duration_s"])
        if task_run.run_count > 1:
            m.task_retries.labels(fl, tl).inc(task_run.run_count - 1)


def gpu_span_attributes(gpu: dict[str, Any]) -> dict[str, Any]:
    """The flow span's GPU summary attributes (the non-null ``flow_runs`` GPU columns)."""
    pairs = (
        (names.ATTR_GPU_UTIL_MEAN, gpu.get("gpu_util_mean")),
        (names.ATTR_GPU_UTIL_MAX, gpu.get("gpu_util_max")),
        (names.ATTR_GPU_MEMORY_PEAK, gpu.get("gpu_memory_peak_bytes")),
        (names.ATTR_GPU_ENERGY, gpu.get("gpu_energy_j")),
    )
    return {key: value for key, value in pairs if value is not None}


class GpuPublisher:
    """Sends GPU samples to the current runtime: gauges, energy counter, ``gpu_samples``.

    It looks the runtime up at each sample, so the sampler (one per process)
    keeps working when ``configure`` rebuilds the runtime.
    """

    def __init__(self, host: str) -> None:
        self.host = host

    def publish(self, readings: list[Any], energy_j: dict[str, float], rows: list[dict[str, Any]]) -> None:
        runtime = current_runtime()
        if runtime is None:
            return
        m = runtime.metrics
        for r in readings:
            labels = (str(r.index), r.uuid, r.name)
            for gauge, value in (
                (m.gpu_utilization, r.utilization),
                (m.gpu_memory_used, r.memory_used_bytes),
                (m.gpu_memory_total, r.memory_total_bytes),
                (m.gpu_power, r.power_w),
                (m.gpu_temperature, r.temperature_c),
            ):
                if value is not None:
                    gauge.labels(*labels).set(value)
            joules = energy_j.get(r.uuid)
            if joules:
                m.gpu_energy.labels(*labels).inc(joules)
        if rows:
            runtime.recorder.add(names.GPU_SAMPLES, rows)

    def device_lost(self, device: Any, run_ids: list[str]) -> None:
        runtime = current_runtime()
        if runtime is not None:  # stale gauges would show a dead GPU as busy
            m = runtime.metrics
            for gauge in (m.gpu_utilization, m.gpu_memory_used, m.gpu_power, m.gpu_temperature):
                with contextlib.suppress(KeyError):
                    gauge.remove(str(device.index), device.uuid, device.name)
        from prefect.events import emit_event

        emit_event(
            event=names.EVENT_GPU_LOST,
            resource={
                "prefect.resource.id": f"synthobs.gpu.{device.uuid}",
                "prefect.resource.name": f"GPU {device.index} ({device.name}) on {self.host}",
                "synthobs.gpu.index": str(device.index),
                "synthobs.host": self.host,
            },
            related=[
                {"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"}
                for run_id in run_ids
            ],
            payload={"gpu_index": device.index, "gpu_uuid": device.uuid, "gpu_name": device.name,
                     "host": self.host, "flow_run_ids": run_ids},
        )


def _current_trace_id() -> str | None:
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


# -- the process's runtime ------------------------------------------------------

_lock = threading.RLock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The process's runtime, built (and its exporters started) on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(get_settings())
            on_change(_rebuild)
            atexit.register(_shutdown)
            _runtime.start()
        return _runtime


def current_runtime() -> Runtime | None:
    """The runtime if one was built, without building it."""
    return _runtime


def _rebuild(settings: SynthObsSettings) -> None:
    global _runtime
    with _lock:
        old = _runtime
        if old is None:
            return
        new = Runtime(settings)
        with old._lock:
            new._runs, new._recent = old._runs, old._recent
        _runtime = new
    old.close()
    new.start()


def _shutdown() -> None:
    from prefect_synthobs.gpu.sampler import current_sampler

    sampler = current_sampler()
    if sampler is not None:
        sampler.stop()
    runtime = _runtime
    if runtime is not None:
        try:
            runtime.close()
        except Exception as exc:  # never fail interpreter exit
            logger.warning("synthobs: final flush failed: %s", exc)


def reset_runtime() -> None:
    """Close and forget the runtime (for tests)."""
    global _runtime
    with _lock:
        old, _runtime = _runtime, None
    if old is not None:
        old.close()
