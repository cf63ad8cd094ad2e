"""Reading a health table's files, around the files other writers left there.

The fast path is one Arrow scan of the table. When it fails (a file that is not
Parquet, a column Arrow cannot compare or cast), every file's footer is read:
files of the table's own types are scanned together, files of other castable
types one by one and cast (``conform``), the others skipped with one warning
each. What each file turned out to be is remembered, so later reads by the same
``HealthStore`` go straight to the right path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from prefect_synthobs._log import get_logger
from prefect_synthobs.health import tables
from prefect_synthobs.health.casting import UncastableError, conform, never_castable
from prefect_synthobs.health.files import QUARANTINE, SaidOnce, StoreFiles
from prefect_synthobs.health.tables import PARTITION_COLUMN, schema_for

logger = get_logger("store")

_said_files = SaidOnce()

FileKind = Literal["ok", "odd", "bad", "unavailable", "gone"]
"""What a look at a file's footer says: ``ok`` (the table's own column types), ``odd`` (other types that may be
cast: timestamp units and zones, narrower numbers, dictionary strings ...), ``bad`` (not Parquet, or a column whose
type can never be cast), ``unavailable`` (the store did not answer), ``gone`` (removed since it was listed)."""


def _to_timestamp(value: datetime | date | str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    utc: pd.Timestamp = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return utc


def window_filter(
    table: str, since: datetime | date | str | None, until: datetime | date | str | None
) -> ds.Expression | None:
    """The filter of rows of ``table`` whose time is in ``[since, until)`` (UTC if naive), pruning the
    partitions outside it too; ``None`` for no bound (pure)."""
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
    return expr


def layout_problem(found: pa.Schema, schema: pa.Schema) -> str:
    """Why a file of columns ``found`` cannot be read as the table of ``schema``, else ``""`` (pure): a column
    name twice (which one holds the values?), or none of the table's columns (its rows would be all null)."""
    names = found.names
    if len(set(names)) < len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        return f"column name(s) {repeated} more than once"
    if not set(found.names) & set(schema.names):
        return f"none of the table's columns (it has {found.names[:8]})"
    return ""


class TableScanner:
    """Scans the tables of one store's files, and remembers what each file of another writer is.

    Args:
        files: The store's files.
    """

    def __init__(self, files: StoreFiles) -> None:
        self._files = files
        self._known_files: dict[str, tuple[FileKind, str]] = {}
        """Files of other writers seen odd or bad: ``path -> (kind, why)`` (names are unique, files never change)."""
        self._exact_paths: set[str] = set()
        """Files whose footer showed the table's own column types."""
        self._castable_paths: set[str] = set()
        """Files whose column types were seen to cast to their table's (checked once)."""

    def known(self, path: str) -> FileKind:
        """What ``path`` was found to be (``ok`` when nothing was found against it)."""
        return self._known_files.get(path, ("ok", ""))[0]

    def why(self, path: str) -> str:
        """Why ``path`` was found odd or bad (``unreadable`` when not known)."""
        return self._known_files.get(path, ("bad", "unreadable"))[1]

    def unreadable_files(self, table: str) -> list[str]:
        """Files of ``table`` that ``read`` skips and ``compact`` quarantines: not readable Parquet (zero bytes,
        garbage, cut short), or holding a column whose values cannot be cast to the table's type.

        Reads each file's footer, and the data of the columns that another writer stored with another type.
        """
        dataset = self._files.dataset(table)
        if dataset is None:
            return []
        schema = schema_for(table)
        bad = []
        for path in dataset.files:
            kind, _ = self.inspect(path, schema)
            if kind == "odd":
                kind, _ = self._check_odd(table, path)
            if kind == "bad":
                bad.append(path)
        return bad

    def inspect(self, path: str, schema: pa.Schema) -> tuple[FileKind, str]:
        """What ``path``'s footer says of it against ``schema`` (one small read; remembered when odd or bad)."""
        if path in self._known_files:
            return self._known_files[path]
        if path in self._exact_paths:
            return "ok", ""
        try:
            found = pq.read_schema(path, filesystem=self._files.fs)
        except FileNotFoundError:
            return "gone", "removed since it was listed"
        except pa.ArrowInvalid as exc:
            return self._remember(path, "bad", f"not Parquet: {exc}")
        except OSError as exc:
            if self._files.fs.get_file_info(path).type == pafs.FileType.NotFound:
                return "gone", "removed since it was listed"
            return "unavailable", f"cannot be read now: {exc}"
        problem = layout_problem(found, schema)
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

    def _remember(self, path: str, kind: FileKind, why: str) -> tuple[FileKind, str]:
        self._known_files[path] = (kind, why)
        return kind, why

    def _check_odd(self, table: str, path: str) -> tuple[FileKind, str]:
        """``odd`` if every column of ``path`` that differs from the table's type casts, else ``bad`` (remembered)."""
        schema = schema_for(table)
        found = pq.read_schema(path, filesystem=self._files.fs)
        differing = [f for f in schema if found.get_field_index(f.name) >= 0 and found.field(f.name).type != f.type]
        try:
            data = pq.read_table(path, columns=[f.name for f in differing], filesystem=self._files.fs)
            conform(data, pa.schema(differing))
        except FileNotFoundError:
            return "gone", "removed since it was listed"
        except UncastableError as exc:
            return self._remember(path, "bad", str(exc))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            return self._remember(path, "bad", f"not readable: {exc}")
        return "odd", self._known_files.get(path, ("odd", ""))[1]

    def _skip(self, path: str, why: str) -> None:
        """Say once (per process, whatever the number of store objects) that ``path`` is skipped and why."""
        if _said_files.first(f"file:{path}"):
            logger.warning(
                "synthobs: skipping unreadable health-store file %s (%s): its rows are not read; "
                "`synthobs compact` moves it to %s/",
                path,
                why,
                QUARANTINE,
            )

    def scan(
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
        kinds = {path: self.inspect(path, schema) for path in files}
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
            problem = layout_problem(found, schema_for(table))
            if problem or PARTITION_COLUMN in found.names:
                self.inspect(path, schema_for(table))  # remembers it as bad, or odd (read and cast alone)
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
            return self._files.subset(table, files).to_table(columns=columns, filter=expr)
        except FileNotFoundError:
            raise
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError):
            pass
        parts = []
        for path in files:
            try:
                parts.append(self._files.subset(table, [path]).to_table(columns=columns, filter=expr))
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
            one = ds.dataset([path], format="parquet", filesystem=self._files.fs)
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
