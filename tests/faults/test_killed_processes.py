"""Processes killed across a deployment (SIGKILL): the flow-run process under a runner,
a ProcessPool worker, a Dask worker. Each case: the flow's result, what the store holds
afterwards, and that after reconciliation it agrees with the Prefect API (every finished
run exactly once, in the API's state)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterFlowRunId
from prefect.deployments import run_deployment

import prefect_synthobs as so
from conftest import served_deployment, stop, subprocess_env
from prefect_synthobs.instrument.reconcile import reconcile

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def wait_until(what: str, check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def api_runs(flow_run_id: str) -> tuple[Any, dict[str, str]]:
    """The flow run and ``{task_run_id: state_type}`` of its finished task runs, as the API has them."""
    with get_client(sync_client=True) as client:
        (flow_run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        task_runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]))
        )
    final = {str(t.id): t.state.type.value for t in task_runs if t.state is not None and t.state.is_final()}
    return flow_run, final


def assert_store_agrees_with_api(store: so.HealthStore, flow_run_id: str) -> tuple[Any, Any]:
    flow_run, api_tasks = api_runs(flow_run_id)
    flows = store.read("flow_runs")
    flows = flows[flows.flow_run_id == flow_run_id]
    assert flows.state_type.tolist() == [flow_run.state.type.value]  # one row, the API's final state
    tasks = store.read("task_runs")
    tasks = tasks[tasks.flow_run_id == flow_run_id]
    assert tasks.task_run_id.is_unique  # never twice
    assert dict(zip(tasks.task_run_id, tasks.state_type, strict=True)) == api_tasks  # each finished run, its state
    return flows.iloc[0], tasks


RUNNER_FLOW = """
import os, time
from prefect import flow, task
import prefect_synthobs as so

@task
def step(i: int) -> int:
    so.record_rows(5)
    return i

@so.observe(kind="generation", table="orders")
@flow(name={name!r})
def doomed(pid_file: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
    from prefect.context import FlowRunContext
    from prefect_synthobs.instrument.instrumentation import get_runtime

    step(0)
    step(1)
    get_runtime().recorder.flush()  # as the periodic flusher would: the first two rows are in the store
    step(2)  # this row stays in memory (flush interval: an hour) when the process dies
    mine = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[FlowRunContext.get().flow_run.id]))
    with get_client(sync_client=True) as client:  # what the API knows is what reconcile can restore
        while sum(1 for r in client.read_task_runs(task_run_filter=mine) if r.state and r.state.is_final()) < 3:
            time.sleep(0.1)
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)

if __name__ == "__main__":
    doomed.serve(name="doomed")
"""


def test_a_flow_run_process_killed_under_a_runner_ends_as_a_crashed_row(tmp_path: Path) -> None:
    name = f"doomed-{uuid.uuid4().hex[:6]}"
    flow_file = tmp_path / "doomed.py"
    flow_file.write_text(RUNNER_FLOW.format(name=name))
    store_url = str(tmp_path / "store")
    pid_file = tmp_path / "pid"
    env = subprocess_env(
        PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=store_url, PREFECT_INTEGRATIONS_SYNTHOBS_FLUSH_INTERVAL_SECONDS="3600"
    )
    store = so.HealthStore(store_url)
    with served_deployment(flow_file, f"{name}/doomed", env) as runner:
        flow_run = run_deployment(f"{name}/doomed", parameters={"pid_file": str(pid_file)}, timeout=0)
        pid = int(wait_until("the flow's pid", lambda: pid_file.exists() and pid_file.read_text()))
        assert pid != runner.pid  # the flow run has its own process, child of the runner
        os.kill(pid, signal.SIGKILL)
        # the runner sees the process die, marks the run crashed and runs its on_crashed hooks: synthobs writes
        # the flow row from the runner's process
        wait_until("the crashed flow row", lambda: len(store.read("flow_runs")) == 1)
        # and, a few seconds later, reconciles the run's task runs from the API: the third row, lost in memory
        wait_until("the reconciled task row", lambda: len(store.read("task_runs")) == 3)
        out = stop(runner)
    rows = store.read("flow_runs")
    assert rows.flow_run_id.tolist() == [str(flow_run.id)] and rows.state_type.tolist() == ["CRASHED"], out[-3000:]
    _, tasks = assert_store_agrees_with_api(store, str(flow_run.id))
    assert sorted(tasks.source) == ["api", "hook", "hook"]  # two flushed before the kill, one from the API
    assert tasks[tasks.source == "hook"].rows.tolist() == [5, 5]
    since = datetime.now(timezone.utc) - timedelta(minutes=10)
    assert reconcile(store, since=since).task_runs == 0  # a scheduled reconcile finds nothing left to add


POOL_FLOW = """
import json, os, sys, time
import prefect_synthobs as so
from prefect import flow, task

def runner():
    if os.environ["RUNNER"] == "dask":
        from prefect_dask import DaskTaskRunner
        return DaskTaskRunner(cluster_kwargs={"n_workers": 2, "processes": True, "threads_per_worker": 1})
    from prefect.task_runners import ProcessPoolTaskRunner
    return ProcessPoolTaskRunner(max_workers=2)

@task
def step(i):
    so.record_rows(10)
    return i

@task
def victim(pid_file):
    if not os.path.exists(pid_file):  # the first attempt is killed; Dask may run it again elsewhere
        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    return -1

@so.observe(kind="generation", table="customers")
@flow(name=os.environ["FLOW_NAME"], task_runner=runner())
def generate(pid_file):
    done = [step.submit(i) for i in range(4)]
    [f.wait() for f in done]
    return [victim.submit(pid_file).result(), *[f.result() for f in done]]

if __name__ == "__main__":
    so.configure(store_url=os.environ["STORE"], spool_dir=os.environ["SPOOL"])
    state = generate(os.environ["PID_FILE"], return_state=True)
    print(json.dumps({"state": state.type.value, "flow_run_id": str(state.state_details.flow_run_id),
                      "message": state.message}))
"""


@pytest.mark.parametrize("runner", ["process_pool", "dask"])
def test_a_killed_worker_process_and_the_store_after_reconciliation(tmp_path: Path, runner: str) -> None:
    script = tmp_path / "pool_flow.py"
    script.write_text(POOL_FLOW)
    pid_file = tmp_path / "victim.pid"
    env = subprocess_env(
        FLOW_NAME=f"killed-{runner}-{uuid.uuid4().hex[:6]}",
        STORE=str(tmp_path / "store"),
        SPOOL=str(tmp_path / "spool"),
        PID_FILE=str(pid_file),
        RUNNER=runner,
    )
    since = datetime.now(timezone.utc) - timedelta(minutes=10)
    proc = subprocess.Popen(
        [sys.executable, "-c", f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pid = int(wait_until("the victim task's pid", lambda: pid_file.exists() and pid_file.read_text()))
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]  # the flow's process itself survives whatever the runner does
    result = json.loads(out.strip().splitlines()[-1])
    store = so.HealthStore(str(tmp_path / "store"))
    flow_run, _ = api_runs(result["flow_run_id"])
    assert result["state"] == flow_run.state.type.value  # synthobs changed nothing in the outcome
    if runner == "dask":
        assert result["state"] == "COMPLETED"  # Dask re-ran the lost task on a live worker
    else:
        assert result["state"] in ("FAILED", "CRASHED"), result  # a broken pool fails its futures

    # the flow's process reconciled its run as it exited (tasks no worker recorded, from the API): the store
    # agrees with the API without a scheduled reconcile
    row, tasks = assert_store_agrees_with_api(store, result["flow_run_id"])
    assert reconcile(store, since=since).task_runs == 0
    steps = tasks[tasks.task_name == "step"]
    assert len(steps) == 4 and set(steps.state_type) == {"COMPLETED"}
    hook_steps = steps[steps.source == "hook"]
    assert (hook_steps.rows == 10).all()  # recorded by the workers themselves, rows included
    # each step reported its rows through the API as it ended, before the kill: the flow row counts them all,
    # whether or not the worker lived to flush its task row
    assert row.rows == 40


def test_a_flow_run_process_killed_under_a_process_worker_ends_as_a_crashed_row(tmp_path: Path) -> None:
    from prefect import Flow
    from prefect.client.schemas.actions import WorkPoolCreate

    name = f"doomed-{uuid.uuid4().hex[:6]}"
    pool = f"pool-{uuid.uuid4().hex[:6]}"
    (tmp_path / "doomed.py").write_text(RUNNER_FLOW.format(name=name))
    store_url = str(tmp_path / "store")
    pid_file = tmp_path / "pid"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    remote = Flow.from_source(source=str(tmp_path), entrypoint="doomed.py:doomed")
    remote.deploy(name="doomed", work_pool_name=pool, print_next_steps=False)  # type: ignore[attr-defined]
    env = subprocess_env(
        PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=store_url, PREFECT_INTEGRATIONS_SYNTHOBS_FLUSH_INTERVAL_SECONDS="3600"
    )
    worker = subprocess.Popen(
        [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool", pool, "--type", "process"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    store = so.HealthStore(store_url)
    try:
        flow_run = run_deployment(f"{name}/doomed", parameters={"pid_file": str(pid_file)}, timeout=0)
        pid = int(wait_until("the flow's pid", lambda: pid_file.exists() and pid_file.read_text(), timeout=180))
        assert pid != worker.pid
        os.kill(pid, signal.SIGKILL)
        wait_until("the crashed flow row", lambda: len(store.read("flow_runs")) == 1)
        wait_until("the reconciled task row", lambda: len(store.read("task_runs")) == 3)
    finally:
        out = stop(worker)
    rows = store.read("flow_runs")
    assert rows.flow_run_id.tolist() == [str(flow_run.id)] and rows.state_type.tolist() == ["CRASHED"], out[-3000:]
    _, tasks = assert_store_agrees_with_api(store, str(flow_run.id))
    assert sorted(tasks.source) == ["api", "hook", "hook"]
