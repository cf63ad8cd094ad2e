"""The properties of SDMetrics' multi-table Quality report, pure pandas/numpy.

- **Column Shapes** and **Column Pair Trends**: each table's single-table quality
  report, one details table with a ``Table`` column: per column ``ks_complement`` /
  ``tv_complement``, per pair ``multi_table_pairs.pair_row`` (``quality_report``'s
  numbers; a column that cannot be binned fails its mixed pairs, not the report).
- **Cardinality**: per relationship, ``relationships.cardinality_shape_similarity``:
  1 − the KS statistic between the real and synthetic numbers of children per parent row.
- **Intertable Trends**: per relationship, the child table joined to its parent
  (inner join: orphan rows drop out, a parent's values repeat per child), and every
  (parent column, child column) pair scored as Column Pair Trends scores a pair,
  with the same relevance thresholds and binning (on the joined rows).

``multi_table.multi_table_quality_report`` assembles them. SDMetrics' own classes:
``sdmetrics.reports.multi_table.QualityReport`` (0.29, 0.32) and, from 0.32,
``sdmetrics.reports.QualityReport``; the tests compare with both versions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from prefect_synthobs.scores.diagnostic import _converted
from prefect_synthobs.scores.fidelity import DEFAULT_NUM_BINS, PAIR_COLUMNS, SDTYPES, ks_complement, tv_complement
from prefect_synthobs.scores.metadata import key_columns
from prefect_synthobs.scores.multi_table_pairs import (
    CONTINUOUS,
    Pearson,
    Sources,
    error_text,
    pair_row,
)
from prefect_synthobs.scores.relationships import Keys, cardinality_shape_similarity

COLUMN_SHAPES = "Column Shapes"
COLUMN_PAIR_TRENDS = "Column Pair Trends"
CARDINALITY = "Cardinality"
INTERTABLE_TRENDS = "Intertable Trends"

SHAPE_COLUMNS = ["Table", "Column", "Metric", "Score", "Error"]
TREND_COLUMNS = ["Table", "Column 1", "Column 2", *PAIR_COLUMNS]
CARDINALITY_COLUMNS = ["Child Table", "Parent Table", "Foreign Key", "Metric", "Score", "Error"]
INTERTABLE_COLUMNS = ["Parent Table", "Child Table", "Foreign Key", "Column 1", "Column 2", *PAIR_COLUMNS]


def tidy(details: pd.DataFrame) -> pd.DataFrame:
    """Details as SDMetrics shows them: ``Meets Threshold?`` a nullable boolean, ``Error``
    only when a row has one (and None, not NaN, in the rows without)."""
    out = details
    if "Meets Threshold?" in out.columns:
        out["Meets Threshold?"] = out["Meets Threshold?"].astype("boolean")
    if "Error" in out.columns:
        if out["Error"].isna().all():
            out = out.drop(columns=["Error"])
        else:
            out["Error"] = out["Error"].astype(object).where(out["Error"].notna(), None)
    return out


def frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """Details rows as a tidy table (see ``tidy``)."""
    return tidy(pd.DataFrame(rows, columns=columns))


def scored_sdtypes(columns: Mapping[str, Any]) -> dict[str, str]:
    """The columns the quality properties score, with the sdtype they are scored as.

    As SDMetrics 0.32: ``ordinal`` counts as categorical; ``id``, ``text``, PII and
    other sdtypes are left out.
    """
    out = {}
    for name, meta in columns.items():
        sdtype = meta["sdtype"]
        sdtype = "categorical" if sdtype == "ordinal" else sdtype
        if sdtype in SDTYPES:
            out[name] = sdtype
    return out


def converted_tables(
    real: Mapping[str, pd.DataFrame], synthetic: Mapping[str, pd.DataFrame], tables: Mapping[str, Any]
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The tables with their text datetime columns parsed with the column's ``datetime_format``.

    What SDMetrics' reports do before any property (a column that does not parse stays text).
    """
    out_real, out_syn = {}, {}
    for name, meta in tables.items():
        out_real[name], out_syn[name] = _converted(real[name], synthetic[name], meta["columns"])
    return out_real, out_syn


# -- Column Shapes and Column Pair Trends ------------------------------------------------


def table_properties(
    name: str,
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    columns: Mapping[str, Any],
    thresholds: tuple[float, float],
    bins: int = DEFAULT_NUM_BINS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One table's Column Shapes and Column Pair Trends details (with a ``Table`` column).

    A table with no rows on either side gets a NaN score and an ``Error`` on every
    column and pair (SDMetrics' own numbers there are artefacts: a contingency
    similarity of 0.5 against no rows).
    """
    sdtypes = scored_sdtypes(columns)
    continuous = {n: t in CONTINUOUS for n, t in sdtypes.items()}
    shapes: list[dict[str, Any]] = []
    trends: list[dict[str, Any]] = []
    empty = "real" if real.empty else "synthetic" if synthetic.empty else None
    prepared = {}
    if empty is None:
        sources = Sources({name: real}, {name: synthetic})
        prepared = {n: sources.get(name, n, t).over(None, None, bins) for n, t in sdtypes.items()}
    for n in sdtypes:
        row = {"Table": name, "Column": n, "Metric": "KSComplement" if continuous[n] else "TVComplement"}
        try:
            if empty is not None:
                raise ValueError(f"the {empty} table has no rows")
            score, error = (ks_complement if continuous[n] else tv_complement)(real[n], synthetic[n]), None
        except Exception as exc:  # reported per column, as SDMetrics does
            score, error = math.nan, error_text(exc)
        shapes.append({**row, "Score": score, "Error": error})
    pearson = Pearson()
    for a, b in itertools.combinations(sdtypes, 2):
        names = {"Table": name, "Column 1": a, "Column 2": b}
        if empty is not None:
            metric = "CorrelationSimilarity" if continuous[a] and continuous[b] else "ContingencySimilarity"
            trends.append({**names, "Metric": metric, "Error": f"ValueError: the {empty} table has no rows"})
        else:
            trends.append({**names, **pair_row(prepared[a], prepared[b], thresholds, pearson)})
    return pd.DataFrame(shapes, columns=SHAPE_COLUMNS), pd.DataFrame(trends, columns=TREND_COLUMNS)


# -- Cardinality --------------------------------------------------------------------------


def _keys(tables: Mapping[str, pd.DataFrame], rel: Mapping[str, Any]) -> Keys:
    pk, fk = rel["parent_primary_key"], rel["child_foreign_key"]
    return tables[rel["parent_table_name"]][pk], tables[rel["child_table_name"]][fk]


def cardinality_details(
    real: Mapping[str, pd.DataFrame], synthetic: Mapping[str, pd.DataFrame], relationships: list[dict[str, Any]]
) -> pd.DataFrame:
    """One Cardinality row per relationship (an error gives a NaN score and its ``Error``)."""
    rows = []
    for rel in relationships:
        row = {
            "Child Table": rel["child_table_name"],
            "Parent Table": rel["parent_table_name"],
            "Foreign Key": rel["child_foreign_key"],
            "Metric": "CardinalityShapeSimilarity",
            "Score": math.nan,
            "Error": None,
        }
        try:
            row["Score"] = cardinality_shape_similarity(_keys(real, rel), _keys(synthetic, rel))
        except Exception as exc:  # reported per row, as SDMetrics does
            row["Error"] = error_text(exc)
        rows.append(row)
    return frame(rows, CARDINALITY_COLUMNS)


# -- Intertable Trends -------------------------------------------------------------------


def _join_positions(tables: Mapping[str, pd.DataFrame], rel: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Row positions ``(parent, child)`` of the child rows joined to their parent row.

    SDMetrics' inner join of the child table on its parent (orphans drop out; a
    parent's row repeats for each child; missing keys join missing keys, as pandas
    joins them), done on the keys alone.
    """
    pk, fk = key_columns(rel["parent_primary_key"]), key_columns(rel["child_foreign_key"])
    parent, child = tables[rel["parent_table_name"]], tables[rel["child_table_name"]]
    on = [f"k{i}" for i in range(len(fk))]
    left = pd.DataFrame({k: child[c].reset_index(drop=True) for k, c in zip(on, fk, strict=True)})
    left["__child_row"] = np.arange(len(child))
    right = pd.DataFrame({k: parent[c].reset_index(drop=True) for k, c in zip(on, pk, strict=True)})
    right["__parent_row"] = np.arange(len(parent))
    joined = left.merge(right, on=on, how="inner")
    return joined["__parent_row"].to_numpy(), joined["__child_row"].to_numpy()


def _relationship_rows(
    rel: Mapping[str, Any],
    tables: Mapping[str, Any],
    real: Mapping[str, pd.DataFrame],
    synthetic: Mapping[str, pd.DataFrame],
    sources: Sources,
    thresholds: tuple[float, float],
    bins: int,
    later: set[str],
) -> list[dict[str, Any]]:
    """The Intertable Trends rows of one relationship (parent columns outer, child columns inner).

    ``later``: the tables a later relationship uses (the others' prepared columns are released).
    """
    parent, child = rel["parent_table_name"], rel["child_table_name"]
    parent_types = scored_sdtypes(tables[parent]["columns"])
    child_types = scored_sdtypes(tables[child]["columns"])
    if not parent_types or not child_types:
        return []
    real_parent_rows, real_child_rows = _join_positions(real, rel)
    syn_parent_rows, syn_child_rows = _join_positions(synthetic, rel)
    base = {"Parent Table": parent, "Child Table": child, "Foreign Key": str(rel["child_foreign_key"])}
    rows: list[dict[str, Any]] = []
    empty = "real" if real_child_rows.size == 0 else "synthetic" if syn_child_rows.size == 0 else None
    if empty is not None:
        for p, c in itertools.product(parent_types, child_types):
            continuous = {parent_types[p], child_types[c]} <= set(CONTINUOUS)
            rows.append(
                {
                    **base,
                    "Column 1": p,
                    "Column 2": c,
                    "Metric": "CorrelationSimilarity" if continuous else "ContingencySimilarity",
                    "Score": math.nan,
                    "Error": f"ValueError: no {empty} {child!r} row references a {parent!r} row",
                }
            )
        return rows
    # every child column serves every parent column; a parent column is dropped once its pairs are done
    children = {c: sources.get(child, c, t).over(real_child_rows, syn_child_rows, bins) for c, t in child_types.items()}
    if child not in later:
        sources.release(child)
    pearson = Pearson()
    for p, sdtype in parent_types.items():
        a = sources.get(parent, p, sdtype).over(real_parent_rows, syn_parent_rows, bins)
        for c, b in children.items():
            rows.append({**base, "Column 1": p, "Column 2": c, **pair_row(a, b, thresholds, pearson)})
        pearson.forget(a.values_real, a.values_syn)
    if parent not in later:
        sources.release(parent)
    return rows


def intertable_details(
    real: Mapping[str, pd.DataFrame],
    synthetic: Mapping[str, pd.DataFrame],
    metadata: Mapping[str, Any],
    thresholds: tuple[float, float],
    bins: int = DEFAULT_NUM_BINS,
) -> pd.DataFrame:
    """Intertable Trends rows: every (parent column, child column) pair of every relationship.

    Pairs run over the parent's scored columns, then the child's, in metadata order
    (SDMetrics' order). When no child row of one side joins a parent row, every pair
    of that relationship has a NaN score and an ``Error``.
    """
    rows: list[dict[str, Any]] = []
    sources = Sources(real, synthetic)  # a parent in several relationships is prepared once
    relationships = metadata["relationships"]
    for i, rel in enumerate(relationships):
        later = {r[k] for r in relationships[i + 1 :] for k in ("parent_table_name", "child_table_name")}
        rows.extend(_relationship_rows(rel, metadata["tables"], real, synthetic, sources, thresholds, bins, later))
    return frame(rows, INTERTABLE_COLUMNS)


def thresholded_mean(details: pd.DataFrame) -> float:
    """Mean ``Score`` of the rows that count: all, or those whose ``Meets Threshold?`` is true."""
    if details.empty or "Score" not in details.columns:
        return math.nan
    scores = details["Score"]
    if "Meets Threshold?" in details.columns:
        scores = scores[details["Meets Threshold?"].astype("boolean").fillna(False).to_numpy(dtype=bool)]
    value = float(np.nanmean(scores.to_numpy(dtype=np.float64))) if scores.notna().any() else math.nan
    return value
