"""The health sink: which events have rows, in which table, and when none. No Prefect server."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

import pytest

from prefect_synthobs import catalog
from prefect_synthobs.health import events
from prefect_synthobs.health.sink import HealthSink

T0 = datetime(2026, 12, 3, 12, tzinfo=timezone.utc)


class ListRecorder:
    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def add(self, table: str, rows: Any) -> None:
        for row in rows if isinstance(rows, list) else [rows]:
            self.rows.append((table, row))


FLOW = events.FlowRunEnded(
    flow_run_id="r",
    flow_name="f",
    state_type="COMPLETED",
    state_name=None,
    start_time=T0,
    end_time=T0,
    error_message="ann@example.com",
)
TASK = events.TaskRunEnded(
    task_run_id="t",
    flow_run_id="r",
    flow_name="f",
    task_name="step",
    state_type="COMPLETED",
    state_name=None,
    start_time=T0,
    end_time=T0,
)
EPOCH = events.EpochEnded(
    time=T0, flow_run_id="r", flow_name="f", model_type=None, epoch=1, losses={"g": 1.0, "d": 2.0}
)
FIT = events.ModelFitted(
    time=T0,
    flow_run_id="r",
    flow_name="f",
    task_run_id=None,
    model_id="m",
    library="sdv",
    synthesizer="GaussianCopulaSynthesizer",
    model_type="gaussian_copula",
    table_name="t",
    parameters=None,
    fit_rows=1,
    fit_columns=1,
    fit_seconds=0.1,
    epochs=None,
    size_bytes=None,
    status="completed",
)
CHECK = events.QualityChecked(
    time=T0, flow_run_id="r", flow_name="f", table_name="t", metric="m", score=0.9, threshold=None
)
SPEND = events.PrivacyChecked(time=T0, flow_run_id="r", flow_name="f", dataset="d", epsilon=0.1, spent=0.1, budget=1.0)
ROWS = events.RowsGenerated(n=5, flow_name="f", table_name="t", model_type=None)


@pytest.mark.parametrize(
    ("event", "table", "count"),
    [
        (FLOW, catalog.FLOW_RUNS, 1),
        (TASK, catalog.TASK_RUNS, 1),
        (dataclasses.replace(TASK, counted_only=True), None, 0),
        (EPOCH, catalog.TRAINING_EPOCHS, 2),
        (dataclasses.replace(EPOCH, in_observed_run=False), None, 0),
        (FIT, catalog.MODELS, 1),
        (dataclasses.replace(FIT, in_observed_run=False), None, 0),
        (CHECK, catalog.QUALITY_CHECKS, 1),
        (dataclasses.replace(CHECK, in_observed_run=False), None, 0),
        (SPEND, catalog.PRIVACY_LEDGER, 1),
        (dataclasses.replace(SPEND, allowed=False), None, 0),
        (dataclasses.replace(SPEND, ledger=False), None, 0),
        (ROWS, None, 0),
        (events.GpuSampled(readings=[], energy_j={}, rows=[{"a": 1}]), catalog.GPU_SAMPLES, 1),
        (events.GpuSampled(readings=[], energy_j={}), None, 0),
    ],
)
def test_each_event_has_its_rows_in_its_table_or_none(event: Any, table: str | None, count: int) -> None:
    recorder = ListRecorder()
    HealthSink(recorder, redact_pii=True).handle(event)
    assert len(recorder.rows) == count
    assert {t for t, _ in recorder.rows} == ({table} if table else set())


def test_the_sink_redacts_as_configured() -> None:
    for redact, expect in ((True, False), (False, True)):
        recorder = ListRecorder()
        HealthSink(recorder, redact_pii=redact).handle(FLOW)
        ((_, row),) = recorder.rows
        assert ("ann@example.com" in row["error_message"]) is expect
