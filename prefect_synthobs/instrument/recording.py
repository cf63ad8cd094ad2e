"""The one recording seam: every run event goes to the health, metrics and span sinks here.

Whatever synthobs observes (a flow or task run ended, rows generated, an epoch,
a fitted model, a quality check, a privacy spend, GPU samples) arrives as a
typed event (``health/events.py``) at ``Recording.handle``, which hands it to
each sink: ``HealthSink`` (its rows, through the ``Recorder``), ``MetricsSink``
(the metric updates) and ``SpanSink`` (the run span's attributes). Nothing else
in the package writes run rows or updates run metrics, so a new column, metric
or attribute has one place to go.

Task runs that completed in the flow's own process are recorded in batches
(``TaskEndBatch``): each task's end only notes what it needs; the batch builds
the events and hands them to the sinks in one pass (``Recording.handle_many``:
the task rows added to the recorder at once, each labelled counter incremented
once per batch, the duration histogram's exemplar kept on the observation that
is each bucket's last, as one by one). A batch is recorded at the flow run's
end, before its row and its flush (``Runtime.end_flow_run``), when it reaches
``TaskEndBatch.max_items``, and at the latest ``max_wait`` seconds after its
first task ended (a daemon thread), so the metrics of a long flow stay current.

Pure of Prefect: events hold plain values.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from prefect_synthobs import catalog
from prefect_synthobs._fork import reset_in_child
from prefect_synthobs._log import get_logger
from prefect_synthobs._warnings import WarnOnce
from prefect_synthobs.catalog import MAX_ERROR_CHARS
from prefect_synthobs.health.events import TaskRunEnded
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.rows import rows_of_many
from prefect_synthobs.health.sink import HealthSink
from prefect_synthobs.instrument.sinks import MetricsSink, SpanSink
from prefect_synthobs.telemetry.metrics import SynthObsMetrics, exemplar_of, label
from prefect_synthobs.telemetry.redaction import clean_error_message

__all__ = ["Recording", "Sink", "TaskEndBatch"]

logger = get_logger()


class Sink(Protocol):
    """Takes run events; ignores those it has nothing to do with. A ``loses`` attribute says, for the one
    warning when it fails, what is lost (``"health rows"``)."""

    def handle(self, event: Any) -> None: ...


class Recording:
    """Hands every run event to the health, metrics and span sinks.

    Args:
        recorder: Buffers and writes health rows.
        metrics: The metric set to update.
        redact_pii: Redact PII from the stored columns that say so.
        sinks: Other sinks instead of those three (tests).
        extra_sinks: Sinks after those three (the asset sink: it sees a run's facts, then its end).
    """

    def __init__(
        self,
        recorder: Recorder,
        metrics: SynthObsMetrics,
        *,
        redact_pii: bool,
        sinks: Sequence[Sink] | None = None,
        extra_sinks: Sequence[Sink] = (),
    ) -> None:
        self.recorder = recorder
        self.metrics = metrics
        self.redact_pii = redact_pii
        self.sinks: tuple[Sink, ...] = (
            tuple(sinks)
            if sinks is not None
            else (HealthSink(recorder, redact_pii=redact_pii), MetricsSink(metrics), SpanSink())
        ) + tuple(extra_sinks)
        self._warnings = [WarnOnce(logger) for _ in self.sinks]

    def handle(self, event: Any, *, metrics: bool = True) -> None:
        """Give ``event`` to every sink. Never raises: a failing sink stops no other sink and no caller (a
        flow's end still flushes and exports); it costs one warning, naming what it loses, until it
        succeeds again.

        ``metrics``: ``False`` skips the metrics sink (a task run of a flow that runs in another process: that
        process counts it, ``Runtime.note_task_run``)."""
        for sink, warning in zip(self.sinks, self._warnings, strict=True):
            if not metrics and type(sink) is MetricsSink:
                continue
            try:
                sink.handle(event)
            except Exception as exc:
                self._failed(warning, sink, event, exc)
            else:
                warning.ok()

    def handle_many(self, events: Sequence[TaskRunEnded], *, metrics: bool = True, convert: bool = False) -> None:
        """Give task-run ``events`` to every sink, as ``handle`` gives each, in one pass.

        The health sink gets the events' rows at once and the metrics sink's updates are made per label
        set (``_task_metrics``): the same rows and the same metric values as one ``handle`` per event. Any
        other sink gets each event in turn. Never raises; a failing sink costs one warning, as in ``handle``.
        ``metrics``: as in ``handle``. ``convert``: the rows are converted to Arrow now, on this thread (a batch
        thread's: the flush then joins them, ``Recorder.add_converted``); not where they are spooled as JSON next
        (a worker's).
        """
        if not events:
            return
        for sink, warning in zip(self.sinks, self._warnings, strict=True):
            if not metrics and type(sink) is MetricsSink:
                continue
            try:
                if type(sink) is HealthSink:
                    rows = rows_of_many([e for e in events if not e.counted_only], redact_pii=sink.redact_pii)
                    if rows:
                        recorder = sink.recorder
                        if convert and isinstance(recorder, Recorder):
                            recorder.add_converted(catalog.TASK_RUNS, rows)
                        else:
                            recorder.add(catalog.TASK_RUNS, rows)
                elif type(sink) is MetricsSink:
                    _task_metrics(sink.metrics, events)
                else:
                    for event in events:
                        sink.handle(event)
            except Exception as exc:
                self._failed(warning, sink, events[0], exc)
            else:
                warning.ok()

    def _failed(self, warning: WarnOnce, sink: Sink, event: Any, exc: Exception) -> None:
        warning.fail(
            "synthobs: %s failed on %s (%s: %s); %s are lost until it recovers, the run is unaffected; "
            "this warning is given once while it keeps failing",
            type(sink).__name__,
            type(event).__name__,
            type(exc).__name__,
            clean_error_message(str(exc), limit=MAX_ERROR_CHARS, redact_pii=self.redact_pii),
            getattr(sink, "loses", "what it records"),
        )


def _task_metrics(m: SynthObsMetrics, events: Sequence[TaskRunEnded]) -> None:
    """The metric updates of task-run ``events`` (``sinks._task_ended`` per event), made per label set.

    Each ``task_runs_total`` and ``task_retries_total`` series is incremented once by its events' sum; the
    duration histogram observes every duration, and an observation carries its span as the exemplar when it
    is the last with a sampled span in its bucket: the exemplar each bucket would keep after one ``observe``
    per event (its timestamp is the batch's, not the task's end). The OTLP duration listener, when set, gets
    every observation with its span, in the events' order.
    """
    # grouped by the events' own values first (one dict lookup per event, no label call), then by label values
    # (``None`` and ``""`` are one label): the same sums per series
    raw_counts: dict[tuple[Any, Any, str], int] = {}
    raw_retries: dict[tuple[Any, Any], int] = {}
    raw_durations: dict[tuple[Any, Any], list[tuple[float, Any]]] = {}
    for e in events:
        pair = (e.flow_name, e.task_name)
        key = (*pair, e.state_type)
        raw_counts[key] = raw_counts.get(key, 0) + 1
        if e.duration_s is not None:
            observations = raw_durations.get(pair)
            if observations is None:
                observations = raw_durations[pair] = []
            observations.append((e.duration_s, e.span_context))
        if e.run_count > 1:
            raw_retries[pair] = raw_retries.get(pair, 0) + e.run_count - 1
    labels_of: dict[tuple[Any, Any], tuple[str, str]] = {}
    for flow_name, task_name, _state in raw_counts:  # every event's pair is among them
        if (flow_name, task_name) not in labels_of:
            labels_of[(flow_name, task_name)] = (label(flow_name), label(task_name))
    counts: dict[tuple[str, str, str], int] = {}
    for (flow_name, task_name, state), n in raw_counts.items():
        key = (*labels_of[(flow_name, task_name)], state)
        counts[key] = counts.get(key, 0) + n
    durations: dict[tuple[str, str], list[tuple[float, Any]]] = {}
    for pair, observations in raw_durations.items():
        durations.setdefault(labels_of[pair], []).extend(observations)
    if len(durations) < len(raw_durations):  # two raw pairs share one series: back in the events' order
        durations = {}
        for e in events:
            if e.duration_s is not None:
                durations.setdefault(labels_of[(e.flow_name, e.task_name)], []).append((e.duration_s, e.span_context))
    retries: dict[tuple[str, str], int] = {}
    for pair, n in raw_retries.items():
        retries[labels_of[pair]] = retries.get(labels_of[pair], 0) + n
    for (flow, task, state), n in counts.items():
        m.labelled(catalog.TASK_RUNS_TOTAL, flow, task, state).inc(n)
    for (flow, task), observations in durations.items():
        _observe_durations(m, flow, task, observations)
    for (flow, task), n in retries.items():
        m.task_retries.labels(flow, task).inc(n)
    listener = m.duration_listener
    if listener is not None:  # the OTLP side: every duration, in the events' order
        for e in events:
            if e.duration_s is not None:
                flow, task = labels_of[(e.flow_name, e.task_name)]
                try:
                    listener(catalog.TASK_RUN_DURATION, {"flow": flow, "task": task}, e.duration_s, e.span_context)
                except Exception as exc:  # the OTLP side never costs the Prometheus side, nor the run
                    logger.debug("synthobs: duration not recorded on OTLP: %s", exc)


def _observe_durations(m: SynthObsMetrics, flow: str, task: str, observations: list[tuple[float, Any]]) -> None:
    child = m.task_run_duration.labels(flow, task)
    bounds: list[float] | None = getattr(child, "_upper_bounds", None)
    exemplars: dict[int, dict[str, str]] = {}
    if bounds is not None:  # the last sampled observation of each bucket keeps its exemplar
        seen: set[int] = set()
        for i in range(len(observations) - 1, -1, -1):
            seconds, span_context = observations[i]
            bucket = bisect.bisect_left(bounds, seconds)
            if bucket in seen:
                continue
            exemplar = exemplar_of(span_context)
            if exemplar is not None:
                seen.add(bucket)
                exemplars[i] = exemplar
    for i, (seconds, span_context) in enumerate(observations):
        child.observe(seconds, exemplar=exemplars.get(i) if bounds is not None else exemplar_of(span_context))


TASK_BATCH_WAIT_SECONDS = 0.1
"""How long a noted task end waits for its batch (``TaskEndBatch``). Measured on a 200-task flow of about 1 s
here: at 1 s, the batch was still open at the flow's end and the flow's thread recorded most of the run's task
ends there (5.6 ms of its end's 12 ms); at 0.2 s the batch thread records them in batches of about 40
while the run goes on, and the end recorded the last ones (0.2–0.7 ms, converting their rows to Arrow). At
0.1 and 0.05 s the batch thread has recorded the last ones too by the time the flow's end comes (Prefect
reports the flow's final state first): 3-4 µs at the end (``/tmp/prof/split_wait.py``, 2026-12-05). 0.1 s:
batches of about 15 tasks. Each batch costs the batch thread about 0.2 ms besides its rows (the synthobs
background CPU of a 200-task run: 14.1 ms at 0.2 s, 17.8-22.8 ms at 0.05 s, ``bench_overhead``)."""


class TaskEndBatch:
    """Task-run ends noted as they happen, recorded together (``record``: each note's event, handed to
    ``Recording.handle_many``).

    Args:
        record: Records the notes it is given (never raises; what it returns is not used).
        max_items: A batch this large is recorded at once, by the call that filled it.
        max_wait: The longest a note waits: a daemon thread (``synthobs-task-batch``, started on first use)
            records the batch that long after its first note, unless something recorded it sooner. Short
            (``TASK_BATCH_WAIT_SECONDS``), so that at a flow's end only the last fraction of a second of task
            ends is left for the flow's thread to record.
    """

    def __init__(
        self, record: Callable[[list[Any]], object], *, max_items: int = 1024, max_wait: float = TASK_BATCH_WAIT_SECONDS
    ) -> None:
        self._record = record
        self.max_items = max_items
        self.max_wait = max_wait
        self._notes: list[Any] = []
        self._lock = threading.Lock()
        self._recording = threading.RLock()
        """Held while notes are recorded: a flush waits for one in flight (rows in the recorder when it returns)."""
        self._armed = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        reset_in_child(self)

    def _after_fork_in_child(self) -> None:
        """A forked child starts with no notes (its parent records those: the child recording its copy too would
        store each of those task runs twice), fresh locks (the parent's batch thread may have held one at the
        fork) and no batch thread (the next note starts one); closed stays as it was."""
        closed = self._closed.is_set()
        self._notes = []
        self._lock = threading.Lock()
        self._recording = threading.RLock()
        self._armed = threading.Event()
        self._closed = threading.Event()
        if closed:
            self._closed.set()
        self._thread = None

    def add(self, note: Any) -> None:
        """Note one task run's end (recorded by ``flush``, a full batch, or the thread after ``max_wait``)."""
        with self._lock:
            notes = self._notes
            notes.append(note)
            first, full = len(notes) == 1, len(notes) >= self.max_items
        if full or self._closed.is_set():  # closed: nothing would record it later
            self.flush()
        elif first:
            self._arm()

    def __len__(self) -> int:
        return len(self._notes)

    def flush(self) -> None:
        """Record every note now (on the caller's thread); returns once every note added before the call is
        recorded, also those another thread (the batch thread) took a moment earlier and is recording."""
        with self._recording:
            with self._lock:
                notes, self._notes = self._notes, []
            if notes:
                self._record(notes)

    def close(self) -> None:
        """Record what is noted and stop the thread (a later note is recorded at once, by its ``add``)."""
        self._closed.set()
        self._armed.set()
        self.flush()

    def open(self) -> None:
        """Batch again after ``close`` (a runtime started again): with a thread of its own when needed, the
        closed one ending on its own (a thread still ending as this opens never holds a new note back)."""
        if self._closed.is_set():
            self._closed, self._armed, self._thread = threading.Event(), threading.Event(), None

    def _arm(self) -> None:
        if self._closed.is_set():
            return
        thread = self._thread
        if thread is None or not thread.is_alive():  # first use, after ``open`` or after a fork
            thread = self._thread = threading.Thread(
                target=self._run, args=(self._closed, self._armed), name="synthobs-task-batch", daemon=True
            )
            thread.start()
        self._armed.set()

    def _run(self, closed: threading.Event, armed: threading.Event) -> None:
        """The batch thread, until ``closed`` (its own: ``open`` gives a later thread new events)."""
        while not closed.is_set():
            armed.wait()
            armed.clear()
            deadline = time.monotonic() + self.max_wait
            while not closed.is_set() and (left := deadline - time.monotonic()) > 0:
                closed.wait(left)
            if closed.is_set():  # ``close`` records what is noted; a later ``open``'s notes are a new thread's
                return
            try:
                self.flush()
            except Exception as exc:  # ``record`` never raises; a thread must not die of a surprise either
                logger.debug("synthobs: recording a task batch failed: %s", exc)
