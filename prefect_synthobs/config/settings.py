"""The one configuration model: every synthobs setting, its type, default, bounds and meaning.

Every key can be set three ways, strongest first:

1. ``configure(key=value)`` in code (``prefect_synthobs.config.active``);
2. a ``SynthObsConfig`` block (its fields are made from these, see ``setting_field``);
3. the environment variable ``PREFECT_INTEGRATIONS_SYNTHOBS_<KEY>`` (upper case);
4. the built-in default (the *embedded default*: the store under
   ``$PREFECT_HOME/synthobs``, metrics kept in-process).

This module is pure: it reads the environment only when a model is built.

A malformed environment variable never stops a model from being built: it
costs one warning naming the variable (never its value, which may be a
secret) and its key keeps the default; a variable with the prefix that names
no setting (a typo) is named in one warning with the closest known one. See
``read_environment``.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlparse, urlsplit, urlunsplit

from prefect.settings import get_current_settings
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from prefect_synthobs._log import get_logger
from prefect_synthobs.catalog import AUTOLOG_LIBRARIES, ENV_PREFIX
from prefect_synthobs.health.store import check_store_url
from prefect_synthobs.telemetry.redaction import strip_url_credentials

MetricsMode = Literal["none", "http", "pushgateway", "textfile", "otlp"]
"""One metrics mode; ``metrics_mode`` holds a comma list of them (``pushgateway,otlp``)."""
METRICS_MODES: tuple[MetricsMode, ...] = ("none", "http", "pushgateway", "textfile", "otlp")
Temporality = Literal["cumulative", "delta", "lowmemory"]
OtlpProtocol = Literal["grpc", "http/protobuf"]
SpanNames = Literal["prefect", "stable"]
TrainingPolicy = Literal["warn", "fail", "stop"]

logger = get_logger()


class SynthObsSettings(BaseSettings):
    """The active synthobs configuration.

    Each field's description says what it does; ``SynthObsSettings.model_fields``
    is the single definition the blocks, the environment and ``configure``
    share. Keyword values are checked strictly (a bad one raises); environment
    variables tolerantly (``read_environment``).
    """

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # pydantic-settings' own environment source raises on the first malformed variable
        # (a SettingsError for bad JSON, or a ValidationError when the model is built): one
        # bad variable would stop recording. This one drops it with one warning instead.
        return init_settings, _TolerantEnvironmentSource(settings_cls), dotenv_settings, file_secret_settings

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
    privacy_lock_lease_seconds: float = Field(
        default=10.0,
        ge=1,
        le=300,
        description="How long a process killed while holding a dataset's privacy budget lock blocks spends on "
        "that dataset (1 to 300 s): the holder beats every third of it, and a waiting spender takes over a lock "
        "whose beat stood still this long.",
    )

    autolog: str = Field(
        default="true",
        description="Record generator libraries with no code inside observed runs (fits, live epochs, samples): "
        "true (every library autolog knows: " + ", ".join(AUTOLOG_LIBRARIES) + "), false, or a comma list of them.",
    )
    training_policy: TrainingPolicy = Field(
        default="warn",
        description="What a tripped training health check does: warn (a warning and a synthobs.training.* event), "
        "fail (also fails the fit with TrainingHealthError when it ends) or stop (also ends the fit after that "
        "epoch where the library allows it: CTGAN and TVAE).",
    )
    training_plateau_epochs: int | None = Field(
        default=None,
        ge=1,
        description="Trip the plateau check when no loss improved its best by training_min_delta for this many "
        "epochs (none: off).",
    )
    training_min_delta: float = Field(
        default=1e-4,
        ge=0,
        description="How much a loss must improve on its best, relative to the best's size (at least 1e-8), to count "
        "for the plateau check: more than this times |best| (0: any decrease counts).",
    )
    training_divergence_epochs: int | None = Field(
        default=None,
        ge=1,
        description="Trip the divergence check when a loss stays above its best by training_divergence_factor times "
        "its scale for this many epochs in a row, counted from its 11th epoch (none: off; 2 or more suits GANs, whose "
        "losses spike).",
    )
    training_divergence_factor: float = Field(
        default=2.0,
        gt=0,
        description="How far above its best a loss must be, in units of its scale, to count toward divergence. Its "
        "scale is the larger of its best's distance from zero and how far it ranged (highest minus lowest) up to its "
        "best's epoch, or up to its 10th epoch if that came later; a loss's first 10 epochs only measure that.",
    )
    training_max_epoch_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Trip the slow-epoch check when an epoch takes longer than this (none: off).",
    )
    training_progress_interval_seconds: float = Field(
        default=2.0,
        ge=0,
        le=3600,
        description="Update a fit's Prefect progress artifact at most this often (its first and last epochs "
        "always update it).",
    )

    observe_all: bool = Field(
        default=False,
        description="Observe every flow run in the process, decorated or not (kind other; a decorated flow keeps its "
        "own observe arguments): for teams that cannot touch flow code. Set it in a worker's or deployment's "
        "environment with synthobs' Prefect plugin (PREFECT_PLUGINS_ENABLED=true).",
    )
    assets: bool = Field(
        default=True,
        description="Materialize each synthetic table a generation run samples as a Prefect asset, with the real table "
        "the model was trained on upstream and the quality, privacy and model facts as metadata.",
    )
    asset_key_template: str = Field(
        default="synthobs://{table}/{model_type}",
        description="Asset key of a synthetic table; placeholders {table}, {model_type}, {library}, {model_id}.",
    )
    asset_upstream_key_template: str = Field(
        default="synthobs://{table}/real",
        description="Asset key of the real table a model was trained on (the synthetic table's upstream); "
        "placeholders {table}, {model_type}, {library}, {model_id}.",
    )

    @field_validator("asset_key_template", "asset_upstream_key_template")
    @classmethod
    def _asset_template(cls, value: str) -> str:
        return check_asset_template(value)

    @field_validator("metrics_mode", mode="before")
    @classmethod
    def _metrics_modes(cls, value: Any) -> str:
        return parse_metrics_modes(value)

    @field_validator("autolog", mode="before")
    @classmethod
    def _autolog(cls, value: Any) -> str:
        return parse_autolog(value)

    def autolog_libraries(self) -> frozenset[str]:
        """The libraries autolog records (empty when off)."""
        return autolog_libraries(self.autolog)

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


_TRUE = frozenset({"true", "1", "yes", "on", "all"})
_FALSE = frozenset({"false", "0", "no", "off", "none", ""})


ASSET_KEY_FIELDS: tuple[str, ...] = ("table", "model_type", "library", "model_id")
"""The placeholders an asset key template may use."""


def check_asset_template(value: str) -> str:
    """An asset key template as given, once it is a URI (``scheme://...``, as Prefect's asset keys must be) whose
    placeholders are among ``ASSET_KEY_FIELDS``.

    Raises:
        ValueError: It has no ``://``, or a placeholder synthobs does not fill, naming the ones it does.
    """
    import string

    if "://" not in value or value.startswith("://"):
        raise ValueError(
            f"an asset key template must be a URI such as synthobs://{{table}}/{{model_type}}, got {value!r}"
        )
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(value)]
    except ValueError as exc:
        raise ValueError(f"asset key template {value!r} is malformed ({exc})") from exc
    names = {name for name, _, _ in fields if name is not None}
    if any(name is not None and (spec or conversion) for name, spec, conversion in fields):
        raise ValueError(
            f"asset key template {value!r}: write placeholders plainly, as {{table}} (no format spec or !r)"
        )
    unknown = sorted(names - set(ASSET_KEY_FIELDS))
    if unknown:
        raise ValueError(
            f"asset key template {value!r} uses {', '.join('{' + u + '}' for u in unknown)}; "
            f"it may use {', '.join('{' + f + '}' for f in ASSET_KEY_FIELDS)}"
        )
    return value


def parse_autolog(value: Any) -> str:
    """``autolog`` from a boolean, ``true``/``false`` or a comma list (or list) of libraries, as ``"true"``,
    ``"false"`` or ``"ctgan,sdv"`` (known libraries, sorted; every library named: ``"true"``).

    Raises:
        ValueError: A library autolog does not know, naming the ones it does.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [str(v) for v in value]
        if not items:
            return "false"
    elif isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return "true"
        if word in _FALSE:
            return "false"
        items = value.split(",")
    else:
        raise ValueError(f"autolog must be true, false or a comma list of libraries, got {value!r}")
    chosen = {item.strip().lower() for item in items if item.strip()}
    unknown = sorted(chosen - set(AUTOLOG_LIBRARIES))
    if unknown:
        raise ValueError(
            f"autolog: unknown librar{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}: "
            f"choose from {', '.join(AUTOLOG_LIBRARIES)} (or true / false)"
        )
    if not chosen:
        return "false"
    if chosen == set(AUTOLOG_LIBRARIES):
        return "true"
    return ",".join(sorted(chosen))


def autolog_libraries(value: Any) -> frozenset[str]:
    """The libraries an ``autolog`` value names (``parse_autolog``): all, none or those listed.

    Raises:
        ValueError: As ``parse_autolog``.
    """
    parsed = parse_autolog(value)
    if parsed == "false":
        return frozenset()
    if parsed == "true":
        return frozenset(AUTOLOG_LIBRARIES)
    return frozenset(parsed.split(","))


@dataclass(frozen=True)
class EnvironmentReading:
    """The ``PREFECT_INTEGRATIONS_SYNTHOBS_*`` variables, sorted out.

    Attributes:
        values: Setting key to its value as read (JSON decoded for dict fields), each valid on its own.
        invalid: Variable name to why it was ignored (never its value: it may be a secret).
        unknown: Variable name that names no setting to the closest known variable.
    """

    values: dict[str, Any] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)


def _takes_json(key: str) -> bool:
    """Whether the environment gives ``key`` as JSON (its type holds a dict or a list)."""
    annotation = str(SynthObsSettings.model_fields[key].annotation)
    return annotation.startswith(("dict", "list", "typing.Dict", "typing.List")) or "dict[" in annotation


_QUOTED = re.compile(r"'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"")  # repr() escapes the quote inside


_CHOICES = frozenset((*METRICS_MODES, *get_args(Temporality), *get_args(OtlpProtocol), *get_args(SpanNames), "job"))
"""Quoted words a message may keep: the choices of the settings that offer some."""


def without_value(message: str, raw: str) -> str:
    """``message`` with quoted text (other than a setting's choices) and ``raw`` itself blanked out: a
    validator may quote the value, or a part of it, and a value may be a secret."""

    def blank(match: re.Match[str]) -> str:
        return match.group(0) if match.group(0)[1:-1] in _CHOICES else "'…'"

    message = _QUOTED.sub(blank, message)
    message = message.replace(raw, "…") if len(raw) >= 3 else message
    return _WORD.sub(lambda m: "…" if _shares_text(m.group(0), raw) else m.group(0), message)


_WORD = re.compile(r"[^\s,;:()\[\]{}]+")


def _shares_text(word: str, raw: str, n: int = 6) -> bool:
    """Whether ``word`` holds a piece of ``raw`` (six characters or more, any case) and is no choice word:
    a fragment of the value (cut by an escaped quote, lower-cased by a validator) is blanked too."""
    lowered, value = word.lower().strip("'\".…"), raw.lower()
    if len(lowered) < n or lowered in _CHOICES:
        return False
    return any(lowered[i : i + n] in value for i in range(len(lowered) - n + 1))


def _why_invalid(key: str, exc: BaseException, raw: str) -> str:
    if isinstance(exc, ValidationError):
        reasons = []
        for error in exc.errors(include_input=False, include_url=False):
            message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
            reasons.append(without_value(message, raw))
        return "; ".join(reasons) or "invalid"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg} at character {exc.pos})"
    return without_value(f"{type(exc).__name__}: {exc}", raw)


def closest_setting_variable(name: str) -> str:
    """The known ``PREFECT_INTEGRATIONS_SYNTHOBS_*`` variable closest to ``name`` (for typos)."""
    wanted = name.upper().removeprefix(ENV_PREFIX)
    keys = [key.upper() for key in SynthObsSettings.model_fields]
    best = difflib.get_close_matches(wanted, keys, n=1, cutoff=0.0)
    return ENV_PREFIX + (best[0] if best else keys[0])


def read_environment(environ: Mapping[str, str] | None = None) -> EnvironmentReading:
    """Every ``PREFECT_INTEGRATIONS_SYNTHOBS_*`` variable, each checked on its own.

    A variable whose value its key does not accept (bad JSON, not a number,
    out of bounds, an unknown choice; whatever the exception) is set aside in
    ``invalid``, so its key keeps the default and every other key its value. A
    variable that names no setting goes to ``unknown``. Never raises. Names
    are matched ignoring case, as pydantic-settings does.
    """
    environ = os.environ if environ is None else environ
    reading = EnvironmentReading()
    probe = SynthObsSettings.model_construct()  # defaults only: no environment, no validation
    for name, raw in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in SynthObsSettings.model_fields:
            reading.unknown[name] = closest_setting_variable(name)
            continue
        try:
            value: Any = json.loads(raw) if _takes_json(key) else raw
            SynthObsSettings.__pydantic_validator__.validate_assignment(probe, key, value)
        except Exception as exc:  # any type: a bad variable must never stop the settings
            reading.invalid[name] = _why_invalid(key, exc, str(raw))
            continue
        reading.values[key] = value
    return reading


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_environment(reading: EnvironmentReading) -> None:
    """One warning per ignored or unknown variable (once per process and reason)."""
    for name, why in reading.invalid.items():
        if _first_time(name, why):
            key = name[len(ENV_PREFIX) :].lower()
            default = SynthObsSettings.model_fields[key].get_default(call_default_factory=True)
            logger.warning(
                "synthobs: ignoring %s (%s); %s keeps its default %r. Everything else keeps recording.",
                name,
                why,
                key,
                default,
            )
    for name, closest in reading.unknown.items():
        if _first_time(name, closest):
            logger.warning(
                "synthobs: %s is not a synthobs setting and is ignored; did you mean %s?",
                name,
                closest,
            )


def _first_time(name: str, why: str) -> bool:
    with _warned_lock:
        if (name, why) in _warned:
            return False
        _warned.add((name, why))
        return True


def usable_values(values: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """The ``values`` (of a config block, say) that their keys accept, each checked on its own.

    A value its key refuses costs one warning naming ``source`` and the key, never the value (it may
    be a secret: a token in a URL's query), and is dropped, so the key falls back to the environment
    or its default and recording goes on. Never raises.
    """
    probe = SynthObsSettings.model_construct()
    usable: dict[str, Any] = {}
    for key, value in values.items():
        try:
            SynthObsSettings.__pydantic_validator__.validate_assignment(probe, key, value)
        except Exception as exc:  # any type: a bad block value must never stop recording
            why = _why_invalid(key, exc, str(value))
            if _first_time(f"{source}:{key}", why):
                logger.warning(
                    "synthobs: ignoring %s of %s (%s); %s falls back to the environment or its default. "
                    "Everything else keeps recording.",
                    key,
                    source,
                    why,
                    key,
                )
            continue
        usable[key] = value
    return usable


def forget_environment_warnings() -> None:
    """Warn again about variables already warned about (after ``reset``)."""
    with _warned_lock:
        _warned.clear()


class _TolerantEnvironmentSource(PydanticBaseSettingsSource):
    """The environment source of ``SynthObsSettings``: ``read_environment``'s valid values, warning about the rest."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every variable at once

    def __call__(self) -> dict[str, Any]:
        try:
            reading = read_environment()
        except Exception as exc:  # never: read_environment does not raise; keep the promise anyway
            logger.warning("synthobs: PREFECT_INTEGRATIONS_SYNTHOBS_* variables not read (%s)", type(exc).__name__)
            return {}
        warn_environment(reading)
        return reading.values


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
    "EnvironmentReading",
    "MetricsMode",
    "OtlpProtocol",
    "SynthObsSettings",
    "Temporality",
    "closest_setting_variable",
    "env_name",
    "forget_environment_warnings",
    "prefect_home",
    "read_environment",
    "setting_field",
    "usable_values",
    "warn_environment",
    "without_value",
]
