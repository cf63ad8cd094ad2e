"""Run logs to an OTLP/HTTP endpoint in batches, encoded on a background thread.

``WireLogPipeline`` is what ``LogsExportSetup`` builds in place of an SDK
``LoggerProvider`` + ``BatchLogRecordProcessor`` when synthobs owns the export
and the protocol is http/protobuf: the flow's thread only appends a captured,
already-redacted ``WireLog`` (no SDK record, no protobuf objects); one daemon
thread encodes (``log_wire``) and sends each batch through the SDK exporter's
own HTTP client (its retries, compression, headers, certificates and timeout).

The flow's thread may hand over a ``Deferred`` record instead (``otel_logs.CapturedLog``):
the values it read, made into a redacted ``WireLog`` here, before encoding.

Same promises as the SDK's batch processor it replaces: a batch goes when
``max_batch`` records wait or its oldest record has waited ``schedule_delay``
seconds (the clock starts with a batch's first record, so a run shorter than
that, flushed at its end, costs one request, not one more per timer tick);
``force_flush`` exports every record captured before it was called and waits
at most its timeout; a record is dropped only when ``max_queue`` records already
wait (an endpoint that stopped answering; ``ExportHealth`` says so once). After
a fork the child starts with an empty buffer and its own thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from prefect_synthobs._log import get_logger
from prefect_synthobs.telemetry.log_wire import LogRequestEncoder, WireLog, batches
from prefect_synthobs.telemetry.otlp import ExportHealth

logger = get_logger("telemetry.logs")

Send = Callable[[bytes], bool]
"""Sends one encoded request; True when the endpoint took it."""


class Deferred(Protocol):
    """A record captured on the flow's thread, made into its (redacted) ``WireLog`` on the export thread."""

    def wire(self) -> WireLog: ...


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
        self._pending: list[WireLog | Deferred] = []
        self._oldest = 0.0  # monotonic time the first pending record came
        self._emitted = 0  # records accepted
        self._done = 0  # records exported or given up on
        self._last_ok = True  # whether the last batch was taken
        self._flush_wanted = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    def emit(self, log: WireLog | Deferred) -> None:
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
            waiting = len(self._pending)
            if waiting == 1:  # a new batch: its clock starts
                self._oldest = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="synthobs-logs-export", daemon=True)
                self._thread.start()
            elif waiting == 1 or waiting >= self.max_batch:
                self._cond.notify()

    def _due(self) -> bool:
        """Whether the pending records go now; otherwise waits (called holding the lock)."""
        if self._stopping or self._flush_wanted or len(self._pending) >= self.max_batch:
            return True
        if not self._pending:
            self._cond.wait()  # nothing waits: sleep until a record, a flush or the shutdown
            return False
        left = self._oldest + self.schedule_delay - time.monotonic()
        if left <= 0:
            return True
        self._cond.wait(left)
        return False

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    pass
                batch, self._pending = self._pending, []
                self._flush_wanted = False
                stopping = self._stopping
            self._export(batch)
            if stopping:
                return

    def _export(self, batch: list[WireLog | Deferred]) -> None:
        for part in batches(batch, self.max_batch):
            ok = False
            try:
                logs = [log for log in map(_wire, part) if log is not None]
                ok = self._send(self._encoder.encode(logs)) if logs else True
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


def _wire(log: WireLog | Deferred) -> WireLog | None:
    """The ``WireLog`` of a pending record (``None``: it could not be made, and is dropped)."""
    if isinstance(log, WireLog):
        return log
    try:
        return log.wire()
    except Exception as exc:  # one record, never the batch
        logger.debug("synthobs: run log not exported: %s", exc)
        return None


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
