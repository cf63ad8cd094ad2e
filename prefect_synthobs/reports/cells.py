"""Table cells of the health report, as people read them (pure).

``escape`` makes store text read literally in markdown (artifacts); ``display_value`` turns a
report value into the text a table shows (shares as percentages, counts and rates by
``reports.numbers``, bytes in GiB, times to the minute); ``header`` is a column's short name.
The terminal (``render_text``), the overview markdown and the table artifacts all use them, so a
number reads the same everywhere; ``--json`` and the store keep the raw values.
"""

from __future__ import annotations

import math
import re
from numbers import Integral, Real
from typing import Any

import pandas as pd

from prefect_synthobs.reports.models import LEADERBOARD_HEADERS
from prefect_synthobs.reports.numbers import count_text, rate_text
from prefect_synthobs.reports.text import visible
from prefect_synthobs.reports.training import TRAINING_HEADERS

__all__ = [
    "HEADERS",
    "SHARE_COLUMNS",
    "TIME_COLUMNS",
    "bar",
    "display_value",
    "escape",
    "header",
    "markdown_table",
    "pct",
]

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~&])")

SHARE_COLUMNS = {"success_rate", "pass_rate", "util_mean", "util_max", "gpu_util_mean"}
"""Columns holding a share in [0, 1], shown as a percentage."""
TIME_COLUMNS = {"time", "last_success"}
"""Columns holding an ISO timestamp (UTC), shown to the minute."""


def escape(value: Any) -> str:
    """Text that reads literally inside a markdown table cell or paragraph, whatever it holds.

    Line breaks become spaces (a cell is one line); every other control or format character is
    written out (``visible``: ``\\x1b``, ``\\u202e``); then every character markdown would act on
    is backslash-escaped: ``|`` (a new cell), ``<`` and ``&`` (HTML tags and entities), ``[ ] ( ) !``
    (links and images, ``javascript:`` ones too), backticks, ``*`` and ``_`` (emphasis), ``#``,
    ``~``, ``+`` and the backslash itself."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = re.sub(r"\r\n|[\r\n\u2028\u2029\x85\x0b\x0c]", " ", str(value))
    return _MD_SPECIAL.sub(r"\\\1", visible(text))


def bar(share: float | None, width: int = 10) -> str:
    """A text bar such as ``████████░░`` for a share in [0, 1]."""
    if share is None or math.isnan(share):
        return "·" * width
    filled = round(max(0.0, min(1.0, share)) * width)
    return "█" * filled + "░" * (width - filled)


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal (``85.7 %``); ``n/a`` for none."""
    return "n/a" if value is None else f"{100 * value:.1f} %"


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A markdown table of ``rows`` (cells escaped); says so when there is none."""
    if not rows:
        return "_none in this window_"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(escape(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(escape(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def display_value(column: str, value: Any, *, time_format: str = "%m-%d %H:%M") -> str:
    """A table cell: shares as percentages, bytes in GiB, energy in kWh, times to the minute
    (``time_format``), counts with separators (``reports.numbers``; a whole float too: 20,000, not
    20000.0), rates such as rows/s to three significant digits or a whole number (87,962, not
    87,962.00), durations to the hundredth, signed trends (pure; ``--json`` keeps the raw values)."""
    if value is None or (isinstance(value, Real) and not isinstance(value, Integral) and math.isnan(float(value))):
        return ""
    if isinstance(value, bool) or not isinstance(value, Real):
        if column in TIME_COLUMNS and isinstance(value, str):
            try:
                return f"{pd.Timestamp(value):{time_format}}"
            except ValueError:
                return value
        return str(value)
    number: int | float = int(value) if isinstance(value, Integral) else float(value)  # numpy scalars too
    if column in SHARE_COLUMNS:
        return pct(float(number))
    if column.endswith("_bytes"):
        return f"{number / 2**30:.1f} GiB"
    if column == "energy_j":
        return f"{number / 3.6e6:.2f} kWh"
    if column == "trend":
        return f"{number:+.4f}"
    if column.endswith("_per_s"):  # a rate
        return rate_text(number)
    if isinstance(number, Integral):
        return count_text(number)
    if column.endswith("_s") or column.endswith("_seconds"):
        return f"{number:,.2f}"
    if float(number).is_integer():
        return count_text(number)
    return f"{number:g}" if 1e-5 <= abs(number) < 1e6 else rate_text(number)  # scores keep their 4 decimals


HEADERS = {  # short headers, so tables fit (the terminal's 100 columns, the artifacts' 1,400 px window)
    "success_rate": "success",
    "avg_duration_s": "avg s",
    "p95_duration_s": "p95 s",
    "max_duration_s": "max s",
    "rows_per_s": "rows/s",
    "gpu_util_mean": "GPU util",
    "last_success": "last ok",
    "failed_tasks": "task fails",
    "retried_tasks": "retries",
    "success_by_day": "success/day",
    "p95_by_day": "p95/day",
    "score_by_day": "score/day",
    "util_by_day": "util/day",
    "pass_rate": "passed",
    "util_mean": "util avg",
    "util_max": "util max",
    "memory_peak_bytes": "mem peak",
    "energy_j": "energy",
    "error_type": "error",
    "error_message": "message",
    "spent_in_window": "spent in window",
    **LEADERBOARD_HEADERS,
    **TRAINING_HEADERS,
}


def header(column: str) -> str:
    """A column's short header (``HEADERS``), else its name."""
    return HEADERS.get(column, column)
