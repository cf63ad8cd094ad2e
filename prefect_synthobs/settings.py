"""Process-wide settings: keyword overrides, environment variables, defaults.

Every key can be set three ways, strongest first:

1. ``configure(key=value)`` in code;
2. the environment variable ``PREFECT_INTEGRATIONS_SYNTHOBS_<KEY>`` (upper case);
3. the built-in default (the *embedded default*: the store under
   ``$PREFECT_HOME/synthobs``, metrics kept in-process).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from prefect_synthobs.names import ENV_PREFIX

MetricsMode = Literal["none", "http", "pushgateway", "textfile"]
OtlpProtocol = Literal["grpc", "http/protobuf"]


class SynthObsSettings(BaseSettings):
    """The active synthobs configuration.

    Attributes:
        store_url: Root of the Parquet health store: a path, ``file://`` URL or
            ``s3://`` prefix. ``None`` means ``$PREFECT_HOME/synthobs``.
        spool_dir: Local directory for health rows the store could not take.
            ``None`` means ``$PREFECT_HOME/synthobs-spool``.
        flush_interval_seconds: How often a long run writes its buffered rows.
        metrics_mode: ``none`` (in-process only), ``http``, ``pushgateway`` or
            ``textfile``.
        metrics_prefix: Prefix of every metric name.
        metrics_host: Address the ``http`` exporter binds.
        metrics_port: Port the ``http`` exporter binds.
        pushgateway_url: Pushgateway base URL for ``pushgateway`` mode.
        pushgateway_timeout_seconds: Bound on one push (and its read-back).
        pushgateway_grouping: Extra grouping-key labels added to ``job``.
        textfile_path: ``.prom`` file for the node exporter's textfile collector.
            ``None`` means ``$PREFECT_HOME/synthobs-metrics/synthobs.prom``.
        gpu_enabled: Sample GPUs through NVML during observed runs (when NVML
            answers; without a GPU this costs one info line).
        gpu_interval_seconds: GPU sampling interval (0.25 to 60 s).
        gpu_energy_interval_seconds: How often the energy counters are read
            (the costly NVML call); a run's start and end always read them, so
            per-run energy stays exact.
        gpu_store_interval_seconds: Downsampling of the ``gpu_samples`` table:
            at most one row per device per this many seconds (energy is summed
            over the skipped samples). ``None`` stores every sample.
        service_name: ``service.name`` of traces and the default job label.
        environment: ``deployment.environment`` of traces.
        redact_pii: Redact PII from error messages stored in the health store,
            from Prefect's run logs and from attributes of spans synthobs opens.
        otlp_endpoint: OTLP endpoint for spans. ``None`` falls back to
            ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``;
            with neither, spans are not exported.
        otlp_protocol: ``grpc`` or ``http/protobuf``. ``None`` falls back to
            ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL``, then ``http/protobuf``.
        otlp_headers: Extra export headers (``None``: ``OTEL_EXPORTER_OTLP_HEADERS``).
        otlp_timeout_seconds: Bound on one export and on the flush at the end of
            an observed flow run.
        trace_sample_ratio: Share of traces exported (0 to 1). Runs that are not
            sampled are still recorded in the store and metrics.
        trace_console: Also print spans to stdout (local debugging).
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_assignment=True,
        case_sensitive=False,
    )

    store_url: str | None = None
    spool_dir: str | None = None
    flush_interval_seconds: float = Field(default=60.0, gt=0)
    metrics_mode: MetricsMode = "none"
    metrics_prefix: str = Field(default="synthobs", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    pushgateway_url: str = "http://127.0.0.1:9091"
    pushgateway_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    pushgateway_grouping: dict[str, str] = Field(default_factory=dict)
    textfile_path: str | None = None
    gpu_enabled: bool = True
    gpu_interval_seconds: float = Field(default=1.0, ge=0.25, le=60)
    gpu_energy_interval_seconds: float = Field(default=10.0, ge=0.25, le=3600)
    gpu_store_interval_seconds: float | None = Field(default=None, gt=0)
    service_name: str = "prefect-synthobs"
    environment: str | None = None
    redact_pii: bool = True
    otlp_endpoint: str | None = None
    otlp_protocol: OtlpProtocol | None = None
    otlp_headers: dict[str, str] | None = None
    otlp_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    trace_sample_ratio: float = Field(default=1.0, ge=0, le=1)
    trace_console: bool = False

    @field_validator("pushgateway_grouping")
    @classmethod
    def _no_job_in_grouping(cls, value: dict[str, str]) -> dict[str, str]:
        if "job" in value:
            raise ValueError("'job' is set from the flow name; choose another label")
        return value

    def resolved_store_url(self) -> str:
        """The store root, with the embedded default filled in."""
        return self.store_url or str(prefect_home() / "synthobs")

    def resolved_spool_dir(self) -> Path:
        """The spool directory, with the embedded default filled in."""
        return Path(self.spool_dir) if self.spool_dir else prefect_home() / "synthobs-spool"

    def resolved_textfile_path(self) -> Path:
        """The textfile exporter's file, with the embedded default filled in."""
        if self.textfile_path:
            return Path(self.textfile_path)
        return prefect_home() / "synthobs-metrics" / "synthobs.prom"


def prefect_home() -> Path:
    """``PREFECT_HOME`` as Prefect resolves it."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home).expanduser()


_lock = threading.RLock()
_overrides: dict[str, Any] = {}
_active: SynthObsSettings | None = None
_listeners: list[Any] = []


def configure(**overrides: Any) -> SynthObsSettings:
    """Set synthobs up for this process; calling it again is harmless.

    Keyword overrides win over ``PREFECT_INTEGRATIONS_SYNTHOBS_*`` environment
    variables, which win over the defaults. Overrides accumulate across calls:
    ``configure(metrics_mode="http")`` then ``configure(metrics_port=9000)``
    keeps both. ``configure()`` with no arguments returns the active settings.

    Args:
        **overrides: Any field of ``SynthObsSettings``.

    Returns:
        The active settings.

    Raises:
        ValueError: An unknown key or an invalid value (the message names it).

    Example:
        ```python
        import prefect_synthobs as so

        so.configure(store_url="s3://bucket/synthobs", metrics_mode="pushgateway")
        ```
    """
    global _active
    with _lock:
        unknown = sorted(set(overrides) - set(SynthObsSettings.model_fields))
        if unknown:
            allowed = ", ".join(sorted(SynthObsSettings.model_fields))
            raise ValueError(f"unknown synthobs setting(s) {unknown}; allowed: {allowed}")
        merged = {**_overrides, **overrides}
        try:
            settings = SynthObsSettings(**merged)
        except ValidationError as exc:
            raise ValueError(f"invalid synthobs settings: {exc}") from None
        changed = settings != _active
        _overrides.clear()
        _overrides.update(merged)
        _active = settings
        listeners = list(_listeners)
    if changed:
        for listener in listeners:
            listener(settings)
    return settings


def get_settings() -> SynthObsSettings:
    """The active settings, read from the environment on first use."""
    with _lock:
        active = _active
    return active if active is not None else configure()


def on_change(listener: Any) -> None:
    """Call ``listener(settings)`` whenever ``configure`` changes the settings."""
    with _lock:
        if listener not in _listeners:
            _listeners.append(listener)


def reset() -> None:
    """Forget overrides and re-read the environment on next use (for tests)."""
    global _active
    with _lock:
        _overrides.clear()
        _active = None


def env_name(key: str) -> str:
    """The environment variable that sets ``key``."""
    return ENV_PREFIX + key.upper()


__all__ = ["SynthObsSettings", "configure", "env_name", "get_settings", "reset"]

