"""Trace-linked, PII-redacted run logs.

``LogFilters.install`` adds two filters to Prefect's run loggers
(``prefect.flow_runs`` and ``prefect.task_runs``, which also carry
``log_prints`` output): ``TraceContextFilter`` puts ``trace_id`` and ``span_id``
of the current span on every record, and ``RedactionFilter`` redacts credentials
and PII (``telemetry.redaction``) from the message, the exception, the stack (``stack_info``) and the
run names.
Installing twice is harmless; ``LogFilters.remove`` removes exactly what was
added (``Instrumentation`` owns the process's ``LogFilters``). ``JsonFormatter``
renders records as one JSON object per line; use it from a Prefect logging
config (``PREFECT_LOGGING_SETTINGS_PATH``):

```yaml
formatters:
  json:
    (): prefect_synthobs.telemetry.logs.JsonFormatter
handlers:
  console:
    formatter: json
```
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from typing import Any

from opentelemetry import trace

from prefect_synthobs.telemetry.redaction import redact

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


# Prefect's log record extras that carry names; a run name can be templated from parameters
# (``task_run_name="load-{email}"``), and Prefect's console format shows it
NAME_EXTRAS = ("flow_run_name", "task_run_name", "flow_name", "task_name")
REDACTED_MARK = "synthobs_redacted"
"""Set on a record ``RedactionFilter`` redacted: later handlers need not redact it again."""


class RedactionFilter(logging.Filter):
    """Redacts credentials and PII from a record's message (arguments included), exception text,
    stack (``stack_info``) and run names (``flow_run_name``, ``task_run_name``... extras), for every handler after it:
    Prefect's console and API handlers and synthobs' OTLP handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, REDACTED_MARK, False):
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:  # logger.info(..., stack_info=True): its source lines may hold literals
            record.stack_info = redact(record.stack_info)
        for extra in NAME_EXTRAS:
            value = getattr(record, extra, None)
            if isinstance(value, str) and value:
                setattr(record, extra, redact(value))
        setattr(record, REDACTED_MARK, True)
        return True


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex, empty when no span) to records."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else ""
        record.span_id = format(ctx.span_id, "016x") if ctx.is_valid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, trace and run ids."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if not hasattr(record, "trace_id"):
            TraceContextFilter().filter(record)
        for key in (
            "trace_id",
            "span_id",
            "flow_run_id",
            "flow_run_name",
            "flow_name",
            "task_run_id",
            "task_run_name",
            "task_name",
        ):
            value = getattr(record, key, None)
            if value:
                data[key] = str(value)
        if record.exc_info:
            data["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class LogFilters:
    """The filters synthobs adds to Prefect's run loggers, added and removed as one.

    ``install`` twice is harmless; ``remove`` removes exactly what ``install``
    added and leaves every other filter in place.
    """

    def __init__(self, loggers: tuple[str, ...] = RUN_LOGGERS) -> None:
        self._loggers = loggers
        self._lock = threading.Lock()
        self._installed: list[tuple[logging.Logger, logging.Filter]] = []

    def install(self, *, redact_pii: bool = True) -> None:
        """Add the trace-context filter (and the redaction filter) to the run loggers."""
        with self._lock:
            wanted: list[type[logging.Filter]] = [TraceContextFilter]
            if redact_pii:
                wanted.append(RedactionFilter)
            for name in self._loggers:
                log = logging.getLogger(name)
                for cls in wanted:
                    if not any(type(f) is cls and lg is log for lg, f in self._installed):
                        flt = cls()
                        log.addFilter(flt)
                        self._installed.append((log, flt))
            if not redact_pii:
                self._remove(RedactionFilter)

    def remove(self) -> None:
        """Remove exactly the filters ``install`` added."""
        with self._lock:
            self._remove(logging.Filter)

    def _remove(self, cls: type[logging.Filter]) -> None:
        for log, flt in list(self._installed):
            if isinstance(flt, cls):
                log.removeFilter(flt)
                self._installed.remove((log, flt))
