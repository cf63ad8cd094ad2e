"""``RunListener``: sees the start and end of every Prefect run span.

Added to the SDK tracer provider once per process. It never creates spans and
never owns the provider a user installed; it only installs an SDK provider
when there is none, because without one Prefect's run spans are no-ops and
undecorated task runs could not be seen.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from prefect_synthobs import catalog as names

logger = logging.getLogger("prefect_synthobs")


class RunListener(SpanProcessor):
    """Records run spans of flows in scope through the current runtime."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        attrs = span.attributes
        if not attrs or attrs.get(names.PREFECT_RUN_TYPE) != "flow":
            return
        try:
            from prefect.context import FlowRunContext

            from prefect_synthobs.instrument.runtime import ObserveSpec, current_runtime

            runtime = current_runtime()
            parent = FlowRunContext.get()
            if runtime is None or parent is None or parent.flow_run is None:
                return
            parent_id = str(parent.flow_run.id)
            if runtime.in_scope(parent_id):
                runtime.begin_flow_run(
                    attrs.get("prefect.run.name", "subflow"), attrs[names.PREFECT_RUN_ID],
                    ObserveSpec(), observed=False, parent_flow_run_id=parent_id,
                )
        except Exception as exc:  # never disturb the run
            logger.debug("synthobs: run listener on_start failed: %s", exc)

    def on_end(self, span: ReadableSpan) -> None:
        attrs = span.attributes
        if not attrs:
            return
        run_type = attrs.get(names.PREFECT_RUN_TYPE)
        if run_type is None:
            return
        try:
            if run_type == "task":
                self._task_end(span, attrs)
            elif run_type == "flow":
                self._flow_end(attrs)
        except Exception as exc:
            logger.warning("synthobs: could not record a %s run: %s", run_type, exc)

    @staticmethod
    def _task_end(span: ReadableSpan, attrs: Any) -> None:
        from prefect.context import FlowRunContext, TaskRunContext

        from prefect_synthobs.instrument.runtime import current_runtime

        runtime = current_runtime()
        ctx = TaskRunContext.get()
        if runtime is None or ctx is None or str(ctx.task_run.id) != attrs.get(names.PREFECT_RUN_ID):
            return
        task_run = ctx.task_run
        info = runtime.run_info(task_run.flow_run_id) if task_run.flow_run_id else None
        if info is None:
            return
        flow_ctx = FlowRunContext.get()
        flow_name = flow_ctx.flow.name if flow_ctx and flow_ctx.flow else info.flow_name
        error = None
        for event in reversed(span.events):
            if event.name == "exception" and event.attributes:
                error = (
                    str(event.attributes.get("exception.type", "")).rsplit(".", 1)[-1] or None,
                    str(event.attributes.get("exception.message", "")) or None,
                )
                break
        runtime.record_task_run(ctx.task, task_run, flow_name, error)

    @staticmethod
    def _flow_end(attrs: Any) -> None:
        from prefect.context import FlowRunContext

        from prefect_synthobs.instrument.runtime import current_runtime

        runtime = current_runtime()
        ctx = FlowRunContext.get()
        if runtime is None or ctx is None or ctx.flow_run is None:
            return
        if str(ctx.flow_run.id) != attrs.get(names.PREFECT_RUN_ID):
            return
        info = runtime.run_info(ctx.flow_run.id)
        if info is None or info.observed:
            return  # observed flows are recorded by their hooks
        runtime.end_flow_run(ctx.flow, ctx.flow_run, ctx.flow_run.state, None, flush=False)


_lock = threading.Lock()
_listener = RunListener()
_providers: list[Any] = []
_warned = False


def ensure_listener() -> bool:
    """Attach ``RunListener`` to the SDK tracer provider (idempotent).

    Returns:
        Whether every Prefect run span will reach the listener. When it does
        not (Prefect's run telemetry turned off, or a non-SDK provider), only
        flows and tasks decorated with ``observe`` are recorded; one warning.
    """
    global _warned
    from prefect.settings import get_current_settings

    with _lock:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider) and type(provider).__name__ == "ProxyTracerProvider":
            from prefect_synthobs.telemetry.tracing import build_tracer_provider

            trace.set_tracer_provider(build_tracer_provider())
            provider = trace.get_tracer_provider()
        if any(p is provider for p in _providers):
            ok = True
        elif hasattr(provider, "add_span_processor"):
            from prefect_synthobs.telemetry.tracing import attach_stable_names

            attach_stable_names(provider)  # before the first flow span starts
            provider.add_span_processor(_listener)
            _providers.append(provider)
            ok = True
        else:
            ok = False
        telemetry_on = get_current_settings().cloud.enable_orchestration_telemetry
        if (not ok or not telemetry_on) and not _warned:
            _warned = True
            logger.warning(
                "synthobs: Prefect run spans are unavailable (%s); only flows and tasks "
                "decorated with observe() are recorded, not other task runs.",
                "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY is off" if ok else
                f"tracer provider {type(provider).__name__} takes no span processors",
            )
        return ok and telemetry_on


def listener_active() -> bool:
    """Whether ``RunListener`` sees every Prefect run span in this process."""
    from prefect.settings import get_current_settings

    with _lock:
        provider = trace.get_tracer_provider()
        attached = any(p is provider for p in _providers)
    return attached and get_current_settings().cloud.enable_orchestration_telemetry
