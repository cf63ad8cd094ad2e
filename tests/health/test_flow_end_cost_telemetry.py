"""The flow end's OTLP export on one long-lived thread, not a thread started per flow end (issue 27).

No timed assertion: which thread exported, how many exports, and that a request made while one runs is served.
"""

from __future__ import annotations

import threading

from prefect_synthobs.instrument.instrumentation import INSTRUMENTATION, _TelemetryFlusher


def test_flow_ends_export_on_one_thread_and_a_request_during_an_export_is_served() -> None:
    exported: list[tuple[int, float]] = []
    running = threading.Event()
    release = threading.Event()

    def flush(timeout: float) -> None:
        exported.append((threading.get_ident(), timeout))
        if len(exported) == 1:
            running.set()
            release.wait(30)

    flusher = _TelemetryFlusher(flush)
    flusher.request(1.5)
    assert running.wait(10)
    flusher.request(2.5)  # asked while the first export runs: one more export after it
    flusher.request(3.5)
    assert not flusher.wait_idle(0.05)  # an export runs: not idle
    release.set()
    assert flusher.wait_idle(30)
    assert [t for _, t in exported] == [1.5, 3.5]  # the later requests were served by one export
    flusher.request(4.5)
    assert flusher.wait_idle(30)
    assert len({ident for ident, _ in exported}) == 1 and exported[0][0] != threading.get_ident()
    assert flusher.alive()


def test_an_export_that_raises_does_not_cost_the_thread() -> None:
    calls: list[float] = []

    def flush(timeout: float) -> None:
        calls.append(timeout)
        raise RuntimeError("collector gone")

    flusher = _TelemetryFlusher(flush)
    flusher.request(1.0)
    assert flusher.wait_idle(30)
    flusher.request(2.0)
    assert flusher.wait_idle(30)
    assert calls == [1.0, 2.0] and flusher.alive()


def test_flush_telemetry_without_waiting_reuses_the_instrumentations_flusher() -> None:
    first = INSTRUMENTATION._flushing
    INSTRUMENTATION.flush_telemetry(0.5, wait=False)
    flusher = INSTRUMENTATION._flushing
    assert flusher is not None and (first is None or first is flusher or not first.alive())
    INSTRUMENTATION.flush_telemetry(0.5, wait=False)
    assert INSTRUMENTATION._flushing is flusher
    assert flusher.wait_idle(30)
