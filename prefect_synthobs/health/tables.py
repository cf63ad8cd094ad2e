"""The health-store tables: the one place their columns are written down.

Each :class:`Table` lists its columns with their Arrow types. Everything else
derives from it: the Arrow schema the store writes and reads with
(``Table.schema``), the row every builder returns (``Table.row`` checks the
columns and adds the ``event_id``), the date partition (``Table.time_column``)
and the columns the health report reads (``Table.select``). A column added here
reads as null in files written before it existed.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pyarrow as pa

from prefect_synthobs import catalog as names

Row = dict[str, Any]

PARTITION_COLUMN = "date"
"""The hive partition column: ``date=YYYY-MM-DD`` of the table's time column."""

SOURCE_HOOK = "hook"
"""``source`` of a run row written as the run ended, in a process that ran it."""
SOURCE_API = "api"
"""``source`` of a run row written by reconciliation from the Prefect API's records."""

EVENT_ID = "event_id"
"""Every table's first column: a unique id per row, the deduplication key."""


class _EventIds:
    """Unique ids without a system call each: 64 random bits drawn once per
    process (again after ``fork``) followed by a 64-bit counter.

    ``uuid4()`` reads ``os.urandom`` for every id, which costs ~150 µs on some
    virtual machines: too much on the per-task path.
    """

    def __init__(self) -> None:
        self._reseed()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFFFFFF:016x}"


new_event_id = _EventIds()
"""A unique 32-hex id for one health row."""


@dataclass(frozen=True)
class Table:
    """One health-store table: its name, its columns in order and its time column.

    ``event_id`` is implied as the first column of every table.
    """

    name: str
    columns: Mapping[str, pa.DataType]
    time_column: str
    run_id_column: str | None = None
    """For a table of runs with a ``source`` column: one run, one row (a hook row wins over an API row)."""
    _value_names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if EVENT_ID in self.columns or PARTITION_COLUMN in self.columns:
            raise ValueError(f"{self.name}: {EVENT_ID!r} and {PARTITION_COLUMN!r} are implied, not listed")
        if self.time_column not in self.columns:
            raise ValueError(f"{self.name}: time column {self.time_column!r} is not a column")
        object.__setattr__(self, "_value_names", frozenset(self.columns))

    @cached_property
    def schema(self) -> pa.Schema:
        """The Arrow schema (``event_id`` first) the store writes and reads with."""
        return pa.schema([(EVENT_ID, pa.string()), *self.columns.items()])

    @property
    def column_names(self) -> list[str]:
        """Every column, ``event_id`` first, in schema order."""
        return [EVENT_ID, *self.columns]

    def row(self, **values: Any) -> Row:
        """One row of this table with a new ``event_id``.

        Raises:
            ValueError: unless ``values`` names every column exactly once (a
                builder that forgot or invented a column fails at once, in tests).
        """
        if values.keys() != self._value_names:
            missing = sorted(self._value_names - values.keys())
            unknown = sorted(values.keys() - self._value_names)
            raise ValueError(f"{self.name} row: missing columns {missing}, unknown columns {unknown}")
        return {EVENT_ID: new_event_id(), **values}

    def select(self, *columns: str) -> list[str]:
        """``columns`` as a list, checked against this table (for readers such as the report).

        Raises:
            ValueError: naming any column the table does not have.
        """
        unknown = [c for c in columns if c not in self.columns and c not in (EVENT_ID, PARTITION_COLUMN)]
        if unknown:
            raise ValueError(f"{self.name} has no columns {unknown}; it has {self.column_names}")
        return list(columns)


_TS = pa.timestamp("us", tz="UTC")
_STR, _F64, _I64, _BOOL, _STRS = pa.string(), pa.float64(), pa.int64(), pa.bool_(), pa.list_(pa.string())

FLOW_RUNS = Table(
    names.FLOW_RUNS,
    {
        "flow_run_id": _STR,
        "parent_flow_run_id": _STR,
        "flow_name": _STR,
        "kind": _STR,
        "model_type": _STR,
        "table_name": _STR,
        "state_type": _STR,
        "state_name": _STR,
        "start_time": _TS,
        "end_time": _TS,
        "duration_s": _F64,
        "rows": _I64,
        "rows_per_s": _F64,
        "error_type": _STR,
        "error_message": _STR,
        "tags": _STRS,
        "host": _STR,
        "trace_id": _STR,
        "gpu_util_mean": _F64,
        "gpu_util_max": _F64,
        "gpu_memory_peak_bytes": _I64,
        "gpu_energy_j": _F64,
        "source": _STR,
        "run_count": _I64,
        "attempt_errors": _STRS,
    },
    time_column="start_time",
    run_id_column="flow_run_id",
)

TASK_RUNS = Table(
    names.TASK_RUNS,
    {
        "task_run_id": _STR,
        "flow_run_id": _STR,
        "flow_name": _STR,
        "task_name": _STR,
        "state_type": _STR,
        "state_name": _STR,
        "start_time": _TS,
        "end_time": _TS,
        "duration_s": _F64,
        "run_time_s": _F64,
        "run_count": _I64,
        "error_type": _STR,
        "error_message": _STR,
        "tags": _STRS,
        "rows": _I64,
        "source": _STR,
        "attempt_errors": _STRS,
    },
    time_column="start_time",
    run_id_column="task_run_id",
)

TRAINING_EPOCHS = Table(
    names.TRAINING_EPOCHS,
    {
        "time": _TS,
        "flow_run_id": _STR,
        "flow_name": _STR,
        "model_type": _STR,
        "epoch": _I64,
        "loss_type": _STR,
        "loss": _F64,
        "model_id": _STR,  # the model it belongs to (a ``models`` row); null when recorded by hand without one
        "epoch_seconds": _F64,  # how long that epoch took; ``time`` is when it ended
        "fit_id": _STR,  # the fit it belongs to (one ``models`` row): a model fitted twice, or copies of one, apart
    },
    time_column="time",
)

MODELS = Table(
    names.MODELS,
    {
        "time": _TS,  # when the fit ended
        "flow_run_id": _STR,
        "flow_name": _STR,
        "task_run_id": _STR,
        "model_id": _STR,  # carried to every epoch, sample and quality row of that fitted object
        "library": _STR,  # sdv, ctgan, synthcity
        "synthesizer": _STR,  # the class name, e.g. CTGANSynthesizer
        "model_type": _STR,  # e.g. ctgan, gaussian_copula
        "table_name": _STR,  # the table fitted on (multi-table: the tables, comma-separated)
        "parameters": _STR,  # JSON text of the hyperparameters (redacted)
        "fit_rows": _I64,
        "fit_columns": _I64,
        "fit_seconds": _F64,
        "epochs": _I64,  # epochs that ran (null for a model without epochs)
        "size_bytes": _I64,  # the fitted object pickled
        "status": _STR,  # completed, failed, stopped (a training gate with policy stop ended it early)
        "error_type": _STR,
        "final_losses": _STR,  # JSON {loss_type: last loss}
        "fit_id": _STR,  # this fit: SDV keeps a synthesizer's id when it is fitted again or copied
    },
    time_column="time",
)

QUALITY_CHECKS = Table(
    names.QUALITY_CHECKS,
    {
        "time": _TS,
        "flow_run_id": _STR,
        "flow_name": _STR,
        "table_name": _STR,
        "model_id": _STR,  # which model made the synthetic table (null: not said); never averaged across
        "model_type": _STR,
        "metric": _STR,
        "score": _F64,
        "threshold": _F64,
        "passed": _BOOL,
    },
    time_column="time",
)

GPU_SAMPLES = Table(
    names.GPU_SAMPLES,
    {
        "time": _TS,
        "host": _STR,
        "gpu_index": _I64,
        "gpu_uuid": _STR,
        "gpu_name": _STR,
        "utilization": _F64,
        "memory_used_bytes": _I64,
        "memory_total_bytes": _I64,
        "power_w": _F64,
        "temperature_c": _F64,
        "sm_clock_mhz": _I64,
        "energy_j": _F64,
        "flow_run_id": _STR,
        "flow_run_ids": _STRS,
    },
    time_column="time",
)

PRIVACY_LEDGER = Table(
    names.PRIVACY_LEDGER,
    {
        "time": _TS,
        "flow_run_id": _STR,
        "flow_name": _STR,
        "dataset": _STR,
        "epsilon": _F64,
        "spent": _F64,
        "budget": _F64,
        "remaining": _F64,
    },
    time_column="time",
)

TABLES: dict[str, Table] = {
    t.name: t for t in (FLOW_RUNS, TASK_RUNS, TRAINING_EPOCHS, QUALITY_CHECKS, GPU_SAMPLES, PRIVACY_LEDGER, MODELS)
}
"""Every health-store table by name."""


def table(name: str) -> Table:
    """The table called ``name``.

    Raises:
        ValueError: naming the known tables, for any other name.
    """
    try:
        return TABLES[name]
    except KeyError:
        known = ", ".join(sorted(TABLES))
        raise ValueError(f"unknown health-store table {name!r}; known tables: {known}") from None


def schema_for(name: str) -> pa.Schema:
    """The Arrow schema of the table called ``name`` (``ValueError`` for an unknown name)."""
    return table(name).schema
