"""The recorder: bounded store writes, the spool and the store breaker."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import task_rows
from prefect_synthobs.health.recorder import Recorder, StoreBreaker, StoreTimeout, adopt_unkeyed_spool, call_bounded
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.health.tables import schema_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StuckStore(HealthStore):
    """A real local store whose writes hang until ``release`` is set."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.release = threading.Event()
        self.writes = 0

    def write(self, table: str, rows: Any) -> list[str]:
        self.writes += 1
        self.release.wait(60)
        return super().write(table, rows)


def test_breaker_backs_off_doubling_up_to_the_cap() -> None:
    clock = Clock()
    breaker = StoreBreaker(base=5, cap=30, clock=clock)
    assert breaker.allows(background=False) and breaker.seconds_to_retry() is None
    waits = []
    for _ in range(5):
        breaker.failed()
        waits.append(breaker.seconds_to_retry())
    assert waits == [5, 10, 20, 30, 30]
    assert not breaker.allows(background=False) and not breaker.allows(background=True)
    clock.now += 30
    assert breaker.allows(background=True) and not breaker.allows(background=False)
    breaker.succeeded()
    assert breaker.allows(background=False) and not breaker.is_open


def test_call_bounded_returns_raises_and_gives_up_after_the_timeout() -> None:
    assert call_bounded(lambda: 7, 5.0) == 7
    with pytest.raises(ZeroDivisionError):
        call_bounded(lambda: 1 / 0, 5.0)
    release = threading.Event()
    with pytest.raises(StoreTimeout, match=r"0\.2 s"):
        call_bounded(lambda: release.wait(60), 0.2)
    release.set()


def test_a_stuck_store_costs_one_timeout_then_flushes_spool_until_a_background_retry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = StuckStore(str(tmp_path / "store"))
    clock = Clock()
    recorder = Recorder(lambda: store, tmp_path / "spool", store_timeout=0.2, breaker=StoreBreaker(clock=clock))

    recorder.add("task_runs", task_rows(3))
    assert recorder.flush() == 0  # the write hung: given up after the timeout, rows spooled
    assert store.writes == 1 and recorder.breaker.is_open
    assert len(recorder.spooled_files()) == 1
    assert "store_timeout_seconds" in caplog.text

    recorder.add("task_runs", task_rows(2, start=3))
    assert recorder.flush() == 0  # the store is skipped: not even tried
    assert store.writes == 1 and len(recorder.spooled_files()) == 2

    clock.now += 4.9
    assert recorder.flush(background=True) == 0  # the backoff (5 s) has not passed
    assert store.writes == 1

    store.release.set()  # the store answers again (the hung write lands too)
    clock.now += 0.1
    assert recorder.flush(background=True) == 5  # the retry drains the spool
    assert not recorder.breaker.is_open and recorder.spooled_files() == []
    table = store.read("task_runs")  # the late write duplicated 3 rows; read drops them by event_id
    assert sorted(table.task_run_id) == [f"t{i}" for i in range(5)]


def test_an_empty_spool_retry_probes_the_store(tmp_path: Path) -> None:
    clock = Clock()
    store = HealthStore(str(tmp_path / "store"))
    breaker = StoreBreaker(clock=clock)
    recorder = Recorder(lambda: store, tmp_path / "spool", store_timeout=5, breaker=breaker)
    breaker.failed()
    clock.now += 5
    assert recorder.flush(background=True) == 0
    assert not breaker.is_open


def test_a_flush_with_nothing_to_write_opens_no_store_and_starts_no_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exit flush of a process that wrote everything: Python 3.12.1 refuses new threads at interpreter
    exit, and opening the store (a bounded call, on a thread) there warned of a store fault that never was."""
    opened = []

    def factory() -> HealthStore:
        opened.append(1)
        return HealthStore(str(tmp_path / "store"))

    import prefect_synthobs.health.recorder as recorder_module

    bounded: list[str] = []  # every bounded call starts a thread: count them (not active_count, which other
    real_call_bounded = recorder_module.call_bounded  # tests' daemon threads change on a loaded worker)

    def counting(fn: Any, timeout: float, *, name: str = "synthobs-store-write") -> Any:
        bounded.append(name)
        return real_call_bounded(fn, timeout, name=name)

    monkeypatch.setattr(recorder_module, "call_bounded", counting)
    recorder = Recorder(factory, tmp_path / "spool", store_timeout=5)
    assert recorder.flush() == 0
    assert opened == [] and bounded == []
    recorder.add("task_runs", task_rows(1))
    assert recorder.flush() == 1 and opened == [1]
    assert recorder.flush() == 0 and opened == [1]
    # what no drain acts on does not count: kept rejected rows, an unreadable spool file, a foreign folder
    recorder.spool.keep_rejected("task_runs", [({"task_run_id": "x"}, "bad type")])
    (tmp_path / "spool" / "task_runs").mkdir(parents=True, exist_ok=True)
    (tmp_path / "spool" / "task_runs" / "part-x.bad").write_bytes(b"not parquet")
    (tmp_path / "spool" / "notes").mkdir()
    (tmp_path / "spool" / "notes" / "readme.txt").write_text("x")
    assert recorder.spool.is_empty()
    assert recorder.flush() == 0 and recorder.flush() == 0 and opened == [1]
    # a claim left by a drainer counts: it is given back after its lease, then written
    (tmp_path / "spool" / "task_runs" / ".part-y.parquet.0123.claim").write_bytes(b"")
    assert not recorder.spool.is_empty()


def test_a_store_that_cannot_be_opened_opens_the_breaker(tmp_path: Path) -> None:
    opened = []

    def factory() -> HealthStore:
        opened.append(1)
        raise OSError("no credentials")

    recorder = Recorder(factory, tmp_path / "spool", store_timeout=5)
    recorder.add("task_runs", task_rows(1))
    recorder.flush()
    recorder.add("task_runs", task_rows(1, start=1))
    recorder.flush()
    assert len(opened) == 1 and len(recorder.spooled_files()) == 2
    data = pa.concat_tables([pq.read_table(p) for p in recorder.spooled_files()])
    assert sorted(data.column("task_run_id").to_pylist()) == ["t0", "t1"]


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
def test_flush_soon_writes_long_before_the_interval_and_gathers_rows_into_one_file(tmp_path: Path) -> None:
    store = HealthStore(str(tmp_path / "store"))
    # a long linger: the three adds below fall inside it however loaded the machine is
    recorder = Recorder(lambda: store, tmp_path / "spool", flush_interval=3600, store_timeout=5, linger=5)
    recorder.start()
    try:
        for row in task_rows(3):  # three tasks ending one after the other, each asking for a flush
            recorder.add("task_runs", row)
            recorder.flush_soon()
        deadline = threading.Event()
        for _ in range(600):  # an hour-long interval: only flush_soon can have written them
            if store.count("task_runs") == 3:
                break
            deadline.wait(0.1)
        assert store.count("task_runs") == 3
        assert len(list((tmp_path / "store").rglob("*.parquet"))) == 1  # one file for the three
    finally:
        recorder.stop(flush=False)
    assert recorder._thread is None


def test_spool_now_puts_rows_on_disk_without_the_store_and_the_flusher_merges_them(tmp_path: Path) -> None:
    """A worker's task end: its rows reach local disk on the caller's thread, the store is not asked."""
    store = StuckStore(str(tmp_path / "store"))  # a store that hangs: spool_now must not wait for it
    opened: list[int] = []
    recorder = Recorder(
        lambda: opened.append(1) or store,  # type: ignore[func-returns-value]
        tmp_path / "spool",
        flush_interval=3600,
        store_timeout=5,
    )
    for row in task_rows(3):  # three tasks, each spooled as it ends
        recorder.add("task_runs", row)
        recorder.spool_now()
    assert recorder.pending() == 0 and not opened and store.writes == 0
    # JSON (this process's log, or a file each where the log cannot be used): no Arrow work on the task's thread
    assert {p.suffix for p in recorder.spooled_files()} <= {".json", ".jsonl"} and recorder.spool.rows() == 3
    store.release.set()
    assert recorder.flush() == 3  # the drain merges what was spooled into one write
    assert store.writes == 1 and store.count("task_runs") == 3
    assert len(list((tmp_path / "store").rglob("*.parquet"))) == 1 and not recorder.spooled_files()


def test_a_refused_merged_drain_puts_every_file_back(tmp_path: Path) -> None:
    class RefusingStore(HealthStore):
        def write(self, table: str, rows: Any) -> list[str]:
            raise OSError("no space left on device")

    recorder = Recorder(lambda: RefusingStore(str(tmp_path / "store")), tmp_path / "spool", store_timeout=5)
    for row in task_rows(2):
        recorder.add("task_runs", row)
        recorder.spool_now()
    before = sorted(p.name for p in recorder.spooled_files())
    assert recorder.flush() == 0
    assert sorted(p.name for p in recorder.spooled_files()) == before  # both back, no claim left behind
    assert not list((tmp_path / "spool").rglob("*.claim"))


def test_spool_now_keeps_rows_in_memory_when_the_spool_cannot_be_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "spool"
    blocked.write_text("a file where the spool directory should be")
    store = HealthStore(str(tmp_path / "store"))
    recorder = Recorder(lambda: store, blocked, store_timeout=5)
    for row in task_rows(2):
        recorder.add("task_runs", row)
        recorder.spool_now()
    assert recorder.pending() == 2  # nothing lost: the flusher writes them from memory
    assert len([r for r in caplog.records if "cannot spool rows" in r.getMessage()]) == 1  # one warning
    assert recorder.flush() == 2 and store.count("task_runs") == 2


def test_a_spool_file_written_before_a_column_was_added_reads_it_as_nulls(tmp_path: Path) -> None:
    store = HealthStore(str(tmp_path / "store"))
    recorder = Recorder(lambda: store, tmp_path / "spool", store_timeout=5)
    old = pa.Table.from_pylist(task_rows(1), schema=schema_for("task_runs")).drop_columns(["rows", "source"])
    recorder.spool.write("task_runs", old, arrow=True)  # as an older version wrote it
    recorder.add("task_runs", task_rows(1, start=1))
    recorder.spool_now()
    assert recorder.flush() == 2
    rows = store.read("task_runs").sort_values("task_run_id")
    assert rows["rows"].isna().tolist() == [True, False]


def test_spool_files_of_the_layout_before_per_store_spools_are_adopted_once(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    old = Recorder(lambda: HealthStore(str(tmp_path / "store")), root, store_timeout=5)  # as before: the root
    old._spool("task_runs", pa.Table.from_pylist(task_rows(2), schema=schema_for("task_runs")), [])
    (root / "_rejected").mkdir()  # not a table: left alone
    keyed = root / "store-0123456789ab"
    assert adopt_unkeyed_spool(root, keyed) == 1 and adopt_unkeyed_spool(root, keyed) == 0
    store = HealthStore(str(tmp_path / "store"))
    assert Recorder(lambda: store, keyed, store_timeout=5).flush() == 2 and store.count("task_runs") == 2
    assert (root / "_rejected").is_dir()


def test_the_flusher_keeps_spool_now_files_within_the_bound_while_the_store_refuses(tmp_path: Path) -> None:
    class RefusingStore(HealthStore):
        def write(self, table: str, rows: Any) -> list[str]:
            raise OSError("read-only file system")

    dropped: list[tuple[str, int]] = []
    recorder = Recorder(
        lambda: RefusingStore(str(tmp_path / "store")),
        tmp_path / "spool",
        flush_interval=3600,
        store_timeout=5,
        spool_max_bytes=1,  # below one file: only the newest can stay... and it goes too
        on_dropped=lambda table, rows: dropped.append((table, rows)),
        linger=0.05,
    )
    recorder.start()
    try:
        for row in task_rows(3):
            recorder.add("task_runs", row)
            recorder.spool_now()  # on disk at once, and the flusher is woken
        waited = threading.Event()
        for _ in range(600):  # the flusher was woken by spool_now; the store refuses, the bound applies
            if not recorder.spooled_files():
                break
            waited.wait(0.1)
    finally:
        recorder.stop(flush=False)
    assert recorder.spooled_files() == [] and sum(rows for _, rows in dropped) == 3


def test_adopting_an_unreadable_old_spool_leaves_it_and_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "spool"
    for table in ("task_runs", "flow_runs"):
        (root / table).mkdir(parents=True)
        (root / table / "part-x.parquet").write_bytes(b"")
    unreadable = root / "task_runs"
    real_is_dir = Path.is_dir

    def is_dir(self: Path) -> bool:
        if self == unreadable:  # as a directory without read permission answers (root ignores chmod)
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_dir(self)

    monkeypatch.setattr(Path, "is_dir", is_dir)
    keyed = root / "store-0123456789ab"
    assert adopt_unkeyed_spool(root, keyed) == 1  # the readable table moved, the other left, nothing raised
    assert (unreadable / "part-x.parquet").exists() and (keyed / "flow_runs" / "part-x.parquet").exists()
