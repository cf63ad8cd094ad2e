"""The worker side: a task of an observed flow that runs in another process (a process pool, Dask, Ray).

In the worker the flow run is in *remote* scope while its tasks run there: the
task rows and this host's GPU samples are recorded, never the flow's row.
Before a task returns, what it recorded is made safe (``deliver``): a worker
may be stopped the moment its task returns, without exit hooks (Ray stops its
workers that way; a process pool's workers leave through ``os._exit``). What
the flow's process needs (the rows a task generated, this host's GPU use) is
left for it through the Prefect API (``remote.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect_synthobs._log import get_logger
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.instrument.gpu_use import RunGpu
from prefect_synthobs.instrument.prefect_runs import id_text
from prefect_synthobs.instrument.remote import report_gpu_summary, report_task_rows
from prefect_synthobs.instrument.scope import ObserveSpec, RunInfo, RunScope

logger = get_logger()


class WorkerSide:
    """Remote scope in a worker process: begin and end a task's scope, deliver what it recorded.

    Args:
        scope: The process's run scope.
        recorder: The process's row recorder (``spool_now`` makes rows safe on local disk).
        gpu: Attaches runs to the GPU sampler.
        host: This host's name.
        api_timeout: Bound of each Prefect API call (the store timeout).
        after_task: Called as a task ends, once its rows are spooled (the bounded span and log flush).
    """

    def __init__(
        self,
        scope: RunScope,
        recorder: Recorder,
        gpu: RunGpu,
        *,
        host: str,
        api_timeout: float,
        after_task: Callable[[], None] = lambda: None,
    ) -> None:
        self.scope = scope
        self.recorder = recorder
        self.gpu = gpu
        self.host = host
        self.api_timeout = api_timeout
        self._after_task = after_task
        self._warning = WarnOnce(logger)

    def begin_task(self, flow: Any, flow_run: Any, spec: ObserveSpec, *, sample_gpu: bool = True) -> RunInfo:
        """A task of an observed flow starts in this worker process: the flow run is in scope (remotely).

        ``sample_gpu``: attribute this host's GPU samples to the run while its tasks run here (not on the
        flow's own host, sampled there).
        """
        key = id_text(flow_run.id)
        info, new = self.scope.begin_remote(key, getattr(flow, "name", key), spec, sample_gpu=sample_gpu)
        if new and sample_gpu:
            self.gpu.attach(key)
        return info

    def end_task(self, flow_run_id: Any) -> None:
        """A task of a remote-scope flow run ended here; the scope ends with its last running task.

        What the task recorded is safe before it returns (rows in the local spool, spans and logs
        exported, bounded)."""
        key = str(flow_run_id)
        info = self.scope.end_remote(key)
        if info is not None and info.gpu_sampled:
            self._report_gpu_use(key)
        self.deliver()

    def deliver(self) -> None:
        """Spool this worker's buffered rows and export its spans and logs now (bounded; never raises).

        The rows go to local disk on this thread (one JSON file, no store call: the flusher, or the flow's
        process on this host, takes them on to the store), so a task pays a fraction of a millisecond, not a
        store round trip, and a store that hangs never holds a task."""
        self.recorder.spool_now()
        try:
            self._after_task()
        except Exception as exc:  # never disturb the task
            logger.debug("synthobs: worker telemetry flush failed: %s", exc)

    def _report_gpu_use(self, key: str) -> None:
        summary = self.gpu.detach(key)
        if summary is not None and summary.samples:
            try:  # for the flow row's GPU summary, written in the flow's process on another host
                report_gpu_summary(key, self.host, summary, self.api_timeout)
                self._warning.ok()
            except Exception as exc:
                self._warning.fail("synthobs: could not report this host's GPU use of flow run %s (%s)", key, exc)

    def report_task_rows(self, flow_run_id: str, task_run_id: str, rows: dict[str | None, int]) -> None:
        """A worker's task generated rows: leave them for the flow's process to count (one warning while
        failing)."""
        try:
            report_task_rows(flow_run_id, task_run_id, rows, self.api_timeout)
            self._warning.ok()
        except Exception as exc:
            self._warning.fail(
                "synthobs: could not report the %d rows task run %s generated to its flow run (%s); they are in "
                "its task_runs row, and the flow row counts this process's rows only until the API answers",
                sum(rows.values()),
                task_run_id,
                exc,
            )
