"""Credentials in URLs are never printed; the Pushgateway takes basic auth."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import task_rows
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.store import HealthStore


def test_credentials_in_store_urls_never_reach_warnings_or_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValueError) as raised:
        HealthStore("ftp://admin:hunter2@files.example/store")
    assert "hunter2" not in str(raised.value) and "ftp://***@files.example" in str(raised.value)

    def factory() -> HealthStore:
        raise OSError("cannot reach s3://AKIAKEY:hunter2@bucket/synthobs")

    recorder = Recorder(factory, tmp_path / "spool", store_timeout=5)
    recorder.add("task_runs", task_rows(1))
    with caplog.at_level("WARNING"):
        recorder.flush()
    assert "cannot write the health store" in caplog.text
    assert "hunter2" not in caplog.text and "s3://***@bucket" in caplog.text


def test_pushgateway_basic_auth_from_the_url_and_no_password_in_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """User info in ``pushgateway_url`` becomes HTTP basic auth on the read-back
    and the push (prometheus_client's handler), and is never printed."""
    import base64
    import http.server

    from prometheus_client import CollectorRegistry, Counter

    from prefect_synthobs.telemetry.exposition import PushgatewayExporter

    seen: list[tuple[str, str | None]] = []

    class Gateway(http.server.BaseHTTPRequestHandler):
        def _answer(self, status: int, body: bytes = b"") -> None:
            seen.append((self.command, self.headers.get("Authorization")))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(200)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._answer(500 if self.path.endswith("/fail") else 200)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        registry = CollectorRegistry()
        Counter("synthobs_things", "things", ["flow"], registry=registry).labels(flow="f").inc()
        url = f"http://pusher:s3cr%40t@127.0.0.1:{server.server_address[1]}"
        exporter = PushgatewayExporter(url, prefix="synthobs", registry=registry, timeout=5)
        assert exporter.url == f"http://127.0.0.1:{server.server_address[1]}"
        exporter.on_flow_end("f")
        expected = "Basic " + base64.b64encode(b"pusher:s3cr@t").decode()
        assert [m for m, _ in seen] == ["GET", "POST"]
        assert all(auth == expected for _, auth in seen)

        server.shutdown()  # now unreachable (refused): the warning names the gateway without the password
        server.server_close()
        with caplog.at_level("WARNING"):
            exporter.on_flow_end("f")
        assert "unreachable" in caplog.text and "s3cr" not in caplog.text and "pusher" not in caplog.text
    finally:
        server.server_close()
