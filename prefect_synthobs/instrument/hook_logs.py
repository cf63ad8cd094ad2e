"""Prefect's lines around synthobs' own hooks, at DEBUG.

Prefect logs two INFO lines around every state hook it runs (``Running hook
'synthobs_flow_started' in response to entering state 'Running'``, ``Hook
'synthobs_flow_started' finished running successfully``): with synthobs' start and end
hooks that is four lines per observed flow run, which bury the flow's own lines. There is
no Prefect setting for them, so ``quiet_hook_lines`` puts a filter on the three loggers
Prefect writes them to (``prefect.engine``, ``prefect.flow_runs``, ``prefect.task_runs``)
that turns the lines about synthobs' hooks (``HOOK_NAMES``) into DEBUG records: shown
and sent to the Prefect API only where DEBUG is on (``PREFECT_LOGGING_LEVEL=DEBUG``).
Lines about other hooks, and Prefect's error line when a hook raises, stay as they are.

The filter stays through Prefect's logging set-up (``dictConfig`` replaces handlers, not
logger filters); installing it again is harmless.
"""

from __future__ import annotations

import logging
import re

__all__ = [
    "DEMO_STAGE",
    "FLOW_FINISHED",
    "FLOW_STARTED",
    "HOOK_LOGGERS",
    "HOOK_MARK",
    "HOOK_NAMES",
    "TASK_FINISHED",
    "QuietHookLines",
    "quiet_hook_lines",
]

FLOW_STARTED = "synthobs_flow_started"
FLOW_FINISHED = "synthobs_flow_finished"
TASK_FINISHED = "synthobs_task_finished"
DEMO_STAGE = "synthobs_demo_stage"
HOOK_NAMES = frozenset({FLOW_STARTED, FLOW_FINISHED, TASK_FINISHED, DEMO_STAGE})
"""The names Prefect logs synthobs' hooks by (a hook's ``__name__``)."""

HOOK_MARK = "__synthobs_hook__"
"""The attribute set (true) on each of synthobs' hook functions: ``observe`` replaces those, keeping others."""

HOOK_LOGGERS = ("prefect.engine", "prefect.flow_runs", "prefect.task_runs")
"""Where Prefect's flow and task engines and its runner log the lines around hooks (Prefect 3.x)."""

# Prefect 3's two lines around a hook that did not raise (flow_engine, task_engine, runner/_hook_runner)
# exactly, on one line: a message that only starts like one (a user's multi-line log) is left alone
_HOOK_LINE = re.compile(
    r"Running hook '(?P<running>[^'\n]+)' in response to entering state (?:'[^'\n]*'|\"[^\"\n]*\")"
    r"|Hook '(?P<finished>[^'\n]+)' finished running successfully"
)


def hook_of(message: str) -> str | None:
    """The hook named by one of Prefect's lines around a hook, else ``None`` (pure)."""
    match = _HOOK_LINE.fullmatch(message)
    return None if match is None else match.group("running") or match.group("finished")


class QuietHookLines(logging.Filter):
    """Makes Prefect's INFO lines around synthobs' hooks DEBUG records, dropped unless DEBUG is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if record.levelno != logging.INFO or hook_of(record.getMessage()) not in HOOK_NAMES:
                return True
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        except Exception:  # a record that cannot be read is passed on as it is, never lost
            return True


_FILTER = QuietHookLines()


def quiet_hook_lines() -> None:
    """Install ``QuietHookLines`` on ``HOOK_LOGGERS`` (once each; called by ``observe``)."""
    for name in HOOK_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietHookLines) for f in logger.filters):
            logger.addFilter(_FILTER)
