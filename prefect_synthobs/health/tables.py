"""The health-store tables: each table's name, columns, time column and the event it records.

A table of an event (``Table.of``) takes its columns from that event's
:func:`~prefect_synthobs.health.events.column` fields (``health/events.py``,
where each column and its Arrow type are written once); ``gpu_samples``, built
by the GPU sampler from its readings, lists its own here. Everything else
derives from a :class:`Table`: the Arrow schema the store writes and reads with
(``Table.schema``), the row every builder returns (``Table.row`` checks the
columns and adds the ``event_id``), the date partition (``Table.time_column``)
and the columns the health report reads (``Table.select``). A column added
later reads as null in files written before it existed.
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
from prefect_synthobs.health import events

Row = dict[str, Any]

PARTITION_COLUMN = "date"
"""The hive partition column: ``date=YYYY-MM-DD`` of the table's time column."""

SOURCE_HOOK = events.SOURCE_HOOK
SOURCE_API = events.SOURCE_API

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
    event: type | None = None
    """The event type whose :func:`~prefect_synthobs.health.events.column` fields are the columns."""
    _value_names: frozenset[str] = field(init=False, repr=False, compare=False)

    @classmethod
    def of(cls, name: str, event: type, *, time_column: str, run_id_column: str | None = None) -> Table:
        """The table of an event type: its columns are the event's column fields, in field order."""
        specs = events.columns_of(event)
        return cls(name, {k: v.arrow for k, v in specs.items()}, time_column, run_id_column, event)

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


_TS, _STR, _F64, _I64, _STRS = events.TIMESTAMP, events.STRING, events.FLOAT, events.INT, events.STRINGS

FLOW_RUNS = Table.of(names.FLOW_RUNS, events.FlowRunEnded, time_column="start_time", run_id_column="flow_run_id")
TASK_RUNS = Table.of(names.TASK_RUNS, events.TaskRunEnded, time_column="start_time", run_id_column="task_run_id")
TRAINING_EPOCHS = Table.of(names.TRAINING_EPOCHS, events.EpochEnded, time_column="time")
MODELS = Table.of(names.MODELS, events.ModelFitted, time_column="time")
QUALITY_CHECKS = Table.of(names.QUALITY_CHECKS, events.QualityChecked, time_column="time")
PRIVACY_LEDGER = Table.of(names.PRIVACY_LEDGER, events.PrivacyChecked, time_column="time")

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


TABLE_OF_EVENT: dict[type, Table] = {t.event: t for t in TABLES.values() if t.event is not None}
"""The table each event type with columns is recorded in."""


def schema_for(name: str) -> pa.Schema:
    """The Arrow schema of the table called ``name`` (``ValueError`` for an unknown name)."""
    return table(name).schema
