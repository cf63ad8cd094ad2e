"""synthobs' own log lines: one logger family, ``prefect.synthobs``.

Every warning and info line synthobs writes about itself (a store that does not
answer, GPU sampling off, a bad setting) goes to ``prefect.synthobs`` or a child
of it (``prefect.synthobs.gpu``, ``prefect.synthobs.store``, ...). Being under
``prefect``, these loggers follow Prefect's logging config: their level is
``PREFECT_LOGGING_LEVEL`` (default ``INFO``; ``WARNING`` silences the info
lines) and their records reach the root logger's console handler, shown in
Prefect's format on stderr. Prefect configures logging when ``prefect.main`` is
imported (any ``from prefect import flow``), which importing ``prefect_synthobs``
does.
"""

from __future__ import annotations

import functools
import logging

from prefect.logging import get_logger as _prefect_logger

ROOT = "prefect.synthobs"


@functools.cache
def get_logger(name: str = "") -> logging.Logger:
    """The logger ``prefect.synthobs`` (``name=""``) or ``prefect.synthobs.<name>``.

    Made through ``prefect.logging.get_logger``, which adds Prefect's API-key
    obfuscation filter (once per logger: the result is cached).
    """
    return _prefect_logger(f"{ROOT}.{name}" if name else ROOT)
