"""Right counts under retries and threads: real observed flows on the session's Prefect server.

A retried flow counts the rows of the attempt that finished and says how many
attempts ran; a retried task keeps every attempt's error (redacted) and its
``duration_s`` leaves the retry waits out; ``record_rows`` from a thread a task
started (plain or in a pool) counts toward the task and the flow; ``record_*``
outside an observed run warns once per process.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.context import TaskRunContext

import prefect_synthobs as so
from conftest import warnings_with
from prefect_synthobs.instrument.instrumentation import reset_runtime
from prefect_synthobs.instrument.measurements import reset_warnings
from prefect_synthobs.metrics import REGISTRY

pytestmark = pytest.mark.usefixtures("prefect_server")


def _rows(store_dir: Path, table: str, flow_name: str) -> list[dict[str, object]]:
    reset_runtime()  # flush
    frame = so.HealthStore(str(store_dir)).read(table)
    frame = frame[frame.flow_name == flow_name].astype(object)
    return [dict(r) for r in frame.where(frame.notna(), None).to_dict("records")]


def test_a_retried_flow_counts_the_rows_of_the_attempt_that_finished(store_dir: Path) -> None:
    name = f"retried-flow-{uuid.uuid4().hex[:6]}"
    attempts: list[int] = []

    @task
    def generate(n: int) -> None:
        so.record_rows(n)

    @so.observe(kind="generation", table="customers")
    @flow(name=name, retries=2, retry_delay_seconds=0)
    def retried() -> str:
        attempts.append(len(attempts) + 1)
        generate(60)
        so.record_rows(40)  # in the flow itself
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails for bob@example.com")
        return "ok"

    assert retried() == "ok"
    # the metric counts every row generated, the failed attempt's included
    labels = {"flow": name, "table": "customers", "model_type": ""}
    assert REGISTRY.get_sample_value("synthobs_generation_rows_total", labels) == 200
    (row,) = _rows(store_dir, "flow_runs", name)
    assert attempts == [1, 2]
    assert row["state_type"] == "COMPLETED"
    assert row["rows"] == 100  # not 200: the failed attempt's rows are not in the row
    assert row["run_count"] == 2
    errors = list(row["attempt_errors"])
    assert len(errors) == 1 and errors[0].startswith("attempt 1: RuntimeError: first attempt fails for")
    assert "bob@example.com" not in errors[0]
    assert row["error_type"] is None


def test_a_flow_failing_every_attempt_keeps_each_attempts_error(store_dir: Path) -> None:
    name = f"failing-flow-{uuid.uuid4().hex[:6]}"
    attempts: list[int] = []

    @so.observe
    @flow(name=name, retries=1, retry_delay_seconds=0)
    def failing() -> None:
        attempts.append(1)
        so.record_rows(7)
        raise (ValueError if len(attempts) == 1 else KeyError)(f"attempt {len(attempts)} broke")

    failing(return_state=True)
    (row,) = _rows(store_dir, "flow_runs", name)
    assert row["state_type"] == "FAILED" and row["run_count"] == 2 and row["rows"] == 7
    errors = list(row["attempt_errors"])
    assert [e.split(":")[0:2] for e in errors] == [["attempt 1", " ValueError"], ["attempt 2", " KeyError"]]


def test_a_retried_task_keeps_every_attempts_error_redacted(store_dir: Path) -> None:
    name = f"retried-task-{uuid.uuid4().hex[:6]}"
    secret_mail = "carol.secret@example.org"

    @task(retries=2, retry_delay_seconds=0)
    def flaky() -> int:
        attempt = TaskRunContext.get().task_run.run_count  # type: ignore[union-attr]
        so.record_rows(10 * attempt)
        if attempt == 1:
            raise ValueError(f"could not reach {secret_mail}")
        if attempt == 2:
            raise KeyError("missing column age")
        return attempt

    @task(retries=1, retry_delay_seconds=0)
    def always_fails() -> None:
        attempt = TaskRunContext.get().task_run.run_count  # type: ignore[union-attr]
        raise (TypeError if attempt == 1 else OSError)(f"attempt {attempt}")

    @so.observe
    @flow(name=name)
    def f() -> None:
        flaky()
        always_fails(return_state=True)

    f()
    tasks = {r["task_name"]: r for r in _rows(store_dir, "task_runs", name)}
    flaky_row, failed_row = tasks["flaky"], tasks["always_fails"]
    assert flaky_row["state_type"] == "COMPLETED" and flaky_row["run_count"] == 3
    assert flaky_row["rows"] == 30  # the last attempt's rows
    assert flaky_row["error_type"] is None and flaky_row["error_message"] is None
    errors = list(flaky_row["attempt_errors"])
    assert len(errors) == 2
    assert errors[0].startswith("attempt 1: ValueError: could not reach ") and secret_mail not in errors[0]
    assert errors[1].startswith("attempt 2: KeyError:") and "missing column age" in errors[1]
    assert failed_row["state_type"] == "FAILED" and failed_row["error_type"] == "OSError"
    assert [e.split(":")[0] for e in failed_row["attempt_errors"]] == ["attempt 1", "attempt 2"]
    assert "TypeError" in failed_row["attempt_errors"][0] and "OSError" in failed_row["attempt_errors"][1]
    (flow_row,) = _rows(store_dir, "flow_runs", name)
    assert flow_row["rows"] == 30  # the flow counts each task's last attempt


def test_rows_recorded_from_threads_a_task_started_count_toward_the_task_and_the_flow(store_dir: Path) -> None:
    name = f"threads-{uuid.uuid4().hex[:6]}"

    @task
    def with_a_thread() -> None:
        thread = threading.Thread(target=so.record_rows, args=(5,))
        thread.start()
        thread.join()

    @task
    def with_a_pool() -> None:
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(so.record_rows, [1, 2, 3, 4]))
        so.record_quality("overall", 0.9)  # in the task's own thread: exact as ever

    @task
    def with_copied_context() -> None:
        thread = threading.Thread(target=contextvars.copy_context().run, args=(so.record_rows, 100))
        thread.start()
        thread.join()

    @so.observe(kind="generation")
    @flow(name=name)
    def f() -> None:
        with_a_thread()
        with_a_pool()
        with_copied_context()
        # a thread the flow itself starts, while no task runs
        thread = threading.Thread(target=so.record_rows, args=(1000,))
        thread.start()
        thread.join()
        epoch_thread = threading.Thread(target=so.record_epoch, args=(3,), kwargs={"loss": 0.5})
        epoch_thread.start()
        epoch_thread.join()

    f()
    labels = {"flow": name, "table": "", "model_type": ""}
    assert REGISTRY.get_sample_value("synthobs_generation_rows_total", labels) == 1115
    tasks = {r["task_name"]: r["rows"] for r in _rows(store_dir, "task_runs", name)}
    assert tasks == {"with_a_thread": 5, "with_a_pool": 10, "with_copied_context": 100}
    (flow_row,) = _rows(store_dir, "flow_runs", name)
    assert flow_row["rows"] == 1115
    epochs = _rows(store_dir, "training_epochs", name)
    assert [(e["epoch"], e["loss"]) for e in epochs] == [(3, 0.5)]


def test_threads_of_concurrent_tasks_count_toward_the_flow_and_warn_once(
    store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two tasks running at once, each starting a plain thread: which task a thread belongs to is unknown (Prefect's
    context is not in the thread), so the rows count toward the flow only, with one warning naming the remedy."""
    name = f"concurrent-threads-{uuid.uuid4().hex[:6]}"
    both_running = threading.Barrier(2, timeout=30)

    @task
    def worker(n: int) -> None:
        both_running.wait()
        thread = threading.Thread(target=so.record_rows, args=(n,))
        thread.start()
        thread.join()
        both_running.wait()

    @so.observe
    @flow(name=name)
    def f() -> None:
        futures = [worker.submit(3), worker.submit(4)]
        for future in futures:
            future.result()

    reset_warnings()
    with caplog.at_level(logging.WARNING, logger="prefect.synthobs"):
        f()
    (flow_row,) = _rows(store_dir, "flow_runs", name)
    assert flow_row["rows"] == 7
    assert sorted(r["rows"] for r in _rows(store_dir, "task_runs", name)) == [0, 0]
    warnings = warnings_with(caplog, "without Prefect's run context")
    assert len(warnings) == 1
    assert "contextvars.copy_context().run" in warnings[0].getMessage()


def test_retry_waits_are_not_task_time(store_dir: Path) -> None:
    name = f"retry-wait-{uuid.uuid4().hex[:6]}"

    @task(retries=1, retry_delay_seconds=1)
    def fails_once() -> None:
        if TaskRunContext.get().task_run.run_count == 1:  # type: ignore[union-attr]
            raise RuntimeError("transient")

    @so.observe
    @flow(name=name)
    def f() -> None:
        fails_once()

    f()
    (row,) = _rows(store_dir, "task_runs", name)
    wall = (row["end_time"] - row["start_time"]).total_seconds()
    assert row["run_count"] == 2
    assert wall >= 1.0  # start to end includes the 1 s wait
    assert row["duration_s"] < 0.9  # the running time does not
    assert row["duration_s"] == pytest.approx(row["run_time_s"])


def test_record_calls_outside_an_observed_run_warn_once_per_process(
    store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reset_warnings()

    @flow(name=f"unobserved-{uuid.uuid4().hex[:6]}")
    def unobserved() -> None:
        so.record_rows(1)

    with caplog.at_level(logging.WARNING, logger="prefect.synthobs"):
        so.record_rows(5)
        so.record_rows(6)
        unobserved()
        thread = threading.Thread(target=so.record_rows, args=(7,))
        thread.start()
        thread.join()
        so.record_epoch(1, loss=0.1)
        so.record_epoch(2, loss=0.1)
        so.record_quality("overall", 0.5)
    outside = warnings_with(caplog, "outside an observed flow run")
    assert [w.getMessage().split(" was called")[0] for w in outside] == [
        "synthobs: record_rows",
        "synthobs: record_epoch",
        "synthobs: record_quality",
    ]
    assert all("only the metrics were updated" in w.getMessage() for w in outside)
