"""An observed flow works as a deployment: served by a runner, run in its own process."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from prefect.deployments import run_deployment

import prefect_synthobs as so
from conftest import served_deployment, stop, subprocess_env

pytestmark = pytest.mark.usefixtures("prefect_server")

FLOW_FILE = """
from prefect import flow, task
import prefect_synthobs as so

@task
def double(x: int) -> int:
    return 2 * x

@so.observe(kind="generation", model_type="copula", table="orders")
@flow(name={name!r})
def served(n: int = 3) -> int:
    so.record_rows(n)
    return sum(double(i) for i in range(n))

if __name__ == "__main__":
    served.serve(name="observed", limit=2)
"""


@pytest.mark.slow
def test_served_observed_flow_records_from_the_runner_process(tmp_path: Path) -> None:
    name = f"served-{uuid.uuid4().hex[:6]}"
    flow_file = tmp_path / "served_flow.py"
    flow_file.write_text(FLOW_FILE.format(name=name))
    store_url = str(tmp_path / "store")
    env = subprocess_env(PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL=store_url)
    with served_deployment(flow_file, f"{name}/observed", env) as runner:
        flow_run = run_deployment(f"{name}/observed", parameters={"n": 4}, timeout=180)
        assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
        # the API says completed before the run's process wrote its flow row: no SIGTERM mid-flow-end
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (Path(store_url) / "flow_runs").exists():
            time.sleep(0.5)
        out = stop(runner)
    store = so.HealthStore(store_url)
    runs = store.read("flow_runs")
    assert list(runs.flow_run_id) == [str(flow_run.id)], out[-3000:]
    row = runs.iloc[0]
    assert (row.state_type, row.kind, row.rows, row.table_name) == ("COMPLETED", "generation", 4, "orders")
    tasks = store.read("task_runs")
    assert len(tasks) == 4 and set(tasks.flow_run_id) == {str(flow_run.id)}
