"""The spool (``health/spool.py``) on its own: files written whole, claims, leases, the bound and draining.

No store and no server: the store write is a function the test passes to ``Spool.drain``, as the recorder
passes its bounded, breaker-checked write.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from conftest import task_rows
from prefect_synthobs.health import spool as spool_module
from prefect_synthobs.health.spool import REJECTED, Spool, adopt_unkeyed_spool, read_spool_file, rows_to_arrow
from prefect_synthobs.health.tables import schema_for

TABLE = "task_runs"
SCHEMA = schema_for(TABLE)


def rows(n: int, start: int = 0) -> pa.Table:
    return pa.Table.from_pylist(task_rows(n, start), schema=SCHEMA)


def ids(data: pa.Table) -> list[str]:
    return [str(i) for i in data.column("task_run_id").to_pylist()]


class Store:
    """What the store took, and what it answers next (``True``: takes the rows)."""

    def __init__(self, answers: list[bool] | None = None) -> None:
        self.taken: list[tuple[str, list[str]]] = []
        self.answers = answers

    def write(self, table: str, data: pa.Table) -> bool:
        take = self.answers.pop(0) if self.answers else self.answers is None
        if take:
            self.taken.append((table, ids(data)))
        return take

    def ids(self) -> list[str]:
        return [i for _, batch in self.taken for i in batch]


def new_spool(directory: Path, *, max_bytes: int = 1 << 30, lease: float = 60.0) -> tuple[Spool, list[Any]]:
    dropped: list[tuple[str, int]] = []
    return Spool(directory, max_bytes=max_bytes, lease=lease, on_dropped=lambda t, n: dropped.append((t, n))), dropped


def claims(directory: Path) -> list[Path]:
    return sorted(directory.rglob(".part-*.claim"))


def test_a_spool_file_is_written_whole_and_counted(tmp_path: Path) -> None:
    spool, _ = new_spool(tmp_path / "spool")
    assert spool.files() == [] and spool.rows() == 0  # no directory yet: nothing, no error
    parquet = spool.write(TABLE, rows(3))
    arrow = spool.write(TABLE, rows(2, start=3), arrow=True)
    assert spool.files() == sorted([parquet, arrow]) and {parquet.suffix, arrow.suffix} == {".parquet", ".arrow"}
    assert parquet.parent == tmp_path / "spool" / TABLE and spool.rows() == 5
    assert not list((tmp_path / "spool").rglob(".*.tmp"))  # the temporary was renamed into place
    assert ids(read_spool_file(arrow, ".arrow", SCHEMA)) == ["t3", "t4"]


def test_a_drain_merges_a_tables_files_into_one_write_and_removes_them(tmp_path: Path) -> None:
    spool, _ = new_spool(tmp_path / "spool")
    for n in range(3):
        spool.write(TABLE, rows(2, start=2 * n), arrow=True)
    store = Store()
    assert spool.drain(store.write) == 6
    assert [table for table, _ in store.taken] == [TABLE] and sorted(store.ids()) == [f"t{i}" for i in range(6)]
    assert spool.files() == [] and claims(tmp_path) == []


def test_a_refused_write_ends_the_drain_with_every_file_given_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool, _ = new_spool(tmp_path / "spool")
    written = {spool.write(TABLE, rows(2, start=2 * n), arrow=n == 1): [f"t{2 * n}", f"t{2 * n + 1}"] for n in range(3)}
    monkeypatch.setattr(spool_module, "DRAIN_BATCH_BYTES", 1)  # one file a write, in name order
    taken, refused, untried = sorted(written)
    store = Store(answers=[True, False])
    assert spool.drain(store.write) == 2  # the first taken, the second refused: the drain ends there
    assert store.taken == [(TABLE, written[taken])]
    assert spool.files() == [refused, untried] and claims(tmp_path) == []  # same names, no claim left behind
    assert spool.drain(Store(answers=[False]).write) == 0 and spool.files() == [refused, untried]


def test_batches_stay_within_the_drain_batch_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool, _ = new_spool(tmp_path / "spool")
    for n in range(5):
        spool.write(TABLE, rows(1, start=n))
    size = max(p.stat().st_size for p in spool.files())
    monkeypatch.setattr(spool_module, "DRAIN_BATCH_BYTES", 2 * size)  # two files a write
    store = Store()
    assert spool.drain(store.write) == 5
    assert [len(batch) for _, batch in store.taken] == [2, 2, 1]


def test_a_claim_past_its_lease_is_given_back_and_a_fresh_one_is_left_to_its_drainer(tmp_path: Path) -> None:
    spool, _ = new_spool(tmp_path / "spool", lease=60)
    stale, fresh = spool.write(TABLE, rows(2)), spool.write(TABLE, rows(3, start=2))
    stale_claim = stale.with_name(f".{stale.name}.0123.claim")
    fresh_claim = fresh.with_name(f".{fresh.name}.4567.claim")
    stale.rename(stale_claim)
    fresh.rename(fresh_claim)
    old = time.time() - 61
    os.utime(stale_claim, (old, old))  # its drainer was killed a minute ago
    store = Store()
    assert spool.drain(store.write) == 2 and store.ids() == ["t0", "t1"]
    assert claims(tmp_path) == [fresh_claim]  # still another drainer's


def test_an_unreadable_spool_file_is_set_aside_and_the_others_drained(tmp_path: Path) -> None:
    spool, _ = new_spool(tmp_path / "spool")
    spool.write(TABLE, rows(2))
    broken = tmp_path / "spool" / TABLE / "part-broken.parquet"
    broken.write_bytes(b"half a file")
    store = Store()
    assert spool.drain(store.write) == 2
    assert (tmp_path / "spool" / TABLE / "part-broken.bad").exists() and spool.files() == []


def test_the_bound_drops_the_oldest_files_first_and_reports_each(tmp_path: Path) -> None:
    spool, dropped = new_spool(tmp_path / "spool")
    paths = [spool.write(TABLE, rows(n + 1, start=10 * n)) for n in range(4)]
    for age, path in enumerate(reversed(paths)):  # distinct modification times: the first written is oldest
        stamp = time.time() - 100 * (age + 1)
        os.utime(path, (stamp, stamp))
    sizes = [p.stat().st_size for p in paths]
    spool.max_bytes = sizes[2] + sizes[3]  # room for the two newest
    spool.limit()
    assert spool.files() == sorted(paths[2:]) and dropped == [(TABLE, 1), (TABLE, 2)]


def test_a_failing_drop_callback_never_stops_the_bound(tmp_path: Path) -> None:
    def broken(table: str, n: int) -> None:
        raise RuntimeError("metrics are down")

    spool = Spool(tmp_path / "spool", max_bytes=0, lease=60, on_dropped=broken)
    spool.write(TABLE, rows(1))
    spool.write(TABLE, rows(1, start=1))
    spool.limit()
    assert spool.files() == []


def test_rows_that_do_not_fit_are_split_off_with_why_and_kept_as_json_lines(tmp_path: Path) -> None:
    good = task_rows(2)
    bad = {**task_rows(1, start=2)[0], "run_count": "three"}
    data, rejected = rows_to_arrow(TABLE, [good[0], bad, good[1]])
    assert ids(data) == ["t0", "t1"] and len(rejected) == 1 and rejected[0][0] is bad
    assert "run_count" in rejected[0][1] or "three" in rejected[0][1] or rejected[0][1].startswith("Arrow")
    spool, _ = new_spool(tmp_path / "spool")
    path = spool.keep_rejected(TABLE, rejected)
    spool.keep_rejected(TABLE, rejected)  # appended, not replaced
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert path == tmp_path / "spool" / REJECTED / f"{TABLE}.jsonl" and len(lines) == 2
    assert lines[0]["row"]["run_count"] == "three" and lines[0]["table"] == TABLE
    assert spool.drain(Store().write) == 0  # _rejected is not a table: never drained


def test_old_layout_files_are_adopted_into_the_stores_spool(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    old, _ = new_spool(root)
    old.write(TABLE, rows(2))
    keyed = root / "store-0123456789ab"
    assert adopt_unkeyed_spool(root, keyed) == 1 and adopt_unkeyed_spool(root, keyed) == 0
    assert new_spool(keyed)[0].rows() == 2


class Killed(BaseException):
    """The drainer's process is killed while it holds its claims."""


class SpoolInterleavings(RuleBasedStateMachine):
    """Two drainers (processes of one host) share a spool; rows are spooled, drained, refused, interrupted by
    the other drainer, and a drainer is killed holding claims. After every step each row is in exactly one
    place, the store or the spool (claims included): none lost, none doubled."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="synthobs-spool-"))
        self.drainers = [new_spool(self.directory)[0], new_spool(self.directory)[0]]
        self.store: list[str] = []
        self.expected: set[str] = set()
        self.left_by_killed: set[Path] = set()
        self.next_id = 0

    def _spool_rows(self, drainer: int, n: int, arrow: bool) -> None:
        data = rows(n, start=self.next_id)
        self.next_id += n
        self.drainers[drainer].write(TABLE, data, arrow=arrow)
        self.expected |= set(ids(data))

    def _writer(self, drainer: int, script: list[str]) -> Any:
        def write(table: str, data: pa.Table) -> bool:
            step = script.pop(0) if script else "take"
            if step == "kill":
                raise Killed
            if step == "refuse":
                return False
            if step == "other drains meanwhile":
                self.drainers[1 - drainer].drain(self._writer(1 - drainer, []))
            elif step == "rows spooled meanwhile":
                self._spool_rows(1 - drainer, 2, arrow=True)
            self.store.extend(ids(data))
            return True

        return write

    @rule(drainer=st.integers(0, 1), n=st.integers(1, 4), arrow=st.booleans())
    def spool(self, drainer: int, n: int, arrow: bool) -> None:
        self._spool_rows(drainer, n, arrow)

    @rule(
        drainer=st.integers(0, 1),
        script=st.lists(
            st.sampled_from(["take", "refuse", "kill", "other drains meanwhile", "rows spooled meanwhile"]),
            max_size=3,
        ),
        batch_bytes=st.sampled_from([1, 1 << 26]),
    )
    def drain(self, drainer: int, script: list[str], batch_bytes: int) -> None:
        spool_module.DRAIN_BATCH_BYTES, saved = batch_bytes, spool_module.DRAIN_BATCH_BYTES  # 1: a file a write
        try:
            self.drainers[drainer].drain(self._writer(drainer, script))
        except Killed:
            self.left_by_killed |= set(claims(self.directory))  # they stay on disk until their lease has passed
        finally:
            spool_module.DRAIN_BATCH_BYTES = saved

    @rule()
    def leases_pass(self) -> None:
        old = time.time() - 3600
        for claim in claims(self.directory):
            os.utime(claim, (old, old))

    def in_spool(self) -> list[str]:
        found = []
        for path in [*self.drainers[0].files(), *claims(self.directory)]:
            suffix = Path(path.name[1:].rsplit(".", 2)[0]).suffix if path.name.endswith(".claim") else path.suffix
            found += ids(read_spool_file(path, suffix, SCHEMA))
        return found

    @invariant()
    def every_row_is_in_one_place_once(self) -> None:
        places = self.store + self.in_spool()
        assert sorted(places) == sorted(self.expected), "a row was lost or doubled"

    @invariant()
    def only_a_killed_drainer_leaves_claims(self) -> None:
        """A drain that ended (the store took the rows, or refused them) gave back or removed every claim."""
        assert set(claims(self.directory)) <= self.left_by_killed

    def teardown(self) -> None:
        try:
            self.leases_pass()
            self.drainers[0].drain(self._writer(0, []))
            assert sorted(self.store) == sorted(self.expected) and self.drainers[0].files() == []
            assert claims(self.directory) == []
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


SpoolInterleavings.TestCase.settings = settings(
    max_examples=80, stateful_step_count=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_no_row_is_lost_or_doubled_across_spool_claim_and_drain_interleavings = SpoolInterleavings.TestCase


def test_a_written_parquet_spool_file_reads_back_as_the_table(tmp_path: Path) -> None:
    spool, _ = new_spool(tmp_path / "spool")
    path = spool.write(TABLE, rows(2))
    assert pq.read_table(path).schema.equals(SCHEMA) and ids(read_spool_file(path, ".parquet", SCHEMA)) == ["t0", "t1"]
