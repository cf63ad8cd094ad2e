"""prefect_synthobs.quality against SDMetrics 0.29's own numbers, plus properties."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sdmetrics_reference import reference, reference_data

from prefect_synthobs.quality import (
    contingency_similarity,
    correlation_similarity,
    ks_complement,
    quality_report,
    tv_complement,
)

REFERENCE = reference()
DATASETS = sorted(REFERENCE["datasets"])
TOL = 1e-9


def same(ours: float, theirs: Any) -> bool:
    if theirs is None or (isinstance(theirs, float) and math.isnan(theirs)):
        return math.isnan(ours)
    return abs(ours - float(theirs)) <= TOL


def data(name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    return reference_data(name, REFERENCE)


def test_reference_was_made_by_sdmetrics_0_29() -> None:
    assert REFERENCE["sdmetrics"].startswith("0.29")


@pytest.mark.parametrize("name", DATASETS)
def test_single_column_scores_equal_sdmetrics(name: str) -> None:
    real, synthetic, ref = data(name)
    for column, expected in ref["ks"].items():
        assert same(ks_complement(real[column], synthetic[column]), expected), (name, column)
    for column, expected in ref["tv"].items():
        assert same(tv_complement(real[column], synthetic[column]), expected), (name, column)


@pytest.mark.parametrize("name", DATASETS)
def test_pair_scores_equal_sdmetrics(name: str) -> None:
    real, synthetic, ref = data(name)
    for coefficient in ("pearson", "spearman"):
        for key, expected in ref[coefficient].items():
            a, b = key.split("|")
            if isinstance(expected, str):  # SDMetrics raised (e.g. a constant column)
                with pytest.raises(ValueError):
                    correlation_similarity(real[[a, b]], synthetic[[a, b]], coefficient)
                continue
            got = correlation_similarity(real[[a, b]], synthetic[[a, b]], coefficient)
            assert same(got, expected), (name, coefficient, key, got, expected)
    for key, expected in ref["contingency"].items():
        a, b = key.split("|")
        assert same(contingency_similarity(real[[a, b]], synthetic[[a, b]]), expected), (name, key)


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("label", ["default", "zero", "custom"])
def test_quality_report_equals_sdmetrics(name: str, label: str) -> None:
    real, synthetic, ref = data(name)
    expected = ref["reports"][label]
    corr, assoc = expected["thresholds"]
    report = quality_report(
        real, synthetic, ref["metadata"], real_correlation_threshold=corr, real_association_threshold=assoc
    )
    for prop, value in expected["properties"].items():
        assert same(report.properties[prop], value), (name, label, prop, report.properties[prop], value)
    assert same(report.overall, expected["overall"])
    shapes = report.column_shapes.set_index("Column")
    for row in expected["column_shapes"]:
        assert shapes.loc[row["Column"], "Metric"] == row["Metric"]
        assert same(shapes.loc[row["Column"], "Score"], row["Score"]), row
    trends = report.column_pair_trends.set_index(["Column 1", "Column 2"])
    assert len(trends) == len(expected["column_pair_trends"])
    for row in expected["column_pair_trends"]:
        ours = trends.loc[(row["Column 1"], row["Column 2"])]
        assert ours["Metric"] == row["Metric"]
        for column in ("Score", "Real Correlation", "Synthetic Correlation", "Real Association"):
            assert same(float(ours[column]), row[column]), (name, label, row, column, ours[column])
        assert bool(ours["Meets Threshold?"]) == bool(row["Meets Threshold?"]), row


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "x": x,
            "y": 3 * x + rng.normal(size=n),
            "c": np.where(x > 0, "a", "b").astype(object),
            "t": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
            "f": (x > 0.5).astype(object),
        }
    )


META = {
    "columns": {
        "x": {"sdtype": "numerical"},
        "y": {"sdtype": "numerical"},
        "c": {"sdtype": "categorical"},
        "t": {"sdtype": "datetime"},
        "f": {"sdtype": "boolean"},
    }
}


def test_identical_tables_score_one() -> None:
    df = _table(300, 1)
    report = quality_report(df, df.copy(), META, real_correlation_threshold=0, real_association_threshold=0)
    assert report.overall == pytest.approx(1.0)
    assert report.properties == {"Column Shapes": pytest.approx(1.0), "Column Pair Trends": pytest.approx(1.0)}
    assert ks_complement(df.x, df.x) == 1.0 and tv_complement(df.c, df.c) == 1.0


def test_disjoint_supports_score_low_and_scores_stay_in_range() -> None:
    real = pd.Series(np.arange(100.0))
    assert ks_complement(real, real + 1000) == 0.0
    assert tv_complement(pd.Series(["a", "b"] * 10), pd.Series(["c", "d"] * 10)) == pytest.approx(0.0, abs=1e-5)
    for seed in range(5):
        report = quality_report(
            _table(200, seed), _table(150, seed + 100), META, real_correlation_threshold=0, real_association_threshold=0
        )
        scores = [*report.column_shapes.Score, *report.column_pair_trends.Score, report.overall]
        assert all(0.0 <= s <= 1.0 for s in scores)


@pytest.mark.parametrize(
    ("real", "synthetic", "metadata", "message"),
    [
        (
            pd.DataFrame({"a": [1.0]}),
            pd.DataFrame({"b": [1.0]}),
            {"columns": {"a": {"sdtype": "numerical"}}},
            "missing from the synthetic",
        ),
        (pd.DataFrame({"a": []}), pd.DataFrame({"a": [1.0]}), {"columns": {"a": {"sdtype": "numerical"}}}, "rows"),
        (
            pd.DataFrame({"a": [1.0]}),
            pd.DataFrame({"a": [1.0]}),
            {"columns": {"a": {"sdtype": "numeric"}}},
            "did you mean 'numerical'",
        ),
        (pd.DataFrame({"a": [1.0]}), pd.DataFrame({"a": [1.0]}), {"cols": {}}, "metadata must look like"),
        (pd.DataFrame({"a": [1.0]}), pd.DataFrame({"a": [1.0]}), {"columns": {"a": {}}}, "no sdtype"),
    ],
)
def test_invalid_input_is_a_clear_error(
    real: pd.DataFrame, synthetic: pd.DataFrame, metadata: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        quality_report(real, synthetic, metadata)


def test_column_errors_are_values_errors() -> None:
    with pytest.raises(ValueError, match="non-null"):
        ks_complement(pd.Series([np.nan]), pd.Series([1.0]))
    with pytest.raises(ValueError, match="numerical or datetime"):
        ks_complement(pd.Series(["a"]), pd.Series(["b"]))
    with pytest.raises(ValueError, match="coefficient"):
        correlation_similarity(_table(10, 1)[["x", "y"]], _table(10, 2)[["x", "y"]], "kendall")  # type: ignore[arg-type]


def test_ks_complement_matches_its_definition() -> None:
    rng = np.random.default_rng(0)
    a = pd.Series(rng.normal(0, 1, 500))
    assert ks_complement(a, a) == 1.0
    assert ks_complement(pd.Series([1.0, 2.0]), pd.Series([10.0, 11.0])) == 0.0
    # hand-computed: real {1,2,3,4}, synthetic {3,4,5,6} -> D = 0.5
    assert ks_complement(pd.Series([1, 2, 3, 4]), pd.Series([3, 4, 5, 6, np.nan])) == 0.5
    dates = pd.Series(pd.to_datetime(["2026-01-01", "2026-01-02"]))
    assert ks_complement(dates, dates) == 1.0
    with pytest.raises(ValueError):
        ks_complement(pd.Series(["a"]), pd.Series(["b"]))


def test_a_constant_datetime_column_fails_only_its_contingency_pairs() -> None:
    """A one-value datetime column cannot be binned (±0.5 ns vanishes at 10^18 ns): SDMetrics fails
    only its mixed pairs; the report used to raise for the whole table (a one-row table did too)."""
    df = pd.DataFrame({"a": [1.0, 2, 3, 4], "t": pd.to_datetime(["2020-01-01"] * 4), "c": ["x", "y", "x", "y"]})
    meta = {"columns": {"a": {"sdtype": "numerical"}, "t": {"sdtype": "datetime"}, "c": {"sdtype": "categorical"}}}
    report = quality_report(df, df, meta, real_association_threshold=0, real_correlation_threshold=0)
    pairs = report.column_pair_trends.set_index(["Column 1", "Column 2"])
    assert pairs.loc[("t", "c"), "Error"].startswith("ValueError: Too many bins")
    assert math.isnan(pairs.loc[("t", "c"), "Score"])
    assert pairs.loc[("a", "c"), "Score"] == 1.0
    assert report.column_shapes.set_index("Column").loc["t", "Score"] == 1.0


def test_sdv_semantic_sdtypes_are_left_out_as_sdmetrics_leaves_them_out() -> None:
    """SDV's detected metadata names columns ``city``, ``email``...; SDMetrics 0.32 scores the rest (1.0
    for a shuffled copy, measured with tests/reference's venv), and so does quality_report."""
    rng = np.random.default_rng(0)
    real = pd.DataFrame(
        {
            "age": rng.integers(18, 90, 300),
            "income": rng.normal(50, 10, 300),
            "city": rng.choice(["a", "b", "c"], 300),
            "email": [f"x{i}@y.com" for i in range(300)],
        }
    )
    synthetic = real.sample(frac=1, random_state=1).reset_index(drop=True)
    metadata = {
        "columns": {
            "age": {"sdtype": "numerical"},
            "income": {"sdtype": "numerical"},
            "city": {"sdtype": "city", "pii": True},
            "email": {"sdtype": "email", "pii": True},
        }
    }
    report = quality_report(real, synthetic, metadata)
    assert report.overall == 1.0
    assert set(report.details("Column Shapes")["Column"]) == {"age", "income"}
