"""Numbers as people read them: one definition for the terminal, the artifacts and the demo summary.

- ``count_text``: counts with thousands separators, never a decimal point (``20,000``; a float that
  holds a whole number, as pandas makes of an integer column with a gap, reads the same).
- ``rate_text``: a rate such as rows per second at a glance: a whole number from 100 up
  (``87,962``, not ``87,962.00``), three significant digits below (``12.3``, ``0.0123``), never
  an exponent.
- ``number_text``: either, by what the value is.

Pure functions of the value; ``--json`` and the Parquet store keep the raw numbers.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

__all__ = ["RATE_DIGITS", "count_text", "number_text", "rate_text"]

RATE_DIGITS = 3
"""Significant digits of a rate below ``10 ** RATE_DIGITS / 10`` (100): 12.3 rows/s, 0.0123 rows/s."""

_WHOLE_FROM = 10 ** (RATE_DIGITS - 1)  # 100: from here a rate's digits are all before the point (99.96: "100")


def _finite(value: float) -> str | None:
    """``None`` for a finite number, else how it is shown (``nan``, ``inf``, ``-inf``)."""
    return None if math.isfinite(value) else str(value)


def count_text(value: int | float) -> str:
    """A count with thousands separators: ``20,000`` (``20000.0`` too); a fractional value is rounded
    half to even (a count has none; this never shows a decimal point).

    Example:
        ```python
        count_text(20000.0)  # "20,000"
        ```
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"count_text takes a number, got {type(value).__name__}")
    if isinstance(value, int):
        return f"{value:,}"
    shown = _finite(float(value))
    return shown if shown is not None else f"{round(float(value)):,}"


def rate_text(value: int | float) -> str:
    """A rate to read at a glance: from 100 up rounded to a whole number with separators (``87,962``),
    below that ``RATE_DIGITS`` significant digits in plain notation (``12.3``, ``0.0123``, ``0``).

    Example:
        ```python
        rate_text(87962.004)  # "87,962"
        rate_text(0.012345)  # "0.0123"
        ```
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"rate_text takes a number, got {type(value).__name__}")
    number = float(value)
    shown = _finite(number)
    if shown is not None:
        return shown
    if abs(number) >= _WHOLE_FROM:
        return count_text(number)
    text = np.format_float_positional(number, precision=RATE_DIGITS, unique=False, fractional=False, trim="-")
    return "0" if text in ("0", "-0") else text


def number_text(value: int | float) -> str:
    """A count (a whole number: ``count_text``) or a rate-like measure (``rate_text``)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"number_text takes a number, got {type(value).__name__}")
    if isinstance(value, int) or (math.isfinite(float(value)) and float(value).is_integer()):
        return count_text(value)
    return rate_text(value)
