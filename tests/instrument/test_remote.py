"""Work done by a flow's tasks in other processes, read back through the Prefect API."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.context import TaskRunContext

from prefect_synthobs.health.recorder import StoreTimeout
from prefect_synthobs.instrument.remote import read_remote_work, report_task_rows


@pytest.mark.usefixtures("prefect_server")
def test_rows_and_task_runs_left_by_workers_are_read_once_and_local_ones_left_out() -> None:
    @task(retries=1, retry_delay_seconds=0)
    def step(i: int, attempts: list[int]) -> str:
        ctx = TaskRunContext.get()
        assert ctx is not None
        attempts.append(i)
        if i == 2 and attempts.count(2) == 1:
            raise RuntimeError("first attempt fails")
        return str(ctx.task_run.id)

    @flow(name=f"remote-{uuid.uuid4().hex[:6]}")
    def run() -> tuple[str, list[str]]:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        assert ctx is not None and ctx.flow_run is not None
        attempts: list[int] = []
        return str(ctx.flow_run.id), [step(i, attempts) for i in range(3)]

    flow_run_id, task_run_ids = run()
    # as workers would: rows of two tables from one task, rows without a table from another
    report_task_rows(flow_run_id, task_run_ids[0], {"customers": 99}, timeout=10)
    report_task_rows(flow_run_id, task_run_ids[1], {None: 7, "customers": 0}, timeout=10)
    report_task_rows(flow_run_id, task_run_ids[2], {"customers": 1000}, timeout=10)
    # the first task ran twice (Dask recomputing a result lost with its worker): its last execution counts
    report_task_rows(flow_run_id, task_run_ids[0], {"customers": 100, "orders": 5}, timeout=10)

    work = read_remote_work(flow_run_id, {task_run_ids[2]}, timeout=10)  # the third ran in the flow's process
    assert work.rows_by_table == {"customers": 100, "orders": 5, None: 7} and work.rows == 112
    assert sorted(t.task_run_id for t in work.tasks) == sorted(task_run_ids[:2])
    assert {t.task_name for t in work.tasks} == {"step"} and {t.state_type for t in work.tasks} == {"COMPLETED"}
    assert all(t.duration_s is not None and t.duration_s >= 0 for t in work.tasks)

    everything = read_remote_work(flow_run_id, set(), timeout=10)
    assert everything.rows == 1112 and sorted(t.run_count for t in everything.tasks) == [1, 1, 2]


def test_an_unanswering_api_costs_at_most_the_timeout() -> None:
    """The call gives up after its own timeout while its request to the API is still unanswered: what it costs
    is that timeout, not the API's. No wall-clock bound of its own (CONTRIBUTING.md): the proof is the request
    still pending when the call returned, and the time taken as a ratio of what an unbounded call would wait."""
    import socket
    import time

    from prefect.settings import (
        PREFECT_API_REQUEST_TIMEOUT,
        PREFECT_API_URL,
        PREFECT_CLIENT_MAX_RETRIES,
        temporary_settings,
    )

    timeout, api_timeout = 0.5, 300.0  # api_timeout: how long Prefect's client would wait for an answer
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        updates = {
            PREFECT_API_URL: f"http://127.0.0.1:{silent.getsockname()[1]}/api",
            PREFECT_CLIENT_MAX_RETRIES: 0,
            PREFECT_API_REQUEST_TIMEOUT: api_timeout,
        }
        with temporary_settings(updates=updates), pytest.raises(StoreTimeout, match=r"no answer within 0\.5 s"):
            start = time.monotonic()
            try:
                read_remote_work(str(uuid.uuid4()), set(), timeout=timeout)
            finally:
                elapsed = time.monotonic() - start
        # the request reached the API and its client was still waiting for the answer when the call returned
        silent.settimeout(30)  # a deadline for waiting, not a bound asserted
        connection, _ = silent.accept()
        with connection:
            connection.settimeout(30)
            assert connection.recv(4096).split(b"\r\n", 1)[0].endswith(b"HTTP/1.1")
            connection.setblocking(False)
            with pytest.raises(BlockingIOError):  # open, nothing more sent: still waiting (b"" if it had given up)
                connection.recv(1)
    assert elapsed >= timeout * 0.99  # it waited its timeout: the API had its chance
    # and no more: StoreTimeout comes only from the bounded wait giving up, and the API's client was still
    # waiting (above), so the call did not wait for the API's answer or its 300 s timeout


@pytest.mark.usefixtures("prefect_server")
def test_gpu_use_on_other_hosts_is_one_summary_per_host() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    from prefect_synthobs import catalog
    from prefect_synthobs.gpu.sampler import RunGpuSummary
    from prefect_synthobs.instrument.remote import report_gpu_summary

    @flow(name=f"remote-gpu-{uuid.uuid4().hex[:6]}")
    def run() -> str:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        assert ctx is not None and ctx.flow_run is not None
        return str(ctx.flow_run.id)

    flow_run_id = run()

    def leave(host: str, pid: int, samples: int, energy: float) -> None:
        summary = RunGpuSummary(samples=samples, util_sum=0.5 * samples, util_count=samples, energy_j=energy)
        with get_client(sync_client=True) as client:
            client.create_artifact(
                ArtifactCreate(
                    type=catalog.GPU_ARTIFACT_TYPE,
                    data={"host": host, "pid": pid, **summary.as_dict()},
                    flow_run_id=uuid.UUID(flow_run_id),
                )
            )

    leave("node-a", 1, 3, 30.0)  # one worker process, two stretches of the run's tasks: added
    leave("node-a", 1, 2, 20.0)
    leave("node-a", 2, 4, 40.0)  # another process on node-a sampling the same devices meanwhile: not added
    report_gpu_summary(flow_run_id, "node-b", RunGpuSummary(samples=1, energy_j=7.0), timeout=10)
    work = read_remote_work(flow_run_id, set(), timeout=10)
    assert sorted(work.gpu) == ["node-a", "node-b"]
    assert (work.gpu["node-a"].samples, work.gpu["node-a"].energy_j) == (5, 50.0)  # pid 1 sampled longest
    assert work.gpu["node-b"].energy_j == 7.0 and work.rows == 0 and work.tasks == []


@pytest.mark.usefixtures("prefect_server")
def test_rows_restored_from_the_api_carry_the_rows_their_task_reported(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from prefect_synthobs.health.store import HealthStore
    from prefect_synthobs.instrument.reconcile import missing_task_rows

    @task
    def step(i: int) -> str:
        ctx = TaskRunContext.get()
        assert ctx is not None
        return str(ctx.task_run.id)

    @flow(name=f"restored-{uuid.uuid4().hex[:6]}")
    def run() -> tuple[str, list[str]]:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        assert ctx is not None and ctx.flow_run is not None
        return str(ctx.flow_run.id), [step(i) for i in range(2)]

    since = datetime.now(timezone.utc)
    flow_run_id, task_run_ids = run()
    report_task_rows(flow_run_id, task_run_ids[1], {"customers": 40, None: 2}, timeout=10)
    rows = missing_task_rows(HealthStore(str(tmp_path / "store")), flow_run_id, "restored", since, settle_seconds=5)
    by_id = {row["task_run_id"]: row for row in rows}
    assert set(by_id) == set(task_run_ids) and {row["source"] for row in rows} == {"api"}
    assert by_id[task_run_ids[0]]["rows"] == 0 and by_id[task_run_ids[1]]["rows"] == 42


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
def test_an_unreachable_api_in_a_worker_is_one_warning_not_one_per_task(
    store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    from conftest import free_port, warnings_with
    from prefect_synthobs.instrument.instrumentation import get_runtime

    runtime = get_runtime()
    with temporary_settings(
        updates={PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api", PREFECT_CLIENT_MAX_RETRIES: 0}
    ):
        for _ in range(3):  # three tasks ending while the API is down: nothing raised
            runtime.report_task_rows(str(uuid.uuid4()), str(uuid.uuid4()), {"customers": 5})
    assert len(warnings_with(caplog, "could not report the 5 rows")) == 1


@pytest.mark.usefixtures("prefect_server")
def test_a_subflow_calls_task_run_is_not_read_back_as_a_task() -> None:
    @task
    def step() -> int:
        return 1

    @flow(name=f"remote-child-{uuid.uuid4().hex[:6]}")
    def child() -> int:
        return step()

    @flow(name=f"remote-parent-{uuid.uuid4().hex[:6]}")
    def parent() -> str:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        assert ctx is not None and ctx.flow_run is not None
        step()
        child()  # Prefect adds a task run to the parent for this call; nothing runs it as a task
        return str(ctx.flow_run.id)

    work = read_remote_work(parent(), set(), timeout=10)
    assert [t.task_name for t in work.tasks] == ["step"]  # the parent's own task, not the subflow call
