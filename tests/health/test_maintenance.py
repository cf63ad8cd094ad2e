"""Store maintenance: compaction with retention, readers during it, the CLI and the maintenance flow."""

from __future__ import annotations

import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, task_rows
from prefect_synthobs.cli import main
from prefect_synthobs.health.maintenance import maintain, parse_retention, retention_cutoff
from prefect_synthobs.health.store import HealthStore

sys.path.insert(0, str(REPO / "flows"))
import maintenance as maintenance_flow

TODAY = date(2026, 11, 23)


def rows_on(day: date, n: int, start: int) -> list[dict[str, Any]]:
    return task_rows(n, start, when=datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc))


def filled(root: Path, days: list[date], files_per_day: int = 2, rows_per_file: int = 3) -> HealthStore:
    store = HealthStore(str(root))
    start = 0
    for day in days:
        for _ in range(files_per_day):
            FILES.append(rows_on(day, rows_per_file, start))
            store.write("task_runs", FILES[-1])
            start += rows_per_file
    return store


FILES: list[list[dict[str, Any]]] = []
"""The rows of every file ``filled`` wrote, in order (to write one again: a duplicate)."""


def test_retention_drops_old_days_compacts_closed_ones_and_leaves_today(tmp_path: Path) -> None:
    days = [TODAY - timedelta(days=d) for d in (40, 31, 30, 2, 0)]
    store = filled(tmp_path / "store", days)
    store.write("task_runs", FILES[-4])  # day -2's first file again (same event ids): a duplicate

    stats = maintain(store, retain=parse_retention("30d"), today=TODAY)["task_runs"]

    assert retention_cutoff(timedelta(days=30), TODAY) == date(2026, 10, 24)
    assert store.partitions("task_runs") == ["2026-10-24", "2026-11-21", "2026-11-23"]  # -40 and -31 dropped
    assert stats["expired"] == 2 and stats["partitions"] == 2  # -30 and -2 merged; today untouched
    files = {p.parent.name: len(list(p.parent.glob("*.parquet"))) for p in (tmp_path / "store").rglob("*.parquet")}
    assert files == {"date=2026-10-24": 1, "date=2026-11-21": 1, "date=2026-11-23": 2}
    frame = store.read("task_runs")
    assert len(frame) == 18 and frame.event_id.is_unique  # 3 days × 6 rows, the duplicate dropped
    assert maintain(store, retain=timedelta(days=30), today=TODAY)["task_runs"]["expired"] == 0  # idempotent


def test_retention_that_drops_everything_leaves_an_empty_readable_table(tmp_path: Path) -> None:
    store = filled(tmp_path / "store", [TODAY - timedelta(days=10)])
    assert maintain(store, retain=timedelta(days=1), today=TODAY)["task_runs"]["expired"] == 1
    assert store.read("task_runs").empty and list(store.read("task_runs").columns)[:2] == ["event_id", "task_run_id"]


def test_a_reader_during_compaction_never_errors_and_never_double_counts(tmp_path: Path) -> None:
    closed = TODAY - timedelta(days=1)
    store = filled(tmp_path / "store", [closed], files_per_day=1, rows_per_file=50)
    rows = FILES[-1]
    reader = HealthStore(str(tmp_path / "store"))
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read_throughout() -> None:
        while not done.is_set():
            try:
                frame = reader.read("task_runs")
                seen.append(len(frame))
                assert frame.event_id.is_unique
            except BaseException as exc:  # the assertion above too: reported after the join
                errors.append(exc)
                return

    thread = threading.Thread(target=read_throughout)
    thread.start()
    rounds = 0
    deadline = time.monotonic() + 120
    try:
        # each round: a second file with the same rows appears, then compaction merges them; at least 40 rounds
        # and 20 reads in between, however the two threads are scheduled
        while (rounds < 40 or len(seen) < 20) and not errors and time.monotonic() < deadline:
            store.write("task_runs", rows)
            assert store.compact("task_runs", before=TODAY)["rows"] == 50
            rounds += 1
            done.wait(0.01)  # real compactions are minutes apart; this one leaves the reader room to finish
    finally:
        done.set()
        thread.join()
    assert not errors, errors[0]
    assert len(seen) > 10 and set(seen) == {50}


def test_cli_compact_with_retention_and_bad_durations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    today = datetime.now(timezone.utc).date()
    filled(tmp_path / "store", [today - timedelta(days=9), today - timedelta(days=3)])
    assert main(["compact", "--store", str(tmp_path / "store"), "--retain", "1w", "--table", "task_runs"]) == 0
    out = capsys.readouterr().out
    assert "task_runs: 1 partition(s) compacted, 2 → 1 files, 6 rows, 1 partition(s) past retention dropped" in out
    for bad, why in (("0d", "at least 1d"), ("30", "whole days or weeks"), ("12h", "whole days or weeks")):
        assert main(["compact", "--store", str(tmp_path / "store"), "--retain", bad]) == 2
        assert why in capsys.readouterr().err
    assert HealthStore(str(tmp_path / "store")).partitions("task_runs") == [(today - timedelta(days=3)).isoformat()]


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    import prefect

    import prefect_synthobs

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"synthobs {prefect_synthobs.__version__} (prefect {prefect.__version__})"


@pytest.mark.usefixtures("prefect_server")
def test_the_maintenance_flow_reports_what_it_did(tmp_path: Path) -> None:
    today = datetime.now(timezone.utc).date()
    filled(tmp_path / "store", [today - timedelta(days=60), today - timedelta(days=5)])
    state = maintenance_flow.store_maintenance(retain_days=30, store_url=str(tmp_path / "store"), return_state=True)
    results = state.result()
    assert results["task_runs"]["expired"] == 1 and results["task_runs"]["partitions"] == 1
    assert results["flow_runs"] == {
        "partitions": 0,
        "files_before": 0,
        "files_after": 0,
        "rows": 0,
        "quarantined": 0,
        "temporary_removed": 0,
        "expired": 0,
    }
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    assert artifact.key == "synthobs-store-maintenance" and "1 partition(s) past retention dropped" in str(
        artifact.data
    )
    bad = maintenance_flow.store_maintenance(retain_days=-1, store_url=str(tmp_path / "store"), return_state=True)
    assert bad.is_failed()
