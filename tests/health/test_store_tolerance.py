"""The store reads what other writers put in it: timestamps of any unit and zone, castable column types,
extra and missing columns; a file that cannot be cast is skipped with one warning and quarantined by compact;
a path holding no store says so."""

from __future__ import annotations

import logging
import tempfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import task_rows, warnings_with
from prefect_synthobs.cli import main
from prefect_synthobs.health.store import QUARANTINE, HealthStore, cast_column, never_castable
from prefect_synthobs.health.tables import schema_for

TABLE = "task_runs"
SCHEMA = schema_for(TABLE)
DAY = datetime(2026, 1, 5, tzinfo=timezone.utc)
UNITS = ("s", "ms", "us", "ns")
ZONES = (None, "UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "+05:30", "Pacific/Chatham")
SKIPPED = "skipping unreadable health-store file"


def good_rows(n: int, start: int, micros: list[int]) -> pa.Table:
    """``n`` task rows with the table's types, started ``micros[i]`` µs after 12:00 on ``DAY`` (ids unique)."""
    rows = task_rows(n, start, when=DAY + timedelta(hours=12))
    for i, row in enumerate(rows):
        row["start_time"] = row["end_time"] = DAY + timedelta(hours=12, microseconds=micros[i % len(micros)])
        row["rows"] = None if i % 3 == 2 else 10 * (start + i)
        row["duration_s"] = 0.5 * (start + i)
        row["tags"] = ["a", f"t{start + i}"]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def with_times(data: pa.Table, unit: str, zone: str | None, nanos: int) -> tuple[pa.Table, pa.Table]:
    """(``data`` with its times in ``unit`` and ``zone`` (naive: the UTC wall clock), what a reader should get)."""
    expected = data
    for name in ("start_time", "end_time"):
        index = data.schema.get_field_index(name)
        values = data[name]
        if unit == "ns":
            raw = pc.add(pc.multiply(values.cast(pa.int64()), 1000), nanos)  # sub-µs digits a reader truncates
            stored = raw.cast(pa.timestamp("ns", tz="UTC"))
        else:
            stored = pc.cast(values, pa.timestamp(unit, tz="UTC"), safe=False)  # a coarser writer truncates
            expected = expected.set_column(index, name, stored.cast(SCHEMA.field(name).type))
        stored = stored.cast(pa.timestamp(stored.type.unit, tz=zone)) if zone else stored.cast(pa.timestamp(unit))
        data = data.set_column(index, name, stored)
    return data, expected


def castable_variant(data: pa.Table, choice: str) -> pa.Table:
    """``data`` with one column stored the way another writer might: still castable to the table's type."""

    def swap(name: str, values: Any) -> pa.Table:
        return data.set_column(data.schema.get_field_index(name), name, values)

    if choice == "int32":
        return swap("rows", data["rows"].cast(pa.int32()))
    if choice == "float rows":  # pandas: an integer column with nulls is float with NaN
        return swap("rows", pa.array(data["rows"].to_pandas().astype("float64"), from_pandas=False))
    if choice == "float32":
        return swap("duration_s", data["duration_s"].cast(pa.float32()))
    if choice == "large_string":
        return swap("task_name", data["task_name"].cast(pa.large_string()))
    if choice == "dictionary":
        return swap("flow_name", pc.dictionary_encode(data["flow_name"]))
    if choice == "large_list":
        return swap("tags", data["tags"].cast(pa.large_list(pa.large_string())))
    if choice == "extra column":
        return data.append_column("spark_partition_id", pa.array(range(data.num_rows), pa.int16()))
    if choice == "missing column":
        return data.drop_columns(["error_type", "tags"])
    if choice == "rows as text":
        return swap("rows", data["rows"].cast(pa.string()))
    return data


CASTABLE = (
    "none",
    "int32",
    "float rows",
    "float32",
    "large_string",
    "dictionary",
    "large_list",
    "extra column",
    "missing column",
    "rows as text",
)


def uncastable(data: pa.Table, choice: str) -> pa.Table | bytes:
    """``data`` with a column no reader can cast (or bytes that are not Parquet)."""

    def swap(name: str, values: Any) -> pa.Table:
        return data.set_column(data.schema.get_field_index(name), name, values)

    n = data.num_rows
    if choice == "rows as words":
        return swap("rows", pa.array(["abc"] * n))
    if choice == "duration as struct":
        return swap("duration_s", pa.array([{"seconds": 1.0}] * n))
    if choice == "name as list":
        return swap("task_name", pa.array([["a", "b"]] * n))
    if choice == "time as number":
        return swap("start_time", pa.array([1_700_000_000] * n, pa.int64()))
    if choice == "tags as text":
        return swap("tags", pa.array(["a,b"] * n))
    return b"" if choice == "empty" else b"PAR1 not parquet at all"


UNCASTABLE = (
    "rows as words",
    "duration as struct",
    "name as list",
    "time as number",
    "tags as text",
    "empty",
    "garbage",
)


def write_foreign(path: Path, data: pa.Table, writer: str) -> None:
    """Write ``data`` to ``path`` the way ``writer`` would."""
    if writer == "int96":  # Spark's legacy timestamps
        pq.write_table(data, path, use_deprecated_int96_timestamps=True)
    elif writer == "coerce ms":
        pq.write_table(data, path, coerce_timestamps="ms", allow_truncated_timestamps=True)
    elif writer == "pandas":
        data.to_pandas().to_parquet(path, index=False)
    else:
        pq.write_table(data, path)


def expected_after(writer: str, data: pa.Table, expected: pa.Table) -> pa.Table:
    """What a reader gets when ``writer`` truncated the times further (``coerce ms``)."""
    if writer != "coerce ms":
        return expected
    for name in ("start_time", "end_time"):
        index = expected.schema.get_field_index(name)
        ms = pc.cast(expected[name], pa.timestamp("ms", tz="UTC"), safe=False)
        expected = expected.set_column(index, name, ms.cast(SCHEMA.field(name).type))
    return expected


file_spec = st.fixed_dictionaries(
    {
        "n": st.integers(1, 5),
        "unit": st.sampled_from(UNITS),
        "zone": st.sampled_from(ZONES),
        "writer": st.sampled_from(("pyarrow", "int96", "coerce ms", "pandas")),
        "castable": st.sampled_from(CASTABLE),
        "bad": st.one_of(st.none(), st.none(), st.sampled_from(UNCASTABLE)),
        "micros": st.lists(st.integers(0, 3_600_000_000), min_size=1, max_size=5),
        "nanos": st.integers(0, 999),
    }
)


def build_store(root: Path, specs: list[dict[str, Any]]) -> tuple[HealthStore, pa.Table, list[Path]]:
    """A store with one file of our own and one file per spec: (store, the rows a reader must get, bad files)."""
    store = HealthStore(str(root))
    own = good_rows(2, 1000, [1])
    (written,) = store.write(TABLE, own)
    directory = Path(written).parent
    expected_parts, bad = [own], []
    start = 0
    for number, spec in enumerate(specs):
        data = good_rows(spec["n"], start, spec["micros"])
        start += spec["n"]
        path = directory / f"part-foreign-{number}.parquet"
        if spec["bad"] is not None:
            broken = uncastable(data, spec["bad"])
            if isinstance(broken, bytes):
                path.write_bytes(broken)
            else:
                pq.write_table(broken, path)
            bad.append(path)
            continue
        stored, expected = with_times(data, spec["unit"], spec["zone"], spec["nanos"])
        write_foreign(path, castable_variant(stored, spec["castable"]), spec["writer"])
        if spec["castable"] == "missing column":
            expected = expected.set_column(
                expected.schema.get_field_index("error_type"), "error_type", pa.nulls(spec["n"], pa.string())
            )
            expected = expected.set_column(
                expected.schema.get_field_index("tags"), "tags", pa.nulls(spec["n"], SCHEMA.field("tags").type)
            )
        expected_parts.append(expected_after(spec["writer"], stored, expected))
    return store, pa.concat_tables(expected_parts), bad


def assert_same_rows(frame: pd.DataFrame, expected: pa.Table) -> None:
    """``frame`` (from ``read``) holds exactly ``expected``'s rows, times equal as UTC instants."""
    want = expected.to_pandas().sort_values("event_id", ignore_index=True)
    got = frame.sort_values("event_id", ignore_index=True)
    assert list(got.event_id) == list(want.event_id)
    for name in ("start_time", "end_time"):
        assert str(got[name].dtype) == "datetime64[us, UTC]"
        assert list(got[name]) == list(want[name]), name
    assert got.rows.isna().tolist() == want.rows.isna().tolist()
    assert got.rows.dropna().astype(int).tolist() == want.rows.dropna().astype(int).tolist()
    assert got.duration_s.tolist() == want.duration_s.tolist()
    for name in ("task_run_id", "task_name", "flow_name", "error_type", "run_count"):
        assert got[name].tolist() == want[name].tolist(), name
    assert [None if t is None else list(t) for t in got.tags] == [None if t is None else list(t) for t in want.tags]


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(file_spec, min_size=1, max_size=6))
def test_read_returns_every_castable_row_and_skips_each_bad_file_with_one_warning(
    specs: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store, expected, bad = build_store(Path(tmp) / "store", specs)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="prefect.synthobs.store"):
            assert_same_rows(store.read(TABLE), expected)
            since = store.read(TABLE, since=DAY + timedelta(hours=12, minutes=30), until=DAY + timedelta(days=1))
            cut = pd.Timestamp(DAY + timedelta(hours=12, minutes=30))
            assert sorted(since.event_id) == sorted(
                e
                for e, t in zip(expected["event_id"].to_pylist(), expected["start_time"].to_pylist(), strict=True)
                if t >= cut
            )
            narrow = store.read(TABLE, columns=["task_run_id", "start_time"], since=DAY.date())
            assert sorted(narrow.task_run_id) == sorted(expected["task_run_id"].to_pylist())
        skipped = warnings_with(caplog, SKIPPED)
        assert len(skipped) == len(bad)  # one warning per bad file, not one per read
        for path in bad:
            assert sum(str(path) in r.getMessage() for r in skipped) == 1
        assert sorted(store.unreadable_files(TABLE)) == sorted(str(p) for p in bad)

        stats = HealthStore(store.url).compact(TABLE, before=DAY.date() + timedelta(days=1))
        assert stats["quarantined"] == len(bad)
        quarantine = Path(store.url) / QUARANTINE / TABLE / "date=2026-01-05"
        assert sorted(p.name for p in quarantine.glob("*")) == sorted(p.name for p in bad)
        files = list((Path(store.url) / TABLE).rglob("*.parquet"))
        assert len(files) == 1 and pq.read_schema(files[0]).equals(SCHEMA)  # one file, the table's own types
        on_disk = pq.read_table(files[0])["event_id"].to_pylist()
        assert sorted(on_disk) == sorted(expected["event_id"].to_pylist())  # every good row once
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="prefect.synthobs.store"):
            assert_same_rows(HealthStore(store.url).read(TABLE), expected)
        assert warnings_with(caplog, SKIPPED) == []


@pytest.mark.parametrize("zone", [None, "UTC", "Europe/Paris"])
@pytest.mark.parametrize("unit", ["ns", "us"])
def test_files_pandas_writes_are_read_and_filtered_by_time(
    tmp_path: Path, unit: Literal["ns", "us"], zone: str | None
) -> None:
    store = HealthStore(str(tmp_path / "store"))
    (written,) = store.write(TABLE, good_rows(2, 0, [0, 1]))
    frame = store.read(TABLE).drop(columns="date")
    frame["event_id"] = ["p0", "p1"]
    frame["task_run_id"] = ["pandas0", "pandas1"]
    times = pd.to_datetime(["2026-01-05 13:00:00.123456789", "2026-01-05 14:00:00.000000999"], utc=True)
    times = times.as_unit(unit)
    times = times.tz_convert(zone) if zone else times.tz_localize(None)  # naive: the UTC wall clock
    frame["start_time"] = frame["end_time"] = times
    frame.to_parquet(Path(written).parent / "part-pandas.parquet")  # a frame saved by pandas itself

    since = store.read(TABLE, since=datetime(2026, 1, 5, 13, tzinfo=timezone.utc))
    assert sorted(since.task_run_id) == ["pandas0", "pandas1"]
    got = since.sort_values("task_run_id").start_time.tolist()
    assert got == [pd.Timestamp("2026-01-05 13:00:00.123456", tz="UTC"), pd.Timestamp("2026-01-05 14:00:00", tz="UTC")]
    assert len(store.read(TABLE)) == 4
    assert len(store.read(TABLE, until=datetime(2026, 1, 5, 13, 30, tzinfo=timezone.utc))) == 3


def test_the_report_reads_a_store_holding_spark_and_pandas_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = HealthStore(str(tmp_path / "store"))
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = task_rows(3, 0, when=today + timedelta(minutes=1))
    (written,) = store.write(TABLE, rows)
    data = pq.read_table(written)
    data = data.set_column(0, "event_id", pa.array(["s0", "s1", "s2"]))
    data = data.set_column(data.schema.get_field_index("task_run_id"), "task_run_id", pa.array(["x0", "x1", "x2"]))
    pq.write_table(data, Path(written).parent / "part-spark.parquet", use_deprecated_int96_timestamps=True)
    zoned = data.set_column(0, "event_id", pa.array(["z0", "z1", "z2"]))
    for name in ("start_time", "end_time"):
        zoned = zoned.set_column(
            zoned.schema.get_field_index(name), name, zoned[name].cast(pa.timestamp("ns", tz="Asia/Tokyo"))
        )
    pq.write_table(
        zoned.set_column(1, "task_run_id", pa.array(["z0", "z1", "z2"])), Path(written).parent / "part-zoned.parquet"
    )
    assert main(["report", "--store", store.url, "--since", "1d", "--json"]) == 0
    assert len(store.read(TABLE, since=today.date())) == 9


def test_cast_rules_judged_from_types_alone() -> None:
    ts = pa.timestamp("us", tz="UTC")
    assert not never_castable(pa.timestamp("ns", tz="Europe/Paris"), ts)
    assert not never_castable(pa.timestamp("ms"), ts) and not never_castable(pa.string(), ts)
    assert never_castable(pa.int64(), ts) and never_castable(pa.float64(), ts)
    assert never_castable(pa.struct([("a", pa.float64())]), pa.float64())
    assert never_castable(pa.list_(pa.string()), pa.string()) and never_castable(pa.string(), pa.list_(pa.string()))
    assert not never_castable(pa.dictionary(pa.int32(), pa.string()), pa.string())
    assert not never_castable(pa.null(), pa.list_(pa.string()))
    # naive times are UTC; nanoseconds truncate; text without an offset is UTC
    naive = pa.array([datetime(2026, 1, 5, 12)], pa.timestamp("ns"))
    assert cast_column(naive, ts).to_pylist() == [datetime(2026, 1, 5, 12, tzinfo=timezone.utc)]
    assert cast_column(pa.array(["2026-01-05 12:00:00"]), ts).to_pylist()[0] == datetime(
        2026, 1, 5, 12, tzinfo=timezone.utc
    )
    assert cast_column(pa.array([2.0, float("nan"), None]), pa.int64()).to_pylist() == [2, None, None]


def store_at(kind: str, tmp_path: Path) -> str:
    if kind == "missing":
        return str(tmp_path / "no" / "such" / "dir")
    if kind == "empty directory":
        (tmp_path / "empty").mkdir()
        return str(tmp_path / "empty")
    if kind == "project folder":
        (tmp_path / "project" / "src").mkdir(parents=True)
        (tmp_path / "project" / "README.md").write_text("hello")
        return str(tmp_path / "project")
    (tmp_path / "a-file").write_text("x")
    return str(tmp_path / "a-file")


@pytest.mark.parametrize("kind", ["missing", "empty directory", "project folder", "a file"])
def test_reading_a_path_that_holds_no_store_says_so_once(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = store_at(kind, tmp_path)
    store = HealthStore(url)
    with caplog.at_level(logging.WARNING, logger="prefect.synthobs.store"):
        for table in ("flow_runs", "task_runs", "flow_runs"):
            assert store.read(table).empty
    said = warnings_with(caplog, "no health store at")
    assert len(said) == 1 and url in said[0].getMessage() and "no synthobs table" in said[0].getMessage()


def test_a_store_with_one_table_reads_the_others_silently(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = HealthStore(str(tmp_path / "store"))
    store.write(TABLE, task_rows(1))
    with caplog.at_level(logging.WARNING, logger="prefect.synthobs.store"):
        assert store.read("gpu_samples").empty and len(store.read(TABLE)) == 1
    assert warnings_with(caplog, "no health store") == []


def test_cli_compact_quarantines_a_file_of_uncastable_types(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = HealthStore(str(tmp_path / "store"))
    (written,) = store.write(TABLE, good_rows(3, 0, [0]))
    store.write(TABLE, good_rows(2, 3, [0]))
    bad = Path(written).parent / "part-strings.parquet"
    broken = uncastable(good_rows(2, 5, [0]), "rows as words")
    assert isinstance(broken, pa.Table)
    pq.write_table(broken, bad)
    assert main(["compact", "--store", store.url, "--table", TABLE]) == 0
    out = capsys.readouterr().out
    assert "1 unreadable file(s) moved to _quarantine/" in out and "3 → 1 files" not in out
    assert (tmp_path / "store" / QUARANTINE / TABLE / "date=2026-01-05" / bad.name).exists()
    assert len(HealthStore(store.url).read(TABLE)) == 5


def test_a_lone_file_of_other_types_is_rewritten_with_the_tables_types(tmp_path: Path) -> None:
    store = HealthStore(str(tmp_path / "store"))
    (written,) = store.write(TABLE, good_rows(3, 0, [0, 7]))
    data, expected = with_times(pq.read_table(written), "ns", "Europe/Paris", 5)
    pq.write_table(castable_variant(data, "int32"), written)
    stats = store.compact(TABLE, before=date(2026, 1, 6))
    assert stats["partitions"] == 1 and stats["files_before"] == 1 and stats["rows"] == 3
    (merged,) = (tmp_path / "store" / TABLE).rglob("*.parquet")
    assert pq.read_schema(merged).equals(SCHEMA)
    assert_same_rows(HealthStore(store.url).read(TABLE), expected)
    assert store.compact(TABLE, before=date(2026, 1, 6))["partitions"] == 0  # done once
