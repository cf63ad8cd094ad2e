"""Health report: the synthobs store as dashboards in the Prefect UI.

Reads the health store for a time window (column and partition pruning) and
publishes artifacts with stable keys, so each run replaces the dashboards the
UI shows under Artifacts: ``synthobs-overview`` (markdown), tables
``synthobs-flows``, ``synthobs-flow-trends`` (its sparklines), ``synthobs-slowest-tasks``, ``synthobs-failures``,
``synthobs-failed-tasks``, ``synthobs-quality``, ``synthobs-models`` (``synthobs-models-privacy``: its privacy
scores; ``synthobs-models-details``: types and ids), ``synthobs-training`` (``synthobs-training-curves``: each
loss's final value and sparkline; ``synthobs-training-details``: flow runs and ids), ``synthobs-gpu``,
``synthobs-privacy``, and the progress artifact ``synthobs-quality-gates``. Each table fits a 1,400 px window.

Run it once:      python flows/health_report.py --once [--store URL] [--window-hours 24] [--trend-days 14]
Serve it hourly:  python flows/health_report.py        (deployment "health-report-served": this process
                  runs it, no work pool; for one machine)
Deploy it:        prefect deploy --name health-report-hourly   (see prefect.yaml; a worker of the
                  work pool runs it)
The two deployments have different names, so serving never rewrites the deployed one.
"""

from __future__ import annotations

import argparse

from prefect import flow

import prefect_synthobs as so
from prefect_synthobs.config.active import get_settings
from prefect_synthobs.config.prefect_process import prefect_defaults
from prefect_synthobs.reports.health import publish_artifacts, report_for, window
from prefect_synthobs.reports.trends import DEFAULT_TREND_DAYS


@flow(name="synthobs-health-report", log_prints=True)
def health_report(
    store_url: str | None = None,
    window_hours: float = 24.0,
    flow_name: str | None = None,
    trend_days: int = DEFAULT_TREND_DAYS,
) -> dict:
    """Publish the synthobs dashboards as artifacts for the last ``window_hours``.

    Args:
        store_url: Health store to read (default: the configured store).
        window_hours: Length of the window, ending now.
        flow_name: Only this flow's runs (default: every flow).
        trend_days: Days of daily trend pictures in the overview (at least; the window if longer).
    """
    if window_hours <= 0:
        raise ValueError(f"window_hours must be > 0, got {window_hours}")
    if trend_days < 1:
        raise ValueError(f"trend_days must be at least 1, got {trend_days}")
    since, until = window(f"{window_hours}h")
    store = so.HealthStore(store_url)
    if not store.exists():  # a wrong path must not replace the dashboards with "No runs in this window"
        raise FileNotFoundError(
            f"no health store at {store.url} (no table of the store there: nothing was ever recorded there, "
            "or the path is wrong); check store_url or PREFECT_INTEGRATIONS_SYNTHOBS_STORE_URL"
        )
    # error messages redacted again as shown: a store can hold rows that other writers never redacted
    report = report_for(store, since, until, flow_name, days=trend_days, redact_pii=get_settings().redact_pii)
    publish_artifacts(report)
    print(
        f"health report {since:%Y-%m-%d %H:%M} → {until:%Y-%m-%d %H:%M} UTC: {report.totals['runs']} runs, "
        f"{report.totals['failed']} not completed; artifacts published"
    )
    return report.as_dict()


# serve() creates or updates a deployment of this name: it must differ from prefect.yaml's, or serving
# after `prefect deploy` would silently turn the worker deployment into a served one (work pool gone)
SERVED_NAME = "health-report-served"


def main(argv: list[str] | None = None) -> dict | None:
    """``--once`` runs the report now (and returns it); without it this process serves it hourly."""
    parser = argparse.ArgumentParser(
        prog="python flows/health_report.py",
        description="Publish the synthobs dashboards as Prefect artifacts: once, or served hourly from this process.",
    )
    parser.add_argument("--once", action="store_true", help="run it once now instead of serving it hourly")
    parser.add_argument("--store", help="health store URL (default: the configured store)")
    parser.add_argument("--window-hours", type=float, default=24.0, help="window length (default: %(default)s)")
    parser.add_argument(
        "--trend-days", type=int, default=DEFAULT_TREND_DAYS, help="days of trend charts (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    parameters = {"store_url": args.store, "window_hours": args.window_hours, "trend_days": args.trend_days}
    with prefect_defaults():
        if args.once:
            return health_report(**parameters)
        health_report.serve(name=SERVED_NAME, cron="0 * * * *", parameters=parameters)
    return None


if __name__ == "__main__":
    main()
