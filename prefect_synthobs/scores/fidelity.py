"""Fidelity scores for synthetic tables, pure pandas/numpy.

The definitions are SDMetrics 0.29's, reproduced exactly (the tests compare
with values SDMetrics computed on the same data, to 1e-9). SDMetrics itself
pins ``pandas<3``, so it cannot be installed beside this project.

- ``ks_complement``: 1 − the two-sample Kolmogorov–Smirnov statistic
  (numerical and datetime columns).
- ``tv_complement``: 1 − the total variation distance of category
  frequencies (categorical and boolean columns).
- ``correlation_similarity``: 1 − |ρ_real − ρ_synthetic| / 2 (Pearson or
  Spearman) for two numerical columns.
- ``contingency_similarity``: 1 − the total variation distance of the joint
  frequencies of two columns.
- ``quality_report``: SDMetrics' single-table quality report: Column Shapes,
  Column Pair Trends (with its relevance thresholds) and their mean.
- Privacy scores live in ``prefect_synthobs.scores.privacy`` and TSTR in
  ``prefect_synthobs.scores.utility``; ``prefect_synthobs.quality`` is the
  public home of all of them.

Metadata uses the SDV single-table form
``{"columns": {"age": {"sdtype": "numerical"}, ...}}`` with sdtypes
``numerical``, ``datetime``, ``categorical``, ``boolean`` (``id`` and other
sdtypes are skipped, as SDMetrics does).
"""

from __future__ import annotations

import difflib
import itertools
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from prefect_synthobs.scores.metadata import accepts_sdv_metadata
from prefect_synthobs.scores.stats import average_ranks, numeric_values

__all__ = [
    "QualityReport",
    "StrictScores",
    "contingency_similarity",
    "correlation_similarity",
    "ks_complement",
    "quality_report",
    "strict_scores",
    "tv_complement",
]

# SDMetrics rounds to this many decimals before the KS test.
_KS_DECIMALS = sys.float_info.dig - 1
# Frequency given to a category seen only in the synthetic data (SDMetrics' regularisation).
_UNSEEN = 1e-6

DEFAULT_REAL_CORRELATION_THRESHOLD = 0.5
DEFAULT_REAL_ASSOCIATION_THRESHOLD = 0.3
DEFAULT_NUM_BINS = 10
SDTYPES = ("numerical", "datetime", "categorical", "boolean")
_CONTINUOUS = ("numerical", "datetime")
# The columns of a Column Pair Trends detail row after the pair's names (SDMetrics' order); the
# multi-table reports prefix their own key columns.
PAIR_COLUMNS = [
    "Metric",
    "Score",
    "Real Correlation",
    "Synthetic Correlation",
    "Real Association",
    "Meets Threshold?",
    "Error",
]


# -- single columns -------------------------------------------------------------


def _as_numbers(series: pd.Series, what: str) -> np.ndarray:
    """Non-null values as float64; datetimes as integer nanoseconds."""
    s = pd.Series(series).dropna()
    if pd.api.types.is_datetime64_any_dtype(s):
        return numeric_values(s)
    if pd.api.types.is_bool_dtype(s):
        return np.asarray(s.astype("int64").to_numpy(dtype=np.float64))
    if not pd.api.types.is_numeric_dtype(s):
        try:
            return np.asarray(pd.to_numeric(s).to_numpy(dtype=np.float64))
        except (TypeError, ValueError):
            raise ValueError(f"{what} needs numerical or datetime values, got dtype {s.dtype}") from None
    return np.asarray(s.to_numpy(dtype=np.float64))


def ks_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """1 − the Kolmogorov–Smirnov statistic of two numerical or datetime columns.

    NaNs are dropped, datetimes compared as integers, values rounded to 14
    decimals (as SDMetrics does). 1.0: identical empirical distributions.

    Raises:
        ValueError: A column has no value left, or is not numerical or datetime.
    """
    r = np.sort(np.round(_as_numbers(real, "ks_complement"), _KS_DECIMALS))
    s = np.sort(np.round(_as_numbers(synthetic, "ks_complement"), _KS_DECIMALS))
    if r.size == 0 or s.size == 0:
        raise ValueError("ks_complement needs at least one non-null value in each column")
    points = np.concatenate([r, s])
    cdf_r = np.searchsorted(r, points, side="right") / r.size
    cdf_s = np.searchsorted(s, points, side="right") / s.size
    return float(1.0 - np.max(np.abs(cdf_r - cdf_s)))


def _counts(series: pd.Series) -> dict[Any, int]:
    counts: dict[Any, int] = {}
    for value, n in pd.Series(series).dropna().value_counts(sort=False).items():
        counts[value] = counts.get(value, 0) + int(n)
    return counts


def tv_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """1 − the total variation distance of two categorical (or boolean) columns.

    NaNs are dropped. A category seen only in the synthetic column counts in
    the real one with frequency weight 1e-6, as in SDMetrics.

    Raises:
        ValueError: A column has no non-null value.
    """
    real_counts, syn_counts = _counts(real), _counts(synthetic)
    if not real_counts or not syn_counts:
        raise ValueError("tv_complement needs at least one non-null value in each column")
    weights: dict[Any, float] = {k: float(v) for k, v in real_counts.items()}
    for value in syn_counts:
        if value not in weights:
            weights[value] = _UNSEEN
    real_total, syn_total = sum(weights.values()), sum(syn_counts.values())
    variation = sum(abs(syn_counts.get(v, 0) / syn_total - w / real_total) for v, w in weights.items())
    return float(1.0 - 0.5 * variation)


# -- pairs ----------------------------------------------------------------------


def _two_columns(real: pd.DataFrame, synthetic: pd.DataFrame, what: str) -> tuple[Any, Any]:
    if not isinstance(real, pd.DataFrame) or not isinstance(synthetic, pd.DataFrame):
        raise ValueError(f"{what} takes two DataFrames with the same two columns")
    if real.shape[1] < 2:
        raise ValueError(f"{what} needs two columns, got {list(real.columns)}")
    a, b = real.columns[:2]
    missing = [c for c in (a, b) if c not in synthetic.columns]
    if missing:
        raise ValueError(f"{what}: column(s) {missing} missing from the synthetic data")
    return a, b


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2:
        return math.nan
    xm, ym = x - x.mean(), y - y.mean()
    nx, ny = np.linalg.norm(xm), np.linalg.norm(ym)
    if nx == 0 or ny == 0:
        return math.nan
    return float(np.clip(np.dot(xm / nx, ym / ny), -1.0, 1.0))


def _correlation(x: np.ndarray, y: np.ndarray, coefficient: str) -> float:
    if coefficient == "spearman":
        return _pearson(average_ranks(x), average_ranks(y))
    return _pearson(x, y)


def _coefficient(coefficient: str) -> str:
    name = str(coefficient).lower()
    if name not in ("pearson", "spearman"):
        raise ValueError(f"coefficient must be 'pearson' or 'spearman', got {coefficient!r}")
    return name


def _pair_numbers(df: pd.DataFrame, a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    pair = df[[a, b]].dropna()
    return _as_numbers(pair[a], "correlation_similarity"), _as_numbers(pair[b], "correlation_similarity")


def correlation_breakdown(
    real: pd.DataFrame, synthetic: pd.DataFrame, coefficient: str = "pearson", real_correlation_threshold: float = 0.0
) -> dict[str, float]:
    """``{"score", "real", "synthetic"}`` of ``correlation_similarity``.

    The score is NaN when |ρ_real| is not above ``real_correlation_threshold``
    (then ``synthetic`` is NaN too) or a correlation is undefined.
    """
    coefficient = _coefficient(coefficient)
    if not 0 <= real_correlation_threshold <= 1:
        raise ValueError("real_correlation_threshold must be between 0 and 1")
    a, b = _two_columns(real, synthetic, "correlation_similarity")
    for label, df in (("real", real), ("synthetic", synthetic)):
        constant = [c for c in (a, b) if df[c].nunique() == 1]
        if constant:
            raise ValueError(f"correlation_similarity: column(s) {constant} are constant in the {label} data")
    corr_real = _correlation(*_pair_numbers(real, a, b), coefficient)
    if abs(corr_real) <= real_correlation_threshold:
        return {"score": math.nan, "real": corr_real, "synthetic": math.nan}
    corr_syn = _correlation(*_pair_numbers(synthetic, a, b), coefficient)
    if math.isnan(corr_real) or math.isnan(corr_syn):
        return {"score": math.nan, "real": corr_real, "synthetic": corr_syn}
    return {"score": 1 - abs(corr_real - corr_syn) / 2, "real": corr_real, "synthetic": corr_syn}


def correlation_similarity(
    real: pd.DataFrame, synthetic: pd.DataFrame, coefficient: Literal["pearson", "spearman"] = "pearson"
) -> float:
    """1 − |ρ_real − ρ_synthetic| / 2 for the first two columns of two frames.

    Rows with a NaN in either column are dropped; datetimes count as integers.

    Raises:
        ValueError: Not two columns, a constant column, or an unknown coefficient.
    """
    return float(correlation_breakdown(real, synthetic, coefficient)["score"])


def _digitize(values: pd.Series | np.ndarray, bins: int = DEFAULT_NUM_BINS) -> np.ndarray:
    """SDMetrics' binning of a continuous column: ``bins`` equal-width bins over
    its own non-null values (``np.histogram_bin_edges``), ``np.digitize``
    (NaN lands past the last edge)."""
    arr = np.asarray(values, dtype=np.float64)
    edges = np.histogram_bin_edges(arr[~np.isnan(arr)], bins=bins)
    return np.digitize(arr, bins=edges)


def _cramers_v(table: np.ndarray) -> float:
    """Cramér's V of a contingency table (chi-square without Yates' correction)."""
    total = table.sum()
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return math.sqrt(chi2 / total / (min(table.shape) - 1))


def _joint(df: pd.DataFrame, a: Any, b: Any) -> pd.Series:
    return df.groupby([a, b], dropna=False, sort=False, observed=True).size()  # no unseen-category cells


def contingency_breakdown(
    real: pd.DataFrame, synthetic: pd.DataFrame, *, real_association_threshold: float = 0.0
) -> dict[str, float]:
    """``{"score", "real_association"}`` of ``contingency_similarity`` (already binned data).

    With a threshold above 0, the score is NaN unless the real data's Cramér's V
    is above it (or when the real table has fewer than two rows or columns).
    """
    a, b = _two_columns(real, synthetic, "contingency_similarity")
    real_counts = _joint(real, a, b)
    association = math.nan
    if real_association_threshold > 0:
        table = real_counts.unstack(fill_value=0).to_numpy()
        if table.sum() == 0 or min(table.shape) < 2:
            return {"score": math.nan, "real_association": association}
        association = _cramers_v(table.astype(np.float64))
        if association <= real_association_threshold:
            return {"score": math.nan, "real_association": association}
    p_real = real_counts / len(real)
    p_syn = _joint(synthetic, a, b) / len(synthetic)
    cells = p_real.index.union(p_syn.index, sort=False).drop_duplicates()
    diff = (p_real.reindex(cells, fill_value=0) - p_syn.reindex(cells, fill_value=0)).abs().fillna(0)
    return {"score": float(1 - (diff / 2).sum()), "real_association": association}


def contingency_similarity(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    *,
    continuous_columns: list[str] | None = None,
    bins: int = DEFAULT_NUM_BINS,
) -> float:
    """1 − the total variation distance of the joint frequencies of two columns.

    NaN counts as a value. Columns named in ``continuous_columns`` are first cut
    into ``bins`` equal-width bins on the real column's edges (open-ended), as
    SDMetrics' ``ContingencySimilarity`` does.

    Raises:
        ValueError: Not two columns, or empty frames.
    """
    a, b = _two_columns(real, synthetic, "contingency_similarity")
    if len(real) == 0 or len(synthetic) == 0:
        raise ValueError("contingency_similarity needs at least one row in each frame")
    real, synthetic = real[[a, b]].copy(), synthetic[[a, b]].copy()
    for column in continuous_columns or []:
        values = _as_numbers(real[column], "contingency_similarity")
        edges = np.histogram_bin_edges(values, bins=bins)
        edges[0], edges[-1] = -np.inf, np.inf
        real[column] = np.digitize(pd.to_numeric(real[column]).to_numpy(dtype=np.float64), bins=edges)
        synthetic[column] = np.digitize(pd.to_numeric(synthetic[column]).to_numpy(dtype=np.float64), bins=edges)
    return float(contingency_breakdown(real, synthetic)["score"])


# -- the report -------------------------------------------------------------------


@dataclass
class QualityReport:
    """Result of ``quality_report``.

    Attributes:
        overall: Mean of the two property scores (NaN ones left out).
        properties: ``{"Column Shapes": float, "Column Pair Trends": float}``.
        column_shapes: One row per column: Column, Metric, Score (and Error).
        column_pair_trends: One row per column pair: Column 1, Column 2, Metric,
            Score, Real Correlation, Synthetic Correlation, Real Association,
            Meets Threshold? (and Error).
    """

    overall: float
    properties: dict[str, float]
    column_shapes: pd.DataFrame = field(repr=False)
    column_pair_trends: pd.DataFrame = field(repr=False)

    def details(self, prop: str) -> pd.DataFrame:
        """The per-column or per-pair table of a property."""
        if prop == "Column Shapes":
            return self.column_shapes
        if prop == "Column Pair Trends":
            return self.column_pair_trends
        raise ValueError(f"unknown property {prop!r}; known: Column Shapes, Column Pair Trends")


@dataclass(frozen=True)
class StrictScores:
    """A quality report's scores with the columns the synthetic table left empty counted as 0.

    SDMetrics leaves a score it cannot compute out of its averages, so a
    synthetic column with no values at all raises the overall score instead of
    lowering it. Gates use these numbers; the report keeps SDMetrics' own.

    Attributes:
        overall: Mean of the two strict property scores.
        properties: ``{"Column Shapes": float, "Column Pair Trends": float}``.
        empty_columns: Columns with values in the real table and none in the
            synthetic one (each scored 0, with every contributing pair it is in).
    """

    overall: float
    properties: dict[str, float]
    empty_columns: list[str]


def strict_scores(report: QualityReport, real: pd.DataFrame, synthetic: pd.DataFrame) -> StrictScores:
    """``report``'s scores, with the columns ``synthetic`` left empty counted as 0 (see ``StrictScores``)."""
    columns = list(report.column_shapes["Column"])
    empty = [c for c in columns if real[c].notna().any() and not synthetic[c].notna().any()]
    if not empty:
        return StrictScores(report.overall, dict(report.properties), [])
    shapes = report.column_shapes
    shape_scores = shapes["Score"].mask(shapes["Column"].isin(empty) & shapes["Score"].isna(), 0.0)
    trends = report.column_pair_trends
    contributing = trends["Meets Threshold?"].fillna(False).astype(bool)
    touches_empty = trends["Column 1"].isin(empty) | trends["Column 2"].isin(empty)
    # a pair with an empty column counts as 0 whether or not its (real) threshold was met
    counted = contributing | touches_empty
    pair_scores = trends["Score"].mask(touches_empty & trends["Score"].isna(), 0.0)[counted]
    properties = {
        "Column Shapes": float(shape_scores.mean()) if len(shape_scores) else math.nan,
        "Column Pair Trends": float(pair_scores.mean()) if len(pair_scores) else math.nan,
    }
    finite = [v for v in properties.values() if not math.isnan(v)]
    return StrictScores(float(np.mean(finite)) if finite else math.nan, properties, empty)


def _validate(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: Mapping[str, Any]) -> dict[str, str]:
    if not isinstance(real, pd.DataFrame) or not isinstance(synthetic, pd.DataFrame):
        raise ValueError("quality_report takes a real and a synthetic DataFrame")
    if real.empty or synthetic.empty:
        raise ValueError("quality_report needs rows in both tables")
    columns = metadata.get("columns") if isinstance(metadata, Mapping) else None
    if not isinstance(columns, Mapping) or not columns:
        raise ValueError('metadata must look like {"columns": {"age": {"sdtype": "numerical"}, ...}}')
    sdtypes: dict[str, str] = {}
    for name, meta in columns.items():
        sdtype = meta.get("sdtype") if isinstance(meta, Mapping) else None
        if not isinstance(sdtype, str):
            raise ValueError(f"metadata column {name!r} has no sdtype")
        for label, df in (("real", real), ("synthetic", synthetic)):
            if name not in df.columns:
                raise ValueError(f"metadata names column {name!r}, missing from the {label} data")
        sdtypes[name] = sdtype
    if not set(real.columns) & set(synthetic.columns):
        raise ValueError("the real and synthetic tables have no column in common")
    return sdtypes


def check_sdtypes(sdtypes: Iterable[str]) -> None:
    """Refuse an sdtype that looks like a misspelt scored one (``numeric``: did you mean ``numerical``?).

    Any other sdtype is SDV's semantic kind of column (``id``, ``email``, ``city``, ``phone_number``, any
    Faker name) and is left out of the scores, as SDMetrics leaves it out.

    Raises:
        ValueError: Naming the sdtype and the one it resembles.
    """
    for sdtype in sorted(set(sdtypes)):
        if sdtype in SDTYPES or sdtype == "id":
            continue
        close = difflib.get_close_matches(sdtype.lower(), SDTYPES, n=1, cutoff=0.75)
        if close or sdtype.lower() in SDTYPES:
            guess = close[0] if close else sdtype.lower()
            raise ValueError(
                f"unknown sdtype {sdtype!r}: did you mean {guess!r}? (scored sdtypes: {', '.join(SDTYPES)}; "
                "SDV's other sdtypes, such as id, email or city, are left out of the scores)"
            )


@accepts_sdv_metadata
def quality_report(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    metadata: Mapping[str, Any],
    *,
    real_correlation_threshold: float = DEFAULT_REAL_CORRELATION_THRESHOLD,
    real_association_threshold: float = DEFAULT_REAL_ASSOCIATION_THRESHOLD,
    bins: int = DEFAULT_NUM_BINS,
) -> QualityReport:
    """SDMetrics' single-table quality report, without SDMetrics.

    Column Shapes: KS complement (numerical, datetime) or TV complement
    (categorical, boolean) per column, averaged. Column Pair Trends: per pair,
    correlation similarity (both continuous) or contingency similarity (else;
    a continuous column in a mixed pair is cut into ``bins`` equal-width bins
    on each table's own values); a pair counts only if the real data's |Pearson|
    is above ``real_correlation_threshold`` or its Cramér's V above
    ``real_association_threshold`` (0 counts every pair, SDMetrics < 0.27).
    Overall: the mean of the two. A pair or column whose score cannot be
    computed (a constant column, say) has a NaN score and an ``Error``.

    Args:
        real: The real table.
        synthetic: The synthetic table.
        metadata: ``{"columns": {name: {"sdtype": ...}}}``.
        real_correlation_threshold: Relevance threshold for continuous pairs.
        real_association_threshold: Relevance threshold for other pairs.
        bins: Bins for continuous columns in mixed pairs.

    Raises:
        ValueError: Empty tables, no common column, metadata naming a missing
            column, or an unknown sdtype.

    Example:
        ```python
        from prefect_synthobs.scores.fidelity import quality_report

        report = quality_report(real, synthetic, {"columns": {"age": {"sdtype": "numerical"}}})
        print(report.overall, report.properties)
        ```
    """
    sdtypes = _validate(real, synthetic, metadata)
    check_sdtypes(sdtypes.values())
    for name, value in (
        ("real_correlation_threshold", real_correlation_threshold),
        ("real_association_threshold", real_association_threshold),
    ):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    usable = [n for n, t in sdtypes.items() if t in SDTYPES]
    cols = {}
    for n in usable:
        try:
            cols[n] = _ReportColumn.build(real[n], synthetic[n], sdtypes[n], bins)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"column {n!r} is declared {sdtypes[n]!r} in the metadata but does not hold such values: {exc}"
            ) from None

    shape_rows = []
    for name in usable:
        col = cols[name]
        metric = "KSComplement" if col.continuous else "TVComplement"
        try:
            fn = ks_complement if col.continuous else tv_complement
            score, error = fn(real[name], synthetic[name]), None
        except Exception as exc:
            score, error = math.nan, f"{type(exc).__name__}: {exc}"
        shape_rows.append({"Column": name, "Metric": metric, "Score": score, "Error": error})
    shapes = pd.DataFrame(shape_rows, columns=["Column", "Metric", "Score", "Error"])

    pair_rows = []
    for a, b in itertools.combinations(usable, 2):
        ca, cb = cols[a], cols[b]
        row: dict[str, Any] = {
            "Column 1": a,
            "Column 2": b,
            "Real Correlation": math.nan,
            "Synthetic Correlation": math.nan,
            "Real Association": math.nan,
            "Error": None,
        }
        try:
            if ca.continuous and cb.continuous:
                row["Metric"] = "CorrelationSimilarity"
                out = _report_correlation(ca, cb, real_correlation_threshold)
                row.update(
                    {"Score": out["score"], "Real Correlation": out["real"], "Synthetic Correlation": out["synthetic"]}
                )
                row["Meets Threshold?"] = (real_correlation_threshold <= 0) or (
                    not math.isnan(out["real"]) and abs(out["real"]) > real_correlation_threshold
                )
            else:
                row["Metric"] = "ContingencySimilarity"
                out = _report_contingency(ca, cb, real_association_threshold)
                row.update({"Score": out["score"], "Real Association": out["real_association"]})
                row["Meets Threshold?"] = (real_association_threshold <= 0) or (
                    not math.isnan(out["real_association"]) and out["real_association"] > real_association_threshold
                )
        except Exception as exc:
            row.update({"Score": math.nan, "Meets Threshold?": None, "Error": f"{type(exc).__name__}: {exc}"})
            row.setdefault(
                "Metric", "CorrelationSimilarity" if ca.continuous and cb.continuous else "ContingencySimilarity"
            )
        pair_rows.append(row)
    trends = pd.DataFrame(
        pair_rows,
        columns=["Column 1", "Column 2", *PAIR_COLUMNS],
    )
    trends["Meets Threshold?"] = trends["Meets Threshold?"].astype("boolean")

    shapes_score = float(shapes["Score"].mean()) if len(shapes) else math.nan
    contributing = trends["Meets Threshold?"].fillna(False).astype(bool)
    trends_score = float(trends.loc[contributing, "Score"].mean()) if contributing.any() else math.nan
    properties = {"Column Shapes": shapes_score, "Column Pair Trends": trends_score}
    finite = [v for v in properties.values() if not math.isnan(v)]
    overall = float(np.mean(finite)) if finite else math.nan
    return QualityReport(overall, properties, shapes, trends)


@dataclass
class _ReportColumn:
    """A column of both tables, prepared once for every pair it is in.

    Continuous columns: float values (datetimes as ns), the number of distinct
    values, and SDMetrics' bins (each table on its own edges). Discrete
    columns: codes of one shared encoding, missing as a code of its own.
    ``codes_*`` / ``size`` are what contingency tables count.
    """

    continuous: bool
    codes_real: np.ndarray
    codes_syn: np.ndarray
    size: int
    values_real: np.ndarray | None = None
    values_syn: np.ndarray | None = None
    distinct_real: int = 0
    distinct_syn: int = 0
    bin_error: str | None = None
    """Why the column could not be binned (a constant datetime: ±0.5 ns vanishes at 10^18); its
    contingency pairs get this error and no score, as SDMetrics fails only those pairs."""

    @classmethod
    def build(cls, real: pd.Series, synthetic: pd.Series, sdtype: str, bins: int) -> _ReportColumn:
        if sdtype in _CONTINUOUS:
            vr, vs = numeric_values(real), numeric_values(synthetic)
            try:
                codes_real, codes_syn, error = _digitize(vr, bins), _digitize(vs, bins), None
            except ValueError as exc:  # binning only: the column's own score and correlations still work
                codes_real = codes_syn = np.zeros(0, dtype=np.int64)
                error = str(exc)
            return cls(
                True,
                codes_real,
                codes_syn,
                bins + 2,
                vr,
                vs,
                int(real.nunique()),
                int(synthetic.nunique()),
                error,
            )
        both = pd.concat([real, synthetic], ignore_index=True).astype(object)
        codes, uniques = pd.factorize(both, use_na_sentinel=True)
        codes = np.where(codes < 0, len(uniques), codes)
        return cls(False, codes[: len(real)], codes[len(real) :], len(uniques) + 1)


def _report_correlation(a: _ReportColumn, b: _ReportColumn, threshold: float) -> dict[str, float]:
    """``correlation_breakdown`` (Pearson) on prepared columns."""
    if a.distinct_real == 1 or b.distinct_real == 1 or a.distinct_syn == 1 or b.distinct_syn == 1:
        raise ValueError("a column is constant")
    assert a.values_real is not None and b.values_real is not None
    assert a.values_syn is not None and b.values_syn is not None

    def corr(x: np.ndarray, y: np.ndarray) -> float:
        keep = ~(np.isnan(x) | np.isnan(y))
        return _pearson(x[keep], y[keep])

    corr_real = corr(a.values_real, b.values_real)
    if abs(corr_real) <= threshold:
        return {"score": math.nan, "real": corr_real, "synthetic": math.nan}
    corr_syn = corr(a.values_syn, b.values_syn)
    if math.isnan(corr_real) or math.isnan(corr_syn):
        return {"score": math.nan, "real": corr_real, "synthetic": corr_syn}
    return {"score": 1 - abs(corr_real - corr_syn) / 2, "real": corr_real, "synthetic": corr_syn}


def _report_contingency(a: _ReportColumn, b: _ReportColumn, threshold: float) -> dict[str, float]:
    """``contingency_breakdown`` on prepared columns: joint counts by ``bincount``."""
    for column in (a, b):
        if column.bin_error is not None:
            raise ValueError(column.bin_error)
    cells = a.size * b.size
    real = np.bincount(a.codes_real * b.size + b.codes_real, minlength=cells)
    association = math.nan
    if threshold > 0:
        table = real.reshape(a.size, b.size)
        table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
        if table.sum() == 0 or min(table.shape) < 2:
            return {"score": math.nan, "real_association": association}
        association = _cramers_v(table.astype(np.float64))
        if association <= threshold:
            return {"score": math.nan, "real_association": association}
    syn = np.bincount(a.codes_syn * b.size + b.codes_syn, minlength=cells)
    diff = np.abs(real / a.codes_real.size - syn / a.codes_syn.size)
    return {"score": float(1 - (diff / 2).sum()), "real_association": association}
