"""Health report: the synthobs store as dashboards in the Prefect UI.

Reads the health store for a time window (column and partition pruning) and
publishes artifacts with stable keys, so each run replaces the dashboards the
UI shows under Artifacts: ``synthobs-overview`` (markdown), tables
``synthobs-flows``, ``synthobs-slowest-tasks``, ``synthobs-failures``, ``synthobs-failed-tasks``,
``synthobs-quality``, ``synthobs-gpu``, ``synthobs-privacy``, and the progress
artifact ``synthobs-quality-gates``.

Run it once:      python flows/health_report.py --once
Serve it hourly:  python flows/health_report.py        (deployment "health-report-served": this process
                  runs it, no work pool; for one machine)
Deploy it:        prefect deploy --name health-report-hourly   (see prefect.yaml; a worker of the
                  work pool runs it)
The two deployments have different names, so serving never rewrites the deployed one.
"""

from __future__ import annotations

import sys

from prefect import flow

import prefect_synthobs as so
from prefect_synthobs.reports.health import build_report, load_frames, publish_artifacts, window


@flow(name="synthobs-health-report", log_prints=True)
def health_report(store_url: str | None = None, window_hours: float = 24.0, flow_name: str | None = None) -> dict:
    """Publish the synthobs dashboards as artifacts for the last ``window_hours``.

    Args:
        store_url: Health store to read (default: the configured store).
        window_hours: Length of the window, ending now.
        flow_name: Only this flow's runs (default: every flow).
    """
    if window_hours <= 0:
        raise ValueError(f"window_hours must be > 0, got {window_hours}")
    since, until = window(f"{window_hours}h")
    store = so.HealthStore(store_url)
    report = build_report(load_frames(store, since, until, flow_name), since, until)
    publish_artifacts(report)
    print(
        f"health report {since:%Y-%m-%d %H:%M} → {until:%Y-%m-%d %H:%M} UTC: {report.totals['runs']} runs, "
        f"{report.totals['failed']} not completed; artifacts published"
    )
    return report.as_dict()


# serve() creates or updates a deployment of this name: it must differ from prefect.yaml's, or serving
# after `prefect deploy` would silently turn the worker deployment into a served one (work pool gone)
SERVED_NAME = "health-report-served"


if __name__ == "__main__":
    if "--once" in sys.argv:
        health_report()
    else:
        health_report.serve(name=SERVED_NAME, cron="0 * * * *")
