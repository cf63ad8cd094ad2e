"""The one recording seam: every run event goes to the health, metrics and span sinks here.

Whatever synthobs observes (a flow or task run ended, rows generated, an epoch,
a fitted model, a quality check, a privacy spend, GPU samples) arrives as a
typed event (``health/events.py``) at ``Recording.handle``, which hands it to
each sink: ``HealthSink`` (its rows, through the ``Recorder``), ``MetricsSink``
(the metric updates) and ``SpanSink`` (the run span's attributes). Nothing else
in the package writes run rows or updates run metrics, so a new column, metric
or attribute has one place to go.

Pure of Prefect: events hold plain values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from prefect_synthobs._log import get_logger
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.catalog import MAX_ERROR_CHARS
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.sink import HealthSink
from prefect_synthobs.instrument.sinks import MetricsSink, SpanSink
from prefect_synthobs.telemetry.metrics import SynthObsMetrics
from prefect_synthobs.telemetry.redaction import clean_error_message

__all__ = ["Recording", "Sink"]

logger = get_logger()


class Sink(Protocol):
    """Takes run events; ignores those it has nothing to do with. A ``loses`` attribute says, for the one
    warning when it fails, what is lost (``"health rows"``)."""

    def handle(self, event: Any) -> None: ...


class Recording:
    """Hands every run event to the health, metrics and span sinks.

    Args:
        recorder: Buffers and writes health rows.
        metrics: The metric set to update.
        redact_pii: Redact PII from the stored columns that say so.
        sinks: Other sinks instead of those three (tests).
        extra_sinks: Sinks after those three (the asset sink: it sees a run's facts, then its end).
    """

    def __init__(
        self,
        recorder: Recorder,
        metrics: SynthObsMetrics,
        *,
        redact_pii: bool,
        sinks: Sequence[Sink] | None = None,
        extra_sinks: Sequence[Sink] = (),
    ) -> None:
        self.recorder = recorder
        self.metrics = metrics
        self.redact_pii = redact_pii
        self.sinks: tuple[Sink, ...] = (
            tuple(sinks)
            if sinks is not None
            else (HealthSink(recorder, redact_pii=redact_pii), MetricsSink(metrics), SpanSink())
        ) + tuple(extra_sinks)
        self._warnings = [WarnOnce(logger) for _ in self.sinks]

    def handle(self, event: Any) -> None:
        """Give ``event`` to every sink. Never raises: a failing sink stops no other sink and no caller (a
        flow's end still flushes and exports); it costs one warning, naming what it loses, until it
        succeeds again."""
        for sink, warning in zip(self.sinks, self._warnings, strict=True):
            try:
                sink.handle(event)
            except Exception as exc:
                warning.fail(
                    "synthobs: %s failed on %s (%s: %s); %s are lost until it recovers, the run is unaffected; "
                    "this warning is given once while it keeps failing",
                    type(sink).__name__,
                    type(event).__name__,
                    type(exc).__name__,
                    clean_error_message(str(exc), limit=MAX_ERROR_CHARS, redact_pii=self.redact_pii),
                    getattr(sink, "loses", "what it records"),
                )
            else:
                warning.ok()
