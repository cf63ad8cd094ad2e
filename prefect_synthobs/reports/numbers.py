"""Numbers as people read them: one definition for the terminal, the artifacts and the demo summary.

- ``count_text``: counts with thousands separators, never a decimal point (``20,000``; a float that
  holds a whole number, as pandas makes of an integer column with a gap, reads the same).
- ``rate_text``: a rate such as rows per second at a glance: a whole number from 100 up
  (``87,962``, not ``87,962.00``), three significant digits below (``12.3``, ``0.0123``); an
  exponent only outside ``PLAIN_RANGE`` (``1.23e+15``, ``1.23e-07``), where digits would run on.
- ``number_text``: either, by what the value is.

Pure functions of the value; ``--json`` and the Parquet store keep the raw numbers.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

__all__ = ["PLAIN_RANGE", "RATE_DIGITS", "count_text", "number_text", "rate_text"]

RATE_DIGITS = 3
"""Significant digits of a rate below ``10 ** RATE_DIGITS / 10`` (100): 12.3 rows/s, 0.0123 rows/s."""

PLAIN_RANGE = (1e-6, 1e15)
"""Magnitudes shown in plain notation; outside it ``RATE_DIGITS`` significant digits with an exponent."""

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
    if isinstance(value, Integral):
        return f"{int(value):,}"
    shown = _finite(float(value))
    if shown is None and abs(float(value)) >= PLAIN_RANGE[1]:
        return f"{float(value):.{RATE_DIGITS}g}"
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
    if 0 < abs(number) < PLAIN_RANGE[0] or abs(number) >= PLAIN_RANGE[1]:
        return f"{number:.{RATE_DIGITS}g}"
    if abs(number) >= _WHOLE_FROM:
        return count_text(number)
    text = np.format_float_positional(number, precision=RATE_DIGITS, unique=False, fractional=False, trim="-")
    return "0" if text in ("0", "-0") else text


def number_text(value: int | float) -> str:
    """A count (a whole number: ``count_text``) or a rate-like measure (``rate_text``)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"number_text takes a number, got {type(value).__name__}")
    if isinstance(value, Integral) or (math.isfinite(float(value)) and float(value).is_integer()):
        return count_text(value)
    return rate_text(value)
