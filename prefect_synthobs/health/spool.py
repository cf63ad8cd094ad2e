"""The local spool: health rows the store could not take yet, as files on local disk.

Layout: ``<directory>/<table>/part-<uuid>.parquet`` (rows that may wait long:
compact) or ``part-<uuid>.arrow`` (Arrow IPC, a fifth of Parquet's cost, for a
task's few rows drained within seconds). Each file is written under a hidden
temporary name and renamed, so a drainer never reads half a file.

Several drainers may share one spool (the processes of one host): a drainer
claims a file by renaming it to ``.part-<uuid>.<ext>.<drainer>.claim``, so
another skips it; a claim whose drainer never finished (killed mid-drain) is
given back after ``lease`` seconds. A drained file is deleted only after the
store took its rows; a refused write renames every claimed file back.

The spool never reaches into its owner: what writes a table to the store is
passed to ``Spool.drain``, and what a dropped row costs (a count, a warning, a
metric) is the ``on_dropped`` callback given at construction.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefect_synthobs import catalog as names
from prefect_synthobs._log import get_logger
from prefect_synthobs.health.tables import Row, schema_for

logger = get_logger("store")

DRAIN_BATCH_BYTES = 64 << 20
"""The most spool file bytes merged into one store write."""

REJECTED = "_rejected"
"""The spool's directory of rows that do not fit their table's column types (``<table>.jsonl``)."""

StoreWrite = Callable[[str, pa.Table], bool]
"""Writes one table's rows to the store and says whether the store took them (never raises)."""


def rows_to_arrow(table: str, rows: list[Row]) -> tuple[pa.Table, list[tuple[Row, str]]]:
    """``rows`` as ``table``'s Arrow table, and the rows that do not fit its column types, each with why
    (pure): a row that does not convert never costs the others."""
    schema = schema_for(table)
    try:
        return pa.Table.from_pylist(rows, schema=schema), []
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
    return pa.Table.from_pylist(good, schema=schema), rejected


def spool_files(table_dir: Path) -> list[Path]:
    """The spool files of one table's directory (claims and temporaries excluded)."""
    return [*table_dir.glob("part-*.parquet"), *table_dir.glob("part-*.arrow")]


def read_spool_file(path: Path, suffix: str, schema: pa.Schema) -> pa.Table:
    """A spool file (its kind given by ``suffix``) as ``schema``: a column added since it was written reads as
    nulls."""
    if suffix != ".arrow":
        return pq.read_table(path, schema=schema)
    with pa.OSFile(str(path)) as source:
        data = pa.ipc.open_file(source).read_all()
    columns = [
        data.column(f.name).cast(f.type) if f.name in data.column_names else pa.nulls(data.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def spool_file_rows(path: Path) -> int:
    """Rows in a spool file, from its metadata (Parquet) or its batches (Arrow IPC)."""
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
            files = spool_files(old)
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


class Spool:
    """Spool files of one store: written whole, bounded in size, claimed and drained by rename.

    Args:
        directory: The spool's directory (one per store).
        max_bytes: The most the spool may hold; ``limit`` drops the oldest files past it.
        lease: Seconds after which a file claimed by a drainer that never finished is given back.
        on_dropped: Called with ``(table, rows)`` for every spool file ``limit`` drops.
    """

    def __init__(
        self, directory: Path, *, max_bytes: int, lease: float, on_dropped: Callable[[str, int], None]
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.lease = lease
        self._on_dropped = on_dropped

    def write(self, table: str, data: pa.Table, *, arrow: bool = False) -> Path:
        """One spool file of ``data``: Parquet or, with ``arrow``, Arrow IPC.

        Raises:
            OSError: The spool cannot be written (full disk, a file where the directory should be).
        """
        directory = self.directory / table
        name = f"part-{uuid.uuid4().hex}.{'arrow' if arrow else 'parquet'}"
        tmp = directory / f".{name}.tmp"
        directory.mkdir(parents=True, exist_ok=True)
        if arrow:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, data.schema) as writer:
                writer.write_table(data)
        else:
            pq.write_table(data, tmp)
        final = directory / name
        tmp.replace(final)  # whole, or not there: a drainer never reads half a file
        return final

    def keep_rejected(self, table: str, rejected: list[tuple[Row, str]]) -> Path:
        """Append rows that do not fit ``table``'s column types, each with why, to ``_rejected/<table>.jsonl``.

        Raises:
            OSError: The file cannot be written.
        """
        path = self.directory / REJECTED / f"{table}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            for row, why in rejected:
                out.write(json.dumps({"table": table, "error": why, "row": row}, default=str) + "\n")
        return path

    def files(self) -> list[Path]:
        """Spool files waiting to be written, sorted (claimed ones excluded)."""
        if not self.directory.is_dir():
            return []
        return sorted(
            path for table_dir in self.directory.iterdir() if table_dir.is_dir() for path in spool_files(table_dir)
        )

    def is_empty(self) -> bool:
        """No file a drain would write or give back: no waiting spool file and no claim (a drainer's, maybe a
        dead one's) in any table's directory. Kept rejected rows (``_rejected/``), ``.bad`` files and other
        folders do not count: no drain acts on them. A directory that cannot be read is not called empty."""
        try:
            if not self.directory.is_dir():
                return True
            for table_dir in self.directory.iterdir():
                if table_dir.name not in names.TABLES or not table_dir.is_dir():
                    continue
                if spool_files(table_dir) or any(table_dir.glob(".part-*.claim")):
                    return False
            return True
        except OSError:
            return False

    def rows(self) -> int:
        """Rows in the spool files waiting to be written (a file that cannot be read counts nothing)."""
        total = 0
        for path in self.files():
            with contextlib.suppress(Exception):
                total += spool_file_rows(path)
        return total

    def limit(self) -> None:
        """Drop the oldest spool files while the spool holds more than ``max_bytes`` (each counted in
        ``on_dropped``)."""
        files = []
        for path in self.files():
            with contextlib.suppress(OSError):
                info = path.stat()
                files.append((info.st_mtime, info.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            try:
                rows = spool_file_rows(path)
            except Exception:
                rows = 0
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size
                with contextlib.suppress(Exception):  # the owner's bookkeeping never stops the bound
                    self._on_dropped(path.parent.name, rows)

    def drain(self, write: StoreWrite) -> int:
        """Write the spool to the store through ``write``, its files merged per table (up to
        ``DRAIN_BATCH_BYTES`` a write); returns the rows the store took.

        A worker spools each task's rows: merged, a second of them becomes one store file, not one per task.
        The first write the store refuses ends the drain, its files given back to the spool.
        """
        written = 0
        if not self.directory.is_dir():
            return 0
        for table_dir in sorted(p for p in self.directory.iterdir() if p.is_dir()):
            try:
                schema = schema_for(table_dir.name)
            except ValueError:
                continue  # _rejected, or a directory of no table
            self._recover_claims(table_dir)
            for batch in self._batches(table_dir):
                parts = []
                for path, claimed in self._claim(batch):
                    try:
                        parts.append((path, claimed, read_spool_file(claimed, path.suffix, schema)))
                    except Exception as exc:
                        logger.warning("synthobs: unreadable spool file %s (%s); left in place", path, exc)
                        with contextlib.suppress(OSError):
                            claimed.rename(path.with_suffix(".bad"))
                if not parts:
                    continue
                data = pa.concat_tables([part for _, _, part in parts])
                if not write(table_dir.name, data):
                    for path, claimed, _ in parts:
                        claimed.rename(path)
                    return written
                for _, claimed, _ in parts:
                    claimed.unlink(missing_ok=True)
                written += data.num_rows
        return written

    def _recover_claims(self, table_dir: Path) -> None:
        """Give back the files of ``table_dir`` claimed longer than ``lease`` ago (their drainer died)."""
        now = time.time()
        for claim in table_dir.glob(".part-*.claim"):
            try:
                if now - claim.stat().st_mtime <= self.lease:
                    continue
                original = claim.name[1:].rsplit(".", 2)[0]  # .part-X.parquet.<uuid>.claim -> part-X.parquet
                claim.rename(table_dir / original)
                logger.info(
                    "synthobs: spool file %s was claimed by a drainer that never finished; retrying it", original
                )
            except OSError:
                continue

    @staticmethod
    def _batches(table_dir: Path) -> Iterator[list[Path]]:
        """The table's spool files by name, in groups of at most ``DRAIN_BATCH_BYTES`` (one file at least)."""
        batch: list[Path] = []
        size = 0
        for path in sorted(spool_files(table_dir)):
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
