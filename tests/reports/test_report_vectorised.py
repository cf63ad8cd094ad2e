"""The reports' column readers (``text_column``, ``floats``, ``ints``), vectorised, against the element-by-element
versions they replaced: the same values and the same Python types (``None`` for missing, exact floats, ``int``)
on random columns of NaN, None, pd.NA, NaT, strings, numbers, booleans and categoricals; ``distinct_values``
against ``pc.count_distinct``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_synthobs.health.dedupe import distinct_values
from prefect_synthobs.reports.fits import floats, ints
from prefect_synthobs.reports.models import text_column


def _old_text(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return str(value)


def old_text_column(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return pd.Series([_old_text(v) for v in frame[column].astype(object)], index=frame.index, dtype=object)


def old_floats(frame: pd.DataFrame, column: str) -> list[float | None]:
    if column not in frame.columns:
        return [None] * len(frame)
    values = pd.to_numeric(pd.Series(frame[column]).astype(object), errors="coerce").astype("float64")
    return [float(v) if math.isfinite(v) else None for v in values]


def old_ints(frame: pd.DataFrame, column: str) -> list[int | None]:
    return [None if v is None or abs(v) > 2**62 else int(v) for v in old_floats(frame, column)]


MISSING = st.sampled_from([None, float("nan"), pd.NA, pd.NaT, np.nan])
NUMBERS = st.one_of(
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-(2.0**63), 2.0**63),
    st.booleans(),
)
TEXT = st.one_of(st.text(max_size=8), st.sampled_from(["", " ", "1.5", "nan", "inf", "-3", "NaN", "None"]))
MIXED = st.lists(st.one_of(MISSING, NUMBERS, TEXT), max_size=30)


def _same(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert type(x) is type(y), (x, y)
        assert x == y or (x is None and y is None), (x, y)


def _frames(values: list[Any], kind: str) -> list[pd.DataFrame]:
    """The values as the column types a store's reads give: object, categorical, pandas string, numpy numbers."""
    frames = [pd.DataFrame({"c": pd.Series(values, dtype=object)})]
    if kind == "text":
        frames.append(pd.DataFrame({"c": pd.Series(values, dtype="category")}))
        frames.append(pd.DataFrame({"c": pd.Series(values, dtype="string")}))
    if kind == "float":
        frames.append(pd.DataFrame({"c": pd.Series(values, dtype="float64")}))
        frames.append(pd.DataFrame({"c": pd.Series(values, dtype="float32")}))
        frames.append(pd.DataFrame({"c": pd.Series(values, dtype="Float64")}))
    if kind == "int":
        frames.append(pd.DataFrame({"c": pd.Series(values, dtype="int64")}))
        frames.append(pd.DataFrame({"c": pd.Series(values, dtype="Int64")}))
        frames.append(pd.DataFrame({"c": pd.Series([abs(v) for v in values], dtype="uint64")}))
    return frames


def _check(frame: pd.DataFrame) -> None:
    for column in ("c", "absent"):
        new, old = text_column(frame, column), old_text_column(frame, column)
        assert new.index.equals(old.index) and new.dtype == old.dtype == object
        _same(list(new), list(old))
        _same(floats(frame, column), old_floats(frame, column))
        _same(ints(frame, column), old_ints(frame, column))


@settings(max_examples=300, deadline=None)
@given(MIXED)
def test_mixed_object_columns(values: list[Any]) -> None:
    for frame in _frames(values, "mixed"):
        _check(frame)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(MISSING, TEXT), max_size=30), st.lists(st.integers(0, 5), max_size=30))
def test_text_columns(values: list[Any], index: list[int]) -> None:
    for frame in _frames(values, "text"):
        if len(index) == len(frame):  # a frame whose index is not a range (a filtered read)
            frame.index = pd.Index(index)
        _check(frame)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # float32 of a huge float: inf
@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()), max_size=30))
def test_float_columns(values: list[Any]) -> None:
    for frame in _frames(values, "float"):
        _check(frame)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=30))
def test_int_columns(values: list[int]) -> None:
    for frame in _frames(values, "int"):
        _check(frame)


def test_edges() -> None:
    """Around ``ints``'s ``2**62`` bound, truncation toward zero, negative zero, a categorical of numbers."""
    values = [2.0**62, -(2.0**62), 2.0**62 + 2**10, -1.5, 1.5, -0.0, 0.49999, float("inf"), float("-inf")]
    _check(pd.DataFrame({"c": values}))
    _check(pd.DataFrame({"c": pd.Series([1, 2.5, None, "x"], dtype="category")}))
    _check(pd.DataFrame({"c": pd.Series([pd.Timestamp("2026-01-01"), pd.NaT], dtype=object)}))
    _check(pd.DataFrame({"c": pd.Series([], dtype=object)}))
    _check(pd.DataFrame({"c": [b"bytes", None]}))


STRINGS = st.lists(st.one_of(st.none(), st.text(max_size=3)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(STRINGS, min_size=1, max_size=3), st.sampled_from(["string", "large_string", "binary", "int"]))
def test_distinct_values_counts_what_count_distinct_counts(chunks: list[list[str | None]], kind: str) -> None:
    """``one_row_per_run``'s shortcut: distinct non-null run ids, over chunks, with and without nulls."""
    if kind == "int":
        arrays = [pa.array([None if v is None else len(v) for v in c], pa.int64()) for c in chunks]
    elif kind == "binary":  # another type: count_distinct itself
        arrays = [pa.array([None if v is None else v.encode() for v in c], pa.binary()) for c in chunks]
    else:
        arrays = [pa.array(c, getattr(pa, kind)()) for c in chunks]
    values = pa.chunked_array(arrays, type=arrays[0].type)
    want = pc.count_distinct(values).as_py()
    assert distinct_values(values) == want
    assert distinct_values(values.combine_chunks()) == want
