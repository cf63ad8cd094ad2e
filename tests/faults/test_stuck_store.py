"""A stuck store or collector: bounded time, one timeout per process, nothing lost."""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from prefect import flow, task

import prefect_synthobs as so
from conftest import warnings_with
from prefect_synthobs.config import active as so_settings
from prefect_synthobs.instrument.instrumentation import INSTRUMENTATION, get_runtime, reset_runtime

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.mark.slow
def test_a_frozen_s3_store_costs_one_timeout_per_process_not_per_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An S3 endpoint that accepts connections and never answers (the real
    client, pyarrow's S3 filesystem): the first flush gives the write up after
    ``store_timeout_seconds`` and spools its rows; later runs skip the store.

    Checked on the calls made, not a stopwatch: one store write in all, the
    S3 client's own connect and request timeouts are the configured one, every
    row is in the spool and the flows' results are unchanged."""
    from prefect_synthobs.health.store import HealthStore

    writes: list[float | None] = []  # the S3 request timeout of each write's filesystem
    real_write = HealthStore.write

    def write(self: HealthStore, table: str, rows: Any) -> list[str]:
        writes.append(self._fs.__reduce__()[1][0].get("request_timeout"))
        return real_write(self, table, rows)

    monkeypatch.setattr(HealthStore, "write", write)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        so_settings.reset()
        reset_runtime()
        so.configure(
            store_url="s3://frozen-bucket/synthobs",
            store_options={
                "access_key": "AKIAEXAMPLE",
                "secret_key": "not-a-secret",
                "endpoint_override": f"http://127.0.0.1:{silent.getsockname()[1]}",
                "region": "us-east-1",
            },
            spool_dir=str(tmp_path / "spool"),
            store_timeout_seconds=1.0,
        )

        @task
        def t(i: int) -> int:
            return i

        @so.observe(kind="generation")
        @flow(name=f"frozen-s3-{uuid.uuid4().hex[:6]}")
        def f(n: int) -> int:
            return sum(t(i) for i in range(n))

        @so.observe(kind="other")
        @flow(name=f"frozen-s3-parent-{uuid.uuid4().hex[:6]}")
        def parent() -> list[int]:
            return [f(2) for _ in range(3)]

        try:
            with caplog.at_level(logging.WARNING):
                assert f(3) == 3
                assert parent() == [1, 1, 1]
            assert writes == [1.0]  # one write in all, with the S3 client bounded by the same timeout
            assert len(warnings_with(caplog, "cannot write the health store")) == 1
            assert "store_timeout_seconds" in caplog.text
            recorder = get_runtime().recorder
            assert recorder.breaker.is_open
            spool = so_settings.get_settings().store_spool_dir()
            assert spool.parent == tmp_path / "spool"  # the frozen store's own spool
            spooled = pq.read_table(spool / "flow_runs").num_rows
            assert spooled == 5  # f, parent and its three subflows: nothing lost
            assert pq.read_table(spool / "task_runs").num_rows == 3 + 3 * 2
        finally:
            reset_runtime()
            so_settings.reset()


@pytest.mark.slow
def test_endpoint_down_costs_at_most_the_timeout_and_one_warning(
    store_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint that accepts connections and never answers (the worst case: a
    refused port fails fast) costs the process one flush bounded by
    ``otlp_timeout_seconds``, not one per observed run, and one warning.

    Checked on the calls themselves, not with a stopwatch (a loaded machine
    stretches wall time, never the timeouts passed): the first flow's thread
    flushes once with the configured timeout and exports at most one batch in
    it; later runs (a parent with three observed subflows among them) do not
    wait at all; every HTTP request the exporter makes carries at most that
    timeout (the exporter's default is 10 s), and each ends in a timeout (the
    endpoint really hung)."""
    import socket

    import requests
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

    from prefect_synthobs.telemetry.tracing import ReportingExporter

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        so.configure(otlp_endpoint=endpoint, otlp_protocol="http/protobuf", otlp_timeout_seconds=1.0)
        get_runtime()  # applies the settings: export goes through synthobs' one processor

        processor = INSTRUMENTATION.tracing.switch.delegate
        assert isinstance(processor, BatchSpanProcessor)
        reporting = processor.span_exporter
        assert isinstance(reporting, ReportingExporter) and reporting.endpoint == endpoint

        flushes: list[tuple[int, int | None]] = []  # (thread, timeout_millis)
        exports: list[tuple[int, SpanExportResult]] = []  # (thread, result)
        http: list[tuple[Any, str]] = []  # (timeout, how the request ended)
        real_flush, real_export = processor.force_flush, reporting.inner.export
        real_request = requests.Session.request

        def force_flush(timeout_millis: int | None = None) -> bool:
            flushes.append((threading.get_ident(), timeout_millis))
            return real_flush() if timeout_millis is None else real_flush(timeout_millis)

        def export(spans: Any) -> SpanExportResult:
            result = real_export(spans)
            exports.append((threading.get_ident(), result))
            return result

        def request(self: requests.Session, *args: Any, **kwargs: Any) -> Any:
            url = str(kwargs.get("url", args[1] if len(args) > 1 else ""))
            if not url.startswith(endpoint):
                return real_request(self, *args, **kwargs)
            try:
                response = real_request(self, *args, **kwargs)
            except Exception as exc:
                http.append((kwargs.get("timeout"), type(exc).__name__))
                raise
            http.append((kwargs.get("timeout"), f"answered {response.status_code}"))
            return response

        monkeypatch.setattr(processor, "force_flush", force_flush)
        monkeypatch.setattr(reporting.inner, "export", export)
        monkeypatch.setattr(requests.Session, "request", request)

        @so.observe(kind="other")
        @flow(name=f"down-{uuid.uuid4().hex[:6]}")
        def f() -> str:
            return "unchanged"

        @so.observe(kind="other")
        @flow(name=f"down-parent-{uuid.uuid4().hex[:6]}")
        def parent() -> list[str]:
            return [f() for _ in range(3)]

        caller = threading.get_ident()
        with caplog.at_level(logging.WARNING):
            assert f() == "unchanged"
            # one flush, on the flow's own thread, bounded by the configured timeout
            assert flushes == [(caller, 1000)]
            # and within it at most one (timeout-bound) export: no retry loop on the flow's time
            assert len([t for t, _ in exports if t == caller]) <= 1
            assert not reporting.answering
            # the endpoint failed: later runs do not wait for it, nested or not
            assert f() == "unchanged" and parent() == ["unchanged"] * 3
            assert flushes == [(caller, 1000)]
            real_flush()  # deliver (and fail) whatever the background thread still holds
        # each flow's spans were exported (and failed) before the flow returned: at least two failures
        assert len(exports) >= 2 and all(r is SpanExportResult.FAILURE for _, r in exports), exports
        assert http, "the exporter never reached the endpoint"
        assert all(t is not None and 0 < t <= 1.0 for t, _ in http), http  # the exporter's default: 10 s
        assert all(how in ("ReadTimeout", "ConnectTimeout") for _, how in http), http
        # (this endpoint's: an exporter a previous test left shutting down may still report its own)
        warnings = [r for r in caplog.records if f"cannot export spans to {endpoint} " in r.getMessage()]
        assert len(warnings) == 1
        assert not [r for r in caplog.records if r.name.startswith("opentelemetry.exporter")]
    so.configure(otlp_endpoint=None, otlp_protocol=None, otlp_timeout_seconds=5.0)
    reset_runtime()
