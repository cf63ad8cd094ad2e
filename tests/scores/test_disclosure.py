"""Disclosure protection: SDMetrics' DisclosureProtection, CAP metrics and seeded estimate
(recorded with SDMetrics 0.29 and 0.32 by ``tests/reference/ref_disclosure.py``), plus properties."""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sdmetrics_reference import HERE, all_datasets, load

from prefect_synthobs.scores import disclosure
from prefect_synthobs.scores.disclosure import (
    categorical_cap,
    disclosure_protection,
    disclosure_protection_breakdown,
    disclosure_protection_estimate,
    disclosure_protection_estimate_breakdown,
)

REFERENCES = {
    path.stem.removeprefix("disclosure_sdmetrics_"): path for path in sorted(HERE.glob("disclosure_sdmetrics_*.json"))
}
METHODS = ("cap", "zero_cap", "generalized_cap")


@functools.cache
def _reference(version: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(REFERENCES[version].read_text())
    return result


@functools.cache
def _metadata() -> dict[str, dict[str, Any]]:
    return {name: meta for name, (_, _, meta) in all_datasets().items()}


@functools.cache
def _data(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reference dataset as the reference script read it (the same CSVs, the same ``load``)."""
    return load(name, _metadata()[name])


def _cases(section: str) -> list[Any]:
    return [
        pytest.param(version, i, id=f"{version}-{case['dataset']}-{i}")
        for version in REFERENCES
        for i, case in enumerate(json.loads(REFERENCES[version].read_text())[section])
    ]


def _same(ours: float, theirs: float) -> bool:
    return (math.isnan(ours) and math.isnan(theirs)) or abs(ours - theirs) <= 1e-9


def test_references_were_recorded() -> None:
    assert REFERENCES, "run tests/reference/ref_disclosure.py in an SDMetrics environment"
    for version in REFERENCES:
        ref = _reference(version)
        assert ref["sdmetrics"].replace(".", "_").startswith(version)
        assert ref["disclosure_protection"] and ref["categorical_cap_raw"] and ref["disclosure_protection_estimate"]


@pytest.mark.parametrize(("version", "index"), _cases("disclosure_protection"))
def test_disclosure_protection_equals_sdmetrics(version: str, index: int) -> None:
    case = _reference(version)["disclosure_protection"][index]
    assert "error" not in case, case
    real, synthetic = _data(case["dataset"])
    args = (real, synthetic, case["known"], case["sensitive"], case["method"], case["continuous"], case["bins"])
    ours = disclosure_protection_breakdown(*args)
    for key in ("score", "cap_protection", "baseline_protection"):
        assert _same(ours[key], case[key]), (key, ours, case)
    assert _same(disclosure_protection(*args), case["score"])


@pytest.mark.parametrize(("version", "index"), _cases("categorical_cap_raw"))
def test_categorical_cap_equals_sdmetrics(version: str, index: int) -> None:
    case = _reference(version)["categorical_cap_raw"][index]
    real, synthetic = _data(case["dataset"])
    ours = categorical_cap(real, synthetic, case["known"], case["sensitive"], computation_method=case["method"])
    assert _same(ours, case["value"]), (ours, case)


@pytest.mark.parametrize(("version", "index"), _cases("disclosure_protection_estimate"))
def test_estimate_equals_sdmetrics_after_seeding_numpy(version: str, index: int) -> None:
    case = _reference(version)["disclosure_protection_estimate"][index]
    real, synthetic = _data(case["dataset"])
    ours = disclosure_protection_estimate_breakdown(
        real,
        synthetic,
        case["known"],
        case["sensitive"],
        case["method"],
        case["continuous"],
        case["bins"],
        num_rows_subsample=case["num_rows_subsample"],
        num_iterations=case["num_iterations"],
        seed=case["seed"],
    )
    for key in ("score", "cap_protection", "baseline_protection"):
        assert _same(ours[key], case[key]), (key, ours, case)


def test_the_versions_agree() -> None:
    versions = list(REFERENCES)
    first = _reference(versions[0])
    for version in versions[1:]:
        other = _reference(version)
        for section in ("disclosure_protection", "categorical_cap_raw", "disclosure_protection_estimate"):
            assert json.dumps(other[section]) == json.dumps(first[section])


# --- properties ----------------------------------------------------------------------------------


def _independent(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.choice(["p", "q", "r"], n).astype(object),
            "b": rng.integers(0, 4, n),
            "x": rng.normal(size=n),
            "s": rng.choice(["s1", "s2", "s3", "s4"], n).astype(object),
        }
    )


@pytest.mark.parametrize("method", METHODS)
def test_a_copy_with_unique_keys_gives_everything_away(method: str) -> None:
    real = pd.DataFrame({"id": np.arange(50), "s": np.arange(50) % 3})
    assert disclosure_protection(real, real.copy(), ["id"], ["s"], method) == 0.0
    assert categorical_cap(real, real.copy(), ["id"], ["s"], computation_method=method) == 0.0


def test_a_copy_with_shared_keys_gives_the_documented_value() -> None:
    real = pd.DataFrame({"k": ["a", "a", "a", "b"], "s": ["x", "x", "y", "z"]})
    # shares of the right value within each key: 2/3, 2/3, 1/3, 1 -> mean 2/3; baseline 1 - 1/3
    out = disclosure_protection_breakdown(real, real.copy(), ["k"], ["s"])
    assert out["cap_protection"] == pytest.approx(1 / 3, abs=1e-15)
    assert out["baseline_protection"] == pytest.approx(2 / 3, abs=1e-15)
    assert out["score"] == pytest.approx(0.5, abs=1e-15)


@pytest.mark.parametrize("method", METHODS)
def test_independent_sensitive_values_are_protected(method: str) -> None:
    real, synthetic = _independent(4000, 1), _independent(4000, 2)
    assert disclosure_protection(real, synthetic, ["a", "b"], ["s"], method) > 0.97
    binned = disclosure_protection(real, synthetic, ["a", "x"], ["s"], method, ["x"], 5)
    assert binned > 0.97


def test_methods_order_and_unmatched_keys() -> None:
    real, synthetic = _independent(300, 3), _independent(200, 4)
    real["k"], synthetic["k"] = real["x"].round(1), synthetic["x"].round(1)  # some keys unmatched
    cap, zero, general = (
        disclosure_protection_breakdown(real, synthetic, ["k", "a"], ["s"], m)["cap_protection"] for m in METHODS
    )
    assert cap <= zero and general <= zero
    # no key matches: CAP has no row to score, 0CAP counts every row as a miss
    far = synthetic.assign(k=synthetic["k"] + 1000)
    assert math.isnan(disclosure_protection(real, far, ["k"], ["s"], "cap"))
    assert disclosure_protection_breakdown(real, far, ["k"], ["s"], "zero_cap")["cap_protection"] == 1.0


def test_generalized_cap_pools_the_nearest_keys() -> None:
    real = pd.DataFrame({"a": ["a"], "b": [1], "s": ["x"]})
    synthetic = pd.DataFrame({"a": ["a", "a", "b", "b", "c"], "b": [2, 2, 1, 2, 3], "s": ["x", "y", "x", "y", "x"]})
    # (a, 2) and (b, 1) are one column away, (b, 2) and (c, 3) two: pooled values x, y, x
    assert categorical_cap(real, synthetic, ["a", "b"], ["s"], computation_method="generalized_cap") == pytest.approx(
        1 - 2 / 3, abs=1e-15
    )


def test_constant_sensitive_column_has_no_baseline() -> None:
    real = pd.DataFrame({"k": [1, 2, 3], "s": ["x", "x", "x"]})
    out = disclosure_protection_breakdown(real, real, ["k"], ["s"])
    assert out["baseline_protection"] == 0.0 and math.isnan(out["score"])


def test_missing_values_are_one_category() -> None:
    real = pd.DataFrame({"k": ["a", None, np.nan, "b"], "s": [1.0, np.nan, np.nan, 2.0]})
    synthetic = pd.DataFrame({"k": [np.nan, "a", "b"], "s": [np.nan, 1.0, 2.0]})
    assert disclosure_protection_breakdown(real, synthetic, ["k"], ["s"])["cap_protection"] == 0.0


@pytest.mark.parametrize("method", METHODS)
def test_row_order_and_dtypes_do_not_matter(method: str) -> None:
    real, synthetic = _independent(400, 5), _independent(300, 6)
    real.loc[::7, "a"] = None
    args = (["a", "b", "x"], ["s"], method, ["x"], 4)
    expected = disclosure_protection(real, synthetic, *args)
    shuffled = disclosure_protection(
        real.sample(frac=1, random_state=1), synthetic.sample(frac=1, random_state=2), *args
    )
    assert shuffled == pytest.approx(expected, abs=1e-12)
    typed_real = real.astype({"a": "category", "b": "Int64", "s": "string"})
    typed_synthetic = synthetic.astype({"a": "str", "b": "float64", "s": "category"})
    assert disclosure_protection(typed_real, typed_synthetic, *args) == pytest.approx(expected, abs=1e-12)


def test_binning_uses_pandas_cut_edges() -> None:
    rng = np.random.default_rng(8)
    real = pd.Series(rng.normal(size=500))
    real[::11] = np.nan
    synthetic = pd.Series(np.concatenate([rng.normal(scale=2, size=300), [np.nan, np.inf, -np.inf]]))
    codes_real, codes_synthetic = disclosure._discretize(real, synthetic, 7, "x")
    cut, edges = pd.cut(real, 7, labels=False, retbins=True)
    np.testing.assert_array_equal(codes_real, np.where(np.isnan(cut), 7, cut))
    edges[0], edges[-1] = -np.inf, np.inf
    cut_synthetic = pd.cut(synthetic, edges, labels=False)
    np.testing.assert_array_equal(codes_synthetic, np.where(np.isnan(cut_synthetic), 7, cut_synthetic))
    # a constant column is widened by 0.1 % as pandas does; integers and booleans bin as numbers
    for values in (pd.Series([5.0] * 4), pd.Series([0, 3, 9, 9]), pd.Series([True, False, True])):
        ours, _ = disclosure._discretize(values, values, 3, "c")
        np.testing.assert_array_equal(ours, pd.cut(values.astype(float), 3, labels=False).to_numpy())


def test_datetimes_are_compared_as_values_or_binned() -> None:
    days = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02", "2024-03-01", "2024-06-01"]))
    real = pd.DataFrame({"d": days, "s": ["x", "y", "x", "y"]})
    assert disclosure_protection_breakdown(real, real, ["d"], ["s"])["cap_protection"] == 0.0
    binned = disclosure_protection_breakdown(
        real, real, ["d"], ["s"], continuous_column_names=["d"], num_discrete_bins=2
    )
    assert binned["cap_protection"] == pytest.approx(1 - (2 / 3 + 1 / 3 + 2 / 3 + 1) / 4, abs=1e-15)


@pytest.mark.parametrize("columns", [2, 4])
def test_generalized_cap_levels_equal_brute_force(columns: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(columns)
    synthetic = rng.integers(2, 8, (200, columns))
    synthetic_sensitive = rng.integers(0, 5, 200)
    query = rng.integers(0, 6, (300, columns))
    keys = {tuple(row) for row in synthetic}
    query = query[[tuple(row) not in keys for row in query]]  # the rows generalized CAP looks further for
    query_sensitive = rng.integers(0, 4, len(query))
    brute = disclosure._nearest_shares(query, query_sensitive, synthetic, synthetic_sensitive)
    for brute_force in (False, None):
        levels = disclosure._generalized_shares(
            query, query_sensitive, synthetic, synthetic_sensitive, brute_force=brute_force
        )
        np.testing.assert_allclose(levels, brute, rtol=0, atol=1e-15)
    monkeypatch.setattr(disclosure, "_BLOCK", 64)  # tiny blocks give the same shares
    np.testing.assert_allclose(
        disclosure._nearest_shares(query, query_sensitive, synthetic, synthetic_sensitive), brute, rtol=0, atol=1e-15
    )


# --- the estimate ----------------------------------------------------------------------------------


def test_estimate_is_deterministic_and_near_the_full_value() -> None:
    real, synthetic = _independent(3000, 9), _independent(3000, 10)
    real["s"] = np.where(real["a"] == "p", "s1", real["s"])  # some disclosure to estimate
    synthetic["s"] = np.where(synthetic["a"] == "p", "s1", synthetic["s"])
    args = (real, synthetic, ["a", "b"], ["s"], "zero_cap")
    first = disclosure_protection_estimate(*args, num_rows_subsample=500, num_iterations=8, seed=3)
    assert disclosure_protection_estimate(*args, num_rows_subsample=500, num_iterations=8, seed=3) == first
    assert disclosure_protection_estimate(*args, num_rows_subsample=500, num_iterations=8, seed=4) != first
    assert first == pytest.approx(disclosure_protection(*args), abs=0.05)
    # subsamples as large as the tables: the full value
    whole = disclosure_protection_estimate_breakdown(*args, num_rows_subsample=10**6, num_iterations=2)
    assert whole["cap_protection"] == pytest.approx(disclosure_protection_breakdown(*args)["cap_protection"], abs=1e-12)


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"known_column_names": ["nope"]}, "known column"),
        ({"sensitive_column_names": ["nope"]}, "sensitive column"),
        ({"known_column_names": []}, "at least one known"),
        ({"sensitive_column_names": []}, "at least one sensitive"),
        ({"known_column_names": ["a", "s"]}, "both known and sensitive"),
        ({"known_column_names": ["a", "a"]}, "twice"),
        ({"computation_method": "best"}, "unknown computation method"),
        ({"num_discrete_bins": 0}, "num_discrete_bins"),
        ({"num_discrete_bins": 2.5}, "num_discrete_bins"),
        ({"num_discrete_bins": True}, "num_discrete_bins"),
        ({"continuous_column_names": ["nope"]}, "continuous column"),
        ({"continuous_column_names": ["a"]}, "must hold numbers"),
        ({"known_column_names": ["a", "empty"], "continuous_column_names": ["empty"]}, "no values"),
        ({"known_column_names": ["a", "inf"], "continuous_column_names": ["inf"]}, "infinity"),
    ],
)
def test_bad_input_raises(kwargs: dict[str, Any], message: str) -> None:
    real = _independent(20, 11).assign(empty=np.nan, inf=np.inf)
    arguments: dict[str, Any] = {"known_column_names": ["a", "b", "x"], "sensitive_column_names": ["s"], **kwargs}
    with pytest.raises(ValueError, match=message):
        disclosure_protection(real, real, **arguments)
    with pytest.raises(ValueError, match=message):
        disclosure_protection_estimate(real, real, **arguments)


def test_bad_tables_raise() -> None:
    real = _independent(20, 12)
    with pytest.raises(ValueError, match="synthetic data has no rows"):
        disclosure_protection(real, real.iloc[:0], ["a"], ["s"])
    with pytest.raises(ValueError, match="real data has no rows"):
        categorical_cap(real.iloc[:0], real, ["a"], ["s"])
    with pytest.raises(ValueError, match="missing from the synthetic data"):
        disclosure_protection(real, real.drop(columns="b"), ["a", "b"], ["s"])
    with pytest.raises(ValueError, match="DataFrames"):
        disclosure_protection(real, real.to_numpy(), ["a"], ["s"])  # type: ignore[arg-type]
    for name in ("num_rows_subsample", "num_iterations"):
        with pytest.raises(ValueError, match=name):
            disclosure_protection_estimate(real, real, ["a"], ["s"], **{name: 0})


# --- scale -------------------------------------------------------------------------------------------


@pytest.mark.slow  # 100k rows: the slow tier
@pytest.mark.parametrize("method", METHODS)
def test_a_hundred_thousand_rows(method: str) -> None:
    # 3 known + 1 sensitive; SDMetrics loops over rows in Python (minutes), this is vectorised
    real, synthetic = _independent(100_000, 13), _independent(100_000, 14)
    score = disclosure_protection(real, synthetic, ["a", "b", "x"], ["s"], method, ["x"])
    assert 0.9 < score <= 1.0
