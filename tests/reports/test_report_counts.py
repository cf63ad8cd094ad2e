"""Every reader counts what ``HealthStore.read`` counts: one row per run, on stores holding runs twice.

A run reaches the store twice when a late flush and a reconciliation both wrote it (a hook row and
an ``api`` row, different ``event_id``), when Dask ran a task twice (two hook rows), or when the
same file content landed twice (a compaction racing a reader: the same ``event_id``). Generated
stores hold all of these, split over files at random; the report (totals, per flow, per task,
daily trends), ``synthobs report`` (terminal and ``--json``) and ``examples/read_store.py`` must
agree with ``read()``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prefect_synthobs as so
from conftest import REPO, subprocess_env
from prefect_synthobs import catalog as names
from prefect_synthobs import cli
from prefect_synthobs.health.tables import SOURCE_API, SOURCE_HOOK, schema_for
from prefect_synthobs.reports.health import report_for
from prefect_synthobs.reports.trends import trend_days

FLOWS = ["train", "generate", "check"]
TASKS = ["load", "fit", "sample", "score"]
STATES = ["COMPLETED", "COMPLETED", "FAILED", "CRASHED", "CANCELLED"]
WINDOW = timedelta(hours=72)
TREND_DAYS = 5
FLOW_ATTEMPTS = "run_count" in schema_for(names.FLOW_RUNS).names  # newer stores say how many attempts a flow took
DUPLICATES = st.lists(st.sampled_from(["same_event", "api", "hook_again"]), max_size=2)


@dataclass
class Written:
    rows: dict[str, list[dict[str, Any]]]
    files: dict[str, list[int]]  # the file each row goes to


def _row(table: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(schema_for(table).names)
    row.update(values)
    return row


def _versions(draw: Any, table: str, first: dict[str, Any], counter: list[int]) -> list[dict[str, Any]]:
    """The run's first row and the rows that wrote it again."""
    rows = [first]
    for k, kind in enumerate(draw(DUPLICATES), 1):
        if kind == "same_event":
            rows.append(dict(rows[-1]))
            continue
        counter[0] += 1
        again = {
            **first,
            "event_id": f"e{counter[0]}",
            "state_type": draw(st.sampled_from(STATES)),
            "end_time": first["end_time"] + timedelta(seconds=k),  # a later end: the last hook row wins
            "source": SOURCE_API if kind == "api" else SOURCE_HOOK,
        }
        if table == names.TASK_RUNS:
            again["run_count"] = draw(st.integers(1, 3))
        else:
            again["rows"] = draw(st.integers(0, 50))
        rows.append(again)
    return rows


@st.composite
def stores(draw: Any) -> Written:
    now = datetime.now(timezone.utc)
    counter = [0]
    rows: dict[str, list[dict[str, Any]]] = {names.FLOW_RUNS: [], names.TASK_RUNS: []}
    for f in range(draw(st.integers(1, 6))):
        flow = draw(st.sampled_from(FLOWS))
        start = now - timedelta(hours=draw(st.floats(1.0, 70.0)))
        counter[0] += 1
        first = _row(
            names.FLOW_RUNS,
            event_id=f"e{counter[0]}",
            flow_run_id=f"f{f}",
            flow_name=flow,
            kind="generation",
            state_type=draw(st.sampled_from(STATES)),
            start_time=start,
            end_time=start + timedelta(minutes=5),
            duration_s=draw(st.floats(0.1, 600.0)),
            rows=draw(st.integers(0, 50)),
            source=draw(st.sampled_from([SOURCE_HOOK, SOURCE_API])),
        )
        if FLOW_ATTEMPTS:
            first["run_count"] = draw(st.integers(1, 3))
        rows[names.FLOW_RUNS] += _versions(draw, names.FLOW_RUNS, first, counter)
        for t in range(draw(st.integers(0, 4))):
            counter[0] += 1
            task_start = start + timedelta(seconds=t)
            first_task = _row(
                names.TASK_RUNS,
                event_id=f"e{counter[0]}",
                task_run_id=f"f{f}-t{t}",
                flow_run_id=f"f{f}",
                flow_name=flow,
                task_name=draw(st.sampled_from(TASKS)),
                state_type=draw(st.sampled_from(STATES)),
                start_time=task_start,
                end_time=task_start + timedelta(seconds=2),
                duration_s=draw(st.floats(0.01, 60.0)),
                run_count=draw(st.integers(1, 3)),
                source=draw(st.sampled_from([SOURCE_HOOK, SOURCE_API])),
            )
            rows[names.TASK_RUNS] += _versions(draw, names.TASK_RUNS, first_task, counter)
    n_files = draw(st.integers(1, 4))
    files = {table: [draw(st.integers(0, n_files - 1)) for _ in table_rows] for table, table_rows in rows.items()}
    return Written(rows, files)


def write(root: Path, written: Written) -> so.HealthStore:
    store = so.HealthStore(str(root))
    for table, table_rows in written.rows.items():
        for index in sorted(set(written.files[table])):
            chunk = [r for r, f in zip(table_rows, written.files[table], strict=True) if f == index]
            store.write(table, chunk)
    return store


def expected(store: so.HealthStore, since: datetime, until: datetime) -> dict[str, Any]:
    """What ``read()`` says about the window: the numbers every reader must show."""
    runs = store.read(names.FLOW_RUNS)
    tasks = store.read(names.TASK_RUNS)
    assert runs.flow_run_id.is_unique and tasks.task_run_id.is_unique  # read(): one row per run
    runs = runs[(runs.start_time >= since) & (runs.start_time < until)]
    tasks = tasks[(tasks.start_time >= since) & (tasks.start_time < until)]
    task_failed = tasks.state_type.isin(["FAILED", "CRASHED"])
    per_flow = {}
    for flow, group in runs.groupby("flow_name"):
        flow_tasks = tasks[tasks.flow_name == flow]
        per_flow[flow] = {
            "runs": len(group),
            "failed": int((group.state_type != "COMPLETED").sum()),
            "failed_tasks": int(flow_tasks.state_type.isin(["FAILED", "CRASHED"]).sum()),
            "retried_tasks": int((flow_tasks.run_count > 1).sum()),
        }
    return {
        "totals": {
            "runs": len(runs),
            "failed": int((runs.state_type != "COMPLETED").sum()),
            "rows": int(runs["rows"].fillna(0).sum()),
            "tasks": len(tasks),
            "failed_tasks": int(task_failed.sum()),
            "retried_tasks": int((tasks.run_count > 1).sum()),
        },
        "flows": per_flow,
        "task_runs": {(f, t): len(g) for (f, t), g in tasks.groupby(["flow_name", "task_name"])},
        "runs": runs,
    }


def expected_success_by_day(runs: pd.DataFrame, until: datetime) -> dict[str, list[float | None]]:
    days = trend_days(until - WINDOW, until, TREND_DAYS)
    out: dict[str, list[float | None]] = {}
    for flow, group in runs.groupby("flow_name"):
        assert isinstance(flow, str)
        by_day = group.assign(day=group.start_time.dt.date).groupby("day")
        rates = {d: float((g.state_type == "COMPLETED").mean()) for d, g in by_day}
        out[flow] = [round(rates[d], 4) if d in rates else None for d in days]
    return out


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
@given(written=stores())
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
def test_every_reader_counts_one_row_per_run(written: Written, capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        store = write(root, written)
        until = datetime.now(timezone.utc)
        since = until - WINDOW
        want = expected(store, since, until)

        report = report_for(store, since, until, days=TREND_DAYS)
        assert report.totals == want["totals"]
        assert {
            r["flow"]: {k: r[k] for k in ("runs", "failed", "failed_tasks", "retried_tasks")} for r in report.flows
        } == want["flows"]
        for row in report.slowest_tasks:
            assert row["runs"] == want["task_runs"][(row["flow"], row["task"])]
        assert len(report.slowest_tasks) == min(10, len(want["task_runs"]))
        failed_flow_runs = want["runs"][want["runs"].state_type.isin(["FAILED", "CRASHED", "CANCELLED"])]
        assert len(report.failures) == min(10, len(failed_flow_runs))
        if FLOW_ATTEMPTS:  # the report shows each failed run's attempts as read() has them
            assert sorted(r["attempts"] for r in report.failures) == sorted(failed_flow_runs.run_count)
        assert report.trends is not None
        assert report.trends.success_rate == expected_success_by_day(want["runs"], until)

        # `synthobs report --json` and the terminal's summary line
        capsys.readouterr()
        assert cli.main(["report", "--store", str(root), "--since", "72h", "--json", "--trend-days", "0"]) == 0
        assert json.loads(capsys.readouterr().out)["totals"] == want["totals"]
        assert cli.main(["report", "--store", str(root), "--since", "72h", "--trend-days", "0"]) == 0
        out = capsys.readouterr().out
        t = want["totals"]
        if t["runs"]:
            assert (
                f"{t['runs']} runs, {t['failed']} not completed, {t['rows']:,} rows generated, "
                f"{t['failed_tasks']} task runs failed, {t['retried_tasks']} retried"
            ) in out, out


@pytest.mark.slow  # heavy (>1.5 s of CPU): out of the fast tier
def test_examples_read_store_counts_what_read_counts(tmp_path: Path) -> None:
    """The pandas example (and the notebook, which reads the same way) shows read()'s counts."""
    now = datetime.now(timezone.utc)
    first = _row(
        names.TASK_RUNS,
        event_id="a",
        task_run_id="t1",
        flow_run_id="f",
        flow_name="flow",
        task_name="t",
        state_type="FAILED",
        start_time=now,
        end_time=now,
        duration_s=1.0,
        run_count=2,
        source=SOURCE_HOOK,
    )
    store = so.HealthStore(str(tmp_path / "store"))
    store.write(names.TASK_RUNS, [first])
    store.write(names.TASK_RUNS, [first, {**first, "event_id": "b", "source": SOURCE_API}])  # written thrice
    store.write(
        names.FLOW_RUNS,
        [
            _row(
                names.FLOW_RUNS,
                event_id="r",
                flow_run_id="f",
                flow_name="flow",
                state_type="FAILED",
                start_time=now,
                end_time=now,
                rows=0,
                source=SOURCE_HOOK,
            )
        ],
    )
    assert store.count(names.TASK_RUNS) == 3
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "read_store.py"), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
        check=True,
    )
    assert re.search(r"tasks retried: 1, failed: 1$", result.stdout, re.MULTILINE), result.stdout
