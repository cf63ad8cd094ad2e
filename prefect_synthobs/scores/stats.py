"""Small statistics shared by the quality and privacy scores (numpy only)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (``scipy.stats.rankdata``'s default)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], values.size] - 1
    ranks[order] = (first[group] + last[group]) / 2.0 + 1.0
    return ranks


def numeric_values(series: pd.Series, *, datetime_unit: float = 1.0) -> np.ndarray:
    """A column as float64 with NaN for missing values; datetimes as integer
    nanoseconds divided by ``datetime_unit`` (``1e9`` gives seconds).

    Timezone-aware datetimes count as their UTC instant (nanoseconds since the epoch
    in UTC), which is what SDMetrics 0.29 / 0.32 score."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(series):
        ns = series.astype("datetime64[ns]").astype("int64").to_numpy(dtype=np.float64)
        return np.where(series.isna().to_numpy(), np.nan, ns / datetime_unit if datetime_unit != 1.0 else ns)
    return pd.to_numeric(series).to_numpy(dtype=np.float64)
