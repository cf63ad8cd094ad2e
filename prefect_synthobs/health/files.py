"""The files of one health store: where each table's partitions lie, writing a file whole, listing them.

Layout: ``<root>/<table>/date=YYYY-MM-DD/part-<uuid>.parquet``. Local files are
written under a hidden temporary name (``.part-<uuid>.parquet.<random>.tmp``, which
dataset discovery ignores) and renamed, so readers never see half a file; on
object stores each file is one PUT under its unique final name. Concurrent
writers never collide because every file name is unique.
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from prefect_synthobs import catalog as names
from prefect_synthobs._log import get_logger
from prefect_synthobs.health import tables
from prefect_synthobs.health.location import streaming_filesystem
from prefect_synthobs.health.tables import PARTITION_COLUMN, schema_for

logger = get_logger("store")

PARTITIONING = ds.partitioning(pa.schema([(PARTITION_COLUMN, pa.string())]), flavor="hive")
"""The tables' Hive partitioning: one ``date=YYYY-MM-DD`` directory per day."""

QUARANTINE = "_quarantine"
"""Where ``compact`` moves files that are not readable Parquet (``<root>/_quarantine/<table>/...``)."""

TEMPORARY_LEASE_SECONDS = 3600.0
"""Age after which ``compact`` removes a writer's leftover temporary file."""

VANISHED_FILE_RETRIES = 5
"""How often ``read`` (and a compaction) lists a table again when a listed file vanished (compaction, retention)."""

BUFFERED_WRITE_BYTES = 64 << 20
"""On an object store, a table up to this size (in memory) is encoded to Parquet in memory first and sent in one
request (one ``PutObject`` below the 5 MiB part size: every flush), so a failure while encoding uploads nothing;
a larger one (a compaction's merged file) streams as a multipart upload."""

SMALL_FILE_ROWS = 10_000
"""A file of at most this many rows (a flush's) is encoded without dictionaries or column statistics
(``small_file_encoding``): each costs a fixed amount per column, most of a small file's encoding time, and at
that size they save readers nothing (no reader here prunes by statistics); a larger file (a compaction's) has
both."""


def small_file_encoding(data: pa.Table) -> dict[str, Any]:
    """The ``pq.write_table`` options for ``data``: none for a large table, cheaper ones for a small one."""
    return {"use_dictionary": False, "write_statistics": False} if data.num_rows <= SMALL_FILE_ROWS else {}


_REMEMBERED_SIZES = 1024
"""How many sizes of files it wrote a ``StoreFiles`` keeps, so ``size_of`` of a file just written asks no store."""

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


class SaidOnce:
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


_said_directories = SaidOnce()


_EPOCH = date(1970, 1, 1)
_UNITS_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


def partition_days(table: str, data: pa.Table) -> str | pa.Array:
    """The partition of every row of ``data`` (pure): one ``YYYY-MM-DD`` string when all rows share a day
    (checked from min/max, no per-row work), else a date array. A row without a time goes to today (UTC)."""
    times = data.column(tables.table(table).time_column)
    today = datetime.now(timezone.utc).date()
    bounds = pc.min_max(times)
    # the UTC day of each bound from its integer value (an instant: no time zone or datetime object built)
    per_day = _UNITS_PER_DAY[times.type.unit]
    lo, hi = bounds["min"].value, bounds["max"].value
    if times.null_count == 0 or (lo is None and hi is None):
        lo_day = _EPOCH + timedelta(days=lo // per_day) if lo is not None else today
        hi_day = _EPOCH + timedelta(days=hi // per_day) if hi is not None else today
        if lo_day == hi_day:
            return lo_day.isoformat()
    if times.type.tz not in (None, "UTC"):  # a cast to date takes the zone's local day: the UTC one is wanted
        times = times.cast(pa.timestamp(times.type.unit, tz="UTC"))
    days = pc.cast(times, pa.date32()).combine_chunks()
    return pc.fill_null(days, pa.scalar(today, pa.date32()))


def in_partition(table_path: str, path: str) -> bool:
    """Whether ``path`` lies directly in a ``date=YYYY-MM-DD`` directory of the table at ``table_path`` (pure)."""
    directory, _, _ = path[len(table_path) + 1 :].rpartition("/")
    return partition_day(directory) is not None


class StoreFiles:
    """The files of one store root on one filesystem.

    Args:
        fs: The filesystem (``resolve_filesystem``).
        root: The store's root path on it.
        local: Whether it is a local filesystem (files are renamed into place).
    """

    def __init__(self, fs: pafs.FileSystem, root: str, local: bool) -> None:
        self.fs = fs
        self.root = root
        self.local = local
        self._sizes: OrderedDict[str, int] = OrderedDict()  # files this object wrote (names are never reused)
        self._sizes_lock = threading.Lock()
        self._streaming: pafs.FileSystem | None = None  # built at the first large upload (``put_whole``)

    def table_path(self, table: str) -> str:
        """``<root>/<table>`` (the name is checked: tables are never user input paths)."""
        schema_for(table)
        return f"{self.root}/{table}"

    def partition_path(self, table: str, day: str) -> str:
        """The directory of ``table``'s partition of ``day`` (``YYYY-MM-DD``)."""
        return f"{self.table_path(table)}/{PARTITION_COLUMN}={day}"

    # -- writing -------------------------------------------------------------

    def write(self, table: str, rows: pa.Table | Sequence[dict[str, Any]]) -> list[str]:
        """Write rows to ``table``: one new file per date partition touched; the paths written.

        Raises:
            OSError: The store cannot be written.
        """
        schema = schema_for(table)
        data = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), schema=schema)
        if data.num_rows == 0:
            return []
        if data.schema != schema:
            data = data.select(schema.names).cast(schema)
        days = partition_days(table, data)
        if isinstance(days, str):  # the usual case: every row on one day
            return [self.write_file(table, days, data)]
        return [
            self.write_file(table, day.isoformat(), data.filter(pc.equal(days, day)))
            for day in pc.unique(days).to_pylist()
        ]

    def write_file(self, table: str, day: str, data: pa.Table, name: str | None = None) -> str:
        """One file of ``data`` in the partition of ``day``, whole or not at all; its path.

        Locally: written under a hidden temporary name in the (created) partition directory, then renamed. On an
        object store: no directory is made (a prefix needs no marker object) and the file is one upload under
        its final name (``put_whole``), which the store shows whole or not at all.
        """
        directory = self.partition_path(table, day)
        name = name or f"part-{uuid.uuid4().hex}.parquet"
        final = f"{directory}/{name}"
        if self.local:
            self.fs.create_dir(directory, recursive=True)
            tmp = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}.tmp"  # two compactions may write one name
            try:
                pq.write_table(data, tmp, filesystem=self.fs, **small_file_encoding(data))
                self.fs.move(tmp, final)
            except BaseException:
                with contextlib.suppress(OSError):
                    self.fs.delete_file(tmp)
                raise
        else:
            self._remember(final, self.put_whole(final, data))
        return final

    def put_whole(self, path: str, data: pa.Table) -> int | None:
        """Upload ``data`` as one Parquet object at ``path`` (object stores); its size when it was encoded first.

        Up to ``BUFFERED_WRITE_BYTES`` the file is encoded in memory and handed over in one write: with
        ``location.OBJECT_STORE_WRITES`` that is one ``PutObject`` request below the part size, and an encoding
        error uploads nothing. A larger table streams (a multipart upload, completed when the file is) through
        ``location.streaming_filesystem``, whose parts upload while the next ones are encoded.
        """
        if data.nbytes > BUFFERED_WRITE_BYTES:
            if self._streaming is None:
                self._streaming = streaming_filesystem(self.fs)
            pq.write_table(data, path, filesystem=self._streaming)
            return None
        sink = pa.BufferOutputStream()
        pq.write_table(data, sink, **small_file_encoding(data))
        encoded = sink.getvalue()
        with self.fs.open_output_stream(path) as out:
            out.write(encoded)
        return int(encoded.size)

    def _remember(self, path: str, size: int | None) -> None:
        """Keep the size of a file this object just wrote (the last ``_REMEMBERED_SIZES``)."""
        if size is None:
            return
        with self._sizes_lock:
            self._sizes[path] = size
            if len(self._sizes) > _REMEMBERED_SIZES:
                self._sizes.popitem(last=False)

    def _forget(self, path: str) -> None:
        with self._sizes_lock:
            self._sizes.pop(path, None)

    # -- looking -------------------------------------------------------------

    def check(self) -> None:
        """Ask the store for its root.

        Raises:
            OSError: The store does not answer or refuses.
        """
        self.fs.get_file_info(self.root)

    def exists(self) -> bool:
        """Whether the root is a directory holding at least one table's directory (see ``HealthStore.exists``).

        Raises:
            OSError: The store does not answer.
        """
        directory = pafs.FileType.Directory
        root, *found = self.fs.get_file_info([self.root, *(self.table_path(t) for t in names.TABLES)])
        return bool(root.type == directory and any(info.type == directory for info in found))

    def size_of(self, paths: Sequence[str]) -> int:
        """Total bytes of the files at ``paths``: files this object just wrote are known without a request (a
        ``storage.write`` span's size costs an object store no ``HEAD``); the others are asked for."""
        with self._sizes_lock:
            known = {p: self._sizes[p] for p in paths if p in self._sizes}
        unknown = [p for p in paths if p not in known]
        asked = sum(info.size or 0 for info in self.fs.get_file_info(unknown)) if unknown else 0
        return sum(known.values()) + asked

    def dataset(self, table: str) -> ds.Dataset | None:
        """The table as a ``pyarrow.dataset.Dataset`` with the full schema, or ``None``.

        Files outside the ``date=YYYY-MM-DD`` partitions are left out (one warning per directory per process).
        """
        schema = schema_for(table)
        path = self.table_path(table)
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return None
        full = schema.append(pa.field(PARTITION_COLUMN, pa.string()))
        found = ds.dataset(
            path,
            schema=full,
            format="parquet",
            filesystem=self.fs,
            partitioning=PARTITIONING,
            exclude_invalid_files=False,
            ignore_prefixes=[".", "_"],
        )
        outside = [f for f in found.files if not in_partition(path, f)]
        if not outside:
            return found
        self._say_outside_partitions(table, path, outside)
        return self.subset(table, [f for f in found.files if in_partition(path, f)])

    def subset(self, table: str, files: Sequence[str]) -> ds.Dataset:
        """A dataset of ``files`` of ``table`` with the table's schema and partition column."""
        return ds.dataset(
            list(files),
            schema=schema_for(table).append(pa.field(PARTITION_COLUMN, pa.string())),
            format="parquet",
            filesystem=self.fs,
            partitioning=PARTITIONING,
            partition_base_dir=self.table_path(table),
        )

    def _say_outside_partitions(self, table: str, table_path: str, outside: Sequence[str]) -> None:
        """Warn once per process per directory that the files of ``outside`` are not read (they lie outside the
        ``date=YYYY-MM-DD`` partitions, where no window could place them); ``compact`` leaves them there."""
        by_directory: dict[str, int] = {}
        for path in outside:
            directory = path.rpartition("/")[0]
            by_directory[directory] = by_directory.get(directory, 0) + 1
        for directory, count in by_directory.items():
            if _said_directories.first(f"directory:{directory}"):
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

    def partitions(self, table: str) -> list[str]:
        """The ``YYYY-MM-DD`` partitions of ``table``, oldest first (other directories are not partitions)."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.table_path(table), allow_not_found=True))
        days = (partition_day(Path(i.path).name) for i in infos if i.type == pafs.FileType.Directory)
        return sorted(day for day in days if day is not None)

    def partition_files(self, table: str, day: str) -> list[str]:
        """The data files of one partition, sorted (none if the partition is gone)."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.partition_path(table, day), allow_not_found=True))
        return sorted(
            i.path
            for i in infos
            if i.type == pafs.FileType.File
            and Path(i.path).name.endswith(".parquet")
            and not Path(i.path).name.startswith((".", "_"))
        )

    def vanished(self, paths: Sequence[str]) -> bool:
        """Whether any of ``paths`` is gone (another compaction removed it)."""
        return any(info.type == pafs.FileType.NotFound for info in self.fs.get_file_info(list(paths)))

    # -- removing ------------------------------------------------------------

    def remove_orphaned_temporaries(self, table: str, *, older_than: float = 0.0) -> list[str]:
        """Delete the hidden ``.part-*.tmp`` files of ``table`` a killed writer left, once older than
        ``older_than`` seconds (default: ``TEMPORARY_LEASE_SECONDS``); the paths removed."""
        lease = older_than or TEMPORARY_LEASE_SECONDS
        now = datetime.now(timezone.utc)
        removed = []
        infos = self.fs.get_file_info(pafs.FileSelector(self.table_path(table), recursive=True, allow_not_found=True))
        for info in infos:
            name = Path(info.path).name
            if info.type != pafs.FileType.File or not (name.startswith(".part-") and name.endswith(".tmp")):
                continue
            mtime = info.mtime
            if mtime is None or (now - mtime.astimezone(timezone.utc)).total_seconds() <= lease:
                continue
            with contextlib.suppress(OSError):
                self.fs.delete_file(info.path)
                removed.append(info.path)
        return removed

    def delete_partition(self, table: str, day: str) -> None:
        """Delete the whole partition of ``day`` (gone already is not an error: another run dropped it)."""
        directory = self.partition_path(table, day)
        with self._sizes_lock:
            for path in [p for p in self._sizes if p.startswith(f"{directory}/")]:
                del self._sizes[path]
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_dir(directory)

    def delete_merged(self, paths: Sequence[str], *, keep: str) -> bool:
        """Delete ``paths`` but ``keep`` (the file merged from them); whether one was gone already (another
        compaction ran beside this one)."""
        raced = False
        for path in paths:
            if path != keep:
                self._forget(path)
                try:
                    self.fs.delete_file(path)
                except FileNotFoundError:
                    raced = True
        return raced

    def move_aside(self, table: str, path: str) -> str | None:
        """Move ``path`` of ``table`` to ``<root>/_quarantine/`` (same place under it); where it went, ``None``
        if it vanished first (another compaction moved it)."""
        target = f"{self.root}/{QUARANTINE}/{table}/{path[len(self.table_path(table)) + 1 :]}"
        self._forget(path)
        try:
            self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            self.fs.move(path, target)
        except FileNotFoundError:
            return None
        return target
