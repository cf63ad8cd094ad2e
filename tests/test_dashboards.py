"""Generated Grafana dashboard, alert rules and runbooks, checked with Prometheus's own promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO, promtool, subprocess_env
from prefect_synthobs import names
from prefect_synthobs.dashboards import alert_rules, alerts, grafana_dashboard, panel_queries, runbooks

CATALOG = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str) and v.endswith(
    ("_total", "_seconds", "_ratio", "_bytes", "_watts", "_celsius", "_second", "_loss", "_score", "_remaining"))}


def test_export_command_writes_everything_and_promtool_accepts_it(tmp_path: Path) -> None:
    out = tmp_path / "dash"
    proc = subprocess.run([sys.executable, "-m", "prefect_synthobs.cli", "export-dashboards", str(out)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"grafana-dashboard.json", "prometheus-rules.yml",
                                                "prometheus-scrape.yml", "runbooks"}
    check = subprocess.run([promtool(), "check", "rules", str(out / "prometheus-rules.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0 and f"SUCCESS: {len(alerts())} rules found" in check.stdout, check.stdout + check.stderr
    config = subprocess.run([promtool(), "check", "config", str(out / "prometheus-scrape.yml")],
                            capture_output=True, text=True)
    assert config.returncode == 0, config.stdout + config.stderr
    scrape = yaml.safe_load((out / "prometheus-scrape.yml").read_text())
    assert any(job.get("honor_labels") for job in scrape["scrape_configs"] if job["job_name"] == "pushgateway")
    # every runbook an alert links to exists
    for rule in yaml.safe_load((out / "prometheus-rules.yml").read_text())["groups"][0]["rules"]:
        assert (out / rule["annotations"]["runbook_url"]).is_file()
        assert rule["labels"]["severity"] in {"P1", "P2", "P3", "P4"}


def test_promtool_unit_tests_fire_every_alert_and_stay_quiet(tmp_path: Path) -> None:
    (tmp_path / "prometheus-rules.yml").write_text(yaml.safe_dump(alert_rules(runbook_base="runbooks")))
    shutil.copy(REPO / "tests" / "promtool" / "alerts_test.yml", tmp_path / "alerts_test.yml")
    tested = set(re.findall(r"alertname: (\w+)", (tmp_path / "alerts_test.yml").read_text()))
    assert tested == {a.name for a in alerts()}  # no alert without a firing test
    proc = subprocess.run([promtool(), "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_shipped_runbooks_match_the_catalog() -> None:
    shipped = {p.name: p.read_text() for p in (REPO / "docs" / "runbooks").glob("*.md")}
    assert shipped == runbooks(), "regenerate docs/runbooks with synthobs export-dashboards"


def test_grafana_dashboard_uses_only_catalog_metrics() -> None:
    dash = grafana_dashboard()
    json.dumps(dash)  # serialisable
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) == len(panel_queries())
    assert {p["title"] for p in dash["panels"] if p["type"] == "row"} == {"Overview", "Quality", "Training", "GPU",
                                                                         "Privacy"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        for target in panel["targets"]:
            used = set(re.findall(r"synthobs_([a-z_]+?)(?:_bucket)?\b", target["expr"]))
            assert used and used <= CATALOG, (target["expr"], used - CATALOG)
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "flow"}
    custom = grafana_dashboard("acme")  # the configured prefix flows through
    assert "acme_flow_runs_total" in json.dumps(custom) and "synthobs_" not in json.dumps(custom["panels"])
