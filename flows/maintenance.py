"""A scheduled flow that keeps the health store small and fast: it merges each
closed (past) day of every table into one file and drops the days past the
retention. Today's files are never touched, so it runs beside observed flows.

Serve it (``python flows/maintenance.py``) or deploy it; running it twice is
harmless. The same from a shell: ``synthobs compact --retain 30d``.
"""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from prefect_synthobs import HealthStore
from prefect_synthobs.health.maintenance import describe, maintain


@flow(name="synthobs-store-maintenance")
def store_maintenance(retain_days: int = 30, store_url: str | None = None) -> dict[str, dict[str, int]]:
    """Compact closed partitions and drop those older than ``retain_days`` (0 keeps everything)."""
    if retain_days < 0:
        raise ValueError(f"retain_days must be >= 0 (0 keeps everything), got {retain_days}")
    store = HealthStore(store_url)
    results = maintain(store, retain=timedelta(days=retain_days) if retain_days else None)
    logger = get_run_logger()
    lines = [describe(table, stats) for table, stats in results.items()]
    for line in lines:
        logger.info(line)
    create_markdown_artifact(
        markdown="## synthobs store maintenance\n\n"
        + f"Store `{store!r}`, retention {f'{retain_days} days' if retain_days else 'none'}.\n\n"
        + "\n".join(f"- {line}" for line in lines),
        key="synthobs-store-maintenance",
        description="What the last store maintenance compacted and dropped.",
    )
    return results


if __name__ == "__main__":
    store_maintenance.serve(name="synthobs-store-maintenance-daily", interval=86400)
