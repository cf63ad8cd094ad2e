"""The one recording seam: each thing synthobs observes becomes a row, metrics and span attributes here.

Every event a run produces (a flow or task run finished, rows generated, an
epoch, a quality score, a privacy spend, GPU samples) passes through one
method of ``Recording``, which writes the health row (through the
``Recorder``), updates the metric catalog and, where there is one, sets the
span attributes. Nothing else in the package writes rows or touches metrics,
so a new column, metric or attribute has one place to go.

Pure of Prefect: callers pass plain values (names, ids, states, times).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from opentelemetry.trace import Span, SpanContext

from prefect_synthobs import catalog
from prefect_synthobs.gpu.nvml import GpuDevice, GpuReading
from prefect_synthobs.health.recorder import Recorder
from prefect_synthobs.health.rows import (
    AttemptError,
    epoch_rows,
    flow_row,
    privacy_row,
    quality_row,
    task_row,
)
from prefect_synthobs.health.tables import Row
from prefect_synthobs.telemetry.metrics import SynthObsMetrics, label


def gpu_span_attributes(gpu: Mapping[str, Any]) -> dict[str, Any]:
    """The flow span's GPU summary attributes (the non-null ``flow_runs`` GPU columns)."""
    pairs = (
        (catalog.ATTR_GPU_UTIL_MEAN, gpu.get("gpu_util_mean")),
        (catalog.ATTR_GPU_UTIL_MAX, gpu.get("gpu_util_max")),
        (catalog.ATTR_GPU_MEMORY_PEAK, gpu.get("gpu_memory_peak_bytes")),
        (catalog.ATTR_GPU_ENERGY, gpu.get("gpu_energy_j")),
    )
    return {key: value for key, value in pairs if value is not None}


class Recording:
    """Rows, metrics and span attributes for every observed event.

    Args:
        recorder: Buffers and writes health rows.
        metrics: The metric catalog to update.
        redact_pii: Redact PII from stored error messages.
    """

    def __init__(self, recorder: Recorder, metrics: SynthObsMetrics, *, redact_pii: bool) -> None:
        self.recorder = recorder
        self.metrics = metrics
        self.redact_pii = redact_pii

    # -- runs ----------------------------------------------------------------------

    def flow_finished(
        self,
        *,
        flow_run_id: str,
        flow_name: str,
        kind: str,
        model_type: str | None,
        table: str | None,
        parent_flow_run_id: str | None,
        state_type: str,
        state_name: str | None,
        start_time: datetime | None,
        end_time: datetime,
        rows: int,
        rows_by_table: Mapping[str | None, int],
        error_type: str | None,
        error_message: str | None,
        tags: Sequence[str],
        host: str,
        trace_id: str | None,
        gpu: Mapping[str, Any] | None,
        span_attributes: Mapping[str, Any],
        run_span: Span | None,
        run_count: int | None = None,
        attempt_errors: Sequence[AttemptError] = (),
    ) -> Row:
        """A finished flow run: its ``flow_runs`` row, run metrics and flow-span attributes.

        ``rows``/``rows_by_table``: the rows of the attempt that finished.
        """
        row = flow_row(
            flow_run_id=flow_run_id,
            parent_flow_run_id=parent_flow_run_id,
            flow_name=flow_name,
            kind=kind,
            model_type=model_type,
            table_name=table,
            state_type=state_type,
            state_name=state_name,
            start_time=start_time,
            end_time=end_time,
            rows=rows,
            error_type=error_type,
            error_message=error_message,
            tags=tags,
            host=host,
            trace_id=trace_id,
            redact_pii=self.redact_pii,
            gpu=gpu,
            run_count=run_count,
            attempt_errors=attempt_errors,
        )
        self.recorder.add(catalog.FLOW_RUNS, row)
        if run_span is not None:
            run_span.set_attributes(dict(span_attributes))
            run_span.set_attribute(catalog.ATTR_ROWS, rows)
            if row["rows_per_s"] is not None:
                run_span.set_attribute(catalog.ATTR_ROWS_PER_SECOND, row["rows_per_s"])
            if gpu:
                run_span.set_attributes(gpu_span_attributes(gpu))
        m, flow_label, kind_label = self.metrics, label(flow_name), label(kind)
        m.flow_runs.labels(flow_label, kind_label, state_type).inc()
        duration = row["duration_s"]
        if duration is not None:
            m.observe_flow_duration(
                flow_label, kind_label, duration, run_span.get_span_context() if run_span is not None else None
            )
        if state_type == "COMPLETED":
            m.last_success.labels(flow_label).set(end_time.timestamp())
        elif state_type in ("FAILED", "CRASHED"):
            m.errors.labels(flow_label, kind_label, label(error_type)).inc()
        if duration:
            for rows_table, count in rows_by_table.items():
                m.generation_rows_per_second.labels(
                    flow_label, label(rows_table if rows_table is not None else table), label(model_type)
                ).set(count / duration)
        return row

    def task_finished(
        self,
        *,
        task_run_id: str,
        flow_run_id: str | None,
        flow_name: str | None,
        task_name: str,
        state_type: str,
        state_name: str | None,
        start_time: datetime | None,
        end_time: datetime | None,
        run_count: int,
        run_time_s: float | None,
        error_type: str | None,
        error_message: str | None,
        tags: Sequence[str],
        rows: int = 0,
        span_context: SpanContext | None = None,
        attempt_errors: Sequence[AttemptError] = (),
    ) -> Row:
        """A finished task run (retries included): its ``task_runs`` row and task metrics.

        ``rows``: the rows of its last attempt. The duration metric observes the
        row's ``duration_s`` (running time, retry waits left out).
        """
        row = task_row(
            task_run_id=task_run_id,
            flow_run_id=flow_run_id,
            flow_name=flow_name,
            task_name=task_name,
            state_type=state_type,
            state_name=state_name,
            start_time=start_time,
            end_time=end_time,
            run_count=run_count,
            run_time_s=run_time_s,
            error_type=error_type,
            error_message=error_message,
            tags=tags,
            redact_pii=self.redact_pii,
            rows=rows,
            attempt_errors=attempt_errors,
        )
        self.recorder.add(catalog.TASK_RUNS, row)
        self.task_counted(
            flow_name=flow_name,
            task_name=task_name,
            state_type=state_type,
            duration_s=row["duration_s"],
            run_count=run_count,
            span_context=span_context,
        )
        return row

    def task_counted(
        self,
        *,
        flow_name: str | None,
        task_name: str,
        state_type: str,
        duration_s: float | None,
        run_count: int,
        span_context: SpanContext | None = None,
    ) -> None:
        """A finished task run's metrics (also for one recorded in a worker process, which exports none).

        ``span_context``: the task run's span, the exemplar of its duration.
        """
        m, fl, tl = self.metrics, label(flow_name), label(task_name)
        m.task_runs.labels(fl, tl, state_type).inc()
        if duration_s is not None:
            m.observe_task_duration(fl, tl, duration_s, span_context)
        if run_count > 1:
            m.task_retries.labels(fl, tl).inc(run_count - 1)

    # -- measurements ---------------------------------------------------------------

    def rows_generated(self, n: int, *, flow_name: str | None, table: str | None, model_type: str | None) -> None:
        """Synthetic rows generated (the flow's own count is kept by its run scope).

        ``synthobs_generation_rows_total`` counts every row generated, as it is
        recorded, including rows of attempts that later failed and were retried
        (they were generated; a counter never goes down). The ``rows`` of the
        run rows count the attempt that finished.
        """
        self.metrics.generation_rows.labels(label(flow_name), label(table), label(model_type)).inc(n)

    def epoch(
        self,
        epoch: int,
        losses: Mapping[str, float],
        *,
        time: datetime,
        flow_run_id: str | None,
        flow_name: str | None,
        model_type: str | None,
        in_observed_run: bool,
        model_id: str | None = None,
        epoch_seconds: float | None = None,
        span_context: SpanContext | None = None,
        fit_id: str | None = None,
    ) -> None:
        """A finished training epoch: ``training_epochs`` rows (in an observed run) and metrics.

        ``time``: when the epoch ended; ``epoch_seconds``: how long it took (autolog knows, a hand-made
        ``record_epoch`` does not); ``span_context``: the epoch's span, the duration's exemplar."""
        if in_observed_run:
            self.recorder.add(
                catalog.TRAINING_EPOCHS,
                epoch_rows(
                    epoch=epoch,
                    losses=losses,
                    time=time,
                    flow_run_id=flow_run_id,
                    flow_name=flow_name,
                    model_type=model_type,
                    model_id=model_id,
                    epoch_seconds=epoch_seconds,
                    fit_id=fit_id,
                ),
            )
        m, flow_label, type_label = self.metrics, label(flow_name), label(model_type)
        m.training_epochs.labels(flow_label, type_label).inc()
        for loss_type, value in losses.items():
            m.training_loss.labels(flow_label, type_label, loss_type).set(value)
        if epoch_seconds is not None and epoch_seconds >= 0:
            m.observe_epoch_duration(flow_label, type_label, epoch_seconds, span_context)

    def model_fitted(self, row: Row, *, in_observed_run: bool) -> None:
        """A fit that ended (a ``models`` row from ``health.rows.model_row``): the row (in an observed
        run) and ``training_fits_total``."""
        if in_observed_run:
            self.recorder.add(catalog.MODELS, row)
        self.metrics.training_fits.labels(
            label(row["flow_name"]), label(row["model_type"]), label(row["library"]), label(row["status"])
        ).inc()

    def training_alert(self, check: str, *, flow_name: str | None, model_type: str | None) -> None:
        """A training health check that tripped (``catalog.TRAINING_CHECKS``): counted."""
        self.metrics.training_alerts.labels(label(flow_name), label(model_type), check).inc()

    def quality_checked(
        self,
        metric: str,
        score: float,
        *,
        threshold: float | None,
        passed: bool | None,
        gate: str,
        time: datetime,
        table: str | None,
        flow_run_id: str | None,
        flow_name: str | None,
        in_observed_run: bool,
        model_id: str | None = None,
        model_type: str | None = None,
    ) -> None:
        """One checked score: a ``quality_checks`` row (in an observed run, with the model that made
        the table), the score gauge and, with a threshold, one gate check counted as ``pass`` or ``fail``.

        The metrics carry no ``model_id`` label: an id is new at every fit, so it would make a Prometheus
        series per fit that is never seen again; per-model figures live in the rows and the health report."""
        if in_observed_run:
            self.recorder.add(
                catalog.QUALITY_CHECKS,
                quality_row(
                    metric=metric,
                    score=score,
                    threshold=threshold,
                    time=time,
                    table_name=table,
                    flow_run_id=flow_run_id,
                    flow_name=flow_name,
                    passed=passed,
                    model_id=model_id,
                    model_type=model_type,
                ),
            )
        m = self.metrics
        m.quality_score.labels(label(table), metric, label(model_type)).set(score)
        if passed is not None:
            m.quality_gate_checks.labels(label(table), gate, "pass" if passed else "fail").inc()

    def privacy_checked(
        self,
        dataset: str,
        epsilon: float,
        *,
        spent: float,
        budget: float,
        allowed: bool,
        time: datetime,
        flow_run_id: str | None,
        flow_name: str | None,
        ledger: bool = True,
    ) -> None:
        """A privacy budget check: counted, the remaining budget, and (when allowed) the spend
        and its ``privacy_ledger`` row. ``spent`` is the total after the check. ``ledger=False``:
        the caller already made the row durable (``record_privacy_spend`` does, before it returns)."""
        m = self.metrics
        m.privacy_checks.labels(dataset, "allowed" if allowed else "denied").inc()
        m.privacy_remaining.labels(dataset).set(max(budget - spent, 0.0))
        if not allowed:
            return
        m.privacy_spent.labels(dataset).inc(epsilon)
        if not ledger:
            return
        self.recorder.add(
            catalog.PRIVACY_LEDGER,
            privacy_row(
                time=time,
                flow_run_id=flow_run_id,
                flow_name=flow_name,
                dataset=dataset,
                epsilon=epsilon,
                spent=spent,
                budget=budget,
            ),
        )

    # -- GPU ------------------------------------------------------------------------

    def gpu_sampled(self, readings: Sequence[GpuReading], energy_j: Mapping[str, float], rows: list[Row]) -> None:
        """GPU samples: the device gauges, the energy counter and ``gpu_samples`` rows."""
        m = self.metrics
        for r in readings:
            labels = (str(r.index), r.uuid, r.name)
            for gauge, value in (
                (m.gpu_utilization, r.utilization),
                (m.gpu_memory_used, r.memory_used_bytes),
                (m.gpu_memory_total, r.memory_total_bytes),
                (m.gpu_power, r.power_w),
                (m.gpu_temperature, r.temperature_c),
            ):
                if value is not None:
                    gauge.labels(*labels).set(value)
            joules = energy_j.get(r.uuid)
            if joules:
                m.gpu_energy.labels(*labels).inc(joules)
        if rows:
            self.recorder.add(catalog.GPU_SAMPLES, rows)

    def gpu_lost(self, device: GpuDevice) -> None:
        """A lost GPU: its gauges go (stale gauges would show a dead GPU as busy)."""
        m = self.metrics
        for gauge in (m.gpu_utilization, m.gpu_memory_used, m.gpu_power, m.gpu_temperature):
            with contextlib.suppress(KeyError):
                gauge.remove(str(device.index), device.uuid, device.name)
