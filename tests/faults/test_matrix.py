"""Bad input and observability faults: clear errors, unchanged flow results, no lost rows."""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, task

import prefect_synthobs as so
from conftest import warnings_with
from prefect_synthobs.config import active as so_settings
from prefect_synthobs.instrument.instrumentation import get_runtime, reset_runtime
from prefect_synthobs.telemetry import exposition

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_observe_rejects_unknown_kind_naming_the_allowed_ones() -> None:
    with pytest.raises(ValueError) as err:
        so.observe(kind="bogus")
    for kind in ("training", "generation", "quality", "other"):
        assert kind in str(err.value)
    with pytest.raises(TypeError, match="above @flow or @task"):
        so.observe()(lambda: None)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None, True])
def test_record_rows_rejects_invalid_counts(bad: object) -> None:
    with pytest.raises(ValueError, match="rows"):
        so.record_rows(bad)  # type: ignore[arg-type]


def test_record_epoch_and_quality_validate_input() -> None:
    with pytest.raises(ValueError, match="epoch"):
        so.record_epoch(-1)
    with pytest.raises(ValueError, match="loss"):
        so.record_epoch(1, loss="low")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="loss"):
        so.record_epoch(1, loss={"g": "x"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="score"):
        so.record_quality("ks", math.nan)
    so.record_epoch(2, loss=math.nan)  # a diverging model is recorded, not rejected


def test_configure_rejects_unknown_and_invalid_settings() -> None:
    try:
        with pytest.raises(ValueError, match="unknown synthobs setting"):
            so.configure(store_uri="/tmp/x")
        with pytest.raises(ValueError, match="metrics_mode"):
            so.configure(metrics_mode="carrier-pigeon")
        with pytest.raises(ValueError, match="gpu_interval_seconds"):
            so.configure(gpu_interval_seconds=0.01)
    finally:
        so_settings.reset()


@pytest.mark.slow
def test_store_not_writable_spools_then_writes_later(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's directory should be")
    store_url = str(blocker / "store")
    spool = tmp_path / "spool"
    so_settings.reset()
    reset_runtime()
    so.configure(store_url=store_url, spool_dir=str(spool))

    @task
    def t(i: int) -> int:
        return i

    @so.observe(kind="generation")
    @flow(name=f"unwritable-{uuid.uuid4().hex[:6]}")
    def f(n: int) -> int:
        return sum(t(i) for i in range(n))

    try:
        with caplog.at_level(logging.WARNING):
            assert f(5) == 10
            assert f(3) == 3
        assert len(warnings_with(caplog, "cannot write the health store")) == 1
        spooled = get_runtime().recorder.spooled_files()
        assert spooled, "rows must be spooled locally"
        recorder = get_runtime().recorder
        assert recorder.breaker.is_open  # later flushes skip the store...
        assert recorder.flush() == 0 and recorder.spooled_files() == spooled
        blocker.unlink()  # the store becomes writable
        # ...until the background flusher's retry (after its 5 s backoff) reaches it
        # (a drainer renames the files it is writing to claims, which spooled_files() does not list:
        # wait for the rows in the store, not only for an empty spool; seen under load in CI)
        store = so.HealthStore(store_url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            recorder.spooled_files() or len(store.read("task_runs")) < 8 or len(store.read("flow_runs")) < 2
        ):
            time.sleep(0.2)
        assert recorder.spooled_files() == [] and not recorder.breaker.is_open
        assert len(store.read("flow_runs")) == 2
        assert len(store.read("task_runs")) == 8
    finally:
        reset_runtime()
        so_settings.reset()


def test_metrics_port_in_use_warns_once_and_flow_is_unaffected(
    store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with caplog.at_level(logging.WARNING):
            so.configure(metrics_mode="http", metrics_port=port)

            @so.observe
            @flow(name=f"port-{uuid.uuid4().hex[:6]}")
            def f() -> int:
                return 7

            assert f() == 7
            assert f() == 7
        assert len(warnings_with(caplog, "cannot serve metrics")) == 1


def test_pushgateway_unreachable_is_bounded_and_warns_once(
    store_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway that hangs costs each push at most ``pushgateway_timeout_seconds``
    and the process one warning; a refused one fails fast.

    Checked on the network calls themselves, not with a stopwatch (a loaded
    machine stretches wall time, never the timeouts passed): each push makes
    one read-back call whose timeout is at most the configured one (the read
    hangs until it expires), and neither retries nor pushes after it."""
    calls: list[list[tuple[str, float | None, BaseException | None]]] = []  # per push: (call, timeout, error)
    real_on_flow_end = exposition.PushgatewayExporter.on_flow_end
    real_urlopen, real_push = urllib.request.urlopen, exposition.pushadd_to_gateway

    pushing = threading.local()

    def on_flow_end(self: exposition.PushgatewayExporter, flow_name: str) -> None:
        calls.append([])
        pushing.calls = calls[-1]
        try:
            real_on_flow_end(self, flow_name)
        finally:
            pushing.calls = None

    def recorded(name: str, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            record = getattr(pushing, "calls", None)  # only what on_flow_end calls, on its thread
            if record is None:
                return real(*args, **kwargs)
            try:
                result = real(*args, **kwargs)
            except BaseException as exc:
                record.append((name, kwargs.get("timeout"), exc))
                raise
            record.append((name, kwargs.get("timeout"), None))
            return result

        return call

    monkeypatch.setattr(exposition.PushgatewayExporter, "on_flow_end", on_flow_end)
    monkeypatch.setattr(urllib.request, "urlopen", recorded("read-back", real_urlopen))
    monkeypatch.setattr(exposition, "pushadd_to_gateway", recorded("push", real_push))

    def timed_out(exc: BaseException | None) -> bool:
        return isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)

    # a listening socket that never answers: the worst case (a refused port fails fast)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(0)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        so.configure(metrics_mode="pushgateway", pushgateway_url=url, pushgateway_timeout_seconds=1.0)

        @so.observe
        @flow(name=f"nogw-{uuid.uuid4().hex[:6]}")
        def f() -> str:
            return "ok"

        get_runtime()
        with caplog.at_level(logging.WARNING):
            exporter = get_runtime().exporter
            assert isinstance(exporter, exposition.PushgatewayExporter) and exporter.timeout == 1.0
            exporter.on_flow_end("x")
            assert f() == "ok"
            assert f() == "ok"
        assert len(calls) == 3, calls  # the direct push and one per flow run
        for pushed in calls:
            # the read-back hangs until its timeout; nothing is retried or pushed after it
            assert [(name, timed_out(exc)) for name, _, exc in pushed] == [("read-back", True)], pushed
            assert 0 < sum(timeout for _, timeout, _ in pushed) <= 1.0, pushed
        assert len(warnings_with(caplog, "Pushgateway")) == 1

    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        so.configure(metrics_mode="pushgateway", pushgateway_url=f"http://127.0.0.1:{closed.getsockname()[1]}")
        calls.clear()
        get_runtime().exporter.on_flow_end("y")
    assert len(calls) == 1 and len(calls[0]) == 1, calls  # refused: one attempt, no retry
    name, timeout, exc = calls[0][0]
    assert name == "read-back" and 0 < timeout <= 1.0
    assert isinstance(getattr(exc, "reason", None), ConnectionRefusedError), exc  # failed fast, did not hang


@pytest.mark.parametrize("flow_name", ["..", "..\\..\\escape", "with spaces", "ünïcødé-流程", 'quote"and\\back'])
def test_hostile_flow_names_stay_inside_the_store(store_dir: Path, flow_name: str) -> None:
    # Prefect bans "/" in flow names; task names may hold it and reach labels too
    @task(name="../../a/b c")
    def t() -> int:
        return 1

    @so.observe(kind="other")
    @flow(name=flow_name)
    def f() -> int:
        return t()

    assert f() == 1
    root = store_dir.resolve()
    files = [p.resolve() for p in store_dir.parent.rglob("*.parquet")]
    assert files and all(root in p.parents for p in files)
    rows = so.HealthStore(str(store_dir)).read("flow_runs")
    assert list(rows.flow_name) == [flow_name]
    assert list(so.HealthStore(str(store_dir)).read("task_runs").task_name) == ["../../a/b c"]


def test_observability_errors_never_change_the_result(
    store_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = get_runtime()

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("recorder exploded")

    monkeypatch.setattr(runtime, "end_flow_run", boom)

    @so.observe
    @flow(name=f"boom-{uuid.uuid4().hex[:6]}")
    def f() -> int:
        return 41 + 1

    with caplog.at_level(logging.WARNING):
        state = f(return_state=True)
    assert state.is_completed() and state.result() == 42
    assert warnings_with(caplog, "recorder exploded")


def test_invalid_environment_settings_never_break_the_flow(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    so_settings.reset()
    reset_runtime()
    monkeypatch.setenv("PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE", "carrier-pigeon")

    @so.observe(kind="generation")
    @flow(name=f"badenv-{uuid.uuid4().hex[:6]}")
    def f() -> int:
        with so.span("generation.batch", owner="ann@example.com") as s:
            so.record_rows(3)
            so.record_epoch(1, loss=0.5)
            attrs = dict(getattr(s, "attributes", {}) or {})
        assert attrs.get("owner") in (None, "[REDACTED]")
        return 42

    try:
        with caplog.at_level(logging.WARNING):
            state = f(return_state=True)
        assert state.is_completed() and state.result() == 42
        warned = [
            r.getMessage() for r in caplog.records if "PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE" in r.getMessage()
        ]
        assert len(warned) == 1 and "'none'" in warned[0]  # the variable, and the default used instead
        assert so.configure().metrics_mode == "none"  # the explicit call keeps the default too
    finally:
        monkeypatch.delenv("PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE")
        so_settings.reset()
        reset_runtime()
