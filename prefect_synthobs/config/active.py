"""The active settings of this process: ``configure``, ``get_settings`` and block loading.

Precedence, strongest first: keyword overrides, then a ``SynthObsConfig``
block (``config=``, or the one named by ``config_block``), then
``PREFECT_INTEGRATIONS_SYNTHOBS_*`` environment variables, then the defaults.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from prefect.blocks.core import Block
from pydantic import ValidationError

from prefect_synthobs._log import get_logger
from prefect_synthobs.config.blocks import SynthObsConfig
from prefect_synthobs.config.settings import (
    SynthObsSettings,
    env_name,
    forget_environment_warnings,
    usable_values,
    without_value,
)
from prefect_synthobs.health.store import HealthStore

logger = get_logger()

B = TypeVar("B", bound=Block)
SettingsListener = Callable[[SynthObsSettings], None]


def load_block(block_type: type[B], value: B | str, *, what: str) -> B:
    """A block of ``block_type`` from itself or its saved name.

    Raises:
        ValueError: The value is neither, or the named block cannot be loaded
            (the message names ``what`` and the block).
    """
    if isinstance(value, str):
        try:
            loaded = block_type.load(value, _sync=True)  # type: ignore[call-arg]
        except Exception as exc:
            name = block_type.__name__
            raise ValueError(
                f"could not load {name} block {value!r} for {what} (no {name} block of that name, or the Prefect "
                f"API did not answer): {exc}"
            ) from None
        if not isinstance(loaded, block_type):
            raise ValueError(f"block {value!r} is a {type(loaded).__name__}, not a {block_type.__name__}")
        return loaded
    if not isinstance(value, block_type):
        raise ValueError(f"{what} must be a {block_type.__name__} block or a block name, got {type(value).__name__}")
    return value


def _message(error: Any) -> str:
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def describe_errors(exc: ValidationError) -> str:
    """``key: why`` for each error, without echoing the values (they may hold secrets)."""
    parts = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "settings"
        parts.append(f"{key}: {without_value(_message(error), str(error.get('input', '')))}")
    return "; ".join(parts)


class ActiveSettings:
    """Keyword overrides, the loaded config block and the settings they make.

    One per process (``ACTIVE``); tests may build their own.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._overrides: dict[str, Any] = {}
        self._active: SynthObsSettings | None = None
        self._listeners: list[SettingsListener] = []
        self._block_name: str | None = None
        self._block_values: dict[str, Any] = {}

    def configure(self, config: SynthObsConfig | str | None = None, **overrides: Any) -> SynthObsSettings:
        unknown = sorted(set(overrides) - set(SynthObsSettings.model_fields))
        if unknown:
            allowed = ", ".join(sorted(SynthObsSettings.model_fields))
            raise ValueError(f"unknown synthobs setting(s) {unknown}; allowed: {allowed}")
        with self._lock:
            merged = {**self._overrides, **overrides}
            block_name, block_values = self._block_name, self._block_values
            if config is not None:
                block_name, block_values = block_settings(config)
                merged["config_block"] = block_name
            try:
                settings = self._build({**block_values, **merged})
                wanted = settings.config_block
                if wanted and wanted != block_name:  # named by keyword or environment: load it
                    try:
                        block_name, block_values = block_settings(wanted)
                    except ValueError:
                        if "config_block" in overrides:
                            raise
                        logger.warning(
                            "synthobs: config block %r could not be loaded; using the environment and defaults",
                            wanted,
                        )
                        block_name, block_values = wanted, {}
                    settings = self._build({**block_values, **merged})
            except ValidationError as exc:
                raise ValueError(f"invalid synthobs settings: {describe_errors(exc)}") from None
            changed = settings != self._active
            self._overrides = merged
            self._block_name, self._block_values = block_name, block_values
            self._active = settings
            listeners = list(self._listeners)
        if changed:
            for listener in listeners:
                listener(settings)
        return settings

    def _build(self, values: dict[str, Any]) -> SynthObsSettings:
        """Settings from ``values`` and the environment. A bad environment
        variable (whatever is wrong with it) is one warning naming it and its key
        falls back to the default (as the OpenTelemetry SDK does), so recording
        goes on; a bad explicit value raises (``ValidationError``)."""
        return SynthObsSettings(**values)

    def use_block_values(self, name: str, values: Mapping[str, Any]) -> SynthObsSettings:
        """Take ``values`` as what the config block ``name`` holds, without loading it, then ``configure()``.

        For synthobs' Prefect plugin: the parent process loaded the block moments ago and handed its values on.
        Each value is checked as a loaded block's are (a refused one costs a warning and is dropped).
        """
        usable = usable_values(dict(values), source=f"config block {name!r}")
        with self._lock:
            self._block_name, self._block_values = name, usable
        return self.configure()

    def loaded_block(self) -> tuple[str | None, dict[str, Any]]:
        """The config block in use: its name and the values it gave (none: no block, or it could not be loaded)."""
        with self._lock:
            return self._block_name, dict(self._block_values)

    def get(self) -> SynthObsSettings:
        with self._lock:
            active = self._active
        return active if active is not None else self.configure()

    def on_change(self, listener: SettingsListener) -> None:
        with self._lock:
            if listener not in self._listeners:
                self._listeners.append(listener)

    def reset(self) -> None:
        with self._lock:
            self._overrides = {}
            self._active = None
            self._block_name, self._block_values = None, {}
        forget_environment_warnings()  # the environment is read afresh: say again what is wrong with it


def block_settings(config: SynthObsConfig | str) -> tuple[str | None, dict[str, Any]]:
    """``(block name, configure keywords)`` of a ``SynthObsConfig`` block or block name.

    Values the block leaves unset (``None``) are dropped, so they do not hide
    environment variables.
    """
    block = load_block(SynthObsConfig, config, what="config")
    name = config if isinstance(config, str) else getattr(config, "_block_document_name", None)
    values = {k: v for k, v in block.settings().items() if v is not None}
    # a block saved with a value its setting refuses (the UI checks bounds, not every rule) costs a warning
    return name, usable_values(values, source=f"config block {name!r}" if name else "the config block")


ACTIVE = ActiveSettings()


def configure(config: SynthObsConfig | str | None = None, **overrides: Any) -> SynthObsSettings:
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
        from prefect_synthobs.blocks import SynthObsConfig

        so.configure(store_url="s3://bucket/synthobs", metrics_mode="pushgateway")
        so.configure(config=SynthObsConfig.load("prod"))
        ```
    """
    return ACTIVE.configure(config, **overrides)


def get_settings() -> SynthObsSettings:
    """The active settings, read from the environment on first use."""
    return ACTIVE.get()


def on_change(listener: SettingsListener) -> None:
    """Call ``listener(settings)`` whenever ``configure`` changes the settings."""
    ACTIVE.on_change(listener)


def reset() -> None:
    """Forget overrides and blocks; re-read the environment on next use (for tests)."""
    ACTIVE.reset()


def configured_store_location() -> tuple[str, Mapping[str, str] | None]:
    """Where ``HealthStore()`` with no URL reads: the configured store and its options (read at each call,
    so a store made after ``configure(store_url=...)`` goes there)."""
    settings = get_settings()
    return settings.resolved_store_url(), settings.resolved_store_options()


class ConfiguredHealthStore(HealthStore):
    """The health store users get as ``prefect_synthobs.HealthStore``: without a URL, the configured one.

    ``url=None`` means the ``store_url`` (and ``store_options``) of the active
    settings when the store is made: ``configure(store_url=...)``, a config
    block, ``PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL``, else
    ``$PREFECT_HOME/synthobs``. The health layer cannot read settings, so this
    layer hands it ``configured_store_location`` as its ``default_location``;
    everything else is ``HealthStore``'s.

    Args:
        url: Store root (path, ``file://`` or ``s3://``). Default: the configured store.
        storage_options: Object-store credentials and endpoint (``s3://`` only). Default: the configured
            ones when ``url`` is not given.
        timeout: Seconds each object-store connection and request may take (``s3://``).

    Example:
        ```python
        import prefect_synthobs as so

        so.configure(store_url="s3://bucket/synthobs")
        runs = so.HealthStore().read("flow_runs", since="2026-11-01")
        ```
    """

    def __init__(
        self, url: str | None = None, *, storage_options: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> None:
        super().__init__(
            url, storage_options=storage_options, timeout=timeout, default_location=configured_store_location
        )


__all__ = [
    "ACTIVE",
    "ConfiguredHealthStore",
    "configure",
    "configured_store_location",
    "env_name",
    "get_settings",
    "load_block",
    "on_change",
    "reset",
]
