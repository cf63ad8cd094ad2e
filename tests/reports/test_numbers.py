"""Numbers as people read them (``reports.numbers``): counts whole, rates to three significant digits."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefect_synthobs.reports.cells import display_value
from prefect_synthobs.reports.numbers import PLAIN_RANGE, RATE_DIGITS, count_text, number_text, rate_text

GROUPED = re.compile(r"-?\d{1,3}(,\d{3})*")  # 87,962 / 1,234,568 / 7
PLAIN = re.compile(r"-?\d+(\.\d+)?")  # 12.3 / 0.0123: no separators, no exponent


def value_of(text: str) -> float:
    return float(text.replace(",", ""))


def significant(text: str) -> int:
    """Significant digits written in a plain decimal (``0.0123`` → 3, ``12.3`` → 3, ``5`` → 1)."""
    digits = text.lstrip("-").replace(".", "").lstrip("0")
    return len(digits)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (87962.004, "87,962"),  # the "rows/s 87,962.00"
        (44465.2, "44,465"),
        (100.4, "100"),
        (99.96, "100"),
        (99.94, "99.9"),
        (12.345, "12.3"),
        (1.0, "1"),
        (0.012345, "0.0123"),
        (0.0, "0"),
        (-0.0, "0"),
        (-3.21, "-3.21"),
        (5e-5, "0.00005"),
        (np.float64(250.5), "250"),  # half to even, as Python rounds
        (math.inf, "inf"),
        (math.nan, "nan"),
    ],
)
def test_rate_text_examples(value: float, expected: str) -> None:
    assert rate_text(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(20000, "20,000"), (20000.0, "20,000"), (np.int64(2000), "2,000"), (0, "0"), (-1234567, "-1,234,567")],
)
def test_count_text_examples(value: float, expected: str) -> None:
    assert count_text(value) == expected and number_text(value) == expected


@given(st.integers(-(10**15) + 1, 10**15 - 1))
def test_a_count_reads_back_exactly_and_never_shows_a_point(n: int) -> None:
    for text in (count_text(n), count_text(float(n)), number_text(n), number_text(float(n))):
        assert GROUPED.fullmatch(text), text
        assert int(text.replace(",", "")) == n


@given(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_a_rate_reads_back_within_its_precision(x: float) -> None:
    text = rate_text(x)
    if 0 < abs(x) < PLAIN_RANGE[0]:  # digits would run on: three significant ones with an exponent
        assert re.fullmatch(r"-?\d(\.\d{1,2})?e-\d+", text), text
        assert math.isclose(float(text), x, rel_tol=5e-3), (x, text)
        return
    assert "e" not in text.lower(), text  # no exponent within PLAIN_RANGE
    if abs(x) >= 10 ** (RATE_DIGITS - 1):  # from 100 up: a whole number with separators
        assert GROUPED.fullmatch(text), text
        assert abs(value_of(text) - x) <= 0.5
    else:  # below: at most three significant digits, within half a unit of the third
        assert PLAIN.fullmatch(text), text
        assert significant(text) <= RATE_DIGITS, text
        if x != 0:
            unit = 10 ** (math.floor(math.log10(abs(x))) - RATE_DIGITS + 1)
            assert abs(value_of(text) - x) <= unit / 2 * (1 + 1e-9), (x, text)
        else:
            assert text == "0"


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False), st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_rates_keep_their_order(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert value_of(rate_text(low)) <= value_of(rate_text(high))


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
def test_number_text_is_a_count_for_whole_values_and_a_rate_otherwise(x: float) -> None:
    assert number_text(x) == (count_text(x) if x.is_integer() else rate_text(x))


@pytest.mark.parametrize("bad", [True, "12", None])
def test_only_numbers(bad: object) -> None:
    for fn in (count_text, rate_text, number_text):
        with pytest.raises(TypeError):
            fn(bad)  # type: ignore[arg-type]


def test_outside_the_plain_range_three_digits_and_an_exponent() -> None:
    assert count_text(1e300) == "1e+300" and rate_text(1e-300) == "1e-300" and rate_text(-1.2345e16) == "-1.23e+16"
    assert count_text(10**300) == f"{10**300:,}"  # an int is a count: exact, however long


def test_table_cells_use_them() -> None:
    """The terminal, the overview and the artifacts show rows/s and whole floats this way."""
    assert display_value("rows_per_s", 87962.004) == "87,962"
    assert display_value("run_rows_per_s", 20.0) == "20"
    assert display_value("rows_per_s", 0.012345) == "0.0123"
    assert display_value("rows", 20000.0) == "20,000"  # an integer column with a gap is float in pandas
    assert display_value("rows", 160007) == "160,007"
    assert display_value("p95_duration_s", 78.1439) == "78.14"  # durations keep their hundredths
    assert display_value("average", 0.9325) == "0.9325"


def test_numpy_scalars_read_as_python_numbers() -> None:
    assert display_value("runs", np.int64(20000)) == display_value("runs", 20000) == "20,000"
    assert display_value("rows_per_s", np.float32(99.96)) == "100"
    assert display_value("rows", np.float64(20000.0)) == "20,000"
    assert display_value("average", np.float32("nan")) == "" and display_value("average", 1234567.5) == "1,234,568"
