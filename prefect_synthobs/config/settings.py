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

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from prefect_synthobs.catalog import ENV_PREFIX

MetricsMode = Literal["none", "http", "pushgateway", "textfile"]
OtlpProtocol = Literal["grpc", "http/protobuf"]


class SynthObsSettings(BaseSettings):
    """The active synthobs configuration.

    Attributes:
        store_url: Root of the Parquet health store: a path, ``file://`` URL or
            ``s3://`` prefix. ``None`` means ``$PREFECT_HOME/synthobs``.
        store_options: Object-store credentials and endpoint for ``s3://``
            stores (``access_key``, ``secret_key``, ``region``,
            ``endpoint_override``...), kept as secrets.
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
        otlp_headers: Extra export headers (``None``: ``OTEL_EXPORTER_OTLP_HEADERS``),
            kept as secrets (they usually carry tokens).
        otlp_timeout_seconds: Bound on one export and on the flush at the end of
            an observed flow run.
        trace_sample_ratio: Share of traces exported (0 to 1). Runs that are not
            sampled are still recorded in the store and metrics.
        trace_console: Also print spans to stdout (local debugging).
        span_names: ``prefect`` keeps Prefect's run names as span names
            (``radical-mosquito``); ``stable`` renames run spans
            ``flow/<flow name>`` and ``task/<task name>``, which backends can
            group by (the run name stays in ``prefect.run.name``).
        quality_gates_block: Name of the quality gates block quality checks use.
        config_block: Name of a ``SynthObsConfig`` block to load; its values
            sit between keyword overrides and environment variables. Set
            ``PREFECT_INTEGRATIONS_SYNTHOBS_CONFIG_BLOCK`` in a deployment's
            environment and flow-run processes configure themselves from it.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_assignment=True,
        case_sensitive=False,
    )

    store_url: str | None = None
    store_options: dict[str, SecretStr] | None = None
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
    otlp_headers: dict[str, SecretStr] | None = None
    otlp_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    trace_sample_ratio: float = Field(default=1.0, ge=0, le=1)
    trace_console: bool = False
    span_names: Literal["prefect", "stable"] = "prefect"
    quality_gates_block: str | None = None
    config_block: str | None = None

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


_block_name: str | None = None
_block_values: dict[str, Any] = {}


def configure(config: Any = None, **overrides: Any) -> SynthObsSettings:
    """Set synthobs up for this process; calling it again is harmless.

    Precedence, strongest first: keyword overrides, then a ``SynthObsConfig``
    block (``config``, or the one named by ``config_block``), then
    ``PREFECT_INTEGRATIONS_SYNTHOBS_*`` environment variables, then the
    defaults. Overrides accumulate across calls: ``configure(metrics_mode="http")``
    then ``configure(metrics_port=9000)`` keeps both. ``configure()`` with no
    arguments returns the active settings.

    Args:
        config: A ``SynthObsConfig`` block, or the name of a saved one.
        **overrides: Any field of ``SynthObsSettings``.

    Returns:
        The active settings.

    Raises:
        ValueError: An unknown key, an invalid value or a block that cannot be
            loaded (the message names it).

    Example:
        ```python
        import prefect_synthobs as so
        from prefect_synthobs.config.blocks import SynthObsConfig

        so.configure(store_url="s3://bucket/synthobs", metrics_mode="pushgateway")
        so.configure(config=SynthObsConfig.load("prod"))
        ```
    """
    global _active, _block_name, _block_values
    with _lock:
        unknown = sorted(set(overrides) - set(SynthObsSettings.model_fields))
        if unknown:
            allowed = ", ".join(sorted(SynthObsSettings.model_fields))
            raise ValueError(f"unknown synthobs setting(s) {unknown}; allowed: {allowed}")
        merged = {**_overrides, **overrides}
        block_name, block_values = _block_name, _block_values
        if config is not None:
            block_name, block_values = _block_settings(config)
            merged["config_block"] = block_name
        try:
            settings = SynthObsSettings(**{**block_values, **merged})
            wanted = settings.config_block
            if wanted and wanted != block_name:  # named by keyword or environment: load it
                try:
                    block_name, block_values = _block_settings(wanted)
                except ValueError:
                    if "config_block" in overrides:
                        raise
                    import logging

                    logging.getLogger("prefect_synthobs").warning(
                        "synthobs: config block %r could not be loaded; using the environment and defaults",
                        wanted, exc_info=False,
                    )
                    block_name, block_values = wanted, {}
                settings = SynthObsSettings(**{**block_values, **merged})
        except ValidationError as exc:
            raise ValueError(f"invalid synthobs settings: {exc}") from None
        changed = settings != _active
        _overrides.clear()
        _overrides.update(merged)
        _block_name, _block_values = block_name, block_values
        _active = settings
        listeners = list(_listeners)
    if changed:
        for listener in listeners:
            listener(settings)
    return settings


def _block_settings(config: Any) -> tuple[str | None, dict[str, Any]]:
    """``(block name, configure keywords)`` of a ``SynthObsConfig`` block or block name.

    Values the block leaves unset (``None``) are dropped, so they do not hide
    environment variables.
    """
    from prefect_synthobs.config.blocks import SynthObsConfig

    if isinstance(config, str):
        try:
            block = SynthObsConfig.load(config, _sync=True)
        except Exception as exc:
            raise ValueError(f"could not load SynthObsConfig block {config!r}: {exc}") from None
        name: str | None = config
    elif isinstance(config, SynthObsConfig):
        block, name = config, getattr(config, "_block_document_name", None)
    else:
        raise ValueError(f"config must be a SynthObsConfig block or a block name, got {type(config).__name__}")
    return name, {k: v for k, v in block.settings().items() if v is not None}


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
    """Forget overrides and blocks; re-read the environment on next use (for tests)."""
    global _active, _block_name, _block_values
    with _lock:
        _overrides.clear()
        _active = None
        _block_name, _block_values = None, {}


def env_name(key: str) -> str:
    """The environment variable that sets ``key``."""
    return ENV_PREFIX + key.upper()


__all__ = ["SynthObsSettings", "configure", "env_name", "get_settings", "reset"]

