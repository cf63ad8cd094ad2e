"""Run logs to an OTLP/HTTP endpoint in batches, encoded on a background thread.

``WireLogPipeline`` is what ``LogsExportSetup`` builds in place of an SDK
``LoggerProvider`` + ``BatchLogRecordProcessor`` when synthobs owns the export
and the protocol is http/protobuf: the flow's thread only appends a captured,
already-redacted ``WireLog`` (no SDK record, no protobuf objects); one daemon
thread encodes (``log_wire``) and sends each batch through the SDK exporter's
own HTTP client (its retries, compression, headers, certificates and timeout).

Same promises as the SDK's batch processor it replaces: a batch goes when
``max_batch`` records wait or ``schedule_delay`` seconds have passed;
``force_flush`` exports every record captured before it was called and waits
at most its timeout; a record is dropped only when ``max_queue`` records already
wait (an endpoint that stopped answering; ``ExportHealth`` says so once). After
a fork the child starts with an empty buffer and its own thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from prefect_synthobs._log import get_logger
from prefect_synthobs.telemetry.log_wire import LogRequestEncoder, WireLog, batches
from prefect_synthobs.telemetry.otlp import ExportHealth

logger = get_logger("telemetry.logs")

Send = Callable[[bytes], bool]
"""Sends one encoded request; True when the endpoint took it."""


class WireLogPipeline:
    """Buffers captured run-log records and exports them from one thread.

    Args:
        send: Sends one encoded ``ExportLogsServiceRequest``.
        encoder: Encodes a batch under the resource and scope.
        schedule_delay: Seconds a record may wait for its batch.
        max_batch: Records per request.
        max_queue: Records kept while the endpoint is slow or away.
        close: Called once at shutdown (the exporter's).
    """

    def __init__(
        self,
        send: Send,
        encoder: LogRequestEncoder,
        *,
        schedule_delay: float = 1.0,
        max_batch: int = 512,
        max_queue: int = 2048,
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self._send, self._encoder, self._close = send, encoder, close
        self.schedule_delay, self.max_batch, self.max_queue = schedule_delay, max_batch, max_queue
        self.dropped = 0
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[WireLog] = []
        self._emitted = 0  # records accepted
        self._done = 0  # records exported or given up on
        self._last_ok = True  # whether the last batch was taken
        self._flush_wanted = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    def emit(self, log: WireLog) -> None:
        """Keep one record for the next batch (the flow's thread: an append)."""
        if self._pid != os.getpid():  # a forked child: the parent's thread and buffer are not ours
            self._reset()
        with self._cond:
            if self._stopping:
                return
            if len(self._pending) >= self.max_queue:
                self.dropped += 1
                return
            self._pending.append(log)
            self._emitted += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="synthobs-logs-export", daemon=True)
                self._thread.start()
            elif len(self._pending) >= self.max_batch:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not (self._stopping or self._flush_wanted or len(self._pending) >= self.max_batch):
                    self._cond.wait(self.schedule_delay)
                batch, self._pending = self._pending, []
                self._flush_wanted = False
                stopping = self._stopping
            self._export(batch)
            if stopping:
                return

    def _export(self, batch: list[WireLog]) -> None:
        for part in batches(batch, self.max_batch):
            ok = False
            try:
                ok = self._send(self._encoder.encode(part))
            except Exception as exc:  # a log line is never worth a failed run
                logger.debug("synthobs: run logs not exported: %s", exc)
            with self._cond:
                self._done += len(part)
                self._last_ok = ok
                self._cond.notify_all()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every record captured so far; wait at most ``timeout_millis``.

        Returns whether they were all sent and taken.
        """
        if self._pid != os.getpid():
            self._reset()
        with self._cond:
            target = self._emitted
            if self._done < target:
                self._flush_wanted = True
                self._cond.notify_all()
                if not self._cond.wait_for(lambda: self._done >= target, timeout_millis / 1000):
                    return False
            return self._last_ok

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Export what is buffered (bounded), stop the thread, close the exporter."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(timeout_millis / 1000)
        try:
            self._close()
        except Exception as exc:
            logger.debug("synthobs: log exporter shutdown failed: %s", exc)


def http_send(exporter: Any, health: ExportHealth | None) -> Send | None:
    """A ``Send`` through an OTLP/HTTP log exporter's own client (``None``: this exporter has none)."""
    client = getattr(exporter, "_client", None)
    export = getattr(client, "export", None)
    if not callable(export):
        return None

    def send(data: bytes) -> bool:
        try:
            result = export(data)
        except Exception as exc:
            if health is not None:
                health.failed(f"{type(exc).__name__}: {exc}")
            return False
        if not getattr(result, "success", False):
            if health is not None:
                error = getattr(result, "error", None)
                health.failed(f"{type(error).__name__}: {error}" if error else "the endpoint refused or did not answer")
            return False
        if health is not None:
            health.ok()
        return True

    return send
