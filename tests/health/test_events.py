"""Run events: each event type with rows defines its table's columns; rows come from the event, cleaned as
each column says. Pure: no Prefect server."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_synthobs.health import events, tables
from prefect_synthobs.health.events import (
    AttemptError,
    EpochEnded,
    FlowRunEnded,
    PrivacyChecked,
    QualityChecked,
    TaskRunEnded,
    column,
    columns_of,
)
from prefect_synthobs.health.rows import row_of, rows_of

EMAIL = "ann.lee@example.com"
T0 = datetime(2026, 12, 3, 12, tzinfo=timezone.utc)
FLOW = {
    "flow_run_id": "r",
    "flow_name": "f",
    "state_type": "COMPLETED",
    "state_name": None,
    "start_time": T0,
    "end_time": T0,
}
TASK = {
    "task_run_id": "t",
    "flow_run_id": "r",
    "flow_name": "f",
    "task_name": "x",
    "state_type": "COMPLETED",
    "state_name": None,
    "start_time": T0,
    "end_time": T0,
}


def test_an_event_missing_a_required_fact_fails_at_once() -> None:
    """Forgetting a column without a default is an error, not a row of nulls (the time column above all)."""
    with pytest.raises(TypeError, match="start_time"):
        FlowRunEnded(flow_run_id="r", flow_name="f", state_type="COMPLETED", state_name=None, end_time=T0)
    with pytest.raises(TypeError, match="time"):
        events.ModelFitted(model_id="m", library="sdv", synthesizer="X", status="completed")  # type: ignore[call-arg]


def test_every_event_table_takes_its_columns_from_its_event_in_field_order() -> None:
    assert set(tables.TABLE_OF_EVENT) == {
        FlowRunEnded,
        TaskRunEnded,
        EpochEnded,
        events.ModelFitted,
        QualityChecked,
        PrivacyChecked,
    }
    for event_type, table in tables.TABLE_OF_EVENT.items():
        specs = columns_of(event_type)
        assert list(table.columns) == list(specs)
        assert all(table.columns[name] == spec.arrow for name, spec in specs.items())
        assert table.schema.names == ["event_id", *specs]


def test_a_new_column_is_one_field_on_the_event() -> None:
    """What CONTRIBUTING's recipe promises: a field declared with ``column`` is in the table's schema and row."""

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class WithKey(TaskRunEnded):
        task_key: str | None = column(pa.string())

    table = tables.Table.of("task_runs_v2", WithKey, time_column="start_time")
    assert table.columns["task_key"] == pa.string() and table.schema.field("task_key").type == pa.string()
    event = WithKey(**TASK, task_key="mod.step-abc")
    values = {name: getattr(event, name) for name in columns_of(WithKey)}
    assert table.row(**values)["task_key"] == "mod.step-abc"


def test_derived_columns_are_not_arguments() -> None:
    with pytest.raises(TypeError):
        FlowRunEnded(**FLOW, duration_s=3.0)  # type: ignore[call-arg]


offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@settings(max_examples=150, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)),
    seconds=st.floats(min_value=-100, max_value=1e6, allow_nan=False),
    start_zone=offsets,
    end_zone=offsets,
    rows=st.integers(min_value=0, max_value=10**12),
)
def test_flow_durations_and_throughput_are_utc_differences(
    start: datetime, seconds: float, start_zone: timezone, end_zone: timezone, rows: int
) -> None:
    begin = start.replace(tzinfo=start_zone)
    end = (begin + timedelta(seconds=seconds)).astimezone(end_zone)
    event = FlowRunEnded(**{**FLOW, "start_time": begin, "end_time": end}, rows=rows)
    assert event.start_time is not None and event.start_time.tzinfo == timezone.utc
    assert event.duration_s == pytest.approx(max((end - begin).total_seconds(), 0.0), abs=1e-6)
    if rows and event.duration_s:
        assert event.rows_per_s == pytest.approx(rows / event.duration_s)
    else:
        assert event.rows_per_s is None
    row = row_of(event)
    assert row["duration_s"] == event.duration_s and row["rows"] == rows


@settings(max_examples=100, deadline=None)
@given(
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    tags=st.lists(st.text(max_size=10), max_size=4),
)
def test_text_columns_are_redacted_when_asked_and_kept_when_not(before: str, after: str, tags: list[str]) -> None:
    text = f"{before} {EMAIL} {after}"
    event = TaskRunEnded(
        **{**TASK, "task_name": text, "state_type": "FAILED", "state_name": text},
        error_type="ValueError",
        error_message=text,
        tags=[*tags, text],
        attempt_errors=[AttemptError(1, "ValueError", text)],
    )
    redacted = row_of(event, redact_pii=True)
    for name in ("task_name", "state_name", "error_message"):
        assert EMAIL not in redacted[name]
    assert all(EMAIL not in t for t in redacted["tags"]) and all(EMAIL not in t for t in redacted["attempt_errors"])
    assert redacted["tags"] == sorted(redacted["tags"])
    kept = row_of(event, redact_pii=False)
    assert EMAIL in kept["task_name"] and EMAIL in kept["error_message"] and any(EMAIL in t for t in kept["tags"])


def test_an_epoch_has_one_row_per_loss_type_or_one_null_row() -> None:
    epoch = EpochEnded(
        time=T0, flow_run_id="r", flow_name="f", model_type="ctgan", epoch=3, losses={"g": 1.5, "d": -0.5}
    )
    rows = rows_of(epoch)
    assert [(r["loss_type"], r["loss"]) for r in rows] == [("g", 1.5), ("d", -0.5)]
    assert all(r["epoch"] == 3 and r["model_type"] == "ctgan" for r in rows)
    assert len({r["event_id"] for r in rows}) == 2
    (empty,) = rows_of(dataclasses.replace(epoch, losses={}))
    assert empty["loss_type"] is None and empty["loss"] is None


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), -3.0])
def test_an_epoch_length_that_is_not_a_duration_is_null_or_zero(seconds: float) -> None:
    event = EpochEnded(time=T0, flow_run_id=None, flow_name=None, model_type=None, epoch=0, epoch_seconds=seconds)
    assert event.epoch_seconds == (0.0 if seconds == -3.0 else None)


def test_quality_and_privacy_compute_their_verdict_and_remaining_budget() -> None:
    check = QualityChecked(
        time=T0, flow_run_id=None, flow_name=None, table_name="t", metric="m", score=0.4, threshold=0.5
    )
    assert check.passed is False and row_of(check)["passed"] is False
    explicit = dataclasses.replace(check, passed=True)  # a max gate passes explicitly
    assert explicit.passed is True
    assert row_of(dataclasses.replace(check, threshold=None, passed=None))["passed"] is None
    spend = PrivacyChecked(time=T0, flow_run_id="r", flow_name="f", dataset="d", epsilon=0.5, spent=1.25, budget=1.0)
    assert spend.remaining == 0.0 and row_of(spend)["remaining"] == 0.0


def test_an_event_without_a_table_has_no_row() -> None:
    with pytest.raises(ValueError, match="RowsGenerated has no health table"):
        row_of(events.RowsGenerated(n=1, flow_name=None, table_name=None, model_type=None))


def test_column_defaults_must_be_immutable() -> None:
    with pytest.raises(TypeError, match="immutable"):
        column(pa.string(), default=[])  # type: ignore[arg-type]
