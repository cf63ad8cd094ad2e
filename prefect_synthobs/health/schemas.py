"""Arrow schemas of the health-store tables (the table contract in docs/architecture.md).

The store reads with these schemas, so files written before a column existed
read with that column as null instead of silently dropping it.
"""

from __future__ import annotations

import pyarrow as pa

from prefect_synthobs import catalog as names

_TS = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    names.FLOW_RUNS: pa.schema(
        [
            ("event_id", pa.string()),
            ("flow_run_id", pa.string()),
            ("parent_flow_run_id", pa.string()),
            ("flow_name", pa.string()),
            ("kind", pa.string()),
            ("model_type", pa.string()),
            ("table_name", pa.string()),
            ("state_type", pa.string()),
            ("state_name", pa.string()),
            ("start_time", _TS),
            ("end_time", _TS),
            ("duration_s", pa.float64()),
            ("rows", pa.int64()),
            ("rows_per_s", pa.float64()),
            ("error_type", pa.string()),
            ("error_message", pa.string()),
            ("tags", pa.list_(pa.string())),
            ("host", pa.string()),
            ("trace_id", pa.string()),
            ("gpu_util_mean", pa.float64()),
            ("gpu_util_max", pa.float64()),
            ("gpu_memory_peak_bytes", pa.int64()),
            ("gpu_energy_j", pa.float64()),
        ]
    ),
    names.TASK_RUNS: pa.schema(
        [
            ("event_id", pa.string()),
            ("task_run_id", pa.string()),
            ("flow_run_id", pa.string()),
            ("flow_name", pa.string()),
            ("task_name", pa.string()),
            ("state_type", pa.string()),
            ("state_name", pa.string()),
            ("start_time", _TS),
            ("end_time", _TS),
            ("duration_s", pa.float64()),
            ("run_time_s", pa.float64()),
            ("run_count", pa.int64()),
            ("error_type", pa.string()),
            ("error_message", pa.string()),
            ("tags", pa.list_(pa.string())),
        ]
    ),
    names.TRAINING_EPOCHS: pa.schema(
        [
            ("event_id", pa.string()),
            ("time", _TS),
            ("flow_run_id", pa.string()),
            ("flow_name", pa.string()),
            ("model_type", pa.string()),
            ("epoch", pa.int64()),
            ("loss_type", pa.string()),
            ("loss", pa.float64()),
        ]
    ),
    names.QUALITY_CHECKS: pa.schema(
        [
            ("event_id", pa.string()),
            ("time", _TS),
            ("flow_run_id", pa.string()),
            ("flow_name", pa.string()),
            ("table_name", pa.string()),
            ("metric", pa.string()),
            ("score", pa.float64()),
            ("threshold", pa.float64()),
            ("passed", pa.bool_()),
        ]
    ),
    names.GPU_SAMPLES: pa.schema(
        [
            ("event_id", pa.string()),
            ("time", _TS),
            ("host", pa.string()),
            ("gpu_index", pa.int64()),
            ("gpu_uuid", pa.string()),
            ("gpu_name", pa.string()),
            ("utilization", pa.float64()),
            ("memory_used_bytes", pa.int64()),
            ("memory_total_bytes", pa.int64()),
            ("power_w", pa.float64()),
            ("temperature_c", pa.float64()),
            ("sm_clock_mhz", pa.int64()),
            ("energy_j", pa.float64()),
            ("flow_run_id", pa.string()),
            ("flow_run_ids", pa.list_(pa.string())),
        ]
    ),
    names.PRIVACY_LEDGER: pa.schema(
        [
            ("event_id", pa.string()),
            ("time", _TS),
            ("flow_run_id", pa.string()),
            ("flow_name", pa.string()),
            ("dataset", pa.string()),
            ("epsilon", pa.float64()),
            ("spent", pa.float64()),
            ("budget", pa.float64()),
            ("remaining", pa.float64()),
        ]
    ),
}

# The column whose date picks a row's ``date=YYYY-MM-DD`` partition.
TIME_COLUMN: dict[str, str] = {
    names.FLOW_RUNS: "start_time",
    names.TASK_RUNS: "start_time",
    names.TRAINING_EPOCHS: "time",
    names.QUALITY_CHECKS: "time",
    names.GPU_SAMPLES: "time",
    names.PRIVACY_LEDGER: "time",
}

PARTITION_COLUMN = "date"


def schema_for(table: str) -> pa.Schema:
    """The schema of ``table``; ``ValueError`` naming the known tables otherwise."""
    try:
        return SCHEMAS[table]
    except KeyError:
        known = ", ".join(sorted(SCHEMAS))
        raise ValueError(f"unknown health-store table {table!r}; known tables: {known}") from None
