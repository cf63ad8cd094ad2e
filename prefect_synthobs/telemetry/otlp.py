"""Where each OpenTelemetry signal goes: the OTLP endpoint, protocol, headers and timeout.

One resolution for traces, metrics and logs, the OpenTelemetry way: a synthobs
setting first, then ``OTEL_EXPORTER_OTLP_<SIGNAL>_*``, then ``OTEL_EXPORTER_OTLP_*``.
``otlp_endpoint`` and ``OTEL_EXPORTER_OTLP_ENDPOINT`` are base URLs (the signal's
path, ``/v1/metrics`` say, is added for http/protobuf); a signal's own
``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`` is used as it is. Pure: the environment
is passed in.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from opentelemetry.sdk.resources import Resource

from prefect_synthobs._log import get_logger
from prefect_synthobs._version import __version__
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.telemetry.redaction import strip_url_credentials

Signal = Literal["traces", "metrics", "logs"]
PROTOCOLS = ("grpc", "http/protobuf")
_SIGNAL_PATH = re.compile(r"/v1/(traces|metrics|logs)/?$")


class OtlpSettings(Protocol):
    """What ``otlp_target`` reads (``SynthObsSettings`` is one); each signal's settings protocol extends it."""

    @property
    def otlp_endpoint(self) -> str | None: ...
    @property
    def otlp_protocol(self) -> str | None: ...
    @property
    def otlp_timeout_seconds(self) -> float: ...
    def resolved_otlp_headers(self) -> dict[str, str] | None: ...


@dataclass(frozen=True)
class OtlpTarget:
    """One signal's OTLP destination.

    ``endpoint`` is the URL the exporter is given (for http/protobuf, with the
    signal's path); ``None`` leaves it to the exporter's own default
    (``localhost:4317``/``4318``). ``headers`` ``None`` lets the exporter read
    ``OTEL_EXPORTER_OTLP_(<SIGNAL>_)HEADERS``.
    """

    signal: Signal
    endpoint: str | None
    protocol: str
    headers: tuple[tuple[str, str], ...] | None = field(repr=False)  # may carry tokens
    timeout: float

    @property
    def shown(self) -> str:
        """The endpoint for messages: credentials removed."""
        return strip_url_credentials(self.endpoint) if self.endpoint else f"the default OTLP {self.signal} endpoint"


def signal_url(base: str, signal: Signal) -> str:
    """``base`` with the signal's http path: ``http://c:4318`` → ``http://c:4318/v1/metrics``."""
    stripped = _SIGNAL_PATH.sub("", base.rstrip("/"))
    return f"{stripped.rstrip('/')}/v1/{signal}"


def otlp_target(settings: OtlpSettings, signal: Signal, environ: Mapping[str, str] | None = None) -> OtlpTarget:
    """Resolve where ``signal`` goes from settings, then the ``OTEL_*`` variables.

    Raises:
        ValueError: The protocol is neither ``grpc`` nor ``http/protobuf``.
    """
    env = os.environ if environ is None else environ
    upper = signal.upper()
    protocol = (
        settings.otlp_protocol
        or env.get(f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol not in PROTOCOLS:
        raise ValueError(f"OTLP protocol must be 'grpc' or 'http/protobuf', got {protocol!r}")
    own = env.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")
    base = settings.otlp_endpoint or (None if own else env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    if base:
        endpoint: str | None = base if protocol == "grpc" else signal_url(base, signal)
    else:
        endpoint = own or None
    revealed = settings.resolved_otlp_headers()
    headers = tuple(sorted(revealed.items())) if revealed else None
    return OtlpTarget(signal, endpoint, protocol, headers, settings.otlp_timeout_seconds)


def named_exporters(variable: str, environ: Mapping[str, str] | None = None) -> set[str]:
    """The exporters an ``OTEL_<SIGNAL>_EXPORTER`` variable names (``{"otlp", "console"}``), lower case."""
    env = os.environ if environ is None else environ
    return {part.strip().lower() for part in env.get(variable, "").split(",") if part.strip()}


class ExportHealth:
    """Whether an exporter answers: one warning when it stops (until it recovers), never an error.

    ``answering`` is False from a failed export until one succeeds; flows then
    stop waiting for flushes to that endpoint.
    """

    def __init__(self, logger: logging.Logger, what: str, target: OtlpTarget) -> None:
        self._warning = WarnOnce(logger)
        self._what, self._shown = what, target.shown
        self.answering = True

    def failed(self, reason: str) -> None:
        self.answering = False
        self._warning.fail(
            "synthobs: cannot export %s to %s (%s); they are dropped until it answers. Flows are unaffected.",
            self._what,
            self._shown,
            strip_url_credentials(reason),
        )

    def ok(self) -> None:
        self.answering = True
        self._warning.ok()


class _QuietExporterLogs(logging.Filter):
    """The OTLP exporters log every failed attempt; synthobs says it once (``ExportHealth``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.CRITICAL


def quiet_exporter_logs(logger_names: tuple[str, ...]) -> list[tuple[logging.Logger, logging.Filter]]:
    """Filter the exporters' per-attempt logs; returns what was added, for ``restore_exporter_logs``.

    Each caller adds its own filter (traces, metrics and logs share a gRPC logger), so
    one signal's removal never unfilters another's.
    """
    added: list[tuple[logging.Logger, logging.Filter]] = []
    for name in logger_names:
        log, flt = logging.getLogger(name), _QuietExporterLogs()
        log.addFilter(flt)
        added.append((log, flt))
    return added


def restore_exporter_logs(added: list[tuple[logging.Logger, logging.Filter]]) -> None:
    """Remove exactly the filters ``quiet_exporter_logs`` added."""
    for log, flt in added:
        log.removeFilter(flt)


_INSTANCE_IDS: dict[int, str] = {}


def instance_id() -> str:
    """This process's ``service.instance.id``: a random UUID, as the semantic conventions advise
    (a new one in a forked child, so two processes never share one)."""
    return _INSTANCE_IDS.setdefault(os.getpid(), str(uuid.uuid4()))


def synthobs_resource(service_name: str | None, environment: str | None) -> Resource:
    """The resource of the providers synthobs builds (traces, metrics, logs).

    ``service_name`` ``None`` leaves ``service.name`` to ``OTEL_SERVICE_NAME``;
    ``OTEL_RESOURCE_ATTRIBUTES`` is read too (``Resource.create``).
    """
    attributes: dict[str, Any] = {
        "service.version": __version__,
        "service.instance.id": instance_id(),
        "host.name": socket.gethostname(),
    }
    if service_name is not None:
        attributes["service.name"] = service_name
    if environment:
        attributes["deployment.environment"] = environment
    return Resource.create(attributes)


def flush_bounded(provider: Any, timeout: float, health: ExportHealth | None, *, what: str) -> bool:
    """``provider.force_flush`` waiting at most about ``timeout`` seconds (at an observed flow's end).

    Once the endpoint failed (``health.answering`` False), flows no longer wait:
    export goes on in the background. Returns whether everything was exported.
    """
    if not hasattr(provider, "force_flush"):
        return True
    if health is not None and not health.answering:
        return False
    done = threading.Event()
    result: list[bool] = []

    def run() -> None:
        try:
            result.append(bool(provider.force_flush(int(timeout * 1000))))
        except Exception as exc:
            get_logger("telemetry").debug("synthobs: %s flush failed: %s", what, exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"synthobs-{what.replace(' ', '-')}-flush", daemon=True).start()
    if not done.wait(timeout + 0.5):
        if health is not None:
            health.answering = False
        return False
    # a provider's flush succeeds when its exporters were called; whether they got through is the health's
    return bool(result and result[0]) and (health is None or health.answering)
