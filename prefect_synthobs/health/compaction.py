"""Compaction, quarantine and retention of a health store's closed partitions.

``compact`` merges each closed (past) day of a table into one file, deduplicated
on ``event_id`` (and, for runs, one row per run); files no reader can read are
moved aside to ``<root>/_quarantine/``, never deleted; ``drop_partitions`` drops
whole days (retention). Two compactions may run at once without a lock (S3 has
no atomic create): see ``Compactor._compact_partition``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa

from prefect_synthobs._log import get_logger
from prefect_synthobs.health import tables
from prefect_synthobs.health.dedupe import drop_repeated_events, event_ids_for_unnamed_rows, one_row_per_run
from prefect_synthobs.health.files import VANISHED_FILE_RETRIES, StoreFiles
from prefect_synthobs.health.scan import TableScanner
from prefect_synthobs.health.tables import PARTITION_COLUMN, schema_for

logger = get_logger("store")


class Compactor:
    """Compacts, quarantines and expires the partitions of one store.

    Args:
        files: The store's files.
        scanner: The store's scanner (what it learnt of other writers' files is used here too).
    """

    def __init__(self, files: StoreFiles, scanner: TableScanner) -> None:
        self._files = files
        self._scanner = scanner

    def quarantine(self, table: str) -> list[str]:
        """Move the unreadable files of ``table`` to ``<root>/_quarantine/`` (kept, never deleted).

        Returns:
            Where each file went.
        """
        unreadable = self._scanner.unreadable_files(table)
        return [target for path in unreadable if (target := self.quarantine_file(table, path))]

    def quarantine_file(self, table: str, path: str) -> str | None:
        """Move ``path`` to ``<root>/_quarantine/``; ``None`` if it vanished first (another compaction moved it)."""
        target = self._files.move_aside(table, path)
        if target is not None:
            logger.warning(
                "synthobs: moved unreadable health-store file %s (%s) to %s", path, self._scanner.why(path), target
            )
        return target

    def drop_partitions(self, table: str, *, before: date) -> list[str]:
        """Delete the whole ``YYYY-MM-DD`` partitions of ``table`` older than ``before`` (retention).

        Returns:
            The days dropped, oldest first.
        """
        cutoff = before.isoformat()
        dropped = []
        for day in self._files.partitions(table):
            if day >= cutoff:
                break
            self._files.delete_partition(table, day)  # gone already: another maintenance run dropped it
            dropped.append(day)
        if dropped:
            logger.info("synthobs: dropped %d %s partition(s) before %s (retention)", len(dropped), table, cutoff)
        return dropped

    def compact(self, table: str, *, before: date | None = None) -> dict[str, int]:
        """Merge each closed partition of ``table`` into one file, dropping
        duplicate ``event_id`` rows (and, for runs, keeping one row per run:
        ``one_row_per_run``).

        Only partitions older than ``before`` (default: today, UTC) are touched,
        so no writer is adding to them. Readers that list a partition while it is
        compacted can briefly see old and new files together: ``read``
        deduplicates on ``event_id``. A partition holding one file with other
        column types (another writer's timestamps, say) is rewritten with the
        table's types.

        Files that ``read`` skips (not Parquet, or a column that cannot be cast)
        are first moved, never deleted, to ``<root>/_quarantine/<table>/date=.../``,
        and temporary files that killed writers left behind are removed once
        older than ``TEMPORARY_LEASE_SECONDS``.

        Two compactions may run at once (two ``synthobs compact``, a scheduled
        flow and a person): a file the other one removed is not an error, and
        the merged file's name is derived from the files merged, so two that
        merged the same files write the same file once (see ``_compact_partition``).

        Returns:
            ``{"partitions": n, "files_before": n, "files_after": n, "rows": n,
            "quarantined": n, "temporary_removed": n}``.
        """
        cutoff = (before or datetime.now(timezone.utc).date()).isoformat()
        quarantined = self.quarantine(table)
        stats = {
            "partitions": 0,
            "files_before": 0,
            "files_after": 0,
            "rows": 0,
            "quarantined": len(quarantined),
            "temporary_removed": len(self._files.remove_orphaned_temporaries(table)),
        }
        for day in self._files.partitions(table):
            if day >= cutoff:
                continue
            merged = self._compact_partition(table, day)
            if merged is None:
                continue
            files, rows, moved = merged
            stats["partitions"] += 1
            stats["files_before"] += files
            stats["files_after"] += 1
            stats["rows"] += rows
            stats["quarantined"] += moved
        return stats

    def _named_rows(self, table: str, day: str, files: Sequence[str], columns: Sequence[str]) -> pa.Table:
        """The rows of ``files`` (one partition), read file by file so that each row without an ``event_id``
        gets one from its file and place (``event_ids_for_unnamed_rows``): stored once, whichever compaction
        merges it. Only when some row has none (another writer's file); a file unreadable now is left out."""
        parts = []
        for path in files:
            part = self._scanner.scan(table, self._files.subset(table, [path]), columns, None, skipped=[])
            if part["event_id"].null_count:
                ids = event_ids_for_unnamed_rows(part["event_id"], f"{day}/{path.rsplit('/', 1)[-1]}")
                part = part.set_column(part.schema.get_field_index("event_id"), "event_id", ids)
            parts.append(part)
        return pa.concat_tables(parts)

    def _compact_partition(self, table: str, day: str) -> tuple[int, int, int] | None:
        """Merge the files of one closed partition: ``(files merged, rows kept, files quarantined)``, or
        ``None`` when there is nothing to merge (one file of the table's types) or another compaction took it.

        Safe beside another compaction of the same partition, without a lock (S3 has no atomic create):

        - the merged file's name is a hash of the names merged, so two compactions that read the same files
          write the same file (the second replaces the first with the same rows), never two copies;
        - a file that vanished between listing and reading means the other one merged it: list again and
          merge what is there now (its merged file included);
        - before writing, the inputs are checked to be still there (if not, the other compaction wrote
          their rows: list again);
        - an input already gone when it is deleted means another compaction ran beside this one, maybe from
          another listing (a late write in between): list again, so two merged files of overlapping rows
          are merged into one (``event_id`` dropping the repeats). Only files whose rows were read are
          deleted: a file that could not be read now stays.
        """
        schema = schema_for(table)
        full = schema.append(pa.field(PARTITION_COLUMN, pa.string()))
        done: tuple[int, int, int] | None = None
        for _ in range(VANISHED_FILE_RETRIES + 1):
            files = self._files.partition_files(table, day)
            if not files or (len(files) == 1 and self._scanner.inspect(files[0], schema)[0] != "odd"):
                return done  # nothing (more) to merge; a lone file that is not Parquet was quarantined already
            skipped: list[str] = []
            try:
                data = self._scanner.scan(table, self._files.subset(table, files), full.names, None, skipped=skipped)
            except FileNotFoundError:
                continue  # another compaction merged it: list again
            inputs = [f for f in files if f not in skipped]
            if self._files.vanished(inputs):
                continue  # another compaction merged them meanwhile: its file holds these rows
            bad = [f for f in skipped if self._scanner.known(f) == "bad"]
            moved = sum(1 for path in bad if self.quarantine_file(table, path))
            unnamed = data["event_id"].null_count > 0
            if len(inputs) < 2 and not (inputs and (unnamed or self._scanner.inspect(inputs[0], schema)[0] == "odd")):
                return done if done is not None or not moved else (0, 0, moved)
            if unnamed:
                try:
                    data = self._named_rows(table, day, inputs, full.names)
                except FileNotFoundError:
                    continue  # another compaction merged it: list again
            run_id = tables.table(table).run_id_column
            if run_id is not None:
                data = one_row_per_run(data, run_id, "end_time")
            frame = data.drop_columns(PARTITION_COLUMN).to_pandas()
            clean = pa.Table.from_pandas(drop_repeated_events(frame), schema=schema, preserve_index=False)
            digest = hashlib.sha256("\n".join(Path(f).name for f in inputs).encode()).hexdigest()[:32]
            written = self._files.write_file(table, day, clean, name=f"part-{digest}.parquet")
            raced = self._files.delete_merged(inputs, keep=written)  # one gone: another compaction ran, list again
            moved += done[2] if done is not None else 0
            done = (len(inputs), clean.num_rows, moved)
            if not raced:
                return done
        logger.warning(
            "synthobs: %s partition %s changed under compaction %d times in a row; left for the next compaction",
            table,
            day,
            VANISHED_FILE_RETRIES + 1,
        )
        return done
