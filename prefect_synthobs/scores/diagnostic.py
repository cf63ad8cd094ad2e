"""SDMetrics' single-table Diagnostic report, pure pandas/numpy.

Two properties, as SDMetrics 0.32 computes them:

- **Data Validity**: per column, ``boundary_adherence`` (numerical, datetime),
  ``category_adherence`` (categorical, ordinal, boolean), ``key_uniqueness``
  (the primary key and alternate keys), and the share of synthetic values
  matching the column's ``datetime_format`` where the metadata gives one and
  the synthetic column is text (a datetime column has no format: no score,
  as SDMetrics). The property is the mean of the scores (NaN left out).
- **Data Structure**: the share of (column name, dtype) pairs the two tables
  share, of all the pairs either has.

``overall`` is the mean of the two (NaN left out). SDMetrics 0.29 has no
datetime-format check; on datetime-typed data both versions give the same
numbers (tests/reference compares with both).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prefect_synthobs.scores.columns import boundary_adherence, category_adherence, key_uniqueness
from prefect_synthobs.scores.metadata import accepts_sdv_metadata

__all__ = ["DiagnosticReport", "datetime_format_adherence", "diagnostic_report", "table_structure"]

DATA_VALIDITY = "Data Validity"
DATA_STRUCTURE = "Data Structure"


@dataclass
class DiagnosticReport:
    """Result of ``diagnostic_report``.

    Attributes:
        overall: Mean of the two property scores (NaN ones left out).
        properties: ``{"Data Validity": float, "Data Structure": float}``.
        details: One row per check: Column, Metric, Score (and Error where a
            check failed), as SDMetrics' ``get_details("Data Validity")``.
    """

    overall: float
    properties: dict[str, float]
    details: pd.DataFrame = field(repr=False)


def table_structure(real: pd.DataFrame, synthetic: pd.DataFrame) -> float:
    """Share of (column, dtype) pairs the tables share, of all pairs in either (SDMetrics' TableStructure)."""
    ours = set(zip(real.columns, map(str, real.dtypes), strict=True))
    theirs = set(zip(synthetic.columns, map(str, synthetic.dtypes), strict=True))
    union = ours | theirs
    return len(ours & theirs) / len(union) if union else math.nan


def datetime_format_adherence(synthetic: pd.Series, datetime_format: str) -> float:
    """Share of synthetic values (text) that parse with ``datetime_format``; missing values count as valid.

    NaN for a column that is already of datetime type (it has no format), as SDMetrics.
    """
    if pd.api.types.is_datetime64_any_dtype(synthetic):
        return math.nan
    if not isinstance(datetime_format, str) or "%" not in datetime_format:
        raise ValueError(f"invalid datetime format {datetime_format!r}")
    if len(synthetic) == 0:
        return math.nan
    fmt = datetime_format.replace("%-", "%")
    parsed = pd.to_datetime(synthetic, errors="coerce", format=fmt, utc="%z" in fmt.lower())
    return float((synthetic.isna() | parsed.notna()).sum() / len(synthetic))


def _keys(metadata: Mapping[str, Any]) -> tuple[list[str] | str | None, list[str]]:
    primary = metadata.get("primary_key")
    if isinstance(primary, (list, tuple)) and len(primary) == 1:
        primary = primary[0]
    alternate: list[str] = []
    for key in metadata.get("alternate_keys") or []:
        alternate.extend(key if isinstance(key, (list, tuple)) else [key])
    return (list(primary) if isinstance(primary, (list, tuple)) else primary), alternate


def _check(fn: Any, *args: Any) -> tuple[float, str | None]:
    try:
        return float(fn(*args)), None
    except Exception as exc:  # reported per check, as SDMetrics does
        return math.nan, f"{type(exc).__name__}: {exc}"


def _converted(
    real: pd.DataFrame, synthetic: pd.DataFrame, columns: Mapping[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tables with their text datetime columns parsed with the column's ``datetime_format``.

    As SDMetrics' report: the real column first, then the synthetic one; when
    the synthetic one does not parse, the real one stays converted (and the
    checks of that column report an error).
    """
    tables = [real, synthetic]
    copied = [False, False]  # copy a table only when one of its columns is converted
    for name, meta in columns.items():
        if not isinstance(meta, Mapping) or meta.get("sdtype") != "datetime":
            continue
        for i in (0, 1):
            if pd.api.types.is_datetime64_any_dtype(tables[i][name]):
                continue
            fmt = meta.get("datetime_format")
            try:
                if fmt is None:
                    raise ValueError(f"datetime column {name!r} has no datetime_format")
                parsed = pd.to_datetime(tables[i][name], format=fmt)
            except (ValueError, TypeError):
                break
            if not copied[i]:
                tables[i], copied[i] = tables[i].copy(), True
            tables[i][name] = parsed
    return tables[0], tables[1]


def _boundary(real: pd.Series, synthetic: pd.Series) -> float:
    if pd.api.types.is_datetime64_any_dtype(real) != pd.api.types.is_datetime64_any_dtype(synthetic):
        raise ValueError("the real and synthetic columns are not both datetimes (a value did not parse)")
    return boundary_adherence(real, synthetic)


@accepts_sdv_metadata
def diagnostic_report(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: Mapping[str, Any]) -> DiagnosticReport:
    """SDMetrics' single-table Diagnostic report: Data Validity and Data Structure.

    Args:
        real: The real table.
        synthetic: The synthetic table.
        metadata: SDV single-table metadata: ``{"columns": {name: {"sdtype": ...}},
            "primary_key": name}`` (``alternate_keys``, ``sequence_index`` and a
            datetime column's ``datetime_format`` are honoured too).

    Returns:
        The overall score, the two property scores and one row per check.

    Raises:
        ValueError: The tables are not DataFrames, or the metadata names a
            column missing from either table.

    Example:
        ```python
        report = diagnostic_report(real, synthetic, {"columns": {...}, "primary_key": "id"})
        report.properties["Data Validity"]
        ```
    """
    if not isinstance(real, pd.DataFrame) or not isinstance(synthetic, pd.DataFrame):
        raise ValueError("diagnostic_report takes a real and a synthetic DataFrame")
    columns = metadata.get("columns") if isinstance(metadata, Mapping) else None
    if not isinstance(columns, Mapping):
        raise ValueError('metadata must look like {"columns": {"age": {"sdtype": "numerical"}, ...}}')
    for name in columns:
        for label, df in (("real", real), ("synthetic", synthetic)):
            if name not in df.columns:
                raise ValueError(f"metadata names column {name!r}, missing from the {label} data")
    primary, alternate = _keys(metadata)
    sequence_index = metadata.get("sequence_index")
    original = synthetic
    real, synthetic = _converted(real, synthetic, columns)
    rows: list[tuple[Any, str, float, str | None]] = []
    if isinstance(primary, list) and len(primary) > 1:  # a composite key is checked as one
        rows.append((primary, "KeyUniqueness", *_check(key_uniqueness, real[primary], synthetic[primary])))
    for name, meta in columns.items():
        sdtype = meta.get("sdtype") if isinstance(meta, Mapping) else None
        unique = name == primary or name in alternate
        if sdtype in ("numerical", "datetime"):
            if name == sequence_index:
                continue
            rows.append((name, "BoundaryAdherence", *_check(_boundary, real[name], synthetic[name])))
            fmt = meta.get("datetime_format")
            if sdtype == "datetime" and fmt is not None:  # on the column as given, before parsing
                score = _check(datetime_format_adherence, original[name], fmt)
                rows.append((name, "DatetimeFormatAdherence", *score))
        elif sdtype in ("categorical", "ordinal", "boolean"):
            rows.append((name, "CategoryAdherence", *_check(category_adherence, real[name], synthetic[name])))
        if unique and sdtype not in ("numerical", "datetime", "categorical", "ordinal", "boolean"):
            rows.append((name, "KeyUniqueness", *_check(key_uniqueness, real[name], synthetic[name])))
    details = pd.DataFrame(rows, columns=["Column", "Metric", "Score", "Error"])
    if details["Error"].isna().all():
        details = details.drop(columns="Error")
    validity = float(details["Score"].mean()) if len(details) else math.nan
    structure = _check(table_structure, real, synthetic)[0]
    properties = {DATA_VALIDITY: validity, DATA_STRUCTURE: structure}
    finite = [v for v in properties.values() if not math.isnan(v)]
    return DiagnosticReport(float(np.mean(finite)) if finite else math.nan, properties, details)
