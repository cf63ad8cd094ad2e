"""A scheduled flow that writes rows for the runs the hooks never saw (a lost
worker, a SIGKILL, an infrastructure crash), from the Prefect API's records.

Serve it (``python flows/reconcile.py``) or deploy it; it is idempotent, so a
window that overlaps the previous run's adds nothing twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow, get_run_logger

from prefect_synthobs import HealthStore
from prefect_synthobs.instrument.reconcile import reconcile


@flow(name="synthobs-reconcile")
def reconcile_store(hours: float = 24.0, store_url: str | None = None) -> dict[str, int]:
    """Reconcile the last ``hours`` of runs into the health store."""
    result = reconcile(HealthStore(store_url), since=datetime.now(timezone.utc) - timedelta(hours=hours))
    get_run_logger().info(
        "reconciled %d flow run(s) and %d task run(s) (%d flow runs compared)",
        result.flow_runs,
        result.task_runs,
        result.flows_checked,
    )
    return {"flow_runs": result.flow_runs, "task_runs": result.task_runs}


if __name__ == "__main__":
    reconcile_store.serve(name="synthobs-reconcile-hourly", interval=3600)
