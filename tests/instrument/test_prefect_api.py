"""The Prefect API calls (``instrument/prefect_api.py``): shared clients closed, pages read, events emitted.

Only the last test talks to a Prefect server (``prefect_server``); the rest use no API.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, temporary_settings

from prefect_synthobs.instrument import prefect_api


@pytest.fixture(autouse=True)
def _no_shared_clients() -> Iterator[None]:
    prefect_api.close_clients()
    yield
    prefect_api.close_clients()


def test_one_shared_client_per_api_url_closed_by_close_clients() -> None:
    first = prefect_api.shared_client()
    assert prefect_api.shared_client() is first and prefect_api.open_clients() == 1
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:1/other/api"}):
        other = prefect_api.shared_client()
    assert other is not first and prefect_api.open_clients() == 2
    prefect_api.close_clients()
    assert first._closed and other._closed and prefect_api.open_clients() == 0
    again = prefect_api.shared_client()  # the next call opens a new one
    assert again is not first and not again._closed
    prefect_api.close_clients()
    prefect_api.close_clients()  # twice: nothing left to close, no error


def test_closing_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def __exit__(self, *exc_info: Any) -> None:
            raise RuntimeError("the connection was already gone")

    closed = prefect_api.shared_client()
    monkeypatch.setitem(prefect_api._clients, "http://broken/api", Broken())
    prefect_api.close_clients()
    assert closed._closed and prefect_api.open_clients() == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_forgets_its_parents_clients() -> None:
    parent = prefect_api.shared_client()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its parent's client is not its to use, nor to close
        os.write(write, str(prefect_api.open_clients()).encode())
        os._exit(0)
    os.close(write)
    seen = os.read(read, 16).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert seen == "0"
    assert prefect_api.shared_client() is parent and not parent._closed  # the parent keeps its own


@pytest.mark.parametrize("total", [0, 1, prefect_api.PAGE - 1, prefect_api.PAGE, 2 * prefect_api.PAGE + 3])
def test_pages_read_every_item_once(total: int) -> None:
    calls: list[tuple[int, int]] = []

    def read(*, limit: int, offset: int, **_: Any) -> list[int]:
        calls.append((limit, offset))
        return list(range(total))[offset : offset + limit]

    assert list(prefect_api.pages(read, flow_filter=None)) == list(range(total))
    assert calls == [(prefect_api.PAGE, i * prefect_api.PAGE) for i in range(total // prefect_api.PAGE + 1)]


def test_task_runs_are_read_until_their_count_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = iter([1, 3, 3, 5])
    reads: list[int] = []

    def finished(_client: Any, _ids: Any) -> Iterator[int]:
        n = next(counts)
        reads.append(n)
        return iter(range(n))

    monkeypatch.setattr(prefect_api, "finished_task_runs", finished)
    monkeypatch.setattr(prefect_api, "SETTLE_POLL_SECONDS", 0.01)
    assert prefect_api.settled_task_runs(None, uuid.uuid4(), budget=5) == [0, 1, 2]  # type: ignore[arg-type]
    assert reads == [1, 3, 3]
    counts = iter([1, 2])
    reads.clear()
    assert prefect_api.settled_task_runs(None, uuid.uuid4(), budget=0) == [0]  # type: ignore[arg-type]
    assert reads == [1]  # no time left: the first read


def _status(code: int, **headers: str) -> PrefectHTTPStatusError:
    request = httpx.Request("POST", "http://api/v2/concurrency_limits")
    response = httpx.Response(code, headers=headers, request=request)
    return PrefectHTTPStatusError(f"{code}", request=request, response=response)


class Slots:
    """A client whose concurrency calls answer with a given HTTP status (``None``: success)."""

    def __init__(self, status: PrefectHTTPStatusError | None) -> None:
        self.status = status

    def increment_concurrency_slots_with_lease(self, **_: Any) -> httpx.Response:
        if self.status is not None:
            raise self.status
        return httpx.Response(200, json={"lease_id": "6f1c3e5e-0000-4000-8000-000000000001"})

    def renew_concurrency_lease(self, lease_id: uuid.UUID, lease_duration: float) -> None:
        if self.status is not None:
            raise self.status


def test_a_held_slot_says_how_long_to_wait_and_a_gone_lease_says_so() -> None:
    client: Any = Slots(None)
    assert prefect_api.take_slot(client, "lock", 60) == ("6f1c3e5e-0000-4000-8000-000000000001", 0.0)
    assert prefect_api.take_slot(Slots(_status(423, **{"Retry-After": "2.5"})), "lock", 60) == (None, 2.5)  # type: ignore[arg-type]
    assert prefect_api.take_slot(Slots(_status(423)), "lock", 60) == (None, 0.5)  # type: ignore[arg-type]
    with pytest.raises(PrefectHTTPStatusError):
        prefect_api.take_slot(Slots(_status(500)), "lock", 60)  # type: ignore[arg-type]
    lease = str(uuid.uuid4())
    prefect_api.renew_lease(client, lease, 60)
    with pytest.raises(prefect_api.LeaseGone):
        prefect_api.renew_lease(Slots(_status(410)), lease, 60)  # type: ignore[arg-type]
    with pytest.raises(PrefectHTTPStatusError) as other:
        prefect_api.renew_lease(Slots(_status(503)), lease, 60)  # type: ignore[arg-type]
    assert not isinstance(other.value, prefect_api.LeaseGone)


@pytest.mark.parametrize("redact_pii", [True, False])
def test_an_event_names_its_resource_labels_and_flow_runs(redact_pii: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_, **__: worker)
    run_id = uuid.uuid4()
    prefect_api.emit(
        "synthobs.test.happened",
        resource_id="synthobs.table.customers",
        resource_name="customers of ann@example.com",
        labels={"synthobs.gpu.index": 0, "synthobs.model_type": None, "synthobs.table": ""},
        payload={"owner": "ann@example.com", "n": 3},
        flow_run_ids=[run_id],
        redact_pii=redact_pii,
    )
    worker.drain()
    client = worker._client
    assert isinstance(client, AssertingEventsClient)
    (event,) = [e for e in client.events if e.event == "synthobs.test.happened"]
    assert event.resource.id == "synthobs.table.customers"
    assert event.resource["synthobs.gpu.index"] == "0"  # a label as text; 0 is a value, not an empty one
    assert "synthobs.model_type" not in event.resource and "synthobs.table" not in event.resource
    assert [(r.id, r.role) for r in event.related] == [(f"prefect.flow-run.{run_id}", "flow-run")]
    assert event.payload["n"] == 3
    leaked = "ann@example.com" in str(event.model_dump(mode="json"))
    assert leaked is not redact_pii


def test_artifacts_go_through_the_shared_client_which_reopens_after_closing(prefect_server: str) -> None:
    first = prefect_api.create_artifact("markdown", "# one", "synthobs test", flow_run_id=None)
    client = prefect_api.shared_client()
    prefect_api.update_artifact(first, "# one, updated", "synthobs test")
    prefect_api.close_clients()  # the instrumentation's shutdown
    assert client._closed
    second = prefect_api.create_artifact("markdown", "# two", None, flow_run_id=None)
    assert isinstance(first, uuid.UUID) and isinstance(second, uuid.UUID) and first != second
    assert prefect_api.shared_client() is not client and prefect_api.open_clients() == 1
