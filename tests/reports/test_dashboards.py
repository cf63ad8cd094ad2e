"""Generated Grafana dashboard, alert rules and runbooks, checked with Prometheus's own promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, promtool, subprocess_env
from prefect_synthobs import catalog as names
from prefect_synthobs.reports.dashboards import alert_rules, alerts, grafana_dashboard, panel_queries, runbooks

CATALOG = {
    v
    for k, v in vars(names).items()
    if k.isupper()
    and isinstance(v, str)
    and v.endswith(
        (
            "_total",
            "_seconds",
            "_ratio",
            "_bytes",
            "_watts",
            "_celsius",
            "_second",
            "_loss",
            "_score",
            "_remaining",
            "_progress",
        )
    )
}


@pytest.mark.slow
def test_export_command_writes_everything_and_promtool_accepts_it(tmp_path: Path) -> None:
    out = tmp_path / "dash"
    proc = subprocess.run(
        [sys.executable, "-m", "prefect_synthobs.cli", "export-dashboards", str(out)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {
        "grafana-dashboard.json",
        "prometheus-rules.yml",
        "prometheus-scrape.yml",
        "runbooks",
    }
    check = subprocess.run(
        [promtool(), "check", "rules", str(out / "prometheus-rules.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in check.stdout
    config = subprocess.run(
        [promtool(), "check", "config", str(out / "prometheus-scrape.yml")], capture_output=True, text=True
    )
    assert config.returncode == 0, config.stdout + config.stderr
    scrape = yaml.safe_load((out / "prometheus-scrape.yml").read_text())
    assert any(job.get("honor_labels") for job in scrape["scrape_configs"] if job["job_name"] == "pushgateway")
    # every runbook an alert links to exists
    for rule in yaml.safe_load((out / "prometheus-rules.yml").read_text())["groups"][0]["rules"]:
        assert (out / rule["annotations"]["runbook_url"]).is_file()
        assert rule["labels"]["severity"] in {"P1", "P2", "P3", "P4"}


@pytest.mark.slow
def test_promtool_unit_tests_fire_every_alert_and_stay_quiet(tmp_path: Path) -> None:
    (tmp_path / "prometheus-rules.yml").write_text(yaml.safe_dump(alert_rules(runbook_base="runbooks")))
    shutil.copy(REPO / "tests" / "promtool" / "alerts_test.yml", tmp_path / "alerts_test.yml")
    tested = set(re.findall(r"alertname: (\w+)", (tmp_path / "alerts_test.yml").read_text()))
    assert tested == {a.name for a in alerts()}  # no alert without a firing test
    proc = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_stuck_run_limit_flows_into_rules_and_runbooks() -> None:
    def stuck(rules: dict) -> dict:
        (rule,) = [r for r in rules["groups"][0]["rules"] if r["alert"] == "SynthobsFlowRunStuck"]
        return rule

    default = stuck(alert_rules())
    assert default["expr"] == "max by (flow) (synthobs_flow_run_oldest_in_progress_age_seconds) > 21600"
    assert default["labels"] == {"severity": "P2"} and default["for"] == "5m"
    assert default["annotations"]["summary"].endswith("for more than 6h")
    short = stuck(alert_rules("acme", stuck_after_seconds=600))
    assert short["expr"] == "max by (flow) (acme_flow_run_oldest_in_progress_age_seconds) > 600"
    assert short["annotations"]["summary"].endswith("for more than 10m")
    assert stuck(alert_rules(stuck_after_seconds=5400.5))["expr"].endswith("> 5400.5")
    assert "> 600` holds for 5m" in runbooks(stuck_after_seconds=600)["SynthobsFlowRunStuck.md"]
    with pytest.raises(ValueError, match="positive"):
        alerts(stuck_after_seconds=0)


def test_cli_export_dashboards_stuck_after(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from prefect_synthobs.cli import main

    for text, seconds in (("90m", 5400), ("2h", 7200), ("3600s", 3600), ("3600", 3600), ("1d", 86400)):
        out = tmp_path / text
        assert main(["export-dashboards", str(out), "--prefix", "synthobs", "--stuck-after", text]) == 0
        rules = yaml.safe_load((out / "prometheus-rules.yml").read_text())["groups"][0]["rules"]
        (rule,) = [r for r in rules if r["alert"] == "SynthobsFlowRunStuck"]
        assert rule["expr"].endswith(f"> {seconds}")
        assert f"> {seconds}` holds" in (out / "runbooks" / "SynthobsFlowRunStuck.md").read_text()
    assert main(["export-dashboards", str(tmp_path / "default"), "--prefix", "synthobs"]) == 0
    assert "> 21600" in (tmp_path / "default" / "prometheus-rules.yml").read_text()
    capsys.readouterr()
    for bad in ("0", "-1h", "6x", "soon"):
        with pytest.raises(SystemExit) as exit_info:
            main(["export-dashboards", str(tmp_path / "bad"), "--stuck-after", bad])
        assert exit_info.value.code == 2
        assert "--stuck-after" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export-dashboards", "--help"])
    assert "default: 6h" in " ".join(capsys.readouterr().out.split())


def test_shipped_runbooks_match_the_catalog() -> None:
    shipped = {p.name: p.read_text() for p in (REPO / "docs" / "runbooks").glob("*.md")}
    assert shipped == runbooks(), "regenerate docs/runbooks with synthobs export-dashboards"


def test_grafana_dashboard_uses_only_catalog_metrics() -> None:
    dash = grafana_dashboard()
    json.dumps(dash)  # serialisable
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) == len(panel_queries())
    assert {p["title"] for p in dash["panels"] if p["type"] == "row"} == {
        "Overview",
        "Quality",
        "Training",
        "GPU",
        "Privacy",
    }
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        for target in panel["targets"]:
            used = set(re.findall(r"synthobs_([a-z_]+?)(?:_bucket)?\b", target["expr"]))
            assert used and used <= CATALOG, (target["expr"], used - CATALOG)
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "flow"}
    custom = grafana_dashboard("acme")  # the configured prefix flows through
    assert "acme_flow_runs_total" in json.dumps(custom) and "synthobs_" not in json.dumps(custom["panels"])


def test_training_row_shows_epoch_duration_fits_alerts_and_losses() -> None:
    dash = grafana_dashboard()
    rows = [p for p in dash["panels"] if p["type"] == "row"]
    (training,) = [r for r in rows if r["title"] == "Training"]
    after = [r for r in rows if r["gridPos"]["y"] > training["gridPos"]["y"]]
    end = min((r["gridPos"]["y"] for r in after), default=10**6)
    panels = {
        p["title"]: p
        for p in dash["panels"]
        if p["type"] != "row" and training["gridPos"]["y"] < p["gridPos"]["y"] < end
    }
    assert set(panels) == {"Training loss", "Epoch duration p95", "Training fits by status", "Training alerts by check"}
    duration = panels["Epoch duration p95"]
    assert duration["fieldConfig"]["defaults"]["unit"] == "s"
    (expr,) = [t["expr"] for t in duration["targets"]]
    assert expr.startswith("histogram_quantile(0.95, ") and "synthobs_training_epoch_duration_seconds_bucket" in expr
    assert 'flow=~"$flow"' in expr and "by (le, flow, model_type)" in expr
    fits = panels["Training fits by status"]["targets"][0]["expr"]
    assert "synthobs_training_fits_total" in fits and "status" in fits
    checks = panels["Training alerts by check"]["targets"][0]["expr"]
    assert "synthobs_training_alerts_total" in checks and "check" in checks
    for panel in panels.values():  # no two panels overlap in the grid
        others = [p for p in panels.values() if p is not panel]
        box = panel["gridPos"]
        assert not any(
            o["gridPos"]["x"] < box["x"] + box["w"]
            and box["x"] < o["gridPos"]["x"] + o["gridPos"]["w"]
            and o["gridPos"]["y"] < box["y"] + box["h"]
            and box["y"] < o["gridPos"]["y"] + o["gridPos"]["h"]
            for o in others
        )
    (rule,) = [r for r in alert_rules("acme")["groups"][0]["rules"] if r["alert"] == "SynthobsTrainingCheckFailed"]
    assert "acme_training_alerts_total" in rule["expr"] and rule["labels"] == {"severity": "P3"}


HTTP_FLOW = """
import os, time
import prefect_synthobs as so
from prefect import flow

so.configure(metrics_mode="http", metrics_port=int(os.environ["PORT"]), store_url=os.environ["STORE"])

@so.observe(kind="training", model_type="ctgan", table="customers")
@flow(name="long-lived-worker")
def work(i: int) -> None:
    so.record_epoch(i, loss=1.0 / (i + 1))
    so.record_quality("overall", 0.9, threshold=0.8)

for i in range(3):
    work(i)
print("READY", flush=True)
time.sleep(600)
"""


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.slow
def test_real_prometheus_evaluates_every_dashboard_expression(tmp_path: Path, pushgateway: str) -> None:
    """A real Prometheus scrapes a synthobs http endpoint and the Pushgateway fed by a demo run; every
    dashboard query then evaluates through its HTTP API, and the ones the demo feeds return data."""
    import urllib.parse
    import urllib.request

    from conftest import free_port, wait_http

    binary = shutil.which("prometheus")
    if binary is None:
        raise AssertionError("prometheus is not installed: run the README's test command")
    port, prom_port = free_port(), free_port()
    worker = subprocess.Popen(
        [sys.executable, "-c", HTTP_FLOW],
        env=subprocess_env(PORT=str(port), STORE=str(tmp_path / "store-http")),
        stdout=subprocess.PIPE,
        text=True,
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "synthobs", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [pushgateway.removeprefix("http://")]}],
            },
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{prom_port}/api/v1/query?query="
    try:
        assert worker.stdout is not None and "READY" in worker.stdout.readline()
        demo = subprocess.run(
            [
                sys.executable,
                "-m",
                "prefect_synthobs.cli",
                "demo",
                "--rows",
                "2000",
                "--real-rows",
                "1000",
                "--epochs",
                "2",
                "--store",
                str(tmp_path / "store"),
            ],
            env=subprocess_env(
                PREFECT_INTEGRATIONS_SYNTHOBS_METRICS_MODE="pushgateway",
                PREFECT_INTEGRATIONS_SYNTHOBS_PUSHGATEWAY_URL=pushgateway,
            ),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
        wait_http(f"http://127.0.0.1:{prom_port}/-/ready")

        def query(expr: str) -> dict:
            with urllib.request.urlopen(api + urllib.parse.quote(expr), timeout=60) as resp:
                return json.loads(resp.read())

        deadline = time.monotonic() + 60
        wanted = [
            'synthobs_flow_runs_total{job="synthobs"}',
            'synthobs_flow_runs_total{job="generate-synthetic"}',
            'synthobs_quality_score{job="synthobs"}',
        ]
        while any(not query(w)["data"]["result"] for w in wanted):
            assert time.monotonic() < deadline, "Prometheus never scraped both targets"
            time.sleep(1)
        fed = (
            "flow_runs_total",
            "flow_run_duration_seconds",  # not the epoch-duration histogram: autolog feeds it, no demo here
            "rows_per_second",
            "last_success",
            "quality_score",
            "gate_checks",
            "training_loss",
            "epsilon_remaining",
            "budget_checks",
        )
        concrete = [
            (
                expr.replace("$flow", ".*").replace("$__range", "1h").replace("$__rate_interval", "1m"),
                any(key in expr for key in fed),
            )
            for _row, exprs, _unit in panel_queries()
            for expr, _legend in exprs
        ]
        # rate() needs two scrapes of a series: wait until the fed expressions have data (a fixed
        # sleep can be outrun by a loaded machine), then check every expression
        deadline = time.monotonic() + 120
        while (
            any(not query(expr)["data"]["result"] for expr, is_fed in concrete if is_fed)
            and time.monotonic() < deadline
        ):
            time.sleep(1)
        for expr, is_fed in concrete:
            body = query(expr)
            assert body["status"] == "success", (expr, body)
            if is_fed:
                assert body["data"]["result"], f"no data for {expr}"
    finally:
        prom.terminate()
        worker.terminate()
        prom.wait(30)
        worker.wait(30)
