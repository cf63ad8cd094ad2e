"""The run scope of one process: which flow and task runs are in progress, and their row counts.

``RunScope`` is the only writer of a run's counts (``RunInfo.rows``,
``rows_by_table``, ``row_events``) and of the task runs in progress: the
``record_*`` calls, autolog, the listener's task ends and the flow's end all
count through it. A flow run is in scope when it is observed, a subflow of one,
or (in a worker process) a flow whose task runs here (*remote* scope: task
rows and GPU samples, never the flow's row).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prefect_synthobs import catalog
from prefect_synthobs.health.events import AttemptError
from prefect_synthobs.instrument.prefect_runs import id_text

_RECENT_RUNS = 1024
"""Finished runs remembered (their ends are recorded once; late measurements still find them)."""


@dataclass
class ObserveSpec:
    """What ``observe`` says about a flow or task."""

    kind: str = "other"
    model_type: str | None = None
    table: str | None = None
    config: Any = None  # a SynthObsConfig block or block name, applied when a run starts


def span_attributes(spec: ObserveSpec) -> dict[str, str]:
    """The synthobs attributes of an observed flow's span."""
    attrs = {catalog.ATTR_KIND: spec.kind}
    if spec.model_type is not None:
        attrs[catalog.ATTR_MODEL_TYPE] = spec.model_type
    if spec.table is not None:
        attrs[catalog.ATTR_TABLE] = spec.table
    return attrs


@dataclass
class TaskRowCount:
    """The rows one task run generated (``record_rows``), counted for its latest attempt only.

    A retry starts again from 0: the task row and its flow's row count the rows
    of the attempt that finished (a metric counter counts every row generated).
    """

    flow_run_id: str | None
    attempt: int = 0
    """The task run's ``run_count`` when its rows were recorded (0: not known)."""
    by_table: dict[str | None, int] = field(default_factory=dict)

    def add(self, n: int, table: str | None, attempt: int) -> bool:
        """Count ``n`` rows of ``attempt``; ``False`` (not counted) for a late call of an attempt already retried."""
        if attempt > self.attempt:
            self.attempt, self.by_table = attempt, {}
        elif attempt < self.attempt:
            return False
        self.by_table[table] = self.by_table.get(table, 0) + n
        return True

    def final(self, run_count: int) -> dict[str | None, int]:
        """The rows of the task run's last attempt (``run_count``): none if that attempt recorded none."""
        if self.attempt and run_count and self.attempt < run_count:
            return {}
        return dict(self.by_table)


@dataclass
class RunInfo:
    """A flow run in scope: observed, or a subflow of one.

    ``rows``/``rows_by_table`` count the current attempt's rows: those
    recorded in the flow itself, plus each finished task run's last attempt
    (folded in as the task ends). A new attempt of the flow (a flow retry)
    starts them again from 0.
    """

    flow_run_id: str
    flow_name: str
    spec: ObserveSpec
    observed: bool
    parent_flow_run_id: str | None = None
    start_time: datetime | None = None
    rows: int = 0
    rows_by_table: dict[str | None, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    remote: bool = False
    """Seen from a worker process running some of the flow's tasks (never writes the flow's row)."""
    active_tasks: int = 0
    gpu_sampled: bool = True
    """This process attributes its host's GPU samples to the run (a worker on the flow's host does not)."""
    local_task_run_ids: set[str] = field(default_factory=set)
    """Task runs recorded in this process (the flow's): the rest ran in other processes."""
    began_at: float = field(default_factory=time.time)
    """Unix time this process put the run in scope (its start when Prefect's is not known yet)."""
    attempts: int = 0
    """Attempts of the flow started in this process (one observed ``on_running`` hook per try)."""
    attempt_errors: list[AttemptError] = field(default_factory=list)
    """The errors of the attempts that failed and were retried."""
    models_sampled: dict[str, tuple[str | None, set[str | None]]] = field(default_factory=dict)
    """Models autolog saw sample in this run in this process: model id -> (model type, tables sampled)."""
    row_events: int = 0
    """How many times rows were counted toward this run (``record_rows``' duplicate check reads it)."""

    def note_model_sampled(self, model_id: str, model_type: str | None, tables: Iterable[str | None]) -> None:
        """Remember that ``model_id`` sampled ``tables`` in this run (``check_quality`` uses it when it is the
        only one)."""
        with self.lock:
            entry = self.models_sampled.setdefault(model_id, (model_type, set()))
            entry[1].update(tables)

    def only_model_sampled(self, table: str | None = None) -> tuple[str, str | None] | None:
        """The one model sampled in this run in this process, if it sampled ``table`` (or the table is not
        known on either side); ``None`` when none or several did, or it sampled other tables only."""
        with self.lock:
            if len(self.models_sampled) != 1:
                return None
            ((model_id, (model_type, tables)),) = self.models_sampled.items()
        known = {t for t in tables if t is not None}
        if table is not None and known and table not in known:
            return None
        return model_id, model_type

    def bump_row_events(self) -> int:
        with self.lock:
            self.row_events += 1
            return self.row_events

    def add_rows(self, rows_by_table: dict[str | None, int], *, event: bool = True) -> None:
        """Count rows toward this attempt of the run (its row's ``rows``); ``event``: as a new row event (``False``:
        one noted before, ``RunScope.task_stopped``)."""
        with self.lock:
            if event:
                self.row_events += 1
            for table, n in rows_by_table.items():
                self.rows += n
                self.rows_by_table[table] = self.rows_by_table.get(table, 0) + n


@dataclass(frozen=True)
class ImplicitScope:
    """Where a measurement made without Prefect's run context (a thread the run started) belongs.

    ``info`` ``None`` and ``problem`` ``None``: no run is in progress here.
    ``problem``: why it could not be attributed (fully), for the one warning.
    """

    info: RunInfo | None
    task_run: Any = None
    problem: str | None = None


class RunScope:
    """The runs in scope in this process, the row counts of their task runs, and the task runs in progress."""

    def __init__(self) -> None:
        self._runs: dict[str, RunInfo] = {}
        self._task_rows: dict[str, TaskRowCount] = {}
        self._active_tasks: dict[str, tuple[Any, str]] = {}
        """Task runs in progress in this process (of flows in scope): ``{task run id: (task run, flow run id)}``."""
        self._recent: OrderedDict[str, RunInfo] = OrderedDict()
        self._lock = threading.Lock()

    def adopt(self, other: RunScope) -> None:
        """Carry the runs in scope over from the scope this one replaces (``configure`` rebuilt the runtime)."""
        with other._lock:
            self._runs, self._recent = other._runs, other._recent

    def run_info(self, flow_run_id: Any) -> RunInfo | None:
        # (``id_text`` remembers the text of each id object: a flow's tasks ask with its run's, once per task)
        key = flow_run_id if flow_run_id.__class__ is str else id_text(flow_run_id)
        with self._lock:
            return self._runs.get(key) or self._recent.get(key)

    def in_scope(self, flow_run_id: Any) -> bool:
        return self.run_info(flow_run_id) is not None

    def runs_in_progress(self) -> list[tuple[str, float]]:
        """``(flow name, start as Unix time)`` of each observed flow run this process is running."""
        with self._lock:
            infos = [i for i in self._runs.values() if i.observed and not i.remote]
        return [(i.flow_name, i.start_time.timestamp() if i.start_time else i.began_at) for i in infos]

    # -- flow runs -------------------------------------------------------------------------------------------

    def begin_flow_run(
        self,
        flow: Any,
        flow_run: Any,
        spec: ObserveSpec,
        *,
        observed: bool,
        parent_flow_run_id: str | None = None,
        start_time: datetime | None = None,
        previous_error: BaseException | None = None,
    ) -> tuple[RunInfo, bool]:
        """Put a flow run in scope (and say whether it is new here).

        An observed flow's ``on_running`` hook calls it once per attempt.

        Args:
            observed: Called by the observed flow's ``on_running`` hook: one
                call per attempt, so a second call is a retry, whose rows count
                from 0 again.
            previous_error: On a retry, the exception the previous attempt
                failed with, if known (kept for the row's ``attempt_errors``).
        """
        key = str(flow_run.id) if hasattr(flow_run, "id") else str(flow_run)
        with self._lock:
            info = self._runs.get(key)
            if info is None:
                info = RunInfo(
                    flow_run_id=key,
                    flow_name=getattr(flow, "name", str(flow)),
                    spec=spec,
                    observed=observed,
                    parent_flow_run_id=parent_flow_run_id,
                    start_time=start_time,
                )
                self._runs[key] = info
                new = True
            else:
                new = False
            if not new and observed:
                info.observed, info.spec = True, spec
            if start_time is not None and info.start_time is None:
                info.start_time = start_time
            if observed:
                info.attempts += 1
                if info.attempts > 1:
                    self._start_new_attempt(info, previous_error)
        return info, new

    def _start_new_attempt(self, info: RunInfo, previous_error: BaseException | None) -> None:
        """A retry of ``info``'s flow run starts (``self._lock`` held): its rows count from 0 again."""
        failed = info.attempts - 1
        if previous_error is not None:
            info.attempt_errors.append(AttemptError(failed, type(previous_error).__name__, str(previous_error) or None))
        else:
            info.attempt_errors.append(AttemptError(failed, None, None))
        with info.lock:
            info.rows, info.rows_by_table = 0, {}
        for task_run_id in [k for k, c in self._task_rows.items() if c.flow_run_id == info.flow_run_id]:
            del self._task_rows[task_run_id]  # rows of task runs of the failed attempt, never finished

    def begin_remote(
        self, flow_run_id: str, flow_name: str, spec: ObserveSpec, *, sample_gpu: bool
    ) -> tuple[RunInfo, bool]:
        """A task of the flow run starts in this worker process: the run is in remote scope (new: ``True``)."""
        with self._lock:
            info = self._runs.get(flow_run_id)
            new = info is None
            if info is None:
                info = RunInfo(flow_run_id, flow_name, spec, observed=False, remote=True)
                info.gpu_sampled = sample_gpu
                self._runs[flow_run_id] = info
            info.active_tasks += 1
        return info, new

    def end_remote(self, flow_run_id: str) -> RunInfo | None:
        """A task of a remote-scope run ended here: the run, when that was its last running task (scope ended:
        it leaves the scope, remembered among the recent runs)."""
        with self._lock:
            info = self._runs.get(flow_run_id)
            if info is None or not info.remote:
                return None
            info.active_tasks -= 1
            if info.active_tasks > 0:
                return None
            del self._runs[flow_run_id]
            self._remember(flow_run_id, info)
        return info

    def recorded(self, flow_run_id: str) -> bool:
        """Whether the flow run's end was already recorded here (e.g. ``on_failure`` then ``on_crashed``)."""
        with self._lock:
            return flow_run_id in self._recent and flow_run_id not in self._runs

    def finish(self, flow_run_id: str) -> RunInfo | None:
        """The run leaves the scope (remembered among the recent ones); ``None`` if it was not in it."""
        with self._lock:
            info = self._runs.pop(flow_run_id, None)
            if info is not None:
                self._remember(flow_run_id, info)
            return info

    def _remember(self, flow_run_id: str, info: RunInfo) -> None:
        """Keep a run that left the scope among the recent ones (``self._lock`` held)."""
        self._recent[flow_run_id] = info
        while len(self._recent) > _RECENT_RUNS:
            self._recent.popitem(last=False)

    # -- row counts ------------------------------------------------------------------------------------------

    def count_rows(self, info: RunInfo, task_run: Any, n: int, table: str | None) -> bool:
        """Count ``n`` generated rows of ``table`` toward the run: ``task_run``'s current attempt (its row's
        ``rows``, reaching the flow's as the task run ends) or, with no task run, the flow run's attempt.

        Returns:
            ``False`` for rows of a task attempt that was already retried (counted nowhere but the metric).
        """
        if task_run is None:
            self.count_flow_rows(info, {table: n})
            return True
        return self.count_task_rows(task_run, info.flow_run_id, n, table)

    def count_task_rows(self, task_run: Any, flow_run_id: str | None, n: int, table: str | None) -> bool:
        """Count ``n`` rows of ``table`` toward ``task_run``'s current attempt (``False``: a late call of an
        attempt already retried)."""
        key = str(task_run.id)
        attempt = int(getattr(task_run, "run_count", 0) or 0)
        with self._lock:
            count = self._task_rows.get(key)
            if count is None:
                count = self._task_rows[key] = TaskRowCount(flow_run_id)
            return count.add(n, table, attempt)

    @staticmethod
    def count_flow_rows(info: RunInfo, rows_by_table: dict[str | None, int]) -> None:
        """Count rows toward the flow run's current attempt (its own, or its tasks' in other processes)."""
        info.add_rows(rows_by_table)

    @staticmethod
    def count_row_event(info: RunInfo) -> int:
        """Note that rows were counted toward the run (without counting any): the new event number."""
        return info.bump_row_events()

    def task_finished(self, task_run_id: str, flow_run_id: str | None, run_count: int) -> dict[str | None, int]:
        """A task run ended here: the rows of its last attempt, by table, counted toward its flow run (when
        that runs in this process); the task run is no longer in progress."""
        return self.tasks_finished([(task_run_id, flow_run_id, run_count)])[0]

    def tasks_finished(
        self, ends: Sequence[tuple[str, str | None, int]], *, stopped: bool = False
    ) -> list[dict[str | None, int]]:
        """``task_finished`` for each ``(task_run_id, flow_run_id, run_count)``, under one lock: a batch of
        task-run ends (``Runtime.note_task_run``). ``stopped``: each was ``task_stopped`` as it ended, which
        noted the row event then (``record_rows``' duplicate check sees the end when it happened)."""
        found = []
        with self._lock:
            runs, task_rows, active = self._runs, self._task_rows, self._active_tasks
            for task_run_id, flow_run_id, run_count in ends:
                count = task_rows.pop(task_run_id, None)
                active.pop(task_run_id, None)
                info = runs.get(flow_run_id) if flow_run_id else None
                if info is not None and info.remote:
                    info = None
                if info is not None:
                    info.local_task_run_ids.add(task_run_id)
                found.append((count, run_count, info))
        out = []
        for count, run_count, info in found:
            rows_by_table = count.final(run_count) if count is not None else {}
            if info is not None:
                info.add_rows(rows_by_table, event=not stopped)
            out.append(rows_by_table)
        return out

    def task_stopped(self, task_run_id: str, flow_run_id: str | None) -> None:
        """A task run ended here: no longer in progress, and a row event of its flow run (when that runs in this
        process), as ``task_finished`` notes; ``tasks_finished(..., stopped=True)`` counts its rows later."""
        with self._lock:
            self._active_tasks.pop(task_run_id, None)
            info = self._runs.get(flow_run_id) if flow_run_id else None
        if info is not None and not info.remote:
            with info.lock:  # (``bump_row_events``, inline: once per task run)
                info.row_events += 1

    def count_open_task_rows(self, info: RunInfo) -> None:
        """At the flow's end: count the rows of its task runs never recorded as ended (their last attempt's)."""
        with self._lock:
            keys = [k for k, c in self._task_rows.items() if c.flow_run_id == info.flow_run_id]
            counts = [self._task_rows.pop(k) for k in keys]
        total: dict[str | None, int] = {}
        for count in counts:
            for table, n in count.by_table.items():
                total[table] = total.get(table, 0) + n
        info.add_rows(total)

    # -- task runs in progress -------------------------------------------------------------------------------

    def task_started(self, task_run: Any, flow_run_id: str, task_run_id: str | None = None) -> None:
        """A task run of a flow in scope starts running here (for measurements from threads it starts);
        ``task_run_id``: its id as text, when the caller has it."""
        key = task_run_id if task_run_id is not None else id_text(task_run.id)
        with self._lock:
            self._active_tasks[key] = (task_run, flow_run_id)

    def task_ended(self, task_run_id: Any) -> None:
        with self._lock:
            self._active_tasks.pop(id_text(task_run_id), None)

    def implicit_scope(self) -> ImplicitScope:
        """Where a measurement made outside Prefect's run context belongs (a plain thread a run started).

        Prefect's run context is a ``contextvar``, which a new thread does not
        inherit. The measurement goes to the one task run in progress in this
        process, when there is exactly one; else to the one flow run in scope
        (with no task row) when there is exactly one; else nowhere but the
        metrics, with ``problem`` saying why.
        """
        with self._lock:
            tasks = [(t, f) for t, f in self._active_tasks.values() if f in self._runs]
            runs = list(self._runs.values())
            if len(tasks) == 1:
                task_run, flow_run_id = tasks[0]
                return ImplicitScope(self._runs[flow_run_id], task_run)
        local = [r for r in runs if not r.remote]
        if len(local) == 1:
            if tasks:
                return ImplicitScope(
                    local[0],
                    problem=f"{len(tasks)} task runs were in progress: it counts toward flow run "
                    f"{local[0].flow_run_id} but no task run",
                )
            return ImplicitScope(local[0])
        if not runs:
            return ImplicitScope(None)
        return ImplicitScope(
            None, problem=f"{len(runs)} flow runs and {len(tasks)} task runs were in progress: it counts in no run"
        )
