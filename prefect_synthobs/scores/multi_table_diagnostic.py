"""The properties of SDMetrics' multi-table Diagnostic report, pure pandas.

- **Data Validity** and **Data Structure**: each table's single-table diagnostic
  report (``diagnostic.diagnostic_report``), one details table with a ``Table`` column.
- **Relationship Validity**: per relationship, ``referential_integrity`` (the share
  of synthetic foreign keys that reference a synthetic parent row) and
  ``cardinality_boundary_adherence`` (the share of synthetic parent rows whose
  number of children lies within the real minimum and maximum), from
  ``prefect_synthobs.scores.relationships``.

``multi_table.multi_table_diagnostic_report`` assembles them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from prefect_synthobs.scores.diagnostic import DATA_STRUCTURE, diagnostic_report
from prefect_synthobs.scores.multi_table_pairs import error_text
from prefect_synthobs.scores.multi_table_quality import frame
from prefect_synthobs.scores.relationships import cardinality_boundary_adherence, referential_integrity

RELATIONSHIP_VALIDITY = "Relationship Validity"
RELATIONSHIP_COLUMNS = ["Parent Table", "Child Table", "Primary Key", "Foreign Key", "Metric", "Score", "Error"]


def table_validity(
    name: str, real: pd.DataFrame, synthetic: pd.DataFrame, table_meta: Mapping[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One table's Data Validity details (with a ``Table`` column) and its Data Structure row."""
    report = diagnostic_report(real, synthetic, table_meta)
    details = report.details.copy()
    details.insert(0, "Table", name)
    structure = {"Table": name, "Metric": "TableStructure", "Score": report.properties[DATA_STRUCTURE]}
    return details, structure


def relationship_details(
    real: Mapping[str, pd.DataFrame], synthetic: Mapping[str, pd.DataFrame], relationships: list[dict[str, Any]]
) -> pd.DataFrame:
    """Two Relationship Validity rows per relationship: ReferentialIntegrity, CardinalityBoundaryAdherence."""
    rows = []
    for rel in relationships:
        parent, child = rel["parent_table_name"], rel["child_table_name"]
        pk, fk = rel["parent_primary_key"], rel["child_foreign_key"]
        real_keys = (real[parent][pk], real[child][fk])
        syn_keys = (synthetic[parent][pk], synthetic[child][fk])
        for metric, fn in (
            ("ReferentialIntegrity", referential_integrity),
            ("CardinalityBoundaryAdherence", cardinality_boundary_adherence),
        ):
            row = {
                "Parent Table": parent,
                "Child Table": child,
                "Primary Key": pk,
                "Foreign Key": fk,
                "Metric": metric,
                "Score": math.nan,
                "Error": None,
            }
            try:
                row["Score"] = fn(real_keys, syn_keys)
            except Exception as exc:  # reported per row, as SDMetrics does
                row["Error"] = error_text(exc)
            rows.append(row)
    return frame(rows, RELATIONSHIP_COLUMNS)
