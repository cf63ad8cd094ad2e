"""A process's append-only spool log (``Spool.write_rows`` on a local disk): one record a task, claimed by a
drainer under the log's lock, so no record is lost or taken twice, whatever the order of appends and drains,
a torn record of a killed writer is never taken, and the JSON files of earlier versions drain with the logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import task_rows
from prefect_synthobs.health import spool as spool_module
from prefect_synthobs.health.spool import LOG_SUFFIX, ROWS_SUFFIX, Spool, encode_rows, split_log

pytestmark = pytest.mark.skipif(
    not isinstance(spool_module.FILE_CALLS, spool_module._LibcFileCalls), reason="logs need the C library's calls"
)

TABLE = "task_runs"


def new_spool(directory: Path) -> Spool:
    spool = Spool(directory, max_bytes=1 << 30, lease=60.0, on_dropped=lambda t, n: None)
    spool_module.filesystem_type.cache_clear()
    return spool


class Store:
    def __init__(self, take: bool = True) -> None:
        self.take = take
        self.ids: list[str] = []

    def write(self, table: str, data: pa.Table) -> bool:
        if self.take:
            self.ids += [str(i) for i in data.column("task_run_id").to_pylist()]
        return self.take


def logs(directory: Path) -> list[Path]:
    return sorted((directory / TABLE).glob(f"log-*{LOG_SUFFIX}"))


ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 3)),
        st.tuples(st.just("drain"), st.booleans()),  # the store takes the rows, or refuses them
        st.tuples(st.just("file"), st.integers(1, 2)),  # a JSON file of an earlier version
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_appends_and_drains_in_any_order_take_every_row_exactly_once(tmp_path: Path, steps: list[Any]) -> None:
    directory = tmp_path / f"spool-{os.urandom(6).hex()}"
    spool = new_spool(directory)
    store = Store()
    written = 0
    for op, arg in steps:
        if op == "write":
            path = spool.write_rows(TABLE, task_rows(arg, start=written))
            assert path.endswith(LOG_SUFFIX)
            written += arg
        elif op == "file":
            (directory / TABLE).mkdir(parents=True, exist_ok=True)
            data = encode_rows(TABLE, task_rows(arg, start=written))
            (directory / TABLE / f"part-old{written}{ROWS_SUFFIX}").write_bytes(data)
            written += arg
        elif arg:
            spool.drain(store.write)
        else:
            assert spool.drain(Store(take=False).write) == 0
    assert spool.rows() == written - len(store.ids)
    spool.drain(store.write)
    assert sorted(store.ids) == sorted(f"t{i}" for i in range(written))
    assert spool.is_empty()


def test_a_drain_in_another_thread_while_a_writer_appends_loses_and_doubles_nothing(tmp_path: Path) -> None:
    spool = new_spool(tmp_path / "spool")
    store = Store()
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            spool.drain(store.write)

    drainer = threading.Thread(target=drain)
    drainer.start()
    try:
        for i in range(400):
            spool.write_rows(TABLE, task_rows(1, start=i))
    finally:
        done.set()
        drainer.join()
    spool.drain(store.write)
    assert sorted(store.ids) == sorted(f"t{i}" for i in range(400))


WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from conftest import task_rows
from prefect_synthobs.health.spool import Spool
spool = Spool(Path({spool!r}), max_bytes=1 << 30, lease=60.0, on_dropped=lambda t, n: None)
for i in range({n}):
    spool.write_rows("task_runs", task_rows(1, start=i))
    print(i, flush=True)  # acknowledged: its row is safe
"""


def _writer(tmp_path: Path, n: int) -> subprocess.Popen[str]:
    code = WRITER.format(tests=str(Path(__file__).parents[1]), spool=str(tmp_path / "spool"), n=n)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_a_drainer_in_another_process_takes_each_acknowledged_record_once(tmp_path: Path) -> None:
    spool = new_spool(tmp_path / "spool")
    store = Store()
    writer = _writer(tmp_path, 300)
    while writer.poll() is None:
        spool.drain(store.write)
    assert writer.returncode == 0
    acknowledged = len(writer.stdout.read().split()) if writer.stdout else 0
    spool.drain(store.write)
    assert acknowledged == 300 and sorted(store.ids) == sorted(f"t{i}" for i in range(300))


def test_a_killed_writer_s_acknowledged_rows_are_taken_and_its_torn_record_is_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = _writer(tmp_path, 100_000)
    assert writer.stdout is not None
    acknowledged = [writer.stdout.readline() for _ in range(50)]
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    (log,) = logs(tmp_path / "spool")
    with open(log, "ab") as out:  # what a write cut short would leave
        out.write(b'[{"task_run_id":"torn"')
    store = Store()
    new_spool(tmp_path / "spool").drain(store.write)
    ids = set(store.ids)
    assert len(ids) == len(store.ids) and "torn" not in ids
    assert {f"t{int(line)}" for line in acknowledged} <= ids
    assert any("never finished" in r.getMessage() for r in caplog.records)
    assert new_spool(tmp_path / "spool").is_empty()


def test_a_write_that_fails_gives_up_its_log_and_leaves_no_row_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = new_spool(tmp_path / "spool")
    spool.write_rows(TABLE, task_rows(1))
    calls = spool_module.FILE_CALLS
    assert isinstance(calls, spool_module._LibcFileCalls)
    original = calls.write_all

    def torn(fd: int, data: bytes) -> None:
        original(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(calls, "write_all", torn)
    with pytest.raises(OSError):
        spool.write_rows(TABLE, task_rows(1, start=1))  # the caller keeps these rows (the recorder does)
    monkeypatch.setattr(calls, "write_all", original)
    spool.write_rows(TABLE, task_rows(1, start=2))
    assert len(logs(tmp_path / "spool")) == 2  # a new log after the torn one
    store = Store()
    assert spool.drain(store.write) == 2 and sorted(store.ids) == ["t0", "t2"]


def test_a_log_held_by_a_drainer_this_moment_falls_back_to_a_file_of_its_own(tmp_path: Path) -> None:
    import fcntl

    spool = new_spool(tmp_path / "spool")
    (log,) = {Path(spool.write_rows(TABLE, task_rows(1)))}
    fd = os.open(log, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert spool.write_rows(TABLE, task_rows(1, start=1)).endswith(ROWS_SUFFIX)
    finally:
        os.close(fd)
    assert spool.write_rows(TABLE, task_rows(1, start=2)) == str(log)
    store = Store()
    assert spool.drain(store.write) == 3 and sorted(store.ids) == ["t0", "t1", "t2"]


def test_a_forked_child_appends_to_a_log_of_its_own(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    spool = new_spool(tmp_path / "spool")
    parent_log = spool.write_rows(TABLE, task_rows(1))
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            ok = spool.write_rows(TABLE, task_rows(1, start=1)) != parent_log
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    spool.write_rows(TABLE, task_rows(1, start=2))
    assert len(logs(tmp_path / "spool")) == 2
    store = Store()
    assert spool.drain(store.write) == 3 and sorted(store.ids) == ["t0", "t1", "t2"]


@given(
    st.lists(st.binary(min_size=1).filter(lambda b: b"\n" not in b), max_size=6),
    st.binary().filter(lambda b: b"\n" not in b),
)
def test_a_log_splits_into_its_complete_records_and_a_torn_end(records: list[bytes], tail: bytes) -> None:
    data = b"".join(r + b"\n" for r in records) + tail
    assert split_log(data) == (records, tail)


def test_unreadable_records_are_kept_aside_and_the_others_taken(tmp_path: Path) -> None:
    spool = new_spool(tmp_path / "spool")
    log = Path(spool.write_rows(TABLE, task_rows(1)))
    with open(log, "ab") as out:
        out.write(b"not json\n")
    spool.close()
    with open(log, "ab") as out:
        out.write(json.dumps([{"task_run_id": "t9"}]).encode() + b"\n")
    store = Store()
    assert spool.drain(store.write) == 2 and sorted(store.ids) == ["t0", "t9"]
    assert (log.parent / f"{log.name}.bad").read_bytes() == b"not json\n"


@pytest.mark.parametrize(
    ("content", "bad"),
    [(b"", False), (b'[{"task_run_id": "torn', False), (b"not json\n", True)],
    ids=["empty", "torn only", "unreadable only"],
)
def test_a_log_with_no_complete_record_drains_to_nothing_and_leaves_no_claim(
    tmp_path: Path, content: bytes, bad: bool
) -> None:
    """A log a failed first append left empty, one a drainer claimed before its first record, or one whose only
    record is torn or unreadable: the drain takes nothing, raises nothing and gives no claim back."""
    spool = new_spool(tmp_path / "spool")
    (tmp_path / "spool" / TABLE).mkdir(parents=True)
    log = tmp_path / "spool" / TABLE / f"log-x{LOG_SUFFIX}"
    log.write_bytes(content)
    store = Store()
    assert spool.drain(store.write) == 0 and store.ids == []
    left = sorted(p.name for p in (tmp_path / "spool" / TABLE).iterdir())
    assert left == ([f"{log.name}.bad"] if bad else [])
    assert spool.is_empty()


def test_a_log_beside_an_empty_one_is_taken_once(tmp_path: Path) -> None:
    spool = new_spool(tmp_path / "spool")
    spool.write_rows(TABLE, task_rows(2))
    (tmp_path / "spool" / TABLE / f"log-empty{LOG_SUFFIX}").write_bytes(b"")
    store = Store()
    assert spool.drain(store.write) == 2 and sorted(store.ids) == ["t0", "t1"] and spool.is_empty()


def test_unreadable_records_and_a_torn_end_are_reported_once_when_the_store_first_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = new_spool(tmp_path / "spool")
    log = Path(spool.write_rows(TABLE, task_rows(1)))
    spool.close()
    with open(log, "ab") as out:
        out.write(b"not json\n" + b'[{"task_run_id": "torn')
    for _ in range(2):
        assert spool.drain(Store(take=False).write) == 0
    assert not (log.parent / f"{log.name}.bad").exists()
    assert not [r for r in caplog.records if "spool log" in r.getMessage()]
    store = Store()
    assert spool.drain(store.write) == 1 and store.ids == ["t0"]
    assert (log.parent / f"{log.name}.bad").read_bytes() == b"not json\n"
    assert len([r for r in caplog.records if "unreadable record" in r.getMessage()]) == 1
    assert len([r for r in caplog.records if "never finished" in r.getMessage()]) == 1


def test_a_child_forked_while_another_thread_holds_the_log_lock_still_writes(tmp_path: Path) -> None:
    """The lock ``write_rows`` takes may be held by a thread the forked child does not have: the child starts
    with a fresh lock and a log of its own, and never hangs."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    spool = new_spool(tmp_path / "spool")
    spool.write_rows(TABLE, task_rows(1))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with spool._logs_lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            signal.alarm(5)  # a hang ends the child with SIGALRM, failing the test
            try:
                spool.write_rows(TABLE, task_rows(1, start=1))
            finally:
                os._exit(0)
    finally:
        release.set()
        holder.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store = Store()
    assert spool.drain(store.write) == 2 and sorted(store.ids) == ["t0", "t1"]


def test_a_log_is_not_inherited_by_programs_the_process_starts(tmp_path: Path) -> None:
    spool = new_spool(tmp_path / "spool")
    spool.write_rows(TABLE, task_rows(1))
    (log,) = spool._logs.values()
    assert not os.get_inheritable(log.fd)
