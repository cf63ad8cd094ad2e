"""SDV metadata in, plain dicts out: what every score takes as ``metadata``.

The scores read SDV's metadata dicts. Callers hold them in several shapes:

- SDV single-table dicts: ``{"columns": {name: {"sdtype": ...}}, "primary_key": ...}``
  (``SingleTableMetadata.to_dict()``);
- SDV multi-table dicts: ``{"tables": {name: <single-table dict>}, "relationships":
  [{"parent_table_name", "parent_primary_key", "child_table_name",
  "child_foreign_key"}]}`` (``MultiTableMetadata.to_dict()`` in SDV 1.x, and the one
  ``Metadata`` class of SDV ≥ 1.17 and 2.0, whose ``to_dict()`` has the same shape
  with ``METADATA_SPEC_VERSION`` ``"V1"`` / ``"V2"``);
- the SDV objects themselves (anything with ``to_dict()``).

``single_table_metadata`` and ``multi_table_metadata`` turn any of these into the
dict the scores read, or raise a ``ValueError`` that says what is wrong. Keys may be
one column name or a list of names (a composite key), as in SDV.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

import pandas as pd

__all__ = ["multi_table_metadata", "single_table_metadata"]

RELATIONSHIP_KEYS = ("parent_table_name", "parent_primary_key", "child_table_name", "child_foreign_key")
_SINGLE_EXAMPLE = '{"columns": {"age": {"sdtype": "numerical"}, ...}}'
_MULTI_EXAMPLE = '{"tables": {"customers": {"columns": {...}, "primary_key": "id"}, ...}, "relationships": [...]}'


def _as_dict(metadata: Any, what: str) -> dict[str, Any]:
    """``metadata`` as a dict: a mapping as it is, an SDV object through its ``to_dict()``."""
    if isinstance(metadata, (pd.DataFrame, pd.Series)):
        raise ValueError(
            f"{what} metadata is a pandas {type(metadata).__name__}: pass the tables as real/synthetic and SDV "
            f"metadata (a dict or an SDV Metadata object) as metadata"
        )
    if isinstance(metadata, Mapping):
        return dict(metadata)
    to_dict = getattr(metadata, "to_dict", None)
    if callable(to_dict):
        out = to_dict()
        if isinstance(out, Mapping):
            return dict(out)
    raise ValueError(
        f"{what} metadata must be a dict like {_SINGLE_EXAMPLE if what == 'single-table' else _MULTI_EXAMPLE} "
        f"or an SDV metadata object (with to_dict()), got {type(metadata).__name__}"
    )


def _table(table: Any, label: str) -> dict[str, Any]:
    """One table's metadata, checked: a ``columns`` mapping whose entries each name an sdtype."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{label} must be a dict like {_SINGLE_EXAMPLE}, got {type(table).__name__}")
    columns = table.get("columns")
    if not isinstance(columns, Mapping):
        hint = " (SDV 0.x metadata with 'fields' is not supported: load it into SDV 1.x and use to_dict())"
        raise ValueError(f"{label} has no 'columns' mapping{hint if 'fields' in table else ''}")
    for name, meta in columns.items():
        sdtype = meta.get("sdtype") if isinstance(meta, Mapping) else None
        if not isinstance(sdtype, str):
            raise ValueError(f"{label}: column {name!r} has no sdtype")
    out = {k: v for k, v in table.items() if k != "METADATA_SPEC_VERSION"}
    out["columns"] = dict(columns)
    return out


def single_table_metadata(
    metadata: Any, *, table: str | None = None, prefer: str | None = None, columns: Any = None
) -> dict[str, Any]:
    """SDV single-table metadata as a dict (``{"columns": ..., "primary_key": ...}``).

    Takes a dict, an SDV ``SingleTableMetadata``, or SDV multi-table metadata (a dict or ``Metadata``):
    of that, the table named ``table``, else the table named ``prefer`` if there is one (``check_quality``'s
    table name), else the only table, else the one table whose columns are exactly ``columns`` (the real
    frame's, when a score is handed SDV's whole ``Metadata``).

    Raises:
        ValueError: Not metadata; multi-table metadata where no table is named, found or matches (the
            message names the tables); a table without ``columns`` or a column without ``sdtype``.

    Example:
        ```python
        single_table_metadata({"columns": {"age": {"sdtype": "numerical"}}})
        single_table_metadata(sdv_metadata)  # an SDV Metadata with one table
        single_table_metadata(sdv_metadata, table="orders")  # one table of several
        ```
    """
    data = _as_dict(metadata, "single-table")
    if "tables" not in data:
        return _table(data, "metadata")
    tables = data["tables"]
    if not isinstance(tables, Mapping) or not tables:
        raise ValueError("the metadata describes no table: pass SDV metadata with a table in 'tables'")
    if table is None and prefer is not None and prefer in tables:
        table = prefer
    if table is not None:
        if table not in tables:
            raise ValueError(f"the metadata has no table {table!r}; it has {', '.join(map(repr, tables))}")
        return _table(tables[table], f"metadata of table {table!r}")
    if len(tables) == 1:
        ((name, only),) = tables.items()
        return _table(only, f"metadata of table {name!r}")
    if columns is not None:
        wanted = {str(c) for c in columns}
        matches = [
            name
            for name, meta in tables.items()
            if isinstance(meta, Mapping)
            and isinstance(meta.get("columns"), Mapping)
            and {str(c) for c in meta["columns"]} == wanted
        ]
        if len(matches) == 1:
            return _table(tables[matches[0]], f"metadata of table {matches[0]!r}")
    raise ValueError(
        f"the metadata describes {len(tables)} tables ({', '.join(map(repr, tables))}) and none is named"
        f"{' or has exactly the real table' + chr(39) + 's columns' if columns is not None else ''}: name one "
        "(check_quality(..., table='orders')), pass metadata.to_dict()['tables'][name], or score every table "
        "with multi_table_quality_report / multi_table_diagnostic_report"
    )


P = ParamSpec("P")
R = TypeVar("R")


def accepts_sdv_metadata(fn: Callable[P, R]) -> Callable[P, R]:
    """Let a single-table score take SDV metadata objects (or SDV 2.0 metadata: its only table, or the
    table whose columns are the ``real`` frame's) as its ``metadata`` argument: they are turned into the
    dict it reads. A dict with ``columns``
    passes through untouched, so the score's own checks and messages stay as they are."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        bound = signature.bind_partial(*args, **kwargs)
        metadata = bound.arguments.get("metadata")
        if metadata is not None and (not isinstance(metadata, Mapping) or "tables" in metadata):
            real = bound.arguments.get("real")
            bound.arguments["metadata"] = single_table_metadata(
                metadata, columns=real.columns if isinstance(real, pd.DataFrame) else None
            )
            return fn(*bound.args, **bound.kwargs)
        return fn(*args, **kwargs)

    return wrapper


def key_columns(key: Any) -> list[str]:
    """A relationship key as a list of column names (one name, or a composite key's names)."""
    if isinstance(key, str):
        return [key]
    if isinstance(key, (list, tuple)) and key and all(isinstance(k, str) for k in key):
        return list(key)
    raise ValueError(f"a key must be a column name or a list of column names, got {key!r}")


def _relationship(rel: Any, tables: Mapping[str, Mapping[str, Any]], index: int) -> dict[str, Any]:
    if not isinstance(rel, Mapping):
        raise ValueError(f"relationship {index} must be a dict with {', '.join(RELATIONSHIP_KEYS)}")
    missing = [k for k in RELATIONSHIP_KEYS if k not in rel]
    if missing:
        raise ValueError(f"relationship {index} lacks {', '.join(missing)}")
    parent, child = rel["parent_table_name"], rel["child_table_name"]
    for role, name in (("parent", parent), ("child", child)):
        if name not in tables:
            raise ValueError(f"relationship {index} names {role} table {name!r}, which the metadata does not describe")
    if parent == child:
        raise ValueError(f"relationship {index}: table {parent!r} cannot be its own parent (SDV refuses it too)")
    pk, fk = key_columns(rel["parent_primary_key"]), key_columns(rel["child_foreign_key"])
    if len(pk) != len(fk):
        raise ValueError(
            f"relationship {parent} → {child}: the primary key {pk} and the foreign key {fk} differ in length"
        )
    for table, key in ((parent, pk), (child, fk)):
        unknown = [c for c in key if c not in tables[table]["columns"]]
        if unknown:
            raise ValueError(f"relationship {parent} → {child} names column(s) {unknown}, unknown in table {table!r}")
    out = dict(rel)
    for k in ("parent_primary_key", "child_foreign_key"):  # SDV also accepts tuples: lists, as SDMetrics reads them
        if isinstance(out[k], tuple):
            out[k] = list(out[k])
    return out


def multi_table_metadata(metadata: Any) -> dict[str, Any]:
    """SDV multi-table metadata as ``{"tables": {name: table}, "relationships": [...]}``.

    Takes a dict (SDV 1.x ``MultiTableMetadata.to_dict()`` form, or SDV ≥ 1.17 / 2.0
    ``Metadata.to_dict()``) or an SDV object with ``to_dict()``. Every relationship
    must name tables the metadata describes, and key columns those tables declare;
    primary and foreign key must have as many columns. ``METADATA_SPEC_VERSION`` is
    dropped.

    Raises:
        ValueError: Not metadata, single-table metadata, or a relationship naming an
            unknown table or column.

    Example:
        ```python
        meta = multi_table_metadata(sdv_metadata)
        meta["tables"]["orders"]["columns"], meta["relationships"]
        ```
    """
    data = _as_dict(metadata, "multi-table")
    tables = data.get("tables")
    if tables is None:
        if "columns" in data:
            raise ValueError(
                "this is single-table metadata (it has 'columns', no 'tables'): use quality_report / "
                'diagnostic_report for one table, or wrap it as {"tables": {"name": metadata}}'
            )
        raise ValueError(f"multi-table metadata must look like {_MULTI_EXAMPLE}")
    if not isinstance(tables, Mapping) or not tables:
        raise ValueError("the metadata's 'tables' must map table names to their metadata (and name at least one)")
    checked = {str(name): _table(table, f"metadata of table {name!r}") for name, table in tables.items()}
    relationships = data.get("relationships") or []
    if not isinstance(relationships, (list, tuple)):
        raise ValueError(f"the metadata's 'relationships' must be a list, got {type(relationships).__name__}")
    return {
        "tables": checked,
        "relationships": [_relationship(rel, checked, i) for i, rel in enumerate(relationships)],
    }
