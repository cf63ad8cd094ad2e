"""Store maintenance: compaction of closed partitions and retention.

Writers add one small file per flush; ``maintain`` merges each closed (past)
day into one file, deduplicated on ``event_id``, and drops whole days older
than the retention. Today's partitions are never touched, so it runs safely
beside writers; readers during a run never error (a file compacted away
between listing and reading is re-listed) and never double count (``read``
deduplicates on ``event_id``). Run it from ``synthobs compact --retain 30d``
or the ``flows/maintenance.py`` flow.

Two maintenance runs may overlap (a scheduled flow and a person at a terminal,
two ``synthobs compact``): a file or partition the other run removed is not an
error, and afterwards every row is stored once (``HealthStore.compact``: the
merged file's name derives from the files merged, and a partition that changed
under a run is merged again). No lock is taken, so this holds on S3 as well.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone

from prefect_synthobs._log import get_logger
from prefect_synthobs.health import tables
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.telemetry.redaction import strip_url_credentials

logger = get_logger("store")

FAILED = "failed"
"""The statistic ``maintain`` sets to 1 for a table whose maintenance failed (absent when it did not)."""

_NOTHING_DONE = ("partitions", "files_before", "files_after", "rows", "quarantined", "temporary_removed", "expired")

_DURATION = re.compile(r"\s*(\d+)\s*([dw])\s*")


def parse_retention(text: str) -> timedelta:
    """A retention such as ``30d`` or ``8w`` (whole days or weeks, at least one day).

    Raises:
        ValueError: Not a duration in days or weeks, or shorter than a day.
    """
    match = _DURATION.fullmatch(text or "")
    if not match:
        raise ValueError(f"retention must be whole days or weeks such as 30d or 8w, got {text!r}")
    days = int(match.group(1)) * (7 if match.group(2) == "w" else 1)
    if days < 1:
        raise ValueError(f"retention must be at least 1d (today's partition is being written), got {text!r}")
    return timedelta(days=days)


def retention_cutoff(retain: timedelta, today: date | None = None) -> date:
    """The first day kept: partitions of earlier days are dropped."""
    today = today or datetime.now(timezone.utc).date()
    return today - timedelta(days=max(retain.days, 1))


def maintain(
    store: HealthStore,
    *,
    retain: timedelta | None = None,
    table_names: Sequence[str] | None = None,
    today: date | None = None,
) -> dict[str, dict[str, int]]:
    """Compact every closed partition and drop those past ``retain``.

    Args:
        store: The health store.
        retain: Keep this many days (counted back from today, UTC); ``None`` keeps all.
        table_names: Tables to maintain (default: all).
        today: The current day (UTC; tests pass one).

    One table's failure (a file no reader foresaw, the store refusing) never stops the others: it costs one
    warning naming the table and the error, what it had not compacted yet stays as it was, and its ``failed``
    statistic is 1.

    Returns:
        Per table: ``compact``'s statistics plus ``expired`` (partitions dropped); a table whose maintenance
        failed has ``failed: 1`` and zeros.
    """
    today = today or datetime.now(timezone.utc).date()
    results: dict[str, dict[str, int]] = {}
    for name in table_names or tables.TABLES:
        try:
            expired = store.drop_partitions(name, before=retention_cutoff(retain, today)) if retain is not None else []
            stats = store.compact(name, before=today)
        except Exception as exc:  # one table's failure must not stop the others' maintenance
            logger.warning(
                "synthobs: maintenance of table %s failed (%s: %s); what it had not compacted yet is left as it "
                "was, the other tables are maintained; the next maintenance tries it again",
                name,
                type(exc).__name__,
                strip_url_credentials(str(exc)),
            )
            results[name] = {**dict.fromkeys(_NOTHING_DONE, 0), FAILED: 1}
            continue
        stats["expired"] = len(expired)
        results[name] = stats
    return results


def describe(table: str, stats: dict[str, int]) -> str:
    """One line for ``stats`` of ``table``."""
    if stats.get(FAILED):
        return f"{table}: maintenance FAILED (see the warning above); what it had not compacted yet is left as it was"
    return (
        f"{table}: {stats['partitions']} partition(s) compacted, "
        f"{stats['files_before']} → {stats['files_after']} files, {stats['rows']:,} rows"
        + (f", {stats['expired']} partition(s) past retention dropped" if stats.get("expired") else "")
        + (f", {stats['quarantined']} unreadable file(s) moved to _quarantine/" if stats.get("quarantined") else "")
        + (f", {stats['temporary_removed']} stale temporary file(s) removed" if stats.get("temporary_removed") else "")
    )
