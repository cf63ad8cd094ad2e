"""What an observed flow's end reads from the Prefect API, and when.

Nothing when every task ran in the flow's process; when some ran elsewhere, one
read of the run's artifacts and one of its finished task runs once Prefect
reports every task run the process sent there (``WorkerCarrier`` counts them),
polled only while short, and the same read serving the reconciliation.
"""

from __future__ import annotations

import json
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prefect import flow, task
from prefect.client.orchestration import SyncPrefectClient
from prefect.context import FlowRunContext, TaskRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from conftest import run_python, subprocess_env
from prefect_synthobs.instrument import flow_end, prefect_api
from prefect_synthobs.instrument.remote import all_shipped_final, read_remote_work

# -- nothing ran elsewhere: no read ---------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_server")
def test_a_flow_whose_tasks_all_ran_here_reads_nothing_from_the_api(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prefect_synthobs as so
    from prefect_synthobs.instrument.instrumentation import get_runtime

    reads: list[str] = []
    for name in ("read_task_runs", "read_artifacts"):
        original = getattr(SyncPrefectClient, name)

        def counted(self: Any, *args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(SyncPrefectClient, name, counted)
    for name in ("read_remote_work", "missing_task_rows"):
        monkeypatch.setattr(flow_end, name, lambda *a, _name=name, **k: reads.append(_name))
    monkeypatch.setattr(prefect_api, "count_finished_task_runs", lambda *a, **k: reads.append("count"))

    @task
    def step(i: int) -> int:
        so.record_rows(2)
        return i

    @so.observe(kind="generation", table="t")
    @flow(name=f"here-{uuid.uuid4().hex[:6]}", task_runner=ThreadPoolTaskRunner(max_workers=2))  # type: ignore[arg-type]
    def here() -> str:
        ctx = FlowRunContext.get()
        assert ctx is not None and ctx.flow_run is not None
        step(0)  # called, submitted, mapped: all in this process
        step.submit(1).result()
        [f.result() for f in step.map(range(2, 5))]
        return str(ctx.flow_run.id)

    flow_run_id = here()
    runtime = get_runtime()
    runtime.flow_end.close(10)
    runtime.recorder.flush()
    assert reads == []  # no task-run read, no artifact read, no count, no reconciliation
    flows = so.HealthStore(str(store_dir)).read("flow_runs")
    assert flows[flows.flow_run_id == flow_run_id].rows.tolist() == [10]  # the row still counts every task
    tasks = so.HealthStore(str(store_dir)).read("task_runs")
    assert len(tasks[tasks.flow_run_id == flow_run_id]) == 5


# -- the read that knows what to expect -----------------------------------------------------------------------


def _runs(n: int, *, attempt: int = 1, subflow: int = 0) -> list[Any]:
    """Fake finished task runs as the API returns them (``id``, ``flow_run_run_count``, ``state``)."""
    out = []
    for i in range(n):
        details = types.SimpleNamespace(child_flow_run_id=uuid.uuid4() if i < subflow else None)
        out.append(
            types.SimpleNamespace(
                id=uuid.uuid4(), flow_run_run_count=attempt, state=types.SimpleNamespace(state_details=details)
            )
        )
    return out


@given(
    local=st.integers(0, 5),
    shipped=st.integers(0, 8),
    arrived=st.integers(0, 8),
    earlier=st.integers(0, 4),
    subflows=st.integers(0, 3),
)
def test_enough_means_every_shipped_run_of_this_attempt_is_there(
    local: int, shipped: int, arrived: int, earlier: int, subflows: int
) -> None:
    """Runs recorded here, subflow calls and an earlier attempt's runs never stand in for a shipped one."""
    here = _runs(local, attempt=2)
    elsewhere = _runs(arrived, attempt=2)
    runs = here + elsewhere + _runs(earlier, attempt=1) + _runs(subflows, attempt=2, subflow=subflows)
    enough = all_shipped_final({str(r.id) for r in here}, shipped, attempt=2)
    assert enough(runs) == (arrived >= shipped)


class _FakeApi:
    """Task runs reaching the API at given (fake) times; a fake clock that ``time.sleep`` advances."""

    def __init__(self, arrivals: list[float]) -> None:
        self.now = 0.0
        self.runs = _runs(len(arrivals))
        self.arrivals = arrivals
        self.full_reads: list[int] = []
        self.counts: list[int] = []

    def arrived(self) -> list[Any]:
        return [r for r, t in zip(self.runs, self.arrivals, strict=True) if t <= self.now]

    def finished(self, _client: Any, _ids: Any) -> Any:
        got = self.arrived()
        self.full_reads.append(len(got))
        self.now += 0.01  # a read takes time
        return iter(got)

    def count(self, _client: Any, _id: Any) -> int:
        self.counts.append(len(self.arrived()))
        self.now += 0.002
        return self.counts[-1]

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@settings(max_examples=150, deadline=None)
@given(
    arrivals=st.lists(st.floats(0, 3, allow_nan=False), min_size=0, max_size=12),
    budget=st.floats(0, 2.5, allow_nan=False),
)
def test_the_read_ends_as_soon_as_every_shipped_run_is_there_and_never_after_its_budget(
    arrivals: list[float], budget: float
) -> None:
    api = _FakeApi(arrivals)
    shipped = len(arrivals)
    enough = all_shipped_final(set(), shipped)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prefect_api, "finished_task_runs", api.finished)
        mp.setattr(prefect_api, "count_finished_task_runs", api.count)
        mp.setattr(prefect_api, "time", types.SimpleNamespace(monotonic=lambda: api.now, sleep=api.sleep))
        runs = prefect_api.settled_task_runs(None, uuid.uuid4(), budget, enough=enough, at_least=shipped)  # type: ignore[arg-type]
    # bounded: it never starts a wait that would end past its budget (one last read may follow the last wait)
    assert api.now <= max(budget, 0) + 0.01 + 0.002 + 0.01 + 1e-9
    if len(runs) == shipped:
        # every run was there: the full read that found them was the last, and no full read was wasted while
        # the count said some were still missing
        assert api.full_reads[-1] == shipped
        assert all(n < shipped for n in api.full_reads[:-1])
        assert len(api.full_reads) <= 2 or all(c < shipped for c in api.counts)
    else:  # short: only because the budget ran out before the last arrived
        assert max(arrivals) > api.now - 0.01 - 1e-9
    if arrivals and max(arrivals) <= 0:
        assert api.full_reads == [shipped] and api.counts == [shipped]  # all there at once: one count, one read
    if arrivals:
        assert all(c < shipped for c in api.counts[:-1])  # counted again only while some were missing
    assert len(runs) == api.full_reads[-1]


@settings(max_examples=50, deadline=None)
@given(arrivals=st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=8))
def test_a_count_the_server_refuses_costs_nothing_but_the_counting(arrivals: list[float]) -> None:
    """A server without ``/task_runs/count`` (or a failed count): the runs are read as before counting, within
    the budget; the flow's end keeps what other processes did."""
    api = _FakeApi(arrivals)

    def refused(_client: Any, _id: Any) -> int:
        api.counts.append(-1)
        raise RuntimeError("POST /task_runs/count: 404")

    shipped = len(arrivals)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prefect_api, "finished_task_runs", api.finished)
        mp.setattr(prefect_api, "count_finished_task_runs", refused)
        mp.setattr(prefect_api, "time", types.SimpleNamespace(monotonic=lambda: api.now, sleep=api.sleep))
        runs = prefect_api.settled_task_runs(
            None,  # type: ignore[arg-type]
            uuid.uuid4(),
            2.0,
            enough=all_shipped_final(set(), shipped),
            at_least=shipped,
        )
    assert api.counts == [-1]  # asked once, then never again
    assert len(runs) == shipped  # every run arrives within the budget: all of them read


@pytest.mark.usefixtures("prefect_server")
def test_one_task_run_read_when_the_api_already_has_every_shipped_run(monkeypatch: pytest.MonkeyPatch) -> None:
    @task
    def step(i: int) -> str:
        ctx = TaskRunContext.get()
        assert ctx is not None
        return str(ctx.task_run.id)

    @flow(name=f"shipped-{uuid.uuid4().hex[:6]}")
    def run() -> tuple[str, list[str]]:
        ctx = FlowRunContext.get()
        assert ctx is not None and ctx.flow_run is not None
        return str(ctx.flow_run.id), [step(i) for i in range(3)]

    flow_run_id, task_run_ids = run()
    full_reads: list[int] = []
    original = prefect_api.finished_task_runs

    def counted(client: Any, ids: Any) -> Any:
        got = list(original(client, ids))
        full_reads.append(len(got))
        return iter(got)

    monkeypatch.setattr(prefect_api, "finished_task_runs", counted)
    prefect_api.settled_task_runs(  # as a benchmark's drain would: every task run final in the API first
        prefect_api.shared_client(), flow_run_id, 30, enough=all_shipped_final(set(), 3), at_least=3
    )
    full_reads.clear()
    work = read_remote_work(flow_run_id, set(), timeout=10, shipped=3, attempt=1)
    assert full_reads == [3] and work.complete  # one read, no settle wait
    assert sorted(str(t.id) for t in work.task_runs) == sorted(task_run_ids)
    assert sorted(t.task_run_id for t in work.tasks) == sorted(task_run_ids)
    assert prefect_api.count_finished_task_runs(prefect_api.shared_client(), flow_run_id) == 3

    full_reads.clear()  # one more than ever reached the API: read until the budget, then not complete
    short = read_remote_work(flow_run_id, set(), timeout=0.6, shipped=4, attempt=1)
    assert not short.complete and len(short.tasks) == 3 and full_reads[0] == 3


@pytest.mark.usefixtures("prefect_server")
def test_reconciliation_reuses_a_complete_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime, timezone

    from prefect_synthobs.health.store import HealthStore
    from prefect_synthobs.instrument.reconcile import missing_task_rows

    @task
    def step(i: int) -> int:
        return i

    @flow(name=f"reuse-{uuid.uuid4().hex[:6]}")
    def run() -> str:
        ctx = FlowRunContext.get()
        assert ctx is not None and ctx.flow_run is not None
        [step(i) for i in range(2)]
        return str(ctx.flow_run.id)

    since = datetime.now(timezone.utc)
    flow_run_id = run()
    task_runs = prefect_api.settled_task_runs(
        prefect_api.shared_client(), flow_run_id, 30, enough=all_shipped_final(set(), 2), at_least=2
    )
    reported: dict[str, dict[str | None, int]] = {str(task_runs[0].id): {"customers": 7}}

    def no_api() -> Any:
        raise AssertionError("no API read: the flow end's read is reused")

    monkeypatch.setattr(prefect_api, "shared_client", no_api)
    rows = missing_task_rows(
        HealthStore(str(tmp_path / "store")), flow_run_id, "reuse", since, task_runs=task_runs, reported=reported
    )
    assert sorted(r["task_run_id"] for r in rows) == sorted(str(t.id) for t in task_runs)
    assert {r["source"] for r in rows} == {"api"}
    assert {r["task_run_id"]: r["rows"] for r in rows}[str(task_runs[0].id)] == 7
    # a task run this process recorded itself (its row perhaps still in its buffer) is never the API's to write
    here = str(task_runs[1].id)
    rows = missing_task_rows(
        HealthStore(str(tmp_path / "store")), flow_run_id, "reuse", since, task_runs=task_runs, recorded_here={here}
    )
    assert [r["task_run_id"] for r in rows] == [str(task_runs[0].id)]


# -- a process pool: every task once ------------------------------------------------------------------------

POOL_FLOW = """
import json, os, threading
import prefect_synthobs as so
from prefect import flow, task
from prefect.task_runners import ProcessPoolTaskRunner

@task
def step(i):
    so.record_rows(3)
    return i

@so.observe(kind="generation", table="customers")
@flow(name=os.environ["FLOW_NAME"], task_runner=ProcessPoolTaskRunner(max_workers=2))
def generate(n):
    return sum(f.result() for f in step.map(range(n)))

if __name__ == "__main__":
    so.configure(store_url=os.environ["STORE"], spool_dir=os.environ["SPOOL"], metrics_mode="none")
    from prefect_synthobs.instrument import flow_end, prefect_api, runtime
    seen = {"shipped": [], "full_reads": {}, "counts": 0}
    end = runtime.Runtime.end_flow_run
    def end_flow_run(self, *args, **kwargs):
        seen["shipped"].append(kwargs.get("shipped"))
        return end(self, *args, **kwargs)
    runtime.Runtime.end_flow_run = end_flow_run
    finished = prefect_api.finished_task_runs
    def counted(client, ids):
        where = threading.current_thread().name
        seen["full_reads"][where] = seen["full_reads"].get(where, 0) + 1
        return finished(client, ids)
    prefect_api.finished_task_runs = counted
    state = generate(12, return_state=True)
    from prefect_synthobs.instrument.instrumentation import get_runtime
    rt = get_runtime()
    rt.flow_end.close(30)  # the reconciliation, now
    rt.recorder.flush()
    from prometheus_client import generate_latest
    from prefect_synthobs.metrics import REGISTRY
    tasks = sum(float(line.rsplit(" ", 1)[1]) for line in generate_latest(REGISTRY).decode().splitlines()
                if line.startswith("synthobs_task_runs_total{"))
    print(json.dumps({"flow_run_id": str(state.state_details.flow_run_id), "task_metric": tasks,
                      "result": state.result(), **seen}))
"""


@pytest.mark.slow  # a spawned process pool
@pytest.mark.usefixtures("prefect_server")
def test_a_process_pool_flow_counts_every_task_once_from_one_read(tmp_path: Path) -> None:
    import prefect_synthobs as so

    script = tmp_path / "pool_flow.py"
    script.write_text(POOL_FLOW)
    env = subprocess_env(
        FLOW_NAME=f"pool-once-{uuid.uuid4().hex[:6]}", STORE=str(tmp_path / "store"), SPOOL=str(tmp_path / "spool")
    )
    proc = run_python(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')", env)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["result"] == sum(range(12))
    assert out["shipped"] == [12]  # Prefect pickled the run context (and the carrier) once per task it sent
    assert out["task_metric"] == 12  # each task counted once in the flow's process
    assert "synthobs-reconcile" not in out["full_reads"]  # reconciliation reused the flow end's read
    store = so.HealthStore(str(tmp_path / "store"))
    flows = store.read("flow_runs")
    (row,) = flows[flows.flow_run_id == out["flow_run_id"]].itertuples()
    assert row.rows == 36  # 12 tasks x 3 rows, each counted once
    tasks = store.read("task_runs")
    tasks = tasks[tasks.flow_run_id == out["flow_run_id"]]
    assert len(tasks) == 12 and tasks.task_run_id.is_unique
