"""Prefect's own names for a flow run's identity, on synthobs' spans, logs and metrics.

Prefect (>= 3.6) exports per-run process metrics (``process.cpu.utilization``,
``process.memory.usage``, ``process.memory.virtual``) over OTLP HTTP from a
flow-run process, with the *resource* attributes ``prefect.flow-run.id``,
``prefect.flow.name``, ``prefect.deployment.id`` and ``prefect.work-pool.name``
(``prefect/_internal/metrics.py``). Under exactly those names, synthobs' signals
let a backend join the two:

- spans: every span started inside a flow run (Prefect's flow and task run
  spans, ``so.span`` domain spans) gets ``prefect.flow-run.id`` as a span
  *attribute* when it starts (``RunIdentitySpans``), and the flow, deployment
  and work pool where the run's context says them; the flow run's span gets all
  four when synthobs records its end (``flow_end.py``). Spans are per-run
  records: an id costs nothing there.
- log records: per-record *attributes* (``otel_logs.record_attributes``), for
  the same reason.
- metrics: never as metric attributes. synthobs' counters and histograms live
  as long as the process; a run id on them would add a series per run, forever
  (unbounded cardinality, and a cumulative SDK keeps every series in memory).
  Instead, in a process that runs one flow run (a worker's or a runner's
  flow-run process, which Prefect starts with ``PREFECT__FLOW_RUN_ID`` set), the
  meter provider synthobs builds carries them as *resource* attributes, as
  Prefect's does: that process already has its own ``service.instance.id``, so
  this adds no series. Elsewhere metrics join runs through their exemplars (the
  flow span's trace id) and the Parquet rows.

Pure, apart from reading Prefect's run contexts (``context_attributes``) and the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from prefect.context import FlowRunContext, TaskRunContext

from prefect_synthobs import catalog
from prefect_synthobs._log import get_logger

logger = get_logger("telemetry.prefect_names")

PREFECT_FLOW_RUN_ID: Final = catalog.PREFECT_FLOW_RUN_ID
PREFECT_FLOW_NAME: Final = catalog.PREFECT_FLOW_NAME
PREFECT_DEPLOYMENT_ID: Final = catalog.PREFECT_DEPLOYMENT_ID
PREFECT_WORK_POOL_NAME: Final = catalog.PREFECT_WORK_POOL_NAME
RUN_IDENTITY_NAMES: Final = (PREFECT_FLOW_RUN_ID, PREFECT_FLOW_NAME, PREFECT_DEPLOYMENT_ID, PREFECT_WORK_POOL_NAME)

ENV_FLOW_RUN_ID: Final = "PREFECT__FLOW_RUN_ID"
"""Set by Prefect's workers and runners in the flow-run processes they start (one flow run each)."""
ENV_FLOW_NAME: Final = "PREFECT__FLOW_NAME"
ENV_DEPLOYMENT_ID: Final = "PREFECT__DEPLOYMENT_ID"

_RUN_TYPE = "prefect.run.type"  # Prefect's run span attributes (catalog.PREFECT_RUN_TYPE / PREFECT_RUN_ID)
_RUN_ID = "prefect.run.id"


def run_attributes(
    flow_run_id: Any,
    flow_name: str | None = None,
    deployment_id: Any = None,
    work_pool_name: str | None = None,
) -> dict[str, str]:
    """A flow run's identity under Prefect's names, leaving out what is not known (pure)."""
    values = (flow_run_id, flow_name, deployment_id, work_pool_name)
    return {name: str(v) for name, v in zip(RUN_IDENTITY_NAMES, values, strict=True) if v not in (None, "")}


def of_flow_run(flow_run: Any, flow_name: str | None) -> dict[str, str]:
    """The identity of a Prefect ``FlowRun`` (or any object with its ``id``, ``deployment_id`` and
    ``work_pool_name``)."""
    return run_attributes(
        getattr(flow_run, "id", None),
        flow_name,
        getattr(flow_run, "deployment_id", None),
        getattr(flow_run, "work_pool_name", None),
    )


def flow_run_process_attributes(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The resource attributes of a flow-run process (``PREFECT__FLOW_RUN_ID`` set), else ``{}``.

    The flow and deployment come from the variables workers also set; the work
    pool is not in the environment and is left out.
    """
    env = os.environ if environ is None else environ
    run_id = env.get(ENV_FLOW_RUN_ID)
    if not run_id:
        return {}
    return run_attributes(run_id, env.get(ENV_FLOW_NAME), env.get(ENV_DEPLOYMENT_ID))


_CONTEXT_CACHE: dict[tuple[Any, ...], dict[str, str]] = {}
"""``context_attributes`` answers by what they were computed from: every log record and span of a run
ask with the same run context, and the answer is a function of these values alone. Cleared when it
holds ``_CONTEXT_CACHE_LIMIT`` (a run adds two: with and without its id)."""
_CONTEXT_CACHE_LIMIT = 64


def context_attributes(flow_run_id: str | None = None) -> dict[str, str]:
    """The identity of the flow run the current Prefect context belongs to.

    In a task run: its flow run's id (and, when this process runs that flow
    run, its flow, deployment and work pool). With ``flow_run_id``, only that
    run's: ``{}`` when the context is another run's.
    """
    flow_ctx = FlowRunContext.get()
    flow_run = getattr(flow_ctx, "flow_run", None) if flow_ctx is not None else None
    task_ctx = TaskRunContext.get()
    run_id: Any = None
    if task_ctx is not None:
        run_id = getattr(task_ctx.task_run, "flow_run_id", None)
    if run_id is None and flow_run is not None:
        run_id = flow_run.id
    if run_id is None:
        return {}
    key: tuple[Any, ...] = (
        flow_run_id,
        run_id,
        getattr(flow_run, "id", None),
        getattr(getattr(flow_ctx, "flow", None), "name", None),
        getattr(flow_run, "deployment_id", None),
        getattr(flow_run, "work_pool_name", None),
    )
    try:
        cached = _CONTEXT_CACHE.get(key)
    except TypeError:  # an unhashable value (not Prefect's own objects): not cached
        key, cached = (), None
    if cached is not None:
        return dict(cached)
    if flow_run_id is not None and str(run_id) != str(flow_run_id):
        found: dict[str, str] = {}
    elif flow_run is not None and str(flow_run.id) == str(run_id):
        found = of_flow_run(flow_run, key[3])
    else:
        found = run_attributes(run_id)
    if key:
        if len(_CONTEXT_CACHE) >= _CONTEXT_CACHE_LIMIT:
            _CONTEXT_CACHE.clear()
        _CONTEXT_CACHE[key] = found
    return dict(found)


class RunIdentitySpans(SpanProcessor):
    """Puts ``prefect.flow-run.id`` (and what else is known of the run) on every span started in a flow run.

    A Prefect flow run span starts before its run's context exists: its own
    ``prefect.run.id`` is the flow run's id. Any other span takes the identity
    of the current task or flow run context. Attributes already on the span are
    kept. Off (``enabled=False``) it passes spans through untouched; any failure
    leaves the span as it was.
    """

    def __init__(self) -> None:
        self.enabled = False

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        if not self.enabled:
            return
        try:
            attrs = span.attributes or {}
            if attrs.get(_RUN_TYPE) == "flow" and attrs.get(_RUN_ID):
                identity = run_attributes(attrs[_RUN_ID])
            else:
                identity = context_attributes()
            missing = {k: v for k, v in identity.items() if k not in attrs}
            if missing:
                span.set_attributes(missing)
        except Exception as exc:  # an attribute is never worth a failed run
            logger.debug("synthobs: run identity not set on a span: %s", exc)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
