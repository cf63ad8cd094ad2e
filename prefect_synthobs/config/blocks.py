"""Prefect blocks: synthobs configuration from the Prefect UI.

``SynthObsConfig`` is the block a flow names (``observe(config="prod")`` or
``configure(config=SynthObsConfig.load("prod"))``); it refers to component
blocks for traces (``OtlpExporter``), metrics (``MetricsConfig``) and the
health store (``HealthStoreConfig``). Blocks hold configuration and ``get_*()``
factories only; secrets (OTLP headers and token, storage credentials) are
secret fields, masked in the UI and in ``repr``.

Register the types with ``prefect block register -m prefect_synthobs`` (the
``prefect.collections`` entry point also registers them) or run
``blocks/register.py``; ``blocks/create_from_env.py`` creates documents from
environment variables.
"""

from __future__ import annotations

import os
from abc import ABC
from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import unquote

from prefect.blocks.core import Block
from prefect.types import SecretDict
from pydantic import Field, SecretStr, field_validator
from pydantic_core import PydanticUndefined

from prefect_synthobs.config.budget_state import spent_epsilon
from prefect_synthobs.config.settings import (
    OtlpProtocol,
    SynthObsSettings,
    Temporality,
    parse_metrics_modes,
    setting_field,
)
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.telemetry.otel_logs import logs_export_config
from prefect_synthobs.telemetry.otel_metrics import metrics_export_config
from prefect_synthobs.telemetry.tracing import ExportConfig, build_exporter, export_config

_LOGO = "https://cdn.sanity.io/images/3ugk85nk/production/fb3f4debabcda1c5a3aeea4f5b3f94c28845e23e-250x250.png"
_DOCS = "https://github.com/prefect-synthobs/prefect-synthobs#configuration"
_REQUIRED = PydanticUndefined


class _SettingsBlock(Block, ABC):
    """A block whose fields are settings: ``_settings_keys`` maps field to setting key.

    An interface, not a block type: ``ABC`` among its bases keeps it out of Prefect's block registry, so the
    server does not list it in the UI's block catalog and ``prefect block register`` skips it.

    Fields are declared with ``setting_field(key)``, so the bounds, defaults and
    descriptions are the settings' own; ``settings()`` and ``from_settings()``
    translate through the same mapping.
    """

    _settings_keys: ClassVar[dict[str, str]] = {}

    def _setting_value(self, field_name: str) -> Any:
        value = getattr(self, field_name)
        return dict(value) if isinstance(value, dict) else value

    def settings(self) -> dict[str, Any]:
        """This block as ``configure`` keywords."""
        return {key: self._setting_value(name) for name, key in self._settings_keys.items()}

    @classmethod
    def settings_values(cls, settings: SynthObsSettings) -> dict[str, Any]:
        """The block's field values taken from ``settings``."""
        return {name: getattr(settings, key) for name, key in cls._settings_keys.items()}


class OtlpExporter(_SettingsBlock):
    """Where synthobs sends OpenTelemetry spans, metrics and run logs (an OTLP endpoint).

    Attributes:
        endpoint: OTLP endpoint URL.
        protocol: ``grpc`` or ``http/protobuf``.
        headers: Extra export headers, kept secret.
        token: Bearer token sent as ``Authorization: Bearer <token>``.
        timeout_seconds: Bound on one export and on the end-of-run flush.
        sample_ratio: Share of traces exported.
        logs: Export the run logs of observed runs (unset: when ``OTEL_LOGS_EXPORTER``
            names ``otlp``). Metrics go here when the metrics mode includes ``otlp``.

    Example:
        ```python
        from prefect_synthobs.blocks import OtlpExporter

        otlp = OtlpExporter.load("BLOCK_NAME")
        exporter = otlp.get_exporter()
        ```
    """

    _block_type_name = "SynthObs OTLP Exporter"
    _block_type_slug = "synthobs-otlp-exporter"
    _logo_url = _LOGO  # type: ignore[assignment]
    _documentation_url = _DOCS  # type: ignore[assignment]
    _description = "OTLP endpoint, protocol and credentials for prefect-synthobs traces, metrics and logs."

    _settings_keys: ClassVar[dict[str, str]] = {
        "endpoint": "otlp_endpoint",
        "protocol": "otlp_protocol",
        "timeout_seconds": "otlp_timeout_seconds",
        "sample_ratio": "trace_sample_ratio",
        "logs": "otlp_logs",
    }

    endpoint: str = setting_field(
        "otlp_endpoint", default=_REQUIRED, description="OTLP endpoint URL, e.g. http://otel-collector:4318."
    )
    protocol: OtlpProtocol = setting_field("otlp_protocol", default="http/protobuf")
    headers: SecretDict | None = Field(default=None, description="Extra headers sent with every export (kept secret).")
    token: SecretStr | None = Field(default=None, description="Bearer token sent as 'Authorization: Bearer <token>'.")
    timeout_seconds: float = setting_field("otlp_timeout_seconds")
    sample_ratio: float = setting_field("trace_sample_ratio")
    logs: bool | None = setting_field("otlp_logs")

    def export_headers(self) -> dict[str, str]:
        """The headers to send, secrets revealed, the token as a bearer header."""
        headers = {str(k): str(v) for k, v in (self.headers.get_secret_value() if self.headers else {}).items()}
        if self.token is not None:
            headers["authorization"] = f"Bearer {self.token.get_secret_value()}"
        return headers

    def settings(self) -> dict[str, Any]:
        """This block as ``configure`` keywords."""
        return {**super().settings(), "otlp_headers": self.export_headers() or None}

    def get_exporter(self) -> Any:
        """An OpenTelemetry ``SpanExporter`` for this endpoint."""
        headers = tuple(sorted(self.export_headers().items())) or None
        return build_exporter(ExportConfig(self.endpoint, self.protocol, headers, self.timeout_seconds, False))


class MetricsConfig(_SettingsBlock):
    """How synthobs publishes metrics: to Prometheus (scrape, Pushgateway, textfile) and/or over OTLP.

    Attributes:
        mode: ``none``, or one or more of ``http``, ``pushgateway``, ``textfile``,
            ``otlp`` as a comma list (``pushgateway,otlp``). ``otlp`` sends to the
            ``OtlpExporter`` endpoint (or ``OTEL_EXPORTER_OTLP_*``).
        prefix: Prefix of every metric name.
        host: Bind address of the ``http`` exporter.
        port: Port of the ``http`` exporter.
        pushgateway_url: Pushgateway base URL.
        pushgateway_timeout_seconds: Bound on one push.
        pushgateway_grouping: Extra grouping-key labels.
        textfile_path: ``.prom`` file for node exporter's textfile collector.
        otlp_interval_seconds: How often metrics are exported over OTLP while a
            process runs (every observed flow's end exports too).
        otlp_temporality: ``cumulative``, ``delta`` or ``lowmemory``.

    Example:
        ```python
        from prefect_synthobs.blocks import MetricsConfig

        metrics = MetricsConfig.load("BLOCK_NAME")
        print(metrics.settings())
        ```
    """

    _block_type_name = "SynthObs Metrics"
    _block_type_slug = "synthobs-metrics"
    _logo_url = _LOGO  # type: ignore[assignment]
    _documentation_url = _DOCS  # type: ignore[assignment]
    _description = "Metrics publishing for prefect-synthobs: scrape endpoint, Pushgateway, textfile or OTLP."

    _settings_keys: ClassVar[dict[str, str]] = {
        "mode": "metrics_mode",
        "prefix": "metrics_prefix",
        "host": "metrics_host",
        "port": "metrics_port",
        "pushgateway_url": "pushgateway_url",
        "pushgateway_timeout_seconds": "pushgateway_timeout_seconds",
        "pushgateway_grouping": "pushgateway_grouping",
        "textfile_path": "textfile_path",
        "otlp_interval_seconds": "otlp_metrics_interval_seconds",
        "otlp_temporality": "otlp_metrics_temporality",
    }

    mode: str = setting_field("metrics_mode")
    prefix: str = setting_field("metrics_prefix")
    host: str = setting_field("metrics_host")
    port: int = setting_field("metrics_port")
    pushgateway_url: str = setting_field("pushgateway_url")
    pushgateway_timeout_seconds: float = setting_field("pushgateway_timeout_seconds")
    pushgateway_grouping: dict[str, str] = setting_field("pushgateway_grouping")
    textfile_path: str | None = setting_field("textfile_path")
    otlp_interval_seconds: float | None = setting_field("otlp_metrics_interval_seconds")
    otlp_temporality: Temporality | None = setting_field("otlp_metrics_temporality")

    @field_validator("mode", mode="before")
    @classmethod
    def _modes(cls, value: Any) -> str:
        return parse_metrics_modes(value)


class HealthStoreConfig(_SettingsBlock):
    """Where synthobs keeps its Parquet health tables.

    Attributes:
        url: Store root: a path, ``file://`` URL or ``s3://`` prefix.
        storage_options: Object-store credentials and options (kept secret),
            e.g. ``access_key``, ``secret_key``, ``region``, ``endpoint_override``.
        spool_dir: Local directory for rows the store could not take.
        flush_interval_seconds: How often long runs write their rows.
        store_timeout_seconds: Longest one store write may take before its rows
            go to the spool.
        spool_max_bytes: The most the spool may hold before its oldest rows are dropped.

    Example:
        ```python
        from prefect_synthobs.blocks import HealthStoreConfig

        store_config = HealthStoreConfig.load("BLOCK_NAME")
        runs = store_config.get_store().read("flow_runs")
        ```
    """

    _block_type_name = "SynthObs Health Store"
    _block_type_slug = "synthobs-health-store"
    _logo_url = _LOGO  # type: ignore[assignment]
    _documentation_url = _DOCS  # type: ignore[assignment]
    _description = "Location and credentials of the prefect-synthobs Parquet health store."

    _settings_keys: ClassVar[dict[str, str]] = {
        "url": "store_url",
        "spool_dir": "spool_dir",
        "flush_interval_seconds": "flush_interval_seconds",
        "store_timeout_seconds": "store_timeout_seconds",
        "spool_max_bytes": "spool_max_bytes",
    }

    url: str = setting_field(
        "store_url", default=_REQUIRED, description="Store root: a path, file:// URL or s3:// prefix."
    )
    storage_options: SecretDict | None = Field(
        default=None,
        description="Object-store options, e.g. access_key, secret_key, region, endpoint_override (kept secret).",
    )
    spool_dir: str | None = setting_field("spool_dir")
    flush_interval_seconds: float = setting_field("flush_interval_seconds")
    store_timeout_seconds: float = setting_field("store_timeout_seconds")
    spool_max_bytes: int = setting_field("spool_max_bytes")

    def options(self) -> dict[str, str] | None:
        """The storage options with their secrets revealed."""
        if self.storage_options is None:
            return None
        return {str(k): str(v) for k, v in self.storage_options.get_secret_value().items()}

    def settings(self) -> dict[str, Any]:
        """This block as ``configure`` keywords."""
        return {**super().settings(), "store_options": self.options()}

    def get_store(self) -> HealthStore:
        """A ``HealthStore`` on this location."""
        return HealthStore(self.url, storage_options=self.options())


class SynthObsConfig(_SettingsBlock):
    """Everything prefect-synthobs needs, in one block a flow can name.

    Attributes:
        service_name: ``service.name`` of traces.
        environment: ``deployment.environment`` of traces.
        store: The health store (a ``HealthStoreConfig`` block).
        metrics: Metrics publishing (a ``MetricsConfig`` block).
        tracing: Span export (an ``OtlpExporter`` block); none: no export.
        gpu_enabled: Sample GPUs through NVML during observed runs.
        gpu_interval_seconds: GPU sampling interval (0.25 to 60 s).
        gpu_store_interval_seconds: Downsampling of ``gpu_samples``.
        redact_pii: Redact PII from logs, exported spans and stored errors.
        redact_ip_addresses: Also redact IPv4 addresses in exported spans.
        quality_gates: Name of the quality gates block flows check against.

    Example:
        ```python
        import prefect_synthobs as so
        from prefect_synthobs.blocks import SynthObsConfig

        config = SynthObsConfig.load("BLOCK_NAME")
        so.configure(config=config)
        ```
    """

    _block_type_name = "SynthObs Config"
    _block_type_slug = "synthobs-config"
    _logo_url = _LOGO  # type: ignore[assignment]
    _documentation_url = _DOCS  # type: ignore[assignment]
    _description = "prefect-synthobs configuration: store, metrics, traces, GPU sampling and redaction."

    _settings_keys: ClassVar[dict[str, str]] = {
        "service_name": "service_name",
        "environment": "environment",
        "gpu_enabled": "gpu_enabled",
        "gpu_interval_seconds": "gpu_interval_seconds",
        "gpu_store_interval_seconds": "gpu_store_interval_seconds",
        "redact_pii": "redact_pii",
        "redact_ip_addresses": "redact_ip_addresses",
        "quality_gates": "quality_gates_block",
    }

    service_name: str = setting_field("service_name")
    environment: str | None = setting_field("environment")
    store: HealthStoreConfig | None = Field(default=None, description="The health store.")
    metrics: MetricsConfig | None = Field(default=None, description="Metrics publishing.")
    tracing: OtlpExporter | None = Field(default=None, description="Span export; none means no export.")
    gpu_enabled: bool = setting_field("gpu_enabled")
    gpu_interval_seconds: float = setting_field("gpu_interval_seconds")
    gpu_store_interval_seconds: float | None = setting_field("gpu_store_interval_seconds")
    redact_pii: bool = setting_field("redact_pii")
    redact_ip_addresses: bool = setting_field("redact_ip_addresses")
    quality_gates: str | None = setting_field("quality_gates_block")

    def settings(self) -> dict[str, Any]:
        """This block (and the blocks it refers to) as ``configure`` keywords."""
        out = super().settings()
        for part in (self.store, self.metrics, self.tracing):
            if part is not None:
                out.update(part.settings())
        return out

    def get_store(self) -> HealthStore:
        """The ``HealthStore`` this configuration writes to: its store block's, else the one the environment
        names (``PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL``), else the embedded default."""
        if self.store is not None:
            return self.store.get_store()
        settings = SynthObsSettings()
        return HealthStore(settings.resolved_store_url(), storage_options=settings.resolved_store_options())


def config_from_environment(environ: Mapping[str, str] | None = None) -> SynthObsConfig:
    """A ``SynthObsConfig`` (with its component blocks) from environment variables.

    Reads ``PREFECT_INTEGRATIONS_SYNTHOBS_*`` (as ``configure`` does), the
    standard ``OTEL_EXPORTER_OTLP_*``, ``OTEL_METRICS_EXPORTER`` (``otlp`` adds the
    ``otlp`` metrics mode), ``OTEL_METRIC_EXPORT_INTERVAL`` and ``OTEL_LOGS_EXPORTER``
    variables, ``SYNTHOBS_OTLP_TOKEN`` for a
    bearer token, and ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
    ``AWS_SESSION_TOKEN`` / ``AWS_REGION`` / ``AWS_ENDPOINT_URL`` as the
    store's storage options when the store is on ``s3://``.
    """
    env = dict(os.environ if environ is None else environ)
    settings = SynthObsSettings(config_block=None)
    store = None
    if settings.store_url:
        options = settings.resolved_store_options() or {}
        if settings.store_url.startswith("s3://"):
            for var, key in (
                ("AWS_ACCESS_KEY_ID", "access_key"),
                ("AWS_SECRET_ACCESS_KEY", "secret_key"),
                ("AWS_SESSION_TOKEN", "session_token"),
                ("AWS_REGION", "region"),
                ("AWS_ENDPOINT_URL", "endpoint_url"),
            ):
                if env.get(var):
                    options.setdefault(key, env[var])
        store = HealthStoreConfig(**HealthStoreConfig.settings_values(settings), storage_options=options or None)
    tracing = None
    exported = export_config(settings, env)
    if exported.endpoint:
        headers = dict(exported.headers or ())
        if not headers and env.get("OTEL_EXPORTER_OTLP_HEADERS"):
            headers = _parse_otel_headers(env["OTEL_EXPORTER_OTLP_HEADERS"])
        tracing = OtlpExporter(
            **{
                **OtlpExporter.settings_values(settings),
                "endpoint": exported.endpoint,
                "protocol": exported.protocol,
                "timeout_seconds": exported.timeout,
            },
            headers=headers or None,
            token=env.get("SYNTHOBS_OTLP_TOKEN") or None,
        )
        if logs_export_config(settings, env).otlp is not None:
            tracing.logs = True
    values = SynthObsConfig.settings_values(settings)
    values["service_name"] = env.get("OTEL_SERVICE_NAME") or settings.service_name
    metrics = MetricsConfig(**MetricsConfig.settings_values(settings))
    if metrics_export_config(settings, env).otlp is not None and "otlp" not in metrics.mode:
        metrics.mode = "otlp" if metrics.mode == "none" else f"{metrics.mode},otlp"
    if metrics.otlp_interval_seconds is None and env.get("OTEL_METRIC_EXPORT_INTERVAL"):
        metrics.otlp_interval_seconds = float(env["OTEL_METRIC_EXPORT_INTERVAL"]) / 1000
    return SynthObsConfig(**values, store=store, metrics=metrics, tracing=tracing)


def _parse_otel_headers(raw: str) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS`` (``k1=v1,k2=v2``, values URL-encoded) as a dict."""
    out = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[key.strip().lower()] = unquote(value.strip())
    return out


class QualityGates(Block):
    """Thresholds a synthetic table must meet, and what a miss does.

    Attributes:
        min_overall: Minimum quality report overall score.
        min_column_shapes: Minimum Column Shapes score.
        min_column_pair_trends: Minimum Column Pair Trends score.
        min_tstr_ratio: Minimum TSTR ratio: the share of the real-data model's skill over a no-skill
            baseline that the synthetic-data model keeps (0 or less: no better than no skill).
        max_membership_inference_auc: Maximum AUC of the distance attack.
        max_exact_match_rate: Maximum share of synthetic rows copied from real ones.
        min_dcr_overfitting_protection: Minimum DCR overfitting protection.
        min_diagnostic: Minimum Diagnostic report score (Data Validity and Data Structure).
        min_detection: Minimum logistic detection score (1: a classifier cannot tell synthetic from real).
        min_disclosure_protection: Minimum disclosure protection (CAP) of the sensitive columns
            ``check_quality`` is given.
        min_cardinality: Relational data: minimum Cardinality score (children per parent).
        min_intertable_trends: Relational data: minimum Intertable Trends score.
        min_relationship_validity: Relational data: minimum Relationship Validity (foreign keys
            that point at a parent).
        policy: ``fail`` raises ``QualityGateFailed`` (the flow fails); ``warn`` logs.

    Example:
        ```python
        import prefect_synthobs as so
        from prefect_synthobs.blocks import QualityGates

        gates = QualityGates.load("BLOCK_NAME")
        so.check_quality(real, synthetic, metadata, gates=gates, table="customers")
        ```
    """

    _block_type_name = "SynthObs Quality Gates"
    _block_type_slug = "synthobs-quality-gates"
    _logo_url = _LOGO  # type: ignore[assignment]
    _documentation_url = _DOCS  # type: ignore[assignment]
    _description = "Quality and privacy thresholds for synthetic tables, checked by prefect-synthobs."

    min_overall: float | None = Field(default=0.8, ge=0, le=1, description="Minimum overall quality score.")
    min_column_shapes: float | None = Field(default=None, ge=0, le=1, description="Minimum Column Shapes score.")
    min_column_pair_trends: float | None = Field(
        default=None, ge=0, le=1, description="Minimum Column Pair Trends score."
    )
    min_tstr_ratio: float | None = Field(
        default=None,
        ge=0,
        description="Minimum TSTR ratio: share of the real-data model's skill over no-skill kept by the "
        "synthetic-data model (F1, macro-F1 or R², as SDMetrics' ML efficacy).",
    )
    max_membership_inference_auc: float | None = Field(
        default=None, ge=0, le=1, description="Maximum AUC of the membership-inference distance attack."
    )
    max_exact_match_rate: float | None = Field(
        default=None, ge=0, le=1, description="Maximum share of synthetic rows identical to a real row."
    )
    min_dcr_overfitting_protection: float | None = Field(
        default=None, ge=0, le=1, description="Minimum DCR overfitting protection score."
    )
    min_diagnostic: float | None = Field(
        default=None, ge=0, le=1, description="Minimum Diagnostic report score (Data Validity, Data Structure)."
    )
    min_detection: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Minimum logistic detection score (1: a classifier cannot tell the tables apart).",
    )
    min_disclosure_protection: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Minimum disclosure protection (CAP) of the sensitive columns given to check_quality.",
    )
    min_cardinality: float | None = Field(
        default=None, ge=0, le=1, description="Relational data: minimum Cardinality score (children per parent)."
    )
    min_intertable_trends: float | None = Field(
        default=None, ge=0, le=1, description="Relational data: minimum Intertable Trends score."
    )
    min_relationship_validity: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Relational data: minimum Relationship Validity (foreign keys that point at a parent).",
    )
    policy: Literal["fail", "warn"] = Field(
        default="fail", description="fail: a missed gate fails the flow; warn: it is logged and recorded."
    )

    def gates(self) -> list[tuple[str, str, str, float]]:
        """``(gate, score name, "min"|"max", threshold)`` for every threshold that is set."""
        out = []
        for field_name in type(self).model_fields:
            value = getattr(self, field_name)
            if value is None or not field_name.startswith(("min_", "max_")):
                continue
            kind, score = field_name.split("_", 1)
            out.append((field_name, score, kind, float(value)))
        return out


class PrivacyBudget(Block):
    """The total differential-privacy budget (epsilon) of one dataset.

    Spends are made with ``record_privacy_spend``; what has been spent lives in
    a Prefect variable, changed only under a Prefect global concurrency limit
    used as a lock, so concurrent flows on any worker cannot overspend.

    Attributes:
        dataset: The dataset this budget protects.
        total_epsilon: The total epsilon that may ever be spent on it.

    Example:
        ```python
        import prefect_synthobs as so
        from prefect_synthobs.blocks import PrivacyBudget

        budget = PrivacyBudget.load("BLOCK_NAME")
        so.record_privacy_spend(0.5, dataset=budget.dataset, budget=budget)
        ```
    """

    _block_type_name = "SynthObs Privacy Budget"
    _block_type_slug = "synthobs-privacy-budget"
    _logo_url = _LOGO  # type: ignore[assignment]
    _documentation_url = _DOCS  # type: ignore[assignment]
    _description = "Total epsilon of a dataset's privacy budget, enforced by prefect-synthobs."

    dataset: str = Field(..., min_length=1, description="The dataset this budget protects.")
    total_epsilon: float = Field(..., gt=0, description="The total epsilon that may be spent on the dataset.")

    def spent(self) -> float:
        """Epsilon spent so far (read from the Prefect API)."""
        return spent_epsilon(self.dataset)

    def remaining(self) -> float:
        """Epsilon left."""
        return max(self.total_epsilon - self.spent(), 0.0)


BLOCKS = (SynthObsConfig, OtlpExporter, MetricsConfig, HealthStoreConfig, QualityGates, PrivacyBudget)
