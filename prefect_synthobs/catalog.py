"""Every public name synthobs writes: tables, metrics, spans, attributes, events.

Defined once here so the store, the metrics, the traces and the docs agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

ENV_PREFIX: Final = "PREFECT_INTEGRATIONS_SYNTHOBS_"

# Kinds accepted by ``observe(kind=...)``.
KINDS: Final = ("training", "generation", "quality", "other")

# Health store tables.
FLOW_RUNS: Final = "flow_runs"
TASK_RUNS: Final = "task_runs"
TRAINING_EPOCHS: Final = "training_epochs"
QUALITY_CHECKS: Final = "quality_checks"
GPU_SAMPLES: Final = "gpu_samples"
PRIVACY_LEDGER: Final = "privacy_ledger"
MODELS: Final = "models"
"""One row per generator fit that autolog saw (``prefect_synthobs.autolog``)."""
TABLES: Final = (FLOW_RUNS, TASK_RUNS, TRAINING_EPOCHS, QUALITY_CHECKS, GPU_SAMPLES, PRIVACY_LEDGER, MODELS)

# Metric names, without the configurable prefix (default ``synthobs_``); each metric's one
# definition is its ``MetricSpec`` in ``METRICS`` below.
FLOW_RUNS_TOTAL: Final = "flow_runs_total"
FLOW_RUN_DURATION: Final = "flow_run_duration_seconds"
TASK_RUNS_TOTAL: Final = "task_runs_total"
TASK_RUN_DURATION: Final = "task_run_duration_seconds"
TASK_RETRIES_TOTAL: Final = "task_retries_total"
ERRORS_TOTAL: Final = "errors_total"
LAST_SUCCESS: Final = "last_success_timestamp_seconds"
GENERATION_ROWS_TOTAL: Final = "generation_rows_total"
GENERATION_ROWS_PER_SECOND: Final = "generation_rows_per_second"
TRAINING_EPOCHS_TOTAL: Final = "training_epochs_total"
TRAINING_LOSS: Final = "training_loss"
TRAINING_EPOCH_DURATION: Final = "training_epoch_duration_seconds"
TRAINING_FITS_TOTAL: Final = "training_fits_total"
TRAINING_ALERTS_TOTAL: Final = "training_alerts_total"
QUALITY_SCORE: Final = "quality_score"
QUALITY_GATE_CHECKS_TOTAL: Final = "quality_gate_checks_total"
PRIVACY_EPSILON_SPENT_TOTAL: Final = "privacy_epsilon_spent_total"
PRIVACY_EPSILON_REMAINING: Final = "privacy_epsilon_remaining"
PRIVACY_BUDGET_CHECKS_TOTAL: Final = "privacy_budget_checks_total"
GPU_UTILIZATION: Final = "gpu_utilization_ratio"
GPU_MEMORY_USED: Final = "gpu_memory_used_bytes"
GPU_MEMORY_TOTAL: Final = "gpu_memory_total_bytes"
GPU_POWER: Final = "gpu_power_watts"
GPU_TEMPERATURE: Final = "gpu_temperature_celsius"
GPU_ENERGY_TOTAL: Final = "gpu_energy_joules_total"
ROWS_DROPPED_TOTAL: Final = "rows_dropped_total"
FLOW_RUNS_IN_PROGRESS: Final = "flow_runs_in_progress"
FLOW_RUN_OLDEST_IN_PROGRESS_AGE: Final = "flow_run_oldest_in_progress_age_seconds"

# GPU metrics on OTLP under the OpenTelemetry semantic conventions
# (model/hardware/gpu-metrics.yaml): name, unit, instrument.
HW_GPU_UTILIZATION: Final = ("hw.gpu.utilization", "1", "gauge")
HW_GPU_MEMORY_USAGE: Final = ("hw.gpu.memory.usage", "By", "updowncounter")
HW_GPU_MEMORY_LIMIT: Final = ("hw.gpu.memory.limit", "By", "updowncounter")
HW_GPU_MEMORY_UTILIZATION: Final = ("hw.gpu.memory.utilization", "1", "gauge")
HW_POWER: Final = ("hw.power", "W", "gauge")
HW_ENERGY: Final = ("hw.energy", "J", "counter")
HW_TEMPERATURE: Final = ("hw.temperature", "Cel", "gauge")
HW_GPU_METRICS: Final = (
    HW_GPU_UTILIZATION,
    HW_GPU_MEMORY_USAGE,
    HW_GPU_MEMORY_LIMIT,
    HW_GPU_MEMORY_UTILIZATION,
    HW_POWER,
    HW_ENERGY,
    HW_TEMPERATURE,
)
HW_ID: Final = "hw.id"
HW_NAME: Final = "hw.name"
HW_MODEL: Final = "hw.model"
HW_VENDOR: Final = "hw.vendor"
HW_TYPE: Final = "hw.type"

# The instrumentation scope of synthobs' OTLP metrics and logs.
METER_NAME: Final = "prefect_synthobs"

# Buckets for batch work: 0.1 s to 4 h.
DURATION_BUCKETS: Final = (
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1200.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
)

# Buckets for training epochs: 10 ms to 1 h (a small CTGAN epoch on CPU takes tens of ms).
EPOCH_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

MetricKind = Literal["counter", "gauge", "histogram"]
OtlpInstrument = Literal["counter", "updowncounter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric, defined once: its Prometheus collector (``SynthObsMetrics``), its OTLP
    instrument (``MetricsBridge``) and its ``by_name`` entry are all built from this.

    Attributes:
        name: The Prometheus name without the configurable prefix (``flow_runs_total``).
        kind: ``counter``, ``gauge`` or ``histogram`` (Prometheus' type).
        labels: The label names, in the order ``.labels(...)`` takes them.
        otlp_name: The OTLP name after ``<prefix>.``. OpenTelemetry's Prometheus translation
            (dots to underscores, a unit suffix from ``unit``, ``_total`` on monotonic sums,
            ``ratio`` for unit ``1``) gives back ``name``, so dashboards and alert rules work
            on both wires (tests/telemetry/test_otel_metrics.py proves it for every metric).
        unit: The OTLP unit (UCUM); units in braces are annotations and add no suffix.
        help: The help text (Prometheus ``# HELP``, the OTLP description).
        buckets: A histogram's bucket bounds (Prometheus and OTLP alike); empty otherwise.
        otlp_kind: The OTLP instrument when it is not the kind's own: a gauge that counts
            things in progress is an up-down counter.
    """

    name: str
    kind: MetricKind
    labels: tuple[str, ...]
    otlp_name: str
    unit: str
    help: str
    buckets: tuple[float, ...] = ()
    otlp_kind: OtlpInstrument | None = None

    def __post_init__(self) -> None:
        if (self.kind == "histogram") != bool(self.buckets):
            raise ValueError(f"{self.name}: buckets are given for a histogram and only for one")

    @property
    def otlp_instrument(self) -> OtlpInstrument:
        """The OTLP instrument: counters are (observable) counters, gauges gauges, histograms histograms."""
        return self.otlp_kind or self.kind


_GPU_LABELS: Final = ("gpu", "uuid", "model")

# Every synthobs metric, in the order the Prometheus exposition lists them. ``gpu.utilization_ratio``
# spells its ``ratio`` out: Prometheus' translator adds it for unit ``1``, OpenTelemetry Python's
# does not, and both must give the same name.
# fmt: off
METRICS: Final[tuple[MetricSpec, ...]] = (  # a table: one spec per entry, not reflowed by the formatter
    # MetricSpec(name, kind, labels, OTLP name, OTLP unit, help[, buckets][, otlp_kind=...])
    MetricSpec(FLOW_RUNS_TOTAL, "counter", ("flow", "kind", "state"), "flow.runs", "{run}",
               "Finished flow runs by final state."),
    MetricSpec(FLOW_RUN_DURATION, "histogram", ("flow", "kind"), "flow.run.duration", "s",
               "Flow run wall time in seconds.", DURATION_BUCKETS),
    MetricSpec(TASK_RUNS_TOTAL, "counter", ("flow", "task", "state"), "task.runs", "{run}",
               "Finished task runs by final state."),
    MetricSpec(TASK_RUN_DURATION, "histogram", ("flow", "task"), "task.run.duration", "s",
               "Task run wall time in seconds (retries included).", DURATION_BUCKETS),
    MetricSpec(TASK_RETRIES_TOTAL, "counter", ("flow", "task"), "task.retries", "{retry}",
               "Task retries (run attempts beyond the first)."),
    MetricSpec(ROWS_DROPPED_TOTAL, "counter", ("table",), "rows.dropped", "{row}",
               "Health rows dropped because the spool (or memory, when the spool is unwritable) was full."),
    MetricSpec(ERRORS_TOTAL, "counter", ("flow", "kind", "error_type"), "errors", "{error}",
               "Failed or crashed flow runs by exception type."),
    MetricSpec(LAST_SUCCESS, "gauge", ("flow",), "last_success.timestamp", "s",
               "Unix time of the flow's last successful run."),
    MetricSpec(GENERATION_ROWS_TOTAL, "counter", ("flow", "table", "model_type"), "generation.rows", "{row}",
               "Synthetic rows generated."),
    MetricSpec(GENERATION_ROWS_PER_SECOND, "gauge", ("flow", "table", "model_type"), "generation.rows_per_second",
               "{row}/s", "Rows per second of the last generation run."),
    MetricSpec(TRAINING_EPOCHS_TOTAL, "counter", ("flow", "model_type"), "training.epochs", "{epoch}",
               "Training epochs completed."),
    MetricSpec(TRAINING_LOSS, "gauge", ("flow", "model_type", "loss_type"), "training.loss", "{loss}",
               "Loss at the last recorded epoch."),
    MetricSpec(TRAINING_EPOCH_DURATION, "histogram", ("flow", "model_type"), "training.epoch.duration", "s",
               "Training epoch wall time in seconds (recorded by autolog as each epoch ends).", EPOCH_BUCKETS),
    MetricSpec(TRAINING_FITS_TOTAL, "counter", ("flow", "model_type", "library", "status"), "training.fits", "{fit}",
               "Generator fits that ended, by library and status (completed, failed, stopped)."),
    MetricSpec(TRAINING_ALERTS_TOTAL, "counter", ("flow", "model_type", "check"), "training.alerts", "{alert}",
               "Training health checks that tripped (nan_loss, divergence, plateau, slow_epoch)."),
    MetricSpec(QUALITY_SCORE, "gauge", ("table", "metric", "model_type"), "quality.score", "{score}",
               "Last quality score (0 to 1) per table, metric and model type (two generators of one table never "
               "overwrite each other; no model id label: every fit is a new id)."),
    MetricSpec(QUALITY_GATE_CHECKS_TOTAL, "counter", ("table", "gate", "result"), "quality.gate.checks", "{check}",
               "Quality scores checked against a threshold."),
    MetricSpec(PRIVACY_EPSILON_SPENT_TOTAL, "counter", ("dataset",), "privacy.epsilon.spent", "{epsilon}",
               "Privacy budget (epsilon) spent."),
    MetricSpec(PRIVACY_EPSILON_REMAINING, "gauge", ("dataset",), "privacy.epsilon.remaining", "{epsilon}",
               "Privacy budget (epsilon) left after the last check."),
    MetricSpec(PRIVACY_BUDGET_CHECKS_TOTAL, "counter", ("dataset", "result"), "privacy.budget.checks", "{check}",
               "Privacy budget checks by result (allowed, denied)."),
    MetricSpec(GPU_UTILIZATION, "gauge", _GPU_LABELS, "gpu.utilization_ratio", "1",
               "GPU utilisation (0 to 1) at the last sample."),
    MetricSpec(GPU_MEMORY_USED, "gauge", _GPU_LABELS, "gpu.memory.used", "By",
               "GPU memory in use at the last sample."),
    MetricSpec(GPU_MEMORY_TOTAL, "gauge", _GPU_LABELS, "gpu.memory.total", "By",
               "GPU memory installed."),
    MetricSpec(GPU_POWER, "gauge", _GPU_LABELS, "gpu.power", "W",
               "GPU power draw at the last sample."),
    MetricSpec(GPU_TEMPERATURE, "gauge", _GPU_LABELS, "gpu.temperature", "Cel",
               "GPU core temperature at the last sample."),
    MetricSpec(GPU_ENERGY_TOTAL, "counter", _GPU_LABELS, "gpu.energy", "J",
               "GPU energy used while sampled (from the device's energy counter)."),
    # read at collection from the runs in progress (``telemetry.metrics.InProgressCollector``)
    MetricSpec(FLOW_RUNS_IN_PROGRESS, "gauge", ("flow",), "flow.runs_in_progress", "{run}",
               "Observed flow runs in progress.", otlp_kind="updowncounter"),
    MetricSpec(FLOW_RUN_OLDEST_IN_PROGRESS_AGE, "gauge", ("flow",), "flow.run.oldest_in_progress_age", "s",
               "Age of the oldest observed flow run in progress (0 when none is)."),
)
# fmt: on
METRIC_SPECS: Final = {spec.name: spec for spec in METRICS}
"""Each metric's spec by its name (without the prefix)."""

# The metrics on OTLP, ``{name: (OTLP name after the prefix and a dot, unit)}`` (derived: ``METRICS``).
OTEL_METRICS: Final = {spec.name: (spec.otlp_name, spec.unit) for spec in METRICS}

# Span names for domain work.
SPAN_TRAINING_EPOCH: Final = "training.epoch"
SPAN_TRAINING_FIT: Final = "training.fit"
SPAN_GENERATION_SAMPLE: Final = "generation.sample"
SPAN_QUALITY_CHECK: Final = "quality.check"
SPAN_PRIVACY_BUDGET_CHECK: Final = "privacy.budget_check"
SPAN_STORAGE_WRITE: Final = "storage.write"

# Span attributes set by synthobs.
ATTR_KIND: Final = "synthobs.kind"
ATTR_MODEL_TYPE: Final = "synthobs.model_type"
ATTR_MODEL_ID: Final = "synthobs.model_id"
ATTR_TABLE: Final = "synthobs.table"
ATTR_ROWS: Final = "synthobs.rows"
ATTR_ROWS_PER_SECOND: Final = "synthobs.rows_per_second"
# Attributes of the spans autolog opens (training.fit, training.epoch, generation.sample).
ATTR_LIBRARY: Final = "synthobs.library"
ATTR_SYNTHESIZER: Final = "synthobs.synthesizer"
ATTR_EPOCH: Final = "synthobs.epoch"
ATTR_EPOCHS: Final = "synthobs.epochs"
ATTR_FIT_ROWS: Final = "synthobs.fit.rows"
ATTR_FIT_COLUMNS: Final = "synthobs.fit.columns"
ATTR_LOSS_PREFIX: Final = "synthobs.loss."
# Set on a flow span synthobs opened itself (Prefect's run telemetry was off).
ATTR_SPAN_ORIGIN: Final = "synthobs.span.origin"
ATTR_STORAGE_TABLE: Final = "synthobs.storage.table"
ATTR_STORAGE_ROWS: Final = "synthobs.storage.rows"
ATTR_STORAGE_FILES: Final = "synthobs.storage.files"
ATTR_STORAGE_BYTES: Final = "synthobs.storage.bytes"
# Per-run GPU summary (same values as the flow_runs columns of the same names).
ATTR_GPU_UTIL_MEAN: Final = "synthobs.gpu.util_mean"
ATTR_GPU_UTIL_MAX: Final = "synthobs.gpu.util_max"
ATTR_GPU_MEMORY_PEAK: Final = "synthobs.gpu.memory_peak_bytes"
ATTR_GPU_ENERGY: Final = "synthobs.gpu.energy_j"
# A quality check's span: ``synthobs.quality.<score>`` per score, whether it passed, the TSTR metric.
ATTR_QUALITY_PREFIX: Final = "synthobs.quality."
ATTR_QUALITY_PASSED: Final = "synthobs.quality.passed"
ATTR_QUALITY_TSTR_METRIC: Final = "synthobs.quality.tstr_metric"

# Prefect events emitted by synthobs.
EVENT_GPU_LOST: Final = "synthobs.gpu.lost"
EVENT_QUALITY_GATE_FAILED: Final = "synthobs.quality.gate.failed"
EVENT_PRIVACY_BUDGET_EXCEEDED: Final = "synthobs.privacy.budget.exceeded"
# Prefect's own asset events, which synthobs emits for each synthetic table a run generates (as ``@materialize``).
EVENT_ASSET_REFERENCED: Final = "prefect.asset.referenced"
EVENT_ASSET_MATERIALIZATION: Final = "prefect.asset.materialization.{status}"
# The resources of synthobs' events: ``<prefix><id>`` is the ``prefect.resource.id``; the flow run
# is a related resource (role ``flow-run``). Resource labels are the span attributes' names
# (``ATTR_LIBRARY``, ``ATTR_MODEL_TYPE``, ...) plus these.
RESOURCE_MODEL_PREFIX: Final = "synthobs.model."
RESOURCE_TABLE_PREFIX: Final = "synthobs.table."
RESOURCE_GPU_PREFIX: Final = "synthobs.gpu."
RESOURCE_DATASET_PREFIX: Final = "synthobs.dataset."
RESOURCE_FLOW_RUN_PREFIX: Final = "prefect.flow-run."
RESOURCE_ROLE_FLOW_RUN: Final = "flow-run"
ATTR_CHECK: Final = "synthobs.check"
ATTR_GATE: Final = "synthobs.gate"
ATTR_GPU_INDEX: Final = "synthobs.gpu.index"
ATTR_HOST: Final = "synthobs.host"
# Prefect's names for an event resource's id, name and role.
PREFECT_RESOURCE_ID: Final = "prefect.resource.id"
PREFECT_RESOURCE_NAME: Final = "prefect.resource.name"
PREFECT_RESOURCE_ROLE: Final = "prefect.resource.role"
# Training health (``autolog``'s checks on each epoch): ``synthobs.training.<check>``.
EVENT_TRAINING_PREFIX: Final = "synthobs.training."
TRAINING_CHECKS: Final = ("nan_loss", "divergence", "plateau", "slow_epoch")
"""The training health checks; each raises ``synthobs.training.<check>`` when it trips."""

# The libraries ``autolog`` knows (the ``autolog`` setting takes ``true``, ``false`` or a comma list of these).
AUTOLOG_LIBRARIES: Final = ("sdv", "ctgan", "synthcity")

# Prefect's names for a flow run's identity on its per-run process metrics' resource (prefect/_internal/metrics.py):
# synthobs puts the same names on its spans, log records and (in a flow-run process) its meter's resource, so a
# backend joins the two.
PREFECT_FLOW_RUN_ID: Final = "prefect.flow-run.id"
PREFECT_FLOW_NAME: Final = "prefect.flow.name"
PREFECT_DEPLOYMENT_ID: Final = "prefect.deployment.id"
PREFECT_WORK_POOL_NAME: Final = "prefect.work-pool.name"
# The flow run's span: the flow process's CPU time and peak memory during the run (the flow_runs columns
# ``cpu_seconds`` and ``peak_memory_bytes``).
ATTR_CPU_SECONDS: Final = "synthobs.process.cpu_seconds"
ATTR_PEAK_MEMORY_BYTES: Final = "synthobs.process.peak_memory_bytes"

# Attributes Prefect puts on its own run spans.
PREFECT_RUN_ID: Final = "prefect.run.id"
PREFECT_RUN_TYPE: Final = "prefect.run.type"

# Error messages stored in the health store are cut to this many characters.
MAX_ERROR_CHARS: Final = 2000
# A run row's ``attempt_errors`` keeps at most this many entries (the first and the last
# attempts' errors, with one entry saying how many were left out between them).
MAX_ATTEMPT_ERRORS: Final = 50

# The flow-run label in which Prefect carries the W3C traceparent of the run that started it.
TRACEPARENT_LABEL: Final = "__OTEL_TRACEPARENT"
# Attributes of Prefect's run spans that synthobs reads.
PREFECT_RUN_NAME: Final = "prefect.run.name"
PREFECT_TAGS: Final = "prefect.tags"
PREFECT_FLOW_ID: Final = "prefect.flow.id"
PREFECT_STATE_TYPE: Final = "prefect.state.type"
# Attributes of the privacy.budget_check span.
ATTR_PRIVACY_ALLOWED: Final = "synthobs.privacy.allowed"
ATTR_PRIVACY_SPENT: Final = "synthobs.privacy.spent"
# The tracer synthobs opens its own spans with.
TRACER_NAME: Final = "prefect_synthobs"

# Quality metrics defined on [0, 1]: a recorded score outside it is refused.
UNIT_INTERVAL_METRICS: Final = frozenset(
    {
        "overall",
        "column_shapes",
        "column_pair_trends",
        "exact_match_rate",
        "membership_inference_auc",
        "dcr_overfitting_protection",
        "dcr_baseline_protection",
        "new_row_synthesis",
        "ks_complement",
        "tv_complement",
        "correlation_similarity",
        "contingency_similarity",
        "diagnostic",
        "data_validity",
        "data_structure",
        "detection",
        "disclosure_protection",
        "cardinality",
        "intertable_trends",
        "relationship_validity",
    }
)

# Quality metrics where a lower score is better (the ``QualityGates`` ``max_*`` gates): charts never
# put them on one axis with the others.
LOWER_IS_BETTER_METRICS: Final = frozenset({"exact_match_rate", "membership_inference_auc"})

# The attribute of synthobs' flow end hook that carries an observed flow's spec
# and settings to worker processes (``instrument.observe.WorkerCarrier``).
CARRIER_ATTRIBUTE: Final = "synthobs_carrier"

# The Prefect artifact type a task in a worker process leaves on its task run with the
# rows it generated, read by the flow's process at the flow's end (``instrument.remote``).
ROWS_ARTIFACT_TYPE: Final = "synthobs-rows"

# The Prefect artifact type a worker on another host leaves on a flow run with the GPU use of
# the run's tasks there, merged into the flow row's GPU summary at the flow's end.
GPU_ARTIFACT_TYPE: Final = "synthobs-gpu"
