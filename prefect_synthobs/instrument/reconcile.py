"""Reconciliation: rows for the runs the hooks never saw, from the Prefect API's records.

A worker lost, a SIGKILL, an infrastructure crash: the process that ran a flow
or task run may never have written its row. ``reconcile`` reads, from the
Prefect API, the finished runs of the flows the store knows (by flow name) in a
time window and their task runs, and writes a row (``source = "api"``) for each
run the store does not hold yet (compared by run id). Running it twice adds
nothing. Requests are paginated (the API caps ``limit`` at 200).

The task run Prefect adds to a parent flow run for each subflow call is left
out, as the run listener leaves it out (``is_subflow_task_run``): the subflow is
a flow run of its own, and its wrapper would count its time a second time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient

from prefect_synthobs import catalog
from prefect_synthobs._log import get_logger
from prefect_synthobs.health.rows import row_of
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.health.tables import Row
from prefect_synthobs.instrument import prefect_api
from prefect_synthobs.instrument.prefect_runs import (
    api_flow_run_ended,
    api_task_run_ended,
    is_subflow_task_run,
    subflow_parents_of,
)
from prefect_synthobs.instrument.remote import rows_reported

logger = get_logger()

UNKNOWN_FLOW = "unknown"
"""The ``flow_name`` of a flow run whose flow the API no longer has."""


@dataclass(frozen=True)
class ReconcileResult:
    """What one reconciliation wrote."""

    flow_runs: int
    task_runs: int
    flows_checked: int
    task_runs_checked: int


def api_task_row(task_run: Any, flow_name: str | None, redact_pii: bool, *, rows: int = 0) -> Row:
    """A ``task_runs`` row (``source = "api"``) from the API's record of a task run."""
    return row_of(api_task_run_ended(task_run, flow_name, rows=rows), redact_pii=redact_pii)


def missing_task_rows(
    store: HealthStore,
    flow_run_id: str,
    flow_name: str | None,
    since: datetime,
    *,
    redact_pii: bool = True,
    settle_seconds: float = 2.0,
    task_runs: Sequence[Any] | None = None,
    reported: Mapping[str, Mapping[str | None, int]] | None = None,
    recorded_here: Collection[str] = (),
) -> list[Row]:
    """Rows (``source = "api"``) for the finished task runs of one flow run that the store lacks.

    Subflow calls' task runs are left out (``is_subflow_task_run``).

    The reconciliation an observed flow's process runs shortly after the flow's
    end, for tasks whose worker never wrote its row (killed, lost, shut down
    with its rows unflushed). A row's ``rows`` comes from the task's
    ``synthobs-rows`` artifact when it left one.

    Args:
        task_runs: The flow run's finished task runs, already read at its end with every task run its
            process sent elsewhere among them (``RemoteWork.complete``): no API read here then.
            ``None``: read them, waiting up to ``settle_seconds`` for Prefect to record the last ones.
        reported: With ``task_runs``, the rows the tasks reported (``RemoteWork.reported``).
        recorded_here: Task runs this process recorded itself (their rows are in its buffer, spool or the
            store: a subflow's wait for its parent's end to be written), left out.
    """
    known = store.read(catalog.TASK_RUNS, columns=["task_run_id", "flow_run_id"], since=since - timedelta(days=1))
    known_ids = set(known.task_run_id[known.flow_run_id == flow_run_id])

    def lacking(runs: Iterable[Any]) -> list[Any]:
        return [
            run
            for run in runs
            if (key := str(run.id)) not in known_ids and key not in recorded_here and not is_subflow_task_run(run)
        ]

    if task_runs is not None:
        missing, by_task = lacking(task_runs), dict(reported or {})
    else:
        run_id = UUID(flow_run_id)
        client = prefect_api.shared_client()
        missing = lacking(prefect_api.settled_task_runs(client, run_id, settle_seconds))
        by_task = dict(rows_reported(client, run_id)) if missing else {}
    return [
        api_task_row(task_run, flow_name, redact_pii, rows=sum(by_task.get(str(task_run.id), {}).values()))
        for task_run in missing
    ]


def reconcile(
    store: HealthStore,
    *,
    since: datetime,
    until: datetime | None = None,
    client: SyncPrefectClient | None = None,
    redact_pii: bool = True,
    progress: Callable[[str], None] | None = None,
) -> ReconcileResult:
    """Write rows for the finished runs in ``[since, until)`` that the store lacks.

    The task runs Prefect adds to parent flow runs for subflow calls are neither
    compared nor written (``is_subflow_task_run``): the hooks never record them.

    Args:
        store: The health store to complete.
        since: Runs that started at or after this (UTC if naive).
        until: Runs that started before this (default: now).
        client: A Prefect sync client (default: a new one for the configured API).
        redact_pii: Redact PII in error messages (as the hooks do).
        progress: Called with a short line (``"400 flow run(s) read from the API"``) as the
            reconciliation pages through the API (``synthobs reconcile`` shows it); an exception it
            raises stops the reconciliation.

    Returns:
        How many rows were written, and how many runs were compared.
    """
    since = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
    until = until or datetime.now(timezone.utc)
    # the store's side, one day wider: a run that started just before ``since`` may have its row there
    lo, hi = since - timedelta(days=1), until + timedelta(days=1)
    known_flows = store.read(catalog.FLOW_RUNS, columns=["flow_run_id", "flow_name"], since=lo, until=hi)
    known_tasks = set(store.read(catalog.TASK_RUNS, columns=["task_run_id"], since=lo, until=hi).task_run_id)
    names = sorted(set(known_flows.flow_name.dropna()))
    if not names:
        return ReconcileResult(0, 0, 0, 0)
    say = progress or _silent
    known_runs = set(known_flows.flow_run_id)
    if client is None:
        with prefect_api.open_client() as own:
            return _reconcile(store, own, names, known_runs, known_tasks, since, until, redact_pii, say)
    return _reconcile(store, client, names, known_runs, known_tasks, since, until, redact_pii, say)


def _silent(_line: str) -> None:
    pass


def _reconcile(
    store: HealthStore,
    client: SyncPrefectClient,
    names: Sequence[str],
    known_flow_runs: set[str],
    known_task_runs: set[str],
    since: datetime,
    until: datetime,
    redact_pii: bool,
    say: Callable[[str], None],
) -> ReconcileResult:
    say(f"reading the finished flow runs of {len(names)} flow(s) from the API")
    flow_runs: list[Any] = []
    for run in prefect_api.finished_flow_runs(client, names, since, until):
        flow_runs.append(run)
        if len(flow_runs) % prefect_api.PAGE == 0:
            say(f"{len(flow_runs)} flow run(s) read from the API")
    say(f"{len(flow_runs)} flow run(s) read from the API; reading their task runs")
    flow_names = prefect_api.flow_names(client, [r.flow_id for r in flow_runs])
    new_flows = [
        row_of(api_flow_run_ended(run, flow_names.get(run.flow_id, UNKNOWN_FLOW)), redact_pii=redact_pii)
        for run in flow_runs
        if str(run.id) not in known_flow_runs
    ]
    subflow_parents = subflow_parents_of(flow_runs)
    new_tasks: list[Row] = []
    checked = 0
    ids = [r.id for r in flow_runs]
    page = prefect_api.PAGE
    for start in range(0, len(ids), page):
        by_id = {r.id: flow_names.get(r.flow_id) for r in flow_runs[start : start + page]}
        for task_run in prefect_api.finished_task_runs(client, ids[start : start + page]):
            if is_subflow_task_run(task_run, subflow_parents):
                continue  # not a task: the subflow's own flow run is compared above
            checked += 1
            if checked % page == 0:
                say(f"{checked} task run(s) of {len(ids)} flow run(s) read from the API")
            if str(task_run.id) in known_task_runs:
                continue
            new_tasks.append(api_task_row(task_run, by_id.get(task_run.flow_run_id), redact_pii))
    say(f"{checked} task run(s) read; writing {len(new_flows)} flow and {len(new_tasks)} task row(s)")
    if new_flows:
        store.write(catalog.FLOW_RUNS, new_flows)
    if new_tasks:
        store.write(catalog.TASK_RUNS, new_tasks)
    if new_flows or new_tasks:
        logger.info(
            "synthobs: reconciled %d flow run(s) and %d task run(s) from the Prefect API",
            len(new_flows),
            len(new_tasks),
        )
    return ReconcileResult(len(new_flows), len(new_tasks), len(flow_runs), checked)
