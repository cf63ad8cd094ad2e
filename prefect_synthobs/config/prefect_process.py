"""Prefect settings for processes synthobs owns (the ``synthobs`` command, the sample flows' scripts)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from prefect.settings import (
    PREFECT_SERVER_ANALYTICS_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)

PREFECT_DEFAULTS: dict[Any, Any] = {
    # a fresh PREFECT_HOME migrates its database on the ephemeral server's first start: slower than Prefect's
    # 20 s start-up timeout on a slow machine
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 120,
    # the ephemeral server's analytics write to its SQLite database and print "database is locked" tracebacks
    PREFECT_SERVER_ANALYTICS_ENABLED: False,
}
"""Prefect settings a process synthobs owns runs with unless the user set them (environment, profile,
``prefect.toml``). Setting ``os.environ`` instead would be too late: Prefect reads its settings once, when
``prefect`` is imported."""


@contextlib.contextmanager
def prefect_defaults() -> Iterator[None]:
    """Run the block with ``PREFECT_DEFAULTS`` where the user has not set them
    (``temporary_settings(set_defaults=...)``: the user's values win)."""
    with temporary_settings(set_defaults=PREFECT_DEFAULTS):
        yield
