"""observe() end to end against the session's real Prefect server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

import prefect_synthobs as so
from prefect_synthobs.instrument.instrumentation import get_runtime
from prefect_synthobs.metrics import REGISTRY

pytestmark = pytest.mark.usefixtures("prefect_server")


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _api_task_runs(flow_run_id: str, expected: int, timeout: float = 30.0) -> list:
    """Task runs as Prefect's API has them, once all have arrived (they come late)."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            done = [r for r in runs if r.end_time is not None and r.state and r.state.is_final()]
            if len(done) >= expected or time.monotonic() > deadline:
                return done
            time.sleep(0.5)


def _make_fifty_task_flow(flow_name: str):
    attempts: Counter[int] = Counter()

    @task(retries=1, retry_delay_seconds=0)
    def flaky(i: int) -> int:
        attempts[i] += 1
        if attempts[i] == 1:
            raise ValueError("transient")
        return i

    @task
    def doomed() -> None:
        raise RuntimeError("broken for good, mail ops@example.com")

    @task
    def work(i: int) -> int:
        return i * 2

    @so.observe(kind="generation", model_type="copula", table="customers")
    @flow(name=flow_name)
    def fifty(fail: bool) -> int:
        direct = [work(i) for i in range(20)]  # 20 direct calls
        futures = [work.submit(i) for i in range(20, 44)]  # 24 submitted
        mapped = work.map(range(44, 48))  # 4 mapped
        flaky(48)  # 1, retried once
        bad = doomed.submit()  # 1, fails for good
        total = sum(direct) + sum(f.result() for f in futures) + sum(m.result() for m in mapped)
        bad.wait()
        so.record_rows(total)
        if fail:
            bad.result()
        return total

    return fifty


@pytest.mark.parametrize("fail", [True, False], ids=["flow-fails", "flow-completes"])
def test_fifty_tasks_one_row_each_with_prefect_states_and_timings(store_dir: Path, fail: bool) -> None:
    flow_name = _name("fifty")
    fifty = _make_fifty_task_flow(flow_name)
    state = fifty(fail, return_state=True)
    flow_run_id = str(state.state_details.flow_run_id)
    assert state.is_failed() is fail

    store = so.HealthStore(str(store_dir))
    tasks = store.read("task_runs")
    tasks = tasks[tasks.flow_run_id == flow_run_id]
    assert len(tasks) == 50
    assert tasks.task_run_id.is_unique and tasks.event_id.is_unique
    by_task = tasks.groupby("task_name").size().to_dict()
    assert by_task == {"work": 48, "flaky": 1, "doomed": 1}
    flaky_row = tasks[tasks.task_name == "flaky"].iloc[0]
    assert (flaky_row.state_type, flaky_row.run_count) == ("COMPLETED", 2)
    doomed_row = tasks[tasks.task_name == "doomed"].iloc[0]
    assert doomed_row.state_type == "FAILED" and doomed_row.error_type == "RuntimeError"
    assert "ops@example.com" not in doomed_row.error_message and "[REDACTED]" in doomed_row.error_message
    work_rows = tasks[tasks.task_name == "work"]
    assert set(work_rows.state_type) == {"COMPLETED"} and set(work_rows.run_count) == {1}
    assert (tasks.flow_name == flow_name).all()

    flows = store.read("flow_runs")
    row = flows[flows.flow_run_id == flow_run_id]
    assert len(row) == 1
    row = row.iloc[0]
    with get_client(sync_client=True) as client:
        api_flow = client.read_flow_run(flow_run_id)
    assert row.state_type == api_flow.state.type.value == ("FAILED" if fail else "COMPLETED")
    assert (row.kind, row.model_type, row.table_name) == ("generation", "copula", "customers")
    assert row.rows == sum(i * 2 for i in range(48))
    if fail:
        assert row.error_type == "RuntimeError"
    else:
        assert pd.isna(row.error_type)

    # timings are Prefect's own: the same start and end instants (to the microsecond), so the same
    # durations; no tolerance, so a time taken by synthobs itself (its own clock, late) cannot pass
    api_tasks = {str(r.id): r for r in _api_task_runs(flow_run_id, 50)}
    assert len(api_tasks) == 50
    for rec in tasks.itertuples():
        api = api_tasks[rec.task_run_id]
        api_times = (pd.Timestamp(api.start_time), pd.Timestamp(api.end_time))
        assert (rec.start_time, rec.end_time) == api_times, (rec.task_name, rec.start_time, rec.end_time, api_times)
        assert rec.duration_s == (api.end_time - api.start_time).total_seconds(), rec.task_name
        assert api.run_count == rec.run_count
        assert api.state.type.value == rec.state_type
    deadline = time.monotonic() + 60
    while api_flow.end_time is None and time.monotonic() < deadline:
        time.sleep(0.5)
        with get_client(sync_client=True) as client:
            api_flow = client.read_flow_run(flow_run_id)
    assert api_flow.end_time is not None, "Prefect's API never recorded the flow run's end"
    api_flow_times = (pd.Timestamp(api_flow.start_time), pd.Timestamp(api_flow.end_time))
    assert (row.start_time, row.end_time) == api_flow_times
    assert row.duration_s == (api_flow.end_time - api_flow.start_time).total_seconds()

    # the metrics saw the same runs
    assert (
        REGISTRY.get_sample_value("synthobs_task_runs_total", {"flow": flow_name, "task": "work", "state": "COMPLETED"})
        == 48
    )
    assert REGISTRY.get_sample_value("synthobs_task_retries_total", {"flow": flow_name, "task": "flaky"}) == 1
    state_label = "FAILED" if fail else "COMPLETED"
    assert (
        REGISTRY.get_sample_value(
            "synthobs_flow_runs_total", {"flow": flow_name, "kind": "generation", "state": state_label}
        )
        == 1
    )


def test_one_file_per_flow_run_per_table(store_dir: Path) -> None:
    so.configure(flush_interval_seconds=600)  # no periodic flush inside the run: one flush, at its end

    @task
    def t(i: int) -> int:
        return i

    @so.observe(kind="training", model_type="m")
    @flow(name=_name("files"))
    def f() -> None:
        for i in range(30):
            t(i)
        so.record_epoch(0, loss={"generator": 0.7, "discriminator": 1.1})
        so.record_epoch(1, loss=0.5)

    f()
    files = sorted(p.relative_to(store_dir).parts[0] for p in store_dir.rglob("*.parquet"))
    assert files == ["flow_runs", "task_runs", "training_epochs"]
    assert not list(store_dir.rglob(".*.tmp"))
    epochs = so.HealthStore(str(store_dir)).read("training_epochs").sort_values(["epoch", "loss_type"])
    assert list(zip(epochs.epoch, epochs.loss_type, epochs.loss, strict=True)) == [
        (0, "discriminator", 1.1),
        (0, "generator", 0.7),
        (1, "loss", 0.5),
    ]
    assert (epochs.model_type == "m").all()


def test_subflows_get_their_own_rows_observed_or_not(store_dir: Path) -> None:
    @task
    def leaf() -> int:
        return 1

    @flow(name=_name("plain-sub"))
    def plain_sub() -> int:
        return leaf() + leaf()

    @so.observe(kind="quality")
    @flow(name=_name("observed-sub"))
    def observed_sub() -> int:
        return leaf()

    parent_name = _name("parent")

    @so.observe(kind="other")
    @flow(name=parent_name)
    def parent() -> int:
        return plain_sub() + observed_sub() + leaf()

    state = parent(return_state=True)
    parent_id = str(state.state_details.flow_run_id)
    store = so.HealthStore(str(store_dir))
    flows = store.read("flow_runs")
    assert len(flows) == 3
    subs = flows[flows.parent_flow_run_id == parent_id]
    assert sorted(subs.kind) == ["other", "quality"]
    assert set(subs.state_type) == {"COMPLETED"}
    tasks = store.read("task_runs")
    assert len(tasks) == 4
    per_flow = tasks.groupby("flow_run_id").size().to_dict()
    assert per_flow[parent_id] == 1
    assert sorted(per_flow.values()) == [1, 1, 2]


def test_async_flow_and_async_tasks(store_dir: Path) -> None:
    @task
    async def aleaf(i: int) -> int:
        await asyncio.sleep(0.01)
        return i

    @task
    def sleaf(i: int) -> int:
        return i

    @so.observe(kind="generation", table="orders")
    @flow(name=_name("async"))
    async def aflow(n: int) -> int:
        values = await asyncio.gather(*[aleaf(i) for i in range(n)])
        so.record_rows(sum(values))
        return sum(values) + sleaf(1)

    assert asyncio.run(aflow(5)) == 11
    store = so.HealthStore(str(store_dir))
    assert len(store.read("task_runs")) == 6
    row = store.read("flow_runs").iloc[0]
    assert (row.state_type, row.rows, row.table_name) == ("COMPLETED", 10, "orders")


def test_observed_flow_keeps_signature_result_and_is_a_flow(store_dir: Path) -> None:
    from prefect import Flow, Task

    @flow(name=_name("sig"))
    def plain(a: int, b: str = "x") -> str:
        """Doc."""
        return f"{a}{b}"

    observed = so.observe(kind="other")(plain)
    assert isinstance(observed, Flow)
    assert observed.parameters == plain.parameters
    assert observed.name == plain.name and observed.description == plain.description
    assert observed(2, b="y") == "2y"
    again = so.observe(kind="training")(observed)  # observing twice: one set of hooks
    assert len(again.on_completion_hooks) == 1 and len(again.on_running_hooks) == 1
    bare = so.observe(plain)  # also works without parentheses
    assert isinstance(bare, Flow)
    assert isinstance(so.observe()(task(lambda: 1)), Task)


def test_observed_task_outside_an_observed_flow_is_recorded(store_dir: Path) -> None:
    @so.observe(kind="other")
    @task(name="lonely")
    def lonely() -> int:
        return 3

    @flow(name=_name("unobserved"))
    def unobserved() -> int:
        return lonely()

    assert unobserved() == 3
    assert get_runtime().recorder.flush() >= 1
    tasks = so.HealthStore(str(store_dir)).read("task_runs")
    assert list(tasks.task_name) == ["lonely"]
    assert so.HealthStore(str(store_dir)).read("flow_runs").empty


def test_undecorated_flow_records_nothing(store_dir: Path) -> None:
    @task
    def t() -> int:
        return 1

    @flow(name=_name("ignored"))
    def ignored() -> int:
        return t()

    get_runtime()
    assert ignored() == 1
    get_runtime().recorder.flush()
    assert not list(store_dir.rglob("*.parquet"))
