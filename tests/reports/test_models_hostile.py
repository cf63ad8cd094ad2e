"""Model ids someone typed, and odd model objects: refused clearly or shown safely.

A model id passed as a string is text a person chose: a secret in it (a connection string, an AWS
key, ``password=...``, an e-mail) never reaches a row, a span attribute, an event or the report
(hypothesis: random text around the secret). Objects that are not fitted models (a class, data, a
module, a function, a broken proxy) are refused with a ``ValueError`` that says what to pass. Labels
stay unique per table, cost linear time, trends follow a model line across retrains, and a
non-finite score is a missing one.
"""

from __future__ import annotations

import io
import json
import math
import string
import time
import types
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from prefect_synthobs import catalog as names
from prefect_synthobs.health.rows import flow_row, quality_row
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.instrument.models import (
    MAX_MODEL_ID_LENGTH,
    MODEL_ID_ATTRIBUTE,
    model_identity,
    redacted_identity,
)
from prefect_synthobs.reports import health as hr
from prefect_synthobs.reports.models import NO_MODEL, leaderboard, model_labels, quality_table, series_names
from prefect_synthobs.reports.trends import build_trends
from prefect_synthobs.telemetry.redaction import redact_fields
from prefect_synthobs.telemetry.tracing import _redacted_attributes

T0 = datetime(2026, 11, 18, 9, tzinfo=timezone.utc)

# -- secrets in a model id -------------------------------------------------------------------------

SEPARATORS = [" ", " (", ") ", ", ", "; ", " [", "] ", ": ", " - ", " | ", "/"]
noise = st.text(string.ascii_letters + string.digits + " -_.:,;()[]", max_size=30)
# a marker at each end: a short password could be a word the report prints anyway ("util_mea")
password = st.text(string.ascii_letters + string.digits + "!#$%^*_+=~", min_size=6, max_size=18).map(
    lambda p: f"Qz{p}7k"
)
aws_key = st.text(string.ascii_uppercase + string.digits, min_size=16, max_size=16).map(lambda s: "AKIA" + s)
local = st.text(string.ascii_lowercase + string.digits + "._", min_size=3, max_size=12).filter(
    lambda s: s[0] not in "._" and s[-1] not in "._" and ".." not in s
)
# (the secret as it sits in the id, the part that must never be seen)
secret = st.one_of(
    password.map(lambda p: (f"postgres://user:{p}@db.example.com/x", p)),
    aws_key.map(lambda k: (k, k)),
    password.map(lambda p: (f"password={p}", p)),
    local.map(lambda u: (f"{u}@example.com", f"{u}@example.com")),
)


@st.composite
def secret_id(draw: st.DrawFn) -> tuple[str, str]:
    """(a model id with a secret in random text, the secret)."""
    text, hidden = draw(secret)
    model_id = draw(noise) + draw(st.sampled_from(SEPARATORS)) + text + draw(st.sampled_from(SEPARATORS)) + draw(noise)
    return model_id.strip() or text, hidden


@pytest.fixture(scope="module")
def base_frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """A store's frames with one flow run (so the report is not empty); quality rows go in per example."""
    store = HealthStore(str(tmp_path_factory.mktemp("store")))
    store.write(
        names.FLOW_RUNS,
        [
            flow_row(
                flow_run_id="f",
                flow_name="q",
                state_type="COMPLETED",
                state_name="Completed",
                start_time=T0,
                end_time=T0 + timedelta(minutes=1),
                kind="quality",
            )
        ],
    )
    return hr.load_frames(store, T0 - timedelta(hours=1), T0 + timedelta(hours=2))


def report_texts(frames: dict[str, pd.DataFrame], quality: list[dict[str, Any]]) -> tuple[str, str, str]:
    """(markdown, terminal, JSON) of the report over ``quality`` rows, trends included."""
    frames = {**frames, names.QUALITY_CHECKS: pd.DataFrame(quality)}
    report = hr.build_report(frames, T0 - timedelta(hours=1), T0 + timedelta(hours=2), redact_pii=True)
    trends = build_trends({names.QUALITY_CHECKS: pd.DataFrame(quality)}, [T0.date()], redact_pii=True)
    report = hr.with_trends(report, trends)
    buffer = io.StringIO()
    hr.render_text(report, Console(file=buffer, width=200, force_terminal=False, color_system=None))
    return hr.overview_markdown(report), buffer.getvalue(), json.dumps(report.as_dict(), default=str)


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
@given(data=st.lists(secret_id(), min_size=1, max_size=3), typed=st.booleans())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_secret_in_a_model_id_never_reaches_rows_spans_events_or_the_report(
    base_frames: dict[str, pd.DataFrame], data: list[tuple[str, str]], typed: bool
) -> None:
    for model_id, hidden in data:
        if len(model_id) > MAX_MODEL_ID_LENGTH:
            continue
        recorded, _ = redacted_identity(model_id, enabled=True)  # what a row, a span and an event get
        assert recorded is not None and hidden not in recorded, (model_id, recorded)
        assert redacted_identity(model_id, enabled=False)[0] == model_id  # redact_pii off: as given
        # the exporter and the event path redact model ids a writer left raw (they are user text, not machine ids)
        span = _redacted_attributes({"synthobs.model_id": model_id, "prefect.run.id": "x"}, False)
        assert hidden not in json.dumps(span)
        event = redact_fields({"model_id": model_id, "model_ids": [model_id], "flow_run_id": "f"})
        assert hidden not in json.dumps(event) and event["flow_run_id"] == "f"
    # the report redacts again at render: a store can hold another writer's raw rows
    rows = [
        quality_row(
            metric=metric,
            score=0.5 + k / 10,
            threshold=0.6,
            time=T0 + timedelta(minutes=k),
            table_name="t",
            flow_run_id="f",
            flow_name="q",
            model_id=model_id,
            model_type="CTGAN" if typed and k else None,
        )
        for k, (model_id, _) in enumerate(data)
        for metric in ("overall", "detection")
    ]
    for text in report_texts(base_frames, rows):
        for _, hidden in data:
            assert hidden not in text
    for row in leaderboard(pd.DataFrame(rows)) + quality_table(pd.DataFrame(rows), pd.DataFrame(rows[:0])):
        for _, hidden in data:
            assert hidden not in json.dumps(row)


def test_the_report_shows_raw_ids_only_when_redaction_is_off() -> None:
    raw = "postgres://user:hunter2@db.example.com/x"
    rows = [quality_row(metric="overall", score=0.5, threshold=None, time=T0, table_name="t", flow_run_id="f",
                        flow_name="q", model_id=raw, model_type=None)]  # fmt: skip
    assert leaderboard(pd.DataFrame(rows), redact_pii=False)[0]["model_id"] == raw
    assert "hunter2" not in leaderboard(pd.DataFrame(rows))[0]["model"]


# -- odd model objects -------------------------------------------------------------------------------


class _RaisingGetattribute:
    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError("boom")


class _RaisingDict:
    @property
    def __dict__(self) -> Any:  # type: ignore[override]
        raise RuntimeError("no dict")


class _RaisingSetattr:
    def __setattr__(self, name: str, value: Any) -> None:
        raise RuntimeError("frozen")


class CTGAN:
    pass


@pytest.mark.parametrize(
    ("model", "says"),
    [
        (_RaisingGetattribute, "pass the model's id as a string"),  # made in the test: pytest inspects params
        (_RaisingDict, "pass the model's id as a string"),
        (CTGAN, "not its class"),
        (int, "not its class"),
        (pd.DataFrame({"a": [1]}), "swapped"),
        (pd.Series([1]), "swapped"),
        (np.zeros(3), "swapped"),
        (np, "a module"),
        (lambda: 0, "a function"),
        (print, "a function"),
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("x" * (MAX_MODEL_ID_LENGTH + 1), "more than 256"),
        ("a\nb", "control characters"),
        ([1, 2], "pass the model's id as a string"),
    ],
)
def test_what_is_not_a_fitted_model_is_refused_with_what_to_pass(model: Any, says: str) -> None:
    if model is _RaisingGetattribute or model is _RaisingDict:
        model = model()
    with pytest.raises(ValueError, match=says):
        model_identity(model)
    assert MODEL_ID_ATTRIBUTE not in CTGAN.__dict__  # a class is never marked


def test_an_object_whose_setattr_raises_is_kept_by_identity() -> None:
    model = _RaisingSetattr()
    model_id, model_type = model_identity(model)
    assert model_type == "_RaisingSetattr" and model_identity(model) == (model_id, model_type)
    assert model_identity("x" * MAX_MODEL_ID_LENGTH)[0] == "x" * MAX_MODEL_ID_LENGTH  # the cap itself is fine


def test_a_str_subclass_id_is_stored_as_plain_text() -> None:
    model_id, _ = model_identity(np.str_("npstr-model"))
    assert type(model_id) is str and model_id == "npstr-model"


# -- labels ------------------------------------------------------------------------------------------


def test_labels_are_unique_per_table_whatever_the_ids_are_called() -> None:
    labels = model_labels(
        [
            ("t", None, None),
            ("t", NO_MODEL, None),  # a string id that reads like the no-model row
            ("t", "CTGAN-000000aaaaaa", "CTGAN"),
            ("t", "CTGAN", None),  # an id equal to another model's name
            ("t", "postgres://a:pw1@h/x", None),
            ("t", "postgres://a:pw2@h/x", None),  # two ids that redact alike
            ("u", None, None),
        ]
    )
    for table in ("t", "u"):
        shown = [label for (t, _), label in labels.items() if t == table]
        assert len(shown) == len(set(shown)), shown
    assert labels[("t", None)] == NO_MODEL and labels[("t", NO_MODEL)] == f"{NO_MODEL} #2"
    assert labels[("u", None)] == NO_MODEL
    assert not any("pw1" in label or "pw2" in label for label in labels.values())
    series = series_names([("t", None, None), ("t", NO_MODEL, None)])
    assert len(set(series.values())) == 2


def test_labels_of_long_alike_ids_take_linear_time() -> None:
    for n in (100_000, 1_000_000):
        shared = "x" * n
        models = [("t", f"{k}{shared}", "CTGAN") for k in range(3)] + [("t", f"{shared}{k}", None) for k in range(3)]
        start = time.perf_counter()
        labels = model_labels(models)
        # a guard against quadratic work (minutes at 1 MB), not a speed figure: loose enough for a loaded CI
        assert time.perf_counter() - start < 30.0
        assert len(set(labels.values())) == 6 and max(len(v) for v in labels.values()) <= 80


# -- trends across retrains ----------------------------------------------------------------------------


def nightly(days: int, *, start: float = 0.9, step: float = 0.02) -> list[dict[str, Any]]:
    """A pipeline that fits a fresh CTGAN (a new id) every night, its quality declining."""
    return [
        quality_row(
            metric="overall",
            score=start - step * d,
            threshold=None,
            time=T0 + timedelta(days=d),
            table_name="customers",
            flow_run_id=f"f{d}",
            flow_name="q",
            model_id=f"CTGAN-{uuid.uuid4().hex[:12]}",
            model_type="CTGAN",
        )
        for d in range(days)
    ]


def test_a_model_retrained_every_night_is_one_trend_line_whose_decline_shows() -> None:
    rows = nightly(14)
    days = [T0.date() + timedelta(days=d) for d in range(14)]
    trends = build_trends({names.QUALITY_CHECKS: pd.DataFrame(rows)}, days)
    assert list(trends.quality) == ["customers · CTGAN"]
    assert trends.quality["customers · CTGAN"] == pytest.approx([0.9 - 0.02 * d for d in range(14)])
    assert trends.quality_by_metric[("customers", "CTGAN", "overall")][-1] == pytest.approx(0.64)
    # a copula next to it is its own line, never averaged with the CTGAN
    copula = [{**rows[0], "model_type": "GaussianCopulaSynthesizer", "model_id": "g", "score": 0.1}]
    both = build_trends({names.QUALITY_CHECKS: pd.DataFrame(rows + copula)}, days)
    assert both.quality["customers · CTGAN"][0] == pytest.approx(0.9)
    assert both.quality["customers · GaussianCopulaSynthesizer"][0] == pytest.approx(0.1)


def test_two_fits_on_one_day_show_the_latest_not_a_mean() -> None:
    morning, evening = nightly(1, start=0.9), nightly(1, start=0.5)
    evening[0]["time"] = morning[0]["time"] + timedelta(hours=6)
    day = [T0.date()]
    trends = build_trends({names.QUALITY_CHECKS: pd.DataFrame(evening + morning)}, day)
    assert trends.quality == {"customers · CTGAN": [0.5]}


def test_the_leaderboard_puts_each_lines_latest_fit_first_and_the_trend_follows_the_line() -> None:
    rows = nightly(3, start=0.9, step=0.3)  # 0.9, 0.6, 0.3: the latest fit is the worst
    board = leaderboard(pd.DataFrame(rows))
    assert [r["overall"] for r in board] == [0.3, 0.9, 0.6]  # latest first, then older fits best first
    assert len({r["model"] for r in board}) == 3
    before, now = pd.DataFrame(rows[:2]), pd.DataFrame(rows[2:])
    (row,) = quality_table(now, before)
    assert row["trend"] == pytest.approx(0.3 - 0.75)  # against the previous window's CTGAN fits
    assert row["model_type"] == "CTGAN"


# -- non-finite scores ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-math.inf, math.inf])
def test_a_non_finite_score_is_missing(bad: float) -> None:
    rows = nightly(1)
    rows += [{**rows[0], "metric": "tstr_ratio", "score": bad}, {**rows[0], "metric": "overall", "score": bad}]
    rows[-1]["time"] = rows[0]["time"] + timedelta(minutes=1)
    (row,) = leaderboard(pd.DataFrame(rows))
    assert row["tstr_ratio"] is None and row["overall"] == 0.9  # the latest finite one
    table = {r["metric"]: r for r in quality_table(pd.DataFrame(rows), pd.DataFrame(rows))}
    assert table["overall"]["average"] == 0.9 and table["tstr_ratio"]["average"] is None
    assert table["tstr_ratio"]["trend"] is None
    json.dumps(row, allow_nan=False)
    trends = build_trends({names.QUALITY_CHECKS: pd.DataFrame(rows)}, [date(2026, 11, 18)])
    assert trends.quality["customers · CTGAN"] == [0.9]


def test_function_kinds_cover_methods() -> None:
    model = CTGAN()
    with pytest.raises(ValueError, match="a function"):
        model_identity(types.MethodType(lambda self: 0, model))
