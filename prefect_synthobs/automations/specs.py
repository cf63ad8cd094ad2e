"""The Prefect Automations synthobs manages, built from options (pure: no API call here).

What they watch:

- what synthobs emits (``catalog``): a quality gate failed, a training health check tripped
  (``synthobs.training.*``), a privacy budget refused a spend, a GPU lost;
- what Prefect itself knows about flow runs: stuck in Running (no final state within N
  minutes), zombies (no ``prefect.flow-run.heartbeat`` within N minutes), Late runs, and a
  run longer than its flow's usual 95th percentile (one trigger per flow with enough history
  in the health store's ``flow_runs``).

How they are marked: every name starts with the prefix (default ``synthobs/``), every
automation carries the tag ``MANAGED_TAG`` and the tag ``prefix_tag(prefix)``, and its
description says so. ``is_managed`` needs all three name/tag marks: a user's own automation
with a similar name is never matched, and one prefix's set is never another's (even when one
prefix starts with the other).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, Literal
from uuid import UUID

from prefect.automations import (
    AutomationCore,
    CallWebhook,
    CancelFlowRun,
    ChangeFlowRunState,
    DoNothing,
    EventTrigger,
    PauseDeployment,
    Posture,
    SendNotification,
)
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ActionTypes

from prefect_synthobs import catalog

DEFAULT_PREFIX: Final = "synthobs/"
MANAGED_TAG: Final = "synthobs-managed"
"""The tag on every automation synthobs manages."""
PREFIX_TAG: Final = "synthobs-prefix:"
"""``synthobs-prefix:<prefix>``: the prefix an automation was applied under (one prefix's set is never another's)."""
MARKER: Final = "Managed by synthobs (`synthobs automations apply`): edits here are overwritten by the next apply."

DEFAULT_STUCK_MINUTES: Final = 360.0
"""Six hours: the same bound as the exported alert SynthobsFlowRunStuck (``export-dashboards --stuck-after``)."""
DEFAULT_ZOMBIE_MINUTES: Final = 10.0
"""More than three of Prefect's default heartbeats (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, 180 s) missed."""
DEFAULT_P95_MIN_RUNS: Final = 20
DEFAULT_P95_DAYS: Final = 30
P95_NAME: Final = "flow-slower-than-p95/"
"""The p95 automations' names after the prefix: one per flow."""
PROACTIVE_MIN_SECONDS: Final = 10
"""Prefect's least ``within`` for a proactive trigger."""

FLOW_RUN: Final = "prefect.flow-run."
RUNNING: Final = FLOW_RUN + "Running"
HEARTBEAT: Final = FLOW_RUN + "heartbeat"
LATE: Final = FLOW_RUN + "Late"
FINAL_EVENTS: Final = tuple(FLOW_RUN + state for state in ("Completed", "Failed", "Cancelled", "Crashed"))
"""A run that reaches one of these is no longer stuck (nor a zombie)."""

Kind = Literal["synthobs", "stuck", "zombie", "late", "p95"]


@dataclass(frozen=True)
class Notify:
    """Where ``--notify`` sends: a Webhook block (``CallWebhook``) or a notification block (``SendNotification``)."""

    block_document_id: UUID
    block_name: str
    webhook: bool


@dataclass(frozen=True)
class Options:
    """What ``synthobs automations apply`` builds.

    Attributes:
        prefix: Every name starts with it.
        stuck_minutes: A flow run Running this long with no final state is stuck (0: no such automation).
        zombie_minutes: A flow run with no heartbeat for this long is a zombie (0: none).
        late: Whether to watch Late runs.
        notify: Send to this block when any automation fires.
        cancel_stuck: Cancel stuck runs; mark zombies Crashed (nothing runs them any more).
        pause_deployment: Pause a deployment when a gate fails: ``"inferred"`` (the deployment of
            the run whose gate failed) or a deployment id; ``None``: no.
        p95_seconds: Per flow name, the duration past which a run is slow (one automation each).
    """

    prefix: str = DEFAULT_PREFIX
    stuck_minutes: float = DEFAULT_STUCK_MINUTES
    zombie_minutes: float = DEFAULT_ZOMBIE_MINUTES
    late: bool = True
    notify: Notify | None = None
    cancel_stuck: bool = False
    pause_deployment: UUID | Literal["inferred"] | None = None
    p95_seconds: Mapping[str, float] = field(default_factory=dict)


# -- marks --------------------------------------------------------------------------------------------------------


def prefix_tag(prefix: str) -> str:
    """The tag naming the prefix an automation was applied under."""
    return PREFIX_TAG + prefix


def is_managed(automation: AutomationCore, prefix: str) -> bool:
    """Whether synthobs manages ``automation`` under ``prefix``: the name, the marker tag and the prefix tag."""
    tags = set(automation.tags)
    return automation.name.startswith(prefix) and MANAGED_TAG in tags and prefix_tag(prefix) in tags


# -- the automations ------------------------------------------------------------------------------------------------

_NOTIFY_SUBJECT = "{{ automation.name }} fired"
_NOTIFY_BODY = (
    "Prefect automation {{ automation.name }} fired."
    "{% if event %} Event {{ event.event }} on {{ event.resource.id }}: {{ event.payload | tojson }}{% endif %}"
    "{% if firing and firing.triggering_labels %} Labels: {{ firing.triggering_labels | tojson }}{% endif %}"
)
_WEBHOOK_PAYLOAD = (
    '{"automation": {{ automation.name | tojson }}, "automation_id": "{{ automation.id }}", '
    '"event": {{ (event.event if event else none) | tojson }}, '
    '"event_id": {{ ((event.id | string) if event else none) | tojson }}, '
    '"resource": {{ (event.resource.id if event else none) | tojson }}, '
    '"payload": {{ (event.payload if event else {}) | tojson }}, '
    '"labels": {{ (firing.triggering_labels if firing else {}) | tojson }}}'
)


@dataclass(frozen=True)
class Spec:
    """One automation to apply, with what kind of watch it is."""

    kind: Kind
    automation: AutomationCore


def _notify(options: Options) -> list[ActionTypes]:
    if options.notify is None:
        return []
    if options.notify.webhook:
        return [CallWebhook(block_document_id=options.notify.block_document_id, payload=_WEBHOOK_PAYLOAD)]
    return [
        SendNotification(block_document_id=options.notify.block_document_id, subject=_NOTIFY_SUBJECT, body=_NOTIFY_BODY)
    ]


def _actions(*chosen: ActionTypes) -> list[ActionTypes]:
    """The chosen actions, or Prefect's DoNothing: the automation still records that it fired."""
    return list(chosen) or [DoNothing()]


def _reactive(event: str, resource_prefix: str) -> EventTrigger:
    return EventTrigger(
        expect={event},
        match={catalog.PREFECT_RESOURCE_ID: resource_prefix + "*"},
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )


def _proactive(
    after: str, expect: Iterable[str], seconds: float, match_related: Mapping[str, str] | None = None
) -> EventTrigger:
    return EventTrigger(
        after={after},
        expect=set(expect),
        for_each={catalog.PREFECT_RESOURCE_ID},
        match={catalog.PREFECT_RESOURCE_ID: FLOW_RUN + "*"},
        match_related=dict(match_related or {}),
        posture=Posture.Proactive,
        threshold=1,
        within=timedelta(seconds=max(PROACTIVE_MIN_SECONDS, math.ceil(seconds))),
    )


def _automation(
    options: Options, slug: str, what: str, trigger: EventTrigger, actions: list[ActionTypes]
) -> AutomationCore:
    return AutomationCore(
        name=options.prefix + slug,
        description=f"{what} {MARKER}",
        enabled=True,
        tags=[MANAGED_TAG, prefix_tag(options.prefix)],
        trigger=trigger,
        actions=actions,
        actions_on_trigger=[],
        actions_on_resolve=[],
    )


def _minutes(value: float) -> str:
    return f"{value:g} min"


def build(options: Options) -> list[Spec]:
    """The automations for ``options``, in a stable order (what ``apply`` makes the server hold)."""
    notify = _notify(options)
    pause: list[ActionTypes] = []
    if options.pause_deployment == "inferred":
        pause = [PauseDeployment(source="inferred")]
    elif options.pause_deployment is not None:
        pause = [PauseDeployment(source="selected", deployment_id=options.pause_deployment)]
    specs = [
        Spec(
            "synthobs",
            _automation(
                options,
                "quality-gate-failed",
                f"A synthobs quality gate failed ({catalog.EVENT_QUALITY_GATE_FAILED}).",
                _reactive(catalog.EVENT_QUALITY_GATE_FAILED, catalog.RESOURCE_TABLE_PREFIX),
                _actions(*notify, *pause),
            ),
        ),
        Spec(
            "synthobs",
            _automation(
                options,
                "training-check-tripped",
                f"A training health check tripped ({catalog.EVENT_TRAINING_PREFIX}<check>: "
                f"{', '.join(catalog.TRAINING_CHECKS)}).",
                _reactive(catalog.EVENT_TRAINING_PREFIX + "*", catalog.RESOURCE_MODEL_PREFIX),
                _actions(*notify),
            ),
        ),
        Spec(
            "synthobs",
            _automation(
                options,
                "privacy-budget-exceeded",
                f"A privacy budget refused a spend ({catalog.EVENT_PRIVACY_BUDGET_EXCEEDED}).",
                _reactive(catalog.EVENT_PRIVACY_BUDGET_EXCEEDED, catalog.RESOURCE_DATASET_PREFIX),
                _actions(*notify),
            ),
        ),
        Spec(
            "synthobs",
            _automation(
                options,
                "gpu-lost",
                f"A GPU stopped answering NVML during a run ({catalog.EVENT_GPU_LOST}).",
                _reactive(catalog.EVENT_GPU_LOST, catalog.RESOURCE_GPU_PREFIX),
                _actions(*notify),
            ),
        ),
    ]
    if options.stuck_minutes > 0:
        trigger = _proactive(RUNNING, FINAL_EVENTS, options.stuck_minutes * 60)
        what = f"A flow run Running for {_minutes(options.stuck_minutes)} with no final state."
        specs.append(
            Spec("stuck", _automation(options, "flow-run-stuck", what, trigger, _actions(*notify, *_cancel(options))))
        )
    if options.zombie_minutes > 0:
        trigger = _proactive(HEARTBEAT, (HEARTBEAT, *FINAL_EVENTS), options.zombie_minutes * 60)
        what = (
            f"A flow run whose heartbeat ({HEARTBEAT}) stopped for {_minutes(options.zombie_minutes)}: its process "
            "is gone (heartbeats: PREFECT_FLOWS_HEARTBEAT_FREQUENCY, default 180 s, on the process running the flow)."
        )
        specs.append(
            Spec("zombie", _automation(options, "flow-run-zombie", what, trigger, _actions(*notify, *_crash(options))))
        )
    if options.late:
        trigger = _reactive(LATE, FLOW_RUN)
        specs.append(
            Spec("late", _automation(options, "flow-run-late", "A flow run is Late.", trigger, _actions(*notify)))
        )
    for flow, seconds in sorted(options.p95_seconds.items()):
        trigger = _proactive(
            RUNNING,
            FINAL_EVENTS,
            seconds,
            {catalog.PREFECT_RESOURCE_ROLE: "flow", catalog.PREFECT_RESOURCE_NAME: flow},
        )
        what = (
            f"A run of flow {flow!r} has run longer than its usual 95th percentile "
            f"({trigger.within.total_seconds():g} s, from the health store's flow_runs)."
        )
        specs.append(Spec("p95", _automation(options, f"{P95_NAME}{flow}", what, trigger, _actions(*notify))))
    return specs


def _cancel(options: Options) -> list[ActionTypes]:
    return [CancelFlowRun()] if options.cancel_stuck else []


def _crash(options: Options) -> list[ActionTypes]:
    message = "Marked Crashed by synthobs' zombie automation: no heartbeat"
    return (
        [ChangeFlowRunState(state=StateType.CRASHED, name="Crashed", message=message)] if options.cancel_stuck else []
    )


# -- p95 -------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class P95:
    """Per flow: the 95th percentile of its completed runs' durations, and the flows with too few runs."""

    seconds: dict[str, float]
    runs: dict[str, int]
    skipped: dict[str, int]


def p95_per_flow(durations: Mapping[str, Sequence[float]], min_runs: int) -> P95:
    """The 95th percentile (linear interpolation) of each flow's run durations, for flows with at least
    ``min_runs`` runs; the others are skipped with their count. NaN and negative durations are left out."""
    seconds: dict[str, float] = {}
    runs: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for flow, values in sorted(durations.items()):
        clean = sorted(float(v) for v in values if v is not None and math.isfinite(float(v)) and float(v) >= 0)
        if len(clean) < min_runs or not clean:
            skipped[flow] = len(clean)
            continue
        position = 0.95 * (len(clean) - 1)
        low = math.floor(position)
        high = min(low + 1, len(clean) - 1)
        seconds[flow] = clean[low] + (clean[high] - clean[low]) * (position - low)
        runs[flow] = len(clean)
    return P95(seconds, runs, skipped)


# -- descriptions ---------------------------------------------------------------------------------------------------


def trigger_summary(automation: AutomationCore) -> str:
    """One line saying what fires ``automation`` (``on synthobs.quality.gate.failed``, ``no Completed|... within
    360 min of Running``)."""
    trigger = automation.trigger
    if not isinstance(trigger, EventTrigger):
        return f"{trigger.type} trigger"
    expect = ", ".join(sorted(_short(e) for e in trigger.expect)) or "any event"
    within = trigger.within.total_seconds()
    span = f"{within / 60:g} min" if within >= 60 and within % 60 == 0 else f"{within:g} s"
    if trigger.posture == Posture.Proactive:
        after = ", ".join(sorted(_short(e) for e in trigger.after))
        flow = _flow_of(trigger)
        return f"no {expect} within {span} of {after}" + (f" (flow {flow})" if flow else "")
    return f"on {expect}"


def _short(event: str) -> str:
    return event[len(FLOW_RUN) :] if event.startswith(FLOW_RUN) else event


def _flow_of(trigger: EventTrigger) -> str | None:
    related: Any = trigger.match_related
    for spec in related if isinstance(related, list) else [related]:
        values = dict(getattr(spec, "root", spec) or {})  # a ResourceSpecification is a RootModel over a dict
        if values.get(catalog.PREFECT_RESOURCE_ROLE) == "flow":
            name = values.get(catalog.PREFECT_RESOURCE_NAME)
            return str(name) if name is not None else None
    return None


def action_summary(automation: AutomationCore) -> str:
    """The actions as Prefect names them, comma-separated (``do-nothing``, ``call-webhook, pause-deployment``)."""
    return ", ".join(getattr(action, "type", type(action).__name__) for action in automation.actions) or "none"
