"""Reference values for the multi-table Quality and Diagnostic reports, from SDMetrics.

Runs in a venv with SDMetrics (it pins pandas<3):

    /tmp/sdm032/bin/python tests/reference/ref_multi_table.py   # sdmetrics 0.32
    /tmp/sdm029/bin/python tests/reference/ref_multi_table.py   # sdmetrics 0.29

It makes the datasets (seeded, ``multi_table_datasets.py``), writes them as CSV under ``datasets/multi/<dataset>/``
(floats with 17 significant digits, so they read back bit for bit), reads them back
with ``load`` (what the tests use) and writes ``multi_table_sdmetrics_<major>_<minor>.json``
next to this file: per dataset the metadata, and per report the overall score, the
property scores, each property's details and each table's property scores.

The datasets:

- ``shop``: customers → orders, customers → tickets, and a ``stores`` table in no
  relationship. Customers without orders, orphan foreign keys in the synthetic
  orders, missing foreign keys (real orders, synthetic tickets), a duplicated
  synthetic primary key, NaNs, datetimes, booleans, a category seen only in the
  synthetic data; strong pairs (|r| > 0.5, Cramér's V > 0.3) and weak ones that
  SDMetrics' thresholds leave out, within tables and across relationships.
- ``chain``: users → sessions → events (a depth-2 chain, text keys), every column
  independent of the others: no pair passes the thresholds, so Column Pair Trends
  and Intertable Trends are NaN and left out of the overall score.
- ``composite``: a two-column primary key referenced by a two-column foreign key.
- ``composite_nan``: a two-column text key whose child columns have missing values
  (and synthetic orphans); pandas 3's MultiIndex join loses those rows, the reports
  count by merge and equal SDMetrics under pandas 2.
- ``shop_text``: ``shop`` with two of its datetime columns as text (``text_dates``).
- ``shop_constant``: ``shop`` with a constant synthetic datetime column (``constant_dates``).
- ``shop_tz``: ``shop`` with timezone-aware datetime columns (``aware_dates``): UTC, and
  Europe/Paris in the real vs America/New_York in the synthetic data (instants compared).

With SDMetrics 0.32 the unified ``sdmetrics.reports.QualityReport`` /
``DiagnosticReport`` are run too, and the script fails if they disagree with the
``multi_table`` ones.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from multi_table_datasets import DATETIME_FORMAT, Tables, datasets  # noqa: E402

DATA = HERE / "datasets" / "multi"

QUALITY = ("Column Shapes", "Column Pair Trends", "Cardinality", "Intertable Trends")
DIAGNOSTIC = ("Data Validity", "Data Structure", "Relationship Validity")


# -- reading ---------------------------------------------------------------------------


def _typed(df: pd.DataFrame, columns: dict[str, Any]) -> pd.DataFrame:
    """A table read as text, typed from its column metadata (as ``sdmetrics_reference.load``)."""
    for column, meta in columns.items():
        values = df[column]
        sdtype = meta["sdtype"]
        if sdtype == "numerical":
            df[column] = pd.to_numeric(values).astype("float64")
        elif sdtype == "id":
            try:
                df[column] = pd.to_numeric(values).astype("Int64").astype(object)
            except (TypeError, ValueError):  # text keys
                df[column] = values.astype(object)
        elif sdtype == "datetime":
            df[column] = pd.to_datetime(values, format=DATETIME_FORMAT)
        elif sdtype == "boolean":
            df[column] = values.map({"True": True, "False": False}).astype(object)
        else:
            df[column] = values.astype(object)
    return df


def load(name: str, metadata: dict[str, Any]) -> tuple[Tables, Tables]:
    """The (real, synthetic) tables of dataset ``name``, typed from ``metadata``."""
    out: list[Tables] = [{}, {}]
    for table, table_meta in metadata["tables"].items():
        for i, part in enumerate(("real", "synthetic")):
            df = pd.read_csv(DATA / name / f"{table}_{part}.csv", keep_default_na=False, na_values=[""], dtype=str)
            out[i][table] = _typed(df, table_meta["columns"])
    return out[0], out[1]


TEXT_DATES = {"customers": "signup", "orders": "ordered_at"}


def text_dates(real: Tables, synthetic: Tables) -> tuple[Tables, Tables]:
    """``shop_text``: ``shop`` with two datetime columns as text (the reports parse them with the
    column's ``datetime_format`` before scoring)."""
    out: list[Tables] = []
    for tables in (real, synthetic):
        tables = dict(tables)
        for table, column in TEXT_DATES.items():
            df = tables[table].copy()
            text = df[column].dt.strftime(DATETIME_FORMAT).astype(object)
            df[column] = text.where(df[column].notna(), None)
            tables[table] = df
        out.append(tables)
    return out[0], out[1]


def constant_dates(real: Tables, synthetic: Tables) -> tuple[Tables, Tables]:
    """``shop_constant``: ``shop`` whose synthetic tickets were all opened at one time (such a
    column cannot be cut into bins: its pairs with discrete columns report an error)."""
    # the unit read from CSV (ns in pandas 2): SDMetrics bins a datetime in its unit, a constant in seconds it can bin
    when = pd.Series(pd.Timestamp("2024-07-01 12:00:00"), index=synthetic["tickets"].index)
    when = when.astype(synthetic["tickets"]["opened_at"].dtype)
    tickets = synthetic["tickets"].assign(opened_at=when)
    return real, {**synthetic, "tickets": tickets}


def aware_dates(real: Tables, synthetic: Tables) -> tuple[Tables, Tables]:
    """``shop_tz``: ``shop`` with timezone-aware datetimes (SDMetrics scores their UTC instants):
    customers' signup in UTC; orders' ordered_at read as UTC and shown in Europe/Paris (real) or
    America/New_York (synthetic), so the wall clocks differ but the instants are ``shop``'s."""
    out: list[Tables] = []
    for tables, zone in ((real, "Europe/Paris"), (synthetic, "America/New_York")):
        customers = tables["customers"].assign(signup=tables["customers"]["signup"].dt.tz_localize("UTC"))
        ordered = tables["orders"]["ordered_at"].dt.tz_localize("UTC").dt.tz_convert(zone)
        out.append({**tables, "customers": customers, "orders": tables["orders"].assign(ordered_at=ordered)})
    return out[0], out[1]


VARIANTS = {"shop_text": text_dates, "shop_constant": constant_dates, "shop_tz": aware_dates}


def frames(name: str, metadata: dict[str, Any]) -> tuple[Tables, Tables]:
    """The (real, synthetic) tables of a recorded dataset (those in ``VARIANTS`` are variants of ``shop``)."""
    if name in VARIANTS:
        return VARIANTS[name](*load("shop", metadata))
    return load(name, metadata)


def reference(version: str) -> dict[str, Any]:
    """The recorded SDMetrics values of ``version`` (``"0_29"`` or ``"0_32"``)."""
    data: dict[str, Any] = json.loads((HERE / f"multi_table_sdmetrics_{version}.json").read_text())
    return data


def write(name: str, real: Tables, synthetic: Tables) -> None:
    """Write a dataset's CSVs (what ``load`` reads back)."""
    folder = DATA / name
    folder.mkdir(parents=True, exist_ok=True)
    for part, tables in (("real", real), ("synthetic", synthetic)):
        for table, df in tables.items():
            out = df.copy()
            for column in out.columns:
                if pd.api.types.is_datetime64_any_dtype(out[column]):
                    out[column] = out[column].dt.strftime(DATETIME_FORMAT)
            out.to_csv(folder / f"{table}_{part}.csv", index=False, float_format="%.17g")


# -- SDMetrics' numbers ----------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-able value: NaN and None as None, numpy scalars as Python ones, tuples as lists."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def _records(details: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _plain(v) for k, v in row.items()} for row in details.to_dict("records")]


def _mean(details: pd.DataFrame) -> float | None:
    if "Score" not in details.columns or details.empty:
        return None
    if "Meets Threshold?" in details.columns:
        details = details[details["Meets Threshold?"].astype("boolean").fillna(False)]
    return _plain(details["Score"].mean())  # type: ignore[no-any-return]


def _report(report: Any, properties: tuple[str, ...], metadata: dict[str, Any]) -> dict[str, Any]:
    props = report.get_properties()
    out: dict[str, Any] = {
        "overall": _plain(report.get_score()),
        # the unified 0.32 DiagnosticReport lists "Constraint Validity" too (NaN: skipped without constraints)
        "properties": {p: _plain(s) for p, s in zip(props["Property"], props["Score"], strict=True) if p in properties},
        "details": {},
        "tables": {},
    }
    for prop in properties:
        out["details"][prop] = _records(report.get_details(prop))
    for table in metadata["tables"]:
        # a table's score: its own rows of each property (a relationship's rows count for parent and child)
        out["tables"][table] = {prop: _mean(report.get_details(prop, table)) for prop in properties}
    return out


def scores(real: Tables, synthetic: Tables, metadata: dict[str, Any]) -> dict[str, Any]:
    """SDMetrics' multi-table Quality and Diagnostic reports (and, from 0.32, the unified ones)."""
    import sdmetrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sdmetrics.reports.multi_table import DiagnosticReport, QualityReport

        out: dict[str, Any] = {}
        for label, cls, properties in (
            ("quality", QualityReport, QUALITY),
            ("diagnostic", DiagnosticReport, DIAGNOSTIC),
        ):
            report = cls()
            report.generate(real, synthetic, metadata, verbose=False)
            out[label] = _report(report, properties, metadata)
        if tuple(int(p) for p in sdmetrics.__version__.split(".")[:2]) >= (0, 32):
            from sdmetrics.reports import DiagnosticReport as UnifiedDiagnostic
            from sdmetrics.reports import QualityReport as UnifiedQuality

            for label, cls, properties in (
                ("quality", UnifiedQuality, QUALITY),
                ("diagnostic", UnifiedDiagnostic, DIAGNOSTIC),
            ):
                report = cls()
                report.generate(real, synthetic, metadata, verbose=False)
                unified = _report(report, properties, metadata)
                if json.dumps(unified, sort_keys=True) != json.dumps(out[label], sort_keys=True):
                    raise SystemExit(f"unified {label} report differs from the multi_table one")
            out["unified_reports_equal"] = True
    return out


def main() -> None:
    import sdmetrics

    version = "_".join(sdmetrics.__version__.split(".")[:2])
    result: dict[str, Any] = {"sdmetrics": sdmetrics.__version__, "pandas": pd.__version__, "datasets": {}}
    for name, (real, synthetic, metadata) in datasets().items():
        write(name, real, synthetic)
        real, synthetic = load(name, metadata)
        result["datasets"][name] = {"metadata": metadata, **scores(real, synthetic, metadata)}
        if name == "shop":
            for variant, change in VARIANTS.items():
                tables = change(real, synthetic)
                result["datasets"][variant] = {"metadata": metadata, **scores(*tables, metadata)}
    path = HERE / f"multi_table_sdmetrics_{version}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
