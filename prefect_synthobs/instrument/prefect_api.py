"""Every call synthobs makes to the Prefect API: the reads, the writes, the events, and the clients they use.

What each call is for lives with its caller (``remote.py``: the work a flow's tasks did in other processes;
``reconcile.py``: rows for runs the hooks never saw; ``privacy_lock.py``: a dataset's lock;
``autolog/progress.py``: a fit's artifacts; the gates, the privacy budget, training health and the GPU sampler:
Prefect events). Here is only how it is asked: which client, which filter, which request, which resource an
event names.

Clients: a call that runs often in a process (a worker's report after each task, a fit's progress, a flow's end
and its reconciliation) uses the process's shared client (``shared_client``: opening one costs a server check,
about 50 ms, a fifth of a flow end's whole budget), kept per API URL and closed by ``close_clients`` (the
instrumentation's shutdown and reset, and process exit); a forked child forgets its parent's, whose connections
are not its to use. A call made once per command opens a client of its own for its duration (``open_client``).
The bounds on a call are its caller's (``call_bounded`` with ``store_timeout_seconds``), or Prefect's client
timeouts. Reads are paginated (``pages``: the API caps ``limit`` at ``PAGE``).
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from prefect.assets import Asset, AssetProperties
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
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
from prefect.client.schemas.objects import StateType
from prefect.context import AssetContext, FlowRunContext, TaskRunContext
from prefect.events import emit_event
from prefect.exceptions import ObjectAlreadyExists, PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL

from prefect_synthobs import catalog
from prefect_synthobs._log import get_logger
from prefect_synthobs.telemetry.redaction import redact, redact_fields

logger = get_logger()

PAGE = 200
"""The Prefect API's largest ``limit``."""

FINAL = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]
"""The final state types: the runs reconciliation and the flow's end read."""

SETTLE_POLL_SECONDS = 0.25
"""How far apart ``settled_task_runs`` reads the count of a flow run's finished task runs until it settles."""
ENOUGH_POLL_SECONDS = 0.05
"""How far apart ``settled_task_runs`` looks again while short of what its caller expects."""

# -- clients ------------------------------------------------------------------------------------------------------

_clients: dict[str | None, SyncPrefectClient] = {}
_clients_lock = threading.Lock()


def shared_client() -> SyncPrefectClient:
    """The process's shared Prefect client for the configured API URL, opened on first use.

    For calls a process makes often (a worker's report after each task, a
    fit's progress): opening a client checks the server, which a worker
    must not pay per task. ``close_clients`` closes it; the next call opens a
    new one.
    """
    url = PREFECT_API_URL.value()
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = get_client(sync_client=True)
            client.__enter__()
            _clients[url] = client
        return client


def close_clients() -> None:
    """Close every shared client (the instrumentation's shutdown and reset; process exit). Never raises.

    A call still using one fails (its caller's warning); the next call opens a new client.
    """
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        with contextlib.suppress(Exception):
            client.__exit__(None, None, None)


def open_clients() -> int:
    """How many shared clients are open now (for tests and diagnostics)."""
    return len(_clients)  # a dict's len is atomic


def _forget_clients() -> None:
    """In a forked child: drop the parent's clients unclosed (their connections are the parent's)."""
    global _clients_lock
    _clients_lock = threading.Lock()  # the parent may have held it while forking
    _clients.clear()


atexit.register(close_clients)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_clients)


@contextlib.contextmanager
def open_client() -> Iterator[SyncPrefectClient]:
    """A Prefect client of its own for the block (closed after it): for calls made once per flow or command."""
    with get_client(sync_client=True) as client:
        yield client


# -- reads --------------------------------------------------------------------------------------------------------


def pages(read: Callable[..., Sequence[Any]], **kwargs: Any) -> Iterator[Any]:
    """Every item of a paginated API read (``read(limit=, offset=, **kwargs)``), ``PAGE`` at a time."""
    offset = 0
    while True:
        page = read(limit=PAGE, offset=offset, **kwargs)
        yield from page
        if len(page) < PAGE:
            return
        offset += PAGE


def read_flow_run(flow_run_id: str) -> Any:
    """The flow run as the Prefect API has it now (bounded by the client's own timeouts)."""
    with open_client() as client:
        return client.read_flow_run(UUID(flow_run_id))


def _finished_filter(flow_run_ids: Sequence[UUID | str]) -> TaskRunFilter:
    return TaskRunFilter(
        flow_run_id=TaskRunFilterFlowRunId(any_=[UUID(str(i)) for i in flow_run_ids]),
        state=TaskRunFilterState(type=TaskRunFilterStateType(any_=FINAL)),
    )


def finished_task_runs(client: SyncPrefectClient, flow_run_ids: Sequence[UUID | str]) -> Iterator[Any]:
    """The task runs in a final state (``FINAL``) of the given flow runs (at most ``PAGE`` of them)."""
    return pages(client.read_task_runs, task_run_filter=_finished_filter(flow_run_ids))


def count_finished_task_runs(client: SyncPrefectClient, flow_run_id: UUID | str) -> int:
    """How many task runs of the flow run are in a final state (one small request: no runs sent back)."""
    body = {"task_runs": _finished_filter([flow_run_id]).model_dump(mode="json", exclude_unset=True)}
    return int(client.request("POST", "/task_runs/count", json=body).json())


def settled_task_runs(
    client: SyncPrefectClient,
    flow_run_id: UUID | str,
    budget: float,
    *,
    enough: Callable[[list[Any]], bool] | None = None,
    at_least: int = 0,
) -> list[Any]:
    """The flow run's finished task runs once the API has them all (Prefect records them from events, a moment
    after they end) or ``budget`` seconds passed. ``enough`` (e.g. the task runs the caller sent elsewhere are
    there): the first read satisfying it; with ``at_least``, the runs are read once a count (one small request,
    every ``ENOUGH_POLL_SECONDS``) says that many are final, so a lagging API costs counts, not full reads;
    else a read, then a count every ``ENOUGH_POLL_SECONDS``. Without ``enough``: until two reads
    ``SETTLE_POLL_SECONDS`` apart agree."""
    deadline = time.monotonic() + budget
    if enough is not None and at_least:
        try:
            while count_finished_task_runs(client, flow_run_id) < at_least:
                if time.monotonic() + ENOUGH_POLL_SECONDS > deadline:
                    break  # out of time: what the API has now
                time.sleep(ENOUGH_POLL_SECONDS)
        except Exception as exc:  # a server without the count (or a failed one): read them as before counting
            logger.debug("synthobs: could not count flow run %s's finished task runs: %s", flow_run_id, exc)
            at_least = 0
    runs = list(finished_task_runs(client, [flow_run_id]))
    if enough is None:
        while time.monotonic() + SETTLE_POLL_SECONDS <= deadline:
            time.sleep(SETTLE_POLL_SECONDS)
            previous, runs = runs, list(finished_task_runs(client, [flow_run_id]))
            if len(runs) == len(previous):
                break
        return runs
    while not enough(runs) and time.monotonic() + ENOUGH_POLL_SECONDS <= deadline:
        time.sleep(ENOUGH_POLL_SECONDS)
        if at_least and time.monotonic() < deadline and count_finished_task_runs(client, flow_run_id) < at_least:
            continue  # still short: no need to read them all again yet
        runs = list(finished_task_runs(client, [flow_run_id]))
    return runs


def finished_flow_runs(
    client: SyncPrefectClient, flow_names: Iterable[str], since: datetime, until: datetime
) -> Iterator[Any]:
    """The flow runs of the named flows in a final state that started in ``[since, until)``."""
    return pages(
        client.read_flow_runs,
        flow_filter=FlowFilter(name=FlowFilterName(any_=list(flow_names))),
        flow_run_filter=FlowRunFilter(
            start_time=FlowRunFilterStartTime(after_=since, before_=until),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=FINAL)),
        ),
    )


def flow_names(client: SyncPrefectClient, flow_ids: Iterable[UUID]) -> dict[UUID, str]:
    """``{flow id: flow name}`` of the given flows (a flow run names its flow by id only)."""
    ids = list(dict.fromkeys(flow_ids))
    return {f.id: f.name for f in pages(client.read_flows, flow_filter=FlowFilter(id=FlowFilterId(any_=ids)))}


def read_artifacts(client: SyncPrefectClient, flow_run_id: UUID | str, *kinds: str) -> list[Any]:
    """The artifacts of the types ``kinds`` left on a flow run (and on its task runs): one paginated read."""
    return list(
        pages(
            client.read_artifacts,
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(str(flow_run_id))]),
                type=ArtifactFilterType(any_=list(kinds)),
            ),
        )
    )


# -- writes -------------------------------------------------------------------------------------------------------


def create_artifact(
    kind: str,
    data: Any,
    description: str | None,
    *,
    flow_run_id: UUID | str | None,
    task_run_id: UUID | str | None = None,
    key: str | None = None,
) -> UUID:
    """Leave an artifact of type ``kind`` on a flow run (and task run), with the shared client; its id."""
    artifact = shared_client().create_artifact(
        ArtifactCreate(
            key=key,
            type=kind,
            data=data,
            description=description,
            flow_run_id=_uuid(flow_run_id),
            task_run_id=_uuid(task_run_id),
        )
    )
    return artifact.id


def update_artifact(artifact_id: UUID, data: Any, description: str | None) -> None:
    """Replace an artifact's data and description, with the shared client."""
    shared_client().update_artifact(artifact_id, ArtifactUpdate(data=data, description=description))


def _uuid(value: UUID | str | None) -> UUID | None:
    return None if value is None else value if isinstance(value, UUID) else UUID(str(value))


# -- events -------------------------------------------------------------------------------------------------------


def flow_run_resource(flow_run_id: Any) -> dict[str, str]:
    """An event's related resource naming a flow run (Automations filter on it)."""
    return {
        catalog.PREFECT_RESOURCE_ID: catalog.RESOURCE_FLOW_RUN_PREFIX + str(flow_run_id),
        catalog.PREFECT_RESOURCE_ROLE: catalog.RESOURCE_ROLE_FLOW_RUN,
    }


def emit(
    event: str,
    *,
    resource_id: str,
    resource_name: str,
    labels: Mapping[str, Any] | None = None,
    payload: Mapping[str, Any],
    flow_run_ids: Iterable[Any] = (),
    redact_pii: bool,
) -> None:
    """Emit the Prefect event ``event`` about one resource, for Automations.

    The resource is ``resource_id`` named ``resource_name`` with ``labels``
    (as text; empty ones left out); each flow run in ``flow_run_ids`` is a
    related resource. The resource and the payload pass PII redaction when
    ``redact_pii`` is on.

    Raises:
        Exception: Prefect could not take the event (callers warn; a run never fails for it).
    """
    resource = {
        catalog.PREFECT_RESOURCE_ID: resource_id,
        catalog.PREFECT_RESOURCE_NAME: resource_name,
        **{key: str(value) for key, value in (labels or {}).items() if value is not None and value != ""},
    }
    outside_tasks(
        lambda: emit_event(
            event=event,
            resource=redact_fields(resource, enabled=redact_pii),
            related=[flow_run_resource(i) for i in flow_run_ids],
            payload=redact_fields(dict(payload), enabled=redact_pii),
        )
    )


EVENT_ASSET_REFERENCED = catalog.EVENT_ASSET_REFERENCED
EVENT_ASSET_MATERIALIZATION = catalog.EVENT_ASSET_MATERIALIZATION
"""The asset events of Prefect's own ``@materialize`` (``AssetContext.emit_events``), ``succeeded`` or ``failed``."""


def run_resources(
    flow_run_id: Any, task_runs: Iterable[tuple[str, str | None]] = (), *, redact_names: bool = False
) -> list[dict[str, str]]:
    """Related resources naming a flow run and task runs as Prefect's events worker names them (role
    ``flow-run`` / ``task-run``, their names when known): given, not left to the worker's run context, so an
    event emitted at a flow's end still names the task runs that made the table. ``redact_names``: the flow
    run's name (read here, from its context) is redacted (``telemetry.redaction.redact``); task runs' names
    come as they are to be sent."""
    ctx = FlowRunContext.get()
    flow_run_name = (
        ctx.flow_run.name if ctx is not None and ctx.flow_run and str(ctx.flow_run.id) == str(flow_run_id) else None
    )
    if flow_run_name and redact_names:
        flow_run_name = redact(flow_run_name)
    out = [flow_run_resource(flow_run_id) | ({catalog.PREFECT_RESOURCE_NAME: flow_run_name} if flow_run_name else {})]
    for task_run_id, name in task_runs:
        resource = {
            catalog.PREFECT_RESOURCE_ID: f"prefect.task-run.{task_run_id}",
            catalog.PREFECT_RESOURCE_ROLE: "task-run",
        }
        out.append(resource | ({catalog.PREFECT_RESOURCE_NAME: name} if name else {}))
    return out


def emit_asset_materialization(
    *,
    key: str,
    upstream: str,
    status: str,
    name: str,
    description: str,
    metadata: Mapping[str, Any],
    materialized_by: str | None,
    flow_run_id: Any,
    task_runs: Iterable[tuple[str, str | None]] = (),
    redact_names: bool = False,
) -> None:
    """Emit the events Prefect's ``@materialize`` emits for asset ``key`` made from asset ``upstream``.

    ``prefect.asset.referenced`` for the upstream, then ``prefect.asset.materialization.<status>`` for
    ``key`` (named ``name``, described by ``description``) with the upstream as a related ``asset``, the
    tool (``materialized_by``) as ``asset-materialized-by``, the flow run and task runs as related runs, and
    ``metadata`` as the payload (already redacted: the caller's; ``redact_names``: see ``run_resources``).
    The resource and related shapes are Prefect's own (``AssetContext.asset_as_resource`` /
    ``asset_as_related`` / ``related_materialized_by``).

    Raises:
        Exception: An invalid key, or Prefect could not take the event (callers warn; a run never fails).
    """
    real = Asset(key=upstream)
    made = Asset(key=key, properties=AssetProperties(name=name, description=description[:2500]))
    runs = run_resources(flow_run_id, task_runs, redact_names=redact_names)
    related = [AssetContext.asset_as_related(real)]
    if materialized_by:
        related.append(AssetContext.related_materialized_by(materialized_by))

    def send() -> None:
        emit_event(event=EVENT_ASSET_REFERENCED, resource=AssetContext.asset_as_resource(real), related=runs)
        emit_event(
            event=EVENT_ASSET_MATERIALIZATION.format(status=status),
            resource=AssetContext.asset_as_resource(made),
            related=[*related, *runs],
            payload=dict(metadata),
        )

    outside_tasks(send)


def outside_tasks(send: Callable[[], object]) -> None:
    """Run ``send`` (event emission) saying explicitly that no task run is current, when none is.

    Prefect's events worker attaches the run context it copies when an event is sent; a context variable
    never set in the sender's context (a flow's hook, after its tasks) is not in that copy, and the worker's
    own thread keeps the value it had when it started: a worker started inside a task names that task run
    in every later event of the flow. Measured with Prefect 3.9.1: the flow-end asset events of a flow whose
    first event came from its task ``train`` named ``train`` as their task run.
    """
    if TaskRunContext.get() is not None:
        send()
        return

    def without_task_run() -> None:
        TaskRunContext.__var__.set(None)  # type: ignore[arg-type]
        send()

    contextvars.copy_context().run(without_task_run)


# -- global concurrency limits (the privacy budget's lock) --------------------------------------------------------


class LeaseGone(RuntimeError):
    """A concurrency lease was released or expired (the API's 410 Gone)."""


def ensure_concurrency_limit(name: str, limit: int = 1) -> None:
    """Create the global concurrency limit ``name`` unless it exists (a client of its own).

    Prefect's upsert reads, then creates: another process may create the
    limit in between (a 409, which Prefect raises as ``ObjectAlreadyExists``);
    it exists then, which is all that is asked.
    """
    with open_client() as client:
        try:
            client.upsert_global_concurrency_limit_by_name(name, limit=limit)
        except (ObjectAlreadyExists, PrefectHTTPStatusError) as exc:
            if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code != 409:
                raise
            client.read_global_concurrency_limit_by_name(name)


def take_slot(client: SyncPrefectClient, name: str, lease_seconds: float) -> tuple[str | None, float]:
    """Try to take one slot of the limit ``name`` under a lease: ``(lease id, 0)``, or ``(None, seconds to
    wait)`` while another holder has it (the API's 423 Locked and its ``Retry-After``)."""
    try:
        response = client.increment_concurrency_slots_with_lease(
            names=[name], slots=1, mode="concurrency", lease_duration=lease_seconds
        )
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 423:
            raise
        return None, float(exc.response.headers.get("Retry-After", 0.5))
    return str(response.json()["lease_id"]), 0.0


def renew_lease(client: SyncPrefectClient, lease_id: str, lease_seconds: float) -> None:
    """Renew a concurrency lease for ``lease_seconds``.

    Raises:
        LeaseGone: It was released or expired.
    """
    try:
        client.renew_concurrency_lease(UUID(lease_id), lease_seconds)
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 410:
            raise LeaseGone(f"lease {lease_id} is gone ({exc})") from exc
        raise


def release_lease(client: SyncPrefectClient, lease_id: str) -> None:
    """Release a concurrency lease (its slot is free again)."""
    client.release_concurrency_slots_with_lease(UUID(lease_id))
