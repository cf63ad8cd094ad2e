"""The health report's table artifacts fit Prefect's artifact pane and keep every value (``artifact_tables``).

Measured in headless Chromium on the Prefect 3.9 UI at a 1,400 px window (its table pane is 844 px wide,
702 px in the v2 UI): the per-flow table needed 1,498 px before (retry and sparkline columns off-screen),
725 px now; its sparklines, in ``synthobs-flow-trends``, 646 px. A browser cannot run in the fast tier, so
this test bounds the widest cell of each column in characters, as the terminal report's 100-column test does.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from report_history import FLOWS, fill_history

import prefect_synthobs as so
from prefect_synthobs.reports import health as hr
from prefect_synthobs.reports.artifact_tables import (
    ARTIFACTS,
    EMPTY_TABLES,
    FLOW_TRENDS,
    artifact_table,
    flow_trends_table,
    flows_table,
    table_rows,
)
from prefect_synthobs.reports.artifact_tables import (
    FLOWS as FLOWS_KEY,
)

UNTIL = datetime(2026, 11, 20, 15, 30, tzinfo=timezone.utc)
# characters a 1,400 px window shows side by side in the pane (844 px; about 11 px a character in the UI's
# font with its cell padding); the flows before: 139 characters
PANE_CHARACTERS = 80


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> hr.HealthReport:
    url = str(tmp_path_factory.mktemp("artifact-tables") / "store")
    fill_history(url, UNTIL, days=14)
    return hr.report_for(so.HealthStore(url), UNTIL - timedelta(days=14), UNTIL, days=14)


def width(rows: list[dict[str, Any]]) -> int:
    """Characters of a table's widest cells, column by column (header included)."""
    return sum(max(len(str(c)), *(len(str(r.get(c, ""))) for r in rows)) for c in rows[0])


def test_the_flows_table_fits_the_pane_and_keeps_every_value(report: hr.HealthReport) -> None:
    before = table_rows(report.flows)
    assert width(before) > PANE_CHARACTERS + 50  # what did not fit: ISO times, long names, two sparklines
    shown = flows_table(report.flows)
    assert width(shown) <= PANE_CHARACTERS
    assert list(shown[0]) == ["flow", "runs", "failed", "success", "p95 s", "task fails", "retries", "last ok (UTC)"]
    for raw, row in zip(report.flows, shown, strict=True):
        assert row["flow"] == hr.escape(raw["flow"])
        assert (row["runs"], row["failed"]) == (raw["runs"], raw["failed"])  # counts stay numbers
        assert (row["task fails"], row["retries"]) == (raw["failed_tasks"], raw["retried_tasks"])
        assert row["success"] == f"{100 * raw['success_rate']:.1f} %"
        assert row["p95 s"] == f"{raw['p95_duration_s']:,.2f}"
        last = datetime.fromisoformat(raw["last_success"]).astimezone(timezone.utc)
        assert row["last ok (UTC)"] == f"{last:%Y-%m-%d %H:%M}"  # the year too: artifacts are read later
    assert {r["flow"] for r in shown} == set(FLOWS)


def test_the_flow_trends_table_holds_the_sparklines(report: hr.HealthReport) -> None:
    trends = flow_trends_table(report.flows)
    assert width(trends) <= PANE_CHARACTERS
    assert [list(r) for r in trends] == [["flow", "success/day", "p95/day"]] * len(report.flows)
    for raw, row in zip(report.flows, trends, strict=True):
        assert (row["success/day"], row["p95/day"]) == (raw["success_by_day"], raw["p95_by_day"])
        assert report.trends is not None and len(row["success/day"]) == len(report.trends.days)  # none cut
    # a report made without trend days has no sparklines: the artifact says so in a real column
    assert flow_trends_table([{k: v for k, v in r.items() if not k.endswith("_by_day")} for r in report.flows]) == []
    assert artifact_table(FLOW_TRENDS, []) == [{"status": EMPTY_TABLES[FLOW_TRENDS]}]


def test_every_artifact_has_a_view_and_an_empty_text(report: hr.HealthReport) -> None:
    assert set(ARTIFACTS) == set(EMPTY_TABLES) and {FLOWS_KEY, FLOW_TRENDS} <= set(ARTIFACTS)
    assert FLOW_TRENDS in ARTIFACTS[FLOWS_KEY][1]  # the flows table says where its trends went
    for key, (attr, _description) in ARTIFACTS.items():
        rows = artifact_table(key, getattr(report, attr))
        assert rows and all(isinstance(r, dict) and r for r in rows), key


def test_sparklines_follow_the_names_and_averages_in_the_quality_and_gpu_tables(report: hr.HealthReport) -> None:
    quality = artifact_table("synthobs-quality", report.quality)
    assert list(quality[0])[:5] == ["table", "model", "metric", "average", "score_by_day"]
    # names unchanged; each model's type and id are in synthobs-models-details, not here
    assert set(quality[0]) == set(report.quality[0]) - {"model_type", "model_id"}
    gpu = artifact_table("synthobs-gpu", report.gpus)
    assert list(gpu[0])[:5] == ["host", "gpu", "name", "util_mean", "util_by_day"] and set(gpu[0]) == set(
        report.gpus[0]
    )


def test_rates_read_as_people_read_them_in_every_table() -> None:
    rows = table_rows([{"run_rows_per_s": 87962.004, "run_rows": 20000, "flow": "a|b", "x": None, "ok": True}])
    assert rows == [{"run_rows_per_s": "87,962", "run_rows": 20000, "flow": "a\\|b", "x": "", "ok": True}]


def test_the_published_flows_artifact_is_the_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``publish_artifacts`` sends each key its view (Prefect's artifact calls replaced: no API here)."""
    url = str(tmp_path / "store")
    now = datetime.now(timezone.utc)
    fill_history(url, now, days=2)
    report = hr.report_for(so.HealthStore(url), now - timedelta(days=2), now, days=2)
    sent: dict[str, Any] = {}
    monkeypatch.setattr(hr, "create_markdown_artifact", lambda **kw: sent.setdefault(kw["key"], kw["markdown"]))
    monkeypatch.setattr(hr, "create_table_artifact", lambda **kw: sent.setdefault(kw["key"], kw["table"]))
    monkeypatch.setattr(hr, "create_progress_artifact", lambda **kw: sent.setdefault(kw["key"], kw["progress"]))
    hr.publish_artifacts(report)
    assert sent[FLOWS_KEY] == flows_table(report.flows) and sent[FLOW_TRENDS] == flow_trends_table(report.flows)
    assert set(sent) == {*ARTIFACTS, "synthobs-overview", "synthobs-quality-gates"}
