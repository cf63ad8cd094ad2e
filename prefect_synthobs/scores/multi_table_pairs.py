"""Column pairs of the multi-table Quality report: Column Pair Trends within a table and
Intertable Trends across a relationship, scored as SDMetrics' ``ColumnPairTrends`` does.

Built on ``fidelity``'s single-table machinery (``_ReportColumn``, ``_report_contingency``,
``_digitize``; ``_pearson``'s steps): a pair scores the same number as in ``quality_report``.
Three things are added for many tables and joins:

- ``ColumnSource``: a table column prepared once (float values, or codes of one encoding
  shared by the real and synthetic column), then taken over any rows, a join's included.
- ``Pearson``: a column without missing values is centred and scaled once for all its
  pairs (``_pearson`` does it per pair), the same number bit for bit.
- A column that cannot be cut into bins (a constant datetime: ±0.5 ns vanishes at
  10^18) is not an error of the whole report: as in SDMetrics, only its pairs with a
  discrete column report it (``fidelity.quality_report`` raises there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prefect_synthobs.scores.fidelity import _CONTINUOUS, _digitize, _report_contingency, _ReportColumn
from prefect_synthobs.scores.stats import numeric_values

CONTINUOUS = _CONTINUOUS


def error_text(exc: BaseException) -> str:
    """An error as SDMetrics writes it in a details row."""
    return f"{type(exc).__name__}: {exc}"


@dataclass
class PreparedColumn(_ReportColumn):
    """A ``_ReportColumn`` that may carry why it could not be cut into bins."""

    bin_error: str | None = None


def _distinct(values: np.ndarray) -> int:
    """How many distinct non-missing values, capped at 2: only "is it constant" is read."""
    if values.size == 0:
        return 0
    low, high = np.fmin.reduce(values), np.fmax.reduce(values)  # NaN only when every value is
    if math.isnan(low):
        return 0
    return 1 if low == high else 2


def _pearson_of_copies(x: np.ndarray, y: np.ndarray) -> float:
    """``fidelity._pearson`` on arrays it may overwrite: the same operations, in place (fewer temporaries)."""
    if x.size < 2:
        return math.nan
    x -= x.mean()
    y -= y.mean()
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0 or ny == 0:
        return math.nan
    x /= nx
    y /= ny
    return float(np.clip(np.dot(x, y), -1.0, 1.0))


@dataclass
class ColumnSource:
    """A table column prepared once: float values (datetimes as ns) for a continuous
    column, codes of one encoding shared by the real and synthetic column (missing
    values a code of their own) for a discrete one."""

    continuous: bool
    real: np.ndarray
    synthetic: np.ndarray
    size: int = 0

    @classmethod
    def build(cls, real: pd.Series, synthetic: pd.Series, sdtype: str) -> ColumnSource:
        """Raises ValueError or TypeError when the values are not of ``sdtype``."""
        if sdtype in CONTINUOUS:
            return cls(True, numeric_values(real), numeric_values(synthetic))
        both = pd.concat([real, synthetic], ignore_index=True)
        if not (pd.api.types.is_string_dtype(both) and not pd.api.types.is_object_dtype(both)):
            both = both.astype(object)  # as fidelity's _ReportColumn (text columns factorize as they are: faster)
        codes, uniques = pd.factorize(both, use_na_sentinel=True)
        codes[codes < 0] = len(uniques)
        return cls(False, codes[: len(real)], codes[len(real) :], len(uniques) + 1)

    def over(self, real_rows: np.ndarray | None, synthetic_rows: np.ndarray | None, bins: int) -> PreparedColumn:
        """The column over the given rows (None: all), as ``_ReportColumn.build`` prepares it from them."""
        real = self.real if real_rows is None else self.real[real_rows]
        synthetic = self.synthetic if synthetic_rows is None else self.synthetic[synthetic_rows]
        if not self.continuous:
            return PreparedColumn(False, real, synthetic, self.size)
        try:
            codes_real, codes_syn, error = _digitize(real, bins), _digitize(synthetic, bins), None
        except ValueError as exc:  # SDMetrics: the column's mixed pairs report it, the rest is scored
            codes_real, codes_syn = np.zeros(real.size, np.int64), np.zeros(synthetic.size, np.int64)
            error = error_text(exc)
        column = PreparedColumn(
            True, codes_real, codes_syn, bins + 2, real, synthetic, _distinct(real), _distinct(synthetic)
        )
        column.bin_error = error
        return column


class Pearson:
    """Pearson correlations, each column without missing values centred and scaled once.

    ``fidelity._pearson`` computes ``dot((x - x̄) / ‖x - x̄‖, (y - ȳ) / ‖y - ȳ‖)`` per pair;
    here a column's scaled vector is kept for its other pairs, so the result is the same
    number, bit for bit. A pair with missing values in either column takes ``_pearson``'s
    steps on the rows where both have values (in place on those copies: same numbers).
    """

    def __init__(self) -> None:
        self._units: dict[int, tuple[np.ndarray, np.ndarray | float | None]] = {}

    def _unit(self, values: np.ndarray) -> np.ndarray | float | None:
        """The scaled vector; NaN when the correlation is undefined; None when a value is missing."""
        key = id(values)
        if key not in self._units:
            unit: np.ndarray | float | None = None
            if not np.isnan(values).any():
                if values.size < 2:
                    unit = math.nan
                else:
                    centred = values - values.mean()
                    norm = np.linalg.norm(centred)
                    unit = math.nan if norm == 0 else np.divide(centred, norm, out=centred)
            self._units[key] = (values, unit)  # the array is kept, so its id stays its own
        return self._units[key][1]

    def forget(self, *arrays: np.ndarray | None) -> None:
        """Drop what is kept for ``arrays`` (a column whose pairs are done)."""
        for values in arrays:
            self._units.pop(id(values), None)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> float:
        ux, uy = self._unit(x), self._unit(y)
        if ux is None or uy is None:
            keep = ~(np.isnan(x) | np.isnan(y))
            return _pearson_of_copies(x[keep], y[keep])
        if isinstance(ux, float) or isinstance(uy, float):
            return math.nan
        return float(np.clip(np.dot(ux, uy), -1.0, 1.0))


def _correlation(a: _ReportColumn, b: _ReportColumn, threshold: float, pearson: Pearson) -> dict[str, float]:
    """``fidelity._report_correlation`` with ``pearson`` computing the correlations (same numbers)."""
    if a.distinct_real == 1 or b.distinct_real == 1 or a.distinct_syn == 1 or b.distinct_syn == 1:
        raise ValueError("a column is constant")
    assert a.values_real is not None and b.values_real is not None
    assert a.values_syn is not None and b.values_syn is not None
    corr_real = pearson(a.values_real, b.values_real)
    if abs(corr_real) <= threshold:
        return {"score": math.nan, "real": corr_real, "synthetic": math.nan}
    corr_syn = pearson(a.values_syn, b.values_syn)
    if math.isnan(corr_real) or math.isnan(corr_syn):
        return {"score": math.nan, "real": corr_real, "synthetic": corr_syn}
    return {"score": 1 - abs(corr_real - corr_syn) / 2, "real": corr_real, "synthetic": corr_syn}


def pair_row(a: PreparedColumn, b: PreparedColumn, thresholds: tuple[float, float], pearson: Pearson) -> dict[str, Any]:
    """The Column Pair Trends columns of one pair, as ``fidelity.quality_report`` fills them.

    ``thresholds``: the real |Pearson| and Cramér's V a pair must pass to count.
    """
    correlation_threshold, association_threshold = thresholds
    continuous = a.continuous and b.continuous
    row: dict[str, Any] = {
        "Metric": "CorrelationSimilarity" if continuous else "ContingencySimilarity",
        "Score": math.nan,
        "Real Correlation": math.nan,
        "Synthetic Correlation": math.nan,
        "Real Association": math.nan,
        "Meets Threshold?": None,
        "Error": None,
    }
    if not continuous and (a.bin_error or b.bin_error):
        row["Error"] = a.bin_error or b.bin_error
        return row
    try:
        if continuous:
            out = _correlation(a, b, correlation_threshold, pearson)
            row.update(
                {"Score": out["score"], "Real Correlation": out["real"], "Synthetic Correlation": out["synthetic"]}
            )
            row["Meets Threshold?"] = correlation_threshold <= 0 or (
                not math.isnan(out["real"]) and abs(out["real"]) > correlation_threshold
            )
        else:
            out = _report_contingency(a, b, association_threshold)
            row.update({"Score": out["score"], "Real Association": out["real_association"]})
            row["Meets Threshold?"] = association_threshold <= 0 or (
                not math.isnan(out["real_association"]) and out["real_association"] > association_threshold
            )
    except Exception as exc:  # reported per pair, as SDMetrics does
        row.update({"Score": math.nan, "Meets Threshold?": None, "Error": error_text(exc)})
    return row


class Sources:
    """The columns of a set of tables, each prepared once (a parent in several relationships too)."""

    def __init__(self, real: Any, synthetic: Any) -> None:
        self.real, self.synthetic = real, synthetic
        self._prepared: dict[tuple[str, str], ColumnSource] = {}

    def get(self, table: str, name: str, sdtype: str) -> ColumnSource:
        """Raises ValueError when the column does not hold values of its ``sdtype``."""
        if (table, name) not in self._prepared:
            try:
                source = ColumnSource.build(self.real[table][name], self.synthetic[table][name], sdtype)
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"column {name!r} of table {table!r} is declared {sdtype!r} in the metadata "
                    f"but does not hold such values: {exc}"
                ) from None
            self._prepared[table, name] = source
        return self._prepared[table, name]

    def release(self, table: str) -> None:
        """Forget ``table``'s prepared columns (no later relationship needs them: memory back)."""
        for key in [k for k in self._prepared if k[0] == table]:
            del self._prepared[key]
