"""The shared statistics of the scores: average ranks (scipy's ``rankdata`` default) and a column's numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from prefect_synthobs.scores.stats import average_ranks, numeric_values


def naive_average_ranks(values: list[float]) -> list[float]:
    """By the definition: 1 + the values below, + half the other values equal to it."""
    return [1 + sum(w < v for w in values) + (sum(w == v for w in values) - 1) / 2 for v in values]


@given(st.lists(st.integers(-5, 5) | st.floats(-1e6, 1e6, allow_nan=False), max_size=60))
def test_average_ranks_are_the_definitions(values: list[float]) -> None:
    got = average_ranks(np.asarray(values, dtype=np.float64))
    assert got.tolist() == naive_average_ranks(values)
    assert got.sum() == len(values) * (len(values) + 1) / 2  # ranks of n values always sum to n(n+1)/2


def test_average_ranks_share_ties() -> None:
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert average_ranks(np.array([], dtype=np.float64)).tolist() == []


def test_numeric_values_keep_missing_as_nan_and_datetimes_as_nanoseconds() -> None:
    numbers = numeric_values(pd.Series([1, None, 3], dtype="Int64"))
    assert numbers.dtype == np.float64 and np.isnan(numbers[1]) and numbers[[0, 2]].tolist() == [1.0, 3.0]

    times = pd.Series([pd.Timestamp("1970-01-01 00:00:01"), pd.NaT], dtype="datetime64[ns]")
    assert numeric_values(times)[0] == 1e9 and np.isnan(numeric_values(times)[1])
    assert numeric_values(times, datetime_unit=1e9)[0] == 1.0


def test_numeric_values_count_an_aware_datetime_as_its_utc_instant() -> None:
    paris = pd.Series(pd.to_datetime(["1970-01-01 01:00:01"]).tz_localize("Europe/Paris"))
    naive_utc = pd.Series(pd.to_datetime(["1970-01-01 00:00:01"]))
    assert numeric_values(paris).tolist() == numeric_values(naive_utc).tolist() == [1e9]
