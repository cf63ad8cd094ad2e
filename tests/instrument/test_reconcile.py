"""Reconciliation from the Prefect API: rows for runs the hooks never saw, once."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prefect import flow, task

import prefect_synthobs as so
from prefect_synthobs.cli import main
from prefect_synthobs.instrument.reconcile import reconcile

pytestmark = pytest.mark.usefixtures("prefect_server")


def api_has_final_task_runs(flow_run_id: str, n: int, timeout: float = 60) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[uuid.UUID(flow_run_id)]))
            )
            if sum(1 for r in runs if r.state is not None and r.state.is_final()) >= n:
                return
            assert time.monotonic() < deadline, f"the API never showed {n} finished task runs"
            time.sleep(0.1)


def test_runs_the_hooks_never_saw_are_written_once_from_the_api(store_dir: Path, capsys: object) -> None:
    name = f"recon-{uuid.uuid4().hex[:6]}"

    @task
    def step(i: int) -> int:
        if i == 2:
            raise ValueError("bad batch for ann@example.com")
        return i

    def body() -> int:
        total = 0
        for i in range(3):
            state = step(i, return_state=True)
            total += state.result() if state.is_completed() else 0
        return total

    observed = so.observe(kind="generation")(flow(name=name)(body))
    unseen = flow(name=name)(body)  # the same flow, run where synthobs never looked (a lost process)

    since = datetime.now(timezone.utc) - timedelta(minutes=5)
    assert observed() == 1
    state = unseen(return_state=True)
    unseen_id = str(state.state_details.flow_run_id)
    store = so.HealthStore(str(store_dir))
    assert store.count("flow_runs") == 1 and store.count("task_runs") == 3
    api_has_final_task_runs(unseen_id, 3)  # Prefect's server records task runs from events, a moment later

    result = reconcile(store, since=since)
    assert (result.flow_runs, result.task_runs) == (1, 3)
    flows = store.read("flow_runs")
    row = flows[flows.flow_run_id == unseen_id].iloc[0]
    assert row.source == "api" and row.flow_name == name and row.state_type == "COMPLETED"
    assert row.duration_s is not None and row.duration_s >= 0
    assert sorted(flows.source) == ["api", "hook"]
    tasks = store.read("task_runs")
    from_api = tasks[tasks.flow_run_id == unseen_id]
    assert sorted(from_api.state_type) == ["COMPLETED", "COMPLETED", "FAILED"]
    assert set(from_api.source) == {"api"} and set(from_api.task_name) == {"step"}

    again = reconcile(store, since=since)  # idempotent
    assert (again.flow_runs, again.task_runs) == (0, 0)
    assert main(["reconcile", "--since", "1h", "--store", str(store_dir)]) == 0
    assert "reconciled 0 flow run(s) and 0 task run(s)" in capsys.readouterr().out  # type: ignore[attr-defined]
    assert store.count("flow_runs") == 2 and store.count("task_runs") == 6


def test_the_task_run_prefect_adds_for_a_subflow_call_is_not_reconciled(store_dir: Path) -> None:
    """The hooks never record a subflow call's wrapper task run (the subflow is a flow run of its own):
    reconciling must not write it either (it would head "Slowest tasks" and count the subflow twice)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    from prefect_synthobs.instrument.reconcile import missing_task_rows

    name = f"recon-parent-{uuid.uuid4().hex[:6]}"

    @task
    def step(i: int) -> int:
        return i

    @flow(name=f"{name}-child")
    def child() -> int:
        return step(1)

    def body() -> int:
        return child() + step(2)

    parent = so.observe(kind="generation")(flow(name=name)(body))
    since = datetime.now(timezone.utc) - timedelta(minutes=5)
    state = parent(return_state=True)
    assert state.is_completed()
    parent_id = str(state.state_details.flow_run_id)
    with get_client(sync_client=True) as client:
        (sub,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[uuid.UUID(parent_id)]))
        )
    wrapper_id = str(sub.parent_task_run_id)
    api_has_final_task_runs(parent_id, 2)  # the wrapper and step(2)
    api_has_final_task_runs(str(sub.id), 1)
    store = so.HealthStore(str(store_dir))
    assert store.count("flow_runs") == 2  # the parent (hooks) and the subflow (run listener)
    assert store.count("task_runs") == 2  # step(1) in the subflow, step(2) in the parent: no wrapper
    assert wrapper_id not in set(store.read("task_runs").task_run_id)

    result = reconcile(store, since=since)
    assert (result.flow_runs, result.task_runs) == (0, 0)
    assert (result.flows_checked, result.task_runs_checked) == (2, 2)
    assert wrapper_id not in set(store.read("task_runs").task_run_id)
    assert store.count("task_runs") == 2
    # the in-process reconciliation an observed flow's process runs after the flow's end leaves it out too
    assert missing_task_rows(store, parent_id, name, since, settle_seconds=2) == []
