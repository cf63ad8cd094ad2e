"""The health sink: each run event's rows, handed to the recorder.

One of the recording seam's three sinks (``instrument/recording.py``). Which
events have rows, and when: a flow or task run that ended (a task run counted
in another process's row, ``counted_only``, has none here); an epoch, a fit or
a quality check inside an observed run; an allowed privacy spend whose caller
has not made its row durable itself (``ledger``); GPU samples.
"""

from __future__ import annotations

from typing import Any, Protocol

from prefect_synthobs import catalog
from prefect_synthobs.health.events import (
    EpochEnded,
    FlowRunEnded,
    GpuSampled,
    ModelFitted,
    PrivacyChecked,
    QualityChecked,
    TaskRunEnded,
)
from prefect_synthobs.health.rows import row_of, rows_of
from prefect_synthobs.health.tables import Row


class RowSink(Protocol):
    """Where rows go (``health.recorder.Recorder``: buffered, flushed, spooled)."""

    def add(self, table: str, rows: Row | list[Row]) -> None: ...


class HealthSink:
    """Rows of run events, added to ``recorder``; ``redact_pii`` cleans the columns that say so."""

    loses = "health rows"

    def __init__(self, recorder: RowSink, *, redact_pii: bool) -> None:
        self.recorder = recorder
        self.redact_pii = redact_pii

    def handle(self, event: Any) -> None:
        """Add the event's rows, if it has any now."""
        if isinstance(event, FlowRunEnded):
            self.recorder.add(catalog.FLOW_RUNS, row_of(event, redact_pii=self.redact_pii))
        elif isinstance(event, TaskRunEnded):
            if not event.counted_only:
                self.recorder.add(catalog.TASK_RUNS, row_of(event, redact_pii=self.redact_pii))
        elif isinstance(event, EpochEnded):
            if event.in_observed_run:
                self.recorder.add(catalog.TRAINING_EPOCHS, rows_of(event, redact_pii=self.redact_pii))
        elif isinstance(event, ModelFitted):
            if event.in_observed_run:
                self.recorder.add(catalog.MODELS, row_of(event, redact_pii=self.redact_pii))
        elif isinstance(event, QualityChecked):
            if event.in_observed_run:
                self.recorder.add(catalog.QUALITY_CHECKS, row_of(event, redact_pii=self.redact_pii))
        elif isinstance(event, PrivacyChecked):
            if event.allowed and event.ledger:
                self.recorder.add(catalog.PRIVACY_LEDGER, row_of(event, redact_pii=self.redact_pii))
        elif isinstance(event, GpuSampled) and event.rows:
            self.recorder.add(catalog.GPU_SAMPLES, list(event.rows))
