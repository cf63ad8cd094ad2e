"""synthobs' Prefect plugin (the ``prefect.plugins`` entry point): settings and ``observe_all`` in every process.

Prefect (3.7 and later) runs the ``setup_environment`` hook of each installed plugin while ``import prefect``
runs, when ``PREFECT_PLUGINS_ENABLED=true``: in workers, runners, flow-run subprocesses and task-runner worker
processes alike, since each imports Prefect. This hook configures synthobs there from the environment
(``PREFECT_INTEGRATIONS_SYNTHOBS_*``) or the ``SynthObsConfig`` block that
``PREFECT_INTEGRATIONS_SYNTHOBS_CONFIG_BLOCK`` names, and with ``observe_all`` installs the run listener that
records every flow run: a worker pool needs no change in flow code.

- Nothing to do (no ``PREFECT_INTEGRATIONS_SYNTHOBS_*`` variable set): it returns ``None`` at once and loads
  no block. (Prefect imports the ``prefect_synthobs`` package to reach this module, about 0.5 s: see the
  report of issue 26 for the top-level entry-point module that avoids it.)
- The block is loaded once per process start, bounded in time, and handed on: the process returns its
  values in one variable (``SYNTHOBS_PLUGIN_BLOCK``, ``SetupResult.env``) and children started within
  ``HANDED_ON_SECONDS`` (a flow run's task-runner workers) take them instead of calling the API; later
  ones (the flow runs a long-running worker starts) load the block afresh, so edits to the block reach new
  flow runs. A block holding secrets (``store_options``, ``otlp_headers``) is never handed on: secrets
  never go into the environment; its children load it themselves.
- Nothing fails Prefect's start-up: a block that cannot be loaded or any other failure costs one warning
  saying what is lost; Prefect and the flow go on.

On Prefect without the plugin system (before 3.7) this module is never loaded: import ``prefect_synthobs`` and
call ``prefect_synthobs.configure()`` where the flow is defined (or in a ``sitecustomize``), which reads the same
variables and block.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from prefect_synthobs._log import get_logger
from prefect_synthobs.config.active import ACTIVE, configure
from prefect_synthobs.config.blocks import SynthObsConfig
from prefect_synthobs.config.settings import SynthObsSettings
from prefect_synthobs.instrument import observe_all
from prefect_synthobs.telemetry.redaction import strip_url_credentials

PREFECT_PLUGIN_API_REQUIRES = ">=0.1,<1"
"""The plugin API versions this plugin works with (Prefect checks it before registering the plugin)."""

ENV_PREFIX = "PREFECT_INTEGRATIONS_SYNTHOBS_"
"""Spelled here too (``catalog.ENV_PREFIX`` is the definition): the cheap test must import nothing of synthobs."""
SNAPSHOT_VARIABLE = "SYNTHOBS_PLUGIN_BLOCK"
"""JSON ``{"name", "loaded_at", "values"}``: the config block as this process loaded it, for its children.
Outside ``ENV_PREFIX``, where a name that is no setting costs a warning."""
HANDED_ON_SECONDS = 60.0
"""How long after the load a child process takes the handed-on values instead of loading the block itself."""


def _hook_marker() -> Callable[[Any], Any]:
    """Prefect's ``register_hook`` marker (a no-op where Prefect has no plugin system: nothing calls the hook)."""
    try:
        from prefect.plugins import register_hook

        return register_hook
    except Exception:  # Prefect before 3.7, or a build without pluggy (prefect-client)
        return lambda fn: fn


register_hook = _hook_marker()


def configured(environ: Mapping[str, str]) -> bool:
    """Whether any synthobs variable is set (else the plugin has nothing to do)."""
    return any(key.startswith(ENV_PREFIX) for key in environ)


@register_hook
def setup_environment(*, ctx: Any) -> Any:
    """Configure synthobs in this process; return the variables its child processes need (``SetupResult``).

    Args:
        ctx: Prefect's ``HookContext`` (Prefect version, API URL, logger factory).

    Returns:
        ``None`` when synthobs is not configured or nothing needs passing on, else a ``SetupResult``
        whose ``env`` Prefect sets in this process (children inherit it) and whose ``note`` names keys only.
    """
    if not configured(os.environ) or in_prefect_server(os.environ):
        return None
    try:
        return _setup()
    except Exception as exc:  # never break Prefect's start-up
        with contextlib.suppress(Exception):
            get_logger().warning(
                "synthobs: the Prefect plugin could not set synthobs up at start-up (%s: %s); this process records "
                "only flows decorated with observe(), with the settings they find when they run",
                type(exc).__name__,
                strip_url_credentials(str(exc))[:500],
            )
        return None


def in_prefect_server(environ: Mapping[str, str]) -> bool:
    """Whether this process is a Prefect API server Prefect started for a client (its temporary server): it runs
    no flows, and setting up there could load a block from itself. Pure."""
    return any(
        str(environ.get(key, "")).lower() in ("1", "true")
        for key in ("PREFECT__SERVER_EPHEMERAL", "PREFECT_SERVER_EPHEMERAL_ENABLED")
    )


def _setup() -> Any:
    from prefect.plugins import SetupResult
    from prefect.settings import get_current_settings

    name = os.environ.get(f"{ENV_PREFIX}CONFIG_BLOCK")
    env: dict[str, str] = {}
    source = "the environment"
    if not name:
        settings = configure()
    elif (handed := handed_on(name, os.environ, time.time())) is not None:
        settings = ACTIVE.use_block_values(name, handed)  # the parent loaded it moments ago: no API call here
        source = f"block {name!r} (as its parent process loaded it)"
    elif not get_current_settings().api.url:
        # loading a block without an API URL starts Prefect's temporary server, whose own process would import
        # prefect, run this hook and start another one, without end: never load it here

        get_logger().warning(
            "synthobs: config block %r is not loaded at start-up: PREFECT_API_URL is unset (set it, or give the "
            "settings as PREFECT_INTEGRATIONS_SYNTHOBS_* variables); this process records with the environment's "
            "settings and the defaults",
            name,
        )
        settings = ACTIVE.use_block_values(name, {})
    else:
        block = _load_block(name, get_current_settings().plugins.setup_timeout_seconds)
        if block is not None:
            settings = configure(config=block)
            source = f"block {name!r}"
            env = snapshot_env(name, ACTIVE.loaded_block()[1], time.time())
        else:
            settings = ACTIVE.use_block_values(name, {})  # what configure() does with a block it cannot load
    observing = observe_all.apply(settings)
    parts = [f"settings from {source}"]
    if settings.observe_all:
        parts.append("observe_all on" if observing else "observe_all on but Prefect's run spans are unavailable")
    if env:
        parts.append(f"block values handed to child processes for {HANDED_ON_SECONDS:g} s ({SNAPSHOT_VARIABLE})")
    note = "synthobs: " + "; ".join(parts)
    return SetupResult(env=env, note=note) if env else None


def _load_block(name: str, timeout: float) -> Any:
    """The ``SynthObsConfig`` block ``name``, or ``None`` (one warning) when it cannot be loaded.

    Bounded: Prefect cannot interrupt a plugin's synchronous hook, and an API that does not answer would hold
    ``import prefect`` for the client's default retries and request timeout (minutes). The load runs with one
    retry and requests of at most half of ``timeout`` (Prefect's ``plugins.setup_timeout_seconds``). It runs
    on this thread: during ``import prefect`` another thread that imports ``prefect`` waits for this one.
    """
    from prefect.settings import PREFECT_API_REQUEST_TIMEOUT, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    try:
        with temporary_settings(
            updates={PREFECT_API_REQUEST_TIMEOUT: max(1.0, timeout / 2), PREFECT_CLIENT_MAX_RETRIES: 1}
        ):
            block = SynthObsConfig.load(name, _sync=True)  # type: ignore[call-arg]
        if isinstance(block, SynthObsConfig):
            return block
        why = f"it is a {type(block).__name__}, not a SynthObsConfig"
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
    get_logger().warning(
        "synthobs: config block %r could not be loaded (%s); this process records with the environment's "
        "settings and the defaults",
        name,
        strip_url_credentials(why)[:500],
    )
    return None


def snapshot_env(name: str, values: Mapping[str, Any], now: float) -> dict[str, str]:
    """The variable that hands the block's values (``{}``: it could not be loaded) to child processes. Pure.

    Children started within ``HANDED_ON_SECONDS`` (task-runner workers of a flow run, the flow run a worker
    starts at once) take them instead of loading the block again; later ones load it afresh, so a
    long-running worker never hands an old copy to new flow runs. A block holding secrets is never handed
    on (``{}`` returned: its children load it): secrets never go into the environment, where ``prefect
    plugins diagnose`` would print the start of them.
    """
    if any(_secret(key, value) for key, value in values.items()):
        return {}
    try:
        text = json.dumps({"name": name, "loaded_at": now, "values": dict(values)}, allow_nan=False)
    except (TypeError, ValueError):  # a value JSON cannot carry: the children load the block
        return {}
    return {SNAPSHOT_VARIABLE: text}


def handed_on(name: str, environ: Mapping[str, str], now: float) -> dict[str, Any] | None:
    """The values of block ``name`` a parent process handed on, if fresh (else ``None``: load it). Pure."""
    try:
        snapshot = json.loads(environ.get(SNAPSHOT_VARIABLE) or "null")
        if not isinstance(snapshot, dict) or snapshot.get("name") != name:
            return None
        values, loaded_at = snapshot.get("values"), float(snapshot.get("loaded_at", "nan"))
    except (TypeError, ValueError):
        return None
    if not isinstance(values, dict) or not 0 <= now - loaded_at <= HANDED_ON_SECONDS:
        return None
    return values


def _secret(key: str, value: Any) -> bool:
    """Whether ``value`` is or holds a secret: a secret setting, a ``SecretStr``, a URL with credentials."""
    from pydantic import SecretStr

    field = SynthObsSettings.model_fields.get(key)
    if field is not None and "SecretStr" in str(field.annotation) and value:
        return True
    values = value.values() if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else [value]
    return any(isinstance(v, SecretStr) or (isinstance(v, str) and strip_url_credentials(v) != v) for v in values)
