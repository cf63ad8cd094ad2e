"""The applied automations fire on a real server, and their actions are observed.

The session's Prefect server (``prefect_test_harness``: an ephemeral server) runs Prefect's
``RunInEphemeralServers`` services, which include the reactive triggers, the proactive
triggers (evaluated every ``PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY``, 5 s) and the
actions: no server of these tests' own is needed.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prefect import flow
from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events import emit_event
from prefect.flow_engine import run_flow
from prefect.states import Pending, Running

import prefect_synthobs as so
from conftest import wait_for_events
from prefect_synthobs import catalog
from prefect_synthobs.automations import manage
from prefect_synthobs.cli import main
from prefect_synthobs.health.rows import flow_row
from prefect_synthobs.health.store import HealthStore

pytestmark = pytest.mark.usefixtures("prefect_server")

META = {"columns": {"x": {"sdtype": "numerical"}, "y": {"sdtype": "numerical"}}}


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1, n)
    out: pd.DataFrame = pd.DataFrame({"x": x, "y": 2 * x + rng.normal(0, 0.5, n)})
    return out


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback HTTP server that keeps the JSON body of every POST it gets."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(json.loads(body or b"{}"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def prefix() -> Iterator[str]:
    value = f"f-{uuid.uuid4().hex[:8]}/"
    yield value
    with get_client(sync_client=True) as client:
        manage.delete_managed(client, value)


def until(condition: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_a_failed_gate_calls_the_webhook_and_pauses_the_deployment(
    store_dir: Path, prefix: str, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    table = f"gated-{uuid.uuid4().hex[:6]}"
    block = f"hook-{uuid.uuid4().hex[:6]}"
    Webhook(url=url).save(block)

    @so.observe(kind="quality", table=table)
    @flow(name=f"gated-{table}")
    def gated() -> bool:
        check = so.check_quality(
            frame(300, 1), frame(300, 5, shift=3.0), META, gates=so.QualityGates(min_overall=0.95, policy="warn")
        )
        return check.passed

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(gated)
        deployment_id = client.create_deployment(flow_id=flow_id, name="nightly")
        assert (
            main(["automations", "apply", "--prefix", prefix, "--notify", block, "--pause-deployment", "--no-p95"]) == 0
        )
        flow_run = client.create_flow_run_from_deployment(deployment_id)
        assert client.read_deployment(deployment_id).paused is False
    # the deployment's run, executed here: the gate's event names the deployment as a related resource
    assert run_flow(gated, flow_run=flow_run) is False

    hits = until(lambda: [r for r in received if r.get("resource") == catalog.RESOURCE_TABLE_PREFIX + table])
    assert hits, f"the webhook was never called (got {received})"
    assert hits[0]["automation"] == prefix + "quality-gate-failed"
    assert hits[0]["event"] == catalog.EVENT_QUALITY_GATE_FAILED
    assert hits[0]["payload"]["gate"] == "min_overall" and hits[0]["payload"]["table"] == table
    with get_client(sync_client=True) as client:
        assert until(lambda: client.read_deployment(deployment_id).paused), "the deployment was not paused"


def test_do_nothing_records_in_the_event_feed_which_gate_fired_it(store_dir: Path, prefix: str) -> None:
    table = f"noop-{uuid.uuid4().hex[:6]}"
    assert main(["automations", "apply", "--prefix", prefix, "--no-p95"]) == 0
    with get_client(sync_client=True) as client:
        automation = {a.name: a for a in manage.read_all(client)}[prefix + "quality-gate-failed"]

    @so.observe(kind="quality", table=table)
    @flow(name=f"noop-{table}")
    def gated() -> None:
        so.check_quality(
            frame(200, 1), frame(200, 5, shift=3.0), META, gates=so.QualityGates(min_overall=0.95, policy="warn")
        )

    gated()
    resource = f"prefect.automation.{automation.id}"
    gate_events = wait_for_events(catalog.EVENT_QUALITY_GATE_FAILED, resource_id=catalog.RESOURCE_TABLE_PREFIX + table)
    assert len(gate_events) == 1
    fired = wait_for_events("prefect.automation.triggered", resource_id=resource, timeout=90)
    assert len(fired) == 1, f"the automation did not fire on {[(e.id, e.occurred) for e in gate_events]}"
    (triggered,) = fired
    assert (
        triggered.payload["triggering_event"]["resource"]["prefect.resource.id"]
        == catalog.RESOURCE_TABLE_PREFIX + table
    )
    (executed,) = wait_for_events("prefect.automation.action.executed", resource_id=resource, timeout=60)
    assert executed.payload["action_type"] == "do-nothing"
    assert f"prefect.event.{triggered.id}" in {r.id for r in executed.related}


@pytest.mark.slow  # waits out real proactive windows (about 25 s)
def test_stuck_runs_are_cancelled_zombies_crashed_and_slow_runs_flagged_per_flow(prefix: str, tmp_path: Path) -> None:
    slow_flow = f"slow-{uuid.uuid4().hex[:6]}"
    store = HealthStore(str(tmp_path / "store"))
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    store.write(
        "flow_runs",
        [
            flow_row(
                flow_run_id=str(uuid.uuid4()),
                flow_name=slow_flow,
                kind="other",
                state_type="COMPLETED",
                state_name="Completed",
                start_time=now - pd.Timedelta(minutes=i + 5),
                end_time=now - pd.Timedelta(minutes=i + 5) + pd.Timedelta(seconds=2),
            )
            for i in range(20)
        ],
    )
    argv = ["apply", "--prefix", prefix, "--stuck-minutes", "0.4", "--zombie-minutes", "0.25", "--cancel-stuck"]
    assert main(["automations", *argv, "--no-late", "--p95-min-runs", "20", "--store", str(tmp_path / "store")]) == 0
    with get_client(sync_client=True) as client:
        automations = {a.name.removeprefix(prefix): a for a in manage.read_all(client) if a.name.startswith(prefix)}
        assert f"flow-slower-than-p95/{slow_flow}" in automations  # p95 of 2 s: Prefect's least, 10 s

        @flow(name=slow_flow)
        def slow() -> None:
            pass

        @flow(name=f"other-{slow_flow}")
        def other() -> None:
            pass

        # a stuck run (Running, then nothing), a zombie (its heartbeat stops) and a run of another flow
        stuck = client.create_flow_run(slow)
        client.set_flow_run_state(stuck.id, Pending())
        client.set_flow_run_state(stuck.id, Running())
        zombie = client.create_flow_run(other)
        client.set_flow_run_state(zombie.id, Pending())
        emit_event("prefect.flow-run.heartbeat", resource={"prefect.resource.id": f"prefect.flow-run.{zombie.id}"})

        def state(run_id: uuid.UUID) -> StateType | None:
            run = client.read_flow_run(run_id)
            return run.state.type if run.state else None

        assert until(lambda: state(stuck.id) in (StateType.CANCELLING, StateType.CANCELLED), 90), state(stuck.id)
        assert until(lambda: state(zombie.id) == StateType.CRASHED, 60), state(zombie.id)
        assert state(zombie.id) == StateType.CRASHED  # the stuck automation never took it: it never ran

    slow_id = automations[f"flow-slower-than-p95/{slow_flow}"].id
    fired = wait_for_events("prefect.automation.triggered", resource_id=f"prefect.automation.{slow_id}", timeout=60)
    assert [e.payload["triggering_labels"]["prefect.resource.id"] for e in fired] == [f"prefect.flow-run.{stuck.id}"]


def test_a_late_run_sends_a_notification_through_a_notification_block(
    prefix: str, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    """``--notify`` with a notification block (SendNotification, its subject and body templates rendered), on
    the Late automation: the temporary server has no late-runs service, so the run is marked Late here."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.states import Late, Scheduled

    url, received = receiver
    block = f"notify-{uuid.uuid4().hex[:6]}"
    CustomWebhookNotificationBlock(
        name="synthobs-test", url=url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    ).save(block)
    argv = ["apply", "--prefix", prefix, "--notify", f"custom-webhook/{block}", "--no-p95"]
    assert main(["automations", *argv, "--stuck-minutes", "0", "--zombie-minutes", "0"]) == 0

    @flow(name=f"late-{block}")
    def late() -> None:
        pass

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(late, state=Scheduled())
        assert client.set_flow_run_state(run.id, Late()).status.value == "ACCEPT"
    hits = until(lambda: [r for r in received if str(run.id) in r.get("body", "")])
    assert hits, f"no notification for the Late run (got {received})"
    assert hits[0]["subject"] == f"{prefix}flow-run-late fired"
    assert "Event prefect.flow-run.Late on prefect.flow-run." in hits[0]["body"]
