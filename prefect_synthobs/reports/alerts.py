"""The Prometheus alert catalog: what each synthobs alert means and what to do about it (pure).

Every metric name comes from ``names`` with the configured prefix, so the alerts can never drift from
what synthobs exports; ``reports.dashboards`` writes them as a rules file and runbooks.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect_synthobs import catalog as names

STUCK_AFTER_SECONDS = 6 * 3600.0  # default limit of SynthobsFlowRunStuck


@dataclass(frozen=True)
class Alert:
    """One alert rule with its texts: ``summary`` and ``description`` are Prometheus templates."""

    name: str
    severity: str  # P1 (page now) .. P4 (look when convenient)
    expr: str
    for_: str
    summary: str
    description: str
    runbook: str  # what to do, markdown


def metric_name(prefix: str, name: str) -> str:
    """A catalog metric's exported name: ``synthobs_flow_runs_total``."""
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
    runs = metric_name(prefix, names.FLOW_RUNS_TOTAL)
    gate = metric_name(prefix, names.QUALITY_GATE_CHECKS_TOTAL)
    checks = metric_name(prefix, names.PRIVACY_BUDGET_CHECKS_TOTAL)
    remaining = metric_name(prefix, names.PRIVACY_EPSILON_REMAINING)
    spent = metric_name(prefix, names.PRIVACY_EPSILON_SPENT_TOTAL)
    util = metric_name(prefix, names.GPU_UTILIZATION)
    epochs = metric_name(prefix, names.TRAINING_EPOCHS_TOTAL)
    training_alerts = metric_name(prefix, names.TRAINING_ALERTS_TOTAL)
    last_ok = metric_name(prefix, names.LAST_SUCCESS)
    oldest = metric_name(prefix, names.FLOW_RUN_OLDEST_IN_PROGRESS_AGE)
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
            "SynthobsTrainingCheckFailed",
            "P3",
            # a series new within the hour (its first alert) has no increase to show: counted as it is
            f"sum by (flow, model_type, check) (increase({training_alerts}[1h])) > 0 or "
            f"sum by (flow, model_type, check) ({training_alerts} unless {training_alerts} offset 1h) > 0",
            "0m",
            "Training check {{ $labels.check }} tripped for {{ $labels.model_type }} in flow {{ $labels.flow }}",
            "{{ $value }} training alert(s) ({{ $labels.check }}) for {{ $labels.model_type }} in {{ $labels.flow }} "
            "in the last hour.",
            "A generator's training went wrong while it ran: `nan_loss` (a loss became NaN or infinite), "
            "`divergence` (a loss stayed far above its best for several epochs), `plateau` (no improvement for "
            "several epochs) or `slow_epoch` (an epoch took longer than `training_max_epoch_seconds`). Find the "
            "flow run from the `synthobs.training.*` Prefect event (or the flow in the alert's labels), then the "
            "fit's losses per epoch in the health report's `synthobs-training-curves` artifact or "
            "`synthobs report`. NaN and divergence: lower the learning rate, look for extreme or constant columns "
            "in the input, retrain. "
            "Plateau: fewer epochs are enough (or the model is too small). Slow epochs: check the GPU "
            "(`synthobs gpu`) and the batch size. With `training_policy=warn` the fit went on; with `fail` the run "
            "failed when the fit ended; with `stop` the fit stopped early where the library allows it.",
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
