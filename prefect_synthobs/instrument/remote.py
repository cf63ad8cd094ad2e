"""Work a flow's tasks did in other processes, brought back to the flow's own process.

A task on a ``ProcessPoolTaskRunner``, a Dask or a Ray worker writes its own
``task_runs`` row and spans there (see ``observe.WorkerCarrier``). Three things
must still reach the flow's process before it writes the flow row:

* the synthetic rows the task generated (``record_rows``), so the flow row's
  ``rows``/``rows_per_s`` and ``synthobs_generation_rows_total`` count them;
* the task run itself, so ``synthobs_task_runs_total`` and the task duration
  histogram count it once, in the flow's process (workers export no metrics);
* on a worker host other than the flow's, the GPU use of the run's tasks there.

The channel is the Prefect API, the one thing every worker and the flow's
process share on any deployment (another host, a Kubernetes pod): a task that
generated rows leaves a small artifact of type ``synthobs-rows`` on its task
run (one request, only for tasks that recorded rows), a worker on another host
a ``synthobs-gpu`` one on the flow run; at the flow's end its process reads
those artifacts and the flow's finished task runs (paginated; Prefect records
task runs from events a moment after they end, so the count is read until it
settles, at most ``SETTLE_SECONDS``). Every call is bounded by
``store_timeout_seconds``; a failure costs the counts, never the run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL

from prefect_synthobs import catalog
from prefect_synthobs._log import get_logger
from prefect_synthobs.config.active import get_settings
from prefect_synthobs.gpu.sampler import RunGpuSummary
from prefect_synthobs.health.recorder import call_bounded
from prefect_synthobs.health.rows import duration_seconds
from prefect_synthobs.telemetry.redaction import redact_optional

logger = get_logger()

PAGE = 200
"""The Prefect API's largest ``limit``."""

FINAL = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]


def pages(read: Any, **kwargs: Any) -> Iterator[Any]:
    offset = 0
    while True:
        page = read(limit=PAGE, offset=offset, **kwargs)
        yield from page
        if len(page) < PAGE:
            return
        offset += PAGE


NO_TABLE = ""
"""The artifact's key for rows recorded without a table (JSON keys are strings)."""


@dataclass(frozen=True)
class RemoteTask:
    """A finished task run of the flow that ran in another process."""

    task_run_id: str
    task_name: str
    state_type: str
    duration_s: float | None
    """Time spent running, retry waits left out (as the ``task_runs`` rows' ``duration_s``)."""
    run_count: int


@dataclass
class RemoteWork:
    """What the flow's tasks did elsewhere."""

    rows_by_table: dict[str | None, int] = field(default_factory=dict)
    tasks: list[RemoteTask] = field(default_factory=list)
    gpu: dict[str, RunGpuSummary] = field(default_factory=dict)
    """GPU use of the run on other hosts, by host."""

    @property
    def rows(self) -> int:
        return sum(self.rows_by_table.values())


_clients: dict[str | None, SyncPrefectClient] = {}
_clients_lock = threading.Lock()


def api_client() -> SyncPrefectClient:
    """The process's shared Prefect client for synthobs' own API calls (see ``_client``)."""
    return _client()


def _client() -> SyncPrefectClient:
    """A Prefect client kept open for this process's reports (one per API URL).

    Opening a client checks the server (about 50 ms); a worker reporting after
    each task must not pay that each time.
    """
    url = PREFECT_API_URL.value()
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = get_client(sync_client=True)
            client.__enter__()
            _clients[url] = client
        return client


def report_task_rows(
    flow_run_id: str, task_run_id: str, rows_by_table: Mapping[str | None, int], timeout: float
) -> None:
    """Worker side: leave the rows a task generated on its task run, for the flow's process.

    Raises:
        StoreTimeout: The API did not answer within ``timeout`` seconds.
        Exception: The API refused the artifact.
    """
    data = {NO_TABLE if table is None else table: int(n) for table, n in rows_by_table.items() if n}
    if not data:
        return
    total = sum(data.values())
    described = ", ".join(f"{n:,} ({t or 'no table'})" for t, n in data.items())

    def create() -> None:
        _client().create_artifact(
            ArtifactCreate(
                type=catalog.ROWS_ARTIFACT_TYPE,
                data=data,
                description=redact_optional(
                    f"synthobs: {total:,} synthetic rows generated by this task run: {described}",
                    enabled=get_settings().redact_pii,
                ),
                flow_run_id=UUID(flow_run_id),
                task_run_id=UUID(task_run_id),
            )
        )

    call_bounded(create, timeout, name="synthobs-report-rows")


def report_gpu_summary(flow_run_id: str, host: str, summary: RunGpuSummary, timeout: float) -> None:
    """Worker side (another host): leave the GPU use of the run's tasks on this host, for the flow's process.

    Raises:
        StoreTimeout: The API did not answer within ``timeout`` seconds.
        Exception: The API refused the artifact.
    """

    def create() -> None:
        _client().create_artifact(
            ArtifactCreate(
                type=catalog.GPU_ARTIFACT_TYPE,
                data={"host": host, "pid": os.getpid(), **summary.as_dict()},
                description=redact_optional(
                    f"synthobs: GPU use of this flow run's tasks on {host} ({summary.samples} samples)",
                    enabled=get_settings().redact_pii,
                ),
                flow_run_id=UUID(flow_run_id),
            )
        )

    call_bounded(create, timeout, name="synthobs-report-gpu")


def _created(artifact: Any) -> datetime:
    return artifact.created or datetime.min.replace(tzinfo=timezone.utc)


def _task_name(task_run: Any) -> str:
    name = str(getattr(task_run, "name", "") or "")
    # Prefect names a task run "<task name>-<3 hex digits>"
    base, _, suffix = name.rpartition("-")
    return base if base and len(suffix) == 3 else name or "unknown"


SETTLE_SECONDS = 2.0
"""At most this long, the flow's end waits for the API's count of its finished task runs to settle."""
SETTLE_POLL_SECONDS = 0.25


def settled_task_runs(client: SyncPrefectClient, run_id: UUID, budget: float) -> list[Any]:
    """The flow run's finished task runs, once their count stops growing (or ``budget`` seconds passed).

    Prefect's server records task runs from the events their engines emit, a
    moment after they finish: read until two reads ``SETTLE_POLL_SECONDS``
    apart agree.
    """
    deadline = time.monotonic() + budget
    previous: list[Any] | None = None
    while True:
        runs = list(
            pages(
                client.read_task_runs,
                task_run_filter=TaskRunFilter(
                    flow_run_id=TaskRunFilterFlowRunId(any_=[run_id]),
                    state=TaskRunFilterState(type=TaskRunFilterStateType(any_=FINAL)),
                ),
            )
        )
        if previous is not None and len(runs) == len(previous):
            return runs
        if time.monotonic() + SETTLE_POLL_SECONDS > deadline:
            return runs
        previous = runs
        time.sleep(SETTLE_POLL_SECONDS)


def _artifacts(client: SyncPrefectClient, run_id: UUID, kind: str) -> list[Any]:
    return list(
        pages(
            client.read_artifacts,
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]), type=ArtifactFilterType(any_=[kind])
            ),
        )
    )


def rows_reported(client: SyncPrefectClient, run_id: UUID) -> dict[str, dict[str | None, int]]:
    """``{task_run_id: {table: rows}}`` that the flow run's tasks in workers reported (``report_task_rows``).

    A task run executed twice (Dask recomputing a result lost with its worker) counts its last execution.
    """
    latest: dict[str, Any] = {}
    for artifact in _artifacts(client, run_id, catalog.ROWS_ARTIFACT_TYPE):
        if not isinstance(artifact.data, dict):
            continue
        key = str(artifact.task_run_id)
        if key not in latest or _created(artifact) >= _created(latest[key]):
            latest[key] = artifact
    return {
        key: {None if table == NO_TABLE else str(table): int(n) for table, n in artifact.data.items()}
        for key, artifact in latest.items()
    }


def _gpu_reported(client: SyncPrefectClient, run_id: UUID) -> dict[tuple[str, int], RunGpuSummary]:
    """The GPU summaries workers on other hosts reported, merged per ``(host, pid)``."""
    by_process: dict[tuple[str, int], RunGpuSummary] = {}
    for artifact in _artifacts(client, run_id, catalog.GPU_ARTIFACT_TYPE):
        if not isinstance(artifact.data, dict) or not artifact.data.get("host"):
            continue
        process = (str(artifact.data["host"]), int(artifact.data.get("pid") or 0))
        summary = RunGpuSummary.from_dict(artifact.data)
        if process in by_process:  # one process's successive stretches of the run's tasks
            by_process[process].merge(summary)
        else:
            by_process[process] = summary
    return by_process


def is_subflow_task_run(task_run: Any, subflow_parents: set[str] | frozenset[str] = frozenset()) -> bool:
    """Whether ``task_run`` is the task run Prefect adds to a parent flow run for a subflow call.

    Prefect creates it for the call (a "subflow tracking task") but never runs it
    as a task: it has no task span and no ``TaskRunContext``, so the run listener
    never records it (the subflow is recorded as a flow run of its own). The
    server copies each state of the subflow run onto it with
    ``state_details.child_flow_run_id`` naming the subflow run, whose
    ``parent_task_run_id`` names it back.

    Args:
        task_run: A task run read from the Prefect API.
        subflow_parents: ``parent_task_run_id`` of flow runs read alongside (as strings).
    """
    details = getattr(getattr(task_run, "state", None), "state_details", None)
    return getattr(details, "child_flow_run_id", None) is not None or str(task_run.id) in subflow_parents


def read_remote_work(flow_run_id: str, local_task_run_ids: set[str], timeout: float) -> RemoteWork:
    """Flow side: the rows and finished task runs the flow's tasks left in other processes.

    Args:
        flow_run_id: The flow run.
        local_task_run_ids: Task runs already recorded in this process (left out).
        timeout: Seconds to wait for the Prefect API, for both reads together.

    Raises:
        StoreTimeout: The API did not answer within ``timeout`` seconds.
    """
    run_id = UUID(flow_run_id)

    def read() -> RemoteWork:
        work = RemoteWork()
        with get_client(sync_client=True) as client:
            for process, summary in _gpu_reported(client, run_id).items():
                host = process[0]
                # worker processes on one host sample the same devices at the same moments: per host, the
                # process that sampled longest (adding them would count the devices twice)
                if host not in work.gpu or summary.samples > work.gpu[host].samples:
                    work.gpu[host] = summary
            task_runs = settled_task_runs(client, run_id, min(timeout / 2, SETTLE_SECONDS))
            # a retried flow run counts the rows of its last attempt: leave out task runs of earlier attempts
            attempts = {str(t.id): int(getattr(t, "flow_run_run_count", 0) or 0) for t in task_runs}
            last_attempt = max(attempts.values(), default=0)
            for task_run_id, counts in rows_reported(client, run_id).items():
                if task_run_id in local_task_run_ids or attempts.get(task_run_id, last_attempt) < last_attempt:
                    continue
                for table, n in counts.items():
                    work.rows_by_table[table] = work.rows_by_table.get(table, 0) + n
            for task_run in task_runs:
                if str(task_run.id) in local_task_run_ids or is_subflow_task_run(task_run):
                    continue  # (a subflow call's task run: the subflow is recorded as a flow run)
                state = getattr(task_run, "state", None)
                total = getattr(task_run, "total_run_time", None)
                work.tasks.append(
                    RemoteTask(
                        task_run_id=str(task_run.id),
                        task_name=_task_name(task_run),
                        state_type=str(getattr(getattr(state, "type", None), "value", "UNKNOWN")),
                        duration_s=total.total_seconds()
                        if total is not None
                        else duration_seconds(task_run.start_time, task_run.end_time),
                        run_count=int(task_run.run_count or 1),
                    )
                )
        return work

    return call_bounded(read, timeout, name="synthobs-read-remote-work")
