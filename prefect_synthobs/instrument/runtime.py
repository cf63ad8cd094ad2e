"""The run scope of one process: which flow runs are in progress, and how a run's end is recorded.

``Runtime`` is built by the instrumentation (``prefect_synthobs.instrument.instrumentation``)
from the active settings and rebuilt when ``configure`` changes them. It keeps
the runs in scope (observed flows and their subflows), attaches the GPU
sampler to them, and turns a run's end into one call of the recording seam
(``Recording``).
"""

from __future__ import annotations

import contextvars
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from opentelemetry import trace
from opentelemetry.trace import SpanContext
from prefect.client.orchestration import get_client
from prefect.context import SettingsContext
from prefect.events import emit_event

from prefect_synthobs import catalog
from prefect_synthobs._log import get_logger
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.config.active import get_settings
from prefect_synthobs.config.settings import SynthObsSettings
from prefect_synthobs.gpu.nvml import GpuDevice, GpuReading
from prefect_synthobs.gpu.sampler import GpuSampler, RunGpuSummary
from prefect_synthobs.health.recorder import Recorder, adopt_unkeyed_spool
from prefect_synthobs.health.rows import AttemptError, trace_id_from_traceparent
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.health.tables import Row
from prefect_synthobs.instrument.reconcile import missing_task_rows
from prefect_synthobs.instrument.recording import Recording
from prefect_synthobs.instrument.remote import RemoteWork, read_remote_work, report_gpu_summary, report_task_rows
from prefect_synthobs.telemetry.exposition import MetricsExporter, make_exporter
from prefect_synthobs.telemetry.metrics import SynthObsMetrics
from prefect_synthobs.telemetry.redaction import redact_fields
from prefect_synthobs.telemetry.tracing import current_run_span

logger = get_logger()

TRACEPARENT_LABEL = catalog.TRACEPARENT_LABEL
_RECENT_RUNS = 1024
RECONCILE_DELAY_SECONDS = 3.0
"""How long after a flow's end its process waits before writing API rows for task runs no worker recorded."""


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

    def add_rows(self, rows_by_table: dict[str | None, int]) -> None:
        """Count rows toward this attempt of the run (its row's ``rows``)."""
        with self.lock:
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


def _state_type(state: Any) -> str:
    st = getattr(state, "type", None)
    return str(getattr(st, "value", st or "UNKNOWN"))


def exception_of(state: Any) -> BaseException | None:
    """The exception behind a failed state, read in-process (no result I/O)."""
    data = getattr(state, "data", None)
    for candidate in (getattr(data, "result", None), data):
        if isinstance(candidate, BaseException):
            return candidate
    exc = sys.exc_info()[1]
    return exc if isinstance(exc, Exception) else None


def _error_of(state: Any) -> tuple[str | None, str | None]:
    if _state_type(state) in ("COMPLETED", "PENDING", "RUNNING", "SCHEDULED"):
        return None, None
    exc = exception_of(state)
    if exc is not None:
        return type(exc).__name__, str(exc) or getattr(state, "message", None)
    return _state_type(state).title(), getattr(state, "message", None)


def _tags(obj: Any) -> list[str]:
    return [str(t) for t in (getattr(obj, "tags", None) or [])]


class Runtime:
    """Everything one process needs to record observed runs.

    Args:
        settings: The active settings.
        metrics: The metric catalog to update.
        exporter: Metrics exporter (defaults to the one for ``metrics_mode``).
        recorder: Row recorder (defaults to one writing to ``store_url``).
        sampler: Returns the process's GPU sampler (``None``: GPU sampling off).
        read_flow_run: Reads a flow run from the Prefect API (default: Prefect's
            sync client); used when a run ends in a process that did not see it
            start (a runner recording a crash), whose flow run is stale.
        after_flow: Called once an observed flow's row and metrics are
            published (the instrumentation's bounded OTLP metrics and logs flush).
        after_remote_task: Called as a task ends in a worker process, once its
            rows are spooled (the instrumentation's bounded span and log flush).
    """

    def __init__(
        self,
        settings: SynthObsSettings,
        *,
        metrics: SynthObsMetrics,
        exporter: MetricsExporter | None = None,
        recorder: Recorder | None = None,
        sampler: Callable[[], GpuSampler | None] = lambda: None,
        read_flow_run: Callable[[str], Any] | None = None,
        after_flow: Callable[[], None] = lambda: None,
        after_remote_task: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        store_url = settings.resolved_store_url()
        store_options = settings.resolved_store_options()
        timeout = settings.store_timeout_seconds
        self._new_store: Callable[[], HealthStore] = lambda: HealthStore(
            store_url, storage_options=store_options, timeout=timeout
        )
        self.recorder = recorder or Recorder(
            self._new_store,
            settings.store_spool_dir(),
            settings.flush_interval_seconds,
            store_timeout=timeout,
            spool_max_bytes=settings.spool_max_bytes,
            on_dropped=lambda table, rows: metrics.rows_dropped.labels(table=table).inc(rows),
        )
        self.recording = Recording(self.recorder, metrics, redact_pii=settings.redact_pii)
        self.exporter = exporter or make_exporter(settings)
        self.host = socket.gethostname()
        self._sampler = sampler
        self._read_flow_run = read_flow_run or _read_flow_run_from_api
        self._after_flow = after_flow
        self._after_remote_task = after_remote_task
        self._runs: dict[str, RunInfo] = {}
        self._task_rows: dict[str, TaskRowCount] = {}
        self._active_tasks: dict[str, tuple[Any, str]] = {}
        """Task runs in progress in this process (of flows in scope): ``{task run id: (task run, flow run id)}``."""
        self._recent: OrderedDict[str, RunInfo] = OrderedDict()
        self._lock = threading.Lock()
        self._started = False
        self._gpu_warning = WarnOnce(logger)
        self._remote_warning = WarnOnce(logger)
        self._closing = threading.Event()
        self._reconciling: list[threading.Thread] = []
        metrics.in_progress.source = self.runs_in_progress

    def start(self) -> None:
        """Start the metrics exporter and the periodic flusher (idempotent)."""
        if self._started:
            return
        self._started = True
        self.exporter.start()
        adopt_unkeyed_spool(self.settings.resolved_spool_dir(), self.recorder.spool_dir)
        self.recorder.start()

    def close(self) -> None:
        """Finish pending reconciliations (bounded), write what is buffered and release exporters."""
        self._closing.set()
        with self._lock:
            pending = list(self._reconciling)
        deadline = time.monotonic() + self.settings.store_timeout_seconds
        for thread in pending:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.recorder.stop(flush=True)
        self.exporter.close()
        self._started = False

    def adopt_scope(self, other: Runtime) -> None:
        """Carry the runs in scope over from the runtime this one replaces."""
        with other._lock:
            self._runs, self._recent = other._runs, other._recent

    # -- scope ---------------------------------------------------------------

    def run_info(self, flow_run_id: Any) -> RunInfo | None:
        key = str(flow_run_id)
        with self._lock:
            return self._runs.get(key) or self._recent.get(key)

    def runs_in_progress(self) -> list[tuple[str, float]]:
        """``(flow name, start as Unix time)`` of each observed flow run this process is running."""
        with self._lock:
            infos = [i for i in self._runs.values() if i.observed and not i.remote]
        return [(i.flow_name, i.start_time.timestamp() if i.start_time else i.began_at) for i in infos]

    def in_scope(self, flow_run_id: Any) -> bool:
        return self.run_info(flow_run_id) is not None

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
    ) -> RunInfo:
        """Put a flow run in scope; an observed flow's ``on_running`` hook calls it once per attempt.

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
        if new:
            self._gpu_attach(key)
        return info

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

    def begin_remote_task(self, flow: Any, flow_run: Any, spec: ObserveSpec, *, sample_gpu: bool = True) -> RunInfo:
        """A task of an observed flow starts in this worker process: the flow run is in scope (remotely).

        Args:
            sample_gpu: Attribute this host's GPU samples to the run while its
                tasks run here (not on the flow's own host, sampled there).
        """
        key = str(flow_run.id)
        with self._lock:
            info = self._runs.get(key)
            if info is None:
                info = RunInfo(key, getattr(flow, "name", key), spec, observed=False, remote=True)
                info.gpu_sampled = sample_gpu
                self._runs[key] = info
                new = True
            else:
                new = False
            info.active_tasks += 1
        if new and sample_gpu:
            self._gpu_attach(key)
        return info

    def end_remote_task(self, flow_run_id: Any) -> None:
        """A task of a remote-scope flow run ended here; the scope ends with its last running task.

        What the task recorded is safe before it returns (rows in the local
        spool, spans and logs exported, bounded): a worker may be killed the
        moment its task returns, without exit hooks (Ray stops its workers that
        way; a process pool's workers exit without ``atexit``).
        """
        key = str(flow_run_id)
        with self._lock:
            info = self._runs.get(key)
            if info is None or not info.remote:
                return
            info.active_tasks -= 1
            last = info.active_tasks <= 0
        if last:
            self._finish_scope(key)
            if info.gpu_sampled:
                self._report_gpu_use(key)
        self.deliver_remote()

    def deliver_remote(self) -> None:
        """Spool this worker's buffered rows and export its spans and logs now (bounded; never raises).

        The rows go to local disk on this thread (no store call: the flusher
        takes them on to the store), so a task pays about a millisecond, not a
        store round trip, and a store that hangs never holds a task.
        """
        self.recorder.spool_now()
        try:
            self._after_remote_task()
        except Exception as exc:  # never disturb the task
            logger.debug("synthobs: worker telemetry flush failed: %s", exc)

    def _report_gpu_use(self, key: str) -> None:
        summary = self._gpu_summary(key)
        if summary is not None and summary.samples:
            try:  # for the flow row's GPU summary, written in the flow's process on another host
                report_gpu_summary(key, self.host, summary, self.settings.store_timeout_seconds)
                self._remote_warning.ok()
            except Exception as exc:
                self._remote_warning.fail(
                    "synthobs: could not report this host's GPU use of flow run %s (%s)", key, exc
                )

    def report_task_rows(self, flow_run_id: str, task_run_id: str, rows: dict[str | None, int]) -> None:
        """A worker's task generated rows: leave them for the flow's process to count (one warning while failing)."""
        try:
            report_task_rows(flow_run_id, task_run_id, rows, self.settings.store_timeout_seconds)
            self._remote_warning.ok()
        except Exception as exc:
            self._remote_warning.fail(
                "synthobs: could not report the %d rows task run %s generated to its flow run (%s); they are in "
                "its task_runs row, and the flow row counts this process's rows only until the API answers",
                sum(rows.values()),
                task_run_id,
                exc,
            )

    def add_task_rows(self, task_run: Any, n: int, table: str | None = None, *, flow_run_id: str | None = None) -> bool:
        """Count ``n`` generated rows of ``table`` toward the current attempt of a task run (its row's ``rows``).

        They reach the flow's row when the task run ends (its last attempt's
        rows), or at the flow's end for a task run never recorded.

        Returns:
            ``False`` for rows of an attempt that was already retried (counted nowhere but the metric).
        """
        key = str(task_run.id)
        attempt = int(getattr(task_run, "run_count", 0) or 0)
        with self._lock:
            count = self._task_rows.get(key)
            if count is None:
                count = self._task_rows[key] = TaskRowCount(flow_run_id)
            return count.add(n, table, attempt)

    def task_started(self, task_run: Any, flow_run_id: str) -> None:
        """A task run of a flow in scope starts running here (for measurements from threads it starts)."""
        with self._lock:
            self._active_tasks[str(task_run.id)] = (task_run, flow_run_id)

    def task_ended(self, task_run_id: Any) -> None:
        with self._lock:
            self._active_tasks.pop(str(task_run_id), None)

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

    # -- GPU -----------------------------------------------------------------

    def _gpu_attach(self, key: str) -> None:
        try:
            sampler = self._sampler()
            if sampler is not None:
                sampler.attach(key)
        except Exception as exc:  # NVML trouble never reaches the run
            self._gpu_warning.fail("synthobs: GPU sampling failed to start (%s)", exc)

    def _gpu_summary(self, key: str) -> RunGpuSummary | None:
        """Stop attributing this host's GPU samples to the run; its summary here."""
        try:
            sampler = self._sampler()
            return sampler.detach(key) if sampler is not None else None
        except Exception as exc:
            self._gpu_warning.fail("synthobs: GPU summary failed (%s)", exc)
            return None

    def _finish_scope(self, key: str) -> RunInfo | None:
        with self._lock:
            info = self._runs.pop(key, None)
            if info is not None:
                self._recent[key] = info
                while len(self._recent) > _RECENT_RUNS:
                    self._recent.popitem(last=False)
            return info

    # -- flows ---------------------------------------------------------------

    def end_flow_run(
        self, flow: Any, flow_run: Any, state: Any, spec: ObserveSpec | None, *, flush: bool, remote: bool = False
    ) -> None:
        """Record a finished flow run: health row, metrics, span attributes, export.

        Args:
            remote: Some of the run's tasks may have run in other processes:
                read what they did from the Prefect API (bounded) first.
        """
        key = str(flow_run.id)
        with self._lock:
            if key in self._recent and key not in self._runs:
                return  # already recorded (e.g. on_failure then on_crashed)
        info = self._finish_scope(key)
        # not in scope here: a runner or worker recording the crash of a run whose own process died
        recorded_elsewhere = info is None
        if info is None:
            info = RunInfo(key, flow.name, spec or ObserveSpec(), observed=spec is not None)
        spec = info.spec
        info.add_rows(self._take_open_task_rows(key))
        work = self._add_remote_work(info, flow.name) if remote else None
        gpu = self._gpu_summary(key)
        for other in (work.gpu if work is not None else {}).values():  # the run's tasks on other hosts
            gpu = gpu or RunGpuSummary()
            gpu.merge(other)
        error_type, error_message = _error_of(state)
        labels = getattr(flow_run, "labels", None) or {}
        start_time = getattr(flow_run, "start_time", None) or info.start_time
        if start_time is None:  # a stale flow run (a runner recording a crash): ask the API
            try:
                fresh = self._read_flow_run(key)
                start_time = getattr(fresh, "start_time", None)
                flow_run = fresh if fresh is not None else flow_run
            except Exception as exc:
                logger.debug("synthobs: could not read flow run %s from the API: %s", key, exc)
        if remote or recorded_elsewhere:  # task runs whose process may never have written their rows
            info.start_time = info.start_time or start_time
            self._reconcile_later(info, flow.name)
        run_count = max(info.attempts, int(getattr(flow_run, "run_count", 0) or 0))
        attempt_errors = list(info.attempt_errors)
        if error_type is not None:
            attempt_errors.append(AttemptError(max(run_count, 1), error_type, error_message))
        self.recording.flow_finished(
            flow_run_id=key,
            flow_name=flow.name,
            kind=spec.kind,
            model_type=spec.model_type,
            table=spec.table,
            parent_flow_run_id=info.parent_flow_run_id,
            state_type=_state_type(state),
            state_name=getattr(state, "name", None),
            start_time=start_time,
            end_time=getattr(state, "timestamp", None) or datetime.now(timezone.utc),
            rows=info.rows,
            rows_by_table=dict(info.rows_by_table),
            error_type=error_type,
            error_message=error_message,
            tags=_tags(flow_run),
            host=self.host,
            trace_id=trace_id_from_traceparent(labels.get(TRACEPARENT_LABEL)) or _current_trace_id(),
            gpu=gpu.columns() if gpu is not None and gpu.samples else None,
            span_attributes=span_attributes(spec),
            run_span=current_run_span(key),
            run_count=run_count,
            attempt_errors=attempt_errors,
        )
        if flush:
            self.recorder.flush()
            self.exporter.on_flow_end(flow.name)
            self._after_flow()

    def _take_open_task_rows(self, flow_run_id: str) -> dict[str | None, int]:
        """The rows of the flow run's task runs that were never recorded as ended (their last attempt's)."""
        with self._lock:
            keys = [k for k, c in self._task_rows.items() if c.flow_run_id == flow_run_id]
            counts = [self._task_rows.pop(k) for k in keys]
        total: dict[str | None, int] = {}
        for count in counts:
            for table, n in count.by_table.items():
                total[table] = total.get(table, 0) + n
        return total

    def _add_remote_work(self, info: RunInfo, flow_name: str) -> RemoteWork | None:
        """Count the rows and task runs of the flow's tasks in other processes into this process's records."""
        try:
            work = read_remote_work(info.flow_run_id, set(info.local_task_run_ids), self.settings.store_timeout_seconds)
        except Exception as exc:
            self._remote_warning.fail(
                "synthobs: could not read what flow run %s's tasks did in other processes from the Prefect API "
                "(%s); its row and metrics count this process's work only",
                info.flow_run_id,
                exc,
            )
            return None
        info.add_rows(work.rows_by_table)
        for table, n in work.rows_by_table.items():
            self.recording.rows_generated(n, flow_name=flow_name, table=table, model_type=info.spec.model_type)
        for task in work.tasks:
            self.recording.task_counted(
                flow_name=flow_name,
                task_name=task.task_name,
                state_type=task.state_type,
                duration_s=task.duration_s,
                run_count=task.run_count,
            )
        return work

    def _reconcile_later(self, info: RunInfo, flow_name: str) -> None:
        """Shortly after the flow's end, write API rows for its task runs no worker recorded (killed, lost).

        Workers write their rows before their task returns (``end_remote_task``),
        unless the store was slow or down and they spooled them; this waits
        ``RECONCILE_DELAY_SECONDS`` (or until the process exits, see ``close``)
        on a daemon thread. A worker row that lands later still wins over the
        API's (``HealthStore.read`` keeps one row per run, the hook's).
        """
        since = info.start_time or datetime.now(timezone.utc)

        def run() -> None:
            self._closing.wait(RECONCILE_DELAY_SECONDS)
            try:
                rows = missing_task_rows(
                    self._new_store(), info.flow_run_id, flow_name, since, redact_pii=self.settings.redact_pii
                )
                if rows:
                    self.recorder.add(catalog.TASK_RUNS, rows)
                    self.recorder.flush_soon()
                    logger.info(
                        "synthobs: %d task run(s) of flow run %s that no worker recorded were written from the "
                        "Prefect API",
                        len(rows),
                        info.flow_run_id,
                    )
            except Exception as exc:
                self._remote_warning.fail("synthobs: reconciling flow run %s failed (%s)", info.flow_run_id, exc)

        # a fresh context with only Prefect's settings (the API URL): the flow's context holds its client,
        # closed by the time this runs
        settings_context = SettingsContext.get()

        def in_settings() -> None:
            if settings_context is None:
                run()
                return
            with SettingsContext(profile=settings_context.profile, settings=settings_context.settings):
                run()

        thread = threading.Thread(
            target=contextvars.Context().run, args=(in_settings,), daemon=True, name="synthobs-reconcile"
        )
        with self._lock:
            self._reconciling = [t for t in self._reconciling if t.is_alive()] + [thread]
        thread.start()

    # -- tasks ---------------------------------------------------------------

    def record_task_run(
        self,
        task: Any,
        task_run: Any,
        flow_name: str | None,
        error: tuple[str | None, str | None] | None = None,
        *,
        span_context: SpanContext | None = None,
        attempt_errors: list[AttemptError] | None = None,
    ) -> dict[str | None, int]:
        """Record a finished task run (one row, retries included); ``span_context`` is its span's.

        Args:
            error: The last error, when the caller knows it better than the state.
            attempt_errors: The error of every failed attempt (default: the
                last error only, when the run failed).

        Returns:
            The rows the task's last attempt generated, by table (also counted toward its flow run here).
        """
        state = task_run.state
        state_type = _state_type(state)
        error_type, error_message = error if error and error[0] else _error_of(state)
        if state_type == "COMPLETED":
            error_type = error_message = None
        total = getattr(task_run, "total_run_time", None)
        run_count = int(task_run.run_count or 0)
        with self._lock:
            count = self._task_rows.pop(str(task_run.id), None)
            self._active_tasks.pop(str(task_run.id), None)
            info = self._runs.get(str(task_run.flow_run_id)) if task_run.flow_run_id else None
            if info is not None and not info.remote:
                info.local_task_run_ids.add(str(task_run.id))
        rows_by_table = count.final(run_count) if count is not None else {}
        if info is not None and not info.remote:
            info.add_rows(rows_by_table)
        attempt_errors = list(attempt_errors or [])
        if error_type and not any(e.attempt >= run_count for e in attempt_errors):
            attempt_errors.append(AttemptError(max(run_count, 1), error_type, error_message))  # the last attempt's
        self.recording.task_finished(
            task_run_id=str(task_run.id),
            flow_run_id=str(task_run.flow_run_id) if task_run.flow_run_id else None,
            flow_name=flow_name,
            task_name=task.name,
            state_type=state_type,
            state_name=getattr(state, "name", None),
            start_time=task_run.start_time,
            end_time=task_run.end_time or getattr(state, "timestamp", None),
            run_count=task_run.run_count,
            run_time_s=total.total_seconds() if total is not None else None,
            error_type=error_type,
            error_message=error_message,
            tags=_tags(task_run),
            rows=sum(rows_by_table.values()),
            span_context=span_context,
            attempt_errors=attempt_errors,
        )
        return rows_by_table


class GpuPublisher:
    """The GPU sampler's sink: samples go to the recording seam of the current runtime.

    It looks the runtime up at each sample, so the sampler (one per process)
    keeps working when ``configure`` rebuilds the runtime.
    """

    def __init__(self, host: str, runtime: Callable[[], Runtime | None]) -> None:
        self.host = host
        self._runtime = runtime

    def publish(self, readings: list[GpuReading], energy_j: dict[str, float], rows: list[Row]) -> None:
        runtime = self._runtime()
        if runtime is not None:
            runtime.recording.gpu_sampled(readings, energy_j, rows)

    def device_lost(self, device: GpuDevice, run_ids: list[str]) -> None:
        runtime = self._runtime()
        if runtime is not None:
            runtime.recording.gpu_lost(device)
        redacting = (runtime.settings if runtime is not None else get_settings()).redact_pii
        emit_event(
            event=catalog.EVENT_GPU_LOST,
            resource=redact_fields(
                {
                    "prefect.resource.id": f"synthobs.gpu.{device.uuid}",
                    "prefect.resource.name": f"GPU {device.index} ({device.name}) on {self.host}",
                    "synthobs.gpu.index": str(device.index),
                    "synthobs.host": self.host,
                },
                enabled=redacting,
            ),
            related=[
                {"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"}
                for run_id in run_ids
            ],
            payload=redact_fields(
                {
                    "gpu_index": device.index,
                    "gpu_uuid": device.uuid,
                    "gpu_name": device.name,
                    "host": self.host,
                    "flow_run_ids": run_ids,
                },
                enabled=redacting,
            ),
        )


def _current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def _read_flow_run_from_api(flow_run_id: str) -> Any:
    """The flow run as the Prefect API has it now (bounded by the client's own timeouts)."""
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id))
