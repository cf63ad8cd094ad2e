"""Quality scores for synthetic tables, pure pandas/numpy.

Definitions follow SDMetrics 0.29 exactly (see NOTES.md); SDMetrics itself
cannot be installed beside pandas 3.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _numeric_values(series: pd.Series, name: str) -> np.ndarray:
    s = series.dropna()
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.astype("int64").to_numpy(dtype=np.float64)
    if pd.api.types.is_bool_dtype(s):
        return s.astype("int64").to_numpy(dtype=np.float64)
    if not pd.api.types.is_numeric_dtype(s):
        raise ValueError(f"ks_complement needs a numerical or datetime column, {name!r} is {s.dtype}")
    return s.to_numpy(dtype=np.float64)


def ks_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """1 − the Kolmogorov–Smirnov statistic between two numeric columns.

    NaNs are dropped and datetimes compared as integers. 1.0 means the two
    empirical distributions are identical.

    Raises:
        ValueError: A column is empty after dropping NaN, or not numeric.
    """
    r = np.sort(_numeric_values(pd.Series(real), getattr(real, "name", "real")))
    s = np.sort(_numeric_values(pd.Series(synthetic), getattr(synthetic, "name", "synthetic")))
    if r.size == 0 or s.size == 0:
        raise ValueError("ks_complement needs at least one non-NaN value in each column")
    points = np.concatenate([r, s])
    cdf_r = np.searchsorted(r, points, side="right") / r.size
    cdf_s = np.searchsorted(s, points, side="right") / s.size
    return float(1.0 - np.max(np.abs(cdf_r - cdf_s)))
