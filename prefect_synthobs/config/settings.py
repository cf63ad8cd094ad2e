"""The one configuration model: every synthobs setting, its type, default, bounds and meaning.

Every key can be set three ways, strongest first:

1. ``configure(key=value)`` in code (``prefect_synthobs.config.active``);
2. a ``SynthObsConfig`` block (its fields are made from these, see ``setting_field``);
3. the environment variable ``PREFECT_INTEGRATIONS_SYNTHOBS_<KEY>`` (upper case);
4. the built-in default (the *embedded default*: the store under
   ``$PREFECT_HOME/synthobs``, metrics kept in-process).

This module is pure: it reads the environment only when a model is built.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse, urlsplit, urlunsplit

from prefect.settings import get_current_settings
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from prefect_synthobs.catalog import ENV_PREFIX
from prefect_synthobs.health.store import check_store_url
from prefect_synthobs.telemetry.redaction import strip_url_credentials

MetricsMode = Literal["none", "http", "pushgateway", "textfile", "otlp"]
"""One metrics mode; ``metrics_mode`` holds a comma list of them (``pushgateway,otlp``)."""
METRICS_MODES: tuple[MetricsMode, ...] = ("none", "http", "pushgateway", "textfile", "otlp")
Temporality = Literal["cumulative", "delta", "lowmemory"]
OtlpProtocol = Literal["grpc", "http/protobuf"]
SpanNames = Literal["prefect", "stable"]


class SynthObsSettings(BaseSettings):
    """The active synthobs configuration.

    Each field's description says what it does; ``SynthObsSettings.model_fields``
    is the single definition the blocks, the environment and ``configure``
    share.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_assignment=True,
        case_sensitive=False,
        allow_inf_nan=False,
    )

    store_url: str | None = Field(
        default=None,
        description="Root of the Parquet health store: a path, file:// URL or s3:// prefix "
        "(default: $PREFECT_HOME/synthobs).",
    )
    store_options: dict[str, SecretStr] | None = Field(
        default=None,
        description="Object-store credentials and endpoint for s3:// stores (access_key, secret_key, region, "
        "endpoint_override...), kept secret.",
    )
    spool_dir: str | None = Field(
        default=None,
        description="Local directory for health rows the store could not take (default: $PREFECT_HOME/synthobs-spool).",
    )
    flush_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        le=86400,
        description="How often buffered rows are written while runs go on (at most a day): a killed process "
        "loses at most the rows of this window.",
    )
    spool_max_bytes: int = Field(
        default=1 << 30,
        ge=1 << 20,
        description="The most the spool may hold (bytes, at least 1 MiB); past it the oldest spooled rows are "
        "dropped, counted in rows_dropped_total.",
    )
    store_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Longest one store write may take; past it the rows go to the spool and the store is "
        "skipped until a background retry succeeds.",
    )
    metrics_mode: str = Field(
        default="none",
        description="Where metrics go, one or a comma list: none (in-process only), http, pushgateway, textfile, "
        "otlp (e.g. pushgateway,otlp). Unset, OTEL_METRICS_EXPORTER=otlp (or console) also exports over OTLP; "
        "none set explicitly exports nothing.",
    )
    metrics_prefix: str = Field(
        default="synthobs", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", description="Prefix of every metric name."
    )
    metrics_host: str = Field(default="127.0.0.1", description="Bind address of the http exporter.")
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="Port of the http exporter.")
    pushgateway_url: str = Field(default="http://127.0.0.1:9091", description="Pushgateway base URL.")
    pushgateway_timeout_seconds: float = Field(
        default=2.0, gt=0, le=60, description="Bound on one push and its read-back."
    )
    pushgateway_grouping: dict[str, str] = Field(
        default_factory=dict, description="Extra grouping-key labels added to the job label."
    )
    textfile_path: str | None = Field(
        default=None,
        description="The .prom file of textfile mode (default: $PREFECT_HOME/synthobs-metrics/synthobs.prom).",
    )
    gpu_enabled: bool = Field(
        default=True,
        description="Sample GPUs through NVML during observed runs (without a GPU this costs one info line).",
    )
    gpu_interval_seconds: float = Field(
        default=1.0, ge=0.25, le=60, description="GPU sampling interval in seconds (0.25 to 60)."
    )
    gpu_energy_interval_seconds: float = Field(
        default=10.0,
        ge=0.25,
        le=3600,
        description="How often the energy counters (the costly NVML call) are read; a run's start and end "
        "always read them, so per-run energy stays exact.",
    )
    gpu_store_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Store at most one gpu_samples row per device per this many seconds (energy of skipped "
        "samples is summed); none stores every sample.",
    )
    service_name: str = Field(
        default="prefect-synthobs", description="service.name of traces and the default job label."
    )
    environment: str | None = Field(default=None, description="deployment.environment of traces, e.g. prod.")
    redact_pii: bool = Field(
        default=True,
        description="Redact PII from run logs, stored error messages and every exported span (attributes, "
        "event attributes and status messages, whoever made the span).",
    )
    redact_ip_addresses: bool = Field(
        default=False, description="Also redact IPv4 addresses in exported spans (with redact_pii)."
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP endpoint (the base URL; /v1/traces, /v1/metrics, /v1/logs are added for "
        "http/protobuf) for spans, metrics and logs (default: OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT, then "
        "OTEL_EXPORTER_OTLP_ENDPOINT; with neither, spans are not exported).",
    )
    otlp_protocol: OtlpProtocol | None = Field(
        default=None,
        description="grpc or http/protobuf (default: OTEL_EXPORTER_OTLP_(<SIGNAL>_)PROTOCOL, then http/protobuf).",
    )
    otlp_metrics_interval_seconds: float | None = Field(
        default=None,
        gt=0,
        le=86400,
        description="How often metrics are exported over OTLP while a process runs (default: "
        "OTEL_METRIC_EXPORT_INTERVAL, then 60 s); every observed flow's end exports too.",
    )
    otlp_metrics_temporality: Temporality | None = Field(
        default=None,
        description="cumulative, delta or lowmemory (default: OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, "
        "then cumulative).",
    )
    otlp_logs: bool | None = Field(
        default=None,
        description="Export the run logs of observed runs as OpenTelemetry log records (default: on when "
        "OTEL_LOGS_EXPORTER names otlp or console).",
    )
    otlp_headers: dict[str, SecretStr] | None = Field(
        default=None, description="Extra export headers (default: OTEL_EXPORTER_OTLP_HEADERS), kept secret."
    )
    otlp_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Bound on one export and on the end-of-run flush."
    )
    trace_sample_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of traces exported (0 to 1); unsampled runs are still recorded in the store and metrics.",
    )
    trace_console: bool = Field(default=False, description="Also print spans to stdout (local debugging).")
    span_names: SpanNames = Field(
        default="prefect",
        description="prefect keeps Prefect's run names as span names; stable renames run spans "
        "flow/<flow name> and task/<task name> (the run name stays in prefect.run.name).",
    )
    quality_gates_block: str | None = Field(
        default=None, description="Name of the quality gates block that quality checks use."
    )
    config_block: str | None = Field(
        default=None,
        description="Name of a SynthObsConfig block to load; its values sit between keyword overrides and "
        "environment variables (set it in a deployment's environment).",
    )

    @field_validator("metrics_mode", mode="before")
    @classmethod
    def _metrics_modes(cls, value: Any) -> str:
        return parse_metrics_modes(value)

    def metrics_modes(self) -> tuple[MetricsMode, ...]:
        """``metrics_mode`` as a tuple of modes (``("none",)`` when nothing is exported)."""
        return tuple(m for m in METRICS_MODES if m in self.metrics_mode.split(","))

    @field_validator("store_url")
    @classmethod
    def _supported_store(cls, value: str | None) -> str | None:
        return None if value is None else check_store_url(value)

    @field_validator("otlp_endpoint", "pushgateway_url")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            shown = strip_url_credentials(value)
            raise ValueError(f"{info.field_name} must be an http:// or https:// URL with a host, got {shown!r}")
        return value

    @field_validator("pushgateway_grouping")
    @classmethod
    def _no_job_in_grouping(cls, value: dict[str, str]) -> dict[str, str]:
        if "job" in value:
            raise ValueError("'job' is set from the flow name; choose another label")
        return value

    def resolved_store_url(self) -> str:
        """The store root, with the embedded default filled in."""
        return self.store_url or str(prefect_home() / "synthobs")

    def resolved_otlp_headers(self) -> dict[str, str] | None:
        """The export headers with their secrets revealed."""
        if not self.otlp_headers:
            return None
        return {k: v.get_secret_value() for k, v in self.otlp_headers.items()}

    def resolved_store_options(self) -> dict[str, str] | None:
        """The store's storage options with their secrets revealed."""
        if not self.store_options:
            return None
        return {k: v.get_secret_value() for k, v in self.store_options.items()}

    def resolved_spool_dir(self) -> Path:
        """The spool directory, with the embedded default filled in."""
        return Path(self.spool_dir) if self.spool_dir else prefect_home() / "synthobs-spool"

    def store_spool_dir(self) -> Path:
        """Where this store's rows wait: ``<spool_dir>/store-<key>``, the key a hash of the store URL.

        Processes on one host share the spool directory; a process draining
        it must take only rows meant for its own store (worker processes
        spool every task's rows). Credentials in the URL do not enter the key.
        """
        url = self.resolved_store_url()
        if "://" not in url or url.startswith("file://"):
            url = str(Path(url.removeprefix("file://")).expanduser().absolute())
        else:
            parts = urlsplit(url)
            url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        return self.resolved_spool_dir() / f"store-{hashlib.sha256(url.encode()).hexdigest()[:12]}"

    def resolved_textfile_path(self) -> Path:
        """The textfile exporter's file, with the embedded default filled in."""
        if self.textfile_path:
            return Path(self.textfile_path)
        return prefect_home() / "synthobs-metrics" / "synthobs.prom"


def parse_metrics_modes(value: Any) -> str:
    """``metrics_mode`` from a mode, a comma list or a list of modes, as ``"pushgateway,otlp"``.

    Raises:
        ValueError: An unknown mode, or ``none`` with another mode.
    """
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    elif isinstance(value, str):
        items = value.split(",")
    else:
        raise ValueError(f"metrics_mode must be a mode or a comma list of modes, got {value!r}")
    modes: list[str] = []
    for item in (i.strip().lower() for i in items):
        if item not in METRICS_MODES:
            raise ValueError(f"unknown metrics_mode {item!r}: choose from {', '.join(METRICS_MODES)}")
        if item not in modes:
            modes.append(item)
    if "none" in modes and len(modes) > 1:
        raise ValueError(f"metrics_mode 'none' cannot be combined with other modes, got {value!r}")
    return ",".join(modes) or "none"


def setting_field(key: str, **changes: Any) -> Any:
    """A block field made from setting ``key``: same default, bounds and description.

    ``changes`` replaces attributes of the copy (``default=...`` for a block
    field that is required, say). Blocks declare their fields with it, so each
    bound and default is written once, here.
    """
    info: FieldInfo = copy.deepcopy(SynthObsSettings.model_fields[key])
    for name, value in changes.items():
        setattr(info, name, value)
    return info


def prefect_home() -> Path:
    """``PREFECT_HOME`` as Prefect resolves it."""
    return Path(get_current_settings().home).expanduser()


def env_name(key: str) -> str:
    """The environment variable that sets ``key``."""
    return ENV_PREFIX + key.upper()


__all__ = [
    "METRICS_MODES",
    "MetricsMode",
    "OtlpProtocol",
    "SynthObsSettings",
    "Temporality",
    "env_name",
    "prefect_home",
    "setting_field",
]
