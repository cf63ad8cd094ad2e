"""The Parquet health store: one Hive-partitioned dataset per table.

Layout: ``<root>/<table>/date=YYYY-MM-DD/part-<uuid>.parquet``. Local files are
written under a hidden temporary name (``.part-<uuid>.parquet.<random>.tmp``, which
dataset discovery ignores) and renamed, so readers never see half a file; on
object stores each file is one PUT under its unique final name. Concurrent
writers never collide because every file name is unique.

``HealthStore`` is the one class users and the package's layers hold. Its parts
live beside it, each with its own state: ``location.py`` (the URL and the
filesystem it names), ``files.py`` (``StoreFiles``: paths, writing a file whole,
listing), ``scan.py`` (``TableScanner``: reading around other writers' files),
``casting.py`` (other writers' column types), ``dedupe.py`` (one row per
``event_id`` and per run) and ``compaction.py`` (``Compactor``: compaction,
quarantine, retention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from prefect_synthobs._log import get_logger
from prefect_synthobs.health import tables
from prefect_synthobs.health.casting import UncastableError, cast_column, conform, never_castable
from prefect_synthobs.health.compaction import Compactor
from prefect_synthobs.health.dedupe import (
    FINAL_STATES,
    distinct_values,
    drop_repeated_events,
    event_ids_for_unnamed_rows,
    one_row_per_run,
)
from prefect_synthobs.health.files import (
    QUARANTINE,
    TEMPORARY_LEASE_SECONDS,
    VANISHED_FILE_RETRIES,
    StoreFiles,
    partition_day,
)
from prefect_synthobs.health.location import (
    STORE_SCHEMES,
    StoreLocation,
    check_store_url,
    embedded_default_location,
    resolve_filesystem,
)
from prefect_synthobs.health.scan import FileKind, TableScanner, window_filter
from prefect_synthobs.health.tables import PARTITION_COLUMN, schema_for
from prefect_synthobs.telemetry.redaction import strip_url_credentials

logger = get_logger("store")

__all__ = [  # the store's names, wherever they are defined, as they were importable from here
    "FINAL_STATES",
    "QUARANTINE",
    "STORE_SCHEMES",
    "TEMPORARY_LEASE_SECONDS",
    "VANISHED_FILE_RETRIES",
    "FileKind",
    "HealthStore",
    "StoreLocation",
    "UncastableError",
    "cast_column",
    "check_store_url",
    "conform",
    "drop_repeated_events",
    "embedded_default_location",
    "event_ids_for_unnamed_rows",
    "never_castable",
    "one_row_per_run",
    "partition_day",
    "resolve_filesystem",
]


class HealthStore:
    """Reads, writes and compacts the synthobs health tables.

    Args:
        url: Store root (path, ``file://`` or ``s3://``). Default: where
            ``default_location`` says.
        storage_options: Object-store credentials and endpoint (``s3://``
            only; see ``resolve_filesystem``). Default: ``default_location``'s
            when ``url`` is not given.
        timeout: Seconds each object-store connection and request may take
            (``s3://``; default: the AWS SDK's own).
        default_location: Where the store is when ``url`` is not given. The
            health layer's default is ``embedded_default_location``
            (``$PREFECT_HOME/synthobs``); ``prefect_synthobs.HealthStore``
            passes the configured store (``configure(store_url=...)``, the
            environment), so users rarely pass this.

    Example:
        ```python
        from prefect_synthobs import HealthStore

        runs = HealthStore().read("flow_runs", since="2026-11-01")
        runs.groupby("flow_name").duration_s.describe()
        ```
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        storage_options: Mapping[str, str] | None = None,
        timeout: float | None = None,
        default_location: StoreLocation = embedded_default_location,
    ) -> None:
        if url is None:
            url, located_options = default_location()
            if storage_options is None:
                storage_options = located_options
        self.url = url
        self._files = StoreFiles(*resolve_filesystem(url, storage_options, timeout=timeout))
        self._scanner = TableScanner(self._files)
        self._compactor = Compactor(self._files, self._scanner)
        self._said_no_store = False

    def __repr__(self) -> str:
        return f"HealthStore({strip_url_credentials(self.url)!r})"

    @property
    def _fs(self) -> pafs.FileSystem:
        """The store's filesystem (for tests and tools that look at its files)."""
        return self._files.fs

    def table_path(self, table: str) -> str:
        """``<root>/<table>`` (the name is checked: tables are never user input paths)."""
        return self._files.table_path(table)

    # -- writing -------------------------------------------------------------

    def write(self, table: str, rows: pa.Table | Sequence[dict[str, Any]]) -> list[str]:
        """Write rows to ``table``: one new file per date partition touched.

        Returns:
            The paths of the files written.

        Raises:
            OSError: The store cannot be written (the caller spools the rows).
        """
        return self._files.write(table, rows)

    def check(self) -> None:
        """Ask the store for its root (the breaker's probe).

        Raises:
            OSError: The store does not answer or refuses.
        """
        self._files.check()

    def exists(self) -> bool:
        """Whether a health store is there: the root is a directory holding at least one table's directory.

        A table's directory (``<root>/<table>``, ``table_path``, one of
        ``catalog.TABLES``) appears with the table's first write. A path that does
        not exist, a file, or a directory with none of them (a wrong ``--store``:
        the folder above the store, a project folder) is not a store. On an
        object store (``s3://``) a directory is a prefix with objects under it.

        Raises:
            OSError: The store does not answer.
        """
        return self._files.exists()

    def size_of(self, paths: Sequence[str]) -> int:
        """Total bytes of the files at ``paths``."""
        return self._files.size_of(paths)

    # -- reading -------------------------------------------------------------

    def dataset(self, table: str) -> ds.Dataset | None:
        """The table as a ``pyarrow.dataset.Dataset`` with the full schema, or ``None``."""
        return self._files.dataset(table)

    def read(
        self,
        table: str,
        *,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        columns: Sequence[str] | None = None,
        deduplicate: bool = True,
        categorical: Sequence[str] = (),
    ) -> pd.DataFrame:
        """Read ``table`` into pandas, pruning partitions and columns.

        Args:
            table: One of ``names.TABLES`` (``flow_runs``, ``task_runs``, ``training_epochs``,
                ``quality_checks``, ``gpu_samples``, ``privacy_ledger``).
            since: Keep rows whose time is at or after this (UTC if naive).
            until: Keep rows whose time is before this.
            columns: Columns to read (all by default).
            deduplicate: Drop repeated ``event_id`` (a compaction in progress
                can briefly show a row twice).
            categorical: String columns to return as pandas categoricals
                (dictionary-encoded in Arrow: far less memory and faster
                group-bys over millions of rows with few distinct names).

        Files other writers put in the table (pandas, Spark, DuckDB) are read as long as their columns cast
        to the table's types: timestamps of any unit (``s``/``ms``/``us``/``ns``, Parquet INT96) and any time
        zone become the same UTC instant (a timestamp *without* a zone is taken as UTC; nanoseconds are
        truncated to microseconds); narrower or wider numbers, floats for integers (NaN: null), dictionary or
        large strings, extra columns (ignored) and missing ones (null) too. A file that is not Parquet, or
        with a column that cannot be cast (text such as ``"abc"`` for a number, a struct or a list for a
        single value, a number for a time), is skipped with one warning naming it (once per process)
        and its other rows are not read; ``compact`` moves it to ``_quarantine/``. A column of text that
        does not parse is found when a read touches it. A path that holds no store at all reads as empty
        tables, with one warning naming it.

        Returns:
            A DataFrame with the table's columns (empty if nothing matches).
        """
        schema = schema_for(table)
        if columns is not None:
            unknown = [c for c in columns if c not in schema.names and c != PARTITION_COLUMN]
            if unknown:
                raise ValueError(f"unknown column(s) {unknown} for table {table!r}")
        dataset = self.dataset(table)
        wanted = list(columns) if columns is not None else [*schema.names, PARTITION_COLUMN]
        if dataset is None:
            self._say_if_no_store()
            return self._empty(table, wanted)
        expr = window_filter(table, since, until)
        read_cols = list(wanted)
        if deduplicate and "event_id" not in read_cols:
            read_cols.append("event_id")
        run_id = tables.table(table).run_id_column if deduplicate else None
        if run_id is not None:
            read_cols += [c for c in (run_id, "source", "end_time", "state_type") if c not in read_cols]
        for attempt in range(VANISHED_FILE_RETRIES + 1):
            if not dataset.files and attempt < VANISHED_FILE_RETRIES and self.partitions(table):
                # a listing racing a compaction can miss every file (the merged file renamed in behind the
                # directory cursor, the old ones deleted ahead of it): a table with partitions and no file
                # listed is most likely that, so list again (a truly empty one costs a few listings)
                relisted = self.dataset(table)
                if relisted is None:
                    return self._empty(table, wanted)
                dataset = relisted
                continue
            try:
                data = self._scanner.scan(table, dataset, read_cols, expr)
                break
            except FileNotFoundError:
                # compaction or retention removed a file after it was listed: list again
                if attempt == VANISHED_FILE_RETRIES:
                    raise
                relisted = self.dataset(table)
                if relisted is None:  # retention dropped the whole table
                    return self._empty(table, wanted)
                dataset = relisted
        if run_id is not None:
            data = one_row_per_run(data, run_id, "end_time")
        if deduplicate and data.num_rows and distinct_values(data["event_id"]) == data.num_rows:
            deduplicate = False  # the usual case: nothing to drop, no need to hash ids in pandas
        extra = [c for c in data.column_names if c not in wanted and (c != "event_id" or not deduplicate)]
        if extra:
            data = data.drop_columns(extra)
        for name in categorical:
            if name in data.column_names:
                index = data.column_names.index(name)
                data = data.set_column(index, name, pc.dictionary_encode(data[name]))
        frame: pd.DataFrame = data.to_pandas()
        if deduplicate and len(frame):
            frame = drop_repeated_events(frame)
            if "event_id" not in wanted:
                frame = frame.drop(columns="event_id")
        return frame

    @staticmethod
    def _empty(table: str, columns: Sequence[str]) -> pd.DataFrame:
        empty = schema_for(table).append(pa.field(PARTITION_COLUMN, pa.string()))
        nothing: pd.DataFrame = empty.empty_table().select(list(columns)).to_pandas()
        return nothing

    def _say_if_no_store(self) -> None:
        """Warn once (per store object) when the store's root holds no synthobs table at all."""
        if self._said_no_store:
            return
        self._said_no_store = True
        try:
            there = self.exists()
        except OSError:
            return  # the store did not answer: the read that follows says so
        if not there:
            logger.warning(
                "synthobs: no health store at %s: no synthobs table there (nothing was recorded there yet, or the "
                "path is wrong); reads return no rows. Check the URL or PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL",
                strip_url_credentials(self.url),
            )

    def count(self, table: str) -> int:
        """Rows in ``table`` (duplicates included), read from file metadata.

        Files known to be unreadable (this store object skipped them) are not counted; a file whose column
        types cannot be cast is counted until a ``read`` of that column or ``compact`` finds it out.
        """
        dataset = self.dataset(table)
        if dataset is None:
            return 0
        files = [f for f in dataset.files if self._scanner.known(f) != "bad"]
        if len(files) < len(dataset.files):
            dataset = self._files.subset(table, files)
        try:
            return int(dataset.count_rows())
        except FileNotFoundError:
            return self.count(table) if self.dataset(table) is not None else 0
        except (pa.ArrowInvalid, OSError):
            kinds = {path: self._scanner.inspect(path, schema_for(table))[0] for path in files}
            return int(self._files.subset(table, [f for f in files if kinds[f] in ("ok", "odd")]).count_rows())

    def unreadable_files(self, table: str) -> list[str]:
        """Files of ``table`` that ``read`` skips and ``compact`` quarantines: not readable Parquet (zero bytes,
        garbage, cut short), or holding a column whose values cannot be cast to the table's type.

        Reads each file's footer, and the data of the columns that another writer stored with another type.
        """
        return self._scanner.unreadable_files(table)

    # -- maintenance ---------------------------------------------------------

    def partitions(self, table: str) -> list[str]:
        """The ``YYYY-MM-DD`` partitions of ``table``, oldest first (other directories are not partitions)."""
        return self._files.partitions(table)

    def remove_orphaned_temporaries(self, table: str, *, older_than: float = 0.0) -> list[str]:
        """Delete the hidden ``.part-*.tmp`` files of ``table`` a killed writer
        left, once older than ``older_than`` seconds (default:
        ``TEMPORARY_LEASE_SECONDS``; a live writer's file is seconds old).

        Returns:
            The paths removed.
        """
        return self._files.remove_orphaned_temporaries(table, older_than=older_than)

    def quarantine(self, table: str) -> list[str]:
        """Move the unreadable files of ``table`` to ``<root>/_quarantine/`` (kept, never deleted).

        Returns:
            Where each file went.
        """
        return self._compactor.quarantine(table)

    def drop_partitions(self, table: str, *, before: date) -> list[str]:
        """Delete the whole ``YYYY-MM-DD`` partitions of ``table`` older than ``before`` (retention).

        Returns:
            The days dropped, oldest first.
        """
        return self._compactor.drop_partitions(table, before=before)

    def compact(self, table: str, *, before: date | None = None) -> dict[str, int]:
        """Merge each closed partition of ``table`` (older than ``before``, default today UTC) into one file,
        deduplicated on ``event_id`` (one row per run for runs); unreadable files are moved to
        ``_quarantine/`` first, stale temporaries removed. Safe beside writers, readers and another
        compaction (``Compactor.compact`` says how).

        Returns:
            ``{"partitions": n, "files_before": n, "files_after": n, "rows": n,
            "quarantined": n, "temporary_removed": n}``.
        """
        return self._compactor.compact(table, before=before)
