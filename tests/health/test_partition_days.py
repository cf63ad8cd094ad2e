"""``partition_days``: every row's partition is its time's UTC day (today for a row without a time), in any unit."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_synthobs import catalog
from prefect_synthobs.health import tables
from prefect_synthobs.health.files import partition_days

TIME_COLUMN = tables.table(catalog.TASK_RUNS).time_column

instants = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2262, 4, 10), timezones=st.sampled_from([timezone.utc])
).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))  # milliseconds: exact in every unit but "s"
zones = st.sampled_from([None, timezone.utc, timezone(timedelta(hours=-11)), timezone(timedelta(hours=13, minutes=45))])


def expected(times: list[datetime | None]) -> list[date]:
    today = datetime.now(timezone.utc).date()
    return [t.astimezone(timezone.utc).date() if t is not None else today for t in times]


@settings(max_examples=300, deadline=None)
@given(
    times=st.lists(st.none() | instants, min_size=1, max_size=12),
    unit=st.sampled_from(["s", "ms", "us", "ns"]),
    zone=zones,
)
def test_each_row_goes_to_its_times_utc_day_in_any_unit_and_zone(
    times: list[datetime | None], unit: str, zone: timezone | None
) -> None:
    if unit == "s":
        times = [t.replace(microsecond=0) if t is not None else None for t in times]
    # the same instants shown in another zone (or none, taken as UTC) keep their UTC day
    shown = [
        (t.astimezone(zone) if zone is not None else t.replace(tzinfo=None)) if t is not None else None for t in times
    ]
    kind = pa.timestamp(unit, tz=str(zone) if zone is not None and zone is not timezone.utc else None)
    if zone is timezone.utc:
        kind = pa.timestamp(unit, tz="UTC")
    if zone is not None and zone is not timezone.utc:
        offset = zone.utcoffset(None)
        assert offset is not None
        sign = "-" if offset < timedelta(0) else "+"
        minutes = abs(int(offset.total_seconds())) // 60
        kind = pa.timestamp(unit, tz=f"{sign}{minutes // 60:02d}:{minutes % 60:02d}")
    data = pa.table({TIME_COLUMN: pa.array(shown, type=kind)})
    days = partition_days(catalog.TASK_RUNS, data)
    want = expected(times)
    if len(set(want)) == 1:
        assert days == want[0].isoformat()
    else:
        assert isinstance(days, pa.Array)
        assert days.to_pylist() == want


def test_a_table_without_times_goes_to_today() -> None:
    data = pa.table({TIME_COLUMN: pa.array([None, None], type=pa.timestamp("us", tz="UTC"))})
    assert partition_days(catalog.TASK_RUNS, data) == datetime.now(timezone.utc).date().isoformat()


def test_rows_on_two_days_split_at_utc_midnight() -> None:
    before = datetime(2026, 12, 4, 23, 59, 59, 999999, tzinfo=timezone.utc)
    data = pa.table(
        {TIME_COLUMN: pa.array([before, before + timedelta(microseconds=1)], type=pa.timestamp("us", tz="UTC"))}
    )
    days = partition_days(catalog.TASK_RUNS, data)
    assert isinstance(days, pa.Array) and days.to_pylist() == [date(2026, 12, 4), date(2026, 12, 5)]
