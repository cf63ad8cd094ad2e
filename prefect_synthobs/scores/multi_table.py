"""SDMetrics' multi-table Quality and Diagnostic reports, without SDMetrics.

``multi_table_quality_report(real, synthetic, metadata)`` and
``multi_table_diagnostic_report(real, synthetic, metadata)`` take dicts of
``{table name: DataFrame}`` and SDV multi-table metadata (a dict or an SDV
``Metadata`` object), and return a ``MultiTableReport``:

- Quality: **Column Shapes**, **Column Pair Trends** (each table's single-table
  report), **Cardinality** (children per parent row, real vs synthetic) and
  **Intertable Trends** (parent column × child column pairs over the joined rows);
- Diagnostic: **Data Validity**, **Data Structure** (each table's) and
  **Relationship Validity** (referential integrity and cardinality bounds).

A property is the mean of its details' scores (for the trends: of the pairs whose
real correlation or association passes SDMetrics' thresholds), over all tables
together, NaN when no score is left; ``overall`` is the mean of the properties that
are not NaN. The numbers equal SDMetrics 0.29 and 0.32 (tests/reference), except
where SDMetrics' own are accidents:

- contingency pairs of tables over 50,000 rows: SDMetrics scores a random (unseeded)
  50,000-row sample, these use every row (deterministic);
- a table with no rows, or a relationship no child row joins: NaN scores with an
  ``Error`` where SDMetrics reports artefacts (a contingency similarity of 0.5
  against no rows; a parent table with no rows counted from its child keys);
- a datetime column is binned in nanoseconds whatever its unit (SDMetrics bins it in
  its own unit, so a constant ``datetime64[s]`` column bins there and fails here);
- ``ordinal`` columns are scored as categorical, as 0.32 does (0.29 leaves them out);
- the Diagnostic report's datetime-format check is 0.32's (0.29 has none);
- real and synthetic datetimes of different units (``datetime64[s]`` vs ``[ms]``) are
  compared as instants; SDMetrics compares their raw integers (a score of 0.0);
- a ``pd.Categorical`` column whose real and synthetic categories differ (unused or
  reordered categories) is scored in its column pairs; SDMetrics' pairs with it error (NaN);
- children per parent of a composite key are counted by merge (SDMetrics' join loses
  rows with missing key values under pandas 3; see ``relationships``): the same
  numbers as SDMetrics under pandas 2, except where its are accidents (object columns
  of integers with ``None``: Cardinality 0.30 there, 0.90 true; numeric composite keys,
  whose Cardinality Boundary Adherence raises there and scores here).

Timezone-aware datetimes are scored as their UTC instants, as SDMetrics does. Key
columns of mixed types (an object column holding 3 and "3") are refused with a
``ValueError``, as SDMetrics refuses them.

Table columns the metadata does not describe are left out (the Data Structure
property still counts them); a table or column the metadata names must be in both
dicts.

Example:
    ```python
    from prefect_synthobs.quality import multi_table_quality_report

    report = multi_table_quality_report(
        {"customers": customers, "orders": orders}, {"customers": syn_customers, "orders": syn_orders}, metadata
    )
    report.overall, report.properties["Cardinality"], report.tables["orders"]
    ```
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prefect_synthobs.scores.diagnostic import DATA_STRUCTURE, DATA_VALIDITY
from prefect_synthobs.scores.fidelity import DEFAULT_REAL_ASSOCIATION_THRESHOLD, DEFAULT_REAL_CORRELATION_THRESHOLD
from prefect_synthobs.scores.metadata import key_columns, multi_table_metadata
from prefect_synthobs.scores.multi_table_diagnostic import (
    RELATIONSHIP_VALIDITY,
    relationship_details,
    table_validity,
)
from prefect_synthobs.scores.multi_table_quality import (
    CARDINALITY,
    COLUMN_PAIR_TRENDS,
    COLUMN_SHAPES,
    INTERTABLE_TRENDS,
    cardinality_details,
    converted_tables,
    intertable_details,
    table_properties,
    thresholded_mean,
    tidy,
)

__all__ = ["MultiTableReport", "multi_table_diagnostic_report", "multi_table_quality_report"]

QUALITY_PROPERTIES = (COLUMN_SHAPES, COLUMN_PAIR_TRENDS, CARDINALITY, INTERTABLE_TRENDS)
DIAGNOSTIC_PROPERTIES = (DATA_VALIDITY, DATA_STRUCTURE, RELATIONSHIP_VALIDITY)
_RELATIONAL = (CARDINALITY, INTERTABLE_TRENDS, RELATIONSHIP_VALIDITY)


@dataclass
class MultiTableReport:
    """Result of ``multi_table_quality_report`` / ``multi_table_diagnostic_report``.

    Attributes:
        overall: Mean of the property scores that are not NaN (NaN if none is left).
        properties: Property name (SDMetrics' names) -> score, NaN when nothing
            counted (e.g. no column pair passed the relevance thresholds, or no
            relationship).
        details: Property name -> its rows, as SDMetrics' ``get_details(property)``:
            a ``Table`` column for per-table properties, ``Parent Table`` / ``Child
            Table`` / ``Foreign Key`` for relationship ones; ``Error`` only when a
            row has one.
        tables: Table name -> property name -> that table's score: the mean over its
            own rows (a relationship's rows count for its parent and its child;
            NaN when none applies), as SDMetrics' per-table views average them.
    """

    overall: float
    properties: dict[str, float]
    details: dict[str, pd.DataFrame] = field(repr=False)
    tables: dict[str, dict[str, float]] = field(default_factory=dict)

    def table_details(self, prop: str, table: str) -> pd.DataFrame:
        """The rows of ``prop`` that concern ``table`` (SDMetrics' ``get_details(prop, table)``)."""
        if prop not in self.details:
            raise ValueError(f"unknown property {prop!r}; known: {', '.join(self.details)}")
        if table not in self.tables:
            raise ValueError(f"unknown table {table!r}; known: {', '.join(self.tables)}")
        return _rows_of(self.details[prop], table)


def _rows_of(details: pd.DataFrame, table: str) -> pd.DataFrame:
    """SDMetrics' per-table rows: ``Table`` is the table, or the table is the relationship's parent or child."""
    if "Table" in details.columns:
        mine = details["Table"] == table
    elif "Parent Table" in details.columns:
        mine = (details["Parent Table"] == table) | (details["Child Table"] == table)
    else:
        mine = pd.Series(False, index=details.index)
    out: pd.DataFrame = details.loc[mine.to_numpy(dtype=bool)]
    return out


def _frames(value: Any, label: str, fn: str) -> dict[str, pd.DataFrame]:
    if isinstance(value, pd.DataFrame):
        single = "quality_report" if "quality" in fn else "diagnostic_report"
        raise ValueError(
            f"{fn} takes dicts of {{table name: DataFrame}}; the {label} data is one DataFrame "
            f"(for one table use {single})"
        )
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{fn}: the {label} data must be a dict of {{table name: DataFrame}}, got {type(value).__name__}"
        )
    for name, df in value.items():
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"{fn}: the {label} table {name!r} is a {type(df).__name__}, not a DataFrame")
    return {str(k): v for k, v in value.items()}


_NUMBER_KINDS = ("integer", "floating", "mixed-integer-float", "decimal", "integer-na")
_MIXED_KINDS = ("mixed", "mixed-integer")


def _key_kind(series: pd.Series) -> str | None:
    """``"text"``, ``"number"``, ``"mixed"`` (an object column holding, say, 3 and "3"), or
    None (empty, other: left to the join itself)."""
    if pd.api.types.is_object_dtype(series):
        kind = pd.api.types.infer_dtype(series, skipna=True)
        if kind in _MIXED_KINDS:
            return "mixed"
        return "text" if kind in ("string", "bytes") else "number" if kind in _NUMBER_KINDS else None
    if pd.api.types.is_string_dtype(series):
        return "text"
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return "number"
    return None


def _inputs(
    real: Any, synthetic: Any, metadata: Any, fn: str
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], dict[str, Any]]:
    """The data and metadata, checked: every described table and column, every key column, in both dicts."""
    real_tables, syn_tables = _frames(real, "real", fn), _frames(synthetic, "synthetic", fn)
    meta = multi_table_metadata(metadata)
    for label, tables in (("real", real_tables), ("synthetic", syn_tables)):
        missing = [t for t in meta["tables"] if t not in tables]
        if missing:
            raise ValueError(f"table(s) {missing} are in the metadata but missing from the {label} data")
        extra = [t for t in tables if t not in meta["tables"]]
        if extra:
            raise ValueError(f"table(s) {extra} of the {label} data are not in the metadata")
        for name, table_meta in meta["tables"].items():
            absent = [c for c in table_meta["columns"] if c not in tables[name].columns]
            if absent:
                raise ValueError(f"metadata names column(s) {absent} of table {name!r}, missing from the {label} data")
        for rel in meta["relationships"]:
            parent, child = rel["parent_table_name"], rel["child_table_name"]
            pk, fk = key_columns(rel["parent_primary_key"]), key_columns(rel["child_foreign_key"])
            for p, c in zip(pk, fk, strict=True):
                for table, column in ((parent, p), (child, c)):
                    if _key_kind(tables[table][column]) == "mixed":
                        raise ValueError(
                            f"the {label} key column {table!r}.{column} mixes types (e.g. 3 and '3'), which joins "
                            "nothing to nothing silently; give it one type (SDMetrics refuses it too)"
                        )
                if {_key_kind(tables[parent][p]), _key_kind(tables[child][c])} == {"text", "number"}:
                    raise ValueError(
                        f"the {label} {parent!r}.{p} and {child!r}.{c} cannot be joined: one holds text, the other "
                        f"numbers ({tables[parent][p].dtype} vs {tables[child][c].dtype}); give them the same type"
                    )
    return real_tables, syn_tables, meta


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        empty: pd.DataFrame = pd.DataFrame()
        return empty
    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    # a table without rows adds none, but would turn every column to object (pandas 3; pandas 2 warns)
    frames = [f for f in frames if len(f)] or frames[:1]
    out: pd.DataFrame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    out = out if list(out.columns) == columns else out.reindex(columns=columns)
    return tidy(out)


def _report(details: dict[str, pd.DataFrame], table_names: list[str]) -> MultiTableReport:
    properties = {prop: thresholded_mean(rows) for prop, rows in details.items()}
    finite = [v for v in properties.values() if not math.isnan(v)]
    overall = float(np.mean(finite)) if finite else math.nan
    tables = {t: {prop: thresholded_mean(_rows_of(rows, t)) for prop, rows in details.items()} for t in table_names}
    return MultiTableReport(overall, properties, details, tables)


def multi_table_quality_report(
    real: Mapping[str, pd.DataFrame],
    synthetic: Mapping[str, pd.DataFrame],
    metadata: Any,
    *,
    real_correlation_threshold: float = DEFAULT_REAL_CORRELATION_THRESHOLD,
    real_association_threshold: float = DEFAULT_REAL_ASSOCIATION_THRESHOLD,
) -> MultiTableReport:
    """SDMetrics' multi-table Quality report: Column Shapes, Column Pair Trends, Cardinality, Intertable Trends.

    Args:
        real: ``{table name: DataFrame}`` of the real data.
        synthetic: The same tables, synthetic.
        metadata: SDV multi-table metadata: a dict ``{"tables": {...}, "relationships": [...]}``
            or an SDV ``Metadata`` / ``MultiTableMetadata`` object.
        real_correlation_threshold: A continuous pair counts only if its real |Pearson| is above it.
        real_association_threshold: Another pair counts only if its real Cramér's V is above it
            (0 and 0: every pair counts, SDMetrics < 0.27).

    Returns:
        The overall score, the four property scores, their details and each table's scores.

    Raises:
        ValueError: Data that is not dicts of DataFrames, a table or column the metadata
            names missing from the data, a table the metadata does not describe, a
            relationship naming an unknown table or column, keys of different kinds
            (text vs numbers), a key column of mixed types (3 and "3"), or a column
            that does not hold its sdtype's values.

    Example:
        ```python
        report = multi_table_quality_report(real, synthetic, metadata)
        report.properties["Intertable Trends"], report.details["Cardinality"]
        ```
    """
    fn = "multi_table_quality_report"
    real_tables, syn_tables, meta = _inputs(real, synthetic, metadata, fn)
    for name, value in (
        ("real_correlation_threshold", real_correlation_threshold),
        ("real_association_threshold", real_association_threshold),
    ):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    thresholds = (real_correlation_threshold, real_association_threshold)
    real_tables, syn_tables = converted_tables(real_tables, syn_tables, meta["tables"])
    shapes, trends = [], []
    for name, table_meta in meta["tables"].items():
        s, t = table_properties(name, real_tables[name], syn_tables[name], table_meta["columns"], thresholds)
        shapes.append(s)
        trends.append(t)
    details = {
        COLUMN_SHAPES: _concat(shapes),
        COLUMN_PAIR_TRENDS: _concat(trends),
        CARDINALITY: cardinality_details(real_tables, syn_tables, meta["relationships"]),
        INTERTABLE_TRENDS: intertable_details(real_tables, syn_tables, meta, thresholds),
    }
    return _report(details, list(meta["tables"]))


def multi_table_diagnostic_report(
    real: Mapping[str, pd.DataFrame], synthetic: Mapping[str, pd.DataFrame], metadata: Any
) -> MultiTableReport:
    """SDMetrics' multi-table Diagnostic report: Data Validity, Data Structure, Relationship Validity.

    Args:
        real: ``{table name: DataFrame}`` of the real data.
        synthetic: The same tables, synthetic.
        metadata: SDV multi-table metadata (dict or SDV object), as for
            ``multi_table_quality_report``.

    Returns:
        The overall score, the three property scores, their details and each table's scores.

    Raises:
        ValueError: As ``multi_table_quality_report``.

    Example:
        ```python
        report = multi_table_diagnostic_report(real, synthetic, metadata)
        report.details["Relationship Validity"]  # ReferentialIntegrity, CardinalityBoundaryAdherence per relationship
        ```
    """
    real_tables, syn_tables, meta = _inputs(real, synthetic, metadata, "multi_table_diagnostic_report")
    validity, structure = [], []
    for name, table_meta in meta["tables"].items():
        rows, row = table_validity(name, real_tables[name], syn_tables[name], table_meta)
        validity.append(rows)
        structure.append(row)
    details = {
        DATA_VALIDITY: _concat(validity),
        DATA_STRUCTURE: pd.DataFrame(structure, columns=["Table", "Metric", "Score"]),
        RELATIONSHIP_VALIDITY: relationship_details(real_tables, syn_tables, meta["relationships"]),
    }
    return _report(details, list(meta["tables"]))
