"""Casting another writer's columns to a health table's types (pure).

Files other writers put in a table (pandas, Spark, DuckDB) may store a column
with another type: timestamps of another unit or zone, narrower numbers,
dictionary strings. ``conform`` casts what can be cast; ``never_castable``
tells from the types alone what never can (a number for a time, a struct for
a number), so such a file is skipped, never misread.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


class UncastableError(ValueError):
    """A file's column cannot be cast to the table's type (``rows`` stored as text, a struct for a number)."""


def _is_nested(kind: pa.DataType) -> bool:
    return bool(pa.types.is_nested(kind) or pa.types.is_union(kind))


def _is_list(kind: pa.DataType) -> bool:
    return bool(pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind))


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or str(kind) == "string_view")


def never_castable(found: pa.DataType, wanted: pa.DataType) -> bool:
    """Whether no value of type ``found`` can become ``wanted``, judged from the types alone (pure).

    A number is never taken for a time (its unit is unknown), a list never for a single value, a struct or map
    for nothing. Other differences (text holding numbers, a narrower integer, another time unit or zone)
    depend on the values or always cast.
    """
    if pa.types.is_dictionary(found):
        found = found.value_type
    if pa.types.is_null(found) or found == wanted:
        return False
    if pa.types.is_timestamp(wanted):
        return not (pa.types.is_timestamp(found) or pa.types.is_date(found) or _is_text(found))
    if _is_list(wanted):
        return not _is_list(found) or never_castable(found.value_type, wanted.value_type)
    return _is_nested(found)


def cast_column(values: pa.ChunkedArray | pa.Array, wanted: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """``values`` as type ``wanted``: the table's type for a column another writer stored differently (pure).

    Times of any unit and zone become the same instant in ``wanted``'s unit and zone; a time without a zone
    (pandas' and Spark's naive timestamps, Parquet INT96) is taken as UTC; nanoseconds are truncated to the
    table's microseconds. Floats become integers rounded (NaN: null); dictionary strings are decoded.

    Raises:
        UncastableError: Naming the types, when a value cannot be cast (``"abc"`` as a number, a struct).
    """
    found = values.type
    try:
        if never_castable(found, wanted):
            raise UncastableError(f"{found} cannot be cast to {wanted}")
        if pa.types.is_dictionary(found):
            values = values.cast(found.value_type)
            found = values.type
        if found == wanted:
            return values
        if pa.types.is_timestamp(wanted) and pa.types.is_timestamp(found):
            # a naive time is taken as UTC (Arrow keeps its wall-clock digits as the epoch value); a coarser
            # target unit truncates (ns to us), a finer one is checked for overflow
            finer = ["s", "ms", "us", "ns"].index(found.unit) > ["s", "ms", "us", "ns"].index(wanted.unit)
            return pc.cast(values, wanted, safe=not finer)
        if pa.types.is_timestamp(wanted) and _is_text(found):
            try:
                return pc.cast(values, wanted)  # ISO text with an offset
            except pa.ArrowInvalid:
                return pc.cast(pc.cast(values, pa.timestamp(wanted.unit)), wanted)  # without one: UTC
        if pa.types.is_integer(wanted) and pa.types.is_floating(found):
            finite = pc.is_finite(values)
            values = pc.if_else(finite, pc.round(values), pa.scalar(None, found))
        return pc.cast(values, wanted)
    except UncastableError:
        raise
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise UncastableError(f"{found} cannot be cast to {wanted}: {exc}") from None


def conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """``data`` with exactly ``schema``'s columns and types: each cast (``cast_column``), a missing one null,
    an unknown one dropped (pure).

    Raises:
        UncastableError: Naming the first column that cannot be cast.
    """
    columns = []
    for field in schema:
        if field.name not in data.column_names:
            columns.append(pa.nulls(data.num_rows, field.type))
            continue
        values = data[field.name]
        if values.type != field.type:
            try:
                values = cast_column(values, field.type)
            except UncastableError as exc:
                raise UncastableError(f"column {field.name!r}: {exc}") from None
        columns.append(values)
    return pa.Table.from_arrays(columns, schema=schema)
