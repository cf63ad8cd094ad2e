"""``synthobs automations apply|list|delete`` against a real Prefect server: read back, idempotent, exact."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prefect.automations import AutomationCore, DoNothing, EventTrigger
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import Automation

from prefect_synthobs.automations import manage
from prefect_synthobs.automations.specs import MANAGED_TAG, prefix_tag
from prefect_synthobs.cli import main
from prefect_synthobs.health.rows import flow_row
from prefect_synthobs.health.store import HealthStore

pytestmark = pytest.mark.usefixtures("prefect_server")

NO_P95 = ["--no-p95"]


def server_automations() -> list[Automation]:
    with get_client(sync_client=True) as client:
        return manage.read_all(client)


def under(prefix: str) -> dict[str, Automation]:
    return {a.name: a for a in server_automations() if a.name.startswith(prefix)}


@pytest.fixture
def prefix() -> Iterator[str]:
    """A prefix of this test's own; what is left under it is deleted afterwards."""
    value = f"t-{uuid.uuid4().hex[:8]}/"
    yield value
    with get_client(sync_client=True) as client:
        for automation in manage.read_all(client):
            if automation.name.startswith(value):
                client.delete_automation(automation.id)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["automations", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def user_automation(name: str, tags: list[str] | None = None) -> AutomationCore:
    return AutomationCore(
        name=name,
        tags=tags or [],
        trigger=EventTrigger(expect={"synthobs.quality.gate.failed"}),
        actions=[DoNothing()],
    )


def test_apply_creates_then_changes_nothing_then_updates_in_place(
    capsys: pytest.CaptureFixture[str], prefix: str
) -> None:
    code, out, _ = run(capsys, "apply", "--dry-run", "--prefix", prefix, *NO_P95)
    assert code == 0 and "7 would create" in out and under(prefix) == {}  # a dry run changes nothing

    code, out, _ = run(capsys, "apply", "--prefix", prefix, *NO_P95)
    assert code == 0 and "7 created" in out
    first = under(prefix)
    assert sorted(name.removeprefix(prefix) for name in first) == [
        "flow-run-late",
        "flow-run-stuck",
        "flow-run-zombie",
        "gpu-lost",
        "privacy-budget-exceeded",
        "quality-gate-failed",
        "training-check-tripped",
    ]
    for automation in first.values():
        assert {MANAGED_TAG, prefix_tag(prefix)} <= set(automation.tags) and "synthobs" in automation.description
        assert automation.enabled and [a.type for a in automation.actions] == ["do-nothing"]

    code, out, _ = run(capsys, "apply", "--prefix", prefix, *NO_P95)
    assert code == 0 and "0 created; 0 updated; 7 unchanged; 0 deleted" in out
    again = under(prefix)
    assert {n: a.id for n, a in again.items()} == {n: a.id for n, a in first.items()}  # same ids, no duplicates
    assert len([a for a in server_automations() if a.name.startswith(prefix)]) == 7

    code, out, _ = run(capsys, "apply", "--prefix", prefix, "--stuck-minutes", "30", "--no-late", *NO_P95)
    assert code == 0 and "0 created; 1 updated; 5 unchanged; 1 deleted" in out
    changed = under(prefix)
    stuck = changed[prefix + "flow-run-stuck"]
    assert stuck.id == first[prefix + "flow-run-stuck"].id  # updated in place
    assert isinstance(stuck.trigger, EventTrigger) and stuck.trigger.within.total_seconds() == 30 * 60
    assert prefix + "flow-run-late" not in changed

    code, out, _ = run(capsys, "apply", "--dry-run", "--prefix", prefix, *NO_P95)
    assert "1 would create; 1 would update" in out and under(prefix).keys() == changed.keys()


def test_list_and_delete_touch_exactly_synthobs_automations(capsys: pytest.CaptureFixture[str], prefix: str) -> None:
    assert run(capsys, "apply", "--prefix", prefix, *NO_P95)[0] == 0
    nested = prefix + "inner/"  # a prefix that starts with this one: its set is its own
    assert run(capsys, "apply", "--prefix", nested, "--no-late", *NO_P95)[0] == 0
    with get_client(sync_client=True) as client:
        mine = {
            # the user's own: similar names, one even with synthobs' tag but not for this prefix
            client.create_automation(user_automation(prefix + "quality-gate-failed-mine")),
            client.create_automation(user_automation(prefix + "gpu-lost-copy", tags=[MANAGED_TAG])),
            client.create_automation(user_automation("synthobs-like " + prefix + "gpu-lost")),
        }
    code, out, _ = run(capsys, "list", "--prefix", prefix)
    listed = [line.split()[0] for line in out.splitlines()[1:]]
    assert code == 0 and len(listed) == 7 and all(name.startswith(prefix) and "mine" not in name for name in listed)
    assert not any(name.startswith(nested) for name in listed)
    assert "quality-gate-failed" in out and "synthobs.quality.gate.failed" in out and "do-nothing" in out

    code, out, _ = run(capsys, "delete", "--dry-run", "--prefix", prefix)
    assert code == 0 and "7 automation(s) would delete" in out and len(under(prefix)) == 7 + 6 + 2

    code, out, _ = run(capsys, "delete", "--prefix", prefix)
    assert code == 0 and "7 automation(s) deleted" in out
    left = {a.id for a in server_automations()}
    assert mine <= left  # the user's own survive
    assert sorted(n.removeprefix(nested) for n in under(nested)) == sorted(
        [
            "flow-run-stuck",
            "flow-run-zombie",
            "gpu-lost",
            "privacy-budget-exceeded",
            "quality-gate-failed",
            "training-check-tripped",
        ]
    )
    assert run(capsys, "list", "--prefix", prefix)[1].startswith("no automation managed by synthobs")


def test_a_users_automation_with_a_wanted_name_stops_apply_before_any_change(
    capsys: pytest.CaptureFixture[str], prefix: str
) -> None:
    with get_client(sync_client=True) as client:
        theirs = client.create_automation(user_automation(prefix + "gpu-lost"))
    code, _, err = run(capsys, "apply", "--prefix", prefix, *NO_P95)
    assert code == 2 and "synthobs does not manage" in err and repr(prefix + "gpu-lost") in err
    assert "Traceback" not in err and list(under(prefix)) == [prefix + "gpu-lost"]
    assert under(prefix)[prefix + "gpu-lost"].id == theirs


def test_clear_errors_without_a_traceback(capsys: pytest.CaptureFixture[str], prefix: str) -> None:
    code, _, err = run(capsys, "apply", "--prefix", prefix, "--notify", "no-such-block", *NO_P95)
    assert code == 2 and "no Webhook or notification block named 'no-such-block'" in err
    code, _, err = run(capsys, "apply", "--prefix", prefix, "--pause-deployment", "nope/none", *NO_P95)
    assert code == 2 and "no deployment 'nope/none'" in err
    assert under(prefix) == {}
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:1/api"}):
        code, _, err = run(capsys, "list")
    assert code == 2 and "cannot be reached" in err and "Traceback" not in err
    with temporary_settings(updates={PREFECT_API_URL: None}):
        code, _, err = run(capsys, "delete")
    assert code == 2 and "no Prefect server is configured" in err


def test_p95_automations_from_the_health_store(capsys: pytest.CaptureFixture[str], prefix: str, tmp_path: Path) -> None:
    store = HealthStore(str(tmp_path / "store"))
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    rows = []
    for flow, count in (("busy-flow", 25), ("rare-flow", 3)):
        for i in range(count):
            start = now - timedelta(hours=1, minutes=i)
            rows.append(
                flow_row(
                    flow_run_id=str(uuid.uuid4()),
                    flow_name=flow,
                    kind="other",
                    state_type="COMPLETED",
                    state_name="Completed",
                    start_time=start,
                    end_time=start + timedelta(seconds=10 + i),
                )
            )
    store.write("flow_runs", rows)
    code, out, _ = run(capsys, "apply", "--prefix", prefix, "--store", str(tmp_path / "store"))
    assert code == 0, out
    assert "p95: busy-flow: 32.8 s over 25 completed runs" in out  # durations 10..34 s: numpy's p95 is 32.8
    assert "skipped 1 flow(s) with fewer than 20 completed runs in 30 days: rare-flow (3)" in out
    slow = under(prefix)[prefix + "flow-slower-than-p95/busy-flow"]
    assert isinstance(slow.trigger, EventTrigger) and slow.trigger.within.total_seconds() == 33
    assert prefix + "flow-slower-than-p95/rare-flow" not in under(prefix)
    code, out, _ = run(capsys, "apply", "--prefix", prefix, "--store", str(tmp_path / "store"))
    assert "0 created; 0 updated; 8 unchanged; 0 deleted" in out
    # a store that cannot be read (a mistyped --store, an outage) keeps the p95 automations there are
    code, out, _ = run(capsys, "apply", "--prefix", prefix, "--store", str(tmp_path / "no-such-store"))
    assert code == 0 and "existing ones are kept" in out and "0 deleted" in out, out
    assert prefix + "flow-slower-than-p95/busy-flow" in under(prefix)
    code, out, _ = run(capsys, "apply", "--prefix", prefix, *NO_P95)  # the flow's trigger is no longer asked for
    assert "1 deleted" in out and prefix + "flow-slower-than-p95/busy-flow" not in under(prefix)


def test_an_update_keeps_each_actions_type(capsys: pytest.CaptureFixture[str], prefix: str) -> None:
    """Prefect's update sends only the fields set: an action's ``type`` (a default) was dropped, and the server
    read PauseDeployment as run-deployment and CancelFlowRun as do-nothing. Applied twice, it converges."""
    assert run(capsys, "apply", "--prefix", prefix, *NO_P95)[0] == 0
    code, out, _ = run(capsys, "apply", "--prefix", prefix, "--cancel-stuck", "--pause-deployment", *NO_P95)
    assert code == 0 and "updated" in out, out
    got = under(prefix)
    assert [a.type for a in got[prefix + "quality-gate-failed"].actions] == ["pause-deployment"]
    assert [a.type for a in got[prefix + "flow-run-stuck"].actions] == ["cancel-flow-run"]
    code, out, _ = run(capsys, "apply", "--prefix", prefix, "--cancel-stuck", "--pause-deployment", *NO_P95)
    assert "0 updated" in out and "7 unchanged" in out, out


@pytest.mark.parametrize("name", ["a/b/c", "/dep", "flow/", "plain"])
def test_a_deployment_name_not_flow_slash_deployment_is_refused(
    capsys: pytest.CaptureFixture[str], prefix: str, name: str
) -> None:
    code, _, err = run(capsys, "apply", "--prefix", prefix, "--pause-deployment", name, *NO_P95)
    assert code == 2 and "FLOW/DEPLOYMENT" in err and "Traceback" not in err


_PREFIX_TEXT = st.text(alphabet="abcxyz-_./ ", min_size=1, max_size=8).filter(lambda s: s.strip())


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefixes=st.lists(_PREFIX_TEXT, min_size=2, max_size=3, unique=True),
    stuck=st.sampled_from(["0", "0.5", "45", "360"]),
    zombie=st.sampled_from(["0", "3", "10"]),
    late=st.booleans(),
)
def test_apply_is_idempotent_and_delete_removes_exactly_the_applied_set(
    capsys: pytest.CaptureFixture[str], prefixes: list[str], stuck: str, zombie: str, late: bool
) -> None:
    run_id = f"h{uuid.uuid4().hex[:6]}:"  # prefixes may start with one another; every example has its own
    prefixes = [run_id + p for p in prefixes]
    options = ["--stuck-minutes", stuck, "--zombie-minutes", zombie, *NO_P95, *([] if late else ["--no-late"])]
    try:
        applied: dict[str, set[uuid.UUID]] = {}
        for p in prefixes:
            assert run(capsys, "apply", "--prefix", p, *options)[0] == 0
            applied[p] = {a.id for a in server_automations() if a.name.startswith(p) and prefix_tag(p) in a.tags}
            expected = 4 + (stuck != "0") + (zombie != "0") + late
            assert len(applied[p]) == expected
        for p in prefixes:
            assert "0 created; 0 updated" in run(capsys, "apply", "--prefix", p, *options)[1]
            assert {a.id for a in server_automations() if prefix_tag(p) in a.tags} == applied[p]
        doomed = prefixes[0]
        before = {a.id for a in server_automations()}
        assert run(capsys, "delete", "--prefix", doomed)[0] == 0
        assert before - {a.id for a in server_automations()} == applied[doomed]
    finally:
        with get_client(sync_client=True) as client:
            for automation in manage.read_all(client):
                if automation.name.startswith(run_id):
                    client.delete_automation(automation.id)
