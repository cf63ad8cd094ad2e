"""One bad file never breaks a table."""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from prefect_synthobs import HealthStore
from prefect_synthobs.health.rows import flow_row


@pytest.mark.parametrize("garbage", [b"", b"not parquet at all", b"PAR1\x00\x00"], ids=["empty", "garbage", "cut"])
def test_an_unreadable_file_is_skipped_with_one_warning_and_quarantined_by_compact(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:

    store = HealthStore(str(tmp_path / "store"))
    day = datetime(2026, 1, 5, 12, tzinfo=timezone.utc)
    rows = [
        flow_row(
            flow_run_id=f"r{i}",
            flow_name="f",
            state_type="COMPLETED",
            state_name="Completed",
            start_time=day,
            end_time=day,
        )
        for i in range(3)
    ]
    (written,) = store.write("flow_runs", rows[:2])
    store.write("flow_runs", rows[2:])
    bad = Path(written).parent / "part-broken.parquet"
    bad.write_bytes(garbage)

    with caplog.at_level(logging.WARNING, logger="prefect.synthobs.store"):
        assert sorted(store.read("flow_runs").flow_run_id) == ["r0", "r1", "r2"]
        assert store.count("flow_runs") == 3
        assert len(store.read("flow_runs", since=day.date())) == 3
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1 and str(bad) in warnings[0]  # one warning naming the file
    assert store.unreadable_files("flow_runs") == [str(bad)]

    stats = store.compact("flow_runs", before=date(2026, 1, 6))
    assert stats["quarantined"] == 1 and stats["rows"] == 3
    kept = tmp_path / "store" / "_quarantine" / "flow_runs" / "date=2026-01-05" / "part-broken.parquet"
    assert kept.read_bytes() == garbage  # moved aside, never deleted
    assert store.unreadable_files("flow_runs") == [] and store.count("flow_runs") == 3
