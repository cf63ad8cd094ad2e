"""The synthobs metric catalog on its own registry.

``REGISTRY`` is a plain ``CollectorRegistry``: importing this module registers
nothing anywhere else. The collectors are created on first use by
the instrumentation (``Instrumentation.metrics``) with the configured prefix (default ``synthobs``).

Example:
    ```python
    from prometheus_client import generate_latest
    from prefect_synthobs.metrics import REGISTRY

    print(generate_latest(REGISTRY).decode())
    ```
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from prefect_synthobs import catalog as names

REGISTRY = CollectorRegistry(auto_describe=True)


class SynthObsMetrics:
    """Every synthobs metric, registered on one registry.

    Args:
        registry: Where the collectors are registered.
        prefix: Prefix of every metric name (``synthobs`` gives ``synthobs_...``).
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY, prefix: str = "synthobs") -> None:
        self.registry = registry
        self.prefix = prefix
        p = f"{prefix}_"
        self.flow_runs = Counter(
            p + names.FLOW_RUNS_TOTAL,
            "Finished flow runs by final state.",
            ["flow", "kind", "state"],
            registry=registry,
        )
        self.flow_run_duration = Histogram(
            p + names.FLOW_RUN_DURATION,
            "Flow run wall time in seconds.",
            ["flow", "kind"],
            buckets=names.DURATION_BUCKETS,
            registry=registry,
        )
        self.task_runs = Counter(
            p + names.TASK_RUNS_TOTAL,
            "Finished task runs by final state.",
            ["flow", "task", "state"],
            registry=registry,
        )
        self.task_run_duration = Histogram(
            p + names.TASK_RUN_DURATION,
            "Task run wall time in seconds (retries included).",
            ["flow", "task"],
            buckets=names.DURATION_BUCKETS,
            registry=registry,
        )
        self.task_retries = Counter(
            p + names.TASK_RETRIES_TOTAL,
            "Task retries (run attempts beyond the first).",
            ["flow", "task"],
            registry=registry,
        )
        self.rows_dropped = Counter(
            p + names.ROWS_DROPPED_TOTAL,
            "Health rows dropped because the spool (or memory, when the spool is unwritable) was full.",
            ["table"],
            registry=registry,
        )
        self.errors = Counter(
            p + names.ERRORS_TOTAL,
            "Failed or crashed flow runs by exception type.",
            ["flow", "kind", "error_type"],
            registry=registry,
        )
        self.last_success = Gauge(
            p + names.LAST_SUCCESS,
            "Unix time of the flow's last successful run.",
            ["flow"],
            registry=registry,
        )
        self.generation_rows = Counter(
            p + names.GENERATION_ROWS_TOTAL,
            "Synthetic rows generated.",
            ["flow", "table", "model_type"],
            registry=registry,
        )
        self.generation_rows_per_second = Gauge(
            p + names.GENERATION_ROWS_PER_SECOND,
            "Rows per second of the last generation run.",
            ["flow", "table", "model_type"],
            registry=registry,
        )
        self.training_epochs = Counter(
            p + names.TRAINING_EPOCHS_TOTAL,
            "Training epochs completed.",
            ["flow", "model_type"],
            registry=registry,
        )
        self.training_loss = Gauge(
            p + names.TRAINING_LOSS,
            "Loss at the last recorded epoch.",
            ["flow", "model_type", "loss_type"],
            registry=registry,
        )
        self.quality_score = Gauge(
            p + names.QUALITY_SCORE,
            "Last quality score (0 to 1) per table and metric.",
            ["table", "metric"],
            registry=registry,
        )
        self.quality_gate_checks = Counter(
            p + names.QUALITY_GATE_CHECKS_TOTAL,
            "Quality scores checked against a threshold.",
            ["table", "gate", "result"],
            registry=registry,
        )
        self.privacy_spent = Counter(
            p + names.PRIVACY_EPSILON_SPENT_TOTAL,
            "Privacy budget (epsilon) spent.",
            ["dataset"],
            registry=registry,
        )
        self.privacy_remaining = Gauge(
            p + names.PRIVACY_EPSILON_REMAINING,
            "Privacy budget (epsilon) left after the last check.",
            ["dataset"],
            registry=registry,
        )
        self.privacy_checks = Counter(
            p + names.PRIVACY_BUDGET_CHECKS_TOTAL,
            "Privacy budget checks by result (allowed, denied).",
            ["dataset", "result"],
            registry=registry,
        )
        gpu_labels = ["gpu", "uuid", "model"]
        self.gpu_utilization = Gauge(
            p + names.GPU_UTILIZATION,
            "GPU utilisation (0 to 1) at the last sample.",
            gpu_labels,
            registry=registry,
        )
        self.gpu_memory_used = Gauge(
            p + names.GPU_MEMORY_USED,
            "GPU memory in use at the last sample.",
            gpu_labels,
            registry=registry,
        )
        self.gpu_memory_total = Gauge(
            p + names.GPU_MEMORY_TOTAL,
            "GPU memory installed.",
            gpu_labels,
            registry=registry,
        )
        self.gpu_power = Gauge(
            p + names.GPU_POWER,
            "GPU power draw at the last sample.",
            gpu_labels,
            registry=registry,
        )
        self.gpu_temperature = Gauge(
            p + names.GPU_TEMPERATURE,
            "GPU core temperature at the last sample.",
            gpu_labels,
            registry=registry,
        )
        self.gpu_energy = Counter(
            p + names.GPU_ENERGY_TOTAL,
            "GPU energy used while sampled (from the device's energy counter).",
            gpu_labels,
            registry=registry,
        )
        self._collectors = [
            self.flow_runs,
            self.flow_run_duration,
            self.task_runs,
            self.task_run_duration,
            self.task_retries,
            self.errors,
            self.last_success,
            self.generation_rows,
            self.generation_rows_per_second,
            self.training_epochs,
            self.training_loss,
            self.quality_score,
            self.quality_gate_checks,
            self.privacy_spent,
            self.privacy_remaining,
            self.privacy_checks,
            self.gpu_utilization,
            self.gpu_memory_used,
            self.gpu_memory_total,
            self.gpu_power,
            self.gpu_temperature,
            self.gpu_energy,
        ]

    def unregister(self) -> None:
        """Remove exactly the collectors this object registered."""
        for collector in self._collectors:
            with contextlib.suppress(KeyError):
                self.registry.unregister(collector)


def label(value: object | None) -> str:
    """A label value: ``None`` becomes the empty string (an absent label)."""
    return "" if value is None else str(value)
