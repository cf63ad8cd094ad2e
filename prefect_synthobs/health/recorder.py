"""Buffers health rows in memory and writes them to the store.

Rows are written when an observed flow run ends (one file per table per
flush, not one per task) and, for long runs, by a daemon thread every
``flush_interval_seconds``. If the store cannot be written, rows go to a local
spool directory as Parquet files and are written on a later flush: a store
fault costs one warning, never a row and never the flow's result.

Time is bounded: each store write runs on its own daemon thread and the flush
waits for it at most ``store_timeout`` seconds; past that its rows are spooled.
A store that failed is then skipped (``StoreBreaker``): flushes spool at once,
costing a flow nothing, until the background flusher's retry (after a backoff
that doubles up to five minutes) succeeds. A write that was given up on may
still land later; its rows are then in the store twice with the same
``event_id``, which ``HealthStore.read`` drops.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from prefect_synthobs import catalog as names
from prefect_synthobs._log import get_logger
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.health.tables import Row, schema_for
from prefect_synthobs.telemetry.redaction import strip_url_credentials
from prefect_synthobs.telemetry.tracing import open_span

logger = get_logger("store")

T = TypeVar("T")


class StoreTimeout(TimeoutError):
    """A store call did not finish within the store timeout."""


FLUSH_SOON_LINGER_SECONDS = 1.0
"""How long the flusher gathers rows after ``flush_soon`` before it writes them."""

DRAIN_BATCH_BYTES = 64 << 20
"""The most spool file bytes merged into one store write."""


def call_bounded(fn: Callable[[], T], timeout: float, *, name: str = "synthobs-store-write") -> T:
    """``fn()`` on a daemon thread, waited for at most ``timeout`` seconds.

    Raises:
        StoreTimeout: ``fn`` had not finished in time (it goes on in the
            background; a daemon thread never holds the interpreter's exit).
        Exception: whatever ``fn`` raised.
    """
    done = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    # in the caller's context: Prefect's settings (API URL, client timeouts) are context variables
    threading.Thread(target=contextvars.copy_context().run, args=(run,), name=name, daemon=True).start()
    if not done.wait(timeout):
        raise StoreTimeout(f"no answer within {timeout:g} s (store_timeout_seconds)")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def _spool_files(table_dir: Path) -> list[Path]:
    return [*table_dir.glob("part-*.parquet"), *table_dir.glob("part-*.arrow")]


def _read_spool_file(path: Path, suffix: str, schema: pa.Schema) -> pa.Table:
    """A spool file as ``schema`` (a column added since it was written reads as nulls)."""
    if suffix != ".arrow":
        return pq.read_table(path, schema=schema)
    with pa.OSFile(str(path)) as source:
        data = pa.ipc.open_file(source).read_all()
    columns = [
        data.column(f.name).cast(f.type) if f.name in data.column_names else pa.nulls(data.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _spool_file_rows(path: Path) -> int:
    if path.suffix == ".arrow":
        with pa.OSFile(str(path)) as source:
            return int(pa.ipc.open_file(source).read_all().num_rows)
    return int(pq.read_metadata(path).num_rows)


def adopt_unkeyed_spool(root: Path, spool: Path) -> int:
    """Move spool files of the layout before each store had its own spool (``<root>/<table>/``) into ``spool``.

    Those rows were drained by whichever process of this host flushed next,
    into its store; a process that starts does the same, once. Returns the
    number of files moved; never raises (what cannot be moved stays).
    """
    moved = 0
    for table in names.TABLES:
        old = root / table
        try:  # an unreadable directory (permissions) is left as it is
            if not old.is_dir() or old == spool / table:
                continue
            files = _spool_files(old)
        except OSError:
            continue
        for path in files:
            with contextlib.suppress(OSError):
                (spool / table).mkdir(parents=True, exist_ok=True)
                path.rename(spool / table / path.name)
                moved += 1
    if moved:
        logger.info("synthobs: %d spool file(s) from an earlier version moved to %s", moved, spool)
    return moved


class StoreBreaker:
    """Skips a store that failed until a background retry succeeds.

    Closed (the store answered last time): every flush writes. Open (it
    failed): foreground flushes spool at once; the background flusher retries
    once the backoff (``base`` seconds, doubled per failure up to ``cap``)
    has passed.

    Args:
        base: Seconds before the first retry.
        cap: The longest backoff.
        clock: Monotonic seconds (injected by tests).
    """

    def __init__(self, *, base: float = 5.0, cap: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.base, self.cap, self._clock = base, cap, clock
        self.failures = 0
        self._retry_at = 0.0
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self.failures > 0

    def allows(self, *, background: bool) -> bool:
        """Whether a write may go to the store now."""
        with self._lock:
            return self.failures == 0 or (background and self._clock() >= self._retry_at)

    def seconds_to_retry(self) -> float | None:
        """Seconds until a background retry is due (``None`` while closed)."""
        with self._lock:
            return None if self.failures == 0 else max(self._retry_at - self._clock(), 0.0)

    def failed(self) -> None:
        with self._lock:
            self.failures += 1
            self._retry_at = self._clock() + min(self.cap, self.base * 2 ** (self.failures - 1))

    def succeeded(self) -> None:
        with self._lock:
            self.failures = 0


class Recorder:
    """Buffer, writer and spool for health rows.

    Args:
        store_factory: Returns the ``HealthStore`` to write to (called per flush,
            so a store that was unreachable at start-up can come back).
        spool_dir: Local directory for rows the store could not take.
        flush_interval: Seconds between background flushes.
        store_timeout: The longest one store call may hold a flush.
        breaker: Decides when a failed store is tried again (tests inject one
            with their own clock).
        spool_max_bytes: The most the spool may hold; past it the oldest spool
            files are dropped (counted in ``on_dropped`` and a warning).
        max_pending_rows: The most rows kept in memory when even the spool
            cannot be written; past it the oldest are dropped.
        on_dropped: Called with ``(table, rows)`` for every row dropped.
        linger: Seconds the flusher gathers rows after ``flush_soon`` before
            writing them (one file for the tasks ending about then).
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
        self.spool_dir = Path(spool_dir)
        self.flush_interval = flush_interval
        self.store_timeout = store_timeout
        self.breaker = breaker or StoreBreaker()
        self.spool_max_bytes = spool_max_bytes
        self.max_pending_rows = max_pending_rows
        self._on_dropped = on_dropped
        self.linger = linger
        self.dropped: dict[str, int] = defaultdict(int)
        """Rows dropped per table (spool or memory full) since this recorder started."""
        self._pending: dict[str, list[Row]] = defaultdict(list)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stop() and flush_soon()
        self._thread: threading.Thread | None = None
        self._store_warning = WarnOnce(logger)
        self._spool_warning = WarnOnce(logger)

    # -- buffering -----------------------------------------------------------

    def add(self, table: str, rows: Row | list[Row]) -> None:
        """Buffer one row or several for ``table``."""
        batch = rows if isinstance(rows, list) else [rows]
        with self._lock:
            self._pending[table].extend(batch)

    def pending(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._pending.values())

    # -- flushing ------------------------------------------------------------

    def flush(self, *, background: bool = False) -> int:
        """Write spooled rows, then buffered rows; spool what the store refuses.

        Never raises, and never waits on the store longer than ``store_timeout``
        per call; while the store is skipped (``breaker``), only a
        ``background`` flush (the flusher thread's) tries it. Returns the number
        of rows the store accepted.
        """
        with self._flush_lock:
            with self._lock:
                batches = {t: rows for t, rows in self._pending.items() if rows}
                self._pending = defaultdict(list)
            store = self._open_store(background)
            retrying = store is not None and self.breaker.is_open
            written = self._drain_spool(store, background) if store is not None else 0
            for table, rows in batches.items():
                data = self._to_arrow(table, rows)
                if data.num_rows == 0:
                    continue
                if store is not None and self._try_write(store, table, data, background):
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
        schema = schema_for(table)
        try:
            return pa.Table.from_pylist(rows, schema=schema)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            pass
        good: list[Row] = []
        rejected: list[tuple[Row, str]] = []
        for row in rows:
            try:
                pa.Table.from_pylist([row], schema=schema)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                rejected.append((row, f"{type(exc).__name__}: {exc}"))
            else:
                good.append(row)
        path = self.spool_dir / "_rejected" / f"{table}.jsonl"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                for row, why in rejected:
                    out.write(json.dumps({"table": table, "error": why, "row": row}, default=str) + "\n")
            kept = f"kept in {path}"
        except OSError as exc:
            kept = f"and could not be kept ({exc})"
        logger.warning(
            "synthobs: %d %s row(s) do not fit the table's column types (%s); %s. The other %d row(s) are written.",
            len(rejected),
            table,
            rejected[0][1],
            kept,
            len(good),
        )
        return pa.Table.from_pylist(good, schema=schema)

    def _open_store(self, background: bool) -> HealthStore | None:
        if not self.breaker.allows(background=background):
            return None
        try:
            return call_bounded(self._store_factory, self.store_timeout, name="synthobs-store-open")
        except Exception as exc:  # bad URL, missing credentials, no answer...
            self.breaker.failed()
            self._store_fault(exc)
            return None

    def _try_write(self, store: HealthStore, table: str, data: pa.Table, background: bool) -> bool:
        if not self.breaker.allows(background=background):
            return False  # failed earlier in this flush: spool the rest at once
        try:
            attributes = {names.ATTR_STORAGE_TABLE: table, names.ATTR_STORAGE_ROWS: data.num_rows}
            with open_span(names.SPAN_STORAGE_WRITE, attributes, redact_pii=False) as write_span:
                paths = call_bounded(lambda: store.write(table, data), self.store_timeout)
                if write_span.is_recording():
                    write_span.set_attribute(names.ATTR_STORAGE_FILES, len(paths))
                    write_span.set_attribute(names.ATTR_STORAGE_BYTES, store.size_of(paths))
        except Exception as exc:
            self.breaker.failed()
            self._store_fault(exc, store)
            return False
        self.breaker.succeeded()
        self._spool_warning.ok()  # the rows reach the store: a spool fault is a new one the next time it costs rows
        if self._store_warning.ok():
            logger.info("synthobs: health store %s is writable again", strip_url_credentials(store.url))
        return True

    def _store_fault(self, exc: BaseException, store: HealthStore | None = None) -> None:
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
            self._write_spool_file(table, data)
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
        self._limit_spool()

    def _write_spool_file(self, table: str, data: pa.Table, *, arrow: bool = False) -> None:
        """One spool file: Parquet (compact, for rows that may wait long) or, with ``arrow``, Arrow IPC
        (a fifth of Parquet's cost for a task's few rows, drained within seconds)."""
        directory = self.spool_dir / table
        name = f"part-{uuid.uuid4().hex}.{'arrow' if arrow else 'parquet'}"
        tmp = directory / f".{name}.tmp"
        directory.mkdir(parents=True, exist_ok=True)
        if arrow:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, data.schema) as writer:
                writer.write_table(data)
        else:
            pq.write_table(data, tmp)
        tmp.replace(directory / name)  # whole, or not there: a drainer never reads half a file

    def _keep_in_memory(self, table: str, rows: list[Row]) -> None:
        """Put ``rows`` back at the head of the buffer, dropping the oldest past ``max_pending_rows``."""
        with self._lock:
            self._pending[table][:0] = rows
            excess = sum(len(v) for v in self._pending.values()) - self.max_pending_rows
            if excess > 0:
                del self._pending[table][:excess]  # the oldest go first
        if excess > 0:
            self._dropped(table, min(excess, len(rows)), "memory")

    def spool_now(self) -> None:
        """Put the buffered rows on local disk now, on this thread, and have the flusher take them on.

        For a process that may be killed the moment the caller returns (a
        worker whose task just ended): the rows are in the spool before then,
        with no store call and no thread hand-off (about a millisecond for a
        task's rows), and reach the store from there in the background. If
        the process dies first, the next recorder draining this spool takes
        them (on one host, the flow's own process, at its end). Never raises:
        rows that cannot be spooled stay buffered for the flusher (one warning).
        """
        with self._lock:
            batches = {t: rows for t, rows in self._pending.items() if rows}
            self._pending = defaultdict(list)
        for table, rows in batches.items():
            try:
                data = self._to_arrow(table, rows)
                if data.num_rows:
                    self._write_spool_file(table, data, arrow=True)
                self._spool_warning.ok()
            except Exception as exc:
                self._spool_warning.fail(
                    "synthobs: cannot spool rows to %s (%s); they are written from memory instead", self.spool_dir, exc
                )
                self._keep_in_memory(table, rows)
        if batches:
            self.flush_soon()  # the flusher drains it, or keeps it within spool_max_bytes while the store is down

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
            self._write_spool_file(table, data, arrow=True)
            self._spool_warning.ok()
            self.flush_soon()
            return True
        except Exception as exc:
            self._spool_warning.fail(
                "synthobs: cannot spool rows to %s (%s); they are written to the store directly", self.spool_dir, exc
            )
        store = self._open_store(background=False)
        return store is not None and self._try_write(store, table, data, background=False)

    def _limit_spool(self) -> None:
        """Drop the oldest spool files while the spool holds more than ``spool_max_bytes``."""
        files = []
        for path in self.spooled_files():
            with contextlib.suppress(OSError):
                info = path.stat()
                files.append((info.st_mtime, info.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.spool_max_bytes:
                break
            try:
                rows = _spool_file_rows(path)
            except Exception:
                rows = 0
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size
                self._dropped(path.parent.name, rows, "spool")

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
    def claim_lease(self) -> float:
        """Seconds after which a spool file claimed by a drainer that never
        finished (killed mid-drain) is given back to the spool."""
        return max(60.0, 6 * self.store_timeout)

    def _recover_claims(self, table_dir: Path) -> None:
        now = time.time()
        for claim in table_dir.glob(".part-*.claim"):
            try:
                if now - claim.stat().st_mtime <= self.claim_lease:
                    continue
                original = claim.name[1:].rsplit(".", 2)[0]  # .part-X.parquet.<uuid>.claim -> part-X.parquet
                claim.rename(table_dir / original)
                logger.info(
                    "synthobs: spool file %s was claimed by a drainer that never finished; retrying it", original
                )
            except OSError:
                continue

    def _drain_spool(self, store: HealthStore, background: bool) -> int:
        """Write the spool to the store, its files merged per table (up to ``DRAIN_BATCH_BYTES`` a write).

        A worker spools each task's rows (``spool_now``): merged, a second of
        them becomes one store file, not one per task.
        """
        written = 0
        if not self.spool_dir.is_dir():
            return 0
        for table_dir in sorted(p for p in self.spool_dir.iterdir() if p.is_dir()):
            try:
                schema = schema_for(table_dir.name)
            except ValueError:
                continue
            self._recover_claims(table_dir)
            for batch in self._spool_batches(table_dir):
                claims = self._claim(batch)
                parts = []
                for path, claimed in claims:
                    try:
                        parts.append((path, claimed, _read_spool_file(claimed, path.suffix, schema)))
                    except Exception as exc:
                        logger.warning("synthobs: unreadable spool file %s (%s); left in place", path, exc)
                        claimed.rename(path.with_suffix(".bad"))
                if not parts:
                    continue
                data = pa.concat_tables([part for _, _, part in parts])
                if self._try_write(store, table_dir.name, data, background):
                    for _, claimed, _ in parts:
                        claimed.unlink(missing_ok=True)
                    written += data.num_rows
                else:
                    for path, claimed, _ in parts:
                        claimed.rename(path)
                    return written
        return written

    @staticmethod
    def _spool_batches(table_dir: Path) -> Iterator[list[Path]]:
        """The table's spool files by name, in groups of at most ``DRAIN_BATCH_BYTES`` (one file at least)."""
        batch: list[Path] = []
        size = 0
        for path in sorted(_spool_files(table_dir)):
            try:
                length = path.stat().st_size
            except OSError:
                continue  # claimed by another drainer meanwhile
            if batch and size + length > DRAIN_BATCH_BYTES:
                yield batch
                batch, size = [], 0
            batch.append(path)
            size += length
        if batch:
            yield batch

    @staticmethod
    def _claim(paths: list[Path]) -> list[tuple[Path, Path]]:
        """Rename each file to a claim of this drainer's; another process may be draining too (it skips them)."""
        claims = []
        for path in paths:
            claimed = path.with_name(f".{path.name}.{uuid.uuid4().hex}.claim")
            try:
                path.rename(claimed)
                os.utime(claimed)  # the claim's age starts now (its lease)
            except OSError:
                continue
            claims.append((path, claimed))
        return claims

    def spooled_files(self) -> list[Path]:
        """Spool files waiting to be written."""
        if not self.spool_dir.is_dir():
            return []
        return sorted(
            path for table_dir in self.spool_dir.iterdir() if table_dir.is_dir() for path in _spool_files(table_dir)
        )

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
        """Ask the flusher thread to flush now instead of at its next interval (never waits)."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            woken = self._wake.wait(self._next_wait())
            if woken and not self._stop.is_set():
                # rows of tasks ending about now go into one file, not one file each
                self._stop.wait(min(self.linger, self.flush_interval))
            if self._stop.is_set():
                return
            self._wake.clear()
            retry = self.breaker.seconds_to_retry()
            if self.pending() or self.spooled_files() or retry == 0.0:
                self.flush(background=True)
                if self.breaker.is_open:  # rows spooled by spool_now wait: keep the spool within its bound
                    self._limit_spool()

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

    def final_flush(self) -> int:
        """The last flush of this recorder (at process exit): rows reach the store if it answers now.

        A store that failed earlier is skipped until its backoff has passed;
        at exit there is no later retry, so it is asked once more (one call
        bounded by ``store_timeout``), and if it answers the spool is drained
        into it with the buffered rows. Rows that must stay in the spool cost
        one warning naming the spool directory and their count: the next
        synthobs process using this spool and store writes them, and a spool on
        a disk that goes away (a container's, a pod's) takes them with it.
        Never raises; returns the number of rows the store accepted.
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
        total = 0
        for path in self.spooled_files():
            with contextlib.suppress(Exception):
                total += _spool_file_rows(path)
        return total

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
