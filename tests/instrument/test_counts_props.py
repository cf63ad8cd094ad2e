"""Right counts on generated plans: rows recorded from tasks, attempts and threads in any mix.

Each example runs a real observed flow on the session's Prefect server: a random number of tasks,
each calling ``record_rows`` with random counts from its own thread, plain threads, a thread pool
or threads under ``contextvars.copy_context()``, over a random number of attempts (every attempt
but the last fails), inside a flow that itself may be retried. The store must hold each task row
with the rows of its last attempt, the flow row with the sum of the last attempts, and ``read``
(the report's reader) each run once. Plus the pure parts: ``TaskRowCount`` and
``attempt_error_texts``, and old files lacking the new columns.
"""

from __future__ import annotations

import contextvars
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prefect import flow, task
from prefect.context import TaskRunContext

import prefect_synthobs as so
from prefect_synthobs import catalog
from prefect_synthobs.health import tables
from prefect_synthobs.health.rows import AttemptError, attempt_error_texts, flow_row, task_row
from prefect_synthobs.instrument.instrumentation import reset_runtime
from prefect_synthobs.instrument.runtime import TaskRowCount

HOW = ("direct", "thread", "pool", "copied")
"""How a ``record_rows`` call is made: in the task's thread, a plain thread, a thread pool, a copied context."""

calls = st.lists(st.tuples(st.integers(0, 1000), st.sampled_from(HOW)), max_size=4)
attempts = st.lists(calls, min_size=1, max_size=3)  # one list of calls per attempt; all but the last fail
plans = st.fixed_dictionaries(
    {
        "tasks": st.lists(attempts, min_size=1, max_size=4),
        "flow_calls": st.lists(st.tuples(st.integers(0, 1000), st.sampled_from(("direct", "thread"))), max_size=3),
        "flow_attempts": st.integers(1, 2),
        "concurrent": st.booleans(),
    }
)


def _make_calls(plan_calls: list[tuple[int, str]]) -> None:
    """Make each ``record_rows`` call its own way; plain threads of one attempt run at the same time."""
    threads: list[threading.Thread] = []
    pooled: list[int] = []
    for n, how in plan_calls:
        if how == "direct":
            so.record_rows(n)
        elif how == "thread":
            threads.append(threading.Thread(target=so.record_rows, args=(n,)))
        elif how == "copied":
            threads.append(threading.Thread(target=contextvars.copy_context().run, args=(so.record_rows, n)))
        else:
            pooled.append(n)
    for thread in threads:
        thread.start()
    if pooled:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(so.record_rows, pooled))
    for thread in threads:
        thread.join()


def _flow_for(name: str, plan: dict[str, Any]) -> Callable[[], Any]:
    flow_attempt = {"n": 0}

    @task(retries=2, retry_delay_seconds=0)
    def step(index: int) -> None:
        attempt = TaskRunContext.get().task_run.run_count  # type: ignore[union-attr]
        per_attempt = plan["tasks"][index]
        _make_calls(per_attempt[attempt - 1])
        if attempt < len(per_attempt):
            raise RuntimeError(f"task {index} attempt {attempt} fails")

    @so.observe(kind="generation")
    @flow(name=name, retries=1, retry_delay_seconds=0)
    def generated() -> None:
        flow_attempt["n"] += 1
        if plan["concurrent"]:
            futures = [step.with_options(name=f"step{i}").submit(i) for i in range(len(plan["tasks"]))]
            for future in futures:
                future.wait()
        else:
            for i in range(len(plan["tasks"])):
                step.with_options(name=f"step{i}")(i)
        _make_calls(plan["flow_calls"])
        if flow_attempt["n"] < plan["flow_attempts"]:
            raise RuntimeError("flow attempt fails")

    return generated


def _exact(plan: dict[str, Any]) -> dict[str, Any]:
    """Concurrent tasks: plain threads cannot be told apart (documented), so those plans use exact calls only."""
    if not plan["concurrent"]:
        return plan
    exact = {"thread": "copied", "pool": "copied"}
    plan = dict(plan)
    plan["tasks"] = [
        [[(n, exact.get(how, how)) for n, how in attempt_calls] for attempt_calls in task_plan]
        for task_plan in plan["tasks"]
    ]
    return plan


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=plans)
def test_flow_and_task_rows_count_the_last_attempts_rows(store_dir: Path, plan: dict[str, Any]) -> None:
    plan = _exact(plan)
    name = f"props-{uuid.uuid4().hex[:8]}"
    _flow_for(name, plan)()
    reset_runtime()  # write everything
    store = so.HealthStore(str(store_dir))
    flows = store.read("flow_runs")
    flows = flows[flows.flow_name == name]
    task_rows = store.read("task_runs")
    task_rows = task_rows[task_rows.flow_name == name]

    last_attempt_rows = [sum(n for n, _ in task[-1]) for task in plan["tasks"]]
    assert len(flows) == 1  # each run once
    (flow_row_,) = flows.itertuples()
    assert flow_row_.state_type == "COMPLETED"
    assert flow_row_.run_count == plan["flow_attempts"]
    assert flow_row_.rows == sum(last_attempt_rows) + sum(n for n, _ in plan["flow_calls"])

    assert task_rows.task_run_id.is_unique  # each task run once
    assert len(task_rows) == len(plan["tasks"]) * plan["flow_attempts"]
    for index, task_plan in enumerate(plan["tasks"]):
        runs = task_rows[task_rows.task_name == f"step{index}"]
        assert len(runs) == plan["flow_attempts"]
        assert set(runs.rows) == {last_attempt_rows[index]}
        assert set(runs.run_count) == {len(task_plan)}
        assert {len(errors) for errors in runs.attempt_errors} == {len(task_plan) - 1}
    assert set(flows.flow_run_id) == set(task_rows.flow_run_id)


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 50)), max_size=30))
def test_a_task_row_count_keeps_the_latest_attempts_rows(calls: list[tuple[int, int]]) -> None:
    """Calls from attempts in any order (late threads of retried attempts included)."""
    count = TaskRowCount("flow")
    latest = 0
    for attempt, n in calls:
        counted = count.add(n, None, attempt)
        assert counted == (attempt >= latest)
        latest = max(latest, attempt)
    expected = sum(n for attempt, n in calls if attempt == latest)
    assert sum(count.final(latest).values()) == expected
    assert count.final(latest + 1) == {}  # the last attempt recorded nothing


_SECRETISH = st.sampled_from(["ann@example.com", "zoë.müller@exämple.de", "123-45-6789"])


@given(
    st.lists(
        st.tuples(st.integers(1, 500), st.one_of(st.none(), st.text(max_size=20)), st.text(max_size=3000), _SECRETISH),
        max_size=80,
    )
)
def test_attempt_errors_are_ordered_redacted_cut_and_bounded(errors: list[tuple[int, str | None, str, str]]) -> None:
    attempts = [AttemptError(a, t, f"{m} {secret} {m}") for a, t, m, secret in errors]
    texts = attempt_error_texts(attempts)
    assert len(texts) == min(len(attempts), catalog.MAX_ATTEMPT_ERRORS)
    assert all(len(text) <= catalog.MAX_ERROR_CHARS for text in texts)
    assert not any(secret in text for text in texts for secret in ("ann@example.com", "123-45-6789"))
    numbers = [int(t.split(":")[0].split()[1]) for t in texts if t.startswith("attempt ")]
    assert numbers == sorted(numbers)
    if len(attempts) > catalog.MAX_ATTEMPT_ERRORS:
        assert sum("left out" in t and not t.startswith("attempt ") for t in texts) == 1


def test_task_duration_is_running_time_and_rows_say_so() -> None:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    end = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
    row = task_row(
        task_run_id="t",
        flow_run_id="f",
        flow_name="flow",
        task_name="task",
        state_type="COMPLETED",
        state_name="Completed",
        start_time=start,
        end_time=end,
        run_count=2,
        run_time_s=1.5,
        attempt_errors=[AttemptError(1, "ValueError", "mail eve@example.com")],
    )
    assert row["duration_s"] == 1.5  # not the 5 s from start to end, which includes the retry wait
    (error,) = row["attempt_errors"]
    assert error.startswith("attempt 1: ValueError: mail ") and "eve@example.com" not in error
    no_run_time = task_row(
        task_run_id="t",
        flow_run_id="f",
        flow_name="flow",
        task_name="task",
        state_type="COMPLETED",
        state_name="Completed",
        start_time=start,
        end_time=end,
        run_count=1,
    )
    assert no_run_time["duration_s"] == 5.0 and no_run_time["attempt_errors"] == []


def test_files_written_before_the_new_columns_read_them_as_nulls(tmp_path: Path) -> None:
    """A store written by an older version (no ``run_count``/``attempt_errors``) stays readable."""
    new_columns = {catalog.FLOW_RUNS: ["run_count", "attempt_errors"], catalog.TASK_RUNS: ["attempt_errors"]}
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = {
        catalog.FLOW_RUNS: flow_row(
            flow_run_id="old-flow", flow_name="f", state_type="COMPLETED", state_name="Completed",
            start_time=start, end_time=start, rows=3,
        ),
        catalog.TASK_RUNS: task_row(
            task_run_id="old-task", flow_run_id="old-flow", flow_name="f", task_name="t", state_type="COMPLETED",
            state_name="Completed", start_time=start, end_time=start, run_count=1,
        ),
    }  # fmt: skip
    for table, row in rows.items():
        old_schema = pa.schema([f for f in tables.schema_for(table) if f.name not in new_columns[table]])
        old_row = {k: v for k, v in row.items() if k not in new_columns[table]}
        directory = tmp_path / table / "date=2026-01-01"
        directory.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist([old_row], schema=old_schema), directory / "part-old.parquet")
    store = so.HealthStore(str(tmp_path))
    flows = store.read(catalog.FLOW_RUNS)
    tasks = store.read(catalog.TASK_RUNS)
    assert flows.flow_run_id.tolist() == ["old-flow"] and flows.rows.tolist() == [3]
    assert flows.run_count.isna().all() and flows.attempt_errors.isna().all()
    assert tasks.task_run_id.tolist() == ["old-task"] and tasks.attempt_errors.isna().all()
    # a new row beside the old one: both read, each once
    store.write(
        catalog.TASK_RUNS,
        [dict(rows[catalog.TASK_RUNS], event_id=tables.new_event_id(), task_run_id="new-task", attempt_errors=["x"])],
    )
    tasks = store.read(catalog.TASK_RUNS)
    assert sorted(tasks.task_run_id) == ["new-task", "old-task"]
