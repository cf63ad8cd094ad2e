"""The metric catalog over OTLP: one catalog, two wires.

The Prometheus registry (``telemetry.metrics``) stays the one place values are
kept. ``MetricsBridge`` shows it to an OpenTelemetry ``Meter``: counters and
gauges as observable instruments read from the registry at collection time,
the duration histograms as histograms (with the run's span, so exemplars carry
its trace and span ids), and the GPUs under the
semantic-convention names (``hw.gpu.utilization``, ``hw.power``, ...) read
from the sampler's latest sample (no extra NVML call). Every instrument is
built from its ``catalog.MetricSpec``: the OTLP name is the catalog's in
OpenTelemetry form, chosen so that OpenTelemetry's Prometheus translation gives
back the Prometheus name.

``MetricsExportSetup`` decides where the meter comes from: an SDK
``MeterProvider`` already set globally (the user's) is added to, never
replaced; otherwise synthobs builds its own (not global) with an OTLP and/or
console exporter; in a flow-run process its resource carries Prefect's run
identity (``prefect.flow-run.id``, see ``prefect_names.py``), never a metric.
When an observed flow ends, the provider is flushed with a bounded timeout, so
a short-lived flow process loses nothing.

A duration is handed to the SDK at the next collection, not by the thread that
ended the run: ``record_duration`` (and ``record_durations``, a batch's) only
appends it to a queue, and the bridge's first observable callback of each
collection records what waits, in order, before the SDK reads its histograms.
A flush, the periodic export and the shutdown's last export all collect, so
every duration is in the export that follows it, with the same buckets, count,
sum, min, max and exemplar (trace and span ids, value) as recorded at once; the
SDK stamps the exemplar's time, and a cumulative series' first start time, when
it takes the value. The flow's thread so pays an append per duration instead
of the SDK's ~9 us ``record``. A queue of ``MAX_PENDING`` (a provider nobody
collects) is recorded at once by the call that fills it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.sdk.metrics import (
    Counter,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext

from prefect_synthobs import catalog as names
from prefect_synthobs._log import get_logger
from prefect_synthobs._version import __version__
from prefect_synthobs.telemetry.metrics import SynthObsMetrics
from prefect_synthobs.telemetry.otlp import (
    ExportHealth,
    OtlpSettings,
    OtlpTarget,
    flush_bounded,
    named_exporters,
    otlp_target,
    quiet_exporter_logs,
    restore_exporter_logs,
)
from prefect_synthobs.telemetry.prefect_names import flow_run_process_attributes

logger = get_logger("telemetry.metrics")

_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
    "opentelemetry.sdk.metrics._internal.export",
)


# -- configuration (pure) --------------------------------------------------------------


class MetricsOtlpSettings(OtlpSettings, Protocol):
    """What ``metrics_export_config`` reads (``SynthObsSettings`` is one)."""

    @property
    def metrics_mode(self) -> str: ...
    @property
    def model_fields_set(self) -> set[str]: ...
    @property
    def otlp_metrics_interval_seconds(self) -> float | None: ...
    @property
    def otlp_metrics_temporality(self) -> str | None: ...


@dataclass(frozen=True)
class MetricsExportConfig:
    """Whether and where synthobs' metrics go over OpenTelemetry."""

    otlp: OtlpTarget | None
    console: bool = False
    interval_seconds: float | None = None
    temporality: str | None = None

    @property
    def enabled(self) -> bool:
        return self.otlp is not None or self.console


def metrics_export_config(
    settings: MetricsOtlpSettings, environ: Mapping[str, str] | None = None
) -> MetricsExportConfig:
    """OTLP metrics are on with ``metrics_mode`` naming ``otlp``, or with ``OTEL_METRICS_EXPORTER``
    naming ``otlp`` (or ``console``) unless ``metrics_mode`` was set to ``none`` explicitly."""
    env = os.environ if environ is None else environ
    modes = settings.metrics_mode.split(",")
    silenced = modes == ["none"] and "metrics_mode" in settings.model_fields_set
    named = set() if silenced else named_exporters("OTEL_METRICS_EXPORTER", env)
    otlp = otlp_target(settings, "metrics", env) if "otlp" in modes or "otlp" in named else None
    return MetricsExportConfig(
        otlp,
        console="console" in named,
        interval_seconds=settings.otlp_metrics_interval_seconds,
        temporality=settings.otlp_metrics_temporality,
    )


_DELTA = {Counter, SdkHistogram, ObservableCounter}


def preferred_temporality(preference: str | None) -> dict[type, AggregationTemporality] | None:
    """The exporter's temporality for a preference (``None``: the exporter reads the environment)."""
    if preference is None:
        return None
    kinds = (Counter, UpDownCounter, SdkHistogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge)
    delta = {"cumulative": set(), "delta": _DELTA, "lowmemory": {Counter, SdkHistogram}}[preference]
    return {k: AggregationTemporality.DELTA if k in delta else AggregationTemporality.CUMULATIVE for k in kinds}


def build_metric_exporter(target: OtlpTarget, temporality: str | None) -> MetricExporter:
    """The OTLP metric exporter for ``target``."""
    headers = dict(target.headers) if target.headers else None
    preferred = preferred_temporality(temporality)
    if target.protocol == "grpc":  # grpc is heavy: imported only when asked for
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        insecure = (target.endpoint or "").startswith("http://") or None
        return GrpcExporter(
            endpoint=target.endpoint,
            headers=headers,
            timeout=target.timeout,
            insecure=insecure,
            preferred_temporality=preferred,
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

    return HttpExporter(
        endpoint=target.endpoint, headers=headers, timeout=target.timeout, preferred_temporality=preferred
    )


class ReportingMetricExporter(MetricExporter):
    """Wraps a metric exporter: a failure is one warning (until it recovers), never an error."""

    def __init__(self, inner: MetricExporter, health: ExportHealth) -> None:
        # the periodic reader reads these two from its exporter
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner, self.health = inner, health

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            result, reason = MetricExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        else:
            reason = "the endpoint refused or did not answer"
        if result is MetricExportResult.FAILURE:
            self.health.failed(reason)
        else:
            self.health.ok()
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


# -- the bridge ---------------------------------------------------------------------------


class GpuState(Protocol):
    """One GPU's latest sample (``gpu.nvml.GpuReading`` is one)."""

    @property
    def uuid(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def utilization(self) -> float | None: ...
    @property
    def memory_used_bytes(self) -> int | None: ...
    @property
    def memory_total_bytes(self) -> int | None: ...
    @property
    def power_w(self) -> float | None: ...
    @property
    def temperature_c(self) -> float | None: ...
    @property
    def energy_counter_j(self) -> float | None: ...


GpuSource = Callable[[], Sequence[GpuState]]


def hw_observations(readings: Sequence[GpuState]) -> dict[str, list[tuple[float, dict[str, str]]]]:
    """``{hw metric name: [(value, attributes)]}`` for the latest GPU samples (pure)."""
    out: dict[str, list[tuple[float, dict[str, str]]]] = {name: [] for name, _unit, _kind in names.HW_GPU_METRICS}
    for r in readings:
        attrs = {
            names.HW_ID: r.uuid,
            names.HW_NAME: r.name,
            names.HW_MODEL: r.name,
            names.HW_VENDOR: "NVIDIA",
            names.HW_TYPE: "gpu",
        }
        used, limit = r.memory_used_bytes, r.memory_total_bytes
        pairs: tuple[tuple[tuple[str, str, str], float | int | None], ...] = (
            (names.HW_GPU_UTILIZATION, r.utilization),
            (names.HW_GPU_MEMORY_USAGE, used),
            (names.HW_GPU_MEMORY_LIMIT, limit),
            (names.HW_GPU_MEMORY_UTILIZATION, used / limit if used is not None and limit else None),
            (names.HW_POWER, r.power_w),
            (names.HW_ENERGY, r.energy_counter_j),
            (names.HW_TEMPERATURE, r.temperature_c),
        )
        for (name, _unit, _kind), value in pairs:
            if value is not None:
                out[name].append((float(value), attrs))
    return out


def _exemplar_of(span_context: SpanContext | None) -> SpanContext | otel_context.Context:
    """What a duration's exemplar is taken from when it is recorded later, on another thread: the run's span,
    or, where the caller gave none, the caller's current context (as a ``record`` made at once would use)."""
    if span_context is not None and span_context.is_valid:
        return span_context
    return otel_context.get_current()


class MetricsBridge:
    """The catalog's instruments on one meter; reads the registry of ``metrics()`` when collected.

    Instruments cannot be removed from a meter: ``close`` records the durations that
    wait, then makes every callback observe nothing and stops taking durations.

    Args:
        meter: Where the instruments are created.
        metrics: Returns the current metric catalog (``None``: nothing to report).
        gpus: Returns the latest GPU samples.
    """

    def __init__(
        self, meter: Meter, metrics: Callable[[], SynthObsMetrics | None], gpus: GpuSource = lambda: ()
    ) -> None:
        self.meter, self._metrics, self._gpus = meter, metrics, gpus
        self.closed = False
        current = metrics()
        self.prefix = current.prefix if current is not None else "synthobs"
        self.histograms: dict[str, Histogram] = {}
        self._pending: deque[tuple[Histogram, float, dict[str, str], SpanContext | otel_context.Context]] = deque()
        """Durations not yet handed to the SDK (``deque``: appends and pops are atomic, no lock), each with its
        exemplar's context: the run's span, or the caller's context where it gave none (``_exemplar_of``)."""
        for spec in names.METRICS:
            self._instrument(spec)
        for name, unit, kind in names.HW_GPU_METRICS:
            factory = {
                "gauge": meter.create_observable_gauge,
                "updowncounter": meter.create_observable_up_down_counter,
                "counter": meter.create_observable_counter,
            }[kind]
            factory(name, callbacks=[self._hw_callback(name)], unit=unit, description=f"GPU {name} (NVML).")

    def _instrument(self, spec: names.MetricSpec) -> None:
        """The OTLP instrument of one catalog metric: histograms recorded, the others observed."""
        name = f"{self.prefix}.{spec.otlp_name}"
        if spec.otlp_instrument == "histogram":
            self.histograms[spec.name] = self.meter.create_histogram(
                name, unit=spec.unit, description=spec.help, explicit_bucket_boundaries_advisory=spec.buckets
            )
            return
        factory = {
            "counter": self.meter.create_observable_counter,
            "updowncounter": self.meter.create_observable_up_down_counter,
            "gauge": self.meter.create_observable_gauge,
        }[spec.otlp_instrument]
        factory(name, [self._registry_callback(spec.name)], spec.unit, spec.help)

    def _registry_callback(self, key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            if self._pending:
                self.drain()
            current = None if self.closed else self._metrics()
            if current is None or current.prefix != self.prefix:
                return []
            return [Observation(v, labels) for v, labels in current.samples(key)]

        return observe

    def _hw_callback(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            if self._pending:
                self.drain()
            if self.closed:
                return []
            return [Observation(v, attrs) for v, attrs in hw_observations(list(self._gpus())).get(name, [])]

        return observe

    MAX_PENDING = 8192
    """Durations kept for the next collection; the call that reaches it records them all at once."""

    def record_duration(
        self, metric: str, labels: dict[str, str], seconds: float, span_context: SpanContext | None
    ) -> None:
        """A ``DurationListener``: the duration goes on the OTLP histogram at the next collection, the run's
        span as the exemplar's context (``labels`` is kept as given: the caller does not change it after)."""
        histogram = self.histograms.get(metric)
        if histogram is None or self.closed:
            return
        self._pending.append((histogram, seconds, labels, _exemplar_of(span_context)))
        if len(self._pending) >= self.MAX_PENDING:
            self.drain()

    def record_durations(
        self, metric: str, observations: Iterable[tuple[dict[str, str], float, SpanContext | None]]
    ) -> None:
        """``record_duration`` for each ``(labels, seconds, span_context)`` of ``observations``, in order."""
        histogram = self.histograms.get(metric)
        if histogram is None or self.closed:
            return
        self._pending.extend(
            (histogram, seconds, labels, _exemplar_of(span_context)) for labels, seconds, span_context in observations
        )
        if len(self._pending) >= self.MAX_PENDING:
            self.drain()

    def drain(self) -> int:
        """Hand every waiting duration to the SDK, in the order they came (any thread; returns how many)."""
        pending, done = self._pending, 0
        set_span = trace.set_span_in_context
        while True:
            try:
                histogram, seconds, labels, exemplar = pending.popleft()
            except IndexError:
                return done
            context = set_span(NonRecordingSpan(exemplar)) if isinstance(exemplar, SpanContext) else exemplar
            try:
                histogram.record(seconds, labels, context=context)
            except Exception as exc:  # one duration, never the collection
                logger.debug("synthobs: duration not recorded on OTLP: %s", exc)
            done += 1

    def close(self) -> None:
        self.closed = True
        self.drain()


# -- set-up -----------------------------------------------------------------------------------


class MetricsExportSetup:
    """What synthobs adds for OTLP metrics, configured and removed as one (owned by the instrumentation).

    Args:
        meter_provider: The provider to add the instruments to (tests); default:
            the global one when it is an SDK provider, else one synthobs builds.
        resource: The resource of a provider synthobs builds.
    """

    def __init__(self, meter_provider: Any = None, resource: Callable[[], Resource] = Resource.create) -> None:
        self._injected = meter_provider
        self._resource = resource
        self._lock = threading.Lock()
        self._active: MetricsExportConfig | None = None
        self._own: MeterProvider | None = None
        self._provider: Any = None
        self._bridge: MetricsBridge | None = None
        self._health: ExportHealth | None = None
        self._metrics: SynthObsMetrics | None = None
        self._quiet: list[tuple[logging.Logger, logging.Filter]] = []

    @property
    def bridge(self) -> MetricsBridge | None:
        return self._bridge

    @property
    def provider(self) -> Any:
        """The meter provider the instruments are on (``None`` while export is off)."""
        return self._provider

    def configure(self, config: MetricsExportConfig, metrics: SynthObsMetrics, gpus: GpuSource) -> None:
        """Point synthobs' metrics at what ``config`` says (the same config twice changes nothing)."""
        old_own: MeterProvider | None = None
        with self._lock:
            self._metrics = metrics
            if config == self._active and self._bridge is not None and self._bridge.prefix == metrics.prefix:
                metrics.duration_listener = self._bridge.record_duration
                return
            self._active = config
            if self._bridge is not None:
                self._bridge.close()
                self._bridge = None
            if not config.enabled:
                old_own, self._own, self._provider = self._own, None, None
                metrics.duration_listener = None
            else:
                provider = self._injected or _global_sdk_provider()
                if provider is None:
                    old_own = self._own
                    provider = self._own = self._build_provider(config)
                self._provider = provider
                meter = provider.get_meter(names.METER_NAME, __version__)
                self._bridge = MetricsBridge(meter, lambda: self._metrics, gpus)
                metrics.duration_listener = self._bridge.record_duration
        if old_own is not None:  # its last export may wait on a dead endpoint: not in the caller's time
            threading.Thread(target=old_own.shutdown, name="synthobs-metrics-shutdown", daemon=True).start()

    def _build_provider(self, config: MetricsExportConfig) -> MeterProvider:
        readers: list[MetricReader] = []
        interval = config.interval_seconds * 1000 if config.interval_seconds else None
        self._health = None
        if config.otlp is not None:
            self._quiet = self._quiet or quiet_exporter_logs(_EXPORTER_LOGGERS)
            self._health = ExportHealth(logger, "metrics", config.otlp)
            exporter = ReportingMetricExporter(build_metric_exporter(config.otlp, config.temporality), self._health)
            readers.append(
                PeriodicExportingMetricReader(
                    exporter, export_interval_millis=interval, export_timeout_millis=config.otlp.timeout * 1000
                )
            )
        if config.console:
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=interval))
        # in a flow-run process (one flow run), Prefect's run identity on the resource, as Prefect's own
        # resource metrics carry it: the process's series join its run without a run id on any metric
        resource = self._resource().merge(Resource(flow_run_process_attributes()))
        # no atexit shutdown of its own: the instrumentation flushes it, bounded, at exit
        return MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)

    def flush(self, timeout: float) -> bool:
        """Export now, waiting at most ``timeout`` seconds (at an observed flow's end).

        Once the endpoint failed, flows no longer wait: the periodic export goes
        on in the background.
        """
        provider = self._provider
        if provider is None:
            return True
        health = self._health if provider is self._own else None
        return flush_bounded(provider, timeout, health, what="metrics")

    def detach(self) -> None:
        """Stop reporting: callbacks observe nothing, a provider synthobs built is shut down."""
        with self._lock:
            if self._bridge is not None:
                self._bridge.close()
            if self._metrics is not None:
                self._metrics.duration_listener = None
            own, self._own, self._provider, self._bridge, self._active = self._own, None, None, None, None
            restore_exporter_logs(self._quiet)
            self._quiet = []
        if own is not None:
            own.shutdown(timeout_millis=1000)


def _global_sdk_provider() -> MeterProvider | None:
    provider = otel_metrics.get_meter_provider()
    return provider if isinstance(provider, MeterProvider) else None
