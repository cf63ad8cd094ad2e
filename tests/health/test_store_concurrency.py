"""Many writers, one store: every row lands once and readers never break."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import prefect_synthobs as so
from conftest import subprocess_env

pytestmark = pytest.mark.usefixtures("prefect_server")

WRITER = """
import sys
from concurrent.futures import ThreadPoolExecutor
import prefect_synthobs as so
from prefect import flow, task

worker = int(sys.argv[1])

@task
def step(i: int) -> int:
    return i

@so.observe(kind="training", model_type="copula")
@flow(name=f"writer-{worker}")
def train(run: int) -> int:
    so.record_epoch(run, loss=0.1 * run)
    return sum(step(i) for i in range(4))

with ThreadPoolExecutor(3) as pool:
    results = list(pool.map(train, range(25)))
assert results == [6] * 25, results
"""


def writers_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Writer processes' environment: the store and spool under ``tmp_path``, and a patient Prefect client."""
    return subprocess_env(
        PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=str(tmp_path / "store"),
        PREFECT_INTEGRATIONS_SYNTHOBS_SPOOL_DIR=str(tmp_path / "spool"),
        # many concurrent flows against the session's SQLite test server on 2 cores:
        # once in several runs it answered create_flow_run with an error before any
        # synthobs code ran. Let Prefect's client retry, as a production client would.
        PREFECT_CLIENT_MAX_RETRIES="10",
        PREFECT_CLIENT_RETRY_EXTRA_CODES="500,504",
        PREFECT_API_REQUEST_TIMEOUT="120",
        **extra,
    )


def read_throughout(store: so.HealthStore, procs: list[subprocess.Popen[str]], tables: tuple[str, ...]) -> None:
    """Read ``tables`` until every writer process has exited; any reader error, or a writer's, fails."""
    reads, errors = 0, []
    while any(p.poll() is None for p in procs):
        for table in tables:
            try:
                store.read(table)
                reads += 1
            except Exception as exc:  # any reader error is a failure
                errors.append(repr(exc))
        time.sleep(0.05)
    for p in procs:
        out, err = p.communicate()
        assert p.returncode == 0, out[-2000:] + err[-4000:]
    assert errors == []
    assert reads > 0


@pytest.mark.slow
def test_four_processes_of_25_concurrent_flows_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    store_url = str(tmp_path / "store")
    env = writers_env(tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(w)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for w in range(4)
    ]
    store = so.HealthStore(store_url)
    read_throughout(store, procs, ("flow_runs", "task_runs", "training_epochs"))

    flows = store.read("flow_runs")
    tasks = store.read("task_runs")
    epochs = store.read("training_epochs")
    assert len(flows) == 100 and flows.flow_run_id.is_unique and flows.event_id.is_unique
    assert sorted(flows.flow_name.value_counts().to_dict().items()) == [(f"writer-{w}", 25) for w in range(4)]
    assert (flows.state_type == "COMPLETED").all()
    assert len(tasks) == 400 and tasks.task_run_id.is_unique and tasks.event_id.is_unique
    assert set(tasks.flow_run_id) == set(flows.flow_run_id)
    assert len(epochs) == 100 and epochs.event_id.is_unique
    assert store.count("task_runs") == 400  # no duplicates even before deduplication
    assert not list((tmp_path / "store").rglob(".*.tmp"))


POOL_WRITER = """
import os, sys
import prefect_synthobs as so
from prefect import flow, task
from prefect.task_runners import ProcessPoolTaskRunner

writer = int(sys.argv[1])

@task
def step(i: int) -> int:
    so.record_rows(i + 1)
    return i

@so.observe(kind="generation", table="customers")
@flow(name=f"pool-writer-{writer}", task_runner=ProcessPoolTaskRunner(max_workers=2))
def generate(run: int) -> int:
    return sum(f.result() for f in [step.submit(i) for i in range(4)])

if __name__ == "__main__":
    assert [generate(run) for run in range(int(os.environ["FLOWS"]))] == [6] * int(os.environ["FLOWS"])
"""


@pytest.mark.slow
def test_processes_whose_flows_run_tasks_on_process_pools_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    """Writers at once from every level: 3 flow processes, each flow's tasks in 2 pool worker processes."""
    store_url = str(tmp_path / "store")
    script = tmp_path / "pool_writer.py"  # a file: spawned pool workers import the flow's module
    script.write_text(POOL_WRITER)
    env = writers_env(tmp_path, FLOWS="2")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(w)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for w in range(3)
    ]
    store = so.HealthStore(store_url)
    read_throughout(store, procs, ("flow_runs", "task_runs"))

    flows = store.read("flow_runs")
    assert len(flows) == 6 and flows.flow_run_id.is_unique and (flows.state_type == "COMPLETED").all()
    assert flows.rows.tolist() == [10] * 6  # 1 + 2 + 3 + 4 rows from the workers of each flow
    deadline = time.monotonic() + 60  # pool workers flush at their exit; allow for a slow one
    while store.count("task_runs") < 24 and time.monotonic() < deadline:
        time.sleep(0.2)
    tasks = store.read("task_runs")
    assert len(tasks) == 24 and tasks.task_run_id.is_unique and tasks.event_id.is_unique
    assert set(tasks.flow_run_id) == set(flows.flow_run_id) and sorted(set(tasks.rows)) == [1, 2, 3, 4]
    assert store.count("task_runs") == 24  # no duplicates even before deduplication
