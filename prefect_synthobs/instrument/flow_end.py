"""The flow-end side: a finished flow run in scope becomes one ``FlowRunEnded`` event.

At the end of a flow run this process ran (or, for a runner recording a crash,
saw end), ``FlowEnd.record``: takes the run out of scope, counts the rows of
its task runs that never ended here, adds what its tasks did in other
processes (read back from the Prefect API, bounded), closes its GPU summary and
its process use (CPU seconds, peak memory: ``process_use.py``; none for a run
this process did not run), puts Prefect's run identity on its span
(``prefect.flow-run.id``, ...: ``telemetry/prefect_names.py``) and hands the
event to the recording seam. When some of its task runs may have
run where nobody recorded them (killed workers), a daemon thread writes their
rows from the API a little later (``reconcile.py``).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from opentelemetry import trace
from prefect.context import SettingsContext

from prefect_synthobs import catalog
from prefect_synthobs._log import get_logger
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.gpu.sampler import RunGpuSummary
from prefect_synthobs.health.events import FlowRunEnded, RowsGenerated
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.store import HealthStore
from prefect_synthobs.instrument import prefect_runs
from prefect_synthobs.instrument.gpu_use import RunGpu
from prefect_synthobs.instrument.process_use import PROCESS_USE, ProcessUse, RunProcessUse
from prefect_synthobs.instrument.reconcile import missing_task_rows
from prefect_synthobs.instrument.recording import Recording
from prefect_synthobs.instrument.remote import RemoteWork, read_remote_work
from prefect_synthobs.instrument.scope import ObserveSpec, RunInfo, RunScope, span_attributes
from prefect_synthobs.telemetry.prefect_names import of_flow_run
from prefect_synthobs.telemetry.tracing import current_run_span

logger = get_logger()

RECONCILE_DELAY_SECONDS = 3.0
"""How long after a flow's end its process waits before writing API rows for task runs no worker recorded."""


class FlowEnd:
    """Records the end of flow runs in scope.

    Args:
        scope: The process's run scope.
        recording: The recording seam.
        recorder: The row recorder (reconciled rows go there).
        gpu: Detaches runs from the GPU sampler (their summary).
        new_store: Opens the health store (reconciliation reads what is already there).
        read_flow_run: Reads a flow run from the Prefect API (a stale run seen by a runner recording a crash).
        host: This host's name.
        api_timeout: Bound of the API reads at the flow's end.
        redact_pii: The ``redact_pii`` setting (reconciled rows).
        process_use: Measures the CPU time and peak memory of the runs this process runs.
    """

    def __init__(
        self,
        scope: RunScope,
        recording: Recording,
        recorder: Recorder,
        gpu: RunGpu,
        *,
        new_store: Callable[[], HealthStore],
        read_flow_run: Callable[[str], Any],
        host: str,
        api_timeout: float,
        redact_pii: bool,
        process_use: RunProcessUse = PROCESS_USE,
    ) -> None:
        self.scope = scope
        self.process_use = process_use
        self.recording = recording
        self.recorder = recorder
        self.gpu = gpu
        self._new_store = new_store
        self._read_flow_run = read_flow_run
        self.host = host
        self.api_timeout = api_timeout
        self.redact_pii = redact_pii
        self._warning = WarnOnce(logger)
        self._closing = threading.Event()
        self._reconciling: list[threading.Thread] = []
        self._lock = threading.Lock()

    def record(
        self,
        flow: Any,
        flow_run: Any,
        state: Any,
        spec: ObserveSpec | None,
        *,
        remote: bool,
        shipped: int | None = None,
    ) -> bool:
        """Record a finished flow run (``False``: already recorded here).

        ``remote``: some of the run's tasks may have run in other processes (in any attempt): read what they
        did from the Prefect API (bounded) first; ``shipped``: how many in its last attempt (``None``:
        unknown), so that read ends as soon as the API has them all. Without ``remote`` nothing is read from
        the API.
        """
        key = str(flow_run.id)
        if self.scope.recorded(key):
            return False  # e.g. on_failure then on_crashed
        info = self.scope.finish(key)
        # measured from its start in this process, before synthobs' own work at its end; none for a run this
        # process did not run (never a runner's numbers for a run it only saw crash)
        use = self.process_use.detach(key) or ProcessUse(None, None)
        # not in scope here: a runner or worker recording the crash of a run whose own process died
        recorded_elsewhere = info is None
        if info is None:
            info = RunInfo(key, flow.name, spec or ObserveSpec(), observed=spec is not None)
        spec = info.spec
        self.scope.count_open_task_rows(info)
        work = self._add_remote_work(info, flow.name, shipped, _attempt_of(flow_run)) if remote else None
        gpu = self.gpu.detach(key)
        for other in (work.gpu if work is not None else {}).values():  # the run's tasks on other hosts
            gpu = gpu or RunGpuSummary()
            gpu.merge(other)
        fields = {
            "kind": spec.kind,
            "model_type": spec.model_type,
            "table_name": spec.table,
            "parent_flow_run_id": info.parent_flow_run_id,
            "rows": info.rows,
            "rows_by_table": dict(info.rows_by_table),
            "host": self.host,
            "gpu": gpu.columns() if gpu is not None and gpu.samples else None,
            **use.columns(),
            "span_attributes": {**span_attributes(spec), **of_flow_run(flow_run, flow.name), **use.span_attributes()},
            "run_span": current_run_span(key),
        }

        def event_of(run: Any) -> FlowRunEnded:
            return prefect_runs.flow_run_ended(
                flow.name,
                run,
                state,
                start_time=info.start_time,
                attempts=info.attempts,
                attempt_errors=info.attempt_errors,
                trace_id=_current_trace_id(),
                **fields,
            )

        event = event_of(flow_run)
        if event.start_time is None:  # a stale flow run (a runner recording a crash): ask the API
            try:
                fresh = self._read_flow_run(key)
                if fresh is not None:
                    event = event_of(fresh)
            except Exception as exc:
                logger.debug("synthobs: could not read flow run %s from the API: %s", key, exc)
        if remote or recorded_elsewhere:  # task runs whose process may never have written their rows
            info.start_time = info.start_time or event.start_time
            self._reconcile_later(info, flow.name, work if work is not None and work.complete else None)
        self.recording.handle(event)
        return True

    def _add_remote_work(self, info: RunInfo, flow_name: str, shipped: int | None, attempt: int) -> RemoteWork | None:
        """Count the rows and task runs of the flow's tasks in other processes into this process's records."""
        try:
            work = read_remote_work(
                info.flow_run_id,
                set(info.local_task_run_ids),
                self.api_timeout,
                flow_name=flow_name,
                shipped=shipped,
                attempt=attempt,
            )
        except Exception as exc:
            self._warning.fail(
                "synthobs: could not read what flow run %s's tasks did in other processes from the Prefect API "
                "(%s); its row and metrics count this process's work only",
                info.flow_run_id,
                exc,
            )
            return None
        self.scope.count_flow_rows(info, work.rows_by_table)
        for table, n in work.rows_by_table.items():
            self.recording.handle(
                RowsGenerated(n=n, flow_name=flow_name, table_name=table, model_type=info.spec.model_type)
            )
        for task in work.tasks:  # their rows were written in the workers (``counted_only``): metrics only
            self.recording.handle(task)
        return work

    def _reconcile_later(self, info: RunInfo, flow_name: str, work: RemoteWork | None) -> None:
        """Shortly after the flow's end, write API rows for its task runs no worker recorded (killed, lost).

        Workers write their rows before their task returns, unless the store was slow or down and they
        spooled them; this waits ``RECONCILE_DELAY_SECONDS`` (or until the process exits, see ``close``) on
        a daemon thread. A worker row that lands later still wins over the API's (``HealthStore.read``
        keeps one row per run, the hook's). ``work``: the flow end's read, holding every task run its
        process sent elsewhere (``RemoteWork.complete``): compared with the store without reading the API
        again; ``None``: read there.
        """
        since = info.start_time or datetime.now(timezone.utc)
        recorded_here = frozenset(info.local_task_run_ids)  # (a subflow's rows may not be written yet)

        def run() -> None:
            self._closing.wait(RECONCILE_DELAY_SECONDS)
            try:
                rows = missing_task_rows(
                    self._new_store(),
                    info.flow_run_id,
                    flow_name,
                    since,
                    redact_pii=self.redact_pii,
                    task_runs=work.task_runs if work is not None else None,
                    reported=work.reported if work is not None else None,
                    recorded_here=recorded_here,
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
                self._warning.fail("synthobs: reconciling flow run %s failed (%s)", info.flow_run_id, exc)

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

    def close(self, timeout: float) -> None:
        """Let pending reconciliations finish now (each bounded; all together at most ``timeout`` seconds)."""
        self._closing.set()
        with self._lock:
            pending = list(self._reconciling)
        deadline = time.monotonic() + timeout
        for thread in pending:
            thread.join(max(0.0, deadline - time.monotonic()))


def _attempt_of(flow_run: Any) -> int:
    """The flow run's attempt as its in-process ``FlowRun`` has it (0: unknown)."""
    try:
        return int(getattr(flow_run, "run_count", 0) or 0)
    except (TypeError, ValueError):
        return 0


def _current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
