"""Buffers health rows in memory and writes them to the store.

Rows are written when an observed flow run ends (one file per table per flush, not one per task) and, for
long runs, by a daemon thread every ``flush_interval_seconds``. If the store cannot be written, rows go to a
local spool directory (``Spool``, ``health/spool.py``) and are written on a later flush: a store fault costs
one warning, never a row and never the flow's result.

Time is bounded: the store writes run on one long-lived daemon thread (``StoreThread``: no thread started per
write; a flush hands it all its tables at once) and the flush waits for each table's write at most
``store_timeout`` seconds from its start; past that the tables not yet written are spooled (a thread stuck on a
hung store is left behind and the next call starts a fresh one). A store that failed is then skipped
(``StoreBreaker``, ``health/breaker.py``): flushes spool at once, costing a flow nothing, until the background
flusher's retry (after a backoff that doubles up to five minutes) succeeds. A write that was given up on may
still land later; its rows are then in the store twice with the same ``event_id``, which ``HealthStore.read``
drops.

This module holds the buffer and the flusher thread, and decides what a fault
costs; the spool (files, claims, bound) and the breaker keep their own state.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar, cast

import pyarrow as pa

from prefect_synthobs import catalog as names
from prefect_synthobs._fork import reset_in_child
from prefect_synthobs._log import get_logger
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.health.breaker import StoreBreaker, StoreTimeout, call_bounded
from prefect_synthobs.health.spool import NotPlainRows, Spool, adopt_unkeyed_spool, rows_to_arrow
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.health.tables import Row
from prefect_synthobs.telemetry.redaction import strip_url_credentials
from prefect_synthobs.telemetry.tracing import open_span

logger = get_logger("store")

__all__ = [
    "FLUSH_SOON_LINGER_SECONDS",
    "Recorder",
    "StoreBreaker",
    "StoreThread",
    "StoreTimeout",
    "adopt_unkeyed_spool",
    "call_bounded",
]

T = TypeVar("T")

FLUSH_SOON_LINGER_SECONDS = 1.0
"""How long the flusher gathers rows after ``flush_soon`` before it writes them."""


class _StoreCall:
    """One call handed to a ``StoreThread``: its outcome, and whether its caller gave up on it."""

    __slots__ = ("context", "done", "error", "fn", "given_up", "value")

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn
        self.context = contextvars.copy_context()  # Prefect's settings, the current span: the caller's
        self.done = threading.Event()
        self.given_up = False
        self.value: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        if self.given_up:  # its caller spooled the rows already: writing them now would only repeat them
            self.done.set()
            return
        try:
            self.value = self.context.run(self.fn)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()


class StoreThread:
    """One long-lived daemon thread that runs store calls, each waited for at most a timeout (``call``).

    ``call_bounded`` starts a thread per call; a flow's end writes a flush, so this keeps one thread for them.
    A call that times out leaves its thread behind (stuck on a store that does not answer): the next call
    starts a fresh thread, the old one ends once its call returns. A call made while another is in flight
    (two threads flushing, a ``persist`` beside a flush) never queues behind it, where its wait would count
    against its own timeout: it runs on a thread of its own (``call_bounded``). A forked child starts afresh.
    """

    def __init__(self, name: str = "synthobs-store-writer") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_StoreCall | None] | None = None
        self._thread: threading.Thread | None = None
        self._current: _StoreCall | None = None  # the call on the thread (at most one at a time)
        reset_in_child(self)

    def _after_fork_in_child(self) -> None:
        """A forked child has none of its parent's threads, and perhaps a lock one of them held: it starts
        afresh (its first call starts its own thread)."""
        self._lock = threading.Lock()
        self._queue, self._thread, self._current = None, None, None

    def call(self, fn: Callable[[], T], timeout: float) -> T:
        """``fn()`` on the thread, in a copy of the caller's context, waited for at most ``timeout`` seconds.

        Raises:
            StoreTimeout: ``fn`` had not finished in time (it goes on in the background).
            Exception: whatever ``fn`` raised.
        """
        job = _StoreCall(fn)
        jobs = self._submit(job)
        if jobs is None:
            return call_bounded(fn, timeout, name=f"{self.name}-beside")
        if not job.done.wait(timeout):
            self._give_up(job, jobs)
            raise StoreTimeout(f"no answer within {timeout:g} s (store_timeout_seconds)")
        if job.error is not None:
            raise job.error
        return cast("T", job.value)

    def call_each(self, fns: Sequence[Callable[[], object]], timeout: float) -> tuple[int, BaseException | None]:
        """``fns`` in order on the thread, handed over and waited for once (one wake-up each way, where a
        ``call`` per function takes one per function); each is given ``timeout`` seconds from its start (the
        first from this call), as one ``call`` each would be.

        Returns:
            How many of ``fns`` returned, from the first, and why the rest did not run: what the next one
            raised, or ``StoreTimeout`` (it goes on in the background; those after it never start). ``None``
            when all returned.
        """
        progress = [0]
        started = [time.monotonic()]  # when the function running now started

        def run_all() -> None:
            for i, fn in enumerate(fns):
                if job.given_up:  # the caller spooled the rest already
                    return
                if i:
                    started[0] = time.monotonic()
                fn()
                progress[0] += 1

        job = _StoreCall(run_all)
        jobs = self._submit(job)
        if jobs is None:  # a call in flight: each on a thread of its own, as ``call`` does
            for done, fn in enumerate(fns):
                try:
                    call_bounded(fn, timeout, name=f"{self.name}-beside")
                except Exception as exc:
                    return done, exc
            return len(fns), None
        while not job.done.wait(max(started[0] + timeout - time.monotonic(), 0.0)):
            if time.monotonic() >= started[0] + timeout:  # the function running now had its time: stuck
                self._give_up(job, jobs)
                return progress[0], StoreTimeout(f"no answer within {timeout:g} s (store_timeout_seconds)")
        return progress[0], job.error

    def _submit(self, job: _StoreCall) -> queue.SimpleQueue[_StoreCall | None] | None:
        """Queue ``job`` for the thread (started if need be); ``None`` when a call is in flight already."""
        with self._lock:
            if self._current is not None and not self._current.done.is_set():
                return None
            self._current = job
            jobs = self._queue
            if jobs is None or self._thread is None or not self._thread.is_alive():
                jobs = queue.SimpleQueue()
                thread = threading.Thread(target=self._serve, args=(jobs,), name=self.name, daemon=True)
                thread.start()
                self._queue, self._thread = jobs, thread
            jobs.put(job)
        return jobs

    def _give_up(self, job: _StoreCall, jobs: queue.SimpleQueue[_StoreCall | None]) -> None:
        """Stop waiting for ``job``: the next call starts a fresh thread; the stuck one ends after it."""
        job.given_up = True
        with self._lock:
            if self._queue is jobs:
                self._queue, self._thread, self._current = None, None, None
                jobs.put(None)

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[_StoreCall | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            job.run()
            del job  # hold no table between calls


class Recorder:
    """Buffer, writer and spool for health rows.

    Args:
        store_factory: Returns the ``HealthStore`` to write to (flushes reuse it until a store fault, then
            call it again, so a store that was unreachable at start-up can come back).
        spool_dir: Local directory for rows the store could not take.
        flush_interval: Seconds between background flushes.
        store_timeout: The longest one store call may hold a flush.
        breaker: Decides when a failed store is tried again (tests inject one with their own clock).
        spool_max_bytes: The most the spool may hold; past it the oldest spool files are dropped (counted in
            ``on_dropped`` and a warning).
        max_pending_rows: The most rows kept in memory when even the spool cannot be written; past it the
            oldest are dropped.
        on_dropped: Called with ``(table, rows)`` for every row dropped.
        linger: Seconds the flusher gathers rows after ``flush_soon`` before writing them (one file for the
            tasks ending about then).
    """

    def __init__(
        self,
        store_factory: Callable[[], HealthStore],
        spool_dir: Path,
        flush_interval: float = 60.0,
        *,
        store_timeout: float = 10.0,
        breaker: StoreBreaker | None = None,
        spool_max_bytes: int = 1 << 30,
        max_pending_rows: int = 1_000_000,
        on_dropped: Callable[[str, int], None] | None = None,
        linger: float = FLUSH_SOON_LINGER_SECONDS,
    ) -> None:
        self._store_factory = store_factory
        self._flush_store: HealthStore | None = None  # the store flushes reuse until it faults (``_open_store``)
        self.flush_interval = flush_interval
        self.store_timeout = store_timeout
        self.breaker = breaker or StoreBreaker()
        self.spool = Spool(
            Path(spool_dir),
            max_bytes=spool_max_bytes,
            lease=max(60.0, 6 * store_timeout),
            on_dropped=lambda table, rows: self._dropped(table, rows, "spool"),
        )
        """The spool: its files, claims and bound (``health/spool.py``)."""
        self.max_pending_rows = max_pending_rows
        self._on_dropped = on_dropped
        self.linger = linger
        self.dropped: dict[str, int] = defaultdict(int)
        """Rows dropped per table (spool or memory full) since this recorder started."""
        self._pending: dict[str, list[Row]] = defaultdict(list)
        self._converted: dict[str, list[tuple[list[Row], pa.Table]]] = defaultdict(list)
        """Rows buffered already converted (``add_converted``): each batch's rows and their Arrow table."""
        self._lock = threading.Lock()
        self._set_aside_lock = threading.Lock()  # rows that do not fit are set aside by flushes and batch threads
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stop(), and by flush_soon() while the flusher is idle
        self._soon = False
        """A flush was asked for (``flush_soon``) since the flusher last looked."""
        self._idle = False
        """The flusher waits out a whole interval: ``flush_soon`` wakes it (else the flusher looks itself)."""
        self._thread: threading.Thread | None = None
        self._store_warning = WarnOnce(logger)
        self._spool_warning = WarnOnce(logger)
        self._sources: list[Callable[[], None]] = []
        self._writer = StoreThread()
        reset_in_child(self)

    def _after_fork_in_child(self) -> None:
        """A forked child has its parent's locks (perhaps held by the parent's flusher, mid-write, a thread the
        child does not have) and none of its threads: it starts with fresh locks, no flusher (``start`` starts
        its own), no open store (its connections are the parent's) and none of the parent's buffered rows (the
        parent writes those: the child writing its copy too would store them twice)."""
        self._pending = defaultdict(list)
        self._converted = defaultdict(list)
        self._lock = threading.Lock()
        self._set_aside_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._soon = self._idle = False  # (no flusher here: the child's own, once started, looks at its requests)
        self._thread = None
        self._flush_store = None

    def add_source(self, record_held: Callable[[], None]) -> None:
        """Rows held elsewhere until asked (a batch of task-run ends): ``record_held`` adds them to this recorder,
        and every flush calls it first, so a flush (the flusher's, the flow's end, the last one at exit) writes
        every row recorded before it. It must not raise."""
        self._sources.append(record_held)

    def _record_held(self) -> None:
        for record_held in self._sources:
            try:
                record_held()
            except Exception as exc:  # a source never costs the flush the other rows
                logger.debug("synthobs: rows held for a flush could not be recorded: %s", exc)

    # -- buffering -----------------------------------------------------------

    def add(self, table: str, rows: Row | list[Row]) -> None:
        """Buffer one row or several for ``table``."""
        batch = rows if isinstance(rows, list) else [rows]
        with self._lock:
            self._pending[table].extend(batch)

    def add_converted(self, table: str, rows: list[Row]) -> None:
        """Buffer ``rows`` for ``table`` converted to Arrow now, on the caller's thread.

        For a thread that records rows in the background (a batch of task-run ends): the flush then joins
        the converted tables instead of converting every row on its own thread (the flow's, at its end). The
        same rows reach the store as with ``add``; a row that does not fit its columns' types is set aside now,
        as a flush would set it aside."""
        if not rows:
            return
        data, kept = self._convert(table, rows)
        if kept:
            with self._lock:
                self._converted[table].append((kept, data))

    def pending(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._pending.values()) + sum(
                len(rows) for chunks in self._converted.values() for rows, _ in chunks
            )

    def _take_pending(self) -> tuple[dict[str, list[Row]], dict[str, list[tuple[list[Row], pa.Table]]]]:
        """The buffered rows, as added (``add``) and converted (``add_converted``), by table; the buffer empty."""
        with self._lock:
            batches = {t: rows for t, rows in self._pending.items() if rows}
            converted = {t: chunks for t, chunks in self._converted.items() if chunks}
            self._pending, self._converted = defaultdict(list), defaultdict(list)
        return batches, converted

    def _tables_of(
        self, batches: dict[str, list[Row]], converted: dict[str, list[tuple[list[Row], pa.Table]]]
    ) -> list[tuple[str, list[Row], pa.Table]]:
        """One ``(table, rows, Arrow table)`` per table: the converted batches joined with the rows converted
        here; tables without a row that fits are left out."""
        out = []
        for table in dict.fromkeys([*converted, *batches]):
            chunks = converted.get(table, [])
            rows = [row for kept, _ in chunks for row in kept]
            parts = [data for _, data in chunks]
            if table in batches:
                data, kept = self._convert(table, batches[table])
                rows.extend(kept)
                parts.append(data)
            data = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
            if data.num_rows:
                out.append((table, rows, data))
        return out

    # -- flushing ------------------------------------------------------------

    def flush(self, *, background: bool = False) -> int:
        """Write spooled rows, then buffered rows; spool what the store refuses.

        Never raises, and never waits on the store longer than ``store_timeout`` per call; while the store is
        skipped (``breaker``), only a ``background`` flush (the flusher thread's) tries it. Returns the number of
        rows the store accepted.
        """
        self._record_held()
        with self._flush_lock:
            batches, converted_batches = self._take_pending()
            if not batches and not converted_batches and not self.breaker.is_open and self.spool.is_empty():
                # nothing to write: open no store, start no thread (Python 3.12.1 refuses threads at exit)
                return 0
            store = self._open_store(background, reuse=True)
            retrying = store is not None and self.breaker.is_open
            written = self._drain_spool(store, background) if store is not None else 0
            converted = self._tables_of(batches, converted_batches)
            done = (
                self._write_tables(store, [(table, data) for table, _, data in converted], background)
                if store is not None and converted
                else 0
            )
            for i, (table, rows, data) in enumerate(converted):
                if i < done:
                    written += data.num_rows
                else:
                    self._spool(table, data, rows)
            if retrying and self.breaker.is_open and self.breaker.allows(background=background):
                self._probe(store)  # nothing was written: ask the store itself
            return written

    def _probe(self, store: HealthStore | None) -> None:
        assert store is not None
        try:
            call_bounded(store.check, self.store_timeout, name="synthobs-store-probe")
        except Exception as exc:
            self.breaker.failed()
            self._store_fault(exc, store)
            return
        self.breaker.succeeded()
        if self._store_warning.ok():
            logger.info("synthobs: health store %s answers again", strip_url_credentials(store.url))

    def _to_arrow(self, table: str, rows: list[Row]) -> pa.Table:
        """``rows`` as an Arrow table. A row that does not fit its columns' types
        is set aside in ``<spool_dir>/_rejected/<table>.jsonl`` (one warning);
        the others are kept: a conversion error never drops a batch."""
        return self._convert(table, rows)[0]

    def _convert(self, table: str, rows: list[Row]) -> tuple[pa.Table, list[Row]]:
        """``rows`` as an Arrow table, and the rows it holds (those that fit); the others set aside (``_to_arrow``)."""
        data, rejected = rows_to_arrow(table, rows)
        if not rejected:
            return data, rows
        with self._set_aside_lock:
            self.spool.set_aside(table, rejected, data.num_rows)
        left_out = {id(row) for row, _ in rejected}
        return data, [row for row in rows if id(row) not in left_out]

    def _open_store(self, background: bool, *, reuse: bool = False) -> HealthStore | None:
        """The store (opened on a bounded thread); ``reuse``: the one a flush opened before, until a fault."""
        if not self.breaker.allows(background=background):
            return None
        if reuse and self._flush_store is not None:
            return self._flush_store
        try:
            store = call_bounded(self._store_factory, self.store_timeout, name="synthobs-store-open")
        except Exception as exc:  # bad URL, missing credentials, no answer...
            self.breaker.failed()
            self._store_fault(exc)
            return None
        self._flush_store = store if reuse else self._flush_store
        return store

    def _try_write(self, store: HealthStore, table: str, data: pa.Table, background: bool) -> bool:
        return self._write_tables(store, [(table, data)], background) == 1

    def _write_tables(self, store: HealthStore, tables: list[tuple[str, pa.Table]], background: bool) -> int:
        """Write ``tables`` in order on the store thread, handed over at once (``StoreThread.call_each``: one
        thread wake-up each way per flush, not per table), each given ``store_timeout`` from its start (a slow
        but answering store gets that much per table; a hung one costs one timeout); how many of them, from the
        first, the store took. The rest are for the caller to spool."""
        if not self.breaker.allows(background=background):
            return 0  # failed earlier in this flush: spool the rest at once
        written, error = self._writer.call_each(
            [functools.partial(self._write_one, store, table, data) for table, data in tables], self.store_timeout
        )
        if error is not None:
            self.breaker.failed()
            self._store_fault(error, store)
            return written
        self.breaker.succeeded()
        self._spool_warning.ok()  # the rows reach the store: a spool fault is a new one the next time it costs rows
        if self._store_warning.ok():
            logger.info("synthobs: health store %s is writable again", strip_url_credentials(store.url))
        return written

    @staticmethod
    def _write_one(store: HealthStore, table: str, data: pa.Table) -> None:
        """One table's write, in its ``storage.write`` span (a child of the caller's current span)."""
        attributes = {names.ATTR_STORAGE_TABLE: table, names.ATTR_STORAGE_ROWS: data.num_rows}
        with open_span(names.SPAN_STORAGE_WRITE, attributes, redact_pii=False) as write_span:
            paths = store.write(table, data)
            if write_span.is_recording():
                write_span.set_attribute(names.ATTR_STORAGE_FILES, len(paths))
                write_span.set_attribute(names.ATTR_STORAGE_BYTES, store.size_of(paths))

    def _store_fault(self, exc: BaseException, store: HealthStore | None = None) -> None:
        self._flush_store = None  # the next flush opens the store afresh
        self._store_warning.fail(
            "synthobs: cannot write the health store %s (%s: %s); rows are kept in %s "
            "and written once a background retry reaches the store. The flow is unaffected.",
            strip_url_credentials(store.url) if store is not None else "(unavailable)",
            type(exc).__name__,
            strip_url_credentials(str(exc)),
            self.spool_dir,
        )

    def _spool(self, table: str, data: pa.Table, rows: list[Row]) -> None:
        try:
            self.spool.write(table, data)
        except Exception as exc:
            # once per fault (a full disk fails every flush): said again only after the spool took rows again
            self._spool_warning.fail(
                "synthobs: cannot spool %d %s rows to %s (%s); keeping them in memory (at most %d rows, the oldest "
                "dropped beyond that and counted in rows_dropped_total) until the store or the spool takes them",
                len(rows),
                table,
                self.spool_dir / table,
                exc,
                self.max_pending_rows,
            )
            self._keep_in_memory(table, rows)
            return
        if self._spool_warning.ok():
            logger.info("synthobs: the spool %s is writable again", self.spool_dir)
        self.spool.limit()

    def _keep_in_memory(self, table: str, rows: list[Row]) -> None:
        """Put ``rows`` back at the head of the buffer, dropping the oldest past ``max_pending_rows``."""
        with self._lock:
            self._pending[table][:0] = rows
            # (rows a batch thread converted meanwhile are not counted: the next flush takes them, and only
            # these rows' table is trimmed here, each drop counted)
            excess = sum(len(v) for v in self._pending.values()) - self.max_pending_rows
            if excess > 0:
                del self._pending[table][:excess]  # the oldest go first
        if excess > 0:
            self._dropped(table, min(excess, len(rows)), "memory")

    def spool_now(self) -> None:
        """Put the buffered rows on local disk now, on this thread, and have the flusher take them on.

        For a process that may be killed the moment the caller returns (a
        worker whose task just ended): the rows are in the spool before then,
        with no store call, no thread hand-off and no Arrow conversion (a JSON
        file, ``Spool.write_rows``: about 0.3 ms for a task's rows in a busy
        worker, 2.6 ms as Arrow), and reach the store from there in the background. If
        the process dies first, the next recorder draining this spool takes
        them (on one host, the flow's own process, at its end). Never raises:
        rows that cannot be spooled stay buffered for the flusher (one warning).
        """
        batches, converted = self._take_pending()
        for table, chunks in converted.items():  # (rows a batch thread converted: spooled as any others)
            batches.setdefault(table, [])[:0] = [row for rows, _ in chunks for row in rows]
        for table, rows in batches.items():
            try:
                self._spool_rows(table, rows)
                self._spool_warning.ok()
            except Exception as exc:
                self._spool_warning.fail(
                    "synthobs: cannot spool rows to %s (%s); they are written from memory instead", self.spool_dir, exc
                )
                self._keep_in_memory(table, rows)
        if batches:
            self.flush_soon()  # the flusher drains it, or keeps it within spool_max_bytes while the store is down

    def _spool_rows(self, table: str, rows: list[Row]) -> None:
        """One spool file of ``rows``: JSON, converted by the drainer (``Spool.write_rows``: no Arrow work on the
        task's thread), or, for values JSON does not carry exactly, Arrow IPC as converted here.

        Raises:
            OSError: The spool cannot be written.
        """
        try:
            self.spool.write_rows(table, rows)
            return
        except NotPlainRows:
            pass
        data = self._to_arrow(table, rows)
        if data.num_rows:
            self.spool.write(table, data, arrow=True)

    def persist(self, table: str, rows: list[Row]) -> bool:
        """Make ``rows`` durable now, on this thread, before the caller acknowledges what they record.

        For rows that must survive the process being killed the moment the
        caller returns (a privacy spend's ledger row): they are written to a
        spool file synchronously (about a millisecond; the flusher takes them
        to the store), or, if the spool cannot be written, to the store
        (bounded by ``store_timeout``). They are not buffered: nothing else
        writes them. Returns whether they are durable; never raises.
        """
        try:
            data = self._to_arrow(table, rows)  # a row that does not fit is set aside, not lost
            if data.num_rows == 0:
                return True
        except Exception as exc:
            logger.warning("synthobs: %d %s row(s) not made durable (%s)", len(rows), table, exc)
            return False
        try:
            self.spool.write(table, data, arrow=True)
            self._spool_warning.ok()
            self.flush_soon()
            return True
        except Exception as exc:
            self._spool_warning.fail(
                "synthobs: cannot spool rows to %s (%s); they are written to the store directly", self.spool_dir, exc
            )
        store = self._open_store(background=False)
        return store is not None and self._try_write(store, table, data, background=False)

    def _dropped(self, table: str, rows: int, where: str) -> None:
        self.dropped[table] += rows
        logger.warning(
            "synthobs: the %s is full: dropped %d of the oldest %s rows (%d dropped in all); "
            "raise spool_max_bytes or bring the store back.",
            where,
            rows,
            table,
            sum(self.dropped.values()),
        )
        if self._on_dropped is not None:
            with contextlib.suppress(Exception):
                self._on_dropped(table, rows)

    @property
    def spool_dir(self) -> Path:
        """Local directory for rows the store could not take."""
        return self.spool.directory

    @property
    def spool_max_bytes(self) -> int:
        """The most the spool may hold; past it the oldest spool files are dropped."""
        return self.spool.max_bytes

    @property
    def claim_lease(self) -> float:
        """Seconds after which a spool file claimed by a drainer that never finished is given back to the spool."""
        return self.spool.lease

    def _drain_spool(self, store: HealthStore, background: bool) -> int:
        """Write the spool to ``store`` (``Spool.drain``), each merged write bounded and breaker-checked.

        A spool that cannot be drained never costs the rows this flush holds: its files stay for a later drain,
        one warning."""
        try:
            return self.spool.drain(lambda table, data: self._try_write(store, table, data, background))
        except Exception as exc:
            self._spool_warning.fail(
                "synthobs: cannot drain the health spool %s (%s); its rows stay there for a later flush",
                self.spool_dir,
                exc,
            )
            return 0

    def spooled_files(self) -> list[Path]:
        """Spool files waiting to be written."""
        return self.spool.files()

    # -- background ----------------------------------------------------------

    def start(self) -> None:
        """Start the periodic flusher (idempotent)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._wake.clear()
            self._thread = threading.Thread(target=self._run, name="synthobs-flusher", daemon=True)
            self._thread.start()

    def flush_soon(self) -> None:
        """Ask the flusher thread to flush within ``linger`` instead of at its next interval (never waits).

        A flusher waiting out its interval is woken. One that flushed for an earlier request in its last pass
        looks for another itself, ``linger`` later, unwoken: a busy worker's task ends cost no system call and
        no wake-up each (one every ``linger`` was about 25 µs per task on average, in the task's own time). The
        flusher clears the request before it flushes, so a flush still to come reads what was spooled before
        this call."""
        self._soon = True
        if self._idle and not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        busy = False  # the last pass flushed for a request: look for the next one after ``linger``, unwoken
        while True:
            if busy:
                self._stop.wait(min(self.linger, self.flush_interval))
            else:
                self._idle = True
                # (``_idle`` first: a request made before it was set is seen here, one made after wakes the wait)
                woken = self._soon or self._wake.wait(self._next_wait())
                self._idle = False
                if woken and not self._stop.is_set():
                    # rows of tasks ending about now go into one file, not one file each
                    self._stop.wait(min(self.linger, self.flush_interval))
            if self._stop.is_set():
                return
            self._wake.clear()
            busy, self._soon = self._soon, False
            retry = self.breaker.seconds_to_retry()
            if self.pending() or self.spooled_files() or retry == 0.0:
                self.flush(background=True)
                if self.breaker.is_open:  # rows spooled by spool_now wait: keep the spool within its bound
                    self.spool.limit()

    def _next_wait(self) -> float:
        retry = self.breaker.seconds_to_retry()
        return self.flush_interval if retry is None else min(self.flush_interval, max(retry, 0.05))

    def stop(self, *, flush: bool = True) -> None:
        """Stop the periodic flusher and write what is left (``final_flush``)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None
        if flush:
            self.final_flush()
        self.spool.close()  # this process's spool logs (what is left in them stays for a drainer)

    def final_flush(self) -> int:
        """The last flush of this recorder (at process exit): rows reach the store if it answers now.

        A store that failed earlier (skipped until its backoff passed) is asked once more, bounded by
        ``store_timeout``: there is no later retry; if it answers the spool is drained into it with the buffered
        rows. Rows left in the spool cost one warning naming the spool directory and their count: the next
        synthobs process using this spool and store writes them, and a spool on a disk that goes away (a
        container's, a pod's) takes them with it. Never raises; returns the number of rows the store accepted.
        """
        probed = self.breaker.is_open and self._probe_at_exit()
        written = self.flush()
        if probed and written and not self.breaker.is_open:
            logger.info("synthobs: the health store answers again: %d row(s) written to it at exit", written)
        self._warn_left_behind()
        return written

    def _probe_at_exit(self) -> bool:
        """Ask a store that failed earlier once more, bounded by ``store_timeout``; whether it answered."""
        try:
            call_bounded(lambda: self._store_factory().check(), self.store_timeout, name="synthobs-store-probe")
        except Exception as exc:
            logger.debug("synthobs: the health store still does not answer at exit (%s)", exc)
            return False
        self.breaker.succeeded()
        return True

    def spooled_rows(self) -> int:
        """Rows in the spool files waiting to be written (a file that cannot be read counts nothing)."""
        return self.spool.rows()

    def _warn_left_behind(self) -> None:
        try:
            rows = self.spooled_rows()
        except Exception:  # never fail a process's exit over a warning
            return
        in_memory = self.pending()
        if not rows and not in_memory:
            return
        lost = f"; {in_memory} more row(s) could not even be spooled and are lost" if in_memory else ""
        logger.warning(
            "synthobs: %d health row(s) stay in the spool %s: the store did not take them%s. The next synthobs "
            "process using this spool_dir and store writes them; a spool on a container's or pod's own disk goes "
            "with it, so point spool_dir at a persistent volume.",
            rows,
            self.spool_dir,
            lost,
        )
