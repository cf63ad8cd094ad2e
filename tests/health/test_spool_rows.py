"""A worker's per-task spool file as JSON (``Spool.write_rows``): the same rows as the Arrow path, drained
with every other spool file, and the Arrow path for any value JSON would not carry exactly."""

from __future__ import annotations

import json
import os
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import task_rows
from prefect_synthobs.health import spool as spool_module
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.spool import (
    LOG_SUFFIX,
    REJECTED,
    ROWS_SUFFIX,
    NotPlainRows,
    Spool,
    decode_rows,
    encode_rows,
    read_spool_file,
    rows_to_arrow,
    spool_file_rows,
)
from prefect_synthobs.health.tables import schema_for

TABLE = "task_runs"
SCHEMA = schema_for(TABLE)

CALLS: list[Any] = [spool_module._OsFileCalls()]
if os.name == "posix":
    CALLS.append(spool_module._LibcFileCalls())


def new_spool(directory: Path, lease: float = 60.0) -> Spool:
    return Spool(directory, max_bytes=1 << 30, lease=lease, on_dropped=lambda t, n: None)


class Store:
    def __init__(self, take: bool = True) -> None:
        self.take = take
        self.tables: list[pa.Table] = []

    def write(self, table: str, data: pa.Table) -> bool:
        if self.take:
            self.tables.append(data)
        return self.take


texts = st.text(max_size=20)  # any code point, lone surrogates included
times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.sampled_from([timezone.utc])
)
values: dict[str, st.SearchStrategy[Any]] = {
    "task_run_id": texts,
    "flow_run_id": st.none() | texts,
    "task_name": texts,
    "state_name": st.none() | texts,
    "start_time": st.none() | times,
    "end_time": st.none() | times,
    "duration_s": st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70),
    "run_count": st.integers(-(2**70), 2**70) | st.floats() | st.booleans(),
    "tags": st.lists(texts, max_size=3) | st.tuples(texts) | st.none(),
}


def arrow_of(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The table, and the rows set aside as ``_rejected`` keeps them."""
    data, rejected = rows_to_arrow(TABLE, rows)
    return data.to_pylist(), [json.dumps(row, default=str) for row, _ in rejected]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries({}, optional=values), min_size=1, max_size=4))
def test_json_rows_convert_exactly_as_the_rows_they_were(rows: list[dict[str, Any]]) -> None:
    """What the drainer converts from the file is what converting the rows themselves gives: the same
    table, and the same rows set aside (by value: JSON keeps int and float apart, NaN, big ints, surrogates)."""
    back = decode_rows(TABLE, encode_rows(TABLE, rows))
    assert repr(arrow_of(back)) == repr(arrow_of(rows))  # (repr: NaN equals NaN)


@pytest.mark.parametrize(
    "value",
    [
        ("start_time", date(2026, 1, 1)),  # not exactly a datetime in a timestamp column
        ("start_time", "2026-01-01T00:00:00+00:00"),  # a text there would read back as a time
        ("task_name", datetime(2026, 1, 1, tzinfo=timezone.utc)),  # a datetime outside one
        ("run_count", Decimal(1)),
        ("tags", [b"bytes"]),
        ("duration_s", timedelta(seconds=1)),
    ],
)
def test_values_json_would_not_carry_exactly_take_the_arrow_path(tmp_path: Path, value: tuple[str, Any]) -> None:
    row = {**task_rows(1)[0], value[0]: value[1]}
    with pytest.raises(NotPlainRows):
        encode_rows(TABLE, [row])
    recorder = Recorder(lambda: None, tmp_path / "spool")  # type: ignore[arg-type,return-value]
    other = task_rows(1, start=1)[0]
    recorder.add(TABLE, [row, other])
    recorder.spool_now()
    files = recorder.spooled_files()
    assert [p.suffix for p in files] == [".arrow"]  # as before: converted here, a misfit set aside here
    data, rejected = rows_to_arrow(TABLE, [row, other])
    assert read_spool_file(files[0], ".arrow", SCHEMA).to_pylist() == data.to_pylist()
    assert (tmp_path / "spool" / REJECTED / f"{TABLE}.jsonl").exists() == bool(rejected)


@pytest.mark.parametrize("calls", CALLS, ids=lambda c: type(c).__name__)
def test_a_task_s_rows_are_one_json_file_drained_with_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: Any
) -> None:
    monkeypatch.setattr(spool_module, "FILE_CALLS", calls)
    spool = new_spool(tmp_path / "spool")  # its directory is made on the first write
    batches = [task_rows(2, start=2 * i) for i in range(3)]
    written = [spool.write_rows(TABLE, batch) for batch in batches]
    spool.write(TABLE, pa.Table.from_pylist(task_rows(1, start=6), schema=SCHEMA), arrow=True)
    if calls.held_gil:  # one log of this process's, a record a line
        suffix, files = LOG_SUFFIX, 2
        assert len(set(written)) == 1 and spool_file_rows(Path(written[0])) == 6
        assert (
            read_spool_file(Path(written[0]), suffix, SCHEMA)
            == rows_to_arrow(TABLE, [r for b in batches for r in b])[0]
        )
    else:  # a file each
        suffix, files = ROWS_SUFFIX, 4
        assert spool_file_rows(Path(written[0])) == 2
        assert read_spool_file(Path(written[0]), suffix, SCHEMA) == rows_to_arrow(TABLE, batches[0])[0]
    assert all(p.endswith(suffix) for p in written) and len(spool.files()) == files
    assert not list((tmp_path / "spool" / TABLE).glob(".*"))  # no temporary left
    assert spool.rows() == 7
    refused = Store(take=False)
    assert spool.drain(refused.write) == 0 and len(spool.files()) == files  # given back, whole
    store = Store()
    assert spool.drain(store.write) == 7 and spool.files() == [] and spool.is_empty()
    (data,) = store.tables  # one store write for them all
    assert sorted(data.column("task_run_id").to_pylist()) == [f"t{i}" for i in range(7)]
    assert data.schema == SCHEMA


@pytest.mark.parametrize("calls", CALLS, ids=lambda c: type(c).__name__)
def test_a_spool_that_cannot_be_written_raises_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: Any
) -> None:
    monkeypatch.setattr(spool_module, "FILE_CALLS", calls)
    (tmp_path / "spool").write_text("a file where the spool should be")
    with pytest.raises(OSError):
        new_spool(tmp_path / "spool").write_rows(TABLE, task_rows(1))
    spool = new_spool(tmp_path / "ok")
    spool.write_rows(TABLE, task_rows(1))
    (tmp_path / "ok" / TABLE).chmod(0o500)
    try:
        if os.geteuid() != 0:  # root writes anyway
            with pytest.raises(PermissionError):
                spool.write_rows(TABLE, task_rows(1))
    finally:
        (tmp_path / "ok" / TABLE).chmod(0o700)
    assert len(spool.files()) == 1 and not list((tmp_path / "ok" / TABLE).glob(".*"))


def test_rows_that_do_not_fit_are_set_aside_when_drained_and_only_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = {**task_rows(1, start=9)[0], "run_count": "three"}  # JSON carries it; Arrow refuses it
    spool = new_spool(tmp_path / "spool")
    spool.write_rows(TABLE, [*task_rows(2), bad])
    assert spool.drain(Store(take=False).write) == 0
    assert not (tmp_path / "spool" / REJECTED).exists()  # read again next time: not kept twice
    store = Store()
    assert spool.drain(store.write) == 2
    kept = (tmp_path / "spool" / REJECTED / f"{TABLE}.jsonl").read_text().splitlines()
    assert len(kept) == 1 and '"three"' in kept[0]
    assert any("do not fit" in r.getMessage() for r in caplog.records)


def test_an_unreadable_json_file_is_set_aside_and_the_others_drained(tmp_path: Path) -> None:
    spool = new_spool(tmp_path / "spool")
    spool.write_rows(TABLE, task_rows(1))
    (tmp_path / "spool" / TABLE / f"part-broken{ROWS_SUFFIX}").write_text('[{"task_run_id": ')
    store = Store()
    assert spool.drain(store.write) == 1
    assert [p.name for p in (tmp_path / "spool" / TABLE).iterdir()] == ["part-broken.bad"]


def test_temporaries_of_killed_writers_go_after_the_lease(tmp_path: Path) -> None:
    spool = new_spool(tmp_path / "spool", lease=60)
    spool.write_rows(TABLE, task_rows(1))
    directory = tmp_path / "spool" / TABLE
    old, young = directory / f".part-old{ROWS_SUFFIX}.tmp", directory / f".part-young{ROWS_SUFFIX}.tmp"
    old.write_text("[")
    young.write_text("[")
    os.utime(old, (time.time() - 120, time.time() - 120))
    assert spool.drain(Store().write) == 1
    assert not old.exists() and young.exists()  # a live writer's is left alone


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 3), min_size=1, max_size=8))
def test_spool_now_keeps_every_row_exactly_once(tmp_path: Path, batches: list[int]) -> None:
    directory = tmp_path / f"spool-{time.monotonic_ns()}"
    recorder = Recorder(lambda: None, directory)  # type: ignore[arg-type,return-value]
    start = 0
    for n in batches:
        recorder.add(TABLE, task_rows(n, start=start))
        recorder.spool_now()
        start += n
    assert recorder.pending() == 0 and all(p.suffix in (ROWS_SUFFIX, LOG_SUFFIX) for p in recorder.spooled_files())
    store = Store()
    assert recorder.spool.drain(store.write) == start
    taken = [i for data in store.tables for i in data.column("task_run_id").to_pylist()]
    assert sorted(taken) == sorted(f"t{i}" for i in range(start))


MOUNTINFO = r"""22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:45 / /data rw,relatime shared:20 - nfs4 server:/export rw,vers=4.2
41 40 0:46 / /data/local\040disk rw - xfs /dev/vdb rw
42 22 0:47 / /home/me/remote rw,nosuid - fuse.sshfs me@host: rw
"""


@pytest.mark.parametrize(
    ("directory", "kind"),
    [
        ("/tmp/spool", "ext4"),
        ("/data", "nfs4"),
        ("/data/spool/orders", "nfs4"),
        ("/data/local disk/spool", "xfs"),  # a local disk mounted inside the network one
        ("/datastore", "ext4"),  # a name that only starts like a mount point is not inside it
        ("/home/me/remote/spool", "fuse.sshfs"),
    ],
)
def test_the_filesystem_of_a_spool_directory_is_its_longest_mount(tmp_path: Path, directory: str, kind: str) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(MOUNTINFO)
    assert spool_module.filesystem_type(directory, str(mountinfo)) == kind


@pytest.mark.parametrize(("kind", "holds_gil"), [("ext4", True), ("nfs4", False), ("fuse.sshfs", False), (None, True)])
def test_spool_calls_never_hold_the_gil_on_a_filesystem_that_may_hang(
    monkeypatch: pytest.MonkeyPatch, kind: str | None, holds_gil: bool
) -> None:
    """A write that hangs on a server gone while holding the GIL would stop every thread of the process."""
    if not any(c.held_gil for c in CALLS):
        pytest.skip("this platform has no C library calls to hold the GIL with; os calls are used everywhere")
    monkeypatch.setattr(spool_module, "FILE_CALLS", next(c for c in CALLS if c.held_gil))
    monkeypatch.setattr(spool_module, "filesystem_type", lambda directory: kind)
    assert spool_module.calls_for("/anywhere").held_gil is holds_gil
