"""Scores of a relationship's keys: SDMetrics' key-based multi-table metrics, pure pandas.

Each takes ``real`` and ``synthetic`` as ``(parent primary keys, child foreign
keys)``: two Series, or two DataFrames for a composite key.

- ``cardinality_shape_similarity``: 1 − the Kolmogorov–Smirnov statistic of the
  number of children per parent row (SDMetrics' ``CardinalityShapeSimilarity``,
  the Quality report's Cardinality property).
- ``referential_integrity``: the share of synthetic foreign keys that reference a
  synthetic parent row (``ReferentialIntegrity``).
- ``cardinality_boundary_adherence``: the share of synthetic parent rows whose
  number of children lies within the real minimum and maximum
  (``CardinalityBoundaryAdherence``); these two make the Diagnostic report's
  Relationship Validity.

They follow SDMetrics 0.29 / 0.32 step by step (the same pandas joins and
alignments), so missing keys, duplicated parent keys and composite keys score as
there; the tests compare the reports built on them with SDMetrics'. One exception:
children per parent of a composite key (a DataFrame of keys) are counted with a
merge, not SDMetrics' ``value_counts().join(on=[...])``. Under pandas 3 that join
loses almost every match once a child key column has a missing value (a
Cardinality off by up to 0.55); the merge gives SDMetrics' numbers under pandas 2
(text and float keys, missing child keys matching missing parent keys), and the
true counts where SDMetrics' own are accidents: object columns of integers with
``None`` (SDMetrics 0.30 where the truth is 0.90), and numeric composite keys,
for which ``CardinalityBoundaryAdherence`` raises "Index data must be
1-dimensional" in SDMetrics and scores here.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from prefect_synthobs.scores.fidelity import ks_complement

__all__ = ["cardinality_boundary_adherence", "cardinality_shape_similarity", "referential_integrity"]

Keys = tuple[pd.Series | pd.DataFrame, pd.Series | pd.DataFrame]
_INDICATOR = "__ri_indicator__"

LOGGER = logging.getLogger(__name__)


def _frame_of(keys: pd.Series | pd.DataFrame, what: str) -> pd.Series | pd.DataFrame:
    if not isinstance(keys, (pd.Series, pd.DataFrame)):
        raise ValueError(f"{what} must be a pandas Series (one key column) or DataFrame (a composite key)")
    return keys


def children_per_parent(parent_keys: pd.Series | pd.DataFrame, child_keys: pd.Series | pd.DataFrame) -> pd.Series:
    """How many child rows reference each parent row (0 for a parent without children).

    SDMetrics' ``get_cardinality_distribution``, with the same pandas join: missing
    child keys are counted as a key of their own; child keys no parent has (orphans)
    are not counted at all.
    """
    parent_keys, child_keys = _frame_of(parent_keys, "parent keys"), _frame_of(child_keys, "child keys")
    if isinstance(parent_keys, pd.DataFrame) or isinstance(child_keys, pd.DataFrame):
        return _composite_children(pd.DataFrame(parent_keys), pd.DataFrame(child_keys))
    counts = pd.DataFrame({"child_counts": child_keys.value_counts(dropna=False)})
    parents = pd.DataFrame({"parent": parent_keys})
    out: pd.Series = parents.join(counts, on=list(parents.columns))["child_counts"].fillna(0)  # the counts only
    return out


def _composite_children(parents: pd.DataFrame, children: pd.DataFrame) -> pd.Series:
    """``children_per_parent`` of a composite key, by one merge (pandas 3's join on a
    MultiIndex with missing values loses matches). Each parent row counts the child
    rows whose key equals its own (missing equals missing, as pandas merges and as
    SDMetrics counts under pandas 2); a duplicated parent key gets the count on each row."""
    if parents.shape[1] != children.shape[1]:
        raise ValueError(
            f"the primary key {list(parents.columns)} and the foreign key {list(children.columns)} differ in length"
        )
    on = [f"k{i}" for i in range(parents.shape[1])]
    left = pd.DataFrame({k: parents.iloc[:, i].reset_index(drop=True) for i, k in enumerate(on)})
    right = pd.DataFrame({k: children.iloc[:, i].reset_index(drop=True) for i, k in enumerate(on)})
    left["__row"] = np.arange(len(left))
    rows = left.merge(right, on=on, how="inner")["__row"].to_numpy(dtype=np.int64)
    counts = np.bincount(rows, minlength=len(left)).astype(np.float64)
    return pd.Series(counts, index=parents.index, name="child_counts")


def cardinality_shape_similarity(real: Keys, synthetic: Keys) -> float:
    """1 − the Kolmogorov–Smirnov statistic of the number of children per parent row.

    Args:
        real: ``(parent primary keys, child foreign keys)`` of the real data: two
            Series, or two DataFrames for a composite key.
        synthetic: The same for the synthetic data.

    Raises:
        ValueError: A parent table has no rows.

    Example:
        ```python
        cardinality_shape_similarity(
            (customers["id"], orders["customer_id"]), (syn_customers["id"], syn_orders["customer_id"])
        )
        ```
    """
    for label, keys in (("real", real), ("synthetic", synthetic)):
        _frames(keys, label)
    r, s = children_per_parent(*real), children_per_parent(*synthetic)
    if r.empty or s.empty:
        raise ValueError(f"the {'real' if r.empty else 'synthetic'} parent table has no rows")
    return ks_complement(r, s)


def _frames(keys: Keys, what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not isinstance(keys, tuple) or len(keys) != 2:
        raise ValueError(f"{what} must be a (parent keys, child keys) tuple of Series or DataFrames")
    for part in keys:
        if not isinstance(part, (pd.Series, pd.DataFrame)):
            raise ValueError(f"{what} must be a (parent keys, child keys) tuple of Series or DataFrames")
    return pd.DataFrame(keys[0]), pd.DataFrame(keys[1])


def _unique_name(name: str, taken: list[Any]) -> str:
    while name in taken:
        name += "_"
    return name


def referential_integrity(real: Keys, synthetic: Keys) -> float:
    """Share of synthetic foreign keys that reference a synthetic parent row.

    When the real foreign key (one column) has missing values, missing synthetic
    ones are left out; otherwise a missing synthetic foreign key counts as an
    orphan. NaN when no synthetic foreign key is left.

    Args:
        real: ``(parent primary keys, child foreign keys)`` of the real data (Series,
            or DataFrames for a composite key).
        synthetic: The same for the synthetic data.

    Example:
        ```python
        referential_integrity((pk, fk), (syn_pk, syn_fk))  # 0.94: 6 % of synthetic children are orphans
        ```
    """
    real_pk, real_fk = _frames(real, "real")
    syn_pk, syn_fk = _frames(synthetic, "synthetic")
    pk_columns, fk_columns = list(real_pk.columns), list(real_fk.columns)
    if len(pk_columns) != len(fk_columns):
        raise ValueError(f"the primary key {pk_columns} and the foreign key {fk_columns} differ in length")
    if list(syn_pk.columns) != pk_columns or list(syn_fk.columns) != fk_columns:
        raise ValueError("the real and synthetic keys must have the same columns")
    indicator = _unique_name(_INDICATOR, pk_columns + fk_columns)
    real_merged = real_fk.merge(
        real_pk.drop_duplicates(), how="left", left_on=fk_columns, right_on=pk_columns, indicator=indicator
    )
    if bool((real_merged[indicator] == "left_only").any()):
        LOGGER.debug("the real data has foreign keys that reference no primary key")
    if len(fk_columns) == 1 and bool(real_fk[fk_columns[0]].isna().any()):
        syn_fk = syn_fk.dropna()
    merged = syn_fk.merge(
        syn_pk.drop_duplicates(), how="left", left_on=fk_columns, right_on=pk_columns, indicator=indicator
    )
    if merged.empty:
        return math.nan
    return float((merged[indicator] == "both").mean())


def _cardinality(keys: Keys) -> pd.Series:
    parents, children = keys
    if isinstance(parents, pd.DataFrame) or isinstance(children, pd.DataFrame):
        return children_per_parent(parents, children)  # SDMetrics' index alignment fails on numeric composite keys
    out = pd.DataFrame(index=parents.copy())  # a composite key becomes an index of tuples, as in SDMetrics
    out["cardinality"] = children.value_counts(dropna=False)
    series: pd.Series = out["cardinality"].fillna(0)
    return series


def cardinality_boundary_adherence(real: Keys, synthetic: Keys) -> float:
    """Share of synthetic parent rows whose number of children is within the real min–max.

    Args:
        real: ``(parent primary keys, child foreign keys)`` of the real data.
        synthetic: The same for the synthetic data.

    Raises:
        ValueError: A parent table has no rows (SDMetrics then counts the child keys
            as if they were the parents, a number that means nothing).

    Example:
        ```python
        cardinality_boundary_adherence((pk, fk), (syn_pk, syn_fk))
        ```
    """
    for label, keys in (("real", real), ("synthetic", synthetic)):
        if _frames(keys, label)[0].empty:
            raise ValueError(f"the {label} parent table has no rows")
    real_counts, syn_counts = _cardinality(real), _cardinality(synthetic)
    valid = syn_counts.between(real_counts.min(), real_counts.max())
    return float(valid.sum() / len(syn_counts))
