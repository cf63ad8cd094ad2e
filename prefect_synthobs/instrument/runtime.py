"""The runtime of one process: what records observed runs, assembled from its parts.

``Runtime`` is built by the instrumentation (``instrument/instrumentation.py``)
from the active settings and rebuilt when ``configure`` changes them. It holds
the parts, each with one job:

- ``scope`` (``RunScope``, ``scope.py``): the runs in scope and their row
  counts, the only writer of them;
- ``recording`` (``Recording``, ``recording.py``): run events to the health,
  metrics and span sinks;
- ``flow_end`` (``FlowEnd``, ``flow_end.py``): a flow run's end as one event;
- ``worker`` (``WorkerSide``, ``worker.py``): tasks of observed flows in
  worker processes;
- ``gpu`` (``RunGpu``, ``gpu_use.py``): the GPU sampler attached to runs;
- ``process_use`` (``RunProcessUse``, ``process_use.py``): the CPU time and peak
  memory of the process for each flow run it runs (one per process: it
  outlives a runtime rebuilt by ``configure`` mid-run);
- the ``recorder`` (rows buffered, flushed, spooled) and the metrics ``exporter``.

Its methods are the calls the hooks and the listener make; each hands over to
the part that does the work.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from opentelemetry.trace import SpanContext
from prefect.client.schemas.objects import StateType

from prefect_synthobs import catalog
from prefect_synthobs._host import host_name
from prefect_synthobs._log import get_logger
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.catalog import MAX_ERROR_CHARS
from prefect_synthobs.config.settings import SynthObsSettings
from prefect_synthobs.gpu.sampler import GpuSampler
from prefect_synthobs.health.events import AttemptError
from prefect_synthobs.health.recorder import Recorder, adopt_unkeyed_spool
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.instrument import prefect_api, prefect_runs
from prefect_synthobs.instrument.assets import AssetSink
from prefect_synthobs.instrument.flow_end import RECONCILE_DELAY_SECONDS, FlowEnd
from prefect_synthobs.instrument.gpu_use import GpuPublisher, RunGpu
from prefect_synthobs.instrument.process_use import PROCESS_USE, RunProcessUse
from prefect_synthobs.instrument.recording import Recording, TaskEndBatch
from prefect_synthobs.instrument.scope import (
    ImplicitScope,
    ObserveSpec,
    RunInfo,
    RunScope,
    TaskRowCount,
    span_attributes,
)
from prefect_synthobs.instrument.worker import WorkerSide
from prefect_synthobs.telemetry import prefect_metrics
from prefect_synthobs.telemetry.exposition import MetricsExporter, make_exporter
from prefect_synthobs.telemetry.metrics import SynthObsMetrics
from prefect_synthobs.telemetry.redaction import clean_error_message

__all__ = [
    "RECONCILE_DELAY_SECONDS",
    "TRACEPARENT_LABEL",
    "GpuPublisher",
    "ImplicitScope",
    "ObserveSpec",
    "RunInfo",
    "Runtime",
    "TaskRowCount",
    "span_attributes",
]

TRACEPARENT_LABEL = catalog.TRACEPARENT_LABEL

logger = get_logger()


class Runtime:
    """Everything one process needs to record observed runs.

    Args:
        settings: The active settings.
        metrics: The metric set to update.
        exporter: Metrics exporter (defaults to the one for ``metrics_mode``).
        recorder: Row recorder (defaults to one writing to ``store_url``).
        sampler: Returns the process's GPU sampler (``None``: GPU sampling off).
        read_flow_run: Reads a flow run from the Prefect API (default: ``prefect_api.read_flow_run``);
            used when a run ends in a process that did not see it start (a runner recording a crash).
        after_flow: Called once an observed flow's row and metrics are published (the
            instrumentation's bounded OTLP metrics and logs flush).
        after_remote_task: Called as a task ends in a worker process, once its rows are spooled (the
            instrumentation's bounded span and log flush).
        process_use: Measures each flow run's CPU time and peak memory (default: the process's tracker).
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
        process_use: RunProcessUse = PROCESS_USE,
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
        self.recording = Recording(
            self.recorder,
            metrics,
            redact_pii=settings.redact_pii,
            extra_sinks=(AssetSink(settings, run_info=lambda run: self.scope.run_info(run)),),  # assets at runs' ends
        )
        self.task_ends = TaskEndBatch(self._record_task_ends)  # (its return value unused)
        self._task_end_warning = WarnOnce(logger)
        """Task runs that completed in this process's flows, recorded together (``note_task_run``); every flush
        of the recorder records them first."""
        self.recorder.add_source(self.task_ends.flush)
        self.exporter = exporter or make_exporter(settings)
        self.host = host_name()
        self.scope = RunScope()
        self.gpu = RunGpu(sampler)
        self.process_use = process_use
        self.flow_end = FlowEnd(
            self.scope,
            self.recording,
            self.recorder,
            self.gpu,
            new_store=self._new_store,
            read_flow_run=read_flow_run or prefect_api.read_flow_run,
            host=self.host,
            api_timeout=timeout,
            redact_pii=settings.redact_pii,
            process_use=process_use,
        )
        self.worker = WorkerSide(
            self.scope, self.recorder, self.gpu, host=self.host, api_timeout=timeout, after_task=after_remote_task
        )
        self._after_flow = after_flow
        self._started = False
        metrics.in_progress.source = self.scope.runs_in_progress
        # Prefect's HTTP resource metrics aimed at a gRPC port are lost silently: say so once per process
        prefect_metrics.warn_once()

    def start(self) -> None:
        """Start the metrics exporter and the periodic flusher (idempotent)."""
        if self._started:
            return
        self._started = True
        self.task_ends.open()
        self.exporter.start()
        adopt_unkeyed_spool(self.settings.resolved_spool_dir(), self.recorder.spool_dir)
        self.recorder.start()

    def close(self) -> None:
        """Finish pending reconciliations (bounded), write what is buffered and release exporters."""
        self.task_ends.close()
        self.flow_end.close(self.settings.store_timeout_seconds)
        self.recorder.stop(flush=True)
        self.exporter.close()
        self._started = False

    def adopt_scope(self, other: Runtime) -> None:
        """Carry the runs in scope over from the runtime this one replaces."""
        self.scope.adopt(other.scope)

    # -- scope ---------------------------------------------------------------------------------------------

    def run_info(self, flow_run_id: Any) -> RunInfo | None:
        return self.scope.run_info(flow_run_id)

    def in_scope(self, flow_run_id: Any) -> bool:
        return self.scope.in_scope(flow_run_id)

    def runs_in_progress(self) -> list[tuple[str, float]]:
        """``(flow name, start as Unix time)`` of each observed flow run this process is running."""
        return self.scope.runs_in_progress()

    def implicit_scope(self) -> ImplicitScope:
        """Where a measurement made outside Prefect's run context belongs (``RunScope.implicit_scope``)."""
        return self.scope.implicit_scope()

    def task_started(self, task_run: Any, flow_run_id: str, task_run_id: str | None = None) -> None:
        self.scope.task_started(task_run, flow_run_id, task_run_id)

    def task_ended(self, task_run_id: Any) -> None:
        self.scope.task_ended(task_run_id)

    # -- flows ---------------------------------------------------------------------------------------------

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
        """Put a flow run in scope (``RunScope.begin_flow_run``); start measuring a new one's GPU and
        process use (CPU time, peak memory)."""
        if observed:  # perhaps a retry, whose rows count from 0: the task runs noted so far are counted first
            self.task_ends.flush()
        info, new = self.scope.begin_flow_run(
            flow,
            flow_run,
            spec,
            observed=observed,
            parent_flow_run_id=parent_flow_run_id,
            start_time=start_time,
            previous_error=previous_error,
        )
        if new:
            self.process_use.attach(info.flow_run_id)
            self.gpu.attach(info.flow_run_id)
        return info

    def end_flow_run(
        self,
        flow: Any,
        flow_run: Any,
        state: Any,
        spec: ObserveSpec | None,
        *,
        flush: bool,
        remote: bool = False,
        shipped: int | None = None,
    ) -> None:
        """Record a finished flow run (``FlowEnd.record``); with ``flush``, write it out and export now.

        ``remote``: some of the run's tasks may have run in other processes (read from the API, bounded);
        ``shipped``: how many task runs its last attempt sent there, when known (the read then ends once it has
        them). The task runs noted so far (``note_task_run``) are recorded first.
        """
        self.task_ends.flush()
        if self.flow_end.record(flow, flow_run, state, spec, remote=remote, shipped=shipped) and flush:
            self.recorder.flush()
            self.exporter.on_flow_end(flow.name)
            self._after_flow()

    # -- tasks ---------------------------------------------------------------------------------------------

    def record_task_run(
        self,
        task: Any,
        task_run: Any,
        flow_name: str | None,
        error: tuple[str | None, str | None] | None = None,
        *,
        span_context: SpanContext | None = None,
        attempt_errors: list[AttemptError] | None = None,
        metrics: bool = True,
    ) -> dict[str | None, int]:
        """Record a finished task run (one row, retries included); ``span_context`` is its span's.

        Args:
            error: The last error, when the caller knows it better than the state.
            attempt_errors: The error of every failed attempt (default: the last error only, when it failed).
            metrics: ``False``: its row and span only (a worker's task run: its flow's process counts it).

        Returns:
            The rows the task's last attempt generated, by table (also counted toward its flow run here).
        """
        flow_run_id = prefect_runs.id_text(task_run.flow_run_id) if task_run.flow_run_id else None
        rows_by_table = self.scope.task_finished(
            prefect_runs.id_text(task_run.id), flow_run_id, int(task_run.run_count or 0)
        )
        self.recording.handle(
            prefect_runs.task_run_ended(
                task,
                task_run,
                flow_name,
                error=error,
                span_context=span_context,
                attempt_errors=attempt_errors,
                rows=sum(rows_by_table.values()),
            ),
            metrics=metrics,
        )
        return rows_by_table

    def note_task_run(
        self,
        task: Any,
        task_run: Any,
        flow_name: str | None,
        span: Any,
        task_run_id: str | None = None,
        flow_run_id: str | None = None,
        *,
        at_once: bool = False,
    ) -> dict[str | None, int]:
        """A task run of a flow run in scope here ended here (the run listener, from its span).

        A completed one is no longer in progress at once (``RunScope.task_stopped``) and is noted
        (``TaskEndBatch``) with its state and run count as they are now: the rest is done with the others'
        (``_record_task_ends``): its rows counted toward its flow run (``RunScope.tasks_finished``), its event
        built from its objects and recorded, with the same event, row and metric updates as
        ``record_task_run``, which records any other (a failure, whose error is read now). The flow's thread
        only notes it; every flush of the recorder, and the flow's end, records what is noted first.

        ``at_once``: the completed one is recorded now, on this thread, the same way (a worker: its rows must be
        spooled before the task returns), its row not converted to Arrow here (``spool_now`` spools JSON);
        returns the rows its last attempt generated, by table (``{}`` for a noted one: they are counted when it
        is recorded). A worker makes no metric update for it (a task run of a flow run in another process),
        failed or completed, whatever its own settings: the flow's process counts every task run it sent
        elsewhere once, from the API, at the end of the flow run that sent it (``FlowEnd``'s ``counted_only``;
        an undecorated subflow's too), so a worker's count would be a second one. (A subflow run inside a
        worker's task is that worker's own flow run: its task runs take the batch path and are counted there.)
        """
        state = task_run.state
        # (Prefect's own ``StateType`` member first: no ``state_type`` call on the path every task run takes)
        if getattr(state, "type", None) is not StateType.COMPLETED and prefect_runs.state_type(state) != "COMPLETED":
            attempt_errors = prefect_runs.attempt_errors_of(span)
            error = (attempt_errors[-1].error_type, attempt_errors[-1].message) if attempt_errors else None
            return self.record_task_run(
                task,
                task_run,
                flow_name,
                error,
                span_context=span.context,
                attempt_errors=attempt_errors,
                metrics=not at_once,
            )
        if flow_run_id is None:
            flow_run_id = prefect_runs.id_text(task_run.flow_run_id)
        if task_run_id is None:
            task_run_id = prefect_runs.id_text(task_run.id)
        end = prefect_runs.TaskEnd(
            task, task_run, state, int(task_run.run_count or 0), flow_name, span, task_run_id, flow_run_id
        )
        self.scope.task_stopped(task_run_id, flow_run_id)
        if at_once:
            return self._record_task_ends([end], metrics=False, convert=False)[0]
        self.task_ends.add(end)
        return {}

    def _record_task_ends(
        self, ends: list[prefect_runs.TaskEnd], *, metrics: bool = True, convert: bool = True
    ) -> list[dict[str | None, int]]:
        """Record noted completed task runs (``note_task_run``) in one pass; the rows each one's last attempt
        generated, by table. ``metrics``, ``convert``: ``False`` for a worker's (``note_task_run``'s ``at_once``:
        counted in the flow's process; its row spooled as JSON, not converted to Arrow here). Never
        raises: an event that cannot be built costs its row and metrics, not the others' (one warning while it
        keeps failing, naming what is lost)."""
        try:
            rows = self.scope.tasks_finished([(e.task_run_id, e.flow_run_id, e.run_count) for e in ends], stopped=True)
        except Exception as exc:  # never expected; rows uncounted, the events still built
            logger.debug("synthobs: could not count the rows of %d task runs: %s", len(ends), exc)
            rows = [{} for _ in ends]
        events = []
        for end, rows_by_table in zip(ends, rows, strict=True):
            try:
                events.append(prefect_runs.completed_task_run_ended(end, sum(rows_by_table.values())))
            except Exception as exc:
                self._task_end_warning.fail(
                    "synthobs: could not record task run %s (%s: %s); its row and metrics are lost, the run is "
                    "unaffected; this warning is given once while it keeps failing",
                    end.task_run_id,
                    type(exc).__name__,
                    clean_error_message(str(exc), limit=MAX_ERROR_CHARS, redact_pii=self.settings.redact_pii),
                )
        if len(events) == len(ends):
            self._task_end_warning.ok()
        self.recording.handle_many(events, metrics=metrics, convert=convert)
        return rows

    # -- worker side ---------------------------------------------------------------------------------------

    def begin_remote_task(self, flow: Any, flow_run: Any, spec: ObserveSpec, *, sample_gpu: bool = True) -> RunInfo:
        """A task of an observed flow starts in this worker process (``WorkerSide.begin_task``)."""
        return self.worker.begin_task(flow, flow_run, spec, sample_gpu=sample_gpu)

    def end_remote_task(self, flow_run_id: Any) -> None:
        """A task of a remote-scope flow run ended here (``WorkerSide.end_task``)."""
        self.worker.end_task(flow_run_id)

    def deliver_remote(self) -> None:
        """Spool this worker's buffered rows and export its spans and logs now (``WorkerSide.deliver``)."""
        self.worker.deliver()

    def report_task_rows(self, flow_run_id: str, task_run_id: str, rows: dict[str | None, int]) -> None:
        """A worker's task generated rows: leave them for the flow's process to count."""
        self.worker.report_task_rows(flow_run_id, task_run_id, rows)
