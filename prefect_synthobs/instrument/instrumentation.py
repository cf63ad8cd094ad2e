"""``Instrumentation``: the one object that owns what synthobs adds to a process.

It holds what would otherwise be scattered module globals: the tracer
provider hook-up (``TracingSetup``), the run listener, the log filters, the
bridge to Prefect's client metrics, the flow spans synthobs opened itself, the
metric set, the GPU sampler and the runtime (recorder and metrics exporter).
``install()`` and ``uninstall()`` are symmetric and idempotent, as
OpenTelemetry's instrumentors are; the tracer provider, the registry and the
settings source can be injected (tests build their own).

The process has one, ``INSTRUMENTATION``; ``observe`` installs it when it
decorates, and ``get_runtime()`` builds the runtime on first use.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from prefect.settings import get_current_settings
from prometheus_client import CollectorRegistry

from prefect_synthobs._log import get_logger
from prefect_synthobs.config.active import ACTIVE, ActiveSettings
from prefect_synthobs.config.settings import SynthObsSettings
from prefect_synthobs.gpu.nvml import GpuReading, get_backend
from prefect_synthobs.gpu.sampler import GpuSampler, validate_interval
from prefect_synthobs.instrument import prefect_api
from prefect_synthobs.instrument.gpu_use import GpuPublisher
from prefect_synthobs.instrument.listener import RunListener
from prefect_synthobs.instrument.recording import Recording
from prefect_synthobs.instrument.runtime import Runtime
from prefect_synthobs.telemetry.exposition import ClientMetricsBridge
from prefect_synthobs.telemetry.logs import LogFilters
from prefect_synthobs.telemetry.metrics import REGISTRY, SynthObsMetrics
from prefect_synthobs.telemetry.otel_logs import LogsExportSetup, logs_export_config
from prefect_synthobs.telemetry.otel_metrics import MetricsExportSetup, metrics_export_config
from prefect_synthobs.telemetry.otlp import synthobs_resource
from prefect_synthobs.telemetry.redaction import strip_url_credentials
from prefect_synthobs.telemetry.tracing import StableSpanNames, TracingSetup, export_config

logger = get_logger()


class Instrumentation:
    """What synthobs adds to a process, installed and removed as one.

    Args:
        settings: Where the active settings come from (default: the process's).
        tracer_provider: The provider to hook into; default: the global one
            (an SDK provider is installed there only when there is none).
        registry: Where the metric catalog is registered.
    """

    def __init__(
        self,
        *,
        settings: ActiveSettings = ACTIVE,
        tracer_provider: TracerProvider | None = None,
        registry: CollectorRegistry = REGISTRY,
        meter_provider: Any = None,
        logger_provider: Any = None,
    ) -> None:
        self._settings = settings
        self._tracer_provider = tracer_provider
        self.registry = registry
        self.tracing = TracingSetup()
        self.otel_metrics = MetricsExportSetup(meter_provider, resource=self._resource)
        """Metrics over OTLP (``metrics_mode`` with ``otlp``, or ``OTEL_METRICS_EXPORTER``)."""
        self.otel_logs = LogsExportSetup(logger_provider, resource=self._resource)
        """Run logs over OTLP (``otlp_logs``, or ``OTEL_LOGS_EXPORTER``)."""
        self.log_filters = LogFilters()
        self.client_metrics = ClientMetricsBridge(registry)
        self.own_spans: dict[str, tuple[Any, object]] = {}
        self.carried_settings: dict[str, Any] | None = None
        """The settings a worker carrier last applied in this process (``observe.WorkerCarrier``)."""
        """Flow spans synthobs opened itself (Prefect's run telemetry off), by flow run id."""
        self.listener = RunListener(self.current_runtime, self.observe_all_runtime)
        self.publisher = GpuPublisher(socket.gethostname(), self._current_recording, self._redact_pii)
        self._lock = threading.RLock()
        self._listening: list[Any] = []
        self._runtime: Runtime | None = None
        self._metrics: SynthObsMetrics | None = None
        self._sampler: GpuSampler | None = None
        self._warned = False
        self._hooked = False
        self._flushing: _TelemetryFlusher | None = None
        self._install_hooks: list[tuple[Callable[[SynthObsSettings], None], Callable[[], None]]] = []
        self._installed = False

    # -- install / uninstall -----------------------------------------------------------

    def provider(self) -> Any:
        """The tracer provider synthobs hooks into.

        With no SDK provider set globally, Prefect's run spans are no-ops and
        undecorated task runs could not be seen: then one is installed (no
        exporter: tracing stays local until configured).
        """
        if self._tracer_provider is not None:
            return self._tracer_provider
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider) and type(provider).__name__ == "ProxyTracerProvider":
            settings = self.settings()
            trace.set_tracer_provider(
                self.tracing.build_provider(
                    service_name=_service_name(settings),
                    environment=settings.environment,
                    sample_ratio=settings.trace_sample_ratio,
                )
            )
            provider = trace.get_tracer_provider()
        return provider

    def add_install_hook(self, install: Callable[[SynthObsSettings], None], uninstall: Callable[[], None]) -> None:
        """Run ``install(settings)`` whenever this instrumentation installs (at once if it already did) and
        ``uninstall()`` when it uninstalls: how a layer above (``autolog``) joins without this one importing it.
        A hook that raises costs one warning."""
        with self._lock:
            if any(i is install for i, _ in self._install_hooks):
                return
            self._install_hooks.append((install, uninstall))
            installed = self._installed
        if installed:
            self._run_hook(install, self.settings())

    @property
    def installed(self) -> bool:
        """Whether ``install`` ran (and ``uninstall`` did not since)."""
        return self._installed

    def _run_hook(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception as exc:
            logger.warning("synthobs: %s failed (%s)", getattr(hook, "__qualname__", hook), exc)

    def install(self) -> bool:
        """Hook the run listener and synthobs' span processors into the provider (idempotent).

        Returns:
            Whether every Prefect run span reaches the listener. When it does
            not (Prefect's run telemetry off, or a non-SDK provider), only flows
            and tasks decorated with ``observe`` are recorded; one warning.
        """
        with self._lock:
            settings = self.settings()
            self.listener.enabled = True
            self.tracing.stable_names.enabled = settings.span_names == "stable"
            provider = self.provider()
            ok = self.tracing.attach(provider)
            if ok and not any(p is provider for p in self._listening):
                provider.add_span_processor(self.listener)
                self._listening.append(provider)
            telemetry_on = bool(get_current_settings().cloud.enable_orchestration_telemetry)
            if (not ok or not telemetry_on) and not self._warned:
                self._warned = True
                logger.warning(
                    "synthobs: Prefect run spans are unavailable (%s); only flows and tasks "
                    "decorated with observe() are recorded, not other task runs.",
                    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY is off"
                    if ok
                    else f"tracer provider {type(provider).__name__} takes no span processors",
                )
            self._installed = True
            hooks = [install for install, _ in self._install_hooks]
        for hook in hooks:
            self._run_hook(hook, settings)
        return ok and telemetry_on

    def listener_active(self) -> bool:
        """Whether the run listener sees every Prefect run span in this process."""
        with self._lock:
            attached = self.listener.enabled and any(p is self.provider() for p in self._listening)
        return attached and bool(get_current_settings().cloud.enable_orchestration_telemetry)

    def uninstall(self) -> None:
        """Remove what ``install`` and the runtime added (idempotent).

        The listener and span processors stay on the provider (an SDK provider
        cannot drop processors) but are switched off and pass spans through.
        """
        with self._lock:
            self._installed = False
            hooks = [uninstall for _, uninstall in self._install_hooks]
        for hook in hooks:
            self._run_hook(hook)
        with self._lock:
            self.listener.enabled = False
            self.tracing.detach()
            self.otel_metrics.detach()
            self.otel_logs.detach()
            self.log_filters.remove()
            self.client_metrics.detach()
        self.reset()

    # -- the runtime ---------------------------------------------------------------------

    def settings(self) -> SynthObsSettings:
        return self._settings.get()

    def _current_recording(self) -> Recording | None:
        runtime = self.current_runtime()
        return runtime.recording if runtime is not None else None

    def _redact_pii(self) -> bool:
        runtime = self.current_runtime()
        return (runtime.settings if runtime is not None else self.settings()).redact_pii

    def current_runtime(self) -> Runtime | None:
        """The runtime if one was built, without building it."""
        return self._runtime

    def observe_all_runtime(self) -> Runtime | None:
        """With ``observe_all`` on (and this installed): the runtime, built on first use; else ``None``."""
        if not self._installed or not self.settings().observe_all:
            return None
        return self.runtime()

    def runtime(self) -> Runtime:
        """The runtime, built (and its exporters started) on first use."""
        with self._lock:
            if self._runtime is None:
                if not self._hooked:
                    self._hooked = True
                    self._settings.on_change(self._rebuild)
                    atexit.register(self.shutdown)
                self._runtime = self._build(self.settings())
            return self._runtime

    def _build(self, settings: SynthObsSettings) -> Runtime:
        metrics = self.metrics(settings.metrics_prefix)
        timeout = settings.otlp_timeout_seconds
        runtime = Runtime(
            settings,
            metrics=metrics,
            sampler=self.sampler,
            after_flow=lambda: self.flush_telemetry(timeout, wait=False),
            after_remote_task=lambda: self.deliver_worker_telemetry(timeout),
        )
        self.install()
        try:
            self.log_filters.install(redact_pii=settings.redact_pii)
        except Exception as exc:
            logger.warning("synthobs: log filters not installed (%s)", exc)
        try:
            self.tracing.configure(
                export_config(settings),
                sample_ratio=settings.trace_sample_ratio,
                stable_names=settings.span_names == "stable",
            )
        except Exception as exc:  # a bad endpoint must not stop the run
            logger.warning(
                "synthobs: tracing not configured (%s); runs are still recorded", strip_url_credentials(str(exc))
            )
        try:
            self.otel_metrics.configure(metrics_export_config(settings), metrics, self._gpu_readings)
        except Exception as exc:
            logger.warning(
                "synthobs: OTLP metrics not configured (%s); runs are still recorded", strip_url_credentials(str(exc))
            )
        try:
            self.otel_logs.configure(logs_export_config(settings), self._observed_run)
        except Exception as exc:
            logger.warning(
                "synthobs: OTLP run logs not configured (%s); runs are still recorded", strip_url_credentials(str(exc))
            )
        runtime.start()
        self.client_metrics.attach()
        return runtime

    def _resource(self) -> Resource:
        settings = self.settings()
        return synthobs_resource(_service_name(settings), settings.environment)

    def _gpu_readings(self) -> list[GpuReading]:
        sampler = self._sampler
        return sampler.latest_readings() if sampler is not None else []

    def _observed_run(self, flow_run_id: str) -> bool:
        runtime = self._runtime
        return runtime is not None and runtime.in_scope(flow_run_id)

    def flush_telemetry(self, timeout: float, *, wait: bool = True) -> None:
        """Export OTLP metrics and run logs now, each waiting at most ``timeout`` seconds.

        With ``wait=False`` (an observed flow's end) the export runs on one
        long-lived daemon thread (``synthobs-otlp-flush``, started once, woken
        per flow end: no thread started per flow) and the flow does not wait
        for it; ``shutdown`` at exit waits for it (bounded) and exports what
        came after, so a short-lived flow process still loses nothing.
        """
        if not wait:
            with self._lock:
                flusher = self._flushing
                if flusher is None or not flusher.alive():
                    flusher = self._flushing = _TelemetryFlusher(self.flush_telemetry)
            flusher.request(timeout)
            return
        self.otel_metrics.flush(timeout)
        self.otel_logs.flush(timeout)

    def deliver_worker_telemetry(self, timeout: float) -> None:
        """A task ended in a worker process: export its spans and run logs before it returns.

        Bounded by ``timeout`` each; an endpoint that failed before is not waited
        for. A worker may be killed as soon as its task returns (Ray's are,
        without exit hooks), so nothing may wait for a batch timer there.
        """
        self.tracing.switch.deliver()
        self.otel_logs.flush(timeout)

    def _rebuild(self, settings: SynthObsSettings) -> None:
        with self._lock:
            old = self._runtime
            if old is None:
                return
            old.close()
            new = self._build(settings)
            new.adopt_scope(old)
            self._runtime = new

    def metrics(self, prefix: str) -> SynthObsMetrics:
        """The metric catalog on the registry, rebuilt if the prefix changed."""
        with self._lock:
            if self._metrics is None or self._metrics.prefix != prefix:
                if self._metrics is not None:
                    self._metrics.unregister()
                self._metrics = SynthObsMetrics(self.registry, prefix)
            return self._metrics

    def sampler(self) -> GpuSampler | None:
        """The process's GPU sampler with the active settings, or ``None`` when GPU sampling is off."""
        settings = self.settings()
        if not settings.gpu_enabled:
            return None
        with self._lock:
            if self._sampler is None:
                self._sampler = GpuSampler(
                    get_backend(),
                    self.publisher,
                    interval=settings.gpu_interval_seconds,
                    store_interval=settings.gpu_store_interval_seconds,
                    energy_interval=settings.gpu_energy_interval_seconds,
                )
            else:
                self._sampler.interval = validate_interval(settings.gpu_interval_seconds)
                self._sampler.energy_interval = settings.gpu_energy_interval_seconds
                self._sampler.store_interval = settings.gpu_store_interval_seconds
            return self._sampler

    def current_sampler(self) -> GpuSampler | None:
        """The sampler if one was made, without making it."""
        return self._sampler

    def reset(self) -> None:
        """Close and forget the runtime (tests; ``uninstall``)."""
        with self._lock:
            old, self._runtime = self._runtime, None
            self.carried_settings = None
        if old is not None:
            old.close()
        prefect_api.close_clients()

    def shutdown(self) -> None:
        """At interpreter exit: stop the sampler, write what is buffered."""
        sampler = self._sampler
        if sampler is not None:
            sampler.stop()
        runtime = self._runtime
        if runtime is not None:
            try:
                runtime.close()
            except Exception as exc:  # never fail interpreter exit
                logger.warning("synthobs: final flush failed: %s", exc)
            timeout = runtime.settings.otlp_timeout_seconds
            pending = self._flushing
            if pending is not None and pending.alive():  # (a forked child has its parent's, without its thread)
                pending.wait_idle(timeout)
            self.flush_telemetry(timeout)


class _TelemetryFlusher:
    """The flow ends' OTLP export (``Instrumentation.flush_telemetry(wait=False)``) on one daemon thread.

    ``request`` wakes it and returns at once; requests made while an export runs are served by one more export
    after it (what they ask for is there by then). ``wait_idle`` waits, bounded, until no export is asked for
    or running (at exit).
    """

    def __init__(self, flush: Callable[[float], None]) -> None:
        self._flush = flush
        self._cond = threading.Condition()
        self._asked: float | None = None  # the timeout of the export asked for and not begun
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="synthobs-otlp-flush", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def request(self, timeout: float) -> None:
        with self._cond:
            self._asked = timeout
            self._cond.notify()

    def wait_idle(self, timeout: float) -> bool:
        """Whether no export was asked for or running within ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: self._asked is None and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._asked is not None)
                timeout = self._asked if self._asked is not None else 0.0
                self._asked, self._busy = None, True
            try:
                self._flush(timeout)
            except Exception as exc:  # never lose the thread: the next flow end exports again
                logger.debug("synthobs: OTLP export at a flow's end failed: %s", exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


def _service_name(settings: SynthObsSettings) -> str | None:
    """``service_name``, unless it is the default and ``OTEL_SERVICE_NAME`` is set (``None``: that one)."""
    explicit = "service_name" in settings.model_fields_set
    return settings.service_name if explicit or not os.environ.get("OTEL_SERVICE_NAME") else None


INSTRUMENTATION = Instrumentation()


def get_runtime() -> Runtime:
    """The process's runtime, built (and its exporters started) on first use."""
    return INSTRUMENTATION.runtime()


def current_runtime() -> Runtime | None:
    """The process's runtime if one was built, without building it."""
    return INSTRUMENTATION.current_runtime()


def reset_runtime() -> None:
    """Close and forget the process's runtime (for tests)."""
    INSTRUMENTATION.reset()


def current_sampler() -> GpuSampler | None:
    """The process's GPU sampler if one was made."""
    return INSTRUMENTATION.current_sampler()


# Module functions, not the object: flow hooks are pickled by value when a flow
# defined in ``__main__`` is served, and a function is pickled by reference.
def install() -> bool:
    """Install the process's instrumentation (idempotent); see ``Instrumentation.install``."""
    return INSTRUMENTATION.install()


def listener_active() -> bool:
    """Whether the process's run listener sees every Prefect run span."""
    return INSTRUMENTATION.listener_active()


def stable_names() -> StableSpanNames:
    """The process's stable span names processor."""
    return INSTRUMENTATION.tracing.stable_names
