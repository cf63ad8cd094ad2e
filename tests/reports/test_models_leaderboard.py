"""Models side by side: two generators of one table are two rows, two trend lines, never one average.

The leaderboard, the quality table and the quality trends are checked against figures recomputed
from each model's own rows (hypothesis: any interleaving of checks of several models and tables);
then a real observed flow, the real health-report flow and ``synthobs report`` show both models.
"""

from __future__ import annotations

import io
import json
import math
import statistics
import sys
import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prefect import flow
from rich.console import Console

import prefect_synthobs as so
from conftest import REPO
from prefect_synthobs import catalog as names
from prefect_synthobs.cli import main as cli_main
from prefect_synthobs.health.rows import quality_row
from prefect_synthobs.reports import health as hr
from prefect_synthobs.reports.models import (
    LEADERBOARD_SCORES,
    MODELS_TABLE,
    NO_MODEL,
    leaderboard,
    model_labels,
    quality_table,
    series_names,
)
from prefect_synthobs.reports.trends import build_trends

sys.path.insert(0, str(REPO / "flows"))
import health_report as report_flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

START = datetime(2026, 11, 18, tzinfo=timezone.utc)
DAYS = [date(2026, 11, 18), date(2026, 11, 19), date(2026, 11, 20)]
COPULA_A = "GaussianCopulaSynthesizer_1.17.0_" + "a" * 28 + "1111"
COPULA_B = "GaussianCopulaSynthesizer_1.17.0_" + "a" * 28 + "2222"  # same type, ids alike but for the end
MODELS = [
    (None, None),
    (COPULA_A, "GaussianCopulaSynthesizer"),
    (COPULA_B, "GaussianCopulaSynthesizer"),
    ("CTGAN-0123456789ab", "CTGAN"),
    ("copula-v2", None),
]
TABLES = ["customers", "orders", None]
METRICS = [*LEADERBOARD_SCORES, "column_shapes"]
Key = tuple[str | None, str | None]


def rows_of(checks: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    out = []
    for table, (model_id, model_type), metric, score, threshold, hour, minute in checks:
        row = quality_row(
            metric=metric,
            score=score,
            threshold=threshold,
            time=START + timedelta(hours=hour, minutes=minute),
            table_name=table,
            flow_run_id="f",
            flow_name="q",
            model_id=model_id,
            model_type=model_type,
            passed=None if threshold is None else (not math.isnan(score) and score >= threshold),
        )
        out.append(row)
    return out


check = st.tuples(
    st.sampled_from(TABLES),
    st.sampled_from(MODELS),
    st.sampled_from(METRICS),
    st.one_of(st.floats(0, 1), st.just(math.nan)),  # NaN: a gate on a score that was never computed
    st.one_of(st.none(), st.floats(0, 1)),
    st.integers(0, 71),  # three days: the trends' days
    st.integers(0, 2),  # few minutes: checks at the same time happen
)


def expected_board(rows: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """Each model's figures from its own rows only (an independent computation)."""
    mine: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        mine[(r["table_name"], r["model_id"])].append(r)
    out = {}
    for key, own in mine.items():
        gated = [r for r in own if r["threshold"] is not None]
        figures: dict[str, Any] = {
            "checks": len(own),
            "pass_rate": round(sum(bool(r["passed"]) for r in gated) / len(gated), 4) if gated else None,
        }
        for metric in LEADERBOARD_SCORES:
            values = [(r["time"], r["score"]) for r in own if r["metric"] == metric and not math.isnan(r["score"])]
            figures[metric] = round(max(values)[1], 4) if values else None  # latest; at the same time the higher
        out[key] = figures
    return out


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
@given(checks=st.lists(check, min_size=1, max_size=60), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=80, deadline=None)
def test_each_model_has_the_numbers_of_its_own_rows(checks: list[tuple[Any, ...]], seed: int) -> None:
    rows = rows_of(checks)
    frame = pd.DataFrame(rows)
    board = leaderboard(frame)
    want = expected_board(rows)

    got = {(r["table"], r["model_id"]): r for r in board}
    assert len(got) == len(board) == len(want)  # one row per (table, model), none merged, none split
    assert sum(r["checks"] for r in board) == len(rows)  # no row lost or doubled
    for key, figures in want.items():
        row = got[key]
        for name, value in figures.items():
            assert row[name] == (pytest.approx(value, abs=1e-9) if value is not None else None), (key, name)
        model_type = dict(MODELS)[key[1]]
        assert row["model"] == NO_MODEL if key[1] is None else row["model"].startswith(model_type or key[1])
    for table in {k[0] for k in got}:  # names are unique within a table
        shown = [r["model"] for r in board if r["table"] == table]
        assert len(shown) == len(set(shown))
    # any interleaving of the same checks gives the same board
    assert leaderboard(frame.sample(frac=1.0, random_state=seed % 2**32)) == board

    # the quality table: one row per (table, model, metric), its average from its own rows only
    table_rows = quality_table(frame, frame.iloc[0:0])
    assert sum(r["checks"] for r in table_rows) == len(rows)
    for r in table_rows:
        own = [
            x["score"]
            for x in rows
            if (x["table_name"], x["model_id"], x["metric"]) == (r["table"], r["model_id"], r["metric"])
        ]
        finite = [s for s in own if not math.isnan(s)]
        assert r["checks"] == len(own)
        assert r["average"] == (pytest.approx(statistics.mean(finite), abs=1e-4) if finite else None)

    # the trends: one overall line per (table, model line: the type, else the id), each day that line's
    # latest finite check (at one time the higher), never a mean of two fits
    trends = build_trends({names.QUALITY_CHECKS: frame}, DAYS)
    assert build_trends({names.QUALITY_CHECKS: frame.sample(frac=1.0, random_state=seed % 2**32)}, DAYS) == trends
    labels = series_names((r["table_name"], r["model_id"], r["model_type"]) for r in rows)

    def line(r: dict[str, Any]) -> tuple[Any, str]:
        return r["table_name"], r["model_type"] or r["model_id"] or ""

    overall = [r for r in rows if r["metric"] == "overall"]
    assert set(trends.quality) == {labels[(r["table_name"], r["model_id"])] for r in overall}
    assert len(trends.quality) == len({line(r) for r in overall})  # one series per line: two types never one
    for r in overall:
        for i, day in enumerate(DAYS):
            own = [
                (x["time"], x["score"])
                for x in overall
                if line(x) == line(r) and x["time"].date() == day and not math.isnan(x["score"])
            ]
            value = trends.quality[labels[(r["table_name"], r["model_id"])]][i]
            assert value == (pytest.approx(max(own)[1], abs=1e-4) if own else None), (line(r), day)


def test_names_are_short_and_get_an_id_suffix_only_when_two_models_share_a_type() -> None:
    labels = model_labels(
        [
            ("customers", COPULA_A, "GaussianCopulaSynthesizer"),
            ("customers", COPULA_B, "GaussianCopulaSynthesizer"),
            ("customers", "CTGAN-0123456789ab", "CTGAN"),
            ("customers", None, None),
            ("orders", COPULA_A, "GaussianCopulaSynthesizer"),  # alone in its table: no suffix there
            ("orders", "copula-v2", None),  # no type: its id is its name
        ]
    )
    assert labels == {
        ("customers", COPULA_A): "GaussianCopulaSynthesizer aa1111",  # the ids' ends, 6 characters
        ("customers", COPULA_B): "GaussianCopulaSynthesizer aa2222",
        ("customers", "CTGAN-0123456789ab"): "CTGAN",
        ("customers", None): NO_MODEL,
        ("orders", COPULA_A): "GaussianCopulaSynthesizer",
        ("orders", "copula-v2"): "copula-v2",
    }
    series = series_names(
        [("customers", COPULA_A, "GaussianCopulaSynthesizer"), ("customers", None, None), ("orders", None, None)]
    )
    assert series == {
        ("customers", COPULA_A): "customers · GaussianCopulaSynthesizer",
        ("customers", None): f"customers · {NO_MODEL}",  # the table has a named model too
        ("orders", None): "orders",  # a table whose checks name no model keeps its name alone
    }


def test_fit_seconds_come_from_the_models_table_when_there_is_one() -> None:
    rows = rows_of(
        [
            ("customers", MODELS[1], "overall", 0.9, None, 1, 0),
            ("customers", MODELS[3], "overall", 0.7, None, 1, 0),
            ("customers", MODELS[0], "overall", 0.5, None, 1, 0),
        ]
    )
    fits = pd.DataFrame(
        {
            "time": [START, START + timedelta(hours=1), START],
            "model_id": [COPULA_A, COPULA_A, "someone-else"],
            "model_type": ["GaussianCopulaSynthesizer"] * 2 + ["TVAE"],
            "fit_seconds": [12.5, 14.25, 99.0],
        }
    )
    board = {r["model"]: r for r in leaderboard(pd.DataFrame(rows), fits)}
    assert board["GaussianCopulaSynthesizer"]["fit_seconds"] == 14.25  # its latest fit
    assert board["CTGAN"]["fit_seconds"] is None and board[NO_MODEL]["fit_seconds"] is None
    assert [r["model"] for r in leaderboard(pd.DataFrame(rows))] == ["GaussianCopulaSynthesizer", "CTGAN", NO_MODEL]
    assert all(r["fit_seconds"] is None for r in leaderboard(pd.DataFrame(rows), fits[["model_id"]]))
    assert all(r["fit_seconds"] is None for r in leaderboard(pd.DataFrame(rows), None))
    assert leaderboard(pd.DataFrame(rows).iloc[0:0]) == []


def test_a_quality_trend_compares_a_model_with_itself_only() -> None:
    before = pd.DataFrame(
        rows_of(
            [
                ("customers", MODELS[1], "overall", 0.9, 0.8, 0, 0),
                ("customers", MODELS[3], "overall", 0.6, 0.8, 0, 0),
                ("customers", MODELS[4], "overall", 0.1, None, 0, 0),  # only before: no row now
            ]
        )
    )
    now = pd.DataFrame(
        rows_of(
            [
                ("customers", MODELS[1], "overall", 0.95, 0.8, 30, 0),
                ("customers", MODELS[3], "overall", 0.7, 0.8, 30, 0),
                ("customers", MODELS[0], "overall", 0.5, 0.8, 30, 0),  # no model, nothing before
            ]
        )
    )
    got = {r["model"]: (r["average"], r["trend"], r["pass_rate"], r["threshold"]) for r in quality_table(now, before)}
    assert got == {
        "GaussianCopulaSynthesizer": (0.95, pytest.approx(0.05), 1.0, 0.8),
        "CTGAN": (0.7, pytest.approx(0.1), 0.0, 0.8),
        NO_MODEL: (0.5, None, 0.0, 0.8),
    }
    legacy = quality_table(now.assign(model_id=None, model_type=None), before.iloc[0:0])
    assert [r["model"] for r in legacy] == [None]  # a store whose checks name no model: no model column


def test_the_quality_chart_keeps_a_fixed_0_to_1_axis(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: dict[str, dict[str, Any]] = {}

    def spy(title: str, days: Any, series: Any, **options: Any) -> str:
        drawn[title] = {"series": series, **options}
        return "<svg/>"

    monkeypatch.setattr(hr, "line_chart", spy)
    rows = rows_of(
        [
            ("customers", MODELS[1], "overall", 0.916, None, 50, 0),
            ("customers", MODELS[3], "overall", 0.738, None, 50, 0),
        ]
    )
    hr.trend_pictures(build_trends({names.QUALITY_CHECKS: pd.DataFrame(rows)}, DAYS))
    (title,) = [t for t in drawn if t.startswith("Overall quality score")]
    assert drawn[title]["y_min"] == 0.0 and drawn[title]["y_max"] == 1.0
    assert drawn[title]["series"] == {
        "customers · GaussianCopulaSynthesizer": [None, None, 0.916],
        "customers · CTGAN": [None, None, 0.738],
    }


# -- end to end: a real observed flow, the real report flow, the CLI ---------------------------------


def artifacts_of(flow_run_id: Any) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def table_of(artifact: Any) -> list[dict[str, Any]]:
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


class GaussianCopulaSynthesizer:
    def __init__(self) -> None:
        self._synthesizer_id = f"GaussianCopulaSynthesizer_1.17.0_{uuid.uuid4().hex}"


class CTGAN:
    pass


@pytest.mark.usefixtures("prefect_server")
def test_two_models_of_one_table_are_two_rows_in_the_artifacts_and_the_terminal(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copula, ctgan = GaussianCopulaSynthesizer(), CTGAN()

    @so.observe(kind="quality", table="customers")
    @flow(name="compare-models")
    def compare() -> None:
        for model, overall, exact in ((copula, 0.916, 0.0), (ctgan, 0.738, 0.01)):
            so.record_quality("overall", overall, model=model, threshold=0.8)
            so.record_quality("exact_match_rate", exact, model=model)

    compare()
    from prefect_synthobs.instrument.instrumentation import get_runtime

    get_runtime().recorder.flush()
    state = report_flow.health_report(store_url=str(store_dir), window_hours=1, return_state=True)
    assert state.is_completed()
    arts = artifacts_of(state.state_details.flow_run_id)
    board = table_of(arts["synthobs-models"])  # short headers, cells as people read them
    assert [(r["table"], r["model"], r["overall"], r["passed"]) for r in board] == [
        ("customers", "GaussianCopulaSynthesizer", "0.916", "100.0 %"),
        ("customers", "CTGAN", "0.738", "0.0 %"),
    ]
    privacy = table_of(arts["synthobs-models-privacy"])
    assert [(r["model"], r["exact match"]) for r in privacy] == [("GaussianCopulaSynthesizer", "0"), ("CTGAN", "0.01")]
    details = [(r["detail"], r["value"]) for r in table_of(arts["synthobs-models-details"])]
    assert details[4:] == [
        ("model", "CTGAN"),
        ("table", "customers"),
        ("type", "CTGAN"),
        ("model id", hr.escape(ctgan._synthobs_model_id)),  # type: ignore[attr-defined]
    ]
    assert "never averaged" in arts["synthobs-models"].description
    overview = arts["synthobs-overview"].data
    assert "## Models" in overview
    assert "| customers | GaussianCopulaSynthesizer | 2 | 100.0 % | 0.916 |" in overview
    assert "| customers | CTGAN | 2 | 0.0 % | 0.738 |" in overview
    assert "0.827" not in overview  # (0.916 + 0.738) / 2 is nobody's score
    quality = table_of(arts["synthobs-quality"])
    assert {(r["model"], r["metric"], r["average"]) for r in quality} == {
        ("GaussianCopulaSynthesizer", "overall", 0.916),
        ("GaussianCopulaSynthesizer", hr.escape("exact_match_rate"), 0.0),  # artifact cells are escaped
        ("CTGAN", "overall", 0.738),
        ("CTGAN", hr.escape("exact_match_rate"), 0.01),
    }

    # the terminal, as `synthobs report` prints it
    capsys.readouterr()
    assert cli_main(["report", "--store", str(store_dir), "--since", "1h", "--trend-days", "2"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    models_at = lines.index(next(line for line in lines if line.strip() == "Models"))
    copula_line = next(line for line in lines[models_at:] if "GaussianCopulaSynthesizer" in line)
    ctgan_line = next(line for line in lines[models_at:] if "CTGAN" in line)
    assert "0.916" in copula_line and "100.0 %" in copula_line
    assert "0.738" in ctgan_line and "0.0 %" in ctgan_line
    assert any(line.strip() == "Model privacy" for line in lines)
    assert cli_main(["report", "--store", str(store_dir), "--since", "1h", "--json", "--trend-days", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["model_id"] for r in data["models"]] == [copula._synthesizer_id, ctgan._synthobs_model_id]  # type: ignore[attr-defined]
    assert set(data["trends"]["quality"]) == {"customers · GaussianCopulaSynthesizer", "customers · CTGAN"}

    # at 100 columns both halves of the leaderboard fit, names whole
    report = hr.report_for(so.HealthStore(str(store_dir)), *hr.window("1h"), days=2)
    console = Console(file=io.StringIO(), width=100, color_system=None)
    hr.render_text(report, console)
    narrow = console.file.getvalue()  # type: ignore[attr-defined]
    assert max(len(line) for line in narrow.splitlines()) <= 100 and "…" not in narrow


def test_the_models_table_name_is_the_catalogs() -> None:
    assert getattr(names, "MODELS", "models") == MODELS_TABLE
