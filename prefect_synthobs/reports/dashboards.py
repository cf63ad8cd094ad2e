"""Grafana dashboard, Prometheus alert rules, runbooks and scrape config, generated
from the metric catalog (pure functions; ``synthobs export-dashboards DIR``
writes them). The alerts themselves are ``reports.alerts``.

Every metric name comes from ``names`` with the configured prefix, so the
dashboards and alerts can never drift from what synthobs exports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from prefect_synthobs import catalog as names
from prefect_synthobs.reports.alerts import STUCK_AFTER_SECONDS, alerts
from prefect_synthobs.reports.alerts import metric_name as _m

RUNBOOK_DIR = "docs/runbooks"


def alert_rules(
    prefix: str = "synthobs", runbook_base: str = RUNBOOK_DIR, *, stuck_after_seconds: float = STUCK_AFTER_SECONDS
) -> dict[str, Any]:
    """A Prometheus rules file (as a dict: write it as YAML or JSON)."""
    return {
        "groups": [
            {
                "name": "synthobs",
                "rules": [
                    {
                        "alert": a.name,
                        "expr": a.expr,
                        "for": a.for_,
                        "labels": {"severity": a.severity},
                        "annotations": {
                            "summary": a.summary,
                            "description": a.description,
                            "runbook_url": f"{runbook_base.rstrip('/')}/{a.name}.md",
                        },
                    }
                    for a in alerts(prefix, stuck_after_seconds=stuck_after_seconds)
                ],
            }
        ]
    }


def runbooks(prefix: str = "synthobs", *, stuck_after_seconds: float = STUCK_AFTER_SECONDS) -> dict[str, str]:
    """``{file name: markdown}``, one runbook per alert."""
    out = {}
    for a in alerts(prefix, stuck_after_seconds=stuck_after_seconds):
        out[f"{a.name}.md"] = (
            f"# {a.name} ({a.severity})\n\n**Fires when:** `{a.expr}` holds for {a.for_}.\n\n"
            f"**Means:** {a.summary.replace('{{ $labels.', '<').replace(' }}', '>')}.\n\n"
            f"## What to do\n\n{a.runbook}\n"
        )
    return out


def _panel(
    pid: int,
    title: str,
    exprs: list[tuple[str, str]],
    x: int,
    y: int,
    unit: str = "short",
    kind: str = "timeseries",
    w: int = 12,
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(65 + i),
                "expr": e,
                "legendFormat": legend,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for i, (e, legend) in enumerate(exprs)
        ],
    }


# the Diagnostic report and the privacy-review scores, in a panel of their own
_VALIDITY_METRICS = "diagnostic|data_validity|data_structure|detection|disclosure_protection"


def panel_queries(prefix: str = "synthobs") -> list[tuple[str, list[tuple[str, str]], str]]:
    """``(row, [(expr, legend)], unit)`` for every panel, in order (also what tests evaluate)."""

    def m(name: str) -> str:
        return _m(prefix, name)

    f = 'flow=~"$flow"'
    return [
        (
            "Overview",
            [(f"sum by (flow, state) (increase({m(names.FLOW_RUNS_TOTAL)}{{{f}}}[$__range]))", "{{flow}} {{state}}")],
            "short",
        ),
        (
            "Overview",
            [
                (
                    f"histogram_quantile(0.95, sum by (le, flow) "
                    f"(rate({m(names.FLOW_RUN_DURATION)}_bucket{{{f}}}[$__rate_interval])))",
                    "p95 {{flow}}",
                )
            ],
            "s",
        ),
        (
            "Overview",
            [
                (
                    f"sum by (flow, error_type) (increase({m(names.ERRORS_TOTAL)}{{{f}}}[$__range]))",
                    "{{flow}} {{error_type}}",
                )
            ],
            "short",
        ),
        ("Overview", [(f"{m(names.GENERATION_ROWS_PER_SECOND)}{{{f}}}", "{{flow}} {{table}}")], "short"),
        ("Overview", [(f"time() - {m(names.LAST_SUCCESS)}{{{f}}}", "{{flow}}")], "s"),
        (
            "Overview",
            [
                (f"max by (flow) ({m(names.FLOW_RUNS_IN_PROGRESS)}{{{f}}})", "{{flow}} in progress"),
                (f"max by (flow) ({m(names.FLOW_RUN_OLDEST_IN_PROGRESS_AGE)}{{{f}}}) / 60", "{{flow}} oldest (min)"),
            ],
            "short",
        ),
        ("Quality", [(f"{m(names.QUALITY_SCORE)}", "{{table}} {{metric}} {{model_type}}")], "percentunit"),
        (
            "Quality",
            [(f'{m(names.QUALITY_SCORE)}{{metric=~"{_VALIDITY_METRICS}"}}', "{{table}} {{metric}} {{model_type}}")],
            "percentunit",
        ),
        (
            "Quality",
            [
                (
                    f"sum by (table, gate, result) (increase({m(names.QUALITY_GATE_CHECKS_TOTAL)}[$__range]))",
                    "{{table}} {{gate}} {{result}}",
                )
            ],
            "short",
        ),
        ("Training", [(f"{m(names.TRAINING_LOSS)}{{{f}}}", "{{flow}} {{loss_type}}")], "short"),
        (
            "Training",
            [
                (
                    f"histogram_quantile(0.95, sum by (le, flow, model_type) "
                    f"(rate({m(names.TRAINING_EPOCH_DURATION)}_bucket{{{f}}}[$__rate_interval])))",
                    "p95 {{flow}} {{model_type}}",
                )
            ],
            "s",
        ),
        (
            "Training",
            [
                (
                    f"sum by (flow, model_type, status) (increase({m(names.TRAINING_FITS_TOTAL)}{{{f}}}[$__range]))",
                    "{{flow}} {{model_type}} {{status}}",
                )
            ],
            "short",
        ),
        (
            "Training",
            [
                (
                    f"sum by (flow, model_type, check) (increase({m(names.TRAINING_ALERTS_TOTAL)}{{{f}}}[$__range]))",
                    "{{flow}} {{model_type}} {{check}}",
                )
            ],
            "short",
        ),
        ("GPU", [(f"{m(names.GPU_UTILIZATION)}", "GPU {{gpu}} {{model}}")], "percentunit"),
        (
            "GPU",
            [(f"{m(names.GPU_MEMORY_USED)}", "used {{gpu}}"), (f"{m(names.GPU_MEMORY_TOTAL)}", "total {{gpu}}")],
            "bytes",
        ),
        ("GPU", [(f"{m(names.GPU_POWER)}", "GPU {{gpu}}"), (f"{m(names.GPU_TEMPERATURE)}", "°C {{gpu}}")], "watt"),
        ("GPU", [(f"rate({m(names.GPU_ENERGY_TOTAL)}[$__rate_interval])", "J/s {{gpu}}")], "watt"),
        ("Privacy", [(f"{m(names.PRIVACY_EPSILON_REMAINING)}", "{{dataset}}")], "short"),
        (
            "Privacy",
            [
                (
                    f"sum by (dataset, result) (increase({m(names.PRIVACY_BUDGET_CHECKS_TOTAL)}[$__range]))",
                    "{{dataset}} {{result}}",
                )
            ],
            "short",
        ),
    ]


def grafana_dashboard(prefix: str = "synthobs") -> dict[str, Any]:
    """A Grafana dashboard (JSON model) with overview, quality, training, GPU and privacy rows."""
    panels: list[dict[str, Any]] = []
    y, pid, row, col = 0, 1, None, 0
    for row_name, exprs, unit in panel_queries(prefix):
        if row_name != row:
            if col:
                y += 8
            panels.append(
                {
                    "id": pid,
                    "type": "row",
                    "title": row_name,
                    "collapsed": False,
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                    "panels": [],
                }
            )
            pid, y, col, row = pid + 1, y + 1, 0, row_name
        panels.append(_panel(pid, _title(exprs[0][0], row_name), exprs, 12 * col, y, unit))
        pid += 1
        col = 1 - col
        if col == 0:
            y += 8
    return {
        "title": "synthobs: synthetic-data pipelines",
        "uid": "synthobs-overview",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "tags": ["synthobs", "prefect"],
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "1m",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
                {
                    "name": "flow",
                    "type": "query",
                    "label": "Flow",
                    "multi": True,
                    "includeAll": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": {"query": f"label_values({_m(prefix, names.FLOW_RUNS_TOTAL)}, flow)", "refId": "flows"},
                    "refresh": 2,
                },
            ]
        },
        "panels": panels,
    }


def _title(expr: str, row: str) -> str:
    for key, title in (
        ("epoch_duration", "Epoch duration p95"),  # before "duration_seconds": an epoch is not a run
        ("training_fits", "Training fits by status"),
        ("training_alerts", "Training alerts by check"),
        ("flow_runs_total", "Flow runs by state"),
        ("duration_seconds", "Run duration p95"),
        ("errors_total", "Errors by type"),
        ("rows_per_second", "Rows per second"),
        ("last_success", "Since last success"),
        ("in_progress", "Runs in progress"),
        ("disclosure_protection", "Diagnostic, detection and disclosure protection"),
        ("quality_score", "Quality scores"),
        ("gate_checks", "Quality gate checks"),
        ("training_loss", "Training loss"),
        ("utilization", "GPU utilisation"),
        ("memory_used", "GPU memory"),
        ("power", "GPU power and temperature"),
        ("energy", "GPU energy rate"),
        ("epsilon_remaining", "Privacy budget left"),
        ("budget_checks", "Privacy budget checks"),
    ):
        if key in expr:
            return title
    return row


def scrape_config(
    http_target: str = "127.0.0.1:9464",
    pushgateway_target: str = "127.0.0.1:9091",
    rules_file: str = "prometheus-rules.yml",
) -> dict[str, Any]:
    """An example Prometheus configuration: the http exporter and the Pushgateway."""
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [rules_file],
        "scrape_configs": [
            {"job_name": "synthobs", "static_configs": [{"targets": [http_target]}]},
            # honor_labels keeps the pushed job/instance labels instead of the gateway's own
            {"job_name": "pushgateway", "honor_labels": True, "static_configs": [{"targets": [pushgateway_target]}]},
        ],
    }


def export(
    directory: str | Path,
    prefix: str = "synthobs",
    runbook_base: str = "runbooks",
    *,
    stuck_after_seconds: float = STUCK_AFTER_SECONDS,
) -> list[Path]:
    """Write the dashboard, rules, scrape config and runbooks into ``directory``.

    ``runbook_base`` is where the alerts' ``runbook_url`` points: the exported
    ``runbooks/`` folder by default, or e.g. your repository's URL of it.
    ``stuck_after_seconds`` is the limit of ``SynthobsFlowRunStuck``.
    """
    out = Path(directory)
    (out / "runbooks").mkdir(parents=True, exist_ok=True)
    written = []
    files = {
        "grafana-dashboard.json": json.dumps(grafana_dashboard(prefix), indent=2),
        "prometheus-rules.yml": yaml.safe_dump(
            alert_rules(prefix, runbook_base, stuck_after_seconds=stuck_after_seconds), sort_keys=False, width=120
        ),
        "prometheus-scrape.yml": yaml.safe_dump(scrape_config(), sort_keys=False),
    }
    files.update(
        {f"runbooks/{name}": text for name, text in runbooks(prefix, stuck_after_seconds=stuck_after_seconds).items()}
    )
    for name, text in files.items():
        path = out / name
        path.write_text(text)
        written.append(path)
    return written
