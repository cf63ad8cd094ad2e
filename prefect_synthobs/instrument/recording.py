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

from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.sink import HealthSink
from prefect_synthobs.instrument.sinks import MetricsSink, SpanSink, gpu_span_attributes
from prefect_synthobs.telemetry.metrics import SynthObsMetrics

__all__ = ["Recording", "Sink", "gpu_span_attributes"]


class Sink(Protocol):
    """Takes run events; ignores those it has nothing to do with."""

    def handle(self, event: Any) -> None: ...


class Recording:
    """Hands every run event to the health, metrics and span sinks.

    Args:
        recorder: Buffers and writes health rows.
        metrics: The metric set to update.
        redact_pii: Redact PII from the stored columns that say so.
        sinks: Other sinks instead of those three (tests).
    """

    def __init__(
        self,
        recorder: Recorder,
        metrics: SynthObsMetrics,
        *,
        redact_pii: bool,
        sinks: Sequence[Sink] | None = None,
    ) -> None:
        self.recorder = recorder
        self.metrics = metrics
        self.redact_pii = redact_pii
        self.sinks: tuple[Sink, ...] = (
            tuple(sinks)
            if sinks is not None
            else (HealthSink(recorder, redact_pii=redact_pii), MetricsSink(metrics), SpanSink())
        )

    def handle(self, event: Any) -> None:
        """Give ``event`` to every sink; one failing sink does not stop the others (its error is raised
        after they ran, for the caller's one warning)."""
        error: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.handle(event)
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error
