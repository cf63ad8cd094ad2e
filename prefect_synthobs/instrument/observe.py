"""``observe``: one decorator that makes a Prefect flow or task observable.

It adds Prefect state hooks (the framework's public signal) and returns a new
``Flow`` or ``Task`` with the same signature, so the result works in
deployments, ``serve``, subflows and ``.submit()``/``.map()``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar, overload

from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prefect import Flow, Task
from prefect.context import FlowRunContext
from prefect.settings import get_current_settings

from prefect_synthobs import catalog as n
from prefect_synthobs._host import host_name
from prefect_synthobs._log import get_logger
from prefect_synthobs.config.active import configure, get_settings
from prefect_synthobs.config.blocks import SynthObsConfig
from prefect_synthobs.instrument import observe_all as _observe_all  # noqa: F401  (configure(observe_all=) reaches it)
from prefect_synthobs.instrument import prefect_runs
from prefect_synthobs.instrument.hook_logs import (
    FLOW_FINISHED,
    FLOW_STARTED,
    HOOK_MARK,
    TASK_FINISHED,
    quiet_hook_lines,
)
from prefect_synthobs.instrument.instrumentation import (
    INSTRUMENTATION,
    get_runtime,
    install,
    listener_active,
    stable_names,
)
from prefect_synthobs.instrument.runtime import ObserveSpec, span_attributes
from prefect_synthobs.telemetry.tracing import current_run_span

logger = get_logger()

F = TypeVar("F", Flow, Task)  # type: ignore[type-arg]
_HOOK_MARK = HOOK_MARK


def _guard(name: str, what: str, fn: Callable[..., None]) -> Callable[..., None]:
    """Never let observability change a run's result; ``name`` is what Prefect logs (at DEBUG: ``hook_logs``)."""

    def call(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            logger.warning("synthobs: %s failed (%s: %s); the run is unaffected", what, type(exc).__name__, exc)

    call.__name__ = call.__qualname__ = name
    setattr(call, _HOOK_MARK, True)
    return call


class WorkerCarrier:
    """What a worker process needs to record an observed flow's task runs.

    A task submitted to another process (``ProcessPoolTaskRunner``, Dask, Ray)
    travels with Prefect's serialized run context, which holds the flow object
    and so these hooks; the end hook carries this object. It holds the observe
    spec and the flow process's active settings (refreshed as each run starts).
    Unpickled in another process, it configures synthobs there with those
    settings and installs the run listener, before the task's span starts: no
    synthobs code in the task and no set-up call in the worker.

    Args:
        spec: The flow's ``observe`` arguments.
    """

    def __init__(self, spec: ObserveSpec) -> None:
        self.spec = spec
        self.settings: dict[str, Any] | None = None
        self.traceparent: str | None = None
        """The flow span's ``traceparent`` an unpickled carrier brings (the flow's process keeps each run's in
        ``_runs``, and this stays ``None`` there)."""
        self.origin_pid = os.getpid()
        self.origin_host = host_name()
        self._reset_counts()

    def _reset_counts(self) -> None:
        self._lock = threading.Lock()
        self._pickles = 0
        """Times pickled so far, each a task sent to another process (Prefect serializes the run context, which
        holds the flow, once per task it submits to a process pool, Dask or Ray)."""
        self._runs: dict[Any, _CarriedRun] = {}
        """The runs of this flow in progress in this process (``refresh`` to ``take_shipped``), oldest first."""

    def refresh(self, settings: Any, traceparent: str | None, run_id: str | None = None) -> None:
        """Carry ``settings`` (the flow process's, as the run starts) and the flow span's ``traceparent``;
        ``run_id``: the flow run's id (the same again: a retry, whose earlier attempts' count is kept).

        Runs of one flow object may be in progress at once in this process (threads, ``asyncio.gather``): a task
        sent while several are cannot be told whose it was (a process pool pickles it on a thread of its own),
        so each of them is marked, and its count is given as unknown (``take_shipped``)."""
        values = {key: getattr(settings, key) for key in type(settings).model_fields}
        values["config_block"] = None  # its values are merged in already: never load it again
        # workers export no metrics (an http port per worker, pushes without a flow end): their task runs
        # reach the store and the trace; the flow's process counts them in its metrics (read from the API)
        values["metrics_mode"] = "none"
        self.settings = values
        self.origin_pid = os.getpid()
        self.origin_host = host_name()
        with self._lock:
            self._forget_ended()
            key = run_id if run_id is not None else object()  # no id: a run of its own
            run = self._runs.get(key)
            if run is None:
                run = self._runs[key] = _CarriedRun(self._pickles)
                while len(self._runs) > _RUNS_KEPT:  # a run whose end never came (its process goes on)
                    del self._runs[next(iter(self._runs))]
            else:  # a retry: its earlier attempts' tasks still count
                run.before += self._pickles - run.start
                run.start = self._pickles
            run.traceparent = traceparent

    def take_shipped(self, run_id: str | None = None) -> tuple[int | None, int]:
        """How many times the carrier left this process since the run's last attempt started (``None``: unknown,
        another run of the flow was in progress meanwhile), and at least how many since its first (0: every
        task ran here); the run is then over here. ``run_id`` ``None``: the one run in progress (else none)."""
        with self._lock:
            key = run_id
            if key is None and len(self._runs) == 1:
                key = next(iter(self._runs))
            run = self._runs.pop(key, None)
            if run is None:  # never refreshed, or dropped (``_RUNS_KEPT``, or ended): unknown once any task left
                return (None, 1) if self._pickles else (0, 0)
            this = self._pickles - run.start
            return (None if run.shared else this), this + run.before

    def run_ended(self, run_id: str) -> None:
        """The run's span ended in a final state (the run listener): over, whether or not its end hook ran
        (``with_options(on_failure=[...])`` replaces it; a suspended run calls none). Its end hook, which comes
        first when there is one, still finds it; another run's start or send forgets it."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                run.ended = True

    def _forget_ended(self) -> None:
        """Drop the runs that ended (called holding the lock)."""
        for key, run in list(self._runs.items()):
            if run.ended:
                del self._runs[key]

    def _traceparent_now(self) -> str | None:
        """The ``traceparent`` of the run sending a task now: the one in progress, or the current run's."""
        runs = list(self._runs.values())  # (a snapshot: another thread's run may start or end meanwhile)
        if len(runs) <= 1:  # none: the flow's process after its runs, or a copy unpickled on the way (Dask's
            # scheduler unpickles a task and pickles it again for its worker), which keeps the one it brought
            return runs[0].traceparent if runs else self.traceparent
        try:  # several at once: the run whose thread pickles (none known: no trace); never fails a task's send
            ctx = FlowRunContext.get()
            run = self._runs.get(prefect_runs.id_text(ctx.flow_run.id)) if ctx and ctx.flow_run else None
        except Exception:
            return None
        return run.traceparent if run is not None else None

    def __getstate__(self) -> dict[str, Any]:
        if not _tokenizing():
            with self._lock:
                self._pickles += 1
                if len(self._runs) > 1:  # whose task it is cannot be told, among the runs not ended
                    self._forget_ended()
                    for run in self._runs.values() if len(self._runs) > 1 else ():
                        run.shared = True
        return {
            "spec": self.spec,
            "settings": self.settings,
            "traceparent": self._traceparent_now(),
            "origin_pid": self.origin_pid,
            "origin_host": self.origin_host,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_counts()  # (counts of this process's own runs of the flow, from here)
        # the pid first: a worker's differs from the flow process's, and it costs no system call (a host name
        # is one, about 0.1 ms in a worker that just woke up, where this runs for each task it receives)
        if self.origin_pid != os.getpid() or getattr(self, "origin_host", None) != host_name():
            self.activate()

    def activate(self) -> None:
        """Configure and install synthobs in this (worker) process. Never raises.

        It runs each time a worker unpickles a task's context (once per task on a process pool, and on Dask as
        measured with 2 workers): after the first, it only compares the settings and makes the flow's span current."""
        try:
            # a worker runs many tasks: set up once per settings
            if self.settings is not None and self.settings != INSTRUMENTATION.carried_settings:
                INSTRUMENTATION.carried_settings = self.settings  # tried once: a failure warns once, not per task
                quiet_hook_lines()  # the task hooks' lines at DEBUG here too
                configure(**self.settings)
                install()
                get_runtime()  # recorder, flusher and exporters ready before the task's span starts
            elif self.settings is None:
                quiet_hook_lines()
                install()
                get_runtime()
            self.enter_flow_trace()
        except Exception as exc:  # the worker runs its task whatever happens here
            logger.warning("synthobs: could not set up recording in worker process %d (%s)", os.getpid(), exc)

    def enter_flow_trace(self) -> None:
        """Make the flow's span current where the task is about to run: Prefect parents a task span on the current
        span (in the flow's process, the flow's; a worker has none). None known (runs at once): no span, not the
        one an earlier task of another run left current on this thread."""
        context.attach(_flow_span_context(self.traceparent) if self.traceparent else _NO_SPAN)


class _CarriedRun:
    """A run of an observed flow in progress in its process, as its ``WorkerCarrier`` counts it."""

    __slots__ = ("before", "ended", "shared", "start", "traceparent")

    def __init__(self, start: int) -> None:
        self.start = start  # the carrier's pickle count as the run's last attempt started
        self.before = 0  # pickles during the run's earlier attempts
        self.shared = False  # a task was sent while another run of the flow was in progress too
        self.traceparent: str | None = None
        self.ended = False  # its span ended in a final state (``run_ended``)


_RUNS_KEPT = 256
"""Runs of one flow a carrier keeps in progress at most (beyond: the oldest, whose end never came, is dropped)."""


_NO_SPAN = context.Context()
"""A context with no current span."""

_LAST_TRACEPARENT: tuple[str, context.Context] | None = None
"""The last ``traceparent`` a carrier made current in this process, and its context (read-only once made)."""


def _flow_span_context(traceparent: str) -> context.Context:
    """The context whose current span is the flow's, from its ``traceparent``: made once per flow run in a
    worker (its tasks' carriers all bring the same one), not parsed again for each task."""
    global _LAST_TRACEPARENT
    last = _LAST_TRACEPARENT
    if last is not None and last[0] == traceparent:
        return last[1]
    made = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    _LAST_TRACEPARENT = (traceparent, made)
    return made


def _flow_hooks(spec: ObserveSpec) -> tuple[Callable[..., None], Callable[..., None]]:
    carrier = WorkerCarrier(spec)

    def on_running(flow: Any, flow_run: Any, state: Any) -> None:
        if spec.config is not None:
            _apply_config(spec.config)
        carrier.refresh(get_settings(), prefect_runs.traceparent_of(flow_run), prefect_runs.id_text(flow_run.id))
        runtime = get_runtime()
        parent = runtime.run_info(flow_run.id)
        runtime.begin_flow_run(
            flow,
            flow_run,
            spec,
            observed=True,
            parent_flow_run_id=parent.parent_flow_run_id if parent else None,
            start_time=flow_run.start_time or state.timestamp,
            # on a retry Prefect calls this hook while handling the previous attempt's exception
            previous_error=sys.exc_info()[1],
        )
        run_span = current_run_span(flow_run.id) or _start_own_span(flow, flow_run, spec)
        if run_span is not None:  # the flow's span, still recording
            run_span.set_attributes(span_attributes(spec))
            names_processor = stable_names()
            if names_processor.enabled:  # covers a failed lookup at span start
                names_processor.remember_flow(flow_run.flow_id, flow.name)
                run_span.update_name(f"flow/{flow.name}")

    def on_end(flow: Any, flow_run: Any, state: Any) -> None:
        # the run is over here (a flow pickled later does not join its trace); every attempt's tasks sent
        # elsewhere are read back, also when the last attempt ran all of its here; the read waits for the last
        # attempt's only (an earlier attempt's may never have run: a failed attempt's runner cancels what it
        # had not started, and those were counted as sent)
        try:
            shipped, shipped_by_any = carrier.take_shipped(prefect_runs.id_text(flow_run.id))
            remote = shipped_by_any > 0
            get_runtime().end_flow_run(flow, flow_run, state, spec, flush=True, remote=remote, shipped=shipped)
        finally:
            _end_own_span(flow_run, state)

    ended = _guard(FLOW_FINISHED, "recording a flow run", on_end)
    started = _guard(FLOW_STARTED, "recording a flow run start", on_running)
    for hook in (ended, started):  # (``with_options`` may replace the end hooks and keep the start one)
        setattr(hook, n.CARRIER_ATTRIBUTE, carrier)
    return started, ended


def _start_own_span(flow: Any, flow_run: Any, spec: ObserveSpec) -> Any:
    """The flow's span when Prefect's run telemetry is off: synthobs opens one.

    It carries Prefect's run attributes, joins the trace in the run's
    ``__OTEL_TRACEPARENT`` label (a deployment started from a traced flow) and
    is made current, so task and domain spans nest under it. Never a second
    span: only when Prefect made none.
    """
    if get_current_settings().cloud.enable_orchestration_telemetry:
        return None
    if not isinstance(trace.get_tracer_provider(), SdkTracerProvider):
        return None
    traceparent = prefect_runs.traceparent_of(flow_run)
    parent = TraceContextTextMapPropagator().extract({"traceparent": traceparent}) if traceparent else None
    name = f"flow/{flow.name}" if stable_names().enabled else flow_run.name
    span = trace.get_tracer(n.TRACER_NAME).start_span(
        name,
        context=parent,
        attributes={
            n.PREFECT_RUN_NAME: flow_run.name,
            n.PREFECT_RUN_TYPE: "flow",
            n.PREFECT_RUN_ID: str(flow_run.id),
            n.PREFECT_TAGS: prefect_runs.tags_of(flow_run),
            n.ATTR_SPAN_ORIGIN: "synthobs",
        },
    )
    token = context.attach(trace.set_span_in_context(span))
    INSTRUMENTATION.own_spans[str(flow_run.id)] = (span, token)
    return span


def _end_own_span(flow_run: Any, state: Any) -> None:
    own = INSTRUMENTATION.own_spans.pop(str(getattr(flow_run, "id", "")), None)
    if own is None:
        return
    span, token = own
    with contextlib.suppress(Exception):  # a different context (crash hooks): the span still ends
        context.detach(token)  # type: ignore[arg-type]
    state_type = prefect_runs.state_type(state)
    span.set_attribute(n.PREFECT_STATE_TYPE, state_type)
    if state_type in ("FAILED", "CRASHED"):
        span.set_status(Status(StatusCode.ERROR, str(getattr(state, "message", "") or "")[:500]))
    span.end()


def _apply_config(config: Any) -> None:
    """Configure the process from ``observe(config=...)`` (once per block name)."""
    if isinstance(config, str) and get_settings().config_block == config:
        return
    try:
        configure(config=config)
    except ValueError as exc:  # the run goes on with the settings it has
        logger.warning("synthobs: %s; recording with the current settings", exc)


def _task_hook(spec: ObserveSpec) -> Callable[..., None]:
    def on_end(task: Any, task_run: Any, state: Any) -> None:
        runtime = get_runtime()
        if listener_active() and task_run.flow_run_id and runtime.in_scope(task_run.flow_run_id):
            return  # RunListener already recorded it from the run span
        ctx = FlowRunContext.get()
        flow_name = ctx.flow.name if ctx and ctx.flow else None
        runtime.record_task_run(task, task_run, flow_name)

    return _guard(TASK_FINISHED, "recording a task run", on_end)


def _without_ours(hooks: list[Any] | None) -> list[Any]:
    return [h for h in hooks or [] if not getattr(h, _HOOK_MARK, False)]


@overload
def observe(kind: F) -> F: ...


@overload
def observe(
    kind: str = "other", *, model_type: str | None = None, table: str | None = None, config: Any = None
) -> Callable[[F], F]: ...


def observe(kind: Any = "other", *, model_type: str | None = None, table: str | None = None, config: Any = None) -> Any:
    """Observe a Prefect flow or task: health rows, metrics, traces.

    Place it above ``@flow`` or ``@task``. Every task run inside an observed
    flow is recorded, decorated or not. Observing twice is harmless: the new
    settings replace the old hooks.

    Args:
        kind: ``training``, ``generation``, ``quality`` or ``other``.
        model_type: Generator type, e.g. ``gaussian_copula`` or ``ctgan``.
        table: Name of the table the flow trains on or generates.
        config: A ``SynthObsConfig`` block or the name of a saved one. It is
            loaded when a run of the flow starts (in whatever process runs it,
            deployments included) and configures synthobs for that process;
            keyword overrides given to ``configure`` still win.

    Returns:
        A decorator returning a ``Flow`` (or ``Task``) with the same signature.

    Raises:
        ValueError: ``kind`` is not one of the allowed kinds.
        TypeError: The decorated object is not a Prefect flow or task.

    Example:
        ```python
        from prefect import flow
        import prefect_synthobs as so

        @so.observe(kind="generation", model_type="gaussian_copula", table="customers")
        @flow
        def generate(n_rows: int):
            ...
        ```
    """
    if isinstance(kind, (Flow, Task)):
        return _apply(ObserveSpec(), kind)
    if kind not in n.KINDS:
        raise ValueError(f"observe(kind={kind!r}): kind must be one of {', '.join(n.KINDS)}")
    for name, value in (("model_type", model_type), ("table", table)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"observe({name}=...) must be a string, got {value!r}")
    if config is not None and not isinstance(config, (str, SynthObsConfig)):
        raise ValueError(f"observe(config=...) takes a SynthObsConfig block or a block name, got {config!r}")
    spec = ObserveSpec(kind=kind, model_type=model_type, table=table, config=config)

    return lambda obj: _apply(spec, obj)


def _apply(spec: ObserveSpec, obj: Any) -> Any:
    """Return ``obj`` (a Flow or Task) with synthobs' hooks, replacing earlier ones.

    Decorating also makes sure an SDK tracer provider with the run listener is
    in place: Prefect opens a flow's span before any hook runs, so doing it at
    the first run would miss that run's span. It also turns Prefect's two INFO
    lines around each synthobs hook into DEBUG ones (``hook_logs``).
    """
    try:
        install()
    except Exception as exc:
        logger.warning("synthobs: run listener not installed (%s); only observed runs are recorded", exc)
    quiet_hook_lines()  # Prefect's lines around these hooks at DEBUG: the flow's own lines stand out
    if isinstance(obj, Flow):
        running, ended = _flow_hooks(spec)
        return obj.with_options(
            on_running=[*_without_ours(obj.on_running_hooks), running],
            on_completion=[*_without_ours(obj.on_completion_hooks), ended],
            on_failure=[*_without_ours(obj.on_failure_hooks), ended],
            on_crashed=[*_without_ours(obj.on_crashed_hooks), ended],
            on_cancellation=[*_without_ours(obj.on_cancellation_hooks), ended],
        )
    if isinstance(obj, Task):
        hook = _task_hook(spec)
        return obj.with_options(
            on_completion=[*_without_ours(obj.on_completion_hooks), hook],
            on_failure=[*_without_ours(obj.on_failure_hooks), hook],
        )
    raise TypeError(
        f"observe() goes above @flow or @task, got {type(obj).__name__}; "
        "write @observe(...) then @flow on the next line"
    )


_TOKENIZE_FRAMES = 64
"""How far up the stack ``_tokenizing`` looks (Dask's tokenizer sits a few frames above the pickler)."""


def _tokenizing() -> bool:
    """Whether this pickle is Dask computing a task's key, not a task leaving the process.

    ``DaskTaskRunner.submit`` tokenizes its arguments (the run context, which holds the flow and so this
    carrier) by pickling them two or three times in this process (``dask.tokenize._normalize_pickle``:
    dumped and loaded until two dumps agree) before the one pickle that ships the task. Counted, a 20-task
    flow counted 60 shipped, and the flow's end waited its whole settle budget for 40 task runs that never
    existed. A few µs per pickle.
    """
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_TOKENIZE_FRAMES):
        if frame is None:
            return False
        code = frame.f_code
        if code.co_name == "_normalize_pickle" and "dask" in code.co_filename:
            return True
        frame = frame.f_back
    return False
