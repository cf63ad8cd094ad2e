"""Synthetic tables as Prefect assets: one materialization per synthetic table per run, the real table upstream.

At the end of a run that generated synthetic rows (autolog's samples or ``record_rows``), each table it
generated becomes a Prefect asset materialization, with the events Prefect's own ``@materialize`` emits: a
``prefect.asset.referenced`` event for the real table the model was trained on, then
``prefect.asset.materialization.succeeded`` (``failed`` when the run failed; nothing when it crashed or was
cancelled, as Prefect does for a task) with the real table as a related ``asset`` and the flow run and the task
runs that sampled as related runs. Its payload is what the run learned: rows, the model (library, synthesizer,
type, id, the table and shape it was fitted on), the latest quality scores of that model on that table and
the gates they passed or missed, and the epsilon spent (``asset_plan.plan_run``).

Why at the end and not at the sample: the quality check and the privacy spend come after the sample; an asset
event is a summary, and one per table and run keeps Prefect's asset history readable.

``AssetLedger`` collects, per flow run in this process, what ``plan_run`` needs: samples (autolog's
``sample_call`` calls ``note_sample``) and, through ``AssetSink`` on the recording seam, fits, quality
checks, privacy spends and the flow run's end, where ``materialize_run`` emits (``prefect_api``). Nothing
here ever fails a run: a fault costs one warning saying what is lost.

A run's asset tells its last attempt, as its ``flow_runs`` row does: a flow retry drops the earlier attempts'
samples and scores (the runtime's ``RunScope.run_info``, handed to ``AssetSink``, says which attempt is
current; privacy spends stay: they happened), and each task run counts its last attempt (Prefect's
``run_count``). A worker process that runs some of a flow's tasks notes nothing: the flow's process emits.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from prefect_synthobs._log import get_logger
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.config.active import get_settings
from prefect_synthobs.config.settings import SynthObsSettings
from prefect_synthobs.health.events import FlowRunEnded, ModelFitted, PrivacyChecked, QualityChecked
from prefect_synthobs.instrument import prefect_api
from prefect_synthobs.instrument.asset_plan import (
    MAX_TASK_RUNS,
    AssetConfig,
    Materialization,
    ModelFacts,
    RunRecord,
    Sampled,
    Score,
    merged_facts,
    plan_run,
)
from prefect_synthobs.telemetry.redaction import redact

logger = get_logger()

_RUNS_KEPT = 256
_FITS_KEPT = 1024
_SCORES_KEPT = 2000
"""Quality scores kept per run (a run recording more keeps the latest: the payload holds the latest of each)."""


RunInfoOf = Callable[[str], Any]
"""The runtime's ``RunScope.run_info``: a flow run's ``RunInfo`` in this process (``None``: not in scope)."""


class AssetLedger:
    """Per flow run (the last ``_RUNS_KEPT``), what ``plan_run`` needs; per model (the last ``_FITS_KEPT``),
    what its fit said. Thread-safe; process-wide (``LEDGER``), so a ``configure`` that rebuilds the runtime
    loses nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, RunRecord] = OrderedDict()
        self._fits: OrderedDict[str, ModelFacts] = OrderedDict()
        self.run_info: RunInfoOf | None = None
        """The runtime's run lookup (set by the runtime's ``AssetSink``): a run's attempt, or that it is remote."""

    def _run(self, flow_run_id: str) -> RunRecord:
        record = self._runs.get(flow_run_id)
        if record is None:
            record = self._runs[flow_run_id] = RunRecord()
            while len(self._runs) > _RUNS_KEPT:
                self._runs.popitem(last=False)
        return record

    def fitted(self, event: ModelFitted) -> None:
        """A fit ended: its table and shape, for the runs that sample the model later (here or in another run)."""
        if event.status == "failed":
            return
        tables = tuple(t for t in (event.table_name or "").split(",") if t)
        facts = ModelFacts(
            event.model_id,
            event.model_type,
            event.library,
            event.synthesizer,
            tables,
            event.fit_rows,
            event.fit_columns,
        )
        with self._lock:
            self._fits[event.model_id] = facts
            self._fits.move_to_end(event.model_id)
            while len(self._fits) > _FITS_KEPT:
                self._fits.popitem(last=False)

    def _attempt(self, flow_run_id: str, attempt: int) -> RunRecord:
        """The run's record for the flow's ``attempt`` (0: not known): a later attempt than the record's drops
        its samples, models and scores (the asset of a run tells its last attempt, as its ``flow_runs`` row
        does); privacy spends stay (they happened). Call with the lock held."""
        record = self._run(flow_run_id)
        if attempt > record.attempt:
            if record.attempt:
                record.samples.clear()
                record.models.clear()
                record.scores.clear()
                record.task_attempts.clear()
            record.attempt = attempt
        return record

    def sampled(
        self,
        flow_run_id: str,
        model: ModelFacts,
        counts: Mapping[str | None, int],
        task_run: Any = None,
        *,
        attempt: int = 0,
    ) -> None:
        """A model sampled ``counts`` rows per table in the flow's ``attempt`` (0: not known), in ``task_run``
        if in one (its ``run_count`` the task's attempt: only a task run's last attempt counts)."""
        if model.model_id is None:
            return
        with self._lock:
            record = self._attempt(flow_run_id, attempt)
            if attempt and attempt < record.attempt:
                return  # a late sample of an attempt already retried
            task_id = str(task_run.id) if task_run is not None else None
            task_attempt = _run_count(task_run)
            if task_id is not None:
                latest = record.task_attempts.get(task_id, 0)
                if task_attempt < latest:
                    return
                record.task_attempts[task_id] = task_attempt
            fit = self._fits.get(model.model_id)
            record.models[model.model_id] = merged_facts(model, fit)
            for table, n in counts.items():
                if table is None:
                    continue
                sampled = record.samples.setdefault((table, model.model_id), Sampled())
                if task_id is None:
                    sampled.rows += int(n)
                    continue
                seen, rows = sampled.by_task.get(task_id, (task_attempt, 0))
                sampled.by_task[task_id] = (task_attempt, (rows if seen == task_attempt else 0) + int(n))
                if len(sampled.task_runs) < MAX_TASK_RUNS:
                    sampled.task_runs[task_id] = getattr(task_run, "name", None)

    def scored(self, event: QualityChecked, *, attempt: int = 0) -> None:
        """A quality score recorded in an observed run, in the flow's ``attempt`` (0: not known)."""
        if event.flow_run_id is None or event.table_name is None or not event.in_observed_run:
            return
        score = Score(
            event.table_name, event.model_id, event.model_type, event.metric, event.score, event.gate, event.passed
        )
        with self._lock:
            record = self._attempt(event.flow_run_id, attempt)
            if attempt and attempt < record.attempt:
                return
            scores = record.scores
            scores.append(score)
            if len(scores) > _SCORES_KEPT:
                del scores[: len(scores) - _SCORES_KEPT]

    def spent(self, event: PrivacyChecked) -> None:
        """An allowed privacy spend in a flow run."""
        if event.flow_run_id is None or not event.allowed:
            return
        with self._lock:
            privacy = self._run(event.flow_run_id).privacy
            privacy[event.dataset] = privacy.get(event.dataset, 0.0) + float(event.epsilon)

    def take(self, flow_run_id: str) -> RunRecord | None:
        """The run's record, forgotten here (its end is recorded once), each sample's rows those of the flow
        itself plus each task run's last attempt (``Sampled.by_task`` folded in)."""
        with self._lock:
            record = self._runs.pop(flow_run_id, None)
        if record is not None:
            for sampled in record.samples.values():
                last = record.task_attempts
                kept = {t: n for t, (a, n) in sampled.by_task.items() if a == last.get(t, a)}
                sampled.rows += sum(kept.values())
                sampled.task_runs = {t: name for t, name in sampled.task_runs.items() if t in kept}
                sampled.by_task = {}
        return record

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()
            self._fits.clear()


def _run_count(task_run: Any) -> int:
    """A task run's attempt (Prefect's ``run_count``; 0: not known)."""
    count = getattr(task_run, "run_count", 0)
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def local_attempt(flow_run_id: str | None, run_info: RunInfoOf | None) -> int | None:
    """The flow run's current attempt in this process (0: not known here), ``None`` when this process sees it
    remotely (a worker running some of its tasks: its asset events are emitted where the flow runs, so
    nothing is noted here). Never raises."""
    if flow_run_id is None or run_info is None:
        return 0
    try:
        info = run_info(flow_run_id)
        if info is None:
            return 0
        return None if info.remote else int(info.attempts)
    except Exception:
        return 0


LEDGER = AssetLedger()
"""The process's ledger (``autolog`` notes samples here; ``AssetSink`` the rest)."""


def note_sample(
    flow_run_id: str,
    model: ModelFacts,
    counts: Mapping[str | None, int],
    task_run: Any = None,
    *,
    ledger: AssetLedger | None = None,
) -> None:
    """Autolog's sample of ``model`` in a flow run (rows per table), for the run's asset events. Never raises
    (one warning per process: that sample's model facts are missing from its table's asset event)."""
    try:
        if get_settings().assets:
            ledger = ledger or LEDGER
            attempt = local_attempt(flow_run_id, ledger.run_info)
            if attempt is not None:  # a worker's sample: its run's asset events are not emitted here
                ledger.sampled(flow_run_id, model, counts, task_run, attempt=attempt)
    except Exception as exc:
        if _first("note"):
            logger.warning(
                "synthobs: a sample could not be noted for its Prefect asset event (%s); that table's asset event "
                "lacks the model's facts; this warning is given once per process",
                exc,
            )


# -- the edge: emit at the flow's end -----------------------------------------------------------------------------

_WARNED_KEPT = 256
"""Distinct once-per-process warnings remembered (a table each: refused names are unbounded); past that, one
warning says that further ones are not given."""
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _first(kind: str) -> bool:
    with _warned_lock:
        if kind in _warned:
            return False
        if len(_warned) >= _WARNED_KEPT:
            full = "\0full" not in _warned
            _warned.add("\0full")
        else:
            _warned.add(kind)
            return True
    if full:
        logger.warning(
            "synthobs: %d asset warnings were given in this process; further ones (tables not materialized, "
            "samples not noted) are not given",
            _WARNED_KEPT,
        )
    return False


_EMIT_FAULT = WarnOnce(logger)
"""Emitting asset events fails: said when it starts, again only after an emit succeeded."""


def reset_warnings() -> None:
    """Let the once-per-process warnings be given again (tests)."""
    with _warned_lock:
        _warned.clear()
    _EMIT_FAULT.ok()


Emit = Callable[[Materialization, str], None]


def emit_materialization(item: Materialization, flow_run_id: str) -> None:
    """Emit one materialization's events through the Prefect API edge (raises what it raises)."""
    prefect_api.emit_asset_materialization(
        key=item.key,
        upstream=item.upstream,
        status=item.status,
        name=item.name,
        description=item.description,
        metadata=item.metadata,
        materialized_by=item.materialized_by,
        flow_run_id=flow_run_id,
        task_runs=item.task_runs,
        redact_names=item.redact_run_names,
    )


def materialize_run(
    ended: FlowRunEnded,
    config: AssetConfig,
    *,
    ledger: AssetLedger = LEDGER,
    emit: Emit | None = None,
) -> list[Materialization]:
    """Emit the asset events of a finished flow run (``plan_run``); the materializations emitted.

    Never raises: a table whose key Prefect refuses costs one warning per table and process; events Prefect
    could not take cost one warning (what is lost) until they succeed again.
    """
    record = ledger.take(ended.flow_run_id)
    planned, skipped = plan_run(record, ended, config)
    for skip in skipped:
        if _first("key:" + skip.table):
            logger.warning(
                "synthobs: synthetic table %r is not materialized as a Prefect asset: %s. Rename the table or "
                "change asset_key_template / asset_upstream_key_template; this warning is given once per table",
                redact(skip.table) if config.redact_pii else skip.table,
                skip.reason,
            )
    if ended.rows_by_table.get(None) and config.enabled and _first("no-table"):
        logger.info(
            "synthobs: rows generated without a table name are not materialized as a Prefect asset (name the "
            "table: observe(table=...) or record_rows(table=...)); this message is given once per process"
        )
    sender = emit or emit_materialization
    done = []
    for item in planned:
        try:
            sender(item, ended.flow_run_id)
        except Exception as exc:
            _EMIT_FAULT.fail(
                "synthobs: the Prefect asset events of synthetic table %r (flow run %s) were not emitted (%s: %s); "
                "its lineage and metadata are lost, the run is unaffected; this warning is given once while "
                "emitting keeps failing",
                item.metadata.get("table", item.table),
                ended.flow_run_id,
                type(exc).__name__,
                redact(str(exc)[:200]),
            )
        else:
            _EMIT_FAULT.ok()
            done.append(item)
    return done


class AssetSink:
    """The recording seam's sink for asset events: notes fits, quality scores and privacy spends per run, and
    at a flow run's end (``FlowRunEnded``) emits its materializations (``materialize_run``).

    Args:
        settings: The settings to follow (default: the active ones, read at each run's end).
        ledger: Where runs are noted (default: the process's ``LEDGER``).
        run_info: The runtime's run lookup (``RunScope.run_info``), given to the ledger: which attempt of a flow
            run a sample or score belongs to, and whether the run is remote here (a worker: nothing noted).
    """

    loses = "Prefect asset events (synthetic table lineage)"

    def __init__(
        self,
        settings: SynthObsSettings | None = None,
        *,
        ledger: AssetLedger = LEDGER,
        run_info: RunInfoOf | None = None,
    ) -> None:
        self._settings = settings
        self.ledger = ledger
        if run_info is not None:  # the latest runtime's (a configure that rebuilds it adopts the runs in scope)
            ledger.run_info = run_info

    def handle(self, event: Any) -> None:
        if isinstance(event, ModelFitted):
            self.ledger.fitted(event)
        elif isinstance(event, QualityChecked):
            attempt = local_attempt(event.flow_run_id, self.ledger.run_info)
            if attempt is not None:  # a worker's score: its run's asset events are not emitted here
                self.ledger.scored(event, attempt=attempt)
        elif isinstance(event, PrivacyChecked):
            self.ledger.spent(event)
        elif isinstance(event, FlowRunEnded):
            materialize_run(event, AssetConfig.of(self._settings or get_settings()), ledger=self.ledger)
