"""prefect-synthobs' Prefect plugin entry point (``prefect.plugins``).

It lives outside the package so that Prefect loading it at every ``import prefect`` (with
``PREFECT_PLUGINS_ENABLED=true``) imports nothing of ``prefect_synthobs`` (about 0.5 s: pandas, pyarrow, the
OpenTelemetry SDK) until a ``PREFECT_INTEGRATIONS_SYNTHOBS_*`` variable says there is work to do. The work is
in ``prefect_synthobs.plugin``.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.plugins import register_hook

PREFECT_PLUGIN_API_REQUIRES = ">=0.1,<1"

ENV_PREFIX = "PREFECT_INTEGRATIONS_SYNTHOBS_"


@register_hook
def setup_environment(*, ctx: Any) -> Any:
    """synthobs' settings and ``observe_all`` in this process (``prefect_synthobs.plugin``); None when unset."""
    if not any(key.upper().startswith(ENV_PREFIX) for key in os.environ):
        return None
    from prefect_synthobs.plugin import setup_environment as setup

    return setup(ctx=ctx)
