"""Daily trends: read from a real store, checked against figures recomputed from the rows written."""

from __future__ import annotations

import base64
import re
import statistics
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from report_history import FLOWS, fill_history

import prefect_synthobs as so
from prefect_synthobs import catalog as names
from prefect_synthobs.reports import health as hr
from prefect_synthobs.reports.trends import (
    GPU_DAILY,
    MAX_TREND_DAYS,
    build_trends,
    daily_gpu,
    load_trend_frames,
    trend_days,
)

UNTIL = datetime(2026, 11, 20, 15, 30, tzinfo=timezone.utc)


@pytest.fixture
def history(tmp_path: Path) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    url = str(tmp_path / "store")
    return url, fill_history(url, UNTIL, days=14)


def by_day(rows: list[dict[str, Any]], time_key: str) -> dict[date, list[dict[str, Any]]]:
    out: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r[time_key].astimezone(timezone.utc).date()].append(r)
    return out


def test_trend_days() -> None:
    days = trend_days(UNTIL - timedelta(hours=24), UNTIL)
    assert len(days) == 14 and days[-1] == date(2026, 11, 20) and days[0] == date(2026, 11, 7)
    assert len(trend_days(UNTIL - timedelta(days=30), UNTIL)) == 31  # a longer window: all its days
    assert len(trend_days(UNTIL - timedelta(days=400), UNTIL)) == MAX_TREND_DAYS
    assert len(trend_days(UNTIL - timedelta(hours=1), UNTIL, minimum=1)) == 1
    with pytest.raises(ValueError, match="at least 1"):
        trend_days(UNTIL, UNTIL, minimum=0)


def test_trends_match_the_rows_written(history: tuple[str, dict[str, list[dict[str, Any]]]]) -> None:
    url, written = history
    days = trend_days(UNTIL - timedelta(hours=24), UNTIL)
    trends = build_trends(load_trend_frames(so.HealthStore(url), days, UNTIL), days)
    assert trends.days == days

    runs = by_day(written[names.FLOW_RUNS], "start_time")
    for flow_name in FLOWS:
        for i, day in enumerate(days):
            mine = [r for r in runs[day] if r["flow_name"] == flow_name]
            ok = sum(r["state_type"] == "COMPLETED" for r in mine) / len(mine)
            assert trends.success_rate[flow_name][i] == pytest.approx(ok, abs=1e-4)
            p95 = float(np.percentile([r["duration_s"] for r in mine], 95))
            assert trends.p95_duration_s[flow_name][i] == pytest.approx(p95, abs=1e-3)

    checks = by_day(written[names.QUALITY_CHECKS], "time")
    for i, day in enumerate(days):
        scores = [r["score"] for r in checks[day] if r["table_name"] == "transactions" and r["metric"] == "overall"]
        assert trends.quality["transactions"][i] == pytest.approx(statistics.mean(scores), abs=1e-4)
        overall = [r["score"] for r in checks[day] if r["table_name"] == "customers" and r["metric"] == "overall"]
        assert trends.quality_by_metric[("customers", "", "overall")][i] == pytest.approx(overall[0], abs=1e-4)

    samples = by_day(written[names.GPU_SAMPLES], "time")
    for i, day in enumerate(days):
        util = [r["utilization"] for r in samples[day] if r["gpu_index"] == 1]
        assert trends.gpu_util["gpu-node-1/gpu1"][i] == pytest.approx(statistics.mean(util), abs=1e-4)
        kwh = sum(r["energy_j"] for r in samples[day]) / 3.6e6
        assert trends.gpu_energy_kwh["gpu-node-1"][i] == pytest.approx(kwh, abs=1e-5)

    # privacy: the total spent at each day's end, carried over days without spending
    spends = sorted(written[names.PRIVACY_LEDGER], key=lambda r: r["time"])
    for i, day in enumerate(days):
        before = [r["spent"] for r in spends if r["time"].date() <= day]
        assert trends.privacy_used["customers"][i] == (before[-1] if before else None)
    assert trends.privacy_budget == {"customers": 5.0}


def test_the_busiest_flows_come_first(tmp_path: Path) -> None:
    store = so.HealthStore(str(tmp_path / "store"))
    now = UNTIL - timedelta(hours=1)
    store.write(
        names.FLOW_RUNS,
        [
            {
                "event_id": f"e{k}",
                "flow_run_id": f"r{k}",
                "flow_name": name,
                "state_type": "COMPLETED",
                "start_time": now,
            }
            for k, name in enumerate(["rare"] + ["busy"] * 3 + ["middle"] * 2)
        ],
    )
    days = trend_days(UNTIL - timedelta(hours=24), UNTIL)
    trends = build_trends(load_trend_frames(store, days, UNTIL), days)
    assert list(trends.success_rate) == ["busy", "middle", "rare"]
    assert trends.p95_duration_s["busy"][-1] is None  # no durations recorded: no point, not zero


def test_gpu_samples_are_reduced_day_by_day(history: tuple[str, dict[str, list[dict[str, Any]]]]) -> None:
    url, written = history
    days = trend_days(UNTIL - timedelta(hours=24), UNTIL)
    frames = load_trend_frames(so.HealthStore(url), days, UNTIL)
    assert names.GPU_SAMPLES not in frames  # the raw samples are never all in memory
    daily = frames[GPU_DAILY]
    assert len(daily) == len(days) * 2  # one row per day and device
    assert int(daily.samples.sum()) == len(written[names.GPU_SAMPLES])
    assert daily_gpu(pd.DataFrame()).empty


def test_a_flow_filter_applies_to_the_flow_trends(history: tuple[str, dict[str, list[dict[str, Any]]]]) -> None:
    url, _ = history
    days = trend_days(UNTIL - timedelta(hours=24), UNTIL)
    trends = build_trends(load_trend_frames(so.HealthStore(url), days, UNTIL, "train-ctgan"), days)
    assert list(trends.success_rate) == ["train-ctgan"]


def test_an_empty_store_has_no_trend_pictures(tmp_path: Path) -> None:
    store = so.HealthStore(str(tmp_path / "store"))
    since = UNTIL - timedelta(hours=24)
    report = hr.report_for(store, since, UNTIL)
    assert report.trends is not None and not report.trends.success_rate
    assert hr.trend_pictures(report.trends) == []
    assert "data:image" not in hr.overview_markdown(report)


def test_the_report_carries_trends_sparklines_and_pictures(
    history: tuple[str, dict[str, list[dict[str, Any]]]],
) -> None:
    url, _ = history
    since = UNTIL - timedelta(hours=24)
    report = hr.report_for(so.HealthStore(url), since, UNTIL)
    assert report.trends is not None
    flows = {r["flow"]: r for r in report.flows}
    spark = flows["train-ctgan"]["success_by_day"]
    assert len(spark) == 14 and set(spark) <= set("▁▂▃▄▅▆▇█·")
    assert next(r["score_by_day"] for r in report.quality if r["table"] == "transactions")[-1] in "▁▂"  # falling
    assert all(len(g["util_by_day"]) == 14 for g in report.gpus)

    markdown = hr.overview_markdown(report)
    images = re.findall(r"!\[([^\]]+)\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", markdown)
    alts = [alt for alt, _ in images]
    assert alts[:5] == [
        "Success rate per flow per day",
        "p95 duration per flow per day (s)",
        "Overall quality score per table and model per day",
        "GPU utilisation per device per day",
        "GPU energy per host per day (kWh)",
    ]
    assert alts[5].startswith("Privacy budget used per dataset")
    first = base64.b64decode(images[0][1]).decode()
    assert all(name in first for name in FLOWS)
    assert "Trends, 14 days to 2026-11-20" in markdown
    assert report.as_dict()["trends"]["days"][-1] == "2026-11-20"

    without = hr.report_for(so.HealthStore(url), since, UNTIL, days=None)
    assert without.trends is None and "success_by_day" not in without.flows[0]
    assert "data:image" not in hr.overview_markdown(without)


def test_hostile_names_stay_inside_the_pictures(tmp_path: Path) -> None:
    store = so.HealthStore(str(tmp_path / "store"))
    hostile = "<img src=x onerror=alert(1)>](javascript:x)"
    store.write(
        names.FLOW_RUNS,
        [
            {
                "event_id": "e",
                "flow_run_id": "r",
                "flow_name": hostile,
                "kind": "generation",
                "state_type": "COMPLETED",
                "start_time": UNTIL - timedelta(hours=1),
                "duration_s": 3.0,
            }
        ],
    )
    markdown = hr.overview_markdown(hr.report_for(store, UNTIL - timedelta(hours=24), UNTIL))
    assert "<img" not in markdown  # the name is only inside the (base64) pictures
    svg = base64.b64decode(re.findall(r"base64,([A-Za-z0-9+/=]+)", markdown)[0]).decode()
    assert "<img" not in svg and "&lt;img" in svg


def test_the_table_chart_follows_overall_only(tmp_path: Path) -> None:
    store = so.HealthStore(str(tmp_path / "store"))
    rows = [
        {"event_id": f"o{d}", "time": UNTIL - timedelta(days=d), "table_name": "t", "metric": "overall", "score": 0.9}
        for d in (0, 1)
    ]
    # a check where lower is better, only on the last day: the table's line must not move
    rows.append({"event_id": "x", "time": UNTIL, "table_name": "t", "metric": "exact_match_rate", "score": 0.0})
    store.write(names.QUALITY_CHECKS, [{**r, "time": r["time"] - timedelta(minutes=1)} for r in rows])
    days = trend_days(UNTIL - timedelta(hours=24), UNTIL)
    trends = build_trends(load_trend_frames(store, days, UNTIL), days)
    assert trends.quality["t"][-2:] == [0.9, 0.9]
    assert trends.quality_by_metric[("t", "", "exact_match_rate")][-1] == 0.0  # "": no model named


def test_a_flow_filter_covers_quality_and_privacy(history: tuple[str, dict[str, list[dict[str, Any]]]]) -> None:
    url, _ = history
    since = UNTIL - timedelta(hours=24)
    store = so.HealthStore(url)
    mine = hr.report_for(store, since, UNTIL, "quality-check")
    assert mine.quality and mine.gate_pass_rate is not None and not mine.privacy  # its checks, no spends
    other = hr.report_for(store, since, UNTIL, "train-ctgan")
    assert not other.quality and other.gate_pass_rate is None and not other.privacy
    assert other.trends is not None and not other.trends.quality and not other.trends.privacy_used


def test_a_budget_shows_on_a_day_without_spending(history: tuple[str, dict[str, list[dict[str, Any]]]]) -> None:
    url, written = history
    last_spend = max(r["time"] for r in written[names.PRIVACY_LEDGER])
    since = last_spend + timedelta(minutes=1)  # a window after the last spend
    report = hr.report_for(so.HealthStore(url), since, since + timedelta(hours=1), days=None)
    (budget,) = report.privacy
    assert budget["spent_in_window"] == 0 and budget["used"] == max(r["spent"] for r in written[names.PRIVACY_LEDGER])
    assert budget["budget"] == 5.0


def test_the_terminal_report_fits_100_columns_without_cutting_names_or_sparklines(
    history: tuple[str, dict[str, list[dict[str, Any]]]],
) -> None:
    from rich.console import Console

    url, _ = history
    report = hr.report_for(so.HealthStore(url), UNTIL - timedelta(hours=24), UNTIL)
    console = Console(width=100, record=True, color_system=None)
    hr.render_text(report, console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "…" not in text  # nothing cut
    for row in report.flows:
        assert row["flow"] in text and row["success_by_day"] in text and row["p95_by_day"] in text
    for row in report.quality + report.gpus:
        assert row.get("score_by_day", row.get("util_by_day")) in text
    for row in report.flows:  # shares as percentages, not 0.636
        assert hr.display_value("success_rate", row["success_rate"]).endswith(" %")
        assert re.search(rf"│\s+{re.escape(hr.display_value('success_rate', row['success_rate']))} │", text)
    assert "kWh" in text and "GiB" in text  # GPU energy and memory in units people read
    assert "Slowest tasks: No task runs in this window." in text  # an empty section says so


def test_display_values() -> None:
    assert hr.display_value("success_rate", 0.6364) == "63.6 %"
    assert hr.display_value("energy_j", 3.6e6) == "1.00 kWh"
    assert hr.display_value("memory_peak_bytes", 40 * 2**30) == "40.0 GiB"
    assert hr.display_value("last_success", "2026-11-24T01:10:24.628813+00:00") == "11-24 01:10"
    assert hr.display_value("trend", 0.0065) == "+0.0065"
    assert hr.display_value("rows", 160007) == "160,007"
    assert hr.display_value("p95_duration_s", 78.1439) == "78.14"
    assert hr.display_value("error_type", float("nan")) == ""
