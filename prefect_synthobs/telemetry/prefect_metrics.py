"""Prefect's own resource metrics beside synthobs': the gRPC-port collision, found and said once.

Prefect (>= 3.6) exports ``process.cpu.utilization``, ``process.memory.usage``
and ``process.memory.virtual`` from each flow-run process a worker or runner
starts (``prefect/_internal/metrics.py``, entered around the run by
``python -m prefect.engine``), when ``opentelemetry-instrumentation-system-metrics``
is importable and ``PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS`` is on (the
default; every ``PREFECT_TELEMETRY_RESOURCE_METRICS_INTERVAL_SECONDS``, 10 s).
Its exporter always speaks OTLP over **HTTP**: it posts to
``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` as given, else to
``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/metrics``; it ignores
``OTEL_EXPORTER_OTLP_PROTOCOL``.

So ``OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317`` (OTLP/gRPC's port) with
``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``, a common set-up that serves synthobs' and
other gRPC exporters well, sends Prefect's HTTP posts to a gRPC server: every
export fails, Prefect logs it at debug level only, and its resource metrics are
lost without a word. ``collision`` recognises that from the environment (the
URL Prefect resolves is on port 4317, or the base endpoint it extends is
declared gRPC) and ``warn_once`` says it once per process, naming the fix.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from prefect_synthobs._log import get_logger
from prefect_synthobs.telemetry.prefect_names import ENV_FLOW_RUN_ID

logger = get_logger("telemetry.prefect_metrics")

GRPC_PORT = 4317
"""OTLP/gRPC's default port (OTLP/HTTP's is 4318)."""
SYSTEM_METRICS_MODULE = "opentelemetry.instrumentation.system_metrics"


def prefect_metrics_url(environ: Mapping[str, str]) -> str | None:
    """The URL Prefect's resource-metrics exporter posts to, resolved as Prefect does (Cloud aside) (pure)."""
    explicit = environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    if explicit:
        return explicit
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return f"{base.rstrip('/')}/v1/metrics" if base else None


def _port(url: str) -> int | None:
    try:
        parts = urlsplit(url if "://" in url else f"//{url}")
        return parts.port
    except ValueError:
        return None


def collision(environ: Mapping[str, str], *, resource_metrics_on: bool, system_metrics_installed: bool) -> str | None:
    """Why Prefect's HTTP resource metrics would reach a gRPC endpoint, or ``None`` (pure).

    Only when Prefect would export them at all: its resource metrics on and the
    system-metrics instrumentation importable.
    """
    if not (resource_metrics_on and system_metrics_installed):
        return None
    url = prefect_metrics_url(environ)
    if url is None:
        return None
    if _port(url) == GRPC_PORT:
        return f"port {GRPC_PORT} is OTLP/gRPC's"
    explicit = environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    protocol = environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if explicit and environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") == "grpc":
        # Prefect posts HTTP to the URL as given, which the same environment declares a gRPC endpoint
        return "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=grpc says OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is a gRPC endpoint"
    if not explicit and protocol == "grpc":
        variable = (
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
            if environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
            else "OTEL_EXPORTER_OTLP_PROTOCOL"
        )
        return f"{variable}=grpc says OTEL_EXPORTER_OTLP_ENDPOINT is a gRPC endpoint"
    return None


def shown_url(url: str) -> str:
    """``url`` as a warning may show it: scheme, host, port and path; no credentials, query or fragment (pure)."""
    try:
        parts = urlsplit(url if "://" in url else f"//{url}")
        host = parts.hostname or ""
        if ":" in host:  # IPv6
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
        scheme = f"{parts.scheme}://" if parts.scheme else ""
        return f"{scheme}{host}{port}{parts.path}"
    except ValueError:
        return "(an unparsable URL)"


def message(environ: Mapping[str, str], reason: str) -> str:
    """The warning: what goes wrong and the fix (pure)."""
    url = shown_url(prefect_metrics_url(environ) or "")
    return (
        f"synthobs: Prefect's flow-run resource metrics (process.cpu.utilization, process.memory.usage) are "
        f"exported over OTLP/HTTP to {url}, but {reason}: a gRPC collector refuses those posts and the metrics "
        f"are lost (Prefect logs this at debug level only). Fix: set OTEL_EXPORTER_OTLP_METRICS_ENDPOINT to the "
        f"collector's OTLP/HTTP metrics URL (e.g. http://collector:4318/v1/metrics), which Prefect uses as it is, "
        f"with OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http/protobuf so OpenTelemetry exporters (synthobs' metrics "
        f"among them) send metrics there by HTTP too; or keep synthobs on gRPC with its own settings "
        f"(PREFECT_INTEGRATIONS_SYNTHOBS_OTLP_ENDPOINT and PREFECT_INTEGRATIONS_SYNTHOBS_OTLP_PROTOCOL=grpc); or "
        f"turn Prefect's resource metrics off (PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS=false). synthobs' own "
        f"cpu_seconds and peak_memory_bytes in flow_runs do not depend on them."
    )


def system_metrics_installed() -> bool:
    """Whether Prefect's resource metrics can run here (``opentelemetry-instrumentation-system-metrics``)."""
    try:
        return importlib.util.find_spec(SYSTEM_METRICS_MODULE) is not None
    except (ImportError, ValueError):
        return False


def resource_metrics_on() -> bool:
    """Prefect's ``telemetry.enable_resource_metrics`` setting (``False`` on a Prefect without it)."""
    try:
        from prefect.settings import get_current_settings

        telemetry = getattr(get_current_settings(), "telemetry", None)
        return bool(getattr(telemetry, "enable_resource_metrics", False))
    except Exception:
        return False


_warned = False


def warn_once(environ: Mapping[str, str] | None = None) -> str | None:
    """Warn once per process when Prefect's resource metrics would reach a gRPC endpoint; the warning, if any.

    Only in a flow-run process (``PREFECT__FLOW_RUN_ID`` set, as workers and runners do): Prefect exports
    nothing from a flow called in a script. Cheap: a few variables, one settings read, one ``find_spec``;
    never raises.
    """
    global _warned
    if _warned:
        return None
    env = os.environ if environ is None else environ
    if not env.get(ENV_FLOW_RUN_ID):
        return None  # Prefect exports its resource metrics only from flow-run processes a worker or runner starts
    try:
        reason = collision(
            env, resource_metrics_on=resource_metrics_on(), system_metrics_installed=system_metrics_installed()
        )
    except Exception as exc:
        logger.debug("synthobs: could not check Prefect's metrics endpoint: %s", exc)
        return None
    if reason is None:
        return None
    _warned = True
    text = message(env, reason)
    logger.warning("%s", text)
    return text


def rearm() -> None:
    """Let ``warn_once`` warn again (tests)."""
    global _warned
    _warned = False
