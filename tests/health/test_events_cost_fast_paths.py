"""The per-task fast paths (issue 27) give what the general paths give: ``as_utc`` without asking a UTC zone
its offset, ``TaskRunEnded.of_fields`` without the dataclass ``__init__``, ``rows_of_many``/``row_of`` reading
an event's ``__dict__`` and cleaning empty values inline, and ``handle_many``'s metrics grouped by raw values."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings

try:  # Prefect's DateTime type before 3.4's stdlib times; newer Prefect installs (Python 3.13) may lack it
    import pendulum
except ImportError:  # pragma: no cover (then stdlib and zoneinfo zones only)
    pendulum = None  # type: ignore[assignment]
from hypothesis import strategies as st
from opentelemetry.trace import SpanContext, TraceFlags
from prometheus_client import CollectorRegistry

from prefect_synthobs.catalog import MAX_ERROR_CHARS
from prefect_synthobs.health import events, rows, tables
from prefect_synthobs.health.events import AttemptError, TaskRunEnded, as_utc
from prefect_synthobs.instrument.recording import Recording
from prefect_synthobs.telemetry.metrics import SynthObsMetrics
from prefect_synthobs.telemetry.redaction import clean_error_message, redact


def _as_utc_general(value: datetime | None) -> datetime | None:
    """``as_utc`` as it was before its fast path: every aware value asked its offset."""
    if value is None:
        return None
    if value.__class__ is datetime and value.tzinfo is timezone.utc:
        return value
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(timezone.utc)
    return datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond,
        tzinfo=timezone.utc,
    )  # fmt: skip


ZONES = [
    None,
    timezone.utc,
    ZoneInfo("UTC"),
    ZoneInfo("Etc/UTC"),
    ZoneInfo("Europe/Berlin"),
    ZoneInfo("America/New_York"),
    timezone(timedelta(hours=5, minutes=30)),
    timezone(timedelta(0)),
]
if pendulum is not None:
    ZONES += [
        pendulum.UTC,
        pendulum.timezone("Europe/Paris"),
        pendulum.FixedTimezone(0),
        pendulum.FixedTimezone(-7200),
    ]

naive = st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2200, 1, 1))


@st.composite
def any_datetime(draw: st.DrawFn) -> datetime:
    value = draw(naive)
    tz = draw(st.sampled_from(ZONES))
    fold = draw(st.integers(0, 1))
    value = value.replace(tzinfo=tz, fold=fold)
    if pendulum is not None and draw(st.booleans()):  # Prefect's pendulum DateTime
        value = (
            pendulum.instance(value, tz=tz)
            if tz is not None
            else pendulum.naive(
                value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond
            )
        )
    return value


@settings(max_examples=400, deadline=None)
@given(any_datetime())
def test_as_utc_gives_what_the_general_conversion_gives(value: datetime) -> None:
    fast, general = as_utc(value), _as_utc_general(value)
    assert fast == general
    assert type(fast) is datetime and fast is not None and fast.tzinfo is timezone.utc
    assert (fast.year, fast.month, fast.day, fast.hour, fast.minute, fast.second, fast.microsecond) == (
        general.year, general.month, general.day, general.hour, general.minute, general.second, general.microsecond,  # type: ignore[union-attr]
    )  # fmt: skip


def test_a_zone_that_only_calls_itself_utc_is_asked_its_offset() -> None:
    class Liar(ZoneInfo):  # a ZoneInfo named UTC whose offset is not UTC's
        def utcoffset(self, dt: datetime | None) -> timedelta:
            return timedelta(hours=2)

    zone = Liar.no_cache("UTC")
    value = datetime(2026, 1, 1, 12, tzinfo=zone)
    assert as_utc(value) == datetime(2026, 1, 1, 10, tzinfo=timezone.utc)


@pytest.mark.parametrize("name", ["Europe/Paris", "America/New_York", "Asia/Kolkata"])
def test_a_zone_built_from_other_data_under_the_name_utc_is_asked_its_offset(name: str) -> None:
    from pathlib import Path

    path = Path("/usr/share/zoneinfo") / name
    if not path.is_file():
        pytest.skip(f"no system tz data for {name} on this machine")
    real = ZoneInfo(name)
    with path.open("rb") as data:
        zone = ZoneInfo.from_file(data, key="UTC")  # the name says UTC; the data is another zone's
    value = datetime(2026, 1, 1, 12, tzinfo=zone)
    expected = datetime(2026, 1, 1, 12, tzinfo=real).astimezone(timezone.utc)
    assert as_utc(value) == expected and as_utc(value).tzinfo is timezone.utc


texts = st.one_of(
    st.none(),
    st.sampled_from(["", "x", "Completed", "load", "mail bob@example.com now", "call 555-123-4567"]),
    st.text(max_size=20),
    st.text(min_size=300, max_size=400),
)


@st.composite
def task_fields(draw: st.DrawFn) -> dict[str, Any]:
    def maybe(strategy: Any) -> Any:
        return draw(st.one_of(st.none(), strategy))

    values: dict[str, Any] = {
        "task_run_id": draw(st.text(min_size=1, max_size=8)),
        "flow_run_id": maybe(st.text(max_size=8)),
        "flow_name": draw(st.sampled_from([None, "", "flow", "f@example.com"])),
        "task_name": draw(st.one_of(st.sampled_from(["", "load", "a@b.io"]), st.text(max_size=300))),
        "state_type": draw(st.sampled_from(["COMPLETED", "FAILED", "CRASHED"])),
        "state_name": draw(texts),
        "start_time": maybe(any_datetime()),
        "end_time": maybe(any_datetime()),
    }
    optional: dict[str, Any] = {
        "run_time_s": maybe(st.floats(min_value=-5, max_value=1e6)),
        "run_count": draw(st.one_of(st.none(), st.integers(0, 5))),
        "error_type": maybe(st.sampled_from(["ValueError", "KeyError"])),
        "error_message": draw(st.one_of(texts, st.text(min_size=2100, max_size=2200))),
        "tags": draw(st.one_of(st.just(()), st.lists(texts.filter(lambda t: t is not None), max_size=3))),
        "rows": draw(st.integers(0, 10**6)),
        "source": draw(st.sampled_from(["hook", "api"])),
        "attempt_errors": draw(
            st.lists(st.builds(AttemptError, st.integers(1, 5), st.sampled_from([None, "E"]), texts), max_size=3)
        ),
        "span_context": draw(st.sampled_from([None, "ctx"])),
        "counted_only": draw(st.booleans()),
    }
    for key, value in optional.items():
        if draw(st.booleans()):
            values[key] = value
    return values


@settings(max_examples=300, deadline=None)
@given(task_fields())
def test_of_fields_builds_the_event_init_builds(values: dict[str, Any]) -> None:
    fast, general = TaskRunEnded.of_fields(dict(values)), TaskRunEnded(**values)
    assert fast == general
    assert list(vars(fast).items()) == list(vars(general).items())  # every field, same order, same values
    for name in ("start_time", "end_time"):
        assert type(getattr(fast, name)) is type(getattr(general, name))
    assert type(fast.duration_s) is type(general.duration_s)


def test_of_fields_refuses_what_init_refuses() -> None:
    good = {
        "task_run_id": "t", "flow_run_id": None, "flow_name": None, "task_name": "x", "state_type": "COMPLETED",
        "state_name": None, "start_time": None, "end_time": None,
    }  # fmt: skip
    TaskRunEnded.of_fields(good)
    for bad in (
        {**good, "unknown": 1},
        {**good, "duration_s": 1.0},
        {k: v for k, v in good.items() if k != "task_name"},
    ):
        with pytest.raises(TypeError):
            TaskRunEnded(**bad)
        with pytest.raises(TypeError):
            TaskRunEnded.of_fields(bad)


def _row_general(event: Any, redact_pii: bool) -> dict[str, Any]:
    """A row as ``row_of`` built it before its fast path: ``Table.row`` of each column cleaned by ``_clean``."""

    def clean(value: Any, how: str | None) -> Any:
        if how is None:
            return value
        if how == "text":
            return redact(value) if redact_pii and isinstance(value, str) and value else value
        if how == "error":
            return None if value is None else clean_error_message(value, limit=MAX_ERROR_CHARS, redact_pii=redact_pii)
        if not value:
            return []
        if how == "tags":
            return sorted((redact(str(t)) if redact_pii and str(t) else str(t)) or "" for t in value)
        return rows.attempt_error_texts(value, redact_pii=redact_pii)

    table = tables.TABLE_OF_EVENT[type(event)]
    return table.row(
        **{name: clean(getattr(event, name), spec.clean) for name, spec in events.columns_of(type(event)).items()}
    )


def _without_id(row: dict[str, Any]) -> list[tuple[str, Any]]:
    assert isinstance(row[tables.EVENT_ID], str) and len(row[tables.EVENT_ID]) == 32
    return [(k, v) for k, v in row.items() if k != tables.EVENT_ID]


@settings(max_examples=200, deadline=None)
@given(st.lists(task_fields(), min_size=1, max_size=6), st.booleans())
def test_rows_of_many_and_row_of_give_the_general_rows(many: list[dict[str, Any]], redact_pii: bool) -> None:
    batch = [TaskRunEnded(**values) for values in many]
    expected = [_without_id(_row_general(e, redact_pii)) for e in batch]
    got = rows.rows_of_many(batch, redact_pii=redact_pii)
    assert [_without_id(r) for r in got] == expected
    assert [_without_id(rows.row_of(e, redact_pii=redact_pii)) for e in batch] == expected
    for row, want in zip(got, expected, strict=True):  # each row's lists its own, of the same types
        for (_name, value), (_name2, wanted) in zip(_without_id(row), want, strict=True):
            assert type(value) is type(wanted)
    assert len({r[tables.EVENT_ID] for r in got}) == len(got)


@settings(max_examples=200, deadline=None)
@given(st.lists(task_fields(), min_size=1, max_size=6), st.booleans())
def test_rows_of_other_event_types_are_the_general_rows(many: list[dict[str, Any]], redact_pii: bool) -> None:
    flows = [
        events.FlowRunEnded(
            flow_run_id=v["task_run_id"],
            flow_name=v["flow_name"] or "f",
            state_type=v["state_type"],
            state_name=v["state_name"],
            start_time=v["start_time"],
            end_time=v["end_time"],
            error_message=v.get("error_message"),
            tags=v.get("tags", ()),
            attempt_errors=v.get("attempt_errors", ()),
        )
        for v in many
    ]
    expected = [_without_id(_row_general(e, redact_pii)) for e in flows]
    assert [_without_id(r) for r in rows.rows_of_many(flows, redact_pii=redact_pii)] == expected
    assert [_without_id(rows.row_of(e, redact_pii=redact_pii)) for e in flows] == expected


def _context(n: int) -> SpanContext:
    return SpanContext(trace_id=n + 1, span_id=n + 1, is_remote=False, trace_flags=TraceFlags(1))


def _state(registry: CollectorRegistry) -> list[Any]:
    out = []
    for family in registry.collect():
        for s in family.samples:
            if s.name.endswith("_created"):  # when each registry's series was made
                continue
            exemplar = (s.exemplar.labels, s.exemplar.value) if s.exemplar else None
            out.append((s.name, sorted(s.labels.items()), s.value, exemplar))
    return sorted(out, key=repr)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([None, "", "f"]),
            st.sampled_from([None, "", "t", "u"]),
            st.sampled_from(["COMPLETED", "FAILED"]),
            st.one_of(st.none(), st.sampled_from([0.05, 0.2, 3.0, 7200.0])),
            st.integers(0, 3),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_batch_metrics_are_one_handle_per_event(
    specs: list[tuple[str | None, str | None, str, float | None, int, bool]],
) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    batch = [
        TaskRunEnded(
            task_run_id=f"t{i}",
            flow_run_id="r",
            flow_name=flow,
            task_name=task,
            state_type=state,
            state_name=None,
            start_time=t0,
            end_time=t0 + timedelta(seconds=1),
            run_time_s=seconds,
            run_count=count,
            span_context=_context(i) if sampled else None,
        )
        for i, (flow, task, state, seconds, count, sampled) in enumerate(specs)
    ]
    results = []
    for many in (True, False):
        registry = CollectorRegistry()
        m = SynthObsMetrics(registry=registry, prefix="t")
        calls: list[Any] = []
        m.duration_listener = lambda metric, labels, seconds, ctx, calls=calls: calls.append(  # type: ignore[misc]
            (metric, labels, seconds, ctx)
        )
        recording = Recording(_NoRows(), m, redact_pii=True)  # type: ignore[arg-type]
        if many:
            recording.handle_many(batch)
        else:
            for event in batch:
                recording.handle(event)
        results.append((_state(registry), calls))
    assert results[0] == results[1]


class _NoRows:
    def add(self, table: str, rows_: Any) -> None:
        pass


def test_event_fields_have_no_factories_the_fast_constructor_would_share() -> None:
    assert all(f.default_factory is dataclasses.MISSING for f in dataclasses.fields(TaskRunEnded))
