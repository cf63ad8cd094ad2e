"""Which row stands for a run written twice: a final state first, then a hook's row, then the latest end."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import task_rows
from prefect_synthobs.health.rows import flow_row
from prefect_synthobs.health.store import HealthStore

T0 = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
STATES = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED", "CANCELLING", "RUNNING", None]
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _flow(state: str | None, source: str, end: datetime, rows: int) -> dict[str, object]:
    row = flow_row(
        flow_run_id="run-1",
        flow_name="served",
        kind="generation",
        model_type=None,
        table_name="orders",
        state_type=state or "COMPLETED",
        state_name=(state or "unknown").title(),
        start_time=T0,
        end_time=end,
        rows=rows,
        error_type=None,
        error_message=None,
        tags=[],
        host="h",
        trace_id=None,
        redact_pii=False,
    )
    row["source"], row["state_type"] = source, state
    return row


def test_a_cancelling_row_written_after_the_completed_one_does_not_hide_it(tmp_path: Path) -> None:
    # a runner stopped while the run's process was still exiting ran its cancellation hooks (seen in CI)
    store = HealthStore(str(tmp_path / "store"))
    store.write("flow_runs", [_flow("COMPLETED", "hook", T0 + timedelta(seconds=5), 4)])
    store.write("flow_runs", [_flow("CANCELLING", "hook", T0 + timedelta(seconds=9), 0)])
    runs = store.read("flow_runs")
    assert list(runs.state_type) == ["COMPLETED"] and list(runs.rows) == [4]
    assert list(store.read("flow_runs", columns=["flow_run_id", "rows"]).rows) == [4]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(STATES), st.sampled_from(["hook", "api"]), st.integers(0, 100)),
        min_size=1,
        max_size=5,
    )
)
def test_the_row_kept_is_final_then_hook_then_latest(
    tmp_path_factory: pytest.TempPathFactory, written: list[tuple[str | None, str, int]]
) -> None:
    store = HealthStore(str(tmp_path_factory.mktemp("s") / "store"))
    rows = [_flow(state, source, T0 + timedelta(seconds=sec), i) for i, (state, source, sec) in enumerate(written)]
    for row in rows:
        store.write("flow_runs", [row])
    kept = store.read("flow_runs")
    assert len(kept) == 1

    def rank(i: int) -> tuple[bool, bool, float]:
        state, source, sec = written[i]
        return (state not in FINAL, source == "api", -sec)

    best = min(rank(i) for i in range(len(written)))
    assert rank(int(kept.rows.iloc[0])) == best


def test_task_rows_follow_the_same_rule(tmp_path: Path) -> None:
    store = HealthStore(str(tmp_path / "store"))
    done, late = task_rows(1), task_rows(1)
    late[0]["state_type"], late[0]["end_time"] = "RUNNING", T0 + timedelta(hours=1)
    store.write("task_runs", done)
    store.write("task_runs", late)
    assert list(store.read("task_runs").state_type) == ["COMPLETED"]
