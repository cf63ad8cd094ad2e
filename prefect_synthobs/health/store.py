"""The Parquet health store: one Hive-partitioned dataset per table.

Layout: ``<root>/<table>/date=YYYY-MM-DD/part-<uuid>.parquet``. Local files are
written under a hidden temporary name (``.part-<uuid>.parquet.<random>.tmp``, which
dataset discovery ignores) and renamed, so readers never see half a file; on
object stores each file is one PUT under its unique final name. Concurrent
writers never collide because every file name is unique.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Literal
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

_PARTITION_DIRECTORY = re.compile(rf"{PARTITION_COLUMN}=(\d{{4}}-\d{{2}}-\d{{2}})")
"""A partition directory's name: ``date=YYYY-MM-DD`` (the day is checked to exist too)."""


def partition_day(name: str) -> str | None:
    """The day of a partition directory named ``name`` (``date=YYYY-MM-DD``), else ``None`` (pure)."""
    match = _PARTITION_DIRECTORY.fullmatch(name)
    if match is None:
        return None
    try:
        date.fromisoformat(match.group(1))
    except ValueError:
        return None
    return match.group(1)


class _SaidOnce:
    """The last ``size`` keys (file or directory paths) warned about in this process: each warning is said once
    per process, whatever the number of ``HealthStore`` objects (the report makes several), and the memory stays
    bounded in a long-lived worker (a key pushed out may be warned about again)."""

    def __init__(self, size: int = 4096) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def first(self, key: str) -> bool:
        """Whether ``key`` is new (then it is remembered)."""
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return False
            self._keys[key] = None
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)
            return True


_said = _SaidOnce()


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


FINAL_STATES = pa.array(["COMPLETED", "FAILED", "CRASHED", "CANCELLED"])
"""Prefect's final state types: a row in one of them says more than a row in any other."""


def one_row_per_run(data: pa.Table, run_id: str, order_by: str) -> pa.Table:
    """One row per run: a row in a final state (``FINAL_STATES``, when ``state_type`` is there) before one
    in another (a runner stopped while the run's process exits runs its cancellation hooks: ``CANCELLING``
    after ``COMPLETED``), then a hook row before a reconciled (``source = "api"``) one, then the latest
    ``order_by``.

    A worker that flushed late (its spool drained after an outage) and a
    reconciliation that ran meanwhile both wrote the run; the hook's row has
    more (rows, GPU, trace id). Dask may run a task run twice (its result lost
    with a killed worker): both executions wrote a row; the last one counts.

    A row without a run id (another writer's) is a run of its own: rows with a null id are never grouped.
    """
    runs = data[run_id]
    if data.num_rows < 2 or pc.count_distinct(runs).as_py() + runs.null_count == data.num_rows:
        return data  # the usual case: one row per run already (a null id counts as its own run)
    if "state_type" in data.column_names:
        states = pc.cast(data["state_type"], pa.string())
        unfinished = pc.fill_null(pc.invert(pc.is_in(states, value_set=FINAL_STATES)), True).to_pandas()
    else:
        unfinished = False
    frame = pd.DataFrame(
        {
            "run": data[run_id].to_pandas(),
            "unfinished": unfinished,
            "api": pc.fill_null(pc.equal(data["source"], SOURCE_API), False).to_pandas(),
            "at": data[order_by].to_pandas(),
            "index": range(data.num_rows),
        }
    )
    known = frame[frame["run"].notna()]
    keep = known.sort_values(
        ["run", "unfinished", "api", "at"], ascending=[True, True, True, False], na_position="last"
    )
    kept = [*keep.drop_duplicates("run")["index"], *frame.loc[frame["run"].isna(), "index"]]
    return data.take(sorted(kept))


def drop_repeated_events(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the rows whose ``event_id`` an earlier row has (pure). Rows without an ``event_id``
    (another writer's) are all kept: a missing id says nothing about which rows are the same."""
    repeated = frame.duplicated(subset="event_id") & frame["event_id"].notna()
    if not repeated.any():
        return frame
    kept: pd.DataFrame = frame[~repeated].reset_index(drop=True)
    return kept


def event_ids_for_unnamed_rows(ids: pa.ChunkedArray | pa.Array, source: str) -> pa.Array:
    """``ids`` with each null replaced by an id derived from ``source`` (the file: ``day/name``) and the row's
    place in it (pure): two compactions that merge the same file give its rows the same ids, so the rows are
    stored once when their merged files meet."""
    values = ids.to_pylist()
    named = [
        value if value is not None else hashlib.sha256(f"{source}#{index}".encode()).hexdigest()[:32]
        for index, value in enumerate(values)
    ]
    return pa.array(named, pa.string())


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


FileKind = Literal["ok", "odd", "bad", "unavailable", "gone"]
"""What a look at a file's footer says: ``ok`` (the table's own column types), ``odd`` (other types that may be
cast: timestamp units and zones, narrower numbers, dictionary strings ...), ``bad`` (not Parquet, or a column whose
type can never be cast), ``unavailable`` (the store did not answer), ``gone`` (removed since it was listed)."""


class UncastableError(ValueError):
    """A file's column cannot be cast to the table's type (``rows`` stored as text, a struct for a number)."""


def _is_nested(kind: pa.DataType) -> bool:
    return bool(pa.types.is_nested(kind) or pa.types.is_union(kind))


def _is_list(kind: pa.DataType) -> bool:
    return bool(pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind))


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or str(kind) == "string_view")


def never_castable(found: pa.DataType, wanted: pa.DataType) -> bool:
    """Whether no value of type ``found`` can become ``wanted``, judged from the types alone (pure).

    A number is never taken for a time (its unit is unknown), a list never for a single value, a struct or map
    for nothing. Other differences (text holding numbers, a narrower integer, another time unit or zone)
    depend on the values or always cast.
    """
    if pa.types.is_dictionary(found):
        found = found.value_type
    if pa.types.is_null(found) or found == wanted:
        return False
    if pa.types.is_timestamp(wanted):
        return not (pa.types.is_timestamp(found) or pa.types.is_date(found) or _is_text(found))
    if _is_list(wanted):
        return not _is_list(found) or never_castable(found.value_type, wanted.value_type)
    return _is_nested(found)


def cast_column(values: pa.ChunkedArray | pa.Array, wanted: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """``values`` as type ``wanted``: the table's type for a column another writer stored differently (pure).

    Times of any unit and zone become the same instant in ``wanted``'s unit and zone; a time without a zone
    (pandas' and Spark's naive timestamps, Parquet INT96) is taken as UTC; nanoseconds are truncated to the
    table's microseconds. Floats become integers rounded (NaN: null); dictionary strings are decoded.

    Raises:
        UncastableError: Naming the types, when a value cannot be cast (``"abc"`` as a number, a struct).
    """
    found = values.type
    try:
        if never_castable(found, wanted):
            raise UncastableError(f"{found} cannot be cast to {wanted}")
        if pa.types.is_dictionary(found):
            values = values.cast(found.value_type)
            found = values.type
        if found == wanted:
            return values
        if pa.types.is_timestamp(wanted) and pa.types.is_timestamp(found):
            # a naive time is taken as UTC (Arrow keeps its wall-clock digits as the epoch value); a coarser
            # target unit truncates (ns to us), a finer one is checked for overflow
            finer = ["s", "ms", "us", "ns"].index(found.unit) > ["s", "ms", "us", "ns"].index(wanted.unit)
            return pc.cast(values, wanted, safe=not finer)
        if pa.types.is_timestamp(wanted) and _is_text(found):
            try:
                return pc.cast(values, wanted)  # ISO text with an offset
            except pa.ArrowInvalid:
                return pc.cast(pc.cast(values, pa.timestamp(wanted.unit)), wanted)  # without one: UTC
        if pa.types.is_integer(wanted) and pa.types.is_floating(found):
            finite = pc.is_finite(values)
            values = pc.if_else(finite, pc.round(values), pa.scalar(None, found))
        return pc.cast(values, wanted)
    except UncastableError:
        raise
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise UncastableError(f"{found} cannot be cast to {wanted}: {exc}") from None


def conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """``data`` with exactly ``schema``'s columns and types: each cast (``cast_column``), a missing one null,
    an unknown one dropped (pure).

    Raises:
        UncastableError: Naming the first column that cannot be cast.
    """
    columns = []
    for field in schema:
        if field.name not in data.column_names:
            columns.append(pa.nulls(data.num_rows, field.type))
            continue
        values = data[field.name]
        if values.type != field.type:
            try:
                values = cast_column(values, field.type)
            except UncastableError as exc:
                raise UncastableError(f"column {field.name!r}: {exc}") from None
        columns.append(values)
    return pa.Table.from_arrays(columns, schema=schema)


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
        self._known_files: dict[str, tuple[FileKind, str]] = {}
        """Files of other writers seen odd or bad: ``path -> (kind, why)`` (names are unique, files never change)."""
        self._said_no_store = False
        self._castable_paths: set[str] = set()
        self._exact_paths: set[str] = set()
        """Files whose footer showed the table's own column types."""
        """Files whose column types were seen to cast to their table's (checked once)."""

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

    def _write_file(self, table: str, day: str, data: pa.Table, name: str | None = None) -> str:
        directory = f"{self.table_path(table)}/{PARTITION_COLUMN}={day}"
        name = name or f"part-{uuid.uuid4().hex}.parquet"
        final = f"{directory}/{name}"
        self._fs.create_dir(directory, recursive=True)
        if self._local:
            tmp = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}.tmp"  # two compactions may write one name
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
        found = ds.dataset(
            path,
            schema=full,
            format="parquet",
            filesystem=self._fs,
            partitioning=_PARTITIONING,
            exclude_invalid_files=False,
            ignore_prefixes=[".", "_"],
        )
        outside = [f for f in found.files if not self._in_partition(path, f)]
        if not outside:
            return found
        self._say_outside_partitions(table, path, outside)
        return self._subset(table, [f for f in found.files if self._in_partition(path, f)])

    @staticmethod
    def _in_partition(table_path: str, path: str) -> bool:
        """Whether ``path`` lies directly in a ``date=YYYY-MM-DD`` directory of the table at ``table_path``."""
        directory, _, _ = path[len(table_path) + 1 :].rpartition("/")
        return partition_day(directory) is not None

    def _say_outside_partitions(self, table: str, table_path: str, outside: Sequence[str]) -> None:
        """Warn once per process per directory that the files of ``outside`` are not read (they lie outside the
        ``date=YYYY-MM-DD`` partitions, where no window could place them); ``compact`` leaves them there."""
        by_directory: dict[str, int] = {}
        for path in outside:
            directory = path.rpartition("/")[0]
            by_directory[directory] = by_directory.get(directory, 0) + 1
        for directory, count in by_directory.items():
            if _said.first(f"directory:{directory}"):
                logger.warning(
                    "synthobs: ignoring %d file(s) in %s: not a %s=YYYY-MM-DD partition directory of table %s, "
                    "so no read counts their rows and compact leaves them there; move them into a %s=YYYY-MM-DD/ "
                    "directory (files directly in it) to have them read",
                    count,
                    directory,
                    PARTITION_COLUMN,
                    table,
                    PARTITION_COLUMN,
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
                data = self._scan(table, dataset, read_cols, expr)
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
            frame = drop_repeated_events(frame)
            if "event_id" not in wanted:
                frame = frame.drop(columns="event_id")
        return frame

    @staticmethod
    def _empty(table: str, columns: Sequence[str]) -> pd.DataFrame:
        empty = schema_for(table).append(pa.field(PARTITION_COLUMN, pa.string()))
        nothing: pd.DataFrame = empty.empty_table().select(list(columns)).to_pandas()
        return nothing

    def count(self, table: str) -> int:
        """Rows in ``table`` (duplicates included), read from file metadata.

        Files known to be unreadable (this store object skipped them) are not counted; a file whose column
        types cannot be cast is counted until a ``read`` of that column or ``compact`` finds it out.
        """
        dataset = self.dataset(table)
        if dataset is None:
            return 0
        files = [f for f in dataset.files if self._known_files.get(f, ("ok", ""))[0] != "bad"]
        if len(files) < len(dataset.files):
            dataset = self._subset(table, files)
        try:
            return int(dataset.count_rows())
        except FileNotFoundError:
            return self.count(table) if self.dataset(table) is not None else 0
        except (pa.ArrowInvalid, OSError):
            kinds = {path: self._inspect(path, schema_for(table))[0] for path in files}
            return int(self._subset(table, [f for f in files if kinds[f] in ("ok", "odd")]).count_rows())

    def unreadable_files(self, table: str) -> list[str]:
        """Files of ``table`` that ``read`` skips and ``compact`` quarantines: not readable Parquet (zero bytes,
        garbage, cut short), or holding a column whose values cannot be cast to the table's type.

        Reads each file's footer, and the data of the columns that another writer stored with another type.
        """
        dataset = self.dataset(table)
        if dataset is None:
            return []
        schema = schema_for(table)
        bad = []
        for path in dataset.files:
            kind, _ = self._inspect(path, schema)
            if kind == "odd":
                kind, _ = self._check_odd(table, path)
            if kind == "bad":
                bad.append(path)
        return bad

    def _inspect(self, path: str, schema: pa.Schema) -> tuple[FileKind, str]:
        """What ``path``'s footer says of it against ``schema`` (one small read; remembered when odd or bad)."""
        if path in self._known_files:
            return self._known_files[path]
        if path in self._exact_paths:
            return "ok", ""
        try:
            found = pq.read_schema(path, filesystem=self._fs)
        except FileNotFoundError:
            return "gone", "removed since it was listed"
        except pa.ArrowInvalid as exc:
            return self._remember(path, "bad", f"not Parquet: {exc}")
        except OSError as exc:
            if self._fs.get_file_info(path).type == pafs.FileType.NotFound:
                return "gone", "removed since it was listed"
            return "unavailable", f"cannot be read now: {exc}"
        problem = self._layout_problem(found, schema)
        if problem:
            return self._remember(path, "bad", problem)
        odd = (
            f"a {PARTITION_COLUMN!r} column inside (the directory gives the day)"
            if PARTITION_COLUMN in found.names
            else ""
        )
        for field in schema:
            index = found.get_field_index(field.name)
            if index < 0:
                continue
            kind = found.field(index).type
            if kind == field.type:
                continue
            if never_castable(kind, field.type):
                return self._remember(path, "bad", f"column {field.name!r} is {kind}, the table's is {field.type}")
            odd = odd or f"column {field.name!r} is {kind}"
        if odd:
            return self._remember(path, "odd", odd)
        self._exact_paths.add(path)
        return "ok", ""

    @staticmethod
    def _layout_problem(found: pa.Schema, schema: pa.Schema) -> str:
        """Why a file of columns ``found`` cannot be read as the table of ``schema``, else ``""`` (pure): a column
        name twice (which one holds the values?), or none of the table's columns (its rows would be all null)."""
        names = found.names
        if len(set(names)) < len(names):
            repeated = sorted({name for name in names if names.count(name) > 1})
            return f"column name(s) {repeated} more than once"
        if not set(found.names) & set(schema.names):
            return f"none of the table's columns (it has {found.names[:8]})"
        return ""

    def _remember(self, path: str, kind: FileKind, why: str) -> tuple[FileKind, str]:
        self._known_files[path] = (kind, why)
        return kind, why

    def _check_odd(self, table: str, path: str) -> tuple[FileKind, str]:
        """``odd`` if every column of ``path`` that differs from the table's type casts, else ``bad`` (remembered)."""
        schema = schema_for(table)
        found = pq.read_schema(path, filesystem=self._fs)
        differing = [f for f in schema if found.get_field_index(f.name) >= 0 and found.field(f.name).type != f.type]
        try:
            data = pq.read_table(path, columns=[f.name for f in differing], filesystem=self._fs)
            conform(data, pa.schema(differing))
        except FileNotFoundError:
            return "gone", "removed since it was listed"
        except UncastableError as exc:
            return self._remember(path, "bad", str(exc))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            return self._remember(path, "bad", f"not readable: {exc}")
        return "odd", self._known_files.get(path, ("odd", ""))[1]

    def _subset(self, table: str, files: Sequence[str]) -> ds.Dataset:
        """A dataset of ``files`` of ``table`` with the table's schema and partition column."""
        return ds.dataset(
            list(files),
            schema=schema_for(table).append(pa.field(PARTITION_COLUMN, pa.string())),
            format="parquet",
            filesystem=self._fs,
            partitioning=_PARTITIONING,
            partition_base_dir=self.table_path(table),
        )

    def _skip(self, path: str, why: str) -> None:
        """Say once (per process, whatever the number of store objects) that ``path`` is skipped and why."""
        if _said.first(f"file:{path}"):
            logger.warning(
                "synthobs: skipping unreadable health-store file %s (%s): its rows are not read; "
                "`synthobs compact` moves it to %s/",
                path,
                why,
                QUARANTINE,
            )

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

    def _scan(
        self,
        table: str,
        dataset: ds.Dataset,
        columns: Sequence[str],
        expr: ds.Expression | None,
        *,
        skipped: list[str] | None = None,
    ) -> pa.Table:
        """``columns`` of the rows of ``dataset`` matching ``expr``, reading around files of other writers.

        The fast path is one scan (Arrow casts castable types itself). When it fails (a file that is not
        Parquet, a time Arrow cannot compare or truncate, a column that does not cast), every file's footer
        is read: files with the table's types are scanned together, odd ones one by one and cast
        (``conform``), bad ones skipped with one warning each. Files found odd or bad are remembered, so later
        reads by this store object go straight to the right path.

        Args:
            skipped: Gets the paths of the files whose rows were not read.

        Raises:
            FileNotFoundError: A listed file vanished (compaction, retention): the caller lists again.
        """
        skipped = skipped if skipped is not None else []
        files = dataset.files
        if not any(path in self._known_files for path in files):
            try:
                data = dataset.to_table(columns=columns, filter=expr)
                if self._castable(table, dataset, expr):
                    return data
            except FileNotFoundError:
                raise
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError):
                pass  # a file another writer left: look at each
        schema = schema_for(table)
        kinds = {path: self._inspect(path, schema) for path in files}
        if any(kind == "gone" for kind, _ in kinds.values()):
            raise FileNotFoundError(next(path for path, (kind, _) in kinds.items() if kind == "gone"))
        good = [path for path in files if kinds[path][0] == "ok"]
        parts = [self._scan_good(table, good, columns, expr, skipped)] if good else []
        for path in files:
            kind, why = kinds[path]
            if kind == "odd":
                part = self._read_odd(table, path, columns, expr)
                if part is not None:
                    parts.append(part)
                else:
                    skipped.append(path)
            elif kind in ("bad", "unavailable"):
                self._skip(path, why)
                skipped.append(path)
        full = schema.append(pa.field(PARTITION_COLUMN, pa.string()))
        if not parts:
            return full.empty_table().select(list(columns))
        return pa.concat_tables(parts)

    def _castable(self, table: str, dataset: ds.Dataset, expr: ds.Expression | None) -> bool:
        """Whether every file the scan of ``dataset`` read has column types that may be cast to the table's.

        Arrow casts some types no reader means (a number of unknown unit as a time): a file with one is
        remembered as bad. No I/O: the scan cached each file's schema; each file is checked once per store
        object (about 30 µs a file, against some 500 µs to scan it).
        """
        wanted = {field.name: field.type for field in schema_for(table)}
        castable = True
        for fragment in dataset.get_fragments(filter=expr):
            path = fragment.path
            if path in self._castable_paths:
                continue
            found = fragment.physical_schema
            problem = self._layout_problem(found, schema_for(table))
            if problem or PARTITION_COLUMN in found.names:
                self._inspect(path, schema_for(table))  # remembers it as bad, or odd (read and cast alone)
                castable = False
                continue
            for name, kind in zip(found.names, found.types, strict=True):
                target = wanted.get(name)
                if target is not None and kind != target and never_castable(kind, target):
                    self._remember(path, "bad", f"column {name!r} is {kind}, the table's is {target}")
                    castable = False
                    break
            else:
                self._castable_paths.add(path)
        return castable

    def _scan_good(
        self, table: str, files: list[str], columns: Sequence[str], expr: ds.Expression | None, skipped: list[str]
    ) -> pa.Table:
        """One scan of ``files`` (the table's own types); if even that fails (pages cut short), file by file."""
        try:
            return self._subset(table, files).to_table(columns=columns, filter=expr)
        except FileNotFoundError:
            raise
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError):
            pass
        parts = []
        for path in files:
            try:
                parts.append(self._subset(table, [path]).to_table(columns=columns, filter=expr))
            except FileNotFoundError:
                raise
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                self._skip(path, self._remember(path, "bad", f"not readable: {exc}")[1])
                skipped.append(path)
            except OSError as exc:
                self._skip(path, f"cannot be read now: {exc}")
                skipped.append(path)
        full = schema_for(table).append(pa.field(PARTITION_COLUMN, pa.string()))
        return pa.concat_tables(parts) if parts else full.empty_table().select(list(columns))

    def _read_odd(self, table: str, path: str, columns: Sequence[str], expr: ds.Expression | None) -> pa.Table | None:
        """``columns`` of ``path`` (a file with other column types) cast to the table's types and filtered by
        ``expr``; ``None`` (skipped with one warning, remembered as bad) when a column cannot be cast.

        Every column of the file that differs from the table's type is checked, not only those read, so a
        file is skipped by every read alike.
        """
        schema = schema_for(table)
        full = schema.append(pa.field(PARTITION_COLUMN, pa.string()))
        try:
            # no partition discovery: the day comes from the directory, never from a column of that name inside
            one = ds.dataset([path], format="parquet", filesystem=self._fs)
            found = one.schema
            differing = [f.name for f in schema if f.name in found.names and found.field(f.name).type != f.type]
            needed = list(dict.fromkeys([*columns, *differing, tables.table(table).time_column, PARTITION_COLUMN]))
            data = one.to_table(columns=[c for c in needed if c in found.names and c != PARTITION_COLUMN])
            data = conform(data, pa.schema([full.field(c) for c in needed if c != PARTITION_COLUMN]))
            day = path.rsplit("/", 2)[-2].partition("=")[2]
            data = data.append_column(full.field(PARTITION_COLUMN), pa.array([day] * data.num_rows, pa.string()))
        except FileNotFoundError:
            raise
        except UncastableError as exc:
            self._skip(path, self._remember(path, "bad", str(exc))[1])
            return None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            self._skip(path, self._remember(path, "bad", f"not readable: {exc}")[1])
            return None
        except OSError as exc:
            self._skip(path, f"cannot be read now: {exc}")
            return None
        if expr is not None:
            data = data.filter(expr)
        return data.select(list(columns))

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
        return [target for path in self.unreadable_files(table) if (target := self._quarantine_file(table, path))]

    def _quarantine_file(self, table: str, path: str) -> str | None:
        """Move ``path`` to ``<root>/_quarantine/``; ``None`` if it vanished first (another compaction moved it)."""
        base = self.table_path(table)
        target = f"{self._root}/{QUARANTINE}/{table}/{path[len(base) + 1 :]}"
        try:
            self._fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            self._fs.move(path, target)
        except FileNotFoundError:
            return None
        why = self._known_files.get(path, ("bad", "unreadable"))[1]
        logger.warning("synthobs: moved unreadable health-store file %s (%s) to %s", path, why, target)
        return target

    def partitions(self, table: str) -> list[str]:
        """The ``YYYY-MM-DD`` partitions of ``table``, oldest first (other directories are not partitions)."""
        path = self.table_path(table)
        infos = self._fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        days = (partition_day(Path(i.path).name) for i in infos if i.type == pafs.FileType.Directory)
        return sorted(day for day in days if day is not None)

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
            with contextlib.suppress(FileNotFoundError):  # another maintenance run dropped it first
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
        deduplicates on ``event_id``. A partition holding one file with other
        column types (another writer's timestamps, say) is rewritten with the
        table's types.

        Files that ``read`` skips (not Parquet, or a column that cannot be cast)
        are first moved, never deleted, to ``<root>/_quarantine/<table>/date=.../``,
        and temporary files that killed writers left behind are removed once
        older than ``TEMPORARY_LEASE_SECONDS``.

        Two compactions may run at once (two ``synthobs compact``, a scheduled
        flow and a person): a file the other one removed is not an error, and
        the merged file's name is derived from the files merged, so two that
        merged the same files write the same file once (see ``_compact_partition``).

        Returns:
            ``{"partitions": n, "files_before": n, "files_after": n, "rows": n,
            "quarantined": n, "temporary_removed": n}``.
        """
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
            merged = self._compact_partition(table, day)
            if merged is None:
                continue
            files, rows, moved = merged
            stats["partitions"] += 1
            stats["files_before"] += files
            stats["files_after"] += 1
            stats["rows"] += rows
            stats["quarantined"] += moved
        return stats

    def _named_rows(self, table: str, day: str, files: Sequence[str], columns: Sequence[str]) -> pa.Table:
        """The rows of ``files`` (one partition), read file by file so that each row without an ``event_id``
        gets one from its file and place (``event_ids_for_unnamed_rows``): stored once, whichever compaction
        merges it. Only when some row has none (another writer's file); a file unreadable now is left out."""
        parts = []
        for path in files:
            part = self._scan(table, self._subset(table, [path]), columns, None, skipped=[])
            if part["event_id"].null_count:
                ids = event_ids_for_unnamed_rows(part["event_id"], f"{day}/{path.rsplit('/', 1)[-1]}")
                part = part.set_column(part.schema.get_field_index("event_id"), "event_id", ids)
            parts.append(part)
        return pa.concat_tables(parts)

    def _partition_files(self, table: str, day: str) -> list[str]:
        """The data files of one partition, sorted (none if the partition is gone)."""
        directory = f"{self.table_path(table)}/{PARTITION_COLUMN}={day}"
        infos = self._fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        return sorted(
            i.path
            for i in infos
            if i.type == pafs.FileType.File
            and Path(i.path).name.endswith(".parquet")
            and not Path(i.path).name.startswith((".", "_"))
        )

    def _compact_partition(self, table: str, day: str) -> tuple[int, int, int] | None:
        """Merge the files of one closed partition: ``(files merged, rows kept, files quarantined)``, or
        ``None`` when there is nothing to merge (one file of the table's types) or another compaction took it.

        Safe beside another compaction of the same partition, without a lock (S3 has no atomic create):

        - the merged file's name is a hash of the names merged, so two compactions that read the same files
          write the same file (the second replaces the first with the same rows), never two copies;
        - a file that vanished between listing and reading means the other one merged it: list again and
          merge what is there now (its merged file included);
        - before writing, the inputs are checked to be still there (if not, the other compaction wrote
          their rows: list again);
        - an input already gone when it is deleted means another compaction ran beside this one, maybe from
          another listing (a late write in between): list again, so two merged files of overlapping rows
          are merged into one (``event_id`` dropping the repeats). Only files whose rows were read are
          deleted: a file that could not be read now stays.
        """
        schema = schema_for(table)
        full = schema.append(pa.field(PARTITION_COLUMN, pa.string()))
        done: tuple[int, int, int] | None = None
        for _ in range(VANISHED_FILE_RETRIES + 1):
            files = self._partition_files(table, day)
            if not files or (len(files) == 1 and self._inspect(files[0], schema)[0] != "odd"):
                return done  # nothing (more) to merge; a lone file that is not Parquet was quarantined already
            skipped: list[str] = []
            try:
                data = self._scan(table, self._subset(table, files), full.names, None, skipped=skipped)
            except FileNotFoundError:
                continue  # another compaction merged it: list again
            inputs = [f for f in files if f not in skipped]
            if any(info.type == pafs.FileType.NotFound for info in self._fs.get_file_info(inputs)):
                continue  # another compaction merged them meanwhile: its file holds these rows
            bad = [f for f in skipped if self._known_files.get(f, ("ok", ""))[0] == "bad"]
            moved = sum(1 for path in bad if self._quarantine_file(table, path))
            unnamed = data["event_id"].null_count > 0
            if len(inputs) < 2 and not (inputs and (unnamed or self._inspect(inputs[0], schema)[0] == "odd")):
                return done if done is not None or not moved else (0, 0, moved)
            if unnamed:
                try:
                    data = self._named_rows(table, day, inputs, full.names)
                except FileNotFoundError:
                    continue  # another compaction merged it: list again
            run_id = tables.table(table).run_id_column
            if run_id is not None:
                data = one_row_per_run(data, run_id, "end_time")
            frame = data.drop_columns(PARTITION_COLUMN).to_pandas()
            clean = pa.Table.from_pandas(drop_repeated_events(frame), schema=schema, preserve_index=False)
            digest = hashlib.sha256("\n".join(Path(f).name for f in inputs).encode()).hexdigest()[:32]
            written = self._write_file(table, day, clean, name=f"part-{digest}.parquet")
            raced = False
            for path in inputs:
                if path != written:
                    try:
                        self._fs.delete_file(path)
                    except FileNotFoundError:
                        raced = True  # another compaction deleted it first: list again (see above)
            moved += done[2] if done is not None else 0
            done = (len(inputs), clean.num_rows, moved)
            if not raced:
                return done
        logger.warning(
            "synthobs: %s partition %s changed under compaction %d times in a row; left for the next compaction",
            table,
            day,
            VANISHED_FILE_RETRIES + 1,
        )
        return done
