"""Row builders: pure functions of values."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from prefect_synthobs.health.rows import flow_row, normalize_loss, trace_id_from_traceparent


def test_flow_row_computes_duration_throughput_and_cuts_errors() -> None:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    row = flow_row(
        flow_run_id="r",
        flow_name="f",
        state_type="FAILED",
        state_name="Failed",
        start_time=start,
        end_time=start + timedelta(seconds=4),
        rows=1000,
        error_type="ValueError",
        error_message="x" * 5000 + " bob@corp.io",
    )
    assert row["duration_s"] == 4.0 and row["rows_per_s"] == 250.0
    assert len(row["error_message"]) == 2000
    assert (
        row["event_id"]
        != flow_row(
            flow_run_id="r", flow_name="f", state_type="COMPLETED", state_name=None, start_time=None, end_time=None
        )["event_id"]
    )


def test_loss_normalization() -> None:
    assert normalize_loss(0.5) == {"loss": 0.5}
    assert normalize_loss({"generator": 1, "discriminator": 2.5}) == {"generator": 1.0, "discriminator": 2.5}
    assert math.isnan(normalize_loss(float("nan"))["loss"])
    assert normalize_loss(None) == {}
    with pytest.raises(ValueError):
        normalize_loss({})


def test_traceparent() -> None:
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_from_traceparent(f"00-{tid}-00f067aa0ba902b7-01") == tid
    assert trace_id_from_traceparent("garbage") is None
    assert trace_id_from_traceparent(None) is None
