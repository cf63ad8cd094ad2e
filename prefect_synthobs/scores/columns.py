"""Single-column validity and coverage scores, SDMetrics' definitions, pure pandas/numpy.

Each takes ``(real, synthetic)`` columns and returns a float in [0, 1] (NaN where
SDMetrics' score is undefined, e.g. a constant real column):

- ``range_coverage``: how much of the real min–max range the synthetic values
  cover (numerical and datetime).
- ``boundary_adherence``: share of synthetic values inside the real min–max
  (numerical and datetime; NaN allowed when the real column has NaN).
- ``category_coverage``: share of the real categories the synthetic column uses.
- ``category_adherence``: share of synthetic values that are real categories
  (categorical and boolean; NaN allowed when the real column has NaN).
- ``missing_value_similarity``: 1 − |real NaN share − synthetic NaN share| (any).
- ``statistic_similarity``: 1 − |statistic(real) − statistic(synthetic)| / real
  range, for ``mean``, ``median`` or ``std`` (numerical and datetime).
- ``key_uniqueness``: share of synthetic keys that are neither duplicated nor
  missing (id columns; a DataFrame for a composite key).

The tests compare each with SDMetrics 0.29 and 0.32 on the reference datasets.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "boundary_adherence",
    "category_adherence",
    "category_coverage",
    "key_uniqueness",
    "missing_value_similarity",
    "range_coverage",
    "statistic_similarity",
]

Statistic = Literal["mean", "median", "std"]


def _series(values: Any, what: str) -> pd.Series:
    if isinstance(values, pd.Series):
        return values
    if isinstance(values, (pd.DataFrame, str, bytes)) or not hasattr(values, "__len__"):
        raise ValueError(f"{what} must be a pandas Series (one column), got {type(values).__name__}")
    out: pd.Series = pd.Series(values)
    return out


def _pair(real: Any, synthetic: Any) -> tuple[pd.Series, pd.Series]:
    return _series(real, "real"), _series(synthetic, "synthetic")


def _is_datetime(series: pd.Series) -> bool:
    return bool(pd.api.types.is_datetime64_any_dtype(series))


def _python_max(value: float, floor: float) -> float:
    """``max(value, floor)`` as Python (and SDMetrics) computes it: a NaN ``value`` stays NaN."""
    return value if not floor > value else floor


def range_coverage(real: pd.Series, synthetic: pd.Series) -> float:
    """How much of the real column's range the synthetic column covers.

    ``1 − (max(0, (min_s − min_r) / range) + max(0, (max_r − max_s) / range))``,
    floored at 0; NaN when the real column is constant.

    Example:
        ```python
        range_coverage(pd.Series([0.0, 10.0]), pd.Series([2.0, 10.0]))  # 0.8
        ```
    """
    real, synthetic = _pair(real, synthetic)
    min_r, max_r, min_s, max_s = real.min(), real.max(), synthetic.min(), synthetic.max()
    if min_r == max_r:
        return math.nan
    span = max_r - min_r
    low = _python_max(float((min_s - min_r) / span), 0.0) if not pd.isna(min_s) else math.nan
    high = _python_max(float((max_r - max_s) / span), 0.0) if not pd.isna(max_s) else math.nan
    return _python_max(1 - (low + high), 0.0)


def boundary_adherence(real: pd.Series, synthetic: pd.Series) -> float:
    """Share of synthetic values within the real column's min–max.

    Missing synthetic values count as outside, unless the real column has
    missing values too (then they are left out).

    Example:
        ```python
        boundary_adherence(pd.Series([0, 10]), pd.Series([5, 11]))  # 0.5
        ```
    """
    real, synthetic = _pair(real, synthetic)
    low, high = real.min(), real.max()
    if bool(real.isna().any()):
        synthetic = synthetic.dropna()
    if len(synthetic) == 0:
        return math.nan
    if _is_datetime(real) and not _is_datetime(synthetic):
        synthetic = pd.to_datetime(synthetic)
    return float(synthetic.between(low, high).sum() / len(synthetic))


def category_coverage(real: pd.Series, synthetic: pd.Series) -> float:
    """Share of the real column's categories (missing values aside) that the synthetic column uses.

    Raises:
        ValueError: The real column has no values.

    Example:
        ```python
        category_coverage(pd.Series(["a", "b"]), pd.Series(["a", "a"]))  # 0.5
        ```
    """
    real, synthetic = _pair(real, synthetic)
    seen = set(real.dropna().unique())
    if not seen:
        raise ValueError("category_coverage: the real column has no values")
    return len(set(synthetic.dropna().unique()) & seen) / len(seen)


def category_adherence(real: pd.Series, synthetic: pd.Series) -> float:
    """Share of synthetic values that are categories of the real column.

    Missing synthetic values are valid when the real column has missing values.

    Example:
        ```python
        category_adherence(pd.Series(["a", "b"]), pd.Series(["a", "c"]))  # 0.5
        ```
    """
    real, synthetic = _pair(real, synthetic)
    if len(synthetic) == 0:
        return math.nan
    valid = synthetic.isin(real.dropna().unique())
    if bool(real.isna().any()):
        valid = valid | synthetic.isna()
    return float(valid.mean())


def missing_value_similarity(real: pd.Series, synthetic: pd.Series) -> float:
    """1 − |share of missing values in real − share in synthetic| (any column type).

    Example:
        ```python
        missing_value_similarity(pd.Series([1, None]), pd.Series([1, 2]))  # 0.5
        ```
    """
    real, synthetic = _pair(real, synthetic)
    if len(real) == 0 or len(synthetic) == 0:
        raise ValueError("missing_value_similarity needs values in both columns")
    return 1 - abs(float(real.isna().sum() / len(real)) - float(synthetic.isna().sum() / len(synthetic)))


def _statistic(values: pd.Series, statistic: Statistic) -> float:
    if statistic == "mean":
        return float(values.mean())
    if statistic == "median":
        return float(values.median())
    return float(values.std())


def statistic_similarity(real: pd.Series, synthetic: pd.Series, statistic: Statistic = "mean") -> float:
    """1 − |statistic(real) − statistic(synthetic)| / (real max − real min), floored at 0.

    ``statistic`` is ``mean``, ``median`` or ``std`` (sample standard
    deviation); missing values are left out; datetimes are compared as
    numbers. NaN when the real column is constant.

    Example:
        ```python
        statistic_similarity(pd.Series([0.0, 10.0]), pd.Series([1.0, 11.0]))  # 0.9
        ```
    """
    if statistic not in ("mean", "median", "std"):
        raise ValueError(f"statistic must be 'mean', 'median' or 'std', got {statistic!r}")
    real, synthetic = _pair(real, synthetic)
    real, synthetic = real.dropna(), synthetic.dropna()
    if real.nunique() <= 1:
        return math.nan
    if _is_datetime(real):  # as numbers, in one unit for both (the score is unit-free)
        unit = "ns"
        real = pd.Series(real.to_numpy().astype(f"datetime64[{unit}]").astype(np.int64))
        synthetic = pd.Series(pd.to_datetime(synthetic).to_numpy().astype(f"datetime64[{unit}]").astype(np.int64))
    span = float(real.max() - real.min())
    score = 1 - abs(_statistic(real, statistic) - _statistic(synthetic, statistic)) / span
    return _python_max(score, 0.0)


def key_uniqueness(real: pd.Series | pd.DataFrame, synthetic: pd.Series | pd.DataFrame) -> float:
    """Share of synthetic keys that are neither a repeat of an earlier key nor missing.

    A DataFrame is a composite key (a row is missing when all its parts are).
    ``real`` is not scored (SDMetrics only notes its duplicates).

    Example:
        ```python
        key_uniqueness(pd.Series([1, 2, 3]), pd.Series([1, 1, None, 4]))  # 0.5
        ```
    """
    keys = synthetic.to_frame() if isinstance(synthetic, pd.Series) else synthetic
    if not isinstance(keys, pd.DataFrame):
        raise ValueError(f"synthetic keys must be a Series or DataFrame, got {type(synthetic).__name__}")
    if len(keys) == 0:
        return math.nan
    bad = keys.duplicated() | keys.isna().all(axis=1)
    return 1 - float(bad.sum() / len(keys))
