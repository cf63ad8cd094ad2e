"""prefect-synthobs' Prefect plugin entry point (``prefect.plugins``).

It lives outside the package so that Prefect loading it at every ``import prefect`` (with
``PREFECT_PLUGINS_ENABLED=true``) imports nothing of ``prefect_synthobs`` (about 0.5 s: pandas, pyarrow, the
OpenTelemetry SDK) until a ``PREFECT_INTEGRATIONS_SYNTHOBS_*`` variable says there is work to do. The work is
in ``prefect_synthobs.plugin``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from prefect.plugins import register_hook

PREFECT_PLUGIN_API_REQUIRES = ">=0.1,<1"

ENV_PREFIX = "PREFECT_INTEGRATIONS_SYNTHOBS_"


@register_hook
def setup_environment(*, ctx: Any) -> Any:
    """synthobs' settings and ``observe_all`` in this process (``prefect_synthobs.plugin``); None when unset."""
    if not any(key.upper().startswith(ENV_PREFIX) for key in os.environ):
        return None
    if _package_importing():
        # ``import prefect_synthobs`` came first and imports Prefect, which runs this hook: the package cannot be
        # imported from here yet (a circular import). Its ``__init__`` runs the set-up as it ends (``run_deferred``).
        _deferred.append(ctx)
        return None
    from prefect_synthobs.plugin import setup_environment as setup

    return setup(ctx=ctx)


_deferred: list[Any] = []
"""The hook contexts of set-ups put off while ``prefect_synthobs`` was importing (at most one per process)."""


def _package_importing() -> bool:
    """Whether ``prefect_synthobs`` is being imported at this moment (in ``sys.modules``, not yet initialised)."""
    package = sys.modules.get("prefect_synthobs")
    return package is not None and bool(getattr(getattr(package, "__spec__", None), "_initializing", False))


def run_deferred() -> None:
    """Run a set-up put off while ``prefect_synthobs`` was importing, and set the variables it returns in this
    process as Prefect does with a hook's result (its children inherit them). Called by the package's
    ``__init__`` as it ends; never raises: a failure costs one warning (as Prefect's own call of the hook would),
    never ``import prefect_synthobs``."""
    while _deferred:
        ctx = _deferred.pop()
        try:
            from prefect_synthobs.plugin import setup_environment as setup

            result = setup(ctx=ctx)
            for key, value in (getattr(result, "env", None) or {}).items():
                os.environ[str(key)] = str(value)
        except Exception as exc:
            logging.getLogger("prefect.synthobs").warning(
                "synthobs: the Prefect plugin could not set synthobs up (%s: %s); this process records only flows "
                "decorated with observe()",
                type(exc).__name__,
                exc,
            )
