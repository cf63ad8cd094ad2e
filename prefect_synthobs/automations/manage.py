"""Apply, list and delete synthobs' automations against the Prefect API (the edge: every call is here).

``apply`` converges: it reads every automation, keeps the ones synthobs manages under the prefix
(``specs.is_managed``), and then creates what is missing, updates in place what differs (same
id), leaves alone what matches, and deletes what synthobs manages under that prefix but the
options no longer ask for (a flow whose p95 trigger has gone, a threshold set to 0). An
automation synthobs does not manage is never changed: one whose name a spec wants is a conflict,
reported before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from uuid import UUID

import httpx
from prefect.automations import AutomationCore
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.sorting import AutomationSort
from prefect.events.schemas.automations import Automation
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL

from prefect_synthobs import catalog
from prefect_synthobs.automations.specs import P95, Notify, Spec, is_managed, p95_per_flow
from prefect_synthobs.health.store import HealthStore

PAGE = 200
"""Automations read per request."""

Verb = Literal["create", "update", "unchanged", "delete"]


class AutomationsError(Exception):
    """Something the user must fix (no server, a missing block, a name conflict): a message, no traceback."""


@dataclass(frozen=True)
class Step:
    """One change ``apply`` makes (or, with ``--dry-run``, would make)."""

    verb: Verb
    name: str
    automation: AutomationCore
    id: UUID | None = None


# -- the API ------------------------------------------------------------------------------------------------------


def api_url() -> str:
    """The configured Prefect API URL.

    Raises:
        AutomationsError: None is configured: automations made on Prefect's temporary server would vanish
            with this command.
    """
    url = PREFECT_API_URL.value()
    if not url:
        raise AutomationsError(
            "no Prefect server is configured (PREFECT_API_URL is unset): automations on Prefect's temporary "
            "server vanish when this command ends. Start one (prefect server start) and set PREFECT_API_URL "
            "(prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api), or try `synthobs demo`"
        )
    return str(url)


@contextmanager
def client() -> Iterator[SyncPrefectClient]:
    """A Prefect client for the configured server; an unreachable or failing API becomes ``AutomationsError``."""
    url = api_url()
    try:
        with get_client(sync_client=True) as prefect:
            yield prefect
    except (httpx.TransportError, OSError) as exc:
        raise AutomationsError(f"the Prefect API at {url} cannot be reached ({type(exc).__name__}: {exc})") from exc
    except PrefectHTTPStatusError as exc:
        body = exc.response.text[:500]
        raise AutomationsError(
            f"the Prefect API at {url} answered {exc.response.status_code} to "
            f"{exc.request.method} {exc.request.url.path}: {body}"
        ) from exc
    except RuntimeError as exc:  # Prefect's "Failed to reach API at ..."
        if "reach API" not in str(exc):
            raise
        raise AutomationsError(str(exc)) from exc


def read_all(prefect: SyncPrefectClient) -> list[Automation]:
    """Every automation on the server (paginated, by name)."""
    out: list[Automation] = []
    while True:
        page = prefect.read_automations(sort=AutomationSort.NAME_ASC, limit=PAGE, offset=len(out))
        out += page
        if len(page) < PAGE:
            return out


def managed(automations: Sequence[Automation], prefix: str) -> list[Automation]:
    """The automations synthobs manages under ``prefix``, by name."""
    return sorted((a for a in automations if is_managed(a, prefix)), key=lambda a: (a.name, str(a.id)))


# -- apply --------------------------------------------------------------------------------------------------------


def _core(automation: AutomationCore) -> AutomationCore:
    """``automation`` as the fields ``apply`` sets (an ``Automation`` read back loses its id and timestamps)."""
    return AutomationCore.model_validate(automation.model_dump(include=set(AutomationCore.model_fields)))


def _for_update(automation: AutomationCore) -> AutomationCore:
    """``automation`` with every field set, as Prefect's update (``exclude_unset``) must send it, but for
    ``owner_resource`` (the server answers 422 to it on update)."""
    fields = set(AutomationCore.model_fields) - {"owner_resource"}
    return AutomationCore.model_validate(automation.model_dump(include=fields))


def same(existing: AutomationCore, desired: AutomationCore) -> bool:
    """Whether the server's automation already is what the spec asks for (sets compare as sets)."""
    return _core(existing) == _core(desired)


def plan(existing: Sequence[Automation], specs: Sequence[Spec], prefix: str, *, keep: str | None = None) -> list[Step]:
    """The steps that make the server hold ``specs`` under ``prefix`` (pure); managed automations whose names
    start with ``keep`` are never deleted (the p95 ones when the health store could not be read).

    Raises:
        AutomationsError: An automation synthobs does not manage has a name a spec wants.
    """
    ours = managed(existing, prefix)
    wanted = {spec.automation.name for spec in specs}
    clashes = sorted({a.name for a in existing if a.name in wanted and not is_managed(a, prefix)})
    if clashes:
        raise AutomationsError(
            f"automation(s) {', '.join(map(repr, clashes))} exist but synthobs does not manage them (no "
            f"synthobs-managed tag for prefix {prefix!r}); nothing was changed: rename them, or pick another --prefix"
        )
    by_name: dict[str, list[Automation]] = {}
    for automation in ours:
        by_name.setdefault(automation.name, []).append(automation)
    steps: list[Step] = []
    for spec in specs:
        found = by_name.pop(spec.automation.name, [])
        if not found:
            steps.append(Step("create", spec.automation.name, spec.automation))
            continue
        first, *duplicates = found
        verb: Verb = "unchanged" if same(first, spec.automation) else "update"
        steps.append(Step(verb, spec.automation.name, spec.automation, first.id))
        steps += [Step("delete", d.name, d, d.id) for d in duplicates]  # a duplicate an interrupted run left
    for leftover in by_name.values():
        steps += [Step("delete", a.name, a, a.id) for a in leftover if not (keep and a.name.startswith(keep))]
    return steps


def execute(prefect: SyncPrefectClient, steps: Sequence[Step]) -> list[Step]:
    """Make the changes ``steps`` name; the steps with the ids the server gave."""
    done: list[Step] = []
    for step in steps:
        if step.verb == "create":
            done.append(Step("create", step.name, step.automation, prefect.create_automation(step.automation)))
            continue
        assert step.id is not None
        if step.verb == "update":
            # Prefect's update sends only the fields set (exclude_unset): an action's ``type`` is a default, so it
            # would be dropped and the server would read PauseDeployment as run-deployment, CancelFlowRun as
            # do-nothing. Re-validated from a dump, every field counts as set.
            prefect.update_automation(step.id, _for_update(step.automation))
        elif step.verb == "delete":
            prefect.delete_automation(step.id)
        done.append(step)
    return done


def delete_managed(prefect: SyncPrefectClient, prefix: str, *, dry_run: bool = False) -> list[Automation]:
    """Delete exactly the automations synthobs manages under ``prefix``; those it deleted (or would)."""
    doomed = managed(read_all(prefect), prefix)
    if not dry_run:
        for automation in doomed:
            prefect.delete_automation(automation.id)
    return doomed


# -- what the options name ----------------------------------------------------------------------------------------


def resolve_notify(prefect: SyncPrefectClient, name: str) -> Notify:
    """The block ``--notify`` names: ``TYPE-SLUG/NAME`` or a bare name; a Webhook block or a notification block.

    Raises:
        AutomationsError: No such block, several with that name, or a block that cannot notify.
    """
    slug, _, block_name = name.rpartition("/")
    documents: list[Any]
    if slug:
        try:
            documents = [prefect.read_block_document_by_name(block_name, slug)]
        except ObjectNotFound:
            documents = []
    else:
        documents = [d for d in _block_documents(prefect) if d.name == block_name]
    usable = [d for d in documents if _can_notify(d)]
    if not usable:
        hint = f" ({', '.join(_kind(d) for d in documents)}: not a Webhook or notification block)" if documents else ""
        raise AutomationsError(
            f"--notify: no Webhook or notification block named {name!r}{hint}; list them with `prefect block ls`, "
            'create one with e.g. `python -c "from prefect.blocks.webhook import Webhook; '
            "Webhook(url='https://example.org/hook').save('ops-hook')\"`"
        )
    if len(usable) > 1:
        raise AutomationsError(
            f"--notify: several blocks are named {name!r} ({', '.join(_kind(d) for d in usable)}); "
            "name one as TYPE-SLUG/NAME"
        )
    document = usable[0]
    return Notify(document.id, f"{_kind(document)}", webhook=_slug(document) == "webhook")


def _block_documents(prefect: SyncPrefectClient) -> list[Any]:
    out: list[Any] = []
    while True:
        page = prefect.read_block_documents(offset=len(out), limit=PAGE, include_secrets=False)
        out += page
        if len(page) < PAGE:
            return out


def _slug(document: Any) -> str:
    block_type = getattr(document, "block_type", None)
    return str(getattr(block_type, "slug", "") or "")


def _kind(document: Any) -> str:
    return f"{_slug(document) or '?'}/{document.name}"


def _can_notify(document: Any) -> bool:
    capabilities = getattr(getattr(document, "block_schema", None), "capabilities", None) or []
    return _slug(document) == "webhook" or "notify" in capabilities


def resolve_deployment(prefect: SyncPrefectClient, name: str) -> UUID:
    """The id of deployment ``FLOW/DEPLOYMENT``.

    Raises:
        AutomationsError: No such deployment.
    """
    if name.count("/") != 1 or not all(name.split("/")):
        raise AutomationsError(f"--pause-deployment: name the deployment as FLOW/DEPLOYMENT, got {name!r}")
    try:
        return prefect.read_deployment_by_name(name).id
    except ObjectNotFound:
        raise AutomationsError(
            f"--pause-deployment: no deployment {name!r} (list them with `prefect deployment ls`)"
        ) from None


# -- the p95 triggers' history ------------------------------------------------------------------------------------


def store_p95(
    store: HealthStore, *, days: int, min_runs: int, now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
) -> tuple[P95 | None, str | None]:
    """Each flow's p95 run time over the last ``days`` days of completed runs in the store's ``flow_runs``;
    ``(None, why)`` when the store has none to read."""
    if not store.exists():
        return None, f"no health store at {store.url}"
    frame = store.read(
        catalog.FLOW_RUNS, since=now() - timedelta(days=days), columns=["flow_name", "state_type", "duration_s"]
    )
    if frame.empty:
        return None, f"no flow runs in the last {days} days in {store.url}"
    done = frame[frame.state_type == "COMPLETED"]
    durations = {
        str(flow): [float(v) for v in group.duration_s if v is not None and not _nan(v)]
        for flow, group in done.groupby("flow_name", observed=True)
    }
    return p95_per_flow(durations, min_runs), None


def _nan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True
