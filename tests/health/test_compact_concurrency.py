"""Two compactions at once (threads, and real `synthobs compact` processes): both succeed, and afterwards no
row is lost and none is stored twice."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from test_s3_store import _store as _s3_store
from test_s3_store import s3_server as moto_server  # noqa: F401 (the moto server fixture)

from conftest import subprocess_env, task_rows
from prefect_synthobs.health.store import QUARANTINE, HealthStore

TABLE = "task_runs"
TODAY = datetime.now(timezone.utc).date()


def filled(root: Path, days: int = 4, files_per_day: int = 4, rows_per_file: int = 5) -> tuple[HealthStore, set[str]]:
    """A store with closed days of several files each (some rows written twice, a file of another writer's
    time type, a file that is not Parquet): (store, the event ids a reader must see)."""
    store = HealthStore(str(root))
    ids: set[str] = set()
    start = 0
    for back in range(1, days + 1):
        day = TODAY - timedelta(days=back)
        when = datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc)
        for number in range(files_per_day):
            rows = task_rows(rows_per_file, start, when=when)
            start += rows_per_file
            (path,) = store.write(TABLE, rows)
            ids |= {r["event_id"] for r in rows}
            if number == 0:
                store.write(TABLE, rows[:2])  # a row written twice (a late flush): one copy stays
        foreign = pq.read_table(path)
        foreign = foreign.set_column(0, "event_id", pa.array([f"ns-{back}-{i}" for i in range(foreign.num_rows)]))
        run_ids = pa.array([f"ns-{back}-{i}" for i in range(foreign.num_rows)])
        foreign = foreign.set_column(foreign.schema.get_field_index("task_run_id"), "task_run_id", run_ids)
        index = foreign.schema.get_field_index("start_time")
        foreign = foreign.set_column(
            index, "start_time", foreign["start_time"].cast(pa.timestamp("ns", "Europe/Paris"))
        )
        pq.write_table(foreign, Path(path).parent / "part-pandas.parquet")
        ids |= set(foreign["event_id"].to_pylist())
        (Path(path).parent / "part-broken.parquet").write_bytes(b"not parquet")
    return store, ids


def event_ids_on_disk(root: Path) -> list[str]:
    """Every ``event_id`` in every data file of the table (repeats kept), quarantine excluded."""
    ids: list[str] = []
    for path in sorted((root / TABLE).rglob("*.parquet")):
        if not path.name.startswith((".", "_")):
            ids += pq.read_table(path, columns=["event_id"])["event_id"].to_pylist()
    return ids


def assert_every_row_once(root: Path, expected: set[str], days: int = 4) -> None:
    on_disk = event_ids_on_disk(root)
    assert len(on_disk) == len(set(on_disk)), "a row is stored twice"
    assert set(on_disk) == expected, "a row was lost"
    assert len(HealthStore(str(root)).read(TABLE)) == len(expected)
    for day in HealthStore(str(root)).partitions(TABLE):
        assert len(list((root / TABLE / f"date={day}").glob("*.parquet"))) == 1, day
    assert len(list((root / QUARANTINE / TABLE).rglob("part-broken.parquet"))) == days  # each moved once, kept


STEPS = (
    ("_files", "partition_files"),
    ("_scanner", "scan"),
    ("_files", "write_file"),
    ("_compactor", "quarantine_file"),
    ("_scanner", "inspect"),
)
"""Each step of a compaction: ``(the store's part that takes it, its method)``."""


def jittered(store: HealthStore, rng: random.Random) -> HealthStore:
    """``store`` with a random pause (0-4 ms) before each step of a compaction, so two interleave differently."""
    for part, name in STEPS:
        owner = getattr(store, part)
        original: Callable[..., Any] = getattr(owner, name)

        def paused(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            time.sleep(rng.random() * 0.004)
            return _original(*args, **kwargs)

        setattr(owner, name, paused)
    return store


@pytest.mark.parametrize("seed", range(8))
def test_two_compactions_in_threads_lose_and_double_nothing(tmp_path: Path, seed: int) -> None:
    root = tmp_path / "store"
    _, expected = filled(root)
    rng = random.Random(seed)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    stats: list[dict[str, int]] = []

    def compact() -> None:
        store = jittered(HealthStore(str(root)), random.Random(rng.random()))
        barrier.wait()
        try:
            stats.append(store.compact(TABLE, before=TODAY))
        except BaseException as exc:  # any error in either compaction fails the test
            errors.append(exc)

    threads = [threading.Thread(target=compact) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(s["quarantined"] for s in stats) == 4  # each bad file moved by one of them
    assert_every_row_once(root, expected)


@pytest.mark.parametrize("step", [("_scanner", "scan"), ("_files", "write_file")])
def test_a_compaction_beside_a_late_write_and_another_compaction_keeps_every_row_once(
    tmp_path: Path, step: tuple[str, str]
) -> None:
    """Between this compaction's reading (or its check that its files are still there) and its writing, a
    late row lands in the partition and another compaction merges everything: the two merged files of
    overlapping rows end as one."""
    root = tmp_path / "store"
    store, expected = filled(root, days=1)
    day = TODAY - timedelta(days=1)
    late = task_rows(3, 900, when=datetime(day.year, day.month, day.day, 13, tzinfo=timezone.utc))
    first = HealthStore(str(root))
    owner = getattr(first, step[0])  # the store's part that takes this step of a compaction
    original: Callable[..., Any] = getattr(owner, step[1])
    interrupted: list[bool] = []

    def then_another_compaction(*args: Any, **kwargs: Any) -> Any:
        if not interrupted:
            interrupted.append(True)
            store.write(TABLE, late)
            HealthStore(str(root)).compact(TABLE, before=TODAY)
        return original(*args, **kwargs)

    setattr(owner, step[1], then_another_compaction)
    first.compact(TABLE, before=TODAY)
    assert interrupted
    assert_every_row_once(root, expected | {r["event_id"] for r in late}, days=1)


@pytest.mark.slow
def test_two_synthobs_compact_processes_at_once_exit_0_and_lose_and_double_nothing(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "prefect_synthobs.cli", "compact", "--table", TABLE]
    env = subprocess_env()
    for attempt in range(3):
        root = tmp_path / f"store{attempt}"
        _, expected = filled(root, days=6, files_per_day=6)
        procs = [
            subprocess.Popen(
                [*command, "--store", str(root)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, out[-2000:] + err[-3000:]
        assert_every_row_once(root, expected, days=6)


def test_retention_beside_another_maintenance_run_is_not_an_error(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store, _ = filled(root, days=3)
    other = HealthStore(str(root))
    listed = other.partitions(TABLE)  # the other run listed the days before this one dropped them
    assert store.drop_partitions(TABLE, before=TODAY) == listed
    other._files.partitions = lambda table: listed  # type: ignore[method-assign]  # the listing retention uses
    assert other.drop_partitions(TABLE, before=TODAY) == listed  # already gone: not an error


@pytest.mark.slow
def test_two_compactions_at_once_on_s3_lose_and_double_nothing(moto_server: tuple[Any, str]) -> None:  # noqa: F811
    url, options = _s3_store(moto_server[1])
    store = HealthStore(url, storage_options=options, timeout=10)
    expected: set[str] = set()
    for back in (1, 2):
        day = TODAY - timedelta(days=back)
        when = datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc)
        for number in range(4):
            rows = task_rows(4, 100 * back + 10 * number, when=when)
            (path,) = store.write(TABLE, rows)
            expected |= {r["event_id"] for r in rows}
        foreign = pq.read_table(path, filesystem=store._fs)
        foreign = foreign.set_column(0, "event_id", pa.array([f"ns-{back}-{i}" for i in range(4)]))
        foreign = foreign.set_column(1, "task_run_id", pa.array([f"ns-{back}-{i}" for i in range(4)]))
        index = foreign.schema.get_field_index("start_time")
        foreign = foreign.set_column(index, "start_time", foreign["start_time"].cast(pa.timestamp("ns", "Asia/Tokyo")))
        pq.write_table(foreign, path.rsplit("/", 1)[0] + "/part-spark.parquet", filesystem=store._fs)
        expected |= set(foreign["event_id"].to_pylist())
    for seed in range(3):
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def compact(jitter: int, barrier: threading.Barrier, errors: list[BaseException]) -> None:
            one = jittered(HealthStore(url, storage_options=options, timeout=10), random.Random(jitter))
            barrier.wait()
            try:
                one.compact(TABLE, before=TODAY)
            except BaseException as exc:  # any error in either compaction fails the test
                errors.append(exc)

        threads = [threading.Thread(target=compact, args=(seed * 2 + k, barrier, errors)) for k in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        files = [i.path for i in store._fs.get_file_info(pafs.FileSelector(store.table_path(TABLE), recursive=True))]
        data_files = [f for f in files if f.endswith(".parquet")]
        on_disk = [e for f in data_files for e in pq.read_table(f, filesystem=store._fs)["event_id"].to_pylist()]
        assert len(on_disk) == len(set(on_disk)) and set(on_disk) == expected
        assert len(data_files) == 2  # one per day
        assert len(HealthStore(url, storage_options=options).read(TABLE)) == len(expected)
        store.write(
            TABLE,
            task_rows(
                2, 1000 + 10 * seed, when=datetime.combine(TODAY - timedelta(days=1), datetime.min.time(), timezone.utc)
            ),
        )
        expected |= set(HealthStore(url, storage_options=options).read(TABLE).event_id)
