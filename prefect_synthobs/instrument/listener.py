"""``RunListener``: sees the start and end of every Prefect run span.

A ``SpanProcessor`` added to the SDK tracer provider once per process by the
instrumentation. It never creates spans and never owns the provider a user
installed. Prefect ends a run's span inside the run's context once the run is
final, so the listener reads the in-process ``TaskRunContext`` /
``FlowRunContext`` at that moment: accurate state, times and ``run_count``,
with no API query (task runs reach the API late).

With ``observe_all`` on (``all_runs`` returns a runtime) it also puts every
flow run that nothing else put in scope into scope as its span starts (kind
``other``): the public OpenTelemetry hook Prefect's engine already calls, so no
``Flow`` is rewritten and nothing is patched. A decorated flow's ``on_running``
hook, which runs after the span started, then makes the run observed with its
own arguments, and its end hook records it (this listener skips it): one row
per run, decorated or not.

A flow run retried in this process is the exception: Prefect ends its span when
the first attempt fails (the run already ``Running`` again) and opens none for
the later attempts. The listener then keeps the run in scope (the later
attempts' task runs are recorded) and records it when it reaches its final state,
through one end hook (``synthobs_flow_finished``) it adds to that ``Flow``
object's end hooks, once, which acts only for the runs it waits for.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from prefect.context import FlowRunContext, TaskRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from prefect_synthobs import catalog
from prefect_synthobs._log import get_logger
from prefect_synthobs.instrument import prefect_runs
from prefect_synthobs.instrument.hook_logs import FLOW_FINISHED, HOOK_MARK, quiet_hook_lines
from prefect_synthobs.instrument.prefect_runs import id_text
from prefect_synthobs.instrument.runtime import ObserveSpec, Runtime, span_attributes

logger = get_logger()


def attributes_of(span: Any) -> Any:
    """A span's attributes, read only: the SDK span's own dict where it has one (``BoundedAttributes._dict``;
    the public ``attributes`` wraps it in a new ``MappingProxyType`` per read, and each ``get`` through it runs
    ``Mapping.get`` and ``__getitem__`` in Python: the listener reads two or three keys as each task run
    starts and ends), else ``span.attributes`` (``None`` for a span without any)."""
    try:
        found = span._attributes._dict
    except AttributeError:
        return span.attributes
    return found if type(found) is dict else span.attributes


def carrier_of(flow: Any) -> Any:
    """The worker carrier an observed flow's hooks hold (``None``: not observed)."""
    # (the start hook holds it too: ``with_options`` may replace the end hooks)
    for hooks in (getattr(flow, "on_completion_hooks", None), getattr(flow, "on_running_hooks", None)):
        for hook in hooks or ():
            carrier = getattr(hook, catalog.CARRIER_ATTRIBUTE, None)
            if isinstance(getattr(carrier, "spec", None), ObserveSpec):
                return carrier
    return None


class RunListener(SpanProcessor):
    """Records run spans of flows in scope through the current runtime.

    Args:
        runtime: Returns the current runtime (``None``: nothing is recorded).
        all_runs: Returns the runtime that records every flow run when
            ``observe_all`` is on (built on first use), else ``None``.
    """

    def __init__(
        self, runtime: Callable[[], Runtime | None], all_runs: Callable[[], Runtime | None] = lambda: None
    ) -> None:
        self._runtime = runtime
        self._all_runs = all_runs
        self.enabled = True
        self._retrying: set[str] = set()
        """Flow runs whose span ended while Prefect runs them again here (retries): recorded at their final state."""
        self._retrying_lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        attrs = attributes_of(span)  # (a span without attributes has no run type: not a run's)
        if not self.enabled or attrs is None:
            return
        run_type = attrs.get(catalog.PREFECT_RUN_TYPE)
        if run_type == "task":
            self._task_start(attrs.get(catalog.PREFECT_RUN_ID))
            return
        if run_type != "flow":
            return
        try:
            runtime = self._runtime()
            parent = FlowRunContext.get()  # the new run's context is not entered yet: its parent's, if any
            parent_id = str(parent.flow_run.id) if parent is not None and parent.flow_run is not None else None
            if runtime is not None and parent_id is not None and runtime.in_scope(parent_id):
                runtime.begin_flow_run(
                    attrs.get(catalog.PREFECT_RUN_NAME, "subflow"),
                    attrs[catalog.PREFECT_RUN_ID],
                    ObserveSpec(),
                    observed=False,
                    parent_flow_run_id=parent_id,
                )
                return
            self._begin_any(span, attrs, parent_id)
        except Exception as exc:  # never disturb the run
            logger.debug("synthobs: run listener on_start failed: %s", exc)

    def _begin_any(self, span: Span, attrs: Any, parent_id: str | None) -> None:
        """``observe_all``: a flow run nothing put in scope (a root run, undecorated) is recorded as kind ``other``.

        A decorated flow's ``on_running`` hook (after this) makes it observed with its own arguments.
        """
        runtime = self._all_runs()
        run_id = attrs.get(catalog.PREFECT_RUN_ID)
        if runtime is None or run_id is None or runtime.in_scope(run_id):
            return
        start = datetime.fromtimestamp(span.start_time / 1e9, timezone.utc) if span.start_time else None
        runtime.begin_flow_run(
            attrs.get(catalog.PREFECT_RUN_NAME, "flow"),
            run_id,
            ObserveSpec(),
            observed=False,
            parent_flow_run_id=parent_id,
            start_time=start,
        )
        span.set_attributes(span_attributes(ObserveSpec()))  # a decorated flow's hook sets its own kind

    def on_end(self, span: ReadableSpan) -> None:
        attrs = attributes_of(span)
        if not self.enabled or attrs is None:
            return
        run_type = attrs.get(catalog.PREFECT_RUN_TYPE)
        if run_type is None:
            return
        try:
            runtime = self._runtime()
            if runtime is None:
                return
            if run_type == "task":
                self._task_end(runtime, span, attrs)
            elif run_type == "flow":
                self._flow_end(runtime, attrs)
        except Exception as exc:
            logger.warning("synthobs: could not record a %s run: %s", run_type, exc)

    def _task_start(self, task_run_id: Any) -> None:
        """A task run of a flow in scope starts here (noted, for measurements from threads it starts).

        A task of an observed flow starting in a worker process puts its flow run in (remote) scope.
        """
        try:
            flow_ctx = FlowRunContext.get()
            if flow_ctx is None or flow_ctx.flow_run is None:
                return
            runtime = self._runtime() or self._all_runs()
            if runtime is None:
                return
            scope = runtime.scope
            info = scope.run_info(flow_ctx.flow_run.id)
            if info is not None and not info.remote:  # the flow's own process: the task run is in progress here
                task_ctx = TaskRunContext.get()  # the span starts inside the task run's context
                if task_ctx is not None and id_text(task_ctx.task_run.id) == task_run_id:
                    scope.task_started(task_ctx.task_run, info.flow_run_id, task_run_id)
                return
            if info is not None:  # remote: the flow run was in scope here before (its spec and GPU choice)
                info = runtime.begin_remote_task(
                    flow_ctx.flow, flow_ctx.flow_run, info.spec, sample_gpu=info.gpu_sampled
                )
            else:
                carrier = carrier_of(flow_ctx.flow)
                spec = carrier.spec if carrier is not None else None
                if spec is None and self._all_runs() is not None:
                    spec = ObserveSpec()  # observe_all in a worker process: an undecorated flow's task
                if spec is None:
                    return
                # the flow's process samples its own host's GPUs: a worker there must not sample them again
                other_host = getattr(carrier, "origin_host", None) not in (None, runtime.host)
                info = runtime.begin_remote_task(flow_ctx.flow, flow_ctx.flow_run, spec, sample_gpu=other_host)
            task_ctx = TaskRunContext.get()  # the span starts inside the task run's context
            if task_ctx is not None and id_text(task_ctx.task_run.id) == task_run_id:
                runtime.task_started(task_ctx.task_run, info.flow_run_id, task_run_id)
        except Exception as exc:  # never disturb the run
            logger.debug("synthobs: run listener task start failed: %s", exc)

    @staticmethod
    def _task_end(runtime: Runtime, span: ReadableSpan, attrs: Any) -> None:
        """A task run's span ended: no longer in progress; recorded when its flow run is in scope here (a
        completed one of a flow this process runs is noted and recorded in a batch: ``Runtime.note_task_run``)."""
        task_run_id = attrs.get(catalog.PREFECT_RUN_ID)
        ctx = TaskRunContext.get()
        if ctx is None or id_text(ctx.task_run.id) != task_run_id or not ctx.task_run.flow_run_id:
            runtime.task_ended(task_run_id)
            return
        task_run = ctx.task_run
        flow_ctx = FlowRunContext.get()
        flow_run = flow_ctx.flow_run if flow_ctx is not None else None
        # the flow run's own id object when the task runs in its flow's context (the scope's cheapest lookup)
        info = runtime.scope.run_info(
            flow_run.id if flow_run is not None and flow_run.id == task_run.flow_run_id else task_run.flow_run_id
        )
        if info is None:
            runtime.task_ended(task_run_id)
            return
        flow_name = flow_ctx.flow.name if flow_ctx and flow_ctx.flow else info.flow_name
        if not info.remote:
            runtime.note_task_run(ctx.task, task_run, flow_name, span, task_run_id, info.flow_run_id)
            return
        try:
            try:  # (recording it ends the task run's progress here: ``RunScope.task_finished``)
                rows_by_table = runtime.note_task_run(
                    ctx.task, task_run, flow_name, span, task_run_id, info.flow_run_id, at_once=True
                )
            except BaseException:
                runtime.task_ended(task_run_id)
                raise
            if rows_by_table:
                runtime.report_task_rows(info.flow_run_id, task_run_id, rows_by_table)
        finally:
            runtime.end_remote_task(info.flow_run_id)

    def _flow_end(self, runtime: Runtime, attrs: Any) -> None:
        ctx = FlowRunContext.get()
        if ctx is None or ctx.flow_run is None or str(ctx.flow_run.id) != attrs.get(catalog.PREFECT_RUN_ID):
            return
        if not _runs_again(ctx.flow_run.state) and (carrier := carrier_of(ctx.flow)) is not None:
            carrier.run_ended(attrs[catalog.PREFECT_RUN_ID])  # over, whether or not its end hook ran
        info = runtime.run_info(ctx.flow_run.id)
        if info is None or info.observed or info.remote:
            return  # observed flows are recorded by their hooks
        if _runs_again(ctx.flow_run.state) and self._await_final_state(ctx.flow, str(ctx.flow_run.id)):
            return
        self._end_unobserved(runtime, ctx.flow, ctx.flow_run, ctx.flow_run.state, ctx.task_runner, info)

    @staticmethod
    def _end_unobserved(runtime: Runtime, flow: Any, flow_run: Any, state: Any, task_runner: Any, info: Any) -> None:
        # tasks on a process or cluster task runner ran elsewhere: no worker records an undecorated flow's task
        # runs (it carries no spec to them), so they are read back from the API: counted here, and written as
        # the API's rows shortly after (``FlowEnd``'s reconciliation)
        elsewhere = task_runner is not None and not isinstance(task_runner, ThreadPoolTaskRunner)
        parent = info.parent_flow_run_id
        if parent is not None and runtime.in_scope(parent):
            # a subflow of a run in scope: written at its parent's end
            runtime.end_flow_run(flow, flow_run, state, None, flush=False, remote=elsewhere)
            return
        # a run observe_all put in scope at its root: written out at its end, as an observed flow's hooks do
        runtime.end_flow_run(flow, flow_run, state, None, flush=True, remote=elsewhere)

    def _await_final_state(self, flow: Any, flow_run_id: str) -> bool:
        """Record ``flow_run_id`` at its final state, through the end hook on ``flow`` (added once); ``False``
        when ``flow`` takes no hook (it is then recorded now, in the state it has)."""
        hook = synthobs_flow_finished
        lists = [hooks for name in _END_HOOKS if isinstance(hooks := getattr(flow, name, None), list)]
        if len(lists) < len(_END_HOOKS):
            return False
        quiet_hook_lines()  # Prefect's INFO lines around the hook at DEBUG, as around observe()'s own hooks
        with self._retrying_lock:
            self._retrying.add(flow_run_id)
        _WAITING.add(self)
        for hooks in lists:
            if hook not in hooks:  # (atomic under the GIL; an engine iterating the list meanwhile is unharmed)
                hooks.append(hook)
        return True

    def _on_final_state(self, flow: Any, flow_run: Any, state: Any) -> None:
        """The end hook on a retried flow: records a run this listener waits for (any other run: nothing)."""
        run_id = str(flow_run.id)
        with self._retrying_lock:
            if run_id not in self._retrying:
                return
            self._retrying.discard(run_id)
        try:
            runtime = self._runtime()
            info = runtime.run_info(run_id) if runtime is not None else None
            if runtime is None or info is None or info.observed or info.remote:
                return
            ctx = FlowRunContext.get()
            same_run = ctx is not None and ctx.flow_run is not None and str(ctx.flow_run.id) == run_id
            task_runner = ctx.task_runner if ctx is not None and same_run else None
            self._end_unobserved(runtime, flow, flow_run, state, task_runner, info)
        except Exception as exc:  # never disturb the run
            logger.warning("synthobs: could not record the retried flow run %s: %s", run_id, exc)


_END_HOOKS = ("on_completion_hooks", "on_failure_hooks", "on_crashed_hooks", "on_cancellation_hooks")
"""The ``Flow`` hook lists Prefect calls as a run reaches a final state."""


def _runs_again(state: Any) -> bool:
    """Whether Prefect runs the flow run again in this process after its span ended: the state it ended in is
    ``Running`` (a retry: Prefect's engine set it back) or ``Scheduled`` (``AwaitingRetry``)."""
    return prefect_runs.state_type(state) in ("RUNNING", "SCHEDULED")


_WAITING: weakref.WeakSet[RunListener] = weakref.WeakSet()
"""The listeners waiting for a retried flow run's final state (``synthobs_flow_finished`` asks each)."""


def synthobs_flow_finished(flow: Any, flow_run: Any, state: Any) -> None:
    """The end hook a listener adds to a retried flow's ``Flow``: records the runs listeners wait for.

    A module function, not a closure over a listener: it travels with the ``Flow`` wherever Prefect pickles
    it (a process or cluster task runner ships the flow run's context), pickled by reference. Never raises.
    """
    for listener in list(_WAITING):
        listener._on_final_state(flow, flow_run, state)


assert synthobs_flow_finished.__name__ == FLOW_FINISHED  # Prefect logs a hook by its name (``hook_logs``)
setattr(synthobs_flow_finished, HOOK_MARK, True)  # observe() replaces synthobs' hooks: this one goes too
