"""No secret leaves through any channel: a real observed flow whose run names are templated from an
e-mail parameter and whose task fails with a JWT, a database URL with its password, a PEM private key
and an AWS key in the error. None of them reaches the stored rows (every column), the exported spans
(names, attributes, events, status), the OTLP run logs (bodies and attributes) or the terminal; the
events synthobs emits are redacted too. The control run (``redact_pii=False``) shows each channel does
carry the text, so every check here can fail."""

from __future__ import annotations

import contextlib
import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from otlp_receiver import http_receiver
from prefect import flow, get_run_logger, task
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker

import prefect_synthobs as so
from prefect_synthobs.config import active
from prefect_synthobs.gpu.nvml import GpuDevice
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.instrument.gates import GateResult, _emit_failures
from prefect_synthobs.instrument.privacy_budget import _emit_exceeded
from prefect_synthobs.instrument.runtime import GpuPublisher

EMAIL = "josé.rivera@exämple.de"
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJlLXNlY3JldC12YWx1ZQ"
DB_PASSWORD = "pgHunter2pass"
DB_URL = f"postgres://etl:{DB_PASSWORD}@db.internal:5432/app"
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
PEM = f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----"
AWS_KEY_ID = "AKIAZ7QX4KPLM3N5R2TY"
SECRETS = (EMAIL, JWT, DB_PASSWORD, PEM_BODY, AWS_KEY_ID)


def leaks(texts: list[str]) -> set[str]:
    """The secrets found in any of ``texts``."""
    return {secret for secret in SECRETS for text in texts if secret in text}


def stored_texts(store: Path) -> list[str]:
    health = HealthStore(str(store))
    texts: list[str] = []
    for table in ("flow_runs", "task_runs"):
        frame: pd.DataFrame = health.read(table)
        assert len(frame), f"no {table} row was stored"
        texts.extend(str(value) for value in frame.astype(str).to_numpy().ravel())
    return texts


@contextlib.contextmanager
def terminal() -> Iterator[io.StringIO]:
    """What Prefect's console handlers print (the terminal of a flow), captured."""
    seen = io.StringIO()
    handlers = {
        h
        for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs")
        for h in logging.getLogger(name).handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    }
    previous = {h: h.setStream(seen) for h in handlers}
    try:
        yield seen
    finally:
        for handler, stream in previous.items():
            if stream is not None:
                handler.setStream(stream)


def span_texts(spans: list[Any]) -> list[str]:
    return [t for s in spans for t in [s.name, *s.texts(), *(name for name, _ in s.events)]]


def log_texts(logs: list[Any]) -> list[str]:
    return [t for rec in logs for t in [str(rec.body), *(str(v) for v in rec.attributes.values())]]


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.slow
@pytest.mark.parametrize("redact_pii", [True, False], ids=["redacted", "control"])
def test_no_secret_leaves_through_any_channel(
    store_dir: Path, capfd: pytest.CaptureFixture[str], redact_pii: bool
) -> None:
    with http_receiver() as receiver:
        so.configure(otlp_endpoint=receiver.endpoint, otlp_logs=True, redact_pii=redact_pii)

        @task(task_run_name="load-{email}", retries=0)
        def load(email: str) -> None:
            get_run_logger().warning("loading rows for %s with token=%s", email, JWT)  # the tests log WARNING and up
            raise RuntimeError(f"cannot connect to {DB_URL} as {email}: key {AWS_KEY_ID} jwt {JWT}\n{PEM}")

        @so.observe(kind="generation")
        @flow(
            name=f"redaction-{uuid.uuid4().hex[:6]}",
            flow_run_name="run-for-{email}",
        )
        def pipeline(email: str) -> None:
            load(email)

        with terminal() as printed:
            state = pipeline(EMAIL, return_state=True)
        assert state.is_failed()
        run_id = str(state.state_details.flow_run_id)
        spans = receiver.wait_for(
            lambda got: (
                any(s.attributes.get("prefect.run.id") == run_id for s in got)
                and any(s.attributes.get("prefect.run.type") == "task" and s.events for s in got)
            )
        )
        assert receiver.wait_until(lambda r: any("loading rows" in str(rec.body) for rec in r.logs))
        receiver.wait_until(lambda r: any(rec.attributes.get("exception.stacktrace") for rec in r.logs), 10)
        logs = list(receiver.logs)
    so.configure(otlp_endpoint=None, otlp_logs=None, redact_pii=True)
    captured = capfd.readouterr()

    channels = {
        "stored rows": leaks(stored_texts(store_dir)),
        "exported spans": leaks(span_texts(spans)),
        "OTLP run logs": leaks(log_texts(logs)),
        "terminal": leaks([printed.getvalue(), captured.out, captured.err]),
    }
    if redact_pii:
        assert channels == {name: set() for name in channels}
        assert any("[REDACTED]" in s.name for s in spans)  # the task run span's name was "load-<e-mail>"
        assert any("[REDACTED]" in t for t in stored_texts(store_dir))
    else:  # without redaction each channel carries the text: the checks above can fail
        assert all(channels.values()), channels
        assert EMAIL in {s.attributes.get("prefect.run.name", "") for s in spans} | {
            "".join(s.name.split("load-", 1)[1:]) for s in spans
        }


@pytest.mark.parametrize("redact_pii", [True, False], ids=["redacted", "control"])
def test_events_synthobs_emits_are_redacted(store_dir: Path, redact_pii: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    active.configure(redact_pii=redact_pii)
    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_, **__: worker)
    _emit_failures([GateResult(gate="fidelity", score="quality", kind="min", threshold=0.9, value=0.5)], EMAIL)
    _emit_exceeded(f"customers of {EMAIL} {DB_URL}", 1.0, 11.0, 10.0)
    GpuPublisher(f"host token={JWT}", lambda: None).device_lost(GpuDevice(0, "GPU-1234", f"A100 {AWS_KEY_ID}"), [])
    worker.drain()
    client = worker._client
    assert isinstance(client, AssertingEventsClient)
    emitted = [e for e in client.events if e.event.startswith("synthobs")]
    assert len(emitted) == 3
    texts = [str(e.model_dump(mode="json")) for e in emitted]
    if redact_pii:
        assert leaks(texts) == set()
        assert all("[REDACTED]" in t for t in texts)
    else:
        assert leaks(texts) == {EMAIL, DB_PASSWORD, JWT, AWS_KEY_ID}
