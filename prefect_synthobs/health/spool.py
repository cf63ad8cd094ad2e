"""The local spool: health rows the store could not take yet, as files on local disk.

Layout: ``<directory>/<table>/part-<uuid>.parquet`` (rows that may wait long:
compact), ``part-<uuid>.arrow`` (Arrow IPC), ``log-<uuid>.jsonl`` (a process's
log of the rows its tasks made safe before they returned, a task's rows one JSON
record a line, ``write_rows``) or ``part-<uuid>.json`` (one such record as a
file of its own: where a log cannot be used, and as earlier versions wrote
them). Each ``part-`` file is written under a hidden temporary name and renamed,
so a drainer never reads half a file; a temporary name a killed writer left is
removed once older than the lease. A log is appended to holding its ``flock``
lock, after checking that it still has its name; a drainer claims it by renaming
it holding the same lock, so each record is taken with exactly one claim, and
takes only its complete (newline-ended) records: a torn last one, of a writer
killed or failed mid-write, never reported safe, is left out.

A worker's per-task file is JSON, not Arrow, because of what it costs there:
converting a row to Arrow takes about 70 µs alone, but pyarrow gives up the
GIL between steps, so in a worker whose other threads (Prefect's events and
logs, the flusher) want it, each conversion waited about 1.5 ms (measured: 5 ms
against one busy thread). Encoding the row as JSON and appending it to the
process's open log with four system calls that change no directory (lock,
check, write, unlock, holding the GIL) holds the task for about 20 µs; the
drainer (a background thread, or the flow's process) converts many tasks' rows
in one go. The log's file is made and closed holding the GIL too: a call that
gives it up (``os.close`` of the log cost 1.7 ms a call in a busy worker) waits
for Prefect's threads. Only rows whose
values JSON carries exactly are written so (``encode_rows``): anything else
takes the Arrow path, with the same result as before.

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
import ctypes
import errno
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from prefect_synthobs import catalog as names
from prefect_synthobs._fork import reset_in_child
from prefect_synthobs._log import get_logger
from prefect_synthobs.health.tables import Row, new_event_id, schema_for

logger = get_logger("store")

DRAIN_BATCH_BYTES = 64 << 20
"""The most spool file bytes merged into one store write."""

REJECTED = "_rejected"
"""The spool's directory of rows that do not fit their table's column types (``<table>.jsonl``)."""

StoreWrite = Callable[[str, pa.Table], bool]
"""Writes one table's rows to the store and says whether the store took them (never raises)."""

ROWS_SUFFIX = ".json"
"""The suffix of a spool file of rows as JSON (``Spool.write_rows``)."""

LOG_SUFFIX = ".jsonl"
"""The suffix of a process's append-only log of rows as JSON, one record (a task's rows) a line
(``Spool.write_rows``)."""

LOG_PREFIX = "log-"

_SPOOL_SUFFIXES = (".parquet", ".arrow", ROWS_SUFFIX, LOG_SUFFIX)

_PLAIN = frozenset({str, int, float, bool, type(None)})
"""Value types JSON carries exactly (as the Arrow conversion sees them)."""

_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)
"""``encode_rows``' encoder, made once (``json.dumps`` with other than its defaults makes one per call). No
circularity check: what it is given holds scalars and lists of scalars only (``_plain``), never a cycle."""


class _OsFileCalls:
    """The system calls of ``Spool.write_rows`` through ``os``: each gives up the GIL while it runs."""

    held_gil = False

    @staticmethod
    def create(path: str) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)

    @staticmethod
    def write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    @staticmethod
    def close(fd: int) -> None:
        os.close(fd)

    @staticmethod
    def rename(source: str, target: str) -> None:
        os.rename(source, target)


class _LibcFileCalls:
    """The same system calls made through the C library without giving up the GIL (``ctypes.PyDLL``).

    Why: ``os.open`` and its kin release the GIL for the call, and taking it back waits for whichever thread
    took it meanwhile, up to the interpreter's switch interval (5 ms) when that thread is busy. A worker's
    other threads (Prefect's event loop and events, the flusher) are busiest exactly as a task ends, so four
    calls cost a task 1-2 ms there (measured in ProcessPoolTaskRunner workers; 12 ms against one busy thread)
    for about 30 µs of work. Holding the GIL, they cost the other threads those microseconds instead. Only
    non-variadic functions are called (``creat``, not ``open``), so the calling convention is the plain one
    on every platform.
    """

    held_gil = True

    def __init__(self) -> None:
        libc = ctypes.PyDLL(None, use_errno=True)
        self._creat = libc.creat
        self._creat.argtypes, self._creat.restype = [ctypes.c_char_p, ctypes.c_uint], ctypes.c_int
        self._write = libc.write
        self._write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        self._write.restype = ctypes.c_ssize_t
        self._close = libc.close
        self._close.argtypes, self._close.restype = [ctypes.c_int], ctypes.c_int
        self._rename = libc.rename
        self._rename.argtypes, self._rename.restype = [ctypes.c_char_p, ctypes.c_char_p], ctypes.c_int
        self._flock = libc.flock
        self._flock.argtypes, self._flock.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        self._access = libc.access
        self._access.argtypes, self._access.restype = [ctypes.c_char_p, ctypes.c_int], ctypes.c_int

    @staticmethod
    def _fail(path: str | None = None) -> OSError:
        code = ctypes.get_errno()
        return OSError(code, os.strerror(code), path)  # an OSError subclass by errno (FileNotFoundError, ...)

    def create(self, path: str) -> int:
        # a new name of this process's (``new_event_id``): creat's truncation never meets another's file
        fd = int(self._creat(os.fsencode(path), 0o644))
        if fd < 0:
            raise self._fail(path)
        return fd

    def write_all(self, fd: int, data: bytes) -> None:
        while data:
            written = int(self._write(fd, data, len(data)))
            if written < 0:
                if ctypes.get_errno() == errno.EINTR:
                    continue
                raise self._fail()
            data = data[written:]

    def close(self, fd: int) -> None:
        if self._close(fd) != 0 and ctypes.get_errno() != errno.EINTR:  # (closed either way on EINTR)
            raise self._fail()

    def rename(self, source: str, target: str) -> None:
        if self._rename(os.fsencode(source), os.fsencode(target)) != 0:
            raise self._fail(source)

    def try_lock(self, fd: int) -> bool:
        """``flock(fd, LOCK_EX | LOCK_NB)``: ``False`` while another open file (a drainer's) holds the lock."""
        while self._flock(fd, _LOCK_EX | _LOCK_NB) != 0:
            code = ctypes.get_errno()
            if code == errno.EINTR:
                continue
            if code in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise self._fail()
        return True

    def unlock(self, fd: int) -> None:
        self._flock(fd, _LOCK_UN)

    def exists(self, path: bytes) -> bool:
        return int(self._access(path, os.F_OK)) == 0


_LOCK_EX, _LOCK_NB, _LOCK_UN = 2, 4, 8
"""``flock``'s operations (the same numbers on Linux, macOS and the BSDs)."""


def _file_calls() -> _OsFileCalls | _LibcFileCalls:
    """The C library's calls where there is one (Linux, macOS), else ``os``'s."""
    if os.name != "posix":
        return _OsFileCalls()
    try:
        return _LibcFileCalls()
    except (OSError, AttributeError):  # no C library to load, or one without these functions
        return _OsFileCalls()


FILE_CALLS: _OsFileCalls | _LibcFileCalls = _file_calls()
"""How ``Spool.write_rows`` makes its system calls (on a local disk: ``calls_for``)."""

NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "afs", "gpfs", "beegfs", "davfs"}
)
"""Filesystem types a spool may hang on (a server gone): their calls never hold the GIL (``calls_for``)."""


def _unescape_mount(field: str) -> str:
    """A mount point as ``/proc/self/mountinfo`` writes it (space, tab, newline, backslash as octal escapes)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


@cache
def filesystem_type(directory: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The type of the filesystem ``directory`` is on (Linux: the longest mount point above it in
    ``mountinfo``), or ``None`` where that cannot be read."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as mounts:
            lines = mounts.read().splitlines()
    except OSError:
        return None
    path = os.path.realpath(directory)
    best, kind = -1, None
    for line in lines:
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        mount = _unescape_mount(fields[4])
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > best:
            best, kind = len(mount), tail.split()[0]
    return kind


def calls_for(directory: str) -> _OsFileCalls | _LibcFileCalls:
    """``FILE_CALLS``, unless ``directory`` is on a network or FUSE filesystem: a call that hangs there while
    holding the GIL would stop every thread of the process (Prefect's too), so there the calls give it up."""
    if not FILE_CALLS.held_gil:
        return FILE_CALLS
    kind = filesystem_type(directory)
    if kind is not None and (kind in NETWORK_FILESYSTEMS or kind.startswith("fuse")):
        return _OsFileCalls()
    return FILE_CALLS


class NotPlainRows(ValueError):
    """Rows that JSON would not carry exactly (``encode_rows``): they are spooled as Arrow instead."""


@cache
def _timestamp_columns(table: str) -> tuple[str, ...]:
    return tuple(f.name for f in schema_for(table) if pa.types.is_timestamp(f.type))


def _plain(value: Any) -> bool:
    kind = type(value)
    if kind in _PLAIN:
        return True
    if kind is list or kind is tuple:
        return all(type(item) in _PLAIN for item in value)
    return False


def encode_rows(table: str, rows: Sequence[Row]) -> bytes:
    """``rows`` of ``table`` as the bytes of a JSON spool file, read back by ``decode_rows`` to the same values.

    A timestamp column's value is written as its ISO text; every other value must be a ``str``, ``int``,
    ``float``, ``bool`` or ``None`` (exactly those types), or a list or tuple of them.

    Raises:
        NotPlainRows: A value is of any other type (a ``date`` or a NumPy scalar, a ``datetime`` outside a
            timestamp column, a timestamp column holding anything but a ``datetime`` or ``None``): the caller
            spools those rows as Arrow, where they convert, or are set aside, as they always did.
    """
    stamps = _timestamp_columns(table)
    plain: list[Row] = []
    for row in rows:
        if type(row) is not dict:
            raise NotPlainRows(f"a {type(row).__name__} is not a row")
        copy = dict(row)
        for name in stamps:
            value = copy.get(name)
            if value is None:
                continue
            if type(value) is not datetime:
                raise NotPlainRows(f"{name} is a {type(value).__name__}")
            copy[name] = value.isoformat()
        if not _PLAIN.issuperset(map(type, copy.values())):  # (one pass in C for the usual row: scalars only)
            for name, value in copy.items():
                if type(value) not in _PLAIN and not _plain(value):
                    raise NotPlainRows(f"{name} is a {type(value).__name__}")
        plain.append(copy)
    try:
        return _ENCODER.encode(plain).encode("ascii")
    except (TypeError, ValueError) as exc:  # (not reached for the types checked above)
        raise NotPlainRows(str(exc)) from exc


def decode_rows(table: str | pa.Schema, data: bytes) -> list[Row]:
    """The rows of a JSON spool file of ``table`` (its name or schema; ``encode_rows``), timestamp columns as
    ``datetime``.

    Raises:
        ValueError: The file is not a list of rows of this format.
    """
    rows = json.loads(data)
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError("not a list of rows")
    stamps = (
        _timestamp_columns(table)
        if isinstance(table, str)
        else tuple(f.name for f in table if pa.types.is_timestamp(f.type))
    )
    for row in rows:
        for name in stamps:
            value = row.get(name)
            if value is not None:
                row[name] = datetime.fromisoformat(value)
    return rows


def read_rows_file(path: Path, table: str | pa.Schema) -> list[Row]:
    """The rows of a JSON spool file (``Spool.write_rows``) of ``table`` (its name or schema)."""
    with open(path, "rb") as source:
        return decode_rows(table, source.read())


def split_log(data: bytes) -> tuple[list[bytes], bytes]:
    """A log's complete records (each ended by a newline) and what follows the last one: ``b""``, or the
    torn record of a writer that failed or was killed mid-write (its ``write_rows`` never returned: not a
    row that was made safe, so never taken)."""
    *records, tail = data.split(b"\n")
    return [r for r in records if r], tail


def read_log(path: Path, table: str | pa.Schema) -> tuple[list[Row], list[bytes], bytes]:
    """A log's rows (``Spool.write_rows``), its records that do not decode, and its torn tail (``split_log``)."""
    with open(path, "rb") as source:
        records, tail = split_log(source.read())
    rows: list[Row] = []
    bad: list[bytes] = []
    for record in records:
        try:
            rows.extend(decode_rows(table, record))
        except ValueError:
            bad.append(record)
    return rows, bad, tail


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
    """The spool files of one table's directory, processes' logs included (claims and temporaries excluded)."""
    files = [path for path in table_dir.glob("part-*") if path.suffix in _SPOOL_SUFFIXES]
    return files + list(table_dir.glob(f"{LOG_PREFIX}*{LOG_SUFFIX}"))


def read_spool_file(path: Path, suffix: str, schema: pa.Schema) -> pa.Table:
    """A spool file (its kind given by ``suffix``) as ``schema``: a column added since it was written reads as
    nulls. (A drain converts JSON spool files itself, setting aside rows that do not fit; here such a row
    raises.)"""
    if suffix == ROWS_SUFFIX:
        return pa.Table.from_pylist(read_rows_file(path, schema), schema=schema)
    if suffix == LOG_SUFFIX:
        return pa.Table.from_pylist(read_log(path, schema)[0], schema=schema)
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
    """Rows in a spool file, from its metadata (Parquet), its batches (Arrow IPC) or its rows (JSON)."""
    if path.suffix == ROWS_SUFFIX:
        return len(read_rows_file(path, path.parent.name))
    if path.suffix == LOG_SUFFIX:
        return len(read_log(path, path.parent.name)[0])
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


CLAIM_LOCK_TRIES = 200
"""How many times (a millisecond apart) a drainer tries a log's lock, which a writer holds for microseconds."""


def _claim_log(path: Path, claimed: Path) -> bool:
    """Claim a log by renaming it to ``claimed``, holding its lock: a writer appends only holding it, after
    checking that its log still has its name (``Spool.write_rows``), so no record follows the claim.
    ``False``: another drainer took it, or its lock stayed held.

    Raises:
        OSError: The claim could not be made (the log is left as it was).
    """
    import fcntl  # (posix only: a log is only written where the C library's calls are)

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    try:
        for _ in range(CLAIM_LOCK_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.001)
        else:
            return False
        try:
            os.rename(path, claimed)  # fails when another drainer renamed it first (a log's name is never reused)
        except FileNotFoundError:
            return False
        return True
    finally:
        os.close(fd)  # (releases the lock)


class _Log(NamedTuple):
    """A log this process appends to (``Spool.write_rows``)."""

    fd: int
    path: str
    encoded: bytes
    pid: int


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
        self._logs: dict[str, _Log] = {}
        """This process's open log of each table (``write_rows``)."""
        self._logs_lock = threading.Lock()
        reset_in_child(self)

    def _after_fork_in_child(self) -> None:
        """A forked child has its parent's open logs and lock (held, perhaps, by a thread the child does not
        have): it closes its copies (the parent still writes them) and starts with a fresh lock."""
        for log in self._logs.values():
            with contextlib.suppress(OSError):
                os.close(log.fd)
        self._logs = {}
        self._logs_lock = threading.Lock()

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

    def write_rows(self, table: str, rows: Sequence[Row]) -> str:
        """``rows`` as one JSON record (``encode_rows``): a worker's rows, made safe before its task returns.

        On a local disk the record is appended to this process's log of the table (``log-<id>.jsonl``, one
        record a line, opened once): four system calls that change no directory (lock the log, check that no
        drainer claimed it, write, unlock), made holding the GIL (``calls_for``), with no Arrow conversion (the
        drainer converts them). A drainer claims a log under the same lock (``_claim``): a record is in the
        log before the claim, and taken with it, or goes into a new log, never both. Where the log cannot be
        used (a drainer holds its lock this moment, a network filesystem) the record is one file of its own,
        written under a temporary name and renamed (create, write, close, rename). Returns the path written.

        Raises:
            NotPlainRows: A value JSON would not carry exactly (spool those rows with ``write`` instead).
            OSError: The spool cannot be written (nothing that a drainer would take is left behind).
        """
        payload = encode_rows(table, rows)
        calls = calls_for(str(self.directory))
        if isinstance(calls, _LibcFileCalls):
            written = self._append(calls, table, payload)
            if written is not None:
                return written
        return self._write_file(calls, table, payload)

    def _append(self, calls: _LibcFileCalls, table: str, payload: bytes) -> str | None:
        """Append ``payload`` as one record to this process's log of ``table``; ``None``: a drainer holds the
        log's lock (the caller writes a file of its own).

        Raises:
            OSError: The log cannot be made or written (a log written in part is given up: its torn end is
                never taken, and no later record follows it).
        """
        record = payload + b"\n"
        with self._logs_lock:
            pid = os.getpid()
            for _ in range(3):
                log = self._logs.get(table)
                if log is not None and log.pid != pid:  # a forked child's copy of its parent's: it makes its own
                    with contextlib.suppress(OSError):
                        calls.close(log.fd)
                    log = None
                if log is None:
                    log = self._open_log(calls, table, pid)
                if not calls.try_lock(log.fd):
                    return None
                try:
                    if calls.exists(log.encoded):
                        try:
                            calls.write_all(log.fd, record)
                        except BaseException:
                            self._close_log(table)
                            raise
                        return log.path
                finally:
                    if self._logs.get(table) is log:
                        calls.unlock(log.fd)
                self._close_log(table)  # claimed by a drainer: the next record starts a new log
            return None

    def _open_log(self, calls: _LibcFileCalls, table: str, pid: int) -> _Log:
        """A new log of this process's for ``table`` (a new name: ``creat`` never meets another's file; only
        this process writes it, under ``_logs_lock``, so no ``O_APPEND`` is needed)."""
        directory = f"{self.directory}/{table}"
        path = f"{directory}/{LOG_PREFIX}{new_event_id()}{LOG_SUFFIX}"
        try:
            fd = calls.create(path)
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            fd = calls.create(path)
        with contextlib.suppress(OSError):  # the log stays open: a program this process starts must not inherit it
            os.set_inheritable(fd, False)
        log = _Log(fd, path, os.fsencode(path), pid)
        self._logs[table] = log
        return log

    def _close_log(self, table: str) -> None:
        log = self._logs.pop(table, None)
        if log is not None and log.pid == os.getpid():
            with contextlib.suppress(OSError):
                FILE_CALLS.close(log.fd)

    def close(self) -> None:
        """Close this process's logs (their records stay in them, for a drainer)."""
        with self._logs_lock:
            for table in list(self._logs):
                self._close_log(table)

    def _write_file(self, calls: _OsFileCalls | _LibcFileCalls, table: str, payload: bytes) -> str:
        """``payload`` as one spool file of its own (``part-<id>.json``), written whole, then renamed."""
        directory = f"{self.directory}/{table}"
        name = f"part-{new_event_id()}{ROWS_SUFFIX}"
        tmp, final = f"{directory}/.{name}.tmp", f"{directory}/{name}"
        try:
            fd = calls.create(tmp)
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            fd = calls.create(tmp)
        try:
            try:
                calls.write_all(fd, payload)
            finally:
                calls.close(fd)
            calls.rename(tmp, final)  # whole, or not there: a drainer never reads half a file
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
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
                if (
                    spool_files(table_dir)
                    or any(table_dir.glob(".part-*.claim"))
                    or any(table_dir.glob(".log-*.claim"))
                ):
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
            log = path.suffix == LOG_SUFFIX
            if log:  # a writer may append to it still: claimed first, then counted
                claimed = self._claim([path])
                if not claimed:
                    continue
                path = claimed[0][1]
            try:
                rows = len(read_log(path, path.parent.name)[0]) if log else spool_file_rows(path)
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
                parts: list[tuple[Path, Path]] = []
                tables: list[pa.Table] = []
                rows: list[Row] = []  # of the JSON files, converted together
                log_faults: list[tuple[Path, list[bytes], bytes]] = []  # reported once the batch is done with
                for path, claimed in self._claim(batch):
                    try:
                        if path.suffix == ROWS_SUFFIX:
                            rows.extend(read_rows_file(claimed, table_dir.name))
                        elif path.suffix == LOG_SUFFIX:
                            log_rows, bad, tail = read_log(claimed, table_dir.name)
                            rows.extend(log_rows)
                            if bad or tail:
                                log_faults.append((path, bad, tail))
                        else:
                            tables.append(read_spool_file(claimed, path.suffix, schema))
                    except Exception as exc:
                        logger.warning("synthobs: unreadable spool file %s (%s); left in place", path, exc)
                        with contextlib.suppress(OSError):
                            claimed.rename(path.with_suffix(".bad"))
                        continue
                    parts.append((path, claimed))
                if not parts:
                    continue
                rejected: list[tuple[Row, str]] = []
                if rows:
                    converted, rejected = rows_to_arrow(table_dir.name, rows)
                    tables.append(converted)
                data = pa.concat_tables(tables) if tables else pa.table({})  # (only logs with no complete record)
                if data.num_rows and not write(table_dir.name, data):
                    for path, claimed in parts:
                        claimed.rename(path)
                    return written
                if rejected:  # once their file is done with (a refused write reads them again)
                    self.set_aside(table_dir.name, rejected, data.num_rows)
                for path, bad, tail in log_faults:  # likewise: once
                    self._report_log_faults(path, bad, tail)
                for _, claimed in parts:
                    claimed.unlink(missing_ok=True)
                written += data.num_rows
        return written

    def set_aside(self, table: str, rejected: list[tuple[Row, str]], written: int) -> None:
        """Rows that do not fit ``table``'s column types, each with why: kept in ``_rejected/<table>.jsonl``
        (``keep_rejected``), one warning; ``written`` the other rows of their batch (they are written)."""
        try:
            kept = f"kept in {self.keep_rejected(table, rejected)}"
        except OSError as exc:
            kept = f"and could not be kept ({exc})"
        logger.warning(
            "synthobs: %d %s row(s) do not fit the table's column types (%s); %s. The other %d row(s) are written.",
            len(rejected),
            table,
            rejected[0][1],
            kept,
            written,
        )

    def _recover_claims(self, table_dir: Path) -> None:
        """Give back the files of ``table_dir`` claimed longer than ``lease`` ago (their drainer died); remove
        the temporary files of writers killed mid-write, once as old (never renamed: no row was safe in them)."""
        now = time.time()
        for tmp in table_dir.glob(".part-*.tmp"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > self.lease:
                    tmp.unlink()
        for claim in [*table_dir.glob(".part-*.claim"), *table_dir.glob(".log-*.claim")]:
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
                if path.suffix == LOG_SUFFIX:
                    if not _claim_log(path, claimed):
                        continue
                else:
                    path.rename(claimed)
                os.utime(claimed)  # the claim's age starts now (its lease)
            except OSError:
                continue
            claims.append((path, claimed))
        return claims

    @staticmethod
    def _report_log_faults(path: Path, bad: list[bytes], tail: bytes) -> None:
        """A drained log's records that do not decode are kept beside it (``<name>.bad``), its torn end is left
        out (it was never made safe: its writer failed or was killed mid-write), one warning each."""
        if bad:
            kept = path.with_name(f"{path.name}.bad")
            with contextlib.suppress(OSError), open(kept, "ab") as out:
                out.write(b"".join(record + b"\n" for record in bad))
            logger.warning("synthobs: %d unreadable record(s) in spool log %s; kept in %s", len(bad), path, kept)
        if tail:
            logger.warning(
                "synthobs: spool log %s ends in a record its writer never finished (%d bytes; the writer failed or "
                "was killed while writing it, so it never reported those rows safe); left out",
                path,
                len(tail),
            )
