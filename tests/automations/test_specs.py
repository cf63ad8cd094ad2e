"""The automations synthobs builds from options (pure: no server), the p95 per flow, the demo summary lines."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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

from prefect_synthobs import catalog
from prefect_synthobs.automations import specs
from prefect_synthobs.automations.specs import MANAGED_TAG, Notify, Options, build, is_managed, p95_per_flow, prefix_tag
from prefect_synthobs.reports.demo_summary import automation_lines


def by_name(options: Options) -> dict[str, AutomationCore]:
    return {s.automation.name.removeprefix(options.prefix): s.automation for s in build(options)}


def test_the_defaults_watch_synthobs_events_and_prefects_runs_and_do_nothing_harmful() -> None:
    built = by_name(Options())
    assert set(built) == {
        "quality-gate-failed",
        "training-check-tripped",
        "privacy-budget-exceeded",
        "gpu-lost",
        "flow-run-stuck",
        "flow-run-zombie",
        "flow-run-late",
    }
    expects = {name: a.trigger.expect for name, a in built.items() if isinstance(a.trigger, EventTrigger)}
    assert expects["quality-gate-failed"] == {catalog.EVENT_QUALITY_GATE_FAILED}
    assert expects["training-check-tripped"] == {catalog.EVENT_TRAINING_PREFIX + "*"}
    assert expects["privacy-budget-exceeded"] == {catalog.EVENT_PRIVACY_BUDGET_EXCEEDED}
    assert expects["gpu-lost"] == {catalog.EVENT_GPU_LOST}
    assert expects["flow-run-late"] == {"prefect.flow-run.Late"}
    for automation in built.values():
        assert [type(a) for a in automation.actions] == [DoNothing]
        assert automation.enabled and MANAGED_TAG in automation.tags and specs.MARKER in automation.description
    stuck, zombie = built["flow-run-stuck"].trigger, built["flow-run-zombie"].trigger
    assert isinstance(stuck, EventTrigger) and isinstance(zombie, EventTrigger)
    assert stuck.posture == zombie.posture == Posture.Proactive
    assert stuck.after == {"prefect.flow-run.Running"} and "prefect.flow-run.Completed" in stuck.expect
    assert "prefect.flow-run.Running" not in stuck.expect  # a Running event must not count as an ending
    assert stuck.within == timedelta(hours=6) and stuck.for_each == {"prefect.resource.id"}
    assert zombie.after == {"prefect.flow-run.heartbeat"} and "prefect.flow-run.heartbeat" in zombie.expect
    assert zombie.within == timedelta(minutes=10)


def test_actions_follow_the_options() -> None:
    block = uuid.uuid4()
    deployment = uuid.uuid4()
    built = by_name(
        Options(notify=Notify(block, "webhook/hook", webhook=True), cancel_stuck=True, pause_deployment=deployment)
    )
    gate = built["quality-gate-failed"].actions
    assert [a.type for a in gate] == [CallWebhook.model_fields["type"].default, "pause-deployment"]
    assert isinstance(gate[1], PauseDeployment) and gate[1].deployment_id == deployment
    assert [type(a) for a in built["flow-run-stuck"].actions] == [CallWebhook, CancelFlowRun]
    crash = built["flow-run-zombie"].actions[-1]
    assert isinstance(crash, ChangeFlowRunState) and crash.state == StateType.CRASHED
    assert [type(a) for a in built["gpu-lost"].actions] == [CallWebhook]  # never cancels or pauses there
    notified = by_name(Options(notify=Notify(block, "slack-webhook/ops", webhook=False), pause_deployment="inferred"))
    assert [type(a) for a in notified["quality-gate-failed"].actions] == [SendNotification, PauseDeployment]
    assert notified["quality-gate-failed"].actions[1].source == "inferred"  # type: ignore[union-attr]


def test_thresholds_of_zero_leave_those_automations_out_and_p95_makes_one_per_flow() -> None:
    built = by_name(Options(stuck_minutes=0, zombie_minutes=0, late=False, p95_seconds={"a": 42.2, "b": 3.0}))
    assert "flow-run-stuck" not in built and "flow-run-zombie" not in built and "flow-run-late" not in built
    slow_a, slow_b = built["flow-slower-than-p95/a"].trigger, built["flow-slower-than-p95/b"].trigger
    assert isinstance(slow_a, EventTrigger) and isinstance(slow_b, EventTrigger)
    assert slow_a.within == timedelta(seconds=43)  # rounded up to a whole second
    assert slow_b.within == timedelta(seconds=specs.PROACTIVE_MIN_SECONDS)  # Prefect's least
    assert slow_a.match_related.root == {"prefect.resource.role": "flow", "prefect.resource.name": "a"}  # type: ignore[union-attr]
    assert specs.trigger_summary(built["flow-slower-than-p95/a"]).endswith("(flow a)")


def test_is_managed_needs_the_name_and_both_tags() -> None:
    (spec, *_) = build(Options(prefix="team/"))
    assert is_managed(spec.automation, "team/")
    assert not is_managed(spec.automation, "team")  # another prefix, even one the name starts with
    assert not is_managed(spec.automation.model_copy(update={"tags": [MANAGED_TAG]}), "team/")
    assert not is_managed(spec.automation.model_copy(update={"tags": [prefix_tag("team/")]}), "team/")
    assert not is_managed(spec.automation.model_copy(update={"name": "mine/" + spec.automation.name}), "team/")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e5, allow_nan=False), min_size=1, max_size=60))
def test_p95_matches_numpys_linear_percentile(values: list[float]) -> None:
    result = p95_per_flow({"f": [*values, math.nan]}, min_runs=1)
    assert result.runs == {"f": len(values)}  # the NaN left out
    assert result.seconds["f"] == pytest.approx(float(np.percentile(values, 95)), rel=1e-9, abs=1e-9)


def test_p95_skips_flows_with_too_few_runs_and_says_how_many() -> None:
    result = p95_per_flow({"busy": [1.0] * 20, "rare": [5.0] * 19, "empty": []}, min_runs=20)
    assert set(result.seconds) == {"busy"} and result.skipped == {"rare": 19, "empty": 0}


def test_demo_summary_lines_say_which_automation_fired_for_which_gate() -> None:
    firing = {
        "automation": "synthobs-demo/quality-gate-failed",
        "gate": "min_column_pair_trends",
        "table": "customers",
        "value": 0.88213,
        "threshold": 0.95,
        "action": "do-nothing executed",
    }
    lines = automation_lines("synthobs-demo/", 7, [firing], waited_s=1.24, timeout_s=15, removed=True)
    assert lines[0].startswith("automations: 7 applied (synthobs-demo/*, removed after the demo)")
    assert lines[1] == (
        "  synthobs-demo/quality-gate-failed for gate min_column_pair_trends (table customers, 0.8821 against 0.95): "
        "do-nothing executed"
    )
    slow = automation_lines("p/", 7, [], waited_s=15.2, timeout_s=15, removed=True)
    assert "not within 15 s" in slow[1]
    assert automation_lines("p/", 0, [], waited_s=0, timeout_s=15, removed=False, error="boom")[0].endswith("(boom)")
