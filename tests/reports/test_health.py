"""Health report: artifacts read back from the server over a store filled by real observed runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

import prefect_synthobs as so
from conftest import REPO, subprocess_env
from prefect_synthobs import catalog as names
from prefect_synthobs.gpu.nvml import GpuReading
from prefect_synthobs.gpu.sampler import sample_rows
from prefect_synthobs.reports.health import COLUMNS as REPORT_COLUMNS
from prefect_synthobs.reports.health import bar, build_report, escape, overview_markdown, window

sys.path.insert(0, str(REPO / "flows"))
import health_report as hr
import synthetic_pipeline as demo

pytestmark = pytest.mark.usefixtures("prefect_server")

HOSTILE = "<b>|x"  # a table name (Prefect bans < and > in flow names)
HOSTILE_FLOW = "x|y *z*"


def artifacts_of(flow_run_id: Any) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def table_of(artifact: Any) -> list[dict[str, Any]]:
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


@pytest.fixture
def filled_store(store_dir: Path) -> Path:
    demo.synthetic_pipeline(n_real=1000, n_synthetic=2000, epochs=2)

    @so.observe(kind="generation", table="customers")
    @flow(name=HOSTILE_FLOW)
    def broken() -> None:
        so.record_quality("overall", 0.2, table=HOSTILE, threshold=0.5)
        raise RuntimeError("generator diverged for alice@example.com")

    broken(return_state=True)

    attempts: list[int] = []

    @task(retries=1, retry_delay_seconds=0)
    def flaky() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("first attempt")
        return 1

    @task
    def doomed() -> None:
        raise ValueError("bad row for bob@example.com")

    @so.observe(kind="generation", table="customers")
    @flow(name="task-failures")
    def completes_despite_a_failed_task() -> int:
        doomed(return_state=True)  # its failure is handled: the flow completes
        return flaky()

    assert completes_despite_a_failed_task(return_state=True).is_completed()
    now = datetime.now(timezone.utc)
    readings = [
        GpuReading(0, "GPU-a", "Fake H100", utilization=u, memory_used_bytes=m, energy_counter_j=1.0)
        for u, m in ((0.5, 10), (0.9, 30))
    ]
    for k, r in enumerate(readings):
        so.HealthStore(str(store_dir)).write(
            names.GPU_SAMPLES,
            sample_rows([r], {"GPU-a": 100.0}, time=now - timedelta(seconds=10 - k), host="h1", run_ids=[]),
        )
    from prefect_synthobs.instrument.instrumentation import get_runtime

    get_runtime().recorder.flush()
    return store_dir


def test_report_artifacts_match_the_store(filled_store: Path) -> None:
    state = hr.health_report(store_url=str(filled_store), window_hours=1, return_state=True)
    assert state.is_completed()
    arts = artifacts_of(state.state_details.flow_run_id)
    assert set(arts) >= {
        "synthobs-overview",
        "synthobs-flows",
        "synthobs-flow-trends",
        "synthobs-slowest-tasks",
        "synthobs-failures",
        "synthobs-failed-tasks",
        "synthobs-quality",
        "synthobs-gpu",
        "synthobs-privacy",
        "synthobs-quality-gates",
    }
    store = so.HealthStore(str(filled_store))
    runs = store.read(names.FLOW_RUNS)

    flows = {r["flow"]: r for r in table_of(arts["synthobs-flows"])}
    assert flows["synthetic-pipeline"]["runs"] == int((runs.flow_name == "synthetic-pipeline").sum()) == 1
    assert flows[escape(HOSTILE_FLOW)]["failed"] == 1 and flows[escape(HOSTILE_FLOW)]["success"] == "0.0 %"
    assert HOSTILE_FLOW not in json.dumps(table_of(arts["synthobs-flows"]))  # escaped, cannot break a table
    trends = {r["flow"]: r for r in table_of(arts["synthobs-flow-trends"])}  # the sparklines, in a table of their own
    assert set(trends) == set(flows) and all(set(r) == {"flow", "success/day", "p95/day"} for r in trends.values())
    tables = {r["table"] for r in table_of(arts["synthobs-quality"])}
    assert escape(HOSTILE) in tables and HOSTILE not in tables

    # a failed task inside a completed flow: counted per flow and listed, not only in task_runs
    assert flows["task-failures"]["failed"] == 0
    assert (flows["task-failures"]["task fails"], flows["task-failures"]["retries"]) == (1, 1)
    (failed_task,) = table_of(arts["synthobs-failed-tasks"])
    assert (failed_task["flow"], failed_task["task"], failed_task["error_type"]) == (
        "task-failures",
        "doomed",
        "ValueError",
    )
    assert "bob@example.com" not in failed_task["error_message"]
    assert "1 task runs failed, 1 retried" in arts["synthobs-overview"].data

    failures = table_of(arts["synthobs-failures"])
    assert len(failures) == 1 and failures[0]["error_type"] == "RuntimeError"
    assert "alice@example.com" not in failures[0]["error_message"]  # redacted in the store already

    quality = store.read(names.QUALITY_CHECKS)
    gated = quality[quality.threshold.notna()]
    progress = arts["synthobs-quality-gates"].data
    assert float(progress) == pytest.approx(100 * gated.passed.astype(bool).mean(), abs=0.01)
    # one row per model (the SDV pipeline scores a challenger beside the gated model): each its model's mean
    shown = sorted(
        float(r["average"])
        for r in table_of(arts["synthobs-quality"])
        if r["metric"] == "overall" and r["table"] == "customers"
    )
    overall = quality[(quality.metric == "overall") & (quality.table_name == "customers")]
    expected = sorted(overall.groupby(overall.model_id.astype(object).fillna(""), sort=False).score.mean())
    assert shown == pytest.approx(expected, abs=1e-4)

    privacy = table_of(arts["synthobs-privacy"])
    ledger = store.read(names.PRIVACY_LEDGER)
    assert privacy[0]["dataset"] == "customers" and privacy[0]["used"] == pytest.approx(ledger.spent.max())

    gpus = table_of(arts["synthobs-gpu"])
    assert gpus[0]["util_mean"] == pytest.approx(0.7) and gpus[0]["util_max"] == 0.9
    assert gpus[0]["memory_peak_bytes"] == 30 and gpus[0]["energy_j"] == 200.0

    overview = arts["synthobs-overview"].data
    assert f"{len(runs)} runs" in overview and "█" in overview and escape("generation") in overview


def test_empty_window_gives_a_clear_dashboard(store_dir: Path) -> None:
    old = datetime.now(timezone.utc) - timedelta(days=3)  # the store exists, its only run is days before the window
    so.HealthStore(str(store_dir)).write(
        names.FLOW_RUNS, [{"event_id": "e", "flow_run_id": "r", "flow_name": "f", "start_time": old}]
    )
    state = hr.health_report(store_url=str(store_dir), window_hours=2, return_state=True)
    assert state.is_completed()
    arts = artifacts_of(state.state_details.flow_run_id)
    assert "No runs in this window" in arts["synthobs-overview"].data
    assert table_of(arts["synthobs-flows"]) == [{"status": "No flow runs in this window."}]
    gpu = table_of(arts["synthobs-gpu"])
    assert list(gpu[0]) == ["status"] and "no GPU" in gpu[0]["status"]  # a real column, not an empty header
    gates = arts["synthobs-quality-gates"]
    assert float(gates.data) == 0 and "No quality gate was checked" in gates.description  # 0 means none


def test_a_wrong_store_path_fails_the_report_instead_of_emptying_the_dashboards(tmp_path: Path) -> None:
    (tmp_path / "not-a-store").mkdir()
    for path in (tmp_path / "missing", tmp_path / "not-a-store"):
        state = hr.health_report(store_url=str(path), return_state=True)
        assert state.is_failed()
        with pytest.raises(FileNotFoundError, match="no health store at"):
            state.result()
        published = [k for k in artifacts_of(state.state_details.flow_run_id) if k]  # (Prefect's result: no key)
        assert not published  # nothing published over the real dashboards


@pytest.mark.slow
def test_cli_report_text_and_json(filled_store: Path) -> None:
    env = subprocess_env()
    cli = [sys.executable, "-m", "prefect_synthobs.cli", "report", "--store", str(filled_store)]
    out = subprocess.run([*cli, "--json", "--since", "2h"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert data["totals"]["runs"] == len(so.HealthStore(str(filled_store)).read(names.FLOW_RUNS))
    text = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "synthetic-pipeline" in text.stdout and HOSTILE_FLOW in text.stdout
    bad = subprocess.run([*cli, "--since", "yesterday-ish"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "duration like 24h" in bad.stderr
    tables = subprocess.run([*cli, "--tables"], env=env, capture_output=True, text=True, timeout=120)
    count = len(so.HealthStore(str(filled_store)).read(names.FLOW_RUNS))
    assert tables.returncode == 0 and re.search(rf"flow_runs\s+{count:,}\s+rows", tables.stdout), tables.stdout
    missing = [*cli[:-1], str(filled_store / "no-such-store")]
    typo = subprocess.run(missing, env=env, capture_output=True, text=True, timeout=120)
    assert typo.returncode == 2 and "no health store at" in typo.stderr and "no-such-store" in typo.stderr


def test_runs_of_keeps_a_run_and_its_subflows_only() -> None:
    from prefect_synthobs.cli import runs_of

    runs = pd.DataFrame(
        {
            "flow_run_id": ["root", "child", "grandchild", "other", "others-child"],
            "parent_flow_run_id": [None, "root", "child", None, "other"],
        }
    )
    assert list(runs_of(runs, "root").flow_run_id) == ["root", "child", "grandchild"]
    assert runs_of(runs, "nobody").empty


def test_pure_helpers() -> None:
    assert escape("<b>|x\nnext") == "\\<b\\>\\|x next"
    assert bar(0.5, 4) == "██░░" and bar(None, 3) == "···" and bar(1.7, 2) == "██"
    until = datetime(2026, 11, 22, tzinfo=timezone.utc)
    assert window("90m", until)[0] == until - timedelta(minutes=90)
    assert window("2026-11-20", until)[0] == datetime(2026, 11, 20, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="since must be before the window's end"):
        window("2030-01-01", until)  # an inverted window is a mistake, not an empty report
    empty = {t: pd.DataFrame(columns=c) for t, c in REPORT_COLUMNS.items()}
    report = build_report(empty, until - timedelta(hours=1), until)
    assert report.empty and "No runs in this window" in overview_markdown(report)


def test_prefect_yaml_deploys_the_health_report() -> None:
    import yaml

    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (deployment,) = [d for d in config["deployments"] if d["name"] == "health-report-hourly"]
    path, func = deployment["entrypoint"].split(":")
    assert (REPO / path).is_file() and getattr(hr, func) is hr.health_report
    assert deployment["schedules"][0]["cron"] == "0 * * * *"
    assert set(deployment["parameters"]) <= set(hr.health_report.parameters.properties)
    # serving must not rewrite a deployed one: serve() upserts the deployment of its name
    assert hr.SERVED_NAME not in {d["name"] for d in config["deployments"]}
    import importlib

    for each in config["deployments"]:  # the maintenance and reconcile flows too: each entrypoint loads
        path, func = each["entrypoint"].split(":")
        module = importlib.import_module(Path(path).stem)
        assert set(each["parameters"]) <= set(getattr(module, func).parameters.properties), each["name"]


def test_the_script_takes_its_options_and_rejects_unknown_ones(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from report_history import fill_history

    fill_history(str(store_dir), datetime.now(timezone.utc), days=2)
    report = hr.main(["--once", "--store", str(store_dir), "--window-hours", "48", "--trend-days", "3"])
    assert report is not None and report["totals"]["runs"] > 0
    assert len(report["trends"]["days"]) == 3  # at least 3 days, and the 48 h window covers 3 UTC days
    with pytest.raises(SystemExit) as exit_:
        hr.main(["--bogus"])  # an unknown option is an error, not a silent hourly serve
    assert exit_.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
