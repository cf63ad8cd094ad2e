"""The Parquet health store: one Hive-partitioned dataset per table.

Layout: ``<root>/<table>/date=YYYY-MM-DD/part-<uuid>.parquet``. Local files are
written under a hidden temporary name (``.part-<uuid>.parquet.tmp``, which
dataset discovery ignores) and renamed, so readers never see half a file; on
object stores each file is one PUT under its unique final name. Concurrent
writers never collide because every file name is unique.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from prefect.settings import get_current_settings

from prefect_synthobs import catalog as names
from prefect_synthobs._log import get_logger
from prefect_synthobs.health import tables
from prefect_synthobs.health.tables import PARTITION_COLUMN, SOURCE_API, schema_for
from prefect_synthobs.telemetry.redaction import strip_url_credentials

_PARTITIONING = ds.partitioning(pa.schema([(PARTITION_COLUMN, pa.string())]), flavor="hive")

TEMPORARY_LEASE_SECONDS = 3600.0
"""Age after which ``compact`` removes a writer's leftover temporary file."""

QUARANTINE = "_quarantine"
"""Where ``compact`` moves files that are not readable Parquet (``<root>/_quarantine/<table>/...``)."""

logger = get_logger("store")


_S3_OPTIONS = {
    "access_key": "access_key",
    "aws_access_key_id": "access_key",
    "key": "access_key",
    "secret_key": "secret_key",
    "aws_secret_access_key": "secret_key",
    "secret": "secret_key",
    "session_token": "session_token",
    "aws_session_token": "session_token",
    "token": "session_token",
    "region": "region",
    "region_name": "region",
    "endpoint_override": "endpoint_override",
    "endpoint_url": "endpoint_override",
    "scheme": "scheme",
    "connect_timeout": "connect_timeout",
    "request_timeout": "request_timeout",
}


STORE_SCHEMES = ("file", "s3")


def one_row_per_run(data: pa.Table, run_id: str, order_by: str) -> pa.Table:
    """One row per run: a hook row before a reconciled (``source = "api"``) one, then the latest ``order_by``.

    A worker that flushed late (its spool drained after an outage) and a
    reconciliation that ran meanwhile both wrote the run; the hook's row has
    more (rows, GPU, trace id). Dask may run a task run twice (its result lost
    with a killed worker): both executions wrote a row; the last one counts.
    """
    if data.num_rows < 2 or pc.count_distinct(data[run_id]).as_py() == data.num_rows:
        return data  # the usual case: one row per run already
    frame = pd.DataFrame(
        {
            "run": data[run_id].to_pandas(),
            "api": pc.fill_null(pc.equal(data["source"], SOURCE_API), False).to_pandas(),
            "at": data[order_by].to_pandas(),
            "index": range(data.num_rows),
        }
    )
    keep = frame.sort_values(["run", "api", "at"], ascending=[True, True, False], na_position="last")
    return data.take(sorted(keep.drop_duplicates("run")["index"]))


VANISHED_FILE_RETRIES = 5
"""How often ``read`` lists a table again when a listed file vanished (compaction, retention)."""


def check_store_url(url: str) -> str:
    """``url`` if it is a health-store root synthobs supports: a local path, a
    ``file://`` URL or an ``s3://`` prefix.

    Raises:
        ValueError: naming the URL (credentials stripped) and what is allowed.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("the health store URL must be a non-empty path, file:// URL or s3:// prefix")
    parsed = urlparse(url)
    local = parsed.scheme == "" or (len(parsed.scheme) == 1 and url[1:3] in (":\\", ":/"))
    if not local and parsed.scheme not in STORE_SCHEMES:
        raise ValueError(
            f"unsupported health store URL {strip_url_credentials(url)!r}: use a local path, a file:// URL "
            "or an s3:// prefix"
        )
    if parsed.scheme == "s3" and not parsed.netloc:
        raise ValueError(f"health store URL {strip_url_credentials(url)!r} names no bucket (s3://bucket/prefix)")
    return url


def resolve_filesystem(
    url: str, storage_options: Mapping[str, str] | None = None, *, timeout: float | None = None
) -> tuple[pafs.FileSystem, str, bool]:
    """``(filesystem, root path, is_local)`` for a path, ``file://`` or object-store URL.

    ``storage_options`` (``s3://`` only) carry credentials and endpoint:
    ``access_key``, ``secret_key``, ``session_token``, ``region``,
    ``endpoint_override`` (boto-style names such as ``aws_access_key_id`` or
    ``endpoint_url`` are accepted too). ``timeout`` bounds each S3 connection
    and request (seconds), so a frozen endpoint cannot hold a writer forever.
    """
    parsed = urlparse(check_store_url(url))
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and url[1:3] in (":\\", ":/")):
        if storage_options:
            raise ValueError("storage options are for object stores (s3://), not local paths")
        path = parsed.path if parsed.scheme == "file" else url
        return pafs.LocalFileSystem(), str(Path(path).expanduser().absolute()), True
    if parsed.scheme == "s3" and timeout is not None:
        storage_options = {"connect_timeout": str(timeout), "request_timeout": str(timeout), **(storage_options or {})}
    if storage_options:
        if parsed.scheme != "s3":
            raise ValueError(f"storage options are supported for s3:// stores, not {parsed.scheme}://")
        unknown = sorted(set(storage_options) - set(_S3_OPTIONS))
        if unknown:
            raise ValueError(f"unknown s3 storage option(s) {unknown}; known: {sorted(_S3_OPTIONS)}")
        kwargs: dict[str, Any] = {_S3_OPTIONS[k]: v for k, v in storage_options.items()}
        for key in ("connect_timeout", "request_timeout"):
            if key in kwargs:
                try:
                    kwargs[key] = float(kwargs[key])
                except ValueError:
                    raise ValueError(f"s3 storage option {key} must be seconds, got {kwargs[key]!r}") from None
        endpoint = kwargs.get("endpoint_override", "")
        if "://" in endpoint:  # boto-style URL: pyarrow wants host[:port] and a scheme
            scheme, _, rest = endpoint.partition("://")
            kwargs["endpoint_override"] = rest.rstrip("/")
            kwargs.setdefault("scheme", scheme)
        try:
            return pafs.S3FileSystem(**kwargs), f"{parsed.netloc}{parsed.path}".rstrip("/"), False
        except (pa.ArrowInvalid, OSError, TypeError) as exc:
            raise ValueError(f"invalid s3 storage options: {exc}") from exc
    try:
        fs, root = pafs.FileSystem.from_uri(url)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        shown = strip_url_credentials(url)
        raise ValueError(f"unsupported health store URL {shown!r}: {strip_url_credentials(str(exc))}") from None
    return fs, root.rstrip("/"), False


def _to_timestamp(value: datetime | date | str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    utc: pd.Timestamp = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return utc


def embedded_default_location() -> tuple[str, Mapping[str, str] | None]:
    """``$PREFECT_HOME/synthobs``: the store when nothing is configured."""
    return str(Path(get_current_settings().home).expanduser() / "synthobs"), None


# Where ``HealthStore()`` without a URL points. The configuration layer
# (``prefect_synthobs.config.active``) replaces it with the configured store.
default_location: Callable[[], tuple[str, Mapping[str, str] | None]] = embedded_default_location


class HealthStore:
    """Reads, writes and compacts the synthobs health tables.

    Args:
        url: Store root (path, ``file://`` or ``s3://``). Defaults to the
            configured ``store_url`` (the embedded default is
            ``$PREFECT_HOME/synthobs``).
        storage_options: Object-store credentials and endpoint (``s3://``
            only; see ``resolve_filesystem``). Default: the configured ones.
        timeout: Seconds each object-store connection and request may take
            (``s3://``; default: the AWS SDK's own).

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
    ) -> None:
        if url is None:
            url, configured_options = default_location()
            if storage_options is None:
                storage_options = configured_options
        self.url = url
        self._fs, self._root, self._local = resolve_filesystem(url, storage_options, timeout=timeout)
        self._reported_unreadable: set[str] = set()

    def __repr__(self) -> str:
        return f"HealthStore({strip_url_credentials(self.url)!r})"

    def table_path(self, table: str) -> str:
        schema_for(table)  # validates the name: tables are never user input paths
        return f"{self._root}/{table}"

    # -- writing -------------------------------------------------------------

    def write(self, table: str, rows: pa.Table | Sequence[dict[str, Any]]) -> list[str]:
        """Write rows to ``table``: one new file per date partition touched.

        Returns:
            The paths of the files written.

        Raises:
            OSError: The store cannot be written (the caller spools the rows).
        """
        schema = schema_for(table)
        data = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), schema=schema)
        if data.num_rows == 0:
            return []
        if data.schema != schema:
            data = data.select(schema.names).cast(schema)
        days = self._partition_days(table, data)
        if isinstance(days, str):  # the usual case: every row on one day
            return [self._write_file(table, days, data)]
        return [
            self._write_file(table, day.isoformat(), data.filter(pc.equal(days, day)))
            for day in pc.unique(days).to_pylist()
        ]

    @staticmethod
    def _partition_days(table: str, data: pa.Table) -> str | pa.Array:
        """The partition of every row: one ``YYYY-MM-DD`` string when all rows
        share a day (checked from min/max, no per-row work), else a date array."""
        times = data.column(tables.table(table).time_column)
        today = datetime.now(timezone.utc).date()
        bounds = pc.min_max(times).as_py()
        lo, hi = bounds["min"], bounds["max"]
        if times.null_count == 0 or (lo is None and hi is None):
            lo_day = lo.astimezone(timezone.utc).date() if lo is not None else today
            hi_day = hi.astimezone(timezone.utc).date() if hi is not None else today
            if lo_day == hi_day:
                return lo_day.isoformat()
        days = pc.cast(times, pa.date32()).combine_chunks()
        return pc.fill_null(days, pa.scalar(today, pa.date32()))

    def _write_file(self, table: str, day: str, data: pa.Table) -> str:
        directory = f"{self.table_path(table)}/{PARTITION_COLUMN}={day}"
        name = f"part-{uuid.uuid4().hex}.parquet"
        final = f"{directory}/{name}"
        self._fs.create_dir(directory, recursive=True)
        if self._local:
            tmp = f"{directory}/.{name}.tmp"
            try:
                pq.write_table(data, tmp, filesystem=self._fs)
                self._fs.move(tmp, final)
            except BaseException:
                with contextlib.suppress(OSError):
                    self._fs.delete_file(tmp)
                raise
        else:
            pq.write_table(data, final, filesystem=self._fs)
        return final

    def check(self) -> None:
        """Ask the store for its root (the breaker's probe).

        Raises:
            OSError: The store does not answer or refuses.
        """
        self._fs.get_file_info(self._root)

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
        directory = pafs.FileType.Directory
        root, *found = self._fs.get_file_info([self._root, *(self.table_path(t) for t in names.TABLES)])
        return bool(root.type == directory and any(info.type == directory for info in found))

    def size_of(self, paths: Sequence[str]) -> int:
        """Total bytes of the files at ``paths``."""
        return sum(info.size or 0 for info in self._fs.get_file_info(list(paths)))

    # -- reading -------------------------------------------------------------

    def dataset(self, table: str) -> ds.Dataset | None:
        """The table as a ``pyarrow.dataset.Dataset`` with the full schema, or ``None``."""
        schema = schema_for(table)
        path = self.table_path(table)
        info = self._fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return None
        full = schema.append(pa.field(PARTITION_COLUMN, pa.string()))
        return ds.dataset(
            path,
            schema=full,
            format="parquet",
            filesystem=self._fs,
            partitioning=_PARTITIONING,
            exclude_invalid_files=False,
            ignore_prefixes=[".", "_"],
        )

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
            return self._empty(table, wanted)
        time_col = tables.table(table).time_column
        expr = None
        if since is not None:
            since_ts = _to_timestamp(since)
            expr = (ds.field(PARTITION_COLUMN) >= since_ts.strftime("%Y-%m-%d")) & (
                ds.field(time_col) >= pa.scalar(since_ts.to_pydatetime(), pa.timestamp("us", tz="UTC"))
            )
        if until is not None:
            until_ts = _to_timestamp(until)
            cond = (ds.field(PARTITION_COLUMN) <= until_ts.strftime("%Y-%m-%d")) & (
                ds.field(time_col) < pa.scalar(until_ts.to_pydatetime(), pa.timestamp("us", tz="UTC"))
            )
            expr = cond if expr is None else expr & cond
        read_cols = list(wanted)
        if deduplicate and "event_id" not in read_cols:
            read_cols.append("event_id")
        run_id = tables.table(table).run_id_column if deduplicate else None
        if run_id is not None:
            read_cols += [c for c in (run_id, "source", "end_time") if c not in read_cols]
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
                data = dataset.to_table(columns=read_cols, filter=expr)
                break
            except FileNotFoundError:
                # compaction or retention removed a file after it was listed: list again
                if attempt == VANISHED_FILE_RETRIES:
                    raise
                relisted = self.dataset(table)
                if relisted is None:  # retention dropped the whole table
                    return self._empty(table, wanted)
                dataset = relisted
            except (pa.ArrowInvalid, OSError):  # a zero-byte or garbage file: read the others
                data = self._readable(table, dataset).to_table(columns=read_cols, filter=expr)
                break
        if run_id is not None:
            data = one_row_per_run(data, run_id, "end_time")
        if deduplicate and data.num_rows and pc.count_distinct(data["event_id"]).as_py() == data.num_rows:
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
            frame = frame.drop_duplicates(subset="event_id", ignore_index=True)
            if "event_id" not in wanted:
                frame = frame.drop(columns="event_id")
        return frame

    @staticmethod
    def _empty(table: str, columns: Sequence[str]) -> pd.DataFrame:
        empty = schema_for(table).append(pa.field(PARTITION_COLUMN, pa.string()))
        nothing: pd.DataFrame = empty.empty_table().select(list(columns)).to_pandas()
        return nothing

    def count(self, table: str) -> int:
        """Rows in ``table`` (duplicates included), read from file metadata."""
        dataset = self.dataset(table)
        if dataset is None:
            return 0
        try:
            return int(dataset.count_rows())
        except (pa.ArrowInvalid, OSError):
            return int(self._readable(table, dataset).count_rows())

    def unreadable_files(self, table: str) -> list[str]:
        """Files of ``table`` that are not readable Parquet (zero bytes, garbage, cut short)."""
        dataset = self.dataset(table)
        return [] if dataset is None else [f for f in dataset.files if not self._is_readable(f)]

    def _is_readable(self, path: str) -> bool:
        try:
            pq.read_metadata(path, filesystem=self._fs)
        except (pa.ArrowInvalid, OSError):
            return False
        return True

    def _readable(self, table: str, dataset: ds.Dataset) -> ds.Dataset:
        """``dataset`` without its unreadable files, each named in one warning."""
        good: list[str] = []
        bad: list[str] = []
        for path in dataset.files:
            (good if self._is_readable(path) else bad).append(path)
        for path in bad:
            if path not in self._reported_unreadable:
                self._reported_unreadable.add(path)
                logger.warning(
                    "synthobs: skipping unreadable health-store file %s (not Parquet); "
                    "`synthobs compact` moves it to %s/",
                    path,
                    QUARANTINE,
                )
        return ds.dataset(
            good,
            schema=dataset.schema,
            format="parquet",
            filesystem=self._fs,
            partitioning=_PARTITIONING,
            partition_base_dir=self.table_path(table),
        )

    # -- maintenance ---------------------------------------------------------

    def remove_orphaned_temporaries(self, table: str, *, older_than: float = 0.0) -> list[str]:
        """Delete the hidden ``.part-*.tmp`` files of ``table`` a killed writer
        left, once older than ``older_than`` seconds (default:
        ``TEMPORARY_LEASE_SECONDS``; a live writer's file is seconds old).

        Returns:
            The paths removed.
        """
        lease = older_than or TEMPORARY_LEASE_SECONDS
        now = datetime.now(timezone.utc)
        removed = []
        infos = self._fs.get_file_info(pafs.FileSelector(self.table_path(table), recursive=True, allow_not_found=True))
        for info in infos:
            name = Path(info.path).name
            if info.type != pafs.FileType.File or not (name.startswith(".part-") and name.endswith(".tmp")):
                continue
            mtime = info.mtime
            if mtime is None or (now - mtime.astimezone(timezone.utc)).total_seconds() <= lease:
                continue
            with contextlib.suppress(OSError):
                self._fs.delete_file(info.path)
                removed.append(info.path)
        return removed

    def quarantine(self, table: str) -> list[str]:
        """Move the unreadable files of ``table`` to ``<root>/_quarantine/`` (kept, never deleted).

        Returns:
            Where each file went.
        """
        moved = []
        base = self.table_path(table)
        for path in self.unreadable_files(table):
            target = f"{self._root}/{QUARANTINE}/{table}/{path[len(base) + 1 :]}"
            self._fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            self._fs.move(path, target)
            logger.warning("synthobs: moved unreadable health-store file %s to %s", path, target)
            moved.append(target)
        return moved

    def partitions(self, table: str) -> list[str]:
        """The ``YYYY-MM-DD`` partitions of ``table``, oldest first."""
        path = self.table_path(table)
        infos = self._fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        prefix = f"{PARTITION_COLUMN}="
        return sorted(
            Path(i.path).name[len(prefix) :]
            for i in infos
            if i.type == pafs.FileType.Directory and Path(i.path).name.startswith(prefix)
        )

    def drop_partitions(self, table: str, *, before: date) -> list[str]:
        """Delete the whole ``YYYY-MM-DD`` partitions of ``table`` older than ``before`` (retention).

        Returns:
            The days dropped, oldest first.
        """
        cutoff = before.isoformat()
        dropped = []
        for day in self.partitions(table):
            if day >= cutoff:
                break
            self._fs.delete_dir(f"{self.table_path(table)}/{PARTITION_COLUMN}={day}")
            dropped.append(day)
        if dropped:
            logger.info("synthobs: dropped %d %s partition(s) before %s (retention)", len(dropped), table, cutoff)
        return dropped

    def compact(self, table: str, *, before: date | None = None) -> dict[str, int]:
        """Merge each closed partition of ``table`` into one file, dropping
        duplicate ``event_id`` rows (and, for runs, keeping one row per run:
        ``one_row_per_run``).

        Only partitions older than ``before`` (default: today, UTC) are touched,
        so no writer is adding to them. Readers that list a partition while it is
        compacted can briefly see old and new files together: ``read``
        deduplicates on ``event_id``.

        Files that are not readable Parquet (in any partition) are first moved,
        never deleted, to ``<root>/_quarantine/<table>/date=.../``, and
        temporary files that killed writers left behind are removed once older
        than ``TEMPORARY_LEASE_SECONDS``.

        Returns:
            ``{"partitions": n, "files_before": n, "files_after": n, "rows": n,
            "quarantined": n, "temporary_removed": n}``.
        """
        schema = schema_for(table)
        cutoff = (before or datetime.now(timezone.utc).date()).isoformat()
        quarantined = self.quarantine(table)
        stats = {
            "partitions": 0,
            "files_before": 0,
            "files_after": 0,
            "rows": 0,
            "quarantined": len(quarantined),
            "temporary_removed": len(self.remove_orphaned_temporaries(table)),
        }
        for day in self.partitions(table):
            if day >= cutoff:
                continue
            directory = f"{self.table_path(table)}/{PARTITION_COLUMN}={day}"
            files = [
                i.path
                for i in self._fs.get_file_info(pafs.FileSelector(directory))
                if i.type == pafs.FileType.File
                and Path(i.path).name.endswith(".parquet")
                and not Path(i.path).name.startswith((".", "_"))
            ]
            if len(files) < 2:
                continue
            merged = ds.dataset(files, schema=schema, format="parquet", filesystem=self._fs).to_table()
            run_id = tables.table(table).run_id_column
            if run_id is not None:
                merged = one_row_per_run(merged, run_id, "end_time")
            frame = merged.to_pandas().drop_duplicates(subset="event_id", ignore_index=True)
            clean = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
            self._write_file(table, day, clean)
            for path in files:
                self._fs.delete_file(path)
            stats["partitions"] += 1
            stats["files_before"] += len(files)
            stats["files_after"] += 1
            stats["rows"] += clean.num_rows
        return stats
