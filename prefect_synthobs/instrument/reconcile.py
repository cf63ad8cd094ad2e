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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterId,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
    TaskRunFilterState,
    TaskRunFilterStateType,
)

from prefect_synthobs import catalog
from prefect_synthobs._log import get_logger
from prefect_synthobs.health.rows import AttemptError, flow_row, task_row
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.health.tables import SOURCE_API, Row
from prefect_synthobs.instrument.remote import (
    FINAL,
    PAGE,
    is_subflow_task_run,
    pages,
    rows_reported,
    settled_task_runs,
)

logger = get_logger()


@dataclass(frozen=True)
class ReconcileResult:
    """What one reconciliation wrote."""

    flow_runs: int
    task_runs: int
    flows_checked: int
    task_runs_checked: int


def _state_type(run: Any) -> str:
    state = getattr(run, "state", None)
    return str(getattr(getattr(state, "type", None), "value", "UNKNOWN"))


def _message(run: Any) -> str | None:
    if _state_type(run) == "COMPLETED":
        return None
    return getattr(getattr(run, "state", None), "message", None)


def _final_error(run: Any) -> list[AttemptError]:
    """The API keeps a run's last state: the last attempt's error (earlier attempts' are not read)."""
    if _state_type(run) in ("COMPLETED", "UNKNOWN"):
        return []
    return [AttemptError(max(int(getattr(run, "run_count", 0) or 0), 1), _state_type(run).title(), _message(run))]


def api_task_row(task_run: Any, flow_name: str | None, redact_pii: bool) -> Row:
    """A ``task_runs`` row (``source = "api"``) from the API's record of a task run."""
    total = getattr(task_run, "total_run_time", None)
    return task_row(
        task_run_id=str(task_run.id),
        flow_run_id=str(task_run.flow_run_id),
        flow_name=flow_name,
        task_name=task_run.task_key.rsplit("-", 1)[0] if task_run.task_key else task_run.name,
        state_type=_state_type(task_run),
        state_name=getattr(task_run.state, "name", None),
        start_time=task_run.start_time,
        end_time=task_run.end_time,
        run_count=task_run.run_count,
        run_time_s=total.total_seconds() if total is not None else None,
        error_type=None if _state_type(task_run) == "COMPLETED" else _state_type(task_run).title(),
        error_message=_message(task_run),
        tags=[str(t) for t in task_run.tags or []],
        redact_pii=redact_pii,
        source=SOURCE_API,
        attempt_errors=_final_error(task_run),
    )


def missing_task_rows(
    store: HealthStore,
    flow_run_id: str,
    flow_name: str | None,
    since: datetime,
    *,
    redact_pii: bool = True,
    settle_seconds: float = 2.0,
) -> list[Row]:
    """Rows (``source = "api"``) for the finished task runs of one flow run that the store lacks.

    Subflow calls' task runs are left out (``is_subflow_task_run``).

    The reconciliation an observed flow's process runs shortly after the flow's
    end, for tasks whose worker never wrote its row (killed, lost, shut down
    with its rows unflushed). Waits up to ``settle_seconds`` for Prefect to
    record the last task runs; a row's ``rows`` comes from the task's
    ``synthobs-rows`` artifact when it left one.
    """
    known = store.read(catalog.TASK_RUNS, columns=["task_run_id", "flow_run_id"], since=since - timedelta(days=1))
    known_ids = set(known.task_run_id[known.flow_run_id == flow_run_id])
    with get_client(sync_client=True) as client:
        missing = [
            run
            for run in settled_task_runs(client, UUID(flow_run_id), settle_seconds)
            if str(run.id) not in known_ids and not is_subflow_task_run(run)
        ]
        reported = rows_reported(client, UUID(flow_run_id)) if missing else {}
    rows = []
    for task_run in missing:
        row = api_task_row(task_run, flow_name, redact_pii)
        row["rows"] = sum(reported.get(str(task_run.id), {}).values())
        rows.append(row)
    return rows


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
        with get_client(sync_client=True) as own:
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
    for run in pages(
        client.read_flow_runs,
        flow_filter=FlowFilter(name=FlowFilterName(any_=list(names))),
        flow_run_filter=FlowRunFilter(
            start_time=FlowRunFilterStartTime(after_=since, before_=until),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=FINAL)),
        ),
    ):
        flow_runs.append(run)
        if len(flow_runs) % PAGE == 0:
            say(f"{len(flow_runs)} flow run(s) read from the API")
    say(f"{len(flow_runs)} flow run(s) read from the API; reading their task runs")
    flow_names = {
        f.id: f.name
        for f in pages(client.read_flows, flow_filter=FlowFilter(id=FlowFilterId(any_=[r.flow_id for r in flow_runs])))
    }
    new_flows: list[Row] = []
    for run in flow_runs:
        if str(run.id) in known_flow_runs:
            continue
        new_flows.append(
            flow_row(
                flow_run_id=str(run.id),
                flow_name=flow_names.get(run.flow_id, "unknown"),
                state_type=_state_type(run),
                state_name=getattr(run.state, "name", None),
                start_time=run.start_time,
                end_time=run.end_time,
                error_type=None if _state_type(run) == "COMPLETED" else _state_type(run).title(),
                error_message=_message(run),
                tags=[str(t) for t in run.tags or []],
                redact_pii=redact_pii,
                source=SOURCE_API,
                run_count=int(run.run_count or 0),
                attempt_errors=_final_error(run),
            )
        )
    subflow_parents = {str(r.parent_task_run_id) for r in flow_runs if r.parent_task_run_id is not None}
    new_tasks: list[Row] = []
    checked = 0
    ids = [r.id for r in flow_runs]
    for start in range(0, len(ids), PAGE):
        by_id = {r.id: flow_names.get(r.flow_id) for r in flow_runs[start : start + PAGE]}
        for task_run in pages(
            client.read_task_runs,
            task_run_filter=TaskRunFilter(
                flow_run_id=TaskRunFilterFlowRunId(any_=ids[start : start + PAGE]),
                state=TaskRunFilterState(type=TaskRunFilterStateType(any_=FINAL)),
            ),
        ):
            if is_subflow_task_run(task_run, subflow_parents):
                continue  # not a task: the subflow's own flow run is compared above
            checked += 1
            if checked % PAGE == 0:
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
