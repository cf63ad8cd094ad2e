"""Metric export for batch jobs: scrape (``http``), ``pushgateway``, ``textfile``.

A flow process is short-lived, so its in-process counters start at zero every
run. Pushing them as they are would make a Pushgateway counter go 1, 1, 1...
and Prometheus' ``increase()`` would see no increase. So the ``pushgateway``
and ``textfile`` exporters *accumulate*: each push sends, for every counter and
histogram series, the value already on the gateway (or in the file) plus what
this process added since its previous push. Gauges are overwritten. The result
is a series that only grows across runs, processes and hosts, as Prometheus
expects of a counter. The merge (``accumulate``) is a pure function; reading and
writing are around it.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prefect.settings import get_current_settings
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    generate_latest,
    pushadd_to_gateway,
    start_http_server,
    write_to_textfile,
)
from prometheus_client.exposition import basic_auth_handler, default_handler
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from prefect_synthobs._log import get_logger
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.telemetry.metrics import REGISTRY
from prefect_synthobs.telemetry.redaction import strip_url_credentials

logger = get_logger("telemetry.metrics")

LabelSet = tuple[tuple[str, str], ...]
SampleKey = tuple[str, LabelSet]
ADDITIVE_TYPES = frozenset({"counter", "histogram", "summary"})


@dataclass
class Family:
    """One metric family's samples, keyed by (sample name, sorted labels)."""

    name: str
    type: str
    documentation: str
    samples: dict[SampleKey, float] = field(default_factory=dict)


Families = dict[str, Family]


def _key(name: str, labels: Mapping[str, str]) -> SampleKey:
    return name, tuple(sorted(labels.items()))


def families_from_metrics(
    metrics: Iterable[Metric],
    *,
    prefix: str | None = None,
    match: Mapping[str, str | None] | None = None,
    strip: Iterable[str] = (),
) -> Families:
    """Snapshot metric families (from ``registry.collect()`` or a text parse).

    Args:
        metrics: Metric families.
        prefix: Keep only families whose name starts with this.
        match: Keep only samples carrying all these label values (``None``: the
            label must be absent).
        strip: Label names removed from kept samples (e.g. grouping labels).
    """
    strip = set(strip)
    out: Families = {}
    for metric in metrics:
        if prefix and not metric.name.startswith(prefix):
            continue
        fam = Family(metric.name, metric.type, metric.documentation)
        for sample in metric.samples:
            if sample.name.endswith("_created"):
                continue
            labels = dict(sample.labels)
            if match and any(labels.get(k) != v for k, v in match.items()):
                continue
            for name in strip:
                labels.pop(name, None)
            if labels.get("instance") == "":
                labels.pop("instance")
            fam.samples[_key(sample.name, labels)] = float(sample.value)
        if fam.samples:
            out[metric.name] = fam
    return out


def accumulate(remote: Families, local: Families, baseline: Families) -> Families:
    """The families to publish: remote plus this process's increase since ``baseline``.

    Counter, histogram and summary samples add ``local - baseline`` to the remote
    value; gauges take the local value. Series only the remote has are kept.
    """
    out: Families = {name: Family(f.name, f.type, f.documentation, dict(f.samples)) for name, f in remote.items()}
    for name, fam in local.items():
        target = out.setdefault(name, Family(fam.name, fam.type, fam.documentation))
        target.type, target.documentation = fam.type, fam.documentation
        base = baseline.get(name)
        for key, value in fam.samples.items():
            if fam.type in ADDITIVE_TYPES:
                before = base.samples.get(key, 0.0) if base else 0.0
                delta = value - before if value >= before else value  # process restarted
                target.samples[key] = target.samples.get(key, 0.0) + delta
            else:
                target.samples[key] = value
    return out


class _FamiliesCollector:
    def __init__(self, families: Families) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        for fam in self._families.values():
            metric = Metric(fam.name, fam.documentation, fam.type)
            for (sample_name, labels), value in sorted(fam.samples.items()):
                metric.add_sample(sample_name, dict(labels), value)
            yield metric


def registry_of(families: Families) -> CollectorRegistry:
    """A throw-away registry exposing ``families`` (for push and textfile writes)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FamiliesCollector(families))
    return registry


def render(families: Families) -> bytes:
    """The Prometheus text exposition of ``families`` (pure)."""
    return generate_latest(registry_of(families))


class MetricsExporter:
    """Base exporter: ``mode="none"`` keeps metrics in-process only."""

    mode = "none"

    def start(self) -> None:
        """Begin exporting (bind a port, nothing for push modes)."""

    def on_flow_end(self, flow_name: str) -> None:
        """Publish after an observed flow run ends."""

    def close(self) -> None:
        """Release what ``start`` took."""


class HttpExporter(MetricsExporter):
    """Serve ``REGISTRY`` for Prometheus to scrape (long-lived workers)."""

    mode = "http"

    def __init__(self, host: str, port: int, registry: CollectorRegistry = REGISTRY) -> None:
        self.host, self.port, self.registry = host, port, registry
        self._server: Any = None

    def start(self) -> None:
        if self._server is not None:
            return
        try:
            self._server, _thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            logger.warning(
                "synthobs: cannot serve metrics on %s:%s (%s); metrics stay in-process and "
                "flows are unaffected. Set PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_PORT to a free port.",
                self.host,
                self.port,
                exc,
            )
            return
        self.port = self._server.server_port
        logger.info("synthobs: serving metrics on http://%s:%s/metrics", self.host, self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class PushgatewayExporter(MetricsExporter):
    """Push a flow's series to a Pushgateway when an observed flow run ends.

    Grouping key: ``job`` = flow name, plus ``grouping`` labels. Only series
    whose ``flow`` label is that flow are pushed to its group, so a process that
    runs two flows never counts one flow's runs twice. Series without a
    ``flow`` label (quality scores, gate checks, privacy budgets, GPUs) go to
    one shared group per host: ``job="synthobs"``, ``instance=<host>``.
    Counters and histograms accumulate across runs (see the module docstring);
    the read-back and the push share one ``timeout`` budget.
    """

    mode = "pushgateway"
    shared_job = "synthobs"

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        grouping: Mapping[str, str] | None = None,
        timeout: float = 2.0,
        registry: CollectorRegistry = REGISTRY,
        instance: str | None = None,
    ) -> None:
        self.url, self._auth = _split_user_info(url.rstrip("/"))
        self.prefix = prefix + "_"
        self.grouping = dict(grouping or {})
        self.timeout = timeout
        self.registry = registry
        self.instance = instance or socket.gethostname()
        self._baselines: dict[tuple[str, str], Families] = {}
        self._lock = threading.Lock()
        self._warn = WarnOnce(logger)

    def _read_group(self, job: str, grouping: Mapping[str, str], timeout: float) -> Families:
        request = urllib.request.Request(f"{self.url}/metrics")
        if self._auth is not None:
            token = base64.b64encode(f"{self._auth[0]}:{self._auth[1]}".encode()).decode("ascii")
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            text = resp.read().decode("utf-8")
        match = {"job": job, **grouping}
        return families_from_metrics(text_string_to_metric_families(text), prefix=self.prefix, match=match, strip=match)

    def _push(self, job: str, grouping: Mapping[str, str], local: Families, deadline: float) -> None:
        key = (job, ",".join(f"{k}={v}" for k, v in sorted(grouping.items())))
        remote = self._read_group(job, grouping, max(deadline - time.monotonic(), 0.05))
        merged = accumulate(remote, local, self._baselines.get(key, {}))
        pushadd_to_gateway(
            self.url,
            job=job,
            registry=registry_of(merged),
            grouping_key=dict(grouping),
            timeout=max(deadline - time.monotonic(), 0.05),
            handler=self._handler,
        )
        self._baselines[key] = local

    def on_flow_end(self, flow_name: str) -> None:
        with self._lock:
            deadline = time.monotonic() + self.timeout
            collected = list(self.registry.collect())
            own = families_from_metrics(collected, prefix=self.prefix, match={"flow": flow_name})
            shared = families_from_metrics(collected, prefix=self.prefix, match={"flow": None})
            try:
                self._push(flow_name, self.grouping, own, deadline)
                if shared:
                    self._push(self.shared_job, {**self.grouping, "instance": self.instance}, shared, deadline)
            except (OSError, urllib.error.URLError, ValueError) as exc:
                self._warn.fail(
                    "synthobs: Pushgateway %s unreachable (%s); metrics of this run will be "
                    "included in the next successful push. The flow is unaffected.",
                    self.url,
                    strip_url_credentials(str(exc)),
                )
                return
            self._warn.ok()

    def _handler(
        self, url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        if self._auth is None:
            return default_handler(url, method, timeout, headers, data)
        return basic_auth_handler(url, method, timeout, headers, data, self._auth[0], self._auth[1])


def _split_user_info(url: str) -> tuple[str, tuple[str, str] | None]:
    """``(url without user info, (user, password) or None)``: the Pushgateway's basic auth."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    plain = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    user = urllib.parse.unquote(parts.username)
    return plain, (user, urllib.parse.unquote(parts.password or ""))


class TextfileExporter(MetricsExporter):
    """Write a ``.prom`` file for the node exporter's textfile collector.

    Several processes may share the file: each write holds an exclusive lock
    on ``<file>.lock``, merges (accumulating counters) and replaces the file
    atomically.
    """

    mode = "textfile"

    def __init__(self, path: Path, *, prefix: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.path = Path(path)
        self.prefix = prefix + "_"
        self.registry = registry
        self._baseline: Families = {}
        self._lock = threading.Lock()
        self._warn = WarnOnce(logger)

    def on_flow_end(self, flow_name: str) -> None:
        import fcntl  # POSIX only: imported where the Pushgateway lock file is taken

        with self._lock:
            local = families_from_metrics(self.registry.collect(), prefix=self.prefix)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(f"{self.path}.lock", "a") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    remote: Families = {}
                    if self.path.exists():
                        remote = families_from_metrics(
                            text_string_to_metric_families(self.path.read_text("utf-8")),
                            prefix=self.prefix,
                        )
                    merged = accumulate(remote, local, self._baseline)
                    write_to_textfile(str(self.path), registry_of(merged))
            except (OSError, ValueError) as exc:
                self._warn.fail(
                    "synthobs: cannot write metrics textfile %s (%s); the flow is unaffected.",
                    self.path,
                    exc,
                )
                return
            self._baseline = local
            self._warn.ok()


class MetricsExportSettings(Protocol):
    """What ``make_exporter`` reads (``SynthObsSettings`` is one)."""

    @property
    def metrics_mode(self) -> str: ...
    @property
    def metrics_prefix(self) -> str: ...
    @property
    def metrics_host(self) -> str: ...
    @property
    def metrics_port(self) -> int: ...
    @property
    def pushgateway_url(self) -> str: ...
    @property
    def pushgateway_grouping(self) -> dict[str, str]: ...
    @property
    def pushgateway_timeout_seconds(self) -> float: ...
    def resolved_textfile_path(self) -> Path: ...


def make_exporter(settings: MetricsExportSettings) -> MetricsExporter:
    """The Prometheus exporters ``settings.metrics_mode`` names, as one (``otlp`` is the OTLP setup's)."""
    exporters: list[MetricsExporter] = []
    for mode in settings.metrics_mode.split(","):
        if mode == "http":
            exporters.append(HttpExporter(settings.metrics_host, settings.metrics_port))
        elif mode == "pushgateway":
            exporters.append(
                PushgatewayExporter(
                    settings.pushgateway_url,
                    prefix=settings.metrics_prefix,
                    grouping=settings.pushgateway_grouping,
                    timeout=settings.pushgateway_timeout_seconds,
                )
            )
        elif mode == "textfile":
            exporters.append(TextfileExporter(settings.resolved_textfile_path(), prefix=settings.metrics_prefix))
    if len(exporters) == 1:
        return exporters[0]
    return ExporterGroup(exporters) if exporters else MetricsExporter()


class ExporterGroup(MetricsExporter):
    """Several exporters as one (``metrics_mode="http,pushgateway"``); one failing never stops the others."""

    def __init__(self, exporters: list[MetricsExporter]) -> None:
        self.exporters = exporters
        self.mode = ",".join(e.mode for e in exporters)

    def _each(self, action: Callable[[MetricsExporter], None]) -> None:
        for exporter in self.exporters:
            try:
                action(exporter)
            except Exception as exc:  # each exporter warns on its own; this is the last guard
                logger.warning("synthobs: %s metrics exporter failed: %s", exporter.mode, exc)

    def start(self) -> None:
        self._each(lambda e: e.start())

    def on_flow_end(self, flow_name: str) -> None:
        self._each(lambda e: e.on_flow_end(flow_name))

    def close(self) -> None:
        self._each(lambda e: e.close())


class ClientMetricsBridge:
    """Exposes a registry through prometheus_client's default registry, which
    Prefect's client metrics endpoint serves (``PREFECT_CLIENT_METRICS_ENABLED``).

    ``attach`` twice is harmless; ``detach`` removes what ``attach`` added.

    Args:
        registry: The registry to expose.
        target: Where to expose it (default: prometheus_client's default registry).
    """

    def __init__(self, registry: CollectorRegistry, target: CollectorRegistry = DEFAULT_REGISTRY) -> None:
        self._registry = registry
        self._target = target
        self._lock = threading.Lock()
        self._attached = False

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()

    def attach(self) -> bool:
        """Expose the registry when Prefect's client metrics are enabled.

        Returns:
            Whether the bridge is in place.
        """
        if not get_current_settings().client.metrics.enabled:
            return False
        with self._lock:
            if not self._attached:
                self._target.register(self)
                self._attached = True
        return True

    def detach(self) -> None:
        """Stop exposing the registry (nothing when not attached)."""
        with self._lock:
            if self._attached:
                self._target.unregister(self)
                self._attached = False
