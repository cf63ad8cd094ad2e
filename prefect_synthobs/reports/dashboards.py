"""Grafana dashboard, Prometheus alert rules, runbooks and scrape config, generated
from the metric catalog (pure functions; ``synthobs export-dashboards DIR``
writes them).

Every metric name comes from ``names`` with the configured prefix, so the
dashboards and alerts can never drift from what synthobs exports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prefect_synthobs import catalog as names

RUNBOOK_DIR = "docs/runbooks"
STUCK_AFTER_SECONDS = 6 * 3600.0  # default limit of SynthobsFlowRunStuck


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str  # P1 (page now) .. P4 (look when convenient)
    expr: str
    for_: str
    summary: str
    description: str
    runbook: str  # what to do, markdown


def _m(prefix: str, name: str) -> str:
    return f"{prefix}_{name}"


def _number(value: float) -> str:
    """A PromQL literal: ``21600`` rather than ``21600.0``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _duration(seconds: float) -> str:
    """``6h``, ``90m``, ``45s``: the largest whole unit, for alert texts."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{_number(seconds)}s"


def alerts(prefix: str = "synthobs", *, stuck_after_seconds: float = STUCK_AFTER_SECONDS) -> list[Alert]:
    """The alert catalog: what each alert means and what to do about it.

    ``stuck_after_seconds`` is how long a flow run may stay in progress before
    ``SynthobsFlowRunStuck`` fires (6 hours by default).

    Raises:
        ValueError: ``stuck_after_seconds`` is not positive.
    """
    if not stuck_after_seconds > 0:
        raise ValueError(f"stuck_after_seconds must be positive, got {stuck_after_seconds!r}")
    runs = _m(prefix, names.FLOW_RUNS_TOTAL)
    gate = _m(prefix, names.QUALITY_GATE_CHECKS_TOTAL)
    checks = _m(prefix, names.PRIVACY_BUDGET_CHECKS_TOTAL)
    remaining = _m(prefix, names.PRIVACY_EPSILON_REMAINING)
    spent = _m(prefix, names.PRIVACY_EPSILON_SPENT_TOTAL)
    util = _m(prefix, names.GPU_UTILIZATION)
    epochs = _m(prefix, names.TRAINING_EPOCHS_TOTAL)
    last_ok = _m(prefix, names.LAST_SUCCESS)
    oldest = _m(prefix, names.FLOW_RUN_OLDEST_IN_PROGRESS_AGE)
    stuck = _duration(stuck_after_seconds)
    return [
        Alert(
            "SynthobsPrivacyBudgetExceeded",
            "P1",
            f'sum by (dataset) (increase({checks}{{result="denied"}}[15m])) > 0',
            "0m",
            "A flow tried to spend more privacy budget than {{ $labels.dataset }} has left",
            "{{ $value }} privacy spend(s) on {{ $labels.dataset }} were denied in the last 15 minutes.",
            "A generation flow asked for more epsilon than the dataset's `PrivacyBudget` allows. Nothing was "
            "spent (the spend is refused atomically). Find the flow run from the "
            "`synthobs.privacy.budget.exceeded` event; decide with the data owner whether the budget may grow "
            "(edit the `PrivacyBudget` block) or the flow must stop requesting data from this dataset.",
        ),
        Alert(
            "SynthobsFlowFailureRateHigh",
            "P2",
            f'(sum by (flow) (increase({runs}{{state=~"FAILED|CRASHED"}}[1h])) '
            f"/ sum by (flow) (increase({runs}[1h]))) > 0.2 and sum by (flow) (increase({runs}[1h])) >= 3",
            "10m",
            "Flow {{ $labels.flow }} fails more than 20 % of its runs",
            "{{ $value | humanizePercentage }} of {{ $labels.flow }}'s runs in the last hour failed or crashed.",
            "Open the flow in the Prefect UI and look at the failed runs' logs; the `synthobs-failures` "
            "artifact of the health report lists recent errors. Crashes point at infrastructure (memory, "
            "workers), failures at code or data. Pause the deployment if it burns resources.",
        ),
        Alert(
            "SynthobsQualityGateFailures",
            "P2",
            f'sum by (table, gate) (increase({gate}{{result="fail"}}[1h])) > 0',
            "0m",
            "Quality gate {{ $labels.gate }} failed for table {{ $labels.table }}",
            "{{ $value }} check(s) of {{ $labels.gate }} on {{ $labels.table }} failed in the last hour.",
            "The synthetic table missed a threshold of its `QualityGates` block. Look at the `quality_checks` "
            "rows (health report: `synthobs-quality`) to see which score dropped and since when; retrain or "
            "roll back the generator. Do not ship the table: with policy `fail` the flow already failed.",
        ),
        Alert(
            "SynthobsNoRecentSuccess",
            "P2",
            f"time() - {last_ok} > 26 * 3600",
            "15m",
            "Flow {{ $labels.flow }} has not succeeded for more than 26 hours",
            "The last successful run of {{ $labels.flow }} was {{ $value | humanizeDuration }} ago.",
            "A scheduled flow (daily by default) stopped succeeding. Check its deployment's schedule and work "
            "pool in the Prefect UI, then its recent runs. Adjust the threshold for flows on other schedules.",
        ),
        Alert(
            "SynthobsFlowRunStuck",
            "P2",
            f"max by (flow) ({oldest}) > {_number(stuck_after_seconds)}",
            "5m",
            f"A run of flow {{{{ $labels.flow }}}} has been in progress for more than {stuck}",
            "The oldest run in progress of {{ $labels.flow }} started {{ $value | humanizeDuration }} ago.",
            "A flow run started and has not finished. Open the flow's running runs in the Prefect UI: is the "
            "run still making progress (recent logs, task runs, training epochs) or hanging? Check that the "
            "process running it is alive (the worker's host, container or pod) and read the worker's logs for "
            "crashes, OOM kills or lost infrastructure. The gauge comes from the process itself: with "
            "`metrics_mode=pushgateway` it is only pushed when a flow ends, so it cannot see a process that "
            "hangs; use `http` or `otlp` for this alert. To resolve, cancel the run (and fix what hung it); "
            "for flows that legitimately run longer, raise the limit "
            "(`synthobs export-dashboards --stuck-after 12h`).",
        ),
        Alert(
            "SynthobsPrivacyBudgetLow",
            "P3",
            f"{remaining} / ({remaining} + {spent}) < 0.2 and {remaining} > 0",
            "0m",
            "Privacy budget of {{ $labels.dataset }} is below 20 %",
            "Only {{ $value | humanizePercentage }} of {{ $labels.dataset }}'s privacy budget is left.",
            "Plan with the data owner: fewer or cheaper (smaller epsilon) generation runs, or a new budget "
            "period. The `synthobs-privacy` artifact shows the ledger.",
        ),
        Alert(
            "SynthobsGpuIdleWhileTraining",
            "P3",
            f"avg by (gpu, uuid, model) (avg_over_time({util}[15m])) < 0.1 and on() sum(increase({epochs}[15m])) > 0",
            "15m",
            "GPU {{ $labels.gpu }} ({{ $labels.model }}) is idle while training runs",
            "Average utilisation {{ $value | humanizePercentage }} over 15 minutes while epochs are recorded.",
            "Training is running but not on this GPU: check that the model and data are moved to the device, "
            "that `CUDA_VISIBLE_DEVICES` matches, and that the input pipeline is not the bottleneck.",
        ),
        Alert(
            "SynthobsPushgatewayStale",
            "P4",
            "time() - max by (job) (push_time_seconds) > 2 * 86400",
            "30m",
            "No push to the Pushgateway from {{ $labels.job }} for two days",
            "The last push of {{ $labels.job }} was {{ $value | humanizeDuration }} ago.",
            "Either the flow stopped running (check its schedule) or it cannot reach the Pushgateway (its logs "
            "show one 'Pushgateway unreachable' warning). Delete the group if the flow was retired.",
        ),
    ]


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
