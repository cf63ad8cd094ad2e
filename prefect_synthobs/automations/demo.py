"""``synthobs demo``'s automations: applied on the demo's server before the pipeline, read back after it.

The demo applies synthobs' automations under ``DEMO_PREFIX`` (default options: actions
DoNothing, so firing is recorded in the event feed and nothing else happens), runs the pipeline
(whose release gate fails on purpose), then reads the ``prefect.automation.triggered`` events of
the quality-gate automation and the ``prefect.automation.action.executed|failed`` events that
follow them, waiting at most ``WAIT_SECONDS``: Prefect's server evaluates the trigger at once,
but its event persister writes events in batches (every 5 s at most), so they read back a few
seconds late. The automations are deleted afterwards (the demo leaves none behind on a server of
the user's own; a user's own ``synthobs/`` automations are never touched). Nothing here stops
the demo: an error is one line in its summary.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

from prefect_synthobs import catalog
from prefect_synthobs.automations import manage
from prefect_synthobs.automations.specs import Options, build
from prefect_synthobs.reports.demo_summary import automation_lines

DEMO_PREFIX = "synthobs-demo/"
GATE_AUTOMATION = DEMO_PREFIX + "quality-gate-failed"
WAIT_SECONDS = 15.0
"""The longest the demo waits for the automation to report after the pipeline (typically 1 to 6 s)."""
POLL_SECONDS = 0.5
TRIGGERED = "prefect.automation.triggered"
ACTION_EVENTS = ("prefect.automation.action.executed", "prefect.automation.action.failed")


@dataclass(frozen=True)
class Firing:
    """The gate automation fired once: for which gate (from the triggering event), and what its action did."""

    automation: str
    gate: str | None
    table: str | None
    value: Any
    threshold: Any
    action: str | None  # "do-nothing executed", "call-webhook failed: ...", None: not reported yet


@dataclass
class DemoAutomations:
    """What the demo applied and what came of it."""

    applied: int = 0
    error: str | None = None
    firings: list[Firing] = field(default_factory=list)
    waited_s: float = 0.0
    removed: bool = False
    automation_id: UUID | None = None
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def summary_lines(self) -> list[str]:
        """The demo summary's lines about the automations (``reports.demo_summary.automation_lines``)."""
        return automation_lines(
            DEMO_PREFIX,
            self.applied,
            [asdict(f) for f in self.firings],
            waited_s=self.waited_s,
            timeout_s=WAIT_SECONDS,
            removed=self.removed,
            error=self.error,
        )

    def watch(self, expected: int = 1, timeout: float = WAIT_SECONDS, *, gates: Collection[str] = ()) -> None:
        """Wait (at most ``timeout`` seconds) for ``expected`` firings of the gate automation (one per failed
        gate: it fires on each ``synthobs.quality.gate.failed`` event) and their actions. Never raises.

        Each firing reads back on its own: Prefect's event persister writes in batches, so a run whose two
        gates failed can show one firing a second before the other; stopping at the first left the other
        out of the summary. ``gates``: the gates whose firings are awaited, by name (the release's failed
        gates): firings for other gates (a challenger's check, another run on the server) then count for
        nothing, where they could end the wait before the release's own firing was read back."""
        if self.automation_id is None or expected < 1:
            return
        awaited = set(gates)
        began = time.monotonic()
        try:
            with get_client(sync_client=True) as prefect:
                while True:
                    self.firings = _firings(prefect, self.automation_id, self.started)
                    acted = [f for f in self.firings if f.action]
                    if awaited:
                        reported = awaited <= {f.gate for f in acted}
                    else:
                        reported = len(self.firings) >= expected and len(acted) == len(self.firings)
                    if reported or time.monotonic() - began > timeout:
                        break
                    time.sleep(POLL_SECONDS)
        except Exception as exc:
            self.error = f"could not read the automation's events ({type(exc).__name__}: {exc})"
        self.waited_s = time.monotonic() - began


@contextmanager
def demo_automations() -> Iterator[DemoAutomations]:
    """Apply synthobs' automations under ``DEMO_PREFIX`` for the block; delete them after it. Never raises."""
    state = DemoAutomations()
    try:
        with get_client(sync_client=True) as prefect:
            # not the stuck and zombie watches: they could not fire within a demo that lasts a minute, and they
            # match every flow-run event, whose trigger buckets the temporary SQLite server then writes beside
            # the pipeline's own writes (seen: "database is locked" tracebacks on Prefect 3.7.5)
            specs = build(Options(prefix=DEMO_PREFIX, stuck_minutes=0, zombie_minutes=0))
            steps = manage.plan(manage.read_all(prefect), specs, DEMO_PREFIX)
            manage.execute(prefect, [s for s in steps if s.verb != "unchanged"])
            ours = manage.managed(manage.read_all(prefect), DEMO_PREFIX)
            state.applied = len(ours)
            state.automation_id = next((a.id for a in ours if a.name == GATE_AUTOMATION), None)
    except Exception as exc:
        state.error = f"automations not applied ({type(exc).__name__}: {exc})"
    try:
        yield state
    finally:
        if state.applied:
            try:
                with get_client(sync_client=True) as prefect:
                    manage.delete_managed(prefect, DEMO_PREFIX)
                state.removed = True
            except Exception as exc:
                state.error = state.error or f"automations not removed ({type(exc).__name__}: {exc})"


def _events(prefect: SyncPrefectClient, names: list[str], resource: str, since: datetime) -> list[Any]:
    event_filter = EventFilter(
        event=EventNameFilter(name=names),
        resource=EventResourceFilter(id=[resource]),
        occurred=EventOccurredFilter(since=since),
    )
    return list(prefect.read_events(filter=event_filter, limit=50).events)


def _firings(prefect: SyncPrefectClient, automation_id: UUID, since: datetime) -> list[Firing]:
    resource = f"prefect.automation.{automation_id}"
    triggered = _events(prefect, [TRIGGERED], resource, since)
    actions = _events(prefect, list(ACTION_EVENTS), resource, since)
    outcome: dict[str, str] = {}
    for event in sorted(actions, key=lambda e: e.occurred):
        for related in event.related:
            if related.role == "automation-triggered-event":
                verb = event.event.rsplit(".", 1)[-1]
                reason = event.payload.get("reason")
                outcome[related.id.removeprefix("prefect.event.")] = (
                    f"{event.payload.get('action_type', 'action')} {verb}" + (f": {reason}" if reason else "")
                )
    firings = []
    for event in sorted(triggered, key=lambda e: e.occurred):
        cause = (event.payload or {}).get("triggering_event") or {}
        payload = cause.get("payload") or {}
        firings.append(
            Firing(
                automation=str(event.resource.get(catalog.PREFECT_RESOURCE_NAME, GATE_AUTOMATION)),
                gate=payload.get("gate"),
                table=payload.get("table"),
                value=payload.get("value"),
                threshold=payload.get("threshold"),
                action=outcome.get(str(event.id)),
            )
        )
    return firings
