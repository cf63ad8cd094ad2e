"""Buffers health rows in memory and writes them to the store.

Rows are written when an observed flow run ends (one file per table per
flush, not one per task) and, for long runs, by a daemon thread every
``flush_interval_seconds``. If the store cannot be written, rows go to a local
spool directory as Parquet files and are written on a later flush: a store
fault costs one warning, never a row and never the flow's result.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefect_synthobs import catalog as names
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.health.tables import Row, schema_for
from prefect_synthobs.telemetry.tracing import open_span

logger = logging.getLogger("prefect_synthobs.health.store")


class Recorder:
    """Buffer, writer and spool for health rows.

    Args:
        store_factory: Returns the ``HealthStore`` to write to (called per flush,
            so a store that was unreachable at start-up can come back).
        spool_dir: Local directory for rows the store could not take.
        flush_interval: Seconds between background flushes.
    """

    def __init__(
        self,
        store_factory: Callable[[], HealthStore],
        spool_dir: Path,
        flush_interval: float = 60.0,
    ) -> None:
        self._store_factory = store_factory
        self.spool_dir = Path(spool_dir)
        self.flush_interval = flush_interval
        self._pending: dict[str, list[Row]] = defaultdict(list)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store_warning = WarnOnce(logger)

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

    def flush(self) -> int:
        """Write spooled rows, then buffered rows; spool what the store refuses.

        Never raises. Returns the number of rows the store accepted.
        """
        with self._flush_lock:
            with self._lock:
                batches = {t: rows for t, rows in self._pending.items() if rows}
                self._pending = defaultdict(list)
            try:
                store = self._store_factory()
            except Exception as exc:  # bad URL, missing credentials...
                store = None
                self._store_fault(exc)
            written = self._drain_spool(store) if store is not None else 0
            for table, rows in batches.items():
                data = pa.Table.from_pylist(rows, schema=schema_for(table))
                if store is not None and self._try_write(store, table, data):
                    written += data.num_rows
                else:
                    self._spool(table, data, rows)
            return written

    def _try_write(self, store: HealthStore, table: str, data: pa.Table) -> bool:
        try:
            attributes = {names.ATTR_STORAGE_TABLE: table, names.ATTR_STORAGE_ROWS: data.num_rows}
            with open_span(names.SPAN_STORAGE_WRITE, attributes, redact_pii=False) as write_span:
                paths = store.write(table, data)
                if write_span.is_recording():
                    write_span.set_attribute(names.ATTR_STORAGE_FILES, len(paths))
                    write_span.set_attribute(names.ATTR_STORAGE_BYTES, store.size_of(paths))
        except Exception as exc:
            self._store_fault(exc, store)
            return False
        if self._store_warning.ok():
            logger.info("synthobs: health store %s is writable again", store.url)
        return True

    def _store_fault(self, exc: BaseException, store: HealthStore | None = None) -> None:
        self._store_warning.fail(
            "synthobs: cannot write the health store %s (%s: %s); rows are kept in %s "
            "and written on a later flush. The flow is unaffected.",
            store.url if store is not None else "(unavailable)",
            type(exc).__name__,
            exc,
            self.spool_dir,
        )

    def _spool(self, table: str, data: pa.Table, rows: list[Row]) -> None:
        directory = self.spool_dir / table
        name = f"part-{uuid.uuid4().hex}.parquet"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = directory / f".{name}.tmp"
            pq.write_table(data, tmp)
            tmp.replace(directory / name)
        except Exception as exc:
            logger.warning(
                "synthobs: cannot spool %d %s rows to %s (%s); keeping them in memory",
                len(rows),
                table,
                directory,
                exc,
            )
            with self._lock:
                self._pending[table][:0] = rows

    def _drain_spool(self, store: HealthStore) -> int:
        written = 0
        if not self.spool_dir.is_dir():
            return 0
        for table_dir in sorted(p for p in self.spool_dir.iterdir() if p.is_dir()):
            try:
                schema = schema_for(table_dir.name)
            except ValueError:
                continue
            for path in sorted(table_dir.glob("part-*.parquet")):
                claimed = path.with_name(f".{path.name}.{uuid.uuid4().hex}.claim")
                try:
                    path.rename(claimed)  # another process may be draining too
                except OSError:
                    continue
                try:
                    data = pq.read_table(claimed, schema=schema)
                except Exception as exc:
                    logger.warning("synthobs: unreadable spool file %s (%s); left in place", path, exc)
                    claimed.rename(path.with_suffix(".bad"))
                    continue
                if self._try_write(store, table_dir.name, data):
                    claimed.unlink(missing_ok=True)
                    written += data.num_rows
                else:
                    claimed.rename(path)
                    return written
        return written

    def spooled_files(self) -> list[Path]:
        """Spool files waiting to be written."""
        if not self.spool_dir.is_dir():
            return []
        return sorted(self.spool_dir.glob("*/part-*.parquet"))

    # -- background ----------------------------------------------------------

    def start(self) -> None:
        """Start the periodic flusher (idempotent)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="synthobs-flusher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            if self.pending() or self.spooled_files():
                self.flush()

    def stop(self, *, flush: bool = True) -> None:
        """Stop the periodic flusher and write what is left."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None
        if flush:
            self.flush()
